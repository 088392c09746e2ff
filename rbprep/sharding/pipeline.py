"""A partition's pipeline: its text read and split, encoded (checked against the
reference), then packed into rows and masked where the output wants them.

Everything here is per partition and per process: the run (``rbprep.sharding.run``)
decides which partitions to do, where, and with which encoder; a sink
(``rbprep.sharding.sinks``) turns the result into files.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rbprep.corpus import Corpus, Partition, ReadStats, TextLines, document_coin
from rbprep.dataset.format import SPLITS
from rbprep.dataset.masking import STREAMS, MaskParameters, Masks, MaskTables, mask_partition_rows
from rbprep.encoding import (
    Encoder,
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
from rbprep.sharding.config import ShardConfig
from rbprep.storage import Location
from rbprep.tokenizer_info import TokenizerInfo, encoding_tokenizer, tokenizer_file, vocabulary

# A partition's stages, in order (``shard --json``'s ``stage_seconds``); "kernels" is the
# wait for the kernels to load (``rbprep.aot``), on a process's first partitions only.
STAGES = ("read", "encode", "kernels", "pack_mask", "write")


@dataclass(frozen=True)
class TokenizerWork:
    """What a process needs of a tokenizer to shard, made once per process and tokenizer
    (reading the vocabulary takes a second on a 50K BPE)."""

    info: TokenizerInfo
    reference: Any  # tokenizers.Tokenizer, as encoding_tokenizer sets it up
    encoder: Encoder  # the encoder the run chose
    checker: Encoder | None  # the reference encoder, where ``encoder`` is not it
    mask_tables: MaskTables  # never masked, random replacements, word starts
    injectable: np.ndarray  # (vocab,) bool: specials that text must never encode to
    not_fast: str | None  # why ``encoder`` is the reference, where the fast one was asked


tokenizer_work: dict[tuple[str, str], TokenizerWork] = {}  # (sha256, encoder) -> work
_work_lock = threading.Lock()


def work_for(tokenizer_path: str, info: TokenizerInfo, encoder: str) -> TokenizerWork:
    """This process's ``TokenizerWork`` for the tokenizer ``info`` describes, keyed by
    its digest (a long-lived worker may see several runs' tokenizers at one path)."""
    key = (info.sha256, encoder)
    with _work_lock:
        if key not in tokenizer_work:
            tokenizer_work[key] = make_work(tokenizer_path, info, encoder)
        return tokenizer_work[key]


@dataclass(frozen=True)
class Loading:
    """The tokenizer.json as shard read it first, for ``load_tokenizer`` to use: its
    bytes, the bytes parsed, and tokie loading it on a thread (None where tokie will not
    be used)."""

    data: bytes
    config: dict[str, Any]
    fast: Future[FastEncoder] | None


def fast_encoder_loading(tokenizer: str | os.PathLike, encoder: str) -> Loading | None:
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
        return Loading(data, config, start_fast_encoder(config, encoder, sha256))
    except (OSError, ValueError, TypeError, AttributeError, RbprepError):
        return None


def make_work(
    tokenizer_path: str,
    info: TokenizerInfo,
    encoder: str,
    reference: Any = None,
    loading: Loading | None = None,
) -> TokenizerWork:
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
    return TokenizerWork(
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
class SplitText:
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


class StageClock:
    """Seconds spent per stage of a partition (``shard --json``'s ``stage_seconds``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self._last
        self._last = now


def read_stage(
    corpus: Corpus, partition: Partition, config: ShardConfig, stats: ReadStats, joined: bool
) -> dict[str, SplitText]:
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
            "train": SplitText(lines.take(~in_valid), sizes[~valid].tolist()),
            "valid": SplitText(lines.take(in_valid), sizes[valid].tolist()),
        }
    texts = {split: SplitText() for split in SPLITS}
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


def encode_stage(
    work: TokenizerWork,
    split: str,
    text: SplitText,
    corpus: Corpus,
    partition: Partition,
    check_fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The split's ids and unit lengths, checked against the reference on its sample and
    for specials spelled by text."""
    where = f"{', '.join(partition_files(corpus, partition))} (partition {partition.id})"
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
        _refuse_injected(corpus, partition, work.reference, work.info, token_ids[injected])
    return token_ids, unit_lengths


def pack_and_mask_stage(
    work: TokenizerWork,
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
    texts = read_stage(corpus, partition, config, ReadStats(), joined=False)
    rows = {}
    for split in SPLITS:
        token_ids, unit_lengths = encoder.encode_lines(texts[split].lines, texts[split].starts)
        rows[split] = _pack(config, token_ids, unit_lengths, texts[split].starts, cls_id, sep_id)
    return rows


_warming_lock = threading.Lock()
_warming: list[threading.Thread] = []  # the process's one warming thread, once started


def kernels_warming() -> threading.Thread:
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
    files = ", ".join(partition_files(corpus, partition))
    raise RbprepError(
        f"{files}: text encodes as the special token {token!r} (id "
        f"{int(injected[0])}) with {info.path}, {injected.size} time(s) in partition "
        f"{partition.id}; remove that text, or use a tokenizer whose specials text cannot spell"
    )


def partition_files(corpus: Corpus, partition: Partition) -> list[str]:
    return sorted({corpus.files[piece.file].path for piece in partition.pieces})


@dataclass
class SplitResult:
    """One split of a partition through the pipeline: its text, its units' ids, and
    its packed rows and stored masks where the output wants them (else None)."""

    text: SplitText
    token_ids: np.ndarray  # (tokens,) uint32: every unit's ids, one after another
    unit_lengths: np.ndarray  # (units,) int64
    rows: tuple[np.ndarray, np.ndarray] | None  # row offsets (rows + 1,), row tokens
    masks: Masks | None

    @property
    def content_tokens(self) -> int:
        return int(self.unit_lengths.sum())


def run_pipeline(
    work: TokenizerWork,
    corpus: Corpus,
    partition: Partition,
    config: ShardConfig,
    check_fraction: float,
    stats: ReadStats,
    clock: StageClock,
) -> dict[str, SplitResult]:
    """``partition`` read (counted in ``stats``), encoded and, where ``config``'s output
    holds rows, packed and masked: {split: SplitResult}. ``clock`` times the stages."""
    warm = kernels_warming()
    texts = read_stage(
        corpus, partition, config, stats, joined=work.encoder.line_break_id is not None
    )
    clock.lap("read")
    encoded = {
        split: encode_stage(work, split, texts[split], corpus, partition, check_fraction)
        for split in SPLITS
    }
    clock.lap("encode")
    warm.join()
    clock.lap("kernels")
    results = {}
    for split in SPLITS:
        token_ids, unit_lengths = encoded.pop(split)
        rows, masks = None, None
        if config.rows:
            *rows, masks = pack_and_mask_stage(
                work, config, split, partition.id, token_ids, unit_lengths, texts[split].starts
            )
            clock.lap("pack_mask")
        results[split] = SplitResult(texts[split], token_ids, unit_lengths, rows, masks)
    return results
