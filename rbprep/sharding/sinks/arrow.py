"""rbprep's own format: one Arrow shard per partition and split, rows and stored masks
(docs/format.md), read by ``rbprep.open_dataset`` and ``rbprep.torch_dataset``."""

from __future__ import annotations

from rbprep.dataset.format import SPLITS, shard_bytes, shard_table
from rbprep.sharding.pipeline import SplitResult
from rbprep.sharding.sinks import Sink, SinkOutput


class ArrowSink(Sink):
    name = "arrow"
    folders = SPLITS

    def split_output(self, partition: int, split: str, result: SplitResult) -> SinkOutput:
        output = self.rows_output(result)
        if output.rows:
            row_offsets, row_tokens = result.rows
            compression = None if self.config.compression == "none" else self.config.compression
            table = shard_table(row_offsets, row_tokens, result.masks, self.vocab_size)
            output.files.append(
                (f"{split}/shard-{partition:05d}.arrow", shard_bytes(table, compression))
            )
        return output


SINK = ArrowSink
