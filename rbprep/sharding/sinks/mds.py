"""MosaicML Streaming's MDS: ``OUT/{split}/shard.NNNNN.mds``, one per partition with
rows, and ``OUT/{split}/index.json``, what ``streaming.StreamingDataset(local=OUT/train)``
and Composer read (``rbprep.dataset.mds`` holds the layout). One sample per packed row:
its ids with specials, unpadded, and its length; no masks (those trainers mask as they
load)."""

from __future__ import annotations

import hashlib

from rbprep.dataset import mds
from rbprep.dataset.format import SPLITS, id_dtype
from rbprep.dataset.manifest import FileRecord
from rbprep.sharding.pipeline import SplitResult
from rbprep.sharding.records import PartitionRecord
from rbprep.sharding.sinks import Sink, SinkOutput
from rbprep.storage import Location


class MdsSink(Sink):
    name = "mds"
    folders = SPLITS

    def split_output(self, partition: int, split: str, result: SplitResult) -> SinkOutput:
        output = self.rows_output(result)
        if output.rows:
            row_offsets, row_tokens = result.rows
            data = mds.shard_bytes(row_offsets, row_tokens, id_dtype(self.vocab_size))
            output.files.append((f"{split}/shard.{partition:05d}.mds", data))
        return output

    def finish(
        self, out_dir: Location, records: list[PartitionRecord]
    ) -> dict[str, list[FileRecord]]:
        joined = {}
        for split in SPLITS:
            shards = [
                mds.ShardInfo(part.files[0].file.rsplit("/", 1)[1], part.files[0].bytes, part.rows)
                for part in (record.splits[split] for record in records)
                if part.files
            ]
            index = mds.index_text(mds.index_json(shards, id_dtype(self.vocab_size))).encode()
            name = f"{split}/{mds.INDEX_NAME}"
            out_dir.child(name).write_atomically(index)
            joined[split] = [FileRecord(name, len(index), hashlib.sha256(index).hexdigest())]
        return joined


SINK = MdsSink
