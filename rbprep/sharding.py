"""``shard``: tokenise, pack into rows, mask ``dup`` copies, write Arrow shards.

The work is one task per corpus partition (``shard_partition``); its output depends
only on (config, partition), so the run around it (``shard``) may run tasks in any
order, in any number of processes, and skip those an interrupted run finished: a
partition is done when its marker ``.parts/NNNNN.json`` exists, which is written after
its shard files were renamed into place. The manifest is written last.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from rbprep import __version__
from rbprep.aot import kernels_in_use
from rbprep.corpus import Corpus, Partition, ReadStats, TextLines, document_coin, open_corpus
from rbprep.dataset.format import (
    MANIFEST,
    SPLITS,
    read_json,
    shard_bytes,
    shard_table,
    write_json_atomically,
)
from rbprep.dataset.manifest import (
    CorpusRecord,
    EncoderRecord,
    Manifest,
    ShardParameters,
    ShardRecord,
    SplitRecord,
    TokenizerRecord,
    Totals,
)
from rbprep.dataset.masking import (
    STREAMS,
    MaskParameters,
    Masks,
    MaskTables,
    mask_partition_rows,
)
from rbprep.encoding import (
    CHECK_FRACTION,
    REFERENCE_NAME,
    Encoder,
    EncoderId,
    EncoderMismatch,
    FastEncoder,
    ReferenceEncoder,
    check_sample,
    document_starts,
    open_encoder,
    sample_units,
    start_fast_encoder,
)
from rbprep.errors import RbprepError
from rbprep.executors import THREADS_PER_PROCESS, run_tasks
from rbprep.progress import ByteProgress
from rbprep.sizes import counted, format_size
from rbprep.storage import Location, WriteBehind, check_output_directory, json_bytes
from rbprep.tokenizer_info import (
    TokenizerInfo,
    encoding_tokenizer,
    load_tokenizer,
    tokenizer_file,
    vocabulary,
)

MODES = ("full-sentences", "doc-sentences")
MASKINGS = ("static", "dynamic")  # masks stored (dup copies), or computed per epoch
DEFAULT_DUP = 10
COMPRESSIONS = ("none", "zstd", "lz4")
# A partition's stages, in order (``shard --json``'s ``stage_seconds``); "kernels" is the
# wait for the kernels to load (``rbprep.aot``), on a process's first partitions only.
STAGES = ("read", "encode", "kernels", "pack_mask", "write")
_PARTS = ".parts"
_RUN = ".run.json"
_LOCK = ".lock"
logger = logging.getLogger("rbprep")


@dataclass(frozen=True)
class ShardConfig:
    """Parameters of ``shard`` that decide its output; CLI options carry the same names."""

    seq_len: int = 512
    dup: int | None = None  # stored masked copies; None: 10 (static), none (dynamic)
    masking: str = "static"
    mode: str = "full-sentences"
    mask_prob: float = 0.15
    random_prob: float = 0.1
    keep_prob: float = 0.1
    whole_word: bool = False
    seed: int = 0
    valid_fraction: float = 0.01
    compression: str = "none"

    @property
    def max_predictions(self) -> int:
        """The cap on masked positions per copy: ceil(mask_prob * (seq_len - 2))."""
        return int(np.ceil(self.mask_prob * (self.seq_len - 2) - 1e-9))

    @property
    def copies(self) -> int | None:
        """Masked copies stored per row: ``dup`` (10 by default) under static masking,
        None under dynamic masking (any copy is computed when a batch is made)."""
        if self.masking == "dynamic":
            return None
        return DEFAULT_DUP if self.dup is None else self.dup

    def parameters(self) -> ShardParameters:
        """The manifest's ``parameters``: the fields (``dup`` as stored copies, None
        under dynamic masking) and ``max_predictions``."""
        return ShardParameters(
            **{**asdict(self), "dup": self.copies, "max_predictions": self.max_predictions}
        )

    @classmethod
    def of(cls, parameters: ShardParameters) -> ShardConfig:
        """The config a dataset with these ``parameters`` was made with."""
        names = {field.name for field in fields(cls)}
        return cls(**{k: v for k, v in asdict(parameters).items() if k in names})

    def check(self) -> None:
        if not 8 <= self.seq_len <= 65535:
            raise RbprepError(f"--seq-len must be in 8..65535, got {self.seq_len}")
        if self.masking not in MASKINGS:
            raise RbprepError(f"--masking must be one of {', '.join(MASKINGS)}")
        if self.masking == "dynamic" and self.dup is not None:
            raise RbprepError(
                f"--dup {self.dup} stores masked copies; --masking dynamic computes a new one "
                "for every epoch instead: give one or the other"
            )
        if self.copies is not None and not 1 <= self.copies <= 255:
            raise RbprepError(f"--dup must be in 1..255, got {self.copies}")
        if self.mode not in MODES:
            raise RbprepError(f"--mode must be one of {', '.join(MODES)}")
        if self.compression not in COMPRESSIONS:
            raise RbprepError(f"--compression must be one of {', '.join(COMPRESSIONS)}")
        if not 0 < self.mask_prob < 1:
            raise RbprepError("--mask-prob must be between 0 and 1")
        if self.random_prob < 0 or self.keep_prob < 0 or self.random_prob + self.keep_prob > 1:
            raise RbprepError("--random-prob and --keep-prob must be >= 0 and sum to at most 1")
        if not 0 <= self.valid_fraction < 1:
            raise RbprepError("--valid-fraction must be in [0, 1)")
        if not 0 <= self.seed < 2**64:
            raise RbprepError(f"--seed must be in 0..2**64-1, got {self.seed}")


@dataclass
class ShardSummary:
    """What ``shard`` did; ``as_dict()`` is the ``--json`` output."""

    out: str
    manifest: Manifest
    partitions: int
    partitions_resumed: int
    seconds: float
    text_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "manifest": self.manifest.to_json()}

    def report(self) -> str:
        totals = self.manifest.totals
        lines = [
            f"Sharded {format_size(self.text_bytes)} read in {self.seconds:.1f} s "
            f"({self.text_bytes / 1e6 / max(self.seconds, 1e-9):.2f} MB/s): "
            f"{totals.documents:,} documents, {totals.content_tokens:,} tokens of text",
        ]
        for split in SPLITS:
            info = self.manifest.splits[split]
            lines.append(
                f"  {split:<6} {info.rows:>9,} rows  {info.tokens:>12,} tokens with "
                f"specials  {counted(len(info.shards), 'shard'):<10}  "
                f"{format_size(info.bytes)}"
            )
        valid_fraction = self.manifest.parameters.valid_fraction
        if valid_fraction and not self.manifest.splits["valid"].rows:
            lines.append(
                f"  valid is empty: of {counted(totals.documents, 'document')}, none fell to "
                f"--valid-fraction {valid_fraction}; pretrain will have no validation loss"
            )
        lines.append(
            f"Padding {totals.padding_share:.1%} of {totals.slots:,} slots; "
            f"{totals.bytes_per_token:.2f} bytes on disk per stored token "
            + (
                f"({counted(dup, 'masked copy', 'masked copies')})."
                if (dup := self.manifest.parameters.dup) is not None
                else "(ids only: masks are computed for each epoch, --masking dynamic)."
            )
        )
        problems = ReadStats.from_dict(totals.read).problems()
        if problems:
            lines.append(problems)
        encoder = self.manifest.encoder
        note = self.extra.get("encoder_note")
        lines.append(f"Encoded by {encoder.describe()}" + (f" ({note})." if note else "."))
        if self.partitions_resumed:
            lines.append(f"Resumed: {counted(self.partitions_resumed, 'partition')} already done.")
        lines.append(f"-> {self.out}")
        return "\n".join(lines)


# --- one partition ------------------------------------------------------------------------


@dataclass(frozen=True)
class _TokenizerWork:
    """What a process needs of a tokenizer to shard, made once per process and tokenizer
    (reading the vocabulary takes a second on a 50K BPE)."""

    info: TokenizerInfo
    reference: Any  # tokenizers.Tokenizer, as encoding_tokenizer sets it up
    encoder: Encoder  # the encoder the run chose
    checker: Encoder | None  # the reference encoder, where ``encoder`` is not it
    mask_tables: MaskTables  # never masked, random replacements, word starts
    injectable: np.ndarray  # (vocab,) bool: specials that text must never encode to
    not_fast: str | None  # why ``encoder`` is the reference, where the fast one was asked


_tokenizer_work: dict[tuple[str, str], _TokenizerWork] = {}  # (sha256, encoder) -> work
_tokenizer_work_lock = threading.Lock()


def _work_for(tokenizer_path: str, info: TokenizerInfo, encoder: str) -> _TokenizerWork:
    """This process's ``_TokenizerWork`` for the tokenizer ``info`` describes, keyed by
    its digest (a long-lived worker may see several runs' tokenizers at one path)."""
    key = (info.sha256, encoder)
    with _tokenizer_work_lock:
        if key not in _tokenizer_work:
            _tokenizer_work[key] = _make_work(tokenizer_path, info, encoder)
        return _tokenizer_work[key]


@dataclass(frozen=True)
class _Loading:
    """The tokenizer.json as shard read it first, for ``load_tokenizer`` to use: its
    bytes, the bytes parsed, and tokie loading it on a thread (None where tokie will not
    be used)."""

    data: bytes
    config: dict[str, Any]
    fast: Future[FastEncoder] | None


def _fast_encoder_loading(tokenizer: str | os.PathLike, encoder: str) -> _Loading | None:
    """Start tokie loading ``tokenizer`` on a thread while the caller loads it with
    tokenizers; None where the file is not a tokenizer.json (``load_tokenizer`` then
    says why). Both loads hold the GIL, so the thread gains little where tokie parses
    the JSON; from tokie's cached form (``encoding.tokie_cache_file``) it takes 9 ms."""
    try:
        data = tokenizer_file(tokenizer).read_bytes()
        config = json.loads(data)
        if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
            return None
        sha256 = hashlib.sha256(data).hexdigest()
        return _Loading(data, config, start_fast_encoder(config, encoder, sha256))
    except (OSError, ValueError, TypeError, AttributeError, RbprepError):
        return None


def _make_work(
    tokenizer_path: str,
    info: TokenizerInfo,
    encoder: str,
    reference: Any = None,
    loading: _Loading | None = None,
) -> _TokenizerWork:
    """``loading``: what the run read of this tokenizer at its start, if the same bytes."""
    data = Location(tokenizer_path).read_bytes()
    if hashlib.sha256(data).hexdigest() != info.sha256:
        raise RbprepError(
            f"{tokenizer_path}: changed while the run was going on; rerun with --resume"
        )
    config = json.loads(data) if loading is None else loading.config
    if reference is None:
        reference = encoding_tokenizer(Location(tokenizer_path), data, config)
    chosen, reason = open_encoder(
        reference,
        config,
        info.line_break_id,
        encoder,
        tokenizer_path,
        None if loading is None else loading.fast,
        info.sha256,
    )
    special = info.special_mask()
    injectable = special.copy()
    # The unknown token is the model's own answer to text it cannot spell; any other
    # special in the encoding came from text spelling it.
    if info.unk_id is not None:
        injectable[info.unk_id] = False
    return _TokenizerWork(
        info=info,
        reference=reference,
        encoder=chosen,
        checker=None
        if isinstance(chosen, ReferenceEncoder)
        else ReferenceEncoder(reference, info.line_break_id),
        mask_tables=MaskTables.of(vocabulary(reference), info),
        injectable=injectable,
        not_fast=reason,
    )


@dataclass
class _SplitText:
    """One split of a partition as read: its documents' lines, one after another, and
    where each document starts (``encoding.units_of`` gives the units encoded)."""

    lines: list[str] | TextLines = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # (documents,) lines in each

    @property
    def documents(self) -> int:
        return len(self.sizes)

    @functools.cached_property
    def starts(self) -> np.ndarray:
        """(lines,) bool: a document starts at this line."""
        return document_starts(self.sizes)


def _shard_partition_task(
    tokenizer_path: str,
    info: TokenizerInfo,
    config: ShardConfig,
    out: str,
    encoder: str,
    check_fraction: float,
    writes: WriteBehind | None,
    job: Corpus,
) -> dict[str, Any]:
    """Shard ``job``'s one partition (``Corpus.for_partition``)."""
    return shard_partition(
        job,
        job.partitions[0],
        tokenizer_path,
        info,
        config,
        out,
        encoder,
        check_fraction,
        writes=writes,
    )


def shard_partition(
    corpus: Corpus,
    partition: Partition,
    tokenizer_path: str,
    info: TokenizerInfo,
    config: ShardConfig,
    out: str,
    encoder: str = "auto",
    check_fraction: float = CHECK_FRACTION,
    *,
    writes: WriteBehind | None = None,
) -> dict[str, Any]:
    """Read, tokenise, pack, mask and write one partition; return its record.

    ``info`` is the tokenizer's as ``load_tokenizer`` resolved it where the run started
    (the roles may come from files beside the tokenizer that a worker cannot see); the
    worker loads only the tokenizer.json at ``tokenizer_path``. ``encoder`` is an
    ``rbprep.encoding.ENCODER_CHOICES``; where the fast encoder is used, the first unit
    of each split and ``check_fraction`` of the others (``encoding.sample_units``) are
    re-encoded by the reference, and a difference raises ``EncoderMismatch`` before
    anything is written.

    Writes ``out/{train,valid}/shard-NNNNN.arrow`` (a split with no rows gets no file)
    and then the marker ``out/.parts/NNNNN.json`` holding the returned record, less its
    ``seconds`` (the time each stage took). With ``writes``, those files are queued there
    and may not be written yet on return (``WriteBehind.wait``); without, they are.
    """
    warm = _kernels_warming()
    work = _work_for(tokenizer_path, info, encoder)
    clock = _StageClock()
    stats = ReadStats()
    texts = _read_stage(
        corpus, partition, config, stats, joined=work.encoder.line_break_id is not None
    )
    clock.lap("read")
    encoded = {
        split: _encode_stage(work, split, texts[split], corpus, partition, info, check_fraction)
        for split in SPLITS
    }
    clock.lap("encode")
    warm.join()
    clock.lap("kernels")
    record: dict[str, Any] = {
        "partition": partition.id,
        "read": stats.as_dict(),
        "encoder": work.encoder.id.name,
        "check_fraction": None if work.checker is None else check_fraction,
        "splits": {},
    }
    out_dir = Location(out)
    files: list[tuple[Location, Any]] = []  # (where, bytes): shards, then the marker
    for split in SPLITS:
        token_ids, unit_lengths = encoded.pop(split)
        rows = _pack_and_mask_stage(
            work, config, split, partition.id, token_ids, unit_lengths, texts[split].starts
        )
        clock.lap("pack_mask")
        row_offsets, _, masks = rows
        split_record: dict[str, Any] = {
            "documents": texts[split].documents,
            "units": len(texts[split].lines),
            "content_tokens": int(unit_lengths.sum()),
            "rows": len(row_offsets) - 1,
            "tokens": int(row_offsets[-1]),
            "masked_positions": 0 if masks is None else len(masks.positions),
            "length_histogram": _length_histogram(np.diff(row_offsets), config.seq_len),
        }
        if split_record["rows"]:
            name = f"{split}/shard-{partition.id:05d}.arrow"
            compression = None if config.compression == "none" else config.compression
            data = shard_bytes(shard_table(*rows, info.vocab_size), compression)
            files.append((out_dir.child(name), data))
            split_record.update(file=name, sha256=hashlib.sha256(data).hexdigest(), bytes=data.size)
            clock.lap("write")
        record["splits"][split] = split_record
    files.append((out_dir.child(f"{_PARTS}/{partition.id:05d}.json"), json_bytes(record)))
    if writes is None:
        for location, data in files:
            location.write_atomically(data)
    else:
        writes.submit(files)
    clock.lap("write")  # the files' time (or the wait for a place in the queue)
    return {**record, "seconds": clock.seconds}


class _StageClock:
    """Seconds spent per stage of a partition (``shard --json``'s ``stage_seconds``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self._last
        self._last = now


def _read_stage(
    corpus: Corpus, partition: Partition, config: ShardConfig, stats: ReadStats, joined: bool
) -> dict[str, _SplitText]:
    """The partition's documents, split into train and valid. Where the encoder joins a
    document's lines (``joined``), plain UTF-8 text is read into one buffer by a kernel
    (``Corpus.read_partition_lines``): no Python work per line, nor the GIL held for it."""
    read = corpus.read_partition_lines(partition, stats) if joined else None
    if read is not None:
        lines, opens = read
        sizes = np.diff(np.append(np.flatnonzero(opens), len(opens)))  # (documents,)
        valid = np.fromiter(
            (_goes_to_valid(config, partition.id, index) for index in range(len(sizes))),
            dtype=np.bool_,
            count=len(sizes),
        )  # (documents,) bool
        in_valid = np.repeat(valid, sizes)  # (lines,) bool
        return {
            "train": _SplitText(lines.take(~in_valid), sizes[~valid].tolist()),
            "valid": _SplitText(lines.take(in_valid), sizes[valid].tolist()),
        }
    texts = {split: _SplitText() for split in SPLITS}
    train, valid = texts["train"], texts["valid"]
    for index, document in enumerate(corpus.read_partition(partition, stats)):
        chosen = valid if _goes_to_valid(config, partition.id, index) else train
        chosen.lines += document.units
        chosen.sizes.append(len(document.units))
    return texts


def _goes_to_valid(config: ShardConfig, partition_id: int, document: int) -> bool:
    """Whether the partition's ``document``-th document belongs to the valid split."""
    return bool(config.valid_fraction) and document_coin(
        config.seed, "valid", partition_id, document, config.valid_fraction
    )


def _encode_stage(
    work: _TokenizerWork,
    split: str,
    text: _SplitText,
    corpus: Corpus,
    partition: Partition,
    info: TokenizerInfo,
    check_fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The split's ids and unit lengths, checked against the reference on its sample and
    for specials spelled by text."""
    where = f"{', '.join(_partition_files(corpus, partition))} (partition {partition.id})"
    try:
        token_ids, unit_lengths = work.encoder.encode_lines(text.lines, text.starts)
    except EncoderMismatch as mismatch:  # the fast encoder's own byte count check
        raise mismatch.at(where) from None
    if work.checker is not None:
        check_sample(
            work.encoder,
            work.checker,
            text.lines,
            text.starts,
            token_ids,
            unit_lengths,
            sample_units(2 * partition.id + STREAMS[split], len(text.lines), check_fraction),
            where=where,
        )
    injected = work.injectable[token_ids]
    if injected.any():
        _refuse_injected(corpus, partition, work.reference, info, token_ids[injected])
    return token_ids, unit_lengths


def _pack_and_mask_stage(
    work: _TokenizerWork,
    config: ShardConfig,
    split: str,
    partition_id: int,
    token_ids: np.ndarray,
    unit_lengths: np.ndarray,
    starts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, Masks | None]:
    """Rows of the split and their stored masks, as ``shard_table`` takes them: row
    offsets, row tokens, and the ``dup`` copies' masks (None under dynamic masking)."""
    row_offsets, row_tokens = _pack(
        config, token_ids, unit_lengths, starts, work.info.cls_id, work.info.sep_id
    )
    if config.copies is None:
        return row_offsets, row_tokens, None
    masks = mask_partition_rows(
        row_offsets,
        row_tokens,
        work.mask_tables,
        config.parameters().masks,
        split,
        partition_id,
        range(config.copies),
    )
    return row_offsets, row_tokens, masks


def _pack(
    config: ShardConfig,
    token_ids: np.ndarray,
    unit_lengths: np.ndarray,
    starts: np.ndarray,
    cls_id: int,
    sep_id: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Row offsets (rows + 1,) int64 and row tokens (tokens,) uint32 of the units."""
    from rbprep import kernels

    return kernels.pack_rows(
        token_ids,
        unit_lengths,
        np.asarray(starts, dtype=np.bool_),
        config.seq_len,
        config.mode == "full-sentences",
        cls_id,
        sep_id,
    )


def partition_rows(
    corpus: Corpus,
    partition: Partition,
    config: ShardConfig,
    encoder: Encoder,
    cls_id: int,
    sep_id: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The rows ``shard`` packs of one partition, split by split, with ``encoder`` and
    no masks: {split: (row offsets (rows + 1,) int64, row tokens (tokens,) uint32)}.
    ``verify --retokenize`` compares them with the stored rows. The text comes from the
    general reader, never shard's kernel one, so that check covers reading too."""
    texts = _read_stage(corpus, partition, config, ReadStats(), joined=False)
    rows = {}
    for split in SPLITS:
        token_ids, unit_lengths = encoder.encode_lines(texts[split].lines, texts[split].starts)
        rows[split] = _pack(config, token_ids, unit_lengths, texts[split].starts, cls_id, sep_id)
    return rows


_warming_lock = threading.Lock()
_warming: list[threading.Thread] = []  # the process's one warming thread, once started


def _kernels_warming() -> threading.Thread:
    """The thread that loads the kernels, started on the first call in this process.

    The compiled kernels (``rbprep.aot``) load in a millisecond, but a process without
    them builds them first, or imports numba and loads the kernels from its cache (0.4 s
    holding the GIL): that runs while the caller reads and tokenises."""
    with _warming_lock:
        if not _warming:
            _warming.append(threading.Thread(target=_warm_kernels, daemon=True))
            _warming[0].start()
        return _warming[0]


def _warm_kernels() -> None:
    """Load the kernels (``rbprep.aot``) by running them on tiny inputs."""
    from rbprep import kernels

    offsets, tokens = kernels.pack_rows(
        np.arange(5, 9, dtype=np.uint32), np.array([4]), np.array([True]), 8, True, 0, 1
    )
    special = np.zeros(9, dtype=np.bool_)  # (vocab,) bool
    special[:5] = True
    tables = MaskTables(special, np.arange(5, 9, dtype=np.uint32), np.ones(9, dtype=np.bool_))
    for whole_word in (False, True):
        parameters = MaskParameters(0, 0.15, 0.1, 0.1, 1, whole_word)
        mask_partition_rows(offsets, tokens, tables, parameters, "train", 0, range(1))
    kernels.cut_at_breaks(np.array([5, 1, 6], np.uint32), np.array([3]), np.array([2]), 1)
    kernels.text_byte_counts(np.array([5], np.uint32), np.array([1]), np.ones(9, np.int64))


def _refuse_injected(
    corpus: Corpus,
    partition: Partition,
    tokenizer: Any,
    info: TokenizerInfo,
    injected: np.ndarray,
) -> None:
    """Text that this tokenizer encodes as a special token, though specials are encoded
    as text: a piece of its model's own vocabulary (SentencePiece-style), or an added
    token not marked special. Masking and packing would take it for the real thing."""
    token = tokenizer.id_to_token(int(injected[0]))
    files = ", ".join(_partition_files(corpus, partition))
    raise RbprepError(
        f"{files}: text encodes as the special token {token!r} (id "
        f"{int(injected[0])}) with {info.path}, {injected.size} time(s) in partition "
        f"{partition.id}; remove that text, or use a tokenizer whose specials text cannot spell"
    )


def _partition_files(corpus: Corpus, partition: Partition) -> list[str]:
    return sorted({corpus.files[piece.file].path for piece in partition.pieces})


def _length_histogram(lengths: np.ndarray, seq_len: int) -> dict[str, int]:
    edges = np.linspace(0, seq_len, 9).astype(np.int64)
    # Bins are [lo, hi); a length L belongs to "lo+1-hi" when L - 1 is in [lo, hi).
    counts, _ = np.histogram(lengths - 1, bins=edges)
    return {f"{lo + 1}-{hi}": int(n) for lo, hi, n in zip(edges, edges[1:], counts, strict=False)}


# --- the run -------------------------------------------------------------------------------


def shard(
    corpus: Sequence[str | os.PathLike] | Corpus,
    tokenizer: str | os.PathLike,
    out: str | os.PathLike,
    config: ShardConfig = ShardConfig(),
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = False,
    encoder: str = "auto",
    check_fraction: float = CHECK_FRACTION,
) -> ShardSummary:
    """Shard ``corpus`` with ``tokenizer`` into ``out`` (DESIGN §5-7).

    ``workers`` processes run partitions (default: all cores), or the Dask cluster at
    ``scheduler`` (``tcp://HOST:PORT``) does, its workers reading the inputs and
    writing to ``out`` (a path they all reach); the output is the same either way.
    ``resume`` finishes an interrupted run, byte-identical to an uninterrupted one;
    ``force`` replaces an existing dataset. A second run on the same ``out`` while one
    is live is refused. ``encoder`` (``auto``, ``fast``, ``reference``) chooses who
    encodes, never what the ids are (``rbprep.encoding``): where a partition's sample
    shows the fast encoder disagreeing, the run warns, goes on with the reference, and
    redoes the partitions the fast one wrote. ``check_fraction`` (0-1) is the share of
    each partition's units the reference re-encodes for that (the first of each split
    always); the manifest records the smallest any partition was checked with.
    """
    config.check()
    if not 0.0 <= check_fraction <= 1.0:
        raise RbprepError(f"--check-fraction must be in 0..1, got {check_fraction}")
    if workers is not None and workers < 1:
        raise RbprepError(f"--workers must be 1 or more, got {workers}")
    check_output_directory(out)
    workers = workers or os.cpu_count() or 1
    if scheduler is None and workers <= THREADS_PER_PROCESS:
        _kernels_warming()  # the tasks will run in this process
    if not isinstance(corpus, Corpus):
        corpus = open_corpus(corpus)
    loading = _fast_encoder_loading(tokenizer, encoder)
    loaded = (
        load_tokenizer(tokenizer)
        if loading is None
        else load_tokenizer(tokenizer, loading.data, loading.config)
    )
    info = loaded[1]
    if info.vocab_size > 2**32:
        raise RbprepError("vocabularies over 2**32 entries are not supported")
    if config.whole_word and not (info.word_prefix or info.continuation_prefix):
        raise RbprepError(
            f"{info.path}: --whole-word needs pieces that mark where words start (Ġ, ▁) or "
            "go on (##); this tokenizer's do neither, so only token masking is possible"
        )
    out_dir = Location(out)
    started = time.perf_counter()
    # Tasks that run in this process queue their files to one writer thread and go on;
    # a worker process or a Dask worker writes its own before the task returns.
    in_process = scheduler is None and workers <= THREADS_PER_PROCESS
    with (
        _locked(out_dir),
        WriteBehind() if in_process else contextlib.nullcontext() as writes,
    ):
        run_state = _run_state(corpus, info, config)
        done = _prepare(out_dir, run_state, resume=resume, force=force)
        out_dir.child("tokenizer.json").write_atomically(Location(info.path).read_bytes())
        records = _intact_records(out_dir, done)
        # Tasks read the dataset's own copy of the tokenizer: on a cluster it is in the
        # shared output location, where every worker can reach it.
        tokenizer_copy = str(out_dir.child("tokenizer.json"))
        work = _make_work(tokenizer_copy, info, encoder, reference=loaded[0], loading=loading)
        del loading  # its parsed JSON: tens of MB the run no longer needs
        chosen = "reference" if work.checker is None else "fast"
        _tokenizer_work[(info.sha256, chosen)] = work
        encoder_id, fallback = work.encoder.id, work.not_fast
        while True:
            # Partitions a resumed run's other encoder wrote are redone by this one, so
            # the manifest names the encoder of every shard.
            todo = [
                p
                for p in corpus.partitions
                if records.get(p.id, {}).get("encoder", REFERENCE_NAME) != encoder_id.name
                or p.id not in records
            ]
            # Each task gets its partition's files only (Corpus.for_partition): what is
            # sent to a worker process or the cluster stays small for any corpus.
            task = functools.partial(
                _shard_partition_task,
                tokenizer_copy,
                info,
                config,
                str(out_dir),
                chosen,
                check_fraction,
                writes,
            )
            jobs = [corpus.for_partition(partition) for partition in todo]
            try:
                with ByteProgress("shard", sum(p.size for p in todo), enabled=progress) as bar:
                    for job, record in run_tasks(task, jobs, workers=workers, scheduler=scheduler):
                        records[job.partitions[0].id] = record
                        bar.update(job.partitions[0].size)
                break
            except EncoderMismatch as mismatch:
                if chosen == "reference":
                    raise
                written = sum(r.get("encoder") == encoder_id.name for r in records.values())
                logger.warning(
                    "%s; encoding with %s from now on, and redoing the %s it wrote",
                    mismatch,
                    REFERENCE_NAME,
                    counted(written, "partition"),
                )
                chosen, fallback = "reference", str(mismatch)
                encoder_id = _work_for(tokenizer_copy, info, chosen).encoder.id
        if writes is not None:
            writes.wait()  # the manifest comes last, once every shard is on disk
        ordered = [records[p.id] for p in corpus.partitions]
        manifest = _manifest(corpus, info, config, ordered, encoder_id)
        if manifest.totals.documents == 0:
            _clear(out_dir)  # nothing to resume: the next run starts afresh
            raise RbprepError(
                f"the corpus holds no text: {counted(len(corpus.files), 'readable file')}, "
                f"no document; nothing written to {out_dir}"
            )
        write_json_atomically(manifest.to_json(), out_dir.child(MANIFEST))
    seconds = time.perf_counter() - started
    return ShardSummary(
        out=str(out_dir),
        manifest=manifest,
        partitions=len(corpus.partitions),
        partitions_resumed=sum("seconds" not in records[p] for p in done),
        seconds=round(seconds, 3),
        text_bytes=manifest.totals.read["text_bytes"],
        extra={
            "encoder": encoder_id.as_dict(),
            "encoder_note": fallback,
            "kernels": kernels_in_use(),
            "stage_seconds": {
                stage: round(sum(r.get("seconds", {}).get(stage, 0.0) for r in ordered), 3)
                for stage in STAGES
            },
        },
    )


def _locked(out_dir: Location) -> contextlib.AbstractContextManager[None]:
    """Hold an exclusive lock on ``out_dir`` for the run; refuse if another run has it."""
    out_dir.make_directory()
    return out_dir.child(_LOCK).lock(
        f"{out_dir}: another rbprep shard is writing here; wait for it or choose another --out"
    )


def _run_state(corpus: Corpus, info: TokenizerInfo, config: ShardConfig) -> dict[str, Any]:
    """What must not change between an interrupted run and its --resume."""
    return {
        "parameters": asdict(config.parameters()),
        "tokenizer_sha256": info.sha256,
        "partition_size": corpus.partition_size,
        "files": [file.path for file in corpus.files],
        "partitions": [
            [[piece.file, piece.start, piece.end] for piece in p.pieces] for p in corpus.partitions
        ],
    }


def _prepare(
    out_dir: Location, run_state: dict[str, Any], *, resume: bool, force: bool
) -> set[int]:
    """Make ``out_dir`` ready; return the ids of partitions already done (resume)."""
    run_file, manifest = out_dir.child(_RUN), out_dir.child(MANIFEST)
    previous = read_json(run_file) if run_file.exists() else None
    complete = manifest.exists()
    others = [name for name in out_dir.entries() if name != _LOCK]
    if force:
        _clear(out_dir)
    elif resume and previous is not None:
        if _as_now(previous) != run_state:
            raise RbprepError(
                f"{out_dir}: the interrupted run used other parameters, tokenizer or corpus; "
                "rerun it as it was, or use --force to start over"
            )
        manifest.delete()
    elif complete:
        raise RbprepError(f"{out_dir}: holds a finished dataset; use --force to replace it")
    elif previous is not None:
        raise RbprepError(
            f"{out_dir}: holds an interrupted run; use --resume to finish it or --force "
            "to start over"
        )
    elif others:
        raise RbprepError(
            f"{out_dir}: directory is not empty ({', '.join(others[:3])}); "
            "choose an empty --out or use --force"
        )
    for name in (*SPLITS, _PARTS):
        out_dir.child(name).make_directory()
        for stale in out_dir.child(name).files():
            if stale.name.endswith(".tmp"):  # a killed run's half-written files
                stale.delete()
    write_json_atomically(run_state, run_file)
    markers = out_dir.child(_PARTS).files()
    return {
        int(marker.name.removesuffix(".json"))
        for marker in markers
        if marker.name.endswith(".json")
    }


def _as_now(run_state: dict[str, Any]) -> dict[str, Any]:
    """A run state as this version writes it: one written before masking modes has no
    ``masking`` and no ``max_predictions`` among its parameters (static, and the cap its
    options give)."""
    parameters = run_state.get("parameters")
    if not isinstance(parameters, dict) or "masking" in parameters:
        return run_state
    try:
        config = ShardConfig(**{**parameters, "masking": "static"})
    except TypeError:
        return run_state  # not a run state this version can read: it will not match
    return {**run_state, "parameters": asdict(config.parameters())}


def _clear(out_dir: Location) -> None:
    """Delete what a run writes in ``out_dir`` (the lock aside)."""
    for name in (*SPLITS, _PARTS, MANIFEST, _RUN, "tokenizer.json"):
        out_dir.child(name).delete()


def _intact_records(out_dir: Location, done: set[int]) -> dict[int, dict[str, Any]]:
    """The records of the partitions a resumed run may keep: those whose every shard
    is there with the size and sha256 its record names. Any other is redone, with a
    warning: a finished partition is never taken on trust."""
    records = {}
    for partition in sorted(done):
        marker = out_dir.child(f"{_PARTS}/{partition:05d}.json")
        try:
            record = read_json(marker)
            problem = next(
                (
                    f"{part['file']} is missing or damaged (its size or sha256 is not its record's)"
                    for part in record["splits"].values()
                    if "file" in part and not _shard_matches(out_dir.child(part["file"]), part)
                ),
                None,
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            problem = f"its record {marker} is unreadable"
        if problem is None:
            records[partition] = record
        else:
            logger.warning(
                "%s: partition %d was done, but %s; redoing it",
                out_dir,
                partition,
                problem,
            )
    return records


def _shard_matches(shard: Location, part: dict[str, Any]) -> bool:
    return (
        shard.kind() == "file"
        and shard.size() == part["bytes"]
        and shard.sha256() == part["sha256"]
    )


def _checked_fraction(records: list[dict[str, Any]]) -> float | None:
    """The smallest share of units any partition's sample re-encoded with the reference
    (a resumed run may have changed it); None where the reference encoded everything.
    A partition written before the share was recorded was checked at 2%, the only share
    there was."""
    fractions = [
        record.get("check_fraction", CHECK_FRACTION)
        for record in records
        if record.get("encoder", REFERENCE_NAME) != REFERENCE_NAME
    ]
    return min(fractions) if fractions else None


def _manifest(
    corpus: Corpus,
    info: TokenizerInfo,
    config: ShardConfig,
    records: list[dict[str, Any]],
    encoder: EncoderId,
) -> Manifest:
    """The dataset's description: parameters, tokenizer, shards and totals (no timings,
    so the same corpus and parameters always give the same manifest)."""
    read = ReadStats()
    corpus.count_skipped(read)
    splits: dict[str, SplitRecord] = {}
    for split in SPLITS:
        shards = []
        histogram: dict[str, int] = {}
        totals = dict.fromkeys(
            ("documents", "units", "content_tokens", "rows", "tokens", "masked_positions", "bytes"),
            0,
        )
        for record in records:
            part = record["splits"][split]
            for key in totals:
                totals[key] += part.get(key, 0)
            for bucket, count in part["length_histogram"].items():
                histogram[bucket] = histogram.get(bucket, 0) + count
            if part["rows"]:
                shards.append(
                    ShardRecord(
                        file=part["file"],
                        partition=record["partition"],
                        rows=part["rows"],
                        tokens=part["tokens"],
                        bytes=part["bytes"],
                        sha256=part["sha256"],
                    )
                )
        splits[split] = SplitRecord(**totals, length_histogram=histogram, shards=shards)
    for record in records:
        read.merge(ReadStats(**record["read"]))
    rows = sum(splits[s].rows for s in SPLITS)
    tokens = sum(splits[s].tokens for s in SPLITS)
    slots = rows * config.seq_len
    stored = sum(splits[s].bytes for s in SPLITS)
    return Manifest(
        rbprep_version=__version__,
        parameters=config.parameters(),
        tokenizer=TokenizerRecord(
            file="tokenizer.json",
            sha256=info.sha256,
            vocab_size=info.vocab_size,
            cls_id=info.cls_id,
            sep_id=info.sep_id,
            pad_id=info.pad_id,
            mask_id=info.mask_id,
            unk_id=info.unk_id,
            special_ids=list(info.special_ids),
            word_prefix=info.word_prefix,
            continuation_prefix=info.continuation_prefix,
        ),
        encoder=EncoderRecord(encoder.name, encoder.version, _checked_fraction(records)),
        corpus=CorpusRecord(
            files=[file.path for file in corpus.files],
            text_field=corpus.options.text_field,
            bytes=corpus.size,
            partition_size=corpus.partition_size,
            partitions=len(corpus.partitions),
        ),
        splits=splits,
        totals=Totals(
            documents=sum(splits[s].documents for s in SPLITS),
            units=sum(splits[s].units for s in SPLITS),
            content_tokens=sum(splits[s].content_tokens for s in SPLITS),
            rows=rows,
            tokens=tokens,
            slots=slots,
            padding_tokens=slots - tokens,
            padding_share=(slots - tokens) / slots if slots else 0.0,
            bytes=stored,
            bytes_per_token=stored / tokens if tokens else 0.0,
            read=read.as_dict(),
        ),
    )
