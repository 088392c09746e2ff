"""``open_dataset``: memory-mapped shards -> padded, masked NumPy batches.

A dataset on a remote file system (a URI, see ``rbprep.storage``) is fetched shard by
shard as batches need them, into a local folder of bounded size (``_ShardCache``).

Before a batch is made, every shard is checked against the manifest (size and sha256,
once per process per file) and for the invariants a batch relies on: valid Arrow, ids
below the vocabulary size, rows no longer than ``seq_len``, mask positions inside their
row and group sizes that add up. Damage is an ``RbprepError`` naming the file, never a
batch built from it. ``verify`` checks everything else (the masks' rules, the layout).

A batch costs O(its rows), never O(the shards it touches): at open, each shard's
record batches give zero-copy NumPy views of their memory-mapped Arrow buffers (list
offsets and values), held in numba typed lists; a batch is gathered from any shards by
one kernel call (``kernels.gather_rows``), its stored masks decoded by one more
(``kernels.gather_masks``), or computed for the batch's rows by the one masking function
(``kernels.mask_rows``) and applied (``kernels.apply_masks``). The kernels release the
GIL. No Arrow call is made per batch.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa

from rbprep import kernels
from rbprep.dataset.format import SPLITS, as_location, id_dtype, shard_schema
from rbprep.dataset.manifest import Manifest, ShardRecord
from rbprep.dataset.masking import Masks, MaskTables, mask_partition_rows
from rbprep.errors import RbprepError
from rbprep.storage import Location

logger = logging.getLogger("rbprep")

# Exchanges this rank's finding (a one-line problem, or None) with every rank's; returns
# them all (``train.distributed``'s, under torchrun).
Agree = Callable[[str | None], list[str | None]]
# What reads a dataset written with --format megatron or mds (rbprep's reader does not).
OTHER_READERS = {
    "megatron": "holds Megatron-Core files (--format megatron), which rbprep's reader does not "
    "read: give Megatron --data-path DATA/train, or open IndexedDataset('DATA/train')",
    "mds": "holds MosaicML Streaming shards (--format mds), which rbprep's reader does not "
    "read: open streaming.StreamingDataset(local='DATA/train')",
}
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

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        checksums: bool = True,
        share: tuple[int, int] = (0, 1),
        agree: Agree | None = None,
        cache_bytes: int | None = None,
    ):
        self.root = as_location(root)
        self.split = split
        self.manifest = read_manifest(self.root)
        if self.manifest.output != "arrow":
            raise RbprepError(f"{self.root}: {OTHER_READERS[self.manifest.output]}")
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
        advice = f"run `rbprep verify {self.root}`, and shard again if it fails"
        self._cache: _ShardCache | None = None
        if self.root.remote:  # fetched as batches need them, checked on arrival
            self._cache = _ShardCache(self, checksums, advice, cache_bytes)
            self._parts = self._cache.parts
            return
        self._tables = [self._open_shard(shard, checksums, advice) for shard in self.shards]
        self._parts = _Parts.of(self._tables, self.dup)
        found = self._check_share(share, checksums, advice)
        findings = [found] if agree is None else agree(found)
        problem = next((finding for finding in findings if finding is not None), None)
        if problem is not None:
            raise RbprepError(problem)

    def __len__(self) -> int:
        return int(self._parts.starts[-1])

    def __repr__(self) -> str:
        return (
            f"Dataset({str(self.root)!r}, split={self.split!r}, rows={len(self)}, "
            f"seq_len={self.seq_len}, dup={self.dup})"
        )

    def lengths(self) -> np.ndarray:
        """(rows,) int64: every row's real tokens (specials included, padding not). A
        remote dataset's are read shard by shard through its cache (once per process)."""
        if not self.shards:
            return np.zeros(0, dtype=np.int64)
        if self._cache is not None:
            return self._cache.lengths()
        offsets = self._parts.arrays["id_offsets"]
        return np.concatenate([np.diff(o) for o in offsets]).astype(np.int64)

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

    def _open_shard(
        self, shard: ShardRecord, checksums: bool, advice: str, local: str | None = None
    ) -> pa.Table:
        """The shard's table, memory-mapped, once its size, format and rows are as the
        manifest says (what every rank checks of every shard: no pass over its data). A
        file Arrow cannot read is hashed (where ``checksums``), to say it is damaged.
        ``local``: the file's copy to read (a remote shard's, fetched into the cache)."""
        location = self.root.child(shard.file)
        try:
            size = os.stat(local).st_size if local else location.size()
        except FileNotFoundError as exc:
            raise RbprepError(f"{location}: missing; {advice}") from exc
        if size != shard.bytes:
            raise RbprepError(
                f"{location}: {size:,} bytes, the manifest says {shard.bytes:,} "
                f"(truncated or replaced); {advice}"
            )
        try:
            source = pa.memory_map(local) if local else location.arrow_file()
            table = pa.ipc.open_file(source).read_all()
            table.validate(full=True)
        except (pa.ArrowException, OSError) as exc:  # a damaged footer is an OSError
            damage = checksums and _sha256_problem(location, shard.sha256)
            what = damage or f"not a readable Arrow file ({exc})"
            raise RbprepError(f"{location}: {what}; {advice}") from exc
        vocab_size = self.manifest.tokenizer.vocab_size
        if not table.schema.equals(shard_schema(vocab_size, self.dup)):
            raise RbprepError(f"{location}: its columns differ from the format's; {advice}")
        if table.num_rows != shard.rows:
            raise RbprepError(
                f"{location}: {table.num_rows:,} rows, the manifest says {shard.rows:,}; {advice}"
            )
        return table

    def _check_share(self, share: tuple[int, int], checksums: bool, advice: str) -> str | None:
        """Check this rank's share of the shards (``share``: rank and world size; shard
        ``i`` is rank ``i % world``'s): each one's sha256 (where ``checksums``), on a
        thread, while this one runs the invariants kernel over its buffers; both leave
        the GIL free and read at memory speed. The first problem, in shard order, as the
        one-line error that names the file, or None."""
        rank, world = share
        if not 0 <= rank < world:
            raise RbprepError(
                f"share must be (rank, world size) with 0 <= rank < world, not {share}"
            )
        mine = range(rank, len(self.shards), world)
        locations = {i: self.root.child(self.shards[i].file) for i in mine}
        hashing = None
        if checksums and mine:
            hashing = ThreadPoolExecutor(1, thread_name_prefix="rbprep-sha256")
            hashed = {
                i: hashing.submit(_sha256_problem, locations[i], self.shards[i].sha256)
                for i in mine
            }
        problems: dict[int, str] = {}
        try:
            vocab_size = self.manifest.tokenizer.vocab_size
            for part in np.flatnonzero(np.isin(self._parts.shard, list(mine))).tolist():
                shard = int(self._parts.shard[part])
                if shard in problems:
                    continue
                found = kernels.shard_invariants(
                    *self._parts.buffers(part), self.dup or 0, self.seq_len, vocab_size
                )
                if found is not None:
                    what, row = found
                    row += int(self._parts.first_row[part])
                    problems[shard] = f"row {row} has {what}"
            if hashing is not None:
                for i, future in hashed.items():
                    if future.result():  # a checksum that differs comes before all else
                        problems[i] = future.result()
        finally:
            if hashing is not None:
                hashing.shutdown(cancel_futures=True)
        if not problems:
            return None
        first = min(problems)
        return f"{locations[first]}: {problems[first]}; {advice}"

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
        document_ids = np.full((size, self.seq_len), -1, dtype=np.int32)
        parts = self._parts
        part_of = np.searchsorted(parts.starts, indices, side="right") - 1  # (batch,)
        rows = indices - parts.starts[part_of]  # (batch,) row within its record batch
        if self._cache is not None and size:  # its shards fetched and mapped, if not yet
            self._cache.hold(np.unique(part_of).tolist())
        if size:
            lengths = kernels.gather_rows(
                *parts.id_lists, part_of, rows, self.sep_id, input_ids, attention_mask,
                document_ids,
            )  # fmt: skip
        result = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "document_ids": document_ids,
        }
        if copy is None:
            return result
        labels = np.full((size, self.seq_len), IGNORE_INDEX, dtype=np.int64)
        kinds = np.zeros((size, self.seq_len) if groups else (0, 0), dtype=np.int8)
        if size and self.dup is None:  # dynamic: this copy of these rows, computed now
            masks = self._computed_masks(input_ids, attention_mask, lengths, part_of, rows, copy)
            kernels.apply_masks(
                masks.position_offsets, masks.positions, masks.groups, masks.random_offsets,
                masks.random_tokens, self.mask_id, input_ids, labels, kinds,
            )  # fmt: skip
        elif size:
            kernels.gather_masks(
                *parts.masks, part_of, rows, copy, self.dup, self.mask_id, input_ids, labels,
                kinds,
            )  # fmt: skip
        result["labels"] = labels
        if groups:
            result["mask_groups"] = kinds
        return result

    @cached_property
    def _partitions(self) -> np.ndarray:
        """(shards,) uint64: each shard's partition, which keys its rows' masks."""
        return np.array([record.partition for record in self.shards], dtype=np.uint64)

    @cached_property
    def mask_tables(self) -> MaskTables:
        """The tokenizer's tables for masking (dynamic masking computes with them)."""
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        return MaskTables.of(vocab, self.manifest.tokenizer)

    def _computed_masks(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        lengths: np.ndarray,
        part_of: np.ndarray,
        rows: np.ndarray,
        copy: int,
    ) -> Masks:
        """Copy ``copy`` of the masks of the gathered rows (``input_ids`` before masking,
        ``lengths`` (batch,) long), row ``rows[b]`` of record batch ``part_of[b]``: each
        keyed by its shard's partition and its index within the shard, as ``shard``
        keys them (a shard holds one partition's rows of the split, from its row 0)."""
        parts = self._parts
        shard = parts.shard[part_of]  # (batch,)
        return mask_partition_rows(
            np.concatenate(([0], np.cumsum(lengths))),
            input_ids[attention_mask.astype(np.bool_)].astype(np.uint32),  # rows, unpadded
            self.mask_tables,
            self.manifest.parameters.masks,
            self.split,
            self._partitions[shard],
            range(copy, copy + 1),
            (parts.first_row[part_of] + rows).astype(np.uint64),
        )


class _ShardCache:
    """A remote dataset's shards, fetched when a batch first needs them into a local
    folder of bounded size, checked on arrival (size, sha256 while downloading, format,
    rows and the invariants kernel), and memory-mapped from there. Least recently used
    shards leave the folder (and the reading kernels' lists) when it passes its bound;
    the shards of the batch being made never do, so one batch may pass it alone.

    The folder is ``cache_bytes``'s bound (default ``RBPREP_DATASET_CACHE_BYTES``, else 4
    GiB) under ``default_cache_dir()/datasets/``, one per dataset (its manifest's sha256).
    A shard is one part (several record batches are joined, in memory)."""

    def __init__(
        self, dataset: Dataset, checksums: bool, advice: str, cache_bytes: int | None
    ) -> None:
        from rbprep.cache import default_cache_dir

        self.dataset, self.checksums, self.advice = dataset, checksums, advice
        limit = cache_bytes or int(os.environ.get("RBPREP_DATASET_CACHE_BYTES", 4 * 2**30))
        self.limit = limit
        manifest = dataset.root.child("manifest.json").read_bytes()
        key = hashlib.sha256(manifest).hexdigest()[:24]
        self.directory = default_cache_dir() / "datasets" / f"{key}-{dataset.split}"
        self.directory.mkdir(parents=True, exist_ok=True)
        shards = dataset.shards
        ids = id_dtype(dataset.manifest.tokenizer.vocab_size)
        counts = [shard.rows for shard in shards]
        empty_offsets = np.zeros(1, dtype=np.int32)
        placeholders = {
            "id_offsets": empty_offsets,
            "id_values": np.zeros(0, dtype=ids),
            "position_offsets": empty_offsets,
            "positions": np.zeros(0, dtype=np.uint16),
            "groups": np.zeros(0, dtype=np.uint16),
            "random_offsets": empty_offsets,
            "random_tokens": np.zeros(0, dtype=ids),
        }
        for array in placeholders.values():  # as Arrow's views are: typed lists take one type
            array.flags.writeable = False
        names = _PART_BUFFERS if dataset.dup is not None else _PART_BUFFERS[:2]
        self.placeholders = {name: placeholders[name] for name in names}
        self.parts = _Parts(
            starts=np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
            shard=np.arange(len(shards), dtype=np.int64),
            first_row=np.zeros(len(shards), dtype=np.int64),
            arrays={
                name: [placeholders[name]] * len(shards) if name in names else []
                for name in _PART_BUFFERS
            },
        )
        self.resident: dict[int, int] = {}  # shard -> bytes on disk, least recently used first
        self._lengths: np.ndarray | None = None

    def hold(self, needed: list[int]) -> None:
        """Make shards ``needed`` resident (fetched, checked, mapped), then evict the least
        recently used others while the folder is past its bound."""
        for shard in needed:
            if shard in self.resident:
                self.resident[shard] = self.resident.pop(shard)  # now the most recent
            else:
                self._fetch(shard)
        held = set(needed)
        for shard in list(self.resident):
            if sum(self.resident.values()) <= self.limit:
                break
            if shard not in held:
                self._evict(shard)

    def lengths(self) -> np.ndarray:
        """(rows,) int64: every row's real tokens, each shard's read once through the
        cache (the reading kernels' bound holds meanwhile)."""
        if self._lengths is None:
            parts = []
            for shard in range(len(self.dataset.shards)):
                self.hold([shard])
                parts.append(np.diff(self.parts.arrays["id_offsets"][shard]).astype(np.int64))
            self._lengths = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return self._lengths

    def _fetch(self, shard: int) -> None:
        record = self.dataset.shards[shard]
        location = self.dataset.root.child(record.file)
        local = self.directory / f"{record.sha256}.arrow"
        if not local.exists() or local.stat().st_size != record.bytes:
            partial = local.with_name(f"{local.name}.{os.getpid()}.part")
            digest = hashlib.sha256()
            try:
                with location.open() as source, open(partial, "wb") as target:
                    while block := source.read(1 << 22):
                        digest.update(block)
                        target.write(block)
            except FileNotFoundError as exc:
                partial.unlink(missing_ok=True)
                raise RbprepError(f"{location}: missing; {self.advice}") from exc
            if self.checksums and digest.hexdigest() != record.sha256:
                partial.unlink(missing_ok=True)
                raise RbprepError(
                    f"{location}: checksum differs from the manifest (damaged); {self.advice}"
                )
            os.replace(partial, local)
        try:
            table = self.dataset._open_shard(record, False, self.advice, str(local))
        except RbprepError:
            local.unlink(missing_ok=True)  # fetched again next time, not kept damaged
            raise
        if table.num_columns and table.column(0).num_chunks != 1:
            table = table.combine_chunks()
        parts = _Parts.of([table], self.dataset.dup)
        problem = kernels.shard_invariants(
            *parts.buffers(0),
            self.dataset.dup or 0,
            self.dataset.seq_len,
            self.dataset.manifest.tokenizer.vocab_size,
        )
        if problem is not None:
            local.unlink(missing_ok=True)
            raise RbprepError(f"{location}: row {problem[1]} has {problem[0]}; {self.advice}")
        self._place(shard, {name: parts.arrays[name][0] for name in self.placeholders})
        self.resident[shard] = record.bytes

    def _evict(self, shard: int) -> None:
        self._place(shard, self.placeholders)
        del self.resident[shard]
        record = self.dataset.shards[shard]
        (self.directory / f"{record.sha256}.arrow").unlink(missing_ok=True)

    def _place(self, shard: int, arrays: dict[str, np.ndarray]) -> None:
        """Set shard ``shard``'s buffers, in the views and, once made, the typed lists."""
        lists = self.parts.__dict__.get("lists")  # the cached property, if made
        for name, array in arrays.items():
            self.parts.arrays[name][shard] = array
            if lists is not None:
                lists[name][shard] = array


@dataclass(frozen=True)
class _Parts:
    """The record batches of a split's shards, in row order, as the reading kernels take
    them: zero-copy views of their Arrow buffers, and the same in numba typed lists (one
    entry each), made when the first batch is (they load numba; the checks at open do
    not need it)."""

    starts: np.ndarray  # (parts + 1,) int64: the split's row where each starts
    shard: np.ndarray  # (parts,) int64: its shard
    first_row: np.ndarray  # (parts,) int64: its first row's index within its shard
    arrays: dict[str, list[np.ndarray]]  # _PART_BUFFERS -> one zero-copy view per part

    @cached_property
    def lists(self) -> dict[str, Any]:
        """``_PART_BUFFERS`` -> the parts' views as a typed list (those the split has)."""
        return {name: kernels.typed_list(views) for name, views in self.arrays.items() if views}

    @property
    def id_lists(self) -> tuple[Any, Any]:
        """input_ids list offsets and values, as typed lists."""
        return self.lists["id_offsets"], self.lists["id_values"]

    @property
    def masks(self) -> tuple[Any, ...]:
        """The stored masks' typed lists: position offsets and values, groups (flat),
        random token offsets and values."""
        return tuple(self.lists[name] for name in _PART_BUFFERS[2:])

    @classmethod
    def of(cls, tables: list[pa.Table], dup: int | None) -> _Parts:
        counts, shards, first_rows = [], [], []
        columns: dict[str, list[np.ndarray]] = {name: [] for name in _PART_BUFFERS}
        for index, table in enumerate(tables):
            first = 0
            for batch in table.to_batches():
                counts.append(batch.num_rows)
                shards.append(index)
                first_rows.append(first)
                first += batch.num_rows
                columns["id_offsets"].append(batch.column("input_ids").offsets.to_numpy())
                columns["id_values"].append(batch.column("input_ids").values.to_numpy())
                if dup is not None:
                    positions = batch.column("mask_positions")
                    randoms = batch.column("random_tokens")
                    columns["position_offsets"].append(positions.offsets.to_numpy())
                    columns["positions"].append(positions.values.to_numpy())
                    columns["groups"].append(batch.column("mask_groups").flatten().to_numpy())
                    columns["random_offsets"].append(randoms.offsets.to_numpy())
                    columns["random_tokens"].append(randoms.values.to_numpy())
        return cls(
            starts=np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
            shard=np.array(shards, dtype=np.int64),
            first_row=np.array(first_rows, dtype=np.int64),
            arrays=columns,
        )

    def buffers(self, part: int) -> tuple[np.ndarray, np.ndarray, tuple | None]:
        """Part ``part``'s input_ids offsets and values, and its stored masks' five
        buffers (None: dynamic), as ``kernels.shard_invariants`` takes them."""
        arrays = self.arrays
        masks = None
        if arrays["groups"]:
            masks = tuple(arrays[name][part] for name in _PART_BUFFERS[2:])
        return arrays["id_offsets"][part], arrays["id_values"][part], masks


# The buffers ``_Parts`` takes from each record batch, in the reading kernels' order.
_PART_BUFFERS = (
    "id_offsets",
    "id_values",
    "position_offsets",
    "positions",
    "groups",
    "random_offsets",
    "random_tokens",
)


def open_dataset(
    root: str | os.PathLike,
    split: str = "train",
    *,
    checksums: bool = True,
    share: tuple[int, int] = (0, 1),
    agree: Agree | None = None,
    cache_bytes: int | None = None,
) -> Dataset:
    """Open one split (``train`` or ``valid``) of a dataset made by ``rbprep shard``.

    Every shard's size, format and row count are checked, and the invariants batches
    rely on (a kernel over its buffers); its sha256 too, unless ``checksums`` is False
    (then a flipped byte that keeps the invariants goes unseen: for a dataset verified on
    the same disk, when hashing costs too much). Damage is an ``RbprepError`` naming the
    file, before any batch.

    Ranks of a distributed run divide that work: with ``share`` (rank, world size), this
    process hashes and checks shards ``rank``, ``rank + world``, ...; ``agree`` then
    exchanges its finding with every rank's (``train.distributed.agree``), so that damage
    any rank finds stops them all, and none makes a batch from a shard that failed.

    A dataset on an object store (a URI) opens without reading its shards: each is
    fetched when a batch first needs it into a local folder of at most ``cache_bytes``
    (default ``$RBPREP_DATASET_CACHE_BYTES``, else 4 GiB; a batch's own shards stay
    whatever their size), checked on arrival as above, and memory-mapped from there, so
    memory does not grow with the dataset.
    """
    return Dataset(root, split, checksums, share, agree, cache_bytes)


# Files whose sha256 this process has checked: (location, sha256, size, mtime_ns).
_HASHED: set[tuple[str, str, int, int]] = set()
_UNHASHED: set[str] = set()  # datasets opened without checksums (warned once)


def _sha256_problem(location: Location, sha256: str) -> str | None:
    """What is wrong with ``location``'s sha256, or None: streamed once per process (again
    if the file changed), on a thread (hashlib and reads leave the GIL free)."""
    modified = 0 if location.remote else os.stat(location.path).st_mtime_ns
    key = (str(location), sha256, location.size(), modified)
    if key in _HASHED:
        return None
    if location.sha256() != sha256:
        return "checksum differs from the manifest (damaged)"
    _HASHED.add(key)
    return None


def read_manifest(root: Location | str | os.PathLike) -> Manifest:
    """The manifest of the dataset at ``root`` (a local path or a URI), checked."""
    return Manifest.read(root)
