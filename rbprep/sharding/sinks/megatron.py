"""Megatron-Core's indexed dataset: ``OUT/{split}.bin`` and ``OUT/{split}.idx``, what
Megatron's ``--data-path OUT/train`` reads (``rbprep.dataset.megatron`` holds the layout).

Each partition writes its own pair, ``OUT/{split}/NNNNN.{bin,idx}`` (itself a Megatron
dataset), so resume and Dask work as for Arrow; ``finish`` joins them in partition order
and removes them once the manifest is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from rbprep.dataset import megatron
from rbprep.dataset.format import SPLITS
from rbprep.dataset.manifest import FileRecord
from rbprep.sharding.pipeline import SplitResult
from rbprep.sharding.records import PartitionRecord
from rbprep.sharding.sinks import Sink, SinkOutput
from rbprep.storage import Location

_BLOCK = 16 << 20  # bytes copied at a time when joining the partitions' .bin files


class MegatronSink(Sink):
    name = "megatron"
    folders = SPLITS
    outputs = tuple(f"{split}.{suffix}" for split in SPLITS for suffix in ("bin", "idx"))
    partition_shards = False

    def split_output(self, partition: int, split: str, result: SplitResult) -> SinkOutput:
        if not result.text.documents:
            return SinkOutput(rows=0, tokens=0, length_histogram={})
        dtype = megatron.token_dtype(self.vocab_size)
        tokens, lengths, documents = megatron.document_sequences(
            result.token_ids,
            result.unit_lengths,
            result.text.starts,
            self.end_id,
            self.config.split_sentences,
            dtype,
        )
        prefix = f"{split}/{partition:05d}"
        return SinkOutput(
            rows=len(lengths),
            tokens=len(tokens),
            length_histogram={},
            files=[
                (f"{prefix}.bin", tokens.tobytes()),
                (f"{prefix}.idx", megatron.index_bytes(dtype, lengths, documents)),
            ],
        )

    def finish(
        self, out_dir: Location, records: list[PartitionRecord]
    ) -> dict[str, list[FileRecord]]:
        joined = {}
        for split in SPLITS:
            parts = [record.splits[split].files for record in records]
            parts = [files for files in parts if files]
            if not parts:
                continue
            indices = [
                megatron.read_index(out_dir.child(idx.file).read_bytes()) for _, idx in parts
            ]
            dtype = indices[0][0]
            lengths, documents = megatron.join_indices([index[1:] for index in indices])
            data = out_dir.child(f"{split}.bin")
            digest = hashlib.sha256()
            size = data.write_chunks_atomically(
                _hashed(_blocks(out_dir.child(bin.file) for bin, _ in parts), digest)
            )
            index = megatron.index_bytes(dtype, lengths, documents)
            out_dir.child(f"{split}.idx").write_atomically(index)
            joined[split] = [
                FileRecord(f"{split}.bin", size, digest.hexdigest()),
                FileRecord(f"{split}.idx", len(index), hashlib.sha256(index).hexdigest()),
            ]
        return joined

    def finished(self, out_dir: Location) -> None:
        for split in SPLITS:
            out_dir.child(split).delete()


def _blocks(locations: Iterator[Location]) -> Iterator[bytes]:
    for location in locations:
        with location.open() as file:
            while block := file.read(_BLOCK):
                yield block


def _hashed(blocks: Iterator[bytes], digest: hashlib._Hash) -> Iterator[bytes]:
    for block in blocks:
        digest.update(block)
        yield block


SINK = MegatronSink
