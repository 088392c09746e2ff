"""``open_dataset``: memory-mapped shards -> padded, masked NumPy batches.

A dataset on a remote file system (a URI, see ``rbprep.storage``) is read into memory.

Before a batch is made, every shard is checked against the manifest (size and sha256,
once per process per file) and for the invariants a batch relies on: valid Arrow, ids
below the vocabulary size, rows no longer than ``seq_len``, mask positions inside their
row and group sizes that add up. Damage is an ``RbprepError`` naming the file, never a
batch built from it. ``verify`` checks everything else (the masks' rules, the layout).

A batch is assembled with NumPy index arithmetic over the shards' flat Arrow buffers:
one step per shard touched, no Python loop per row.
"""

from __future__ import annotations

import hashlib
import logging
import os
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa

from rbprep.dataset.format import (
    SPLITS,
    arrow_array,
    as_location,
    shard_schema,
)
from rbprep.dataset.manifest import Manifest, ShardRecord
from rbprep.dataset.masking import Masks, MaskTables, mask_partition_rows
from rbprep.errors import RbprepError
from rbprep.storage import Location

logger = logging.getLogger("rbprep")

IGNORE_INDEX = -100  # labels at unmasked positions, as torch's cross-entropy expects
MASKED, RANDOM, KEPT = 1, 2, 3  # ``mask_groups``: what a chosen position became


class Dataset:
    """One split of a dataset made by ``rbprep shard``; rows in corpus order.

    ``batch(indices, copy=k)`` returns ``input_ids`` (masked as copy ``k``),
    ``attention_mask`` and ``labels`` (the original id where masked, -100 elsewhere),
    each an int64 array of shape (len(indices), seq_len), and ``document_ids``, int32
    of the same shape: each position's document within its row, from 0, and -1 on
    padding (the end token that separates two documents ends the one before it, so a
    document reads ``<s> A </s>`` first in a row and ``B </s>`` after it); ``copy=None``
    returns the unmasked ``input_ids``, ``attention_mask`` and ``document_ids``.

    ``masking`` is "static" (``dup`` copies stored, ``0 <= k < dup``) or "dynamic"
    (``dup`` is None; any ``k >= 0`` is computed from the seed as the batch is made,
    equal to copy ``k`` of a static dataset of the same corpus, tokenizer and options).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", checksums: bool = True):
        self.root = as_location(root)
        self.split = split
        self.manifest = read_manifest(self.root)
        if split not in SPLITS:
            raise RbprepError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        parameters = self.manifest.parameters
        self.seq_len: int = parameters.seq_len
        self.dup: int | None = parameters.dup
        self.masking: str = self.manifest.masking
        tokenizer = self.manifest.tokenizer
        self.pad_id: int = tokenizer.pad_id
        self.mask_id: int = tokenizer.mask_id
        self.sep_id: int = tokenizer.sep_id  # ends each document in a row
        self.shards = self.manifest.splits[split].shards
        if not checksums and str(self.root) not in _UNHASHED:
            _UNHASHED.add(str(self.root))
            logger.warning(
                f"{self.root}: shards not checked against their sha256 (checksums off); "
                f"damage that keeps the format's invariants goes unseen until `rbprep verify`"
            )
        self._tables = [self._open_shard(shard, checksums) for shard in self.shards]
        counts = [table.num_rows for table in self._tables]
        self._starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])  # (shards+1,)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __repr__(self) -> str:
        return (
            f"Dataset({str(self.root)!r}, split={self.split!r}, rows={len(self)}, "
            f"seq_len={self.seq_len}, dup={self.dup})"
        )

    def lengths(self) -> np.ndarray:
        """(rows,) int64: every row's real tokens (specials included, padding not)."""
        if not self._tables:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([_lists(table.column("input_ids"))[0] for table in self._tables])

    @cached_property
    def tokenizer(self) -> Any:
        """The ``tokenizers.Tokenizer`` the dataset was made with (its own copy)."""
        from tokenizers import Tokenizer

        location = self.root.child("tokenizer.json")
        advice = f"run `rbprep verify {self.root}`, and shard again if it fails"
        try:
            data = location.read_bytes()
            tokenizer = Tokenizer.from_str(data.decode())
        except Exception as exc:  # OSError if gone; tokenizers raises plain Exception
            raise RbprepError(
                f"{location}: missing or damaged ({str(exc)[:120]}); {advice}"
            ) from exc
        if hashlib.sha256(data).hexdigest() != self.manifest.tokenizer.sha256:
            raise RbprepError(f"{location}: changed since shard (sha256 differs); {advice}")
        return tokenizer

    def _open_shard(self, shard: ShardRecord, checksums: bool) -> pa.Table:
        location = self.root.child(shard.file)
        advice = f"run `rbprep verify {self.root}`, and shard again if it fails"
        try:
            size = location.size()
        except FileNotFoundError as exc:
            raise RbprepError(f"{location}: missing; {advice}") from exc
        if size != shard.bytes:
            raise RbprepError(
                f"{location}: {size:,} bytes, the manifest says {shard.bytes:,} "
                f"(truncated or replaced); {advice}"
            )
        if checksums:
            _check_sha256(location, shard.sha256, advice)
        try:
            table = pa.ipc.open_file(location.arrow_file()).read_all()
            table.validate(full=True)
        except pa.ArrowException as exc:
            raise RbprepError(f"{location}: not a readable Arrow file ({exc}); {advice}") from exc
        vocab_size = self.manifest.tokenizer.vocab_size
        problem = _shard_problem(table, shard, vocab_size, self.seq_len, self.dup)
        if problem:
            raise RbprepError(f"{location}: {problem}; {advice}")
        return table

    def batch(
        self, indices: Any, copy: int | None = 0, *, groups: bool = False
    ) -> dict[str, np.ndarray]:
        """Rows ``indices`` as padded int64 arrays, masked as copy ``copy`` (or unmasked).

        With ``groups`` (and a copy), also ``mask_groups``: int8 of the same shape, 0 where
        not chosen, then ``MASKED``, ``RANDOM`` or ``KEPT`` (a random token may draw the
        original, so the ids alone cannot tell random from kept)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)  # (batch,)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        if copy is not None and self.dup is not None and not 0 <= copy < self.dup:
            raise IndexError(f"copy must be in 0..{self.dup - 1}, got {copy}")
        if copy is not None and copy < 0:
            raise IndexError(f"copy must be at least 0, got {copy}")
        size = len(indices)
        input_ids = np.full((size, self.seq_len), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((size, self.seq_len), dtype=np.int64)
        labels = np.full((size, self.seq_len), IGNORE_INDEX, dtype=np.int64)
        document_ids = np.full((size, self.seq_len), -1, dtype=np.int32)
        kinds = np.zeros((size, self.seq_len), dtype=np.int8) if groups else None
        shard_of = np.searchsorted(self._starts, indices, side="right") - 1  # (batch,)
        for shard in np.unique(shard_of):
            out_rows = np.flatnonzero(shard_of == shard)
            rows_in_shard = indices[out_rows] - self._starts[shard]
            table = self._tables[shard].take(arrow_array(rows_in_shard))
            masks = None
            if copy is not None and self.dup is None:  # dynamic: this copy, computed now
                masks = self._computed_masks(table, int(shard), rows_in_shard, copy)
            self._fill(
                table, out_rows, copy, masks, input_ids, attention_mask, document_ids, labels, kinds
            )
        result = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "document_ids": document_ids,
        }
        if copy is not None:
            result["labels"] = labels
            if kinds is not None:
                result["mask_groups"] = kinds
        return result

    @cached_property
    def mask_tables(self) -> MaskTables:
        """The tokenizer's tables for masking (dynamic masking computes with them)."""
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        return MaskTables.of(vocab, self.manifest.tokenizer)

    def _computed_masks(
        self, table: pa.Table, shard: int, rows_in_shard: np.ndarray, copy: int
    ) -> Masks:
        """Copy ``copy`` of the masks of ``table``'s rows, rows ``rows_in_shard`` of shard
        ``shard`` (a shard holds one partition's rows of the split, from its row 0)."""
        lengths, values = _lists(table.column("input_ids"))
        return mask_partition_rows(
            np.concatenate(([0], np.cumsum(lengths))),
            values.astype(np.uint32),
            self.mask_tables,
            self.manifest.parameters.masks,
            self.split,
            self.shards[shard].partition,
            range(copy, copy + 1),
            rows_in_shard.astype(np.uint64),
        )

    def _fill(
        self,
        table: pa.Table,
        out_rows: np.ndarray,
        copy: int | None,
        masks: Masks | None,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        document_ids: np.ndarray,
        labels: np.ndarray,
        kinds: np.ndarray | None,
    ) -> None:
        lengths, values = _lists(table.column("input_ids"))
        rows, columns = _scatter_index(out_rows, lengths)
        input_ids[rows, columns] = values
        attention_mask[rows, columns] = 1
        # A position's document: the end tokens before it in its row (the one that
        # separates two documents belongs to the first: it is that document's end).
        ends = values == self.sep_id
        ends_before = np.cumsum(ends, dtype=np.int32) - ends  # (total,), across rows
        document_ids[rows, columns] = ends_before - np.repeat(ends_before[columns == 0], lengths)
        if copy is None:
            return
        if masks is not None:  # computed: the one copy asked for
            groups = masks.groups  # (n, 1, 3)
            positions, random_tokens, copy = masks.positions, masks.random_tokens, 0
        else:  # stored: every copy, this one taken out below
            groups = _fixed(table.column("mask_groups")).reshape(-1, self.dup, 3)  # (n, dup, 3)
            _, positions = _lists(table.column("mask_positions"))
            _, random_tokens = _lists(table.column("random_tokens"))
        per_copy = groups.sum(axis=2, dtype=np.int64)  # (n, copies)
        # This copy's slice of each row's positions and random tokens.
        position_starts = _row_starts(per_copy.sum(axis=1)) + per_copy[:, :copy].sum(axis=1)
        chosen = _slices(position_starts, per_copy[:, copy])
        random_counts = groups[:, :, 1].astype(np.int64)
        random_starts = _row_starts(random_counts.sum(axis=1)) + random_counts[:, :copy].sum(axis=1)
        replacements = random_tokens[_slices(random_starts, random_counts[:, copy])]
        rows, rank = _scatter_index(out_rows, per_copy[:, copy])
        columns = positions[chosen].astype(np.int64)
        labels[rows, columns] = input_ids[rows, columns]
        masked_count = groups[:, copy, 0].astype(np.int64)
        random_count = groups[:, copy, 1].astype(np.int64)
        row_in_table = np.repeat(np.arange(len(out_rows)), per_copy[:, copy])
        is_masked = rank < masked_count[row_in_table]
        is_random = ~is_masked & (rank < (masked_count + random_count)[row_in_table])
        input_ids[rows[is_masked], columns[is_masked]] = self.mask_id
        input_ids[rows[is_random], columns[is_random]] = replacements
        if kinds is not None:
            kinds[rows, columns] = np.where(is_masked, MASKED, np.where(is_random, RANDOM, KEPT))


def open_dataset(
    root: str | os.PathLike, split: str = "train", *, checksums: bool = True
) -> Dataset:
    """Open one split (``train`` or ``valid``) of a dataset made by ``rbprep shard``.

    Each shard's size and the invariants batches rely on are always checked; its sha256
    too, unless ``checksums`` is False (then a flipped byte that keeps the invariants
    goes unseen: for a dataset verified on the same disk, when hashing costs too much).
    """
    return Dataset(root, split, checksums)


# Files whose sha256 this process has checked: (location, sha256, size, mtime_ns).
_HASHED: set[tuple[str, str, int, int]] = set()
_UNHASHED: set[str] = set()  # datasets opened without checksums (warned once)


def _check_sha256(location: Location, sha256: str, advice: str) -> None:
    """Stream ``location`` through sha256 once per process (again if it changed)."""
    modified = 0 if location.remote else os.stat(location.path).st_mtime_ns
    key = (str(location), sha256, location.size(), modified)
    if key in _HASHED:
        return
    if location.sha256() != sha256:
        raise RbprepError(f"{location}: checksum differs from the manifest (damaged); {advice}")
    _HASHED.add(key)


def _shard_problem(
    table: pa.Table, shard: ShardRecord, vocab_size: int, seq_len: int, dup: int | None
) -> str | None:
    """What in ``table`` would make a wrong batch or a crash, or None. Vectorised: one
    pass over each column, no loop per row. ``dup`` None: ids alone (dynamic masking)."""
    if not table.schema.equals(shard_schema(vocab_size, dup)):
        return "its columns differ from the format's"
    if table.num_rows != shard.rows:
        return f"{table.num_rows:,} rows, the manifest says {shard.rows:,}"
    lengths, ids = _lists(table.column("input_ids"))
    rows = (
        ((lengths < 3) | (lengths > seq_len), f"a length outside 3..{seq_len}"),
        (
            _any_per_row(ids >= vocab_size, lengths),
            f"an id outside the {vocab_size:,}-id vocabulary",
        ),
    )
    if dup is None:
        return _first_problem(rows)
    position_counts, positions = _lists(table.column("mask_positions"))
    random_counts, random_tokens = _lists(table.column("random_tokens"))
    groups = _fixed(table.column("mask_groups")).reshape(-1, dup, 3).astype(np.int64)
    problems = (  # (bad per row, what is wrong), first problem first
        *rows,
        (
            (groups.sum(axis=(1, 2)) != position_counts)
            | (groups[:, :, 1].sum(axis=1) != random_counts),
            "mask group sizes that do not match its positions",
        ),
        (
            _any_per_row(positions >= np.repeat(lengths, position_counts), position_counts),
            "a mask position beyond its end",
        ),
        (
            _any_per_row(random_tokens >= vocab_size, random_counts),
            f"a random token outside the {vocab_size:,}-id vocabulary",
        ),
    )
    return _first_problem(problems)


def _first_problem(problems: Any) -> str | None:
    """``row N has ...`` for the first (bad per row, what is wrong) that holds, or None."""
    for bad, what in problems:
        if bad.any():
            return f"row {int(np.argmax(bad))} has {what}"
    return None


def _any_per_row(flags: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(rows,) bool: does any of a row's ``lengths`` elements have its flag set."""
    bad = np.zeros(len(lengths), dtype=np.bool_)
    if flags.any():  # the row of each element only where damage is
        bad[np.repeat(np.arange(len(lengths)), lengths)[flags]] = True
    return bad


def read_manifest(root: Location | str | os.PathLike) -> Manifest:
    """The manifest of the dataset at ``root`` (a local path or a URI), checked."""
    return Manifest.read(root)


def _lists(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Lengths (int64) and flat values of a list column, zero-copy where possible."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    offsets = array.offsets.to_numpy().astype(np.int64)
    values = array.values.to_numpy()[offsets[0] : offsets[-1]]
    return np.diff(offsets), values


def _fixed(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return array.flatten().to_numpy()


def _row_starts(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def _slices(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat indices of the slices [start, start + length) of each row, in row order."""
    total = int(lengths.sum())
    offsets = np.repeat(starts - _row_starts(lengths), lengths)
    return offsets + np.arange(total, dtype=np.int64)


def _scatter_index(out_rows: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(output row, rank within the row) of every element of rows of ``lengths``."""
    rows = np.repeat(out_rows, lengths)
    rank = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(_row_starts(lengths), lengths)
    return rows, rank
