"""Sinks: each turns a partition's pipeline result into the files of one output format.

A sink knows its format only; the run (``rbprep.sharding.run``) decides which partitions
to do and where, writes what a sink returns atomically, keeps the records, and calls
``finish`` once every partition is done. A new format is one module here, registered in
``sink_for``, plus a test that reads its output with its own reader.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rbprep.dataset.manifest import FileRecord
from rbprep.sharding.config import ShardConfig
from rbprep.sharding.pipeline import SplitResult
from rbprep.sharding.records import PartitionRecord
from rbprep.storage import Location
from rbprep.tokenizer_info import TokenizerInfo


@dataclass
class SinkOutput:
    """What a sink makes of one split of a partition: the counts its record keeps and
    its files, as (name under the output, bytes or a pyarrow Buffer)."""

    rows: int  # packed rows, or Megatron's sequences
    tokens: int  # stored tokens, specials included
    length_histogram: dict[str, int]
    files: list[tuple[str, Any]] = field(default_factory=list)


class Sink:
    """The base of every format: what the run asks of one.

    ``folders`` are made (and cleared of a killed run's ``.tmp`` files) before the
    partitions run; ``outputs`` are the names ``--force`` clears besides them; where
    ``partition_shards``, each partition's one file per split is a shard the manifest
    lists with its rows."""

    name = ""
    folders: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    partition_shards = True

    def __init__(self, config: ShardConfig, info: TokenizerInfo) -> None:
        self.config = config
        self.vocab_size = info.vocab_size
        self.end_id = info.sep_id  # ends a document: </s> or [SEP]

    def split_output(self, partition: int, split: str, result: SplitResult) -> SinkOutput:
        raise NotImplementedError

    def rows_output(self, result: SplitResult) -> SinkOutput:
        """A split's packed rows counted (no files yet), for the sinks that store rows."""
        assert result.rows is not None
        row_offsets = result.rows[0]
        return SinkOutput(
            rows=len(row_offsets) - 1,
            tokens=int(row_offsets[-1]),
            length_histogram=length_histogram(np.diff(row_offsets), self.config.seq_len),
        )

    def finish(
        self, out_dir: Location, records: list[PartitionRecord]
    ) -> dict[str, list[FileRecord]]:
        """Write the files that join the partitions' (``records``, in partition order),
        once all are done; return them per split for the manifest."""
        return {}

    def finished(self, out_dir: Location) -> None:
        """Remove what only the run needed, once the manifest is written."""


def sink_class(format: str) -> type[Sink]:
    """The sink of ``format`` (one of ``config.FORMATS``)."""
    module = importlib.import_module(f"rbprep.sharding.sinks.{format}")
    return module.SINK


def sink_for(config: ShardConfig, info: TokenizerInfo) -> Sink:
    """The sink that writes ``config.format``."""
    return sink_class(config.format)(config, info)


def length_histogram(lengths: np.ndarray, seq_len: int) -> dict[str, int]:
    """Counts of ``lengths`` in 8 bins up to ``seq_len``, labelled "lo-hi" (inclusive)."""
    edges = np.linspace(0, seq_len, 9).astype(np.int64)
    # Bins are [lo, hi); a length L belongs to "lo+1-hi" when L - 1 is in [lo, hi).
    counts, _ = np.histogram(lengths - 1, bins=edges)
    return {f"{lo + 1}-{hi}": int(n) for lo, hi, n in zip(edges, edges[1:], counts, strict=False)}
