"""``compare_tokenizers``: measure tokenizers side by side on the user's own text.

One read of the corpus (or of a deterministic sample of it). Each batch of sentence
units (one file's, within one partition) is encoded once per tokenizer (as ``shard``
encodes it), and everything is counted from that encoding: tokens, words and their
splits (placed by the ids alone for a byte-level BPE and a BERT WordPiece, else by
the token offsets),
[UNK]s, the round trip (each document against what its tokens write back: a table of
the decoder where it is one, ``roundtrip.py``, else one decode per document), the rows
``shard`` would pack (its own kernel, per partition as ``shard`` runs it) and the
unigram counts behind vocabulary use and Rényi efficiency.
Memory stays bounded: per tokenizer one count array of the vocabulary's size, per file
a few numbers, per partition the token count of each unit. Definitions: docs/compare.md.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from rbprep import __version__, kernels
from rbprep.compare import metrics as m
from rbprep.compare.pieces import (
    Piece,
    Style,
    byte_length,
    display,
    piece,
    pieces_of,
    word_pieces,
)
from rbprep.compare.pretokens import PreTokens
from rbprep.compare.roundtrip import Spellings
from rbprep.corpus import Corpus, Document, ReadStats, open_corpus
from rbprep.corpus.sampling import Usage, sample_documents
from rbprep.encoding import (
    CHECK_FRACTION,
    ENCODER_CHOICES,
    REFERENCE_NAME,
    Encoder,
    EncoderMismatch,
    Fallback,
    ReferenceEncoder,
    batch_bounds,
    check_encoded,
    check_equal,
    document_starts,
    interleave,
    join_lines,
    line_break_id,
    open_encoder,
    sample_units,
    units_of,
)
from rbprep.errors import RbprepError
from rbprep.options import opt
from rbprep.progress import ByteProgress
from rbprep.sizes import counted, parse_size
from rbprep.tokenizer_info import (
    encoding_tokenizer,
    id_space,
    load_tokenizer,
    tokenizer_file,
    vocabulary,
)

_BATCH_UNITS = 10_000  # units counted together (the encoders batch their own calls)
BATCH_CHARS = 1_000_000  # bounds the per-character arrays of a batch (~50 MB)
_SAMPLE_CHARS = (30, 140)  # a sample sentence is a unit of this many characters
_TOP = 25  # most frequent / longest tokens kept in the report
_SPEED_SHARE = 10  # every 10th text of a batch is encoded alone and timed (encode_mb_s)


@dataclass(frozen=True)
class CompareConfig:
    """Parameters of ``compare_tokenizers``; CLI options carry the same names."""

    seq_len: int = opt(512, help="Row length for the rows and padding.")
    sample_bytes: int | None = opt(
        None,
        type=parse_size,
        metavar="SIZE",
        help="Compare on a deterministic sample of about this much text, drawn from all files.",
    )
    seed: int = opt(0, help="Seed of the sample.")
    samples: int = opt(6, hidden=True, help="Sample sentences shown tokenised by each tokenizer.")
    renyi_alpha: float = opt(m.RENYI_ALPHA, hidden=True, help="The Rényi efficiency's alpha.")
    encoder: str = opt(
        "auto",
        choices=ENCODER_CHOICES,
        help="Who encodes (never what the ids are): auto takes tokie where it is tested and "
        "agrees with tokenizers, fast takes it on any tokenizer it agrees on, reference is "
        "tokenizers.",
    )
    check_fraction: float = opt(
        CHECK_FRACTION,
        help="Share of the lines (each partition's; compare-tokenizers: each batch's) that "
        "tokenizers encodes again to check the fast encoder, the first always; 0-1. At 0.02 "
        "that costs about as much CPU as tokie encoding everything.",
    )

    def check(self) -> None:
        if self.encoder not in ENCODER_CHOICES:
            raise RbprepError(
                f"--encoder must be one of {', '.join(ENCODER_CHOICES)}, got {self.encoder!r}"
            )
        if not 0.0 <= self.check_fraction <= 1.0:
            raise RbprepError(f"--check-fraction must be in 0..1, got {self.check_fraction}")
        if not 8 <= self.seq_len <= 65535:
            raise RbprepError(f"--seq-len must be in 8..65535, got {self.seq_len}")
        if self.sample_bytes is not None and self.sample_bytes <= 0:
            raise RbprepError("--sample-bytes must be positive")
        if self.samples < 0:
            raise RbprepError("samples must be >= 0")
        if self.renyi_alpha <= 0:
            raise RbprepError("renyi_alpha must be positive")


# --- the tokenizers ----------------------------------------------------------------------


@dataclass
class Contestant:
    """One tokenizer under comparison and what is counted for it."""

    name: str
    path: str  # the tokenizer.json read
    tokenizer: Tokenizer
    encoder: Encoder  # what encodes the ids counted (encoding.open_encoder)
    reference: ReferenceEncoder  # checks a sample of what a fast encoder gives
    encoder_note: str | None  # why the encoder is not the fast one, where auto chose
    style: Style
    vocab_size: int  # entries, added tokens included: |V| of the metrics
    id_limit: int  # ids are below this (id_space: more than vocab_size where ids skip)
    unk_id: int | None
    special_ids: tuple[int, ...]
    shardable: bool  # has the start, end, pad and mask tokens ``shard`` needs
    byte_lengths: np.ndarray | None  # (vocab,) int64 bytes each id spells, if byte-level
    line_break_id: int | None  # a document's lines may be encoded joined (as shard does)
    pre_tokens: PreTokens | None  # a BERT WordPiece: its ids place its tokens (pretokens.py)
    spellings: Spellings | None  # the decoder as a table, where it is one (roundtrip.py)
    counts: np.ndarray  # (vocab,) int64 token frequencies over the corpus
    file_counts: np.ndarray  # (vocab,) int64 token frequencies over the current file
    words_tokens: np.ndarray  # tokens-per-word histogram over the corpus
    tallies: dict[int, m.Tally] = field(default_factory=dict)  # file index -> counts
    file_extras: dict[int, tuple[int, float]] = field(default_factory=dict)  # seen, renyi
    rows: int = 0  # over the corpus, each partition packed as shard packs it
    row_tokens: int = 0
    partition_lengths: list[np.ndarray] = field(default_factory=list)  # (units,) int64 each
    # The round trip so far (exact, normalised) of a document compared in parts, whose
    # last part is still to come (``_Batch.closes``).
    open_roundtrip: tuple[bool, bool] = (True, True)


def train_vocab_tokenizers(directory: str | os.PathLike) -> list[tuple[str, str]]:
    """The tokenizers ``train-vocab`` wrote into ``directory``: [("bpe", DIR/bpe), ...]."""
    directory = Path(directory)
    found = [
        (kind, str(directory / kind))
        for kind in ("bpe", "wordpiece")
        if (directory / kind / "tokenizer.json").is_file()
    ]
    if not found:
        raise RbprepError(
            f"{directory}: no bpe/ or wordpiece/ tokenizer there; give the --out directory "
            "of `rbprep train-vocab`, or name tokenizers with --tokenizer PATH"
        )
    return found


def _named(tokenizers: Sequence[Any]) -> list[tuple[str, str]]:
    """(name, path) for each tokenizer given; a train-vocab directory gives both of its own."""
    named: list[tuple[str, str]] = []
    for item in tokenizers:
        if isinstance(item, tuple):
            named.append((str(item[0]), os.fspath(item[1])))
            continue
        path = Path(item)
        if (
            path.is_dir()
            and not (path / "tokenizer.json").exists()
            and any((path / kind / "tokenizer.json").is_file() for kind in ("bpe", "wordpiece"))
        ):
            named.extend(train_vocab_tokenizers(path))  # a train-vocab output directory
            continue
        file = tokenizer_file(path)
        name = file.parent.name if file.name == "tokenizer.json" else file.stem
        named.append((name or str(path), str(path)))
    seen: dict[str, int] = {}
    unique = []
    for name, path in named:
        seen[name] = seen.get(name, 0) + 1
        unique.append((name if seen[name] == 1 else f"{name}-{seen[name]}", path))
    return unique


def open_contestant(name: str, path: str, encoder_choice: str) -> Contestant:
    """The tokenizer at ``path`` (a tokenizer.json or a directory holding one), set up to
    be compared as ``name``: its encoder as ``encoder_choice`` (``ENCODER_CHOICES``) asks,
    and nothing counted yet. A tokenizer ``shard`` cannot use is measured all the same."""
    try:
        tokenizer, info = load_tokenizer(path)
        unk_id, special_ids, shardable, file = (
            info.unk_id,
            info.special_ids,
            True,
            info.path,
        )
    except RbprepError:
        # Not fit for shard (no mask or pad token, say), but it can still be measured;
        # a file that is no tokenizer at all fails here with its own message.
        location = tokenizer_file(path)
        file = str(location)
        tokenizer = encoding_tokenizer(location)  # as load_tokenizer sets it up
        model = json.loads(tokenizer.to_str())["model"]
        unk = model.get("unk_token")  # BPE, WordPiece, WordLevel; Unigram names the id
        unk_id = tokenizer.token_to_id(unk) if isinstance(unk, str) else model.get("unk_id")
        special_ids = tuple(
            sorted(i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special)
        )
        shardable = False
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    limit = id_space(tokenizer)
    text = tokenizer.to_str()
    config = json.loads(text)
    style = Style.of(tokenizer, config)
    spellings = Spellings.of(tokenizer, config)
    line_break = line_break_id(tokenizer, config)
    encoder, note = open_encoder(
        tokenizer,
        config,
        line_break,
        encoder_choice,
        where=name,
        source_sha256=hashlib.sha256(text.encode()).hexdigest(),
    )
    return Contestant(
        name=name,
        path=file,
        tokenizer=tokenizer,
        encoder=encoder,
        reference=ReferenceEncoder(tokenizer, line_break),
        encoder_note=note,
        style=style,
        vocab_size=vocab_size,
        id_limit=limit,
        unk_id=unk_id,
        special_ids=tuple(special_ids),
        shardable=shardable,
        byte_lengths=_byte_lengths(tokenizer, style, limit, spellings),
        line_break_id=line_break,
        pre_tokens=PreTokens.of(tokenizer, config),
        spellings=spellings,
        counts=np.zeros(limit, dtype=np.int64),  # (ids,) int64
        file_counts=np.zeros(limit, dtype=np.int64),
        words_tokens=np.zeros(m.WORD_TOKENS_CAP + 1, dtype=np.int64),
    )


def _byte_lengths(
    tokenizer: Tokenizer, style: Style, id_limit: int, spellings: Spellings | None
) -> np.ndarray | None:
    """For a byte-level tokenizer without a normaliser: the bytes of text each id stands
    for. Its tokens then spell the text byte for byte, so where a token lies follows from
    these lengths and the ids alone, and no offsets are needed (``_placed_by_bytes``).
    A ByteLevel decoder's table (``spellings``) holds them already: each id's bytes."""
    if not style.byte_level or tokenizer.normalizer is not None:
        return None
    if spellings is not None and not spellings.text:
        return np.diff(spellings.bounds[: id_limit + 1])  # (ids,) int64
    lengths = np.zeros(id_limit, dtype=np.int64)  # (ids,) int64
    for token, index in vocabulary(tokenizer).items():
        spelled = byte_length(token, style)
        lengths[index] = len(token.encode()) if spelled is None else spelled
    return lengths


# --- the stream of text -------------------------------------------------------------------


@dataclass
class _Batch:
    """Documents of one file and one partition, encoded together.

    A document of more than ``BATCH_CHARS`` characters comes in parts of whole units,
    a batch each (``document_parts``), so memory is bounded on any document: a part
    after the first ``continues`` it, and the last ``closes`` it; the document counts
    once, and its round trip holds where it holds for every part."""

    file: int = -1
    documents: list[list[str]] = field(default_factory=list)  # each: its lines as read
    continues: list[bool] = field(default_factory=list)  # (documents,) a later part
    closes: list[bool] = field(default_factory=list)  # (documents,) a document's last part
    units: int = 0
    chars: int = 0  # of the units encoded (a later unit's leading space included)

    def add(self, lines: list[str], continues: bool = False, closes: bool = True) -> None:
        self.documents.append(lines)
        self.continues.append(continues)
        self.closes.append(closes)
        self.units += len(lines)
        self.chars += sum(map(len, lines)) + len(lines) - (0 if continues else 1)


def document_parts(lines: list[str]) -> list[list[str]]:
    """A document's ``lines`` in parts of whole lines whose units (``document_units``)
    hold at most ``BATCH_CHARS`` characters (a unit is at most ``MAX_UNIT_BYTES``)."""
    lengths = np.fromiter(map(len, lines), np.int64, len(lines)) + 1  # a unit's space
    lengths[:1] -= 1  # the first unit has none
    if lengths.sum() <= BATCH_CHARS:
        return [lines]
    bounds = batch_bounds(lengths, len(lines), BATCH_CHARS)
    return [lines[a:b] for a, b in itertools.pairwise(bounds)]


@dataclass
class BatchTexts:
    """A batch's units as the tokenizers are given them: alone, and each document's
    units joined by "\n" about ``JOIN_CHARS`` at a time (``join_lines``), as ``shard``
    encodes them where the tokenizer allows.

    The units themselves (a later line of a document with its leading space, a new str
    each) are made only where asked for (``units``): the joined texts, ``words`` and
    ``document_texts`` come from the lines as read."""

    documents: list[list[str]]  # each document's lines as read
    continues: list[bool]  # (documents,) a later part of a document
    lines: list[str]  # every document's lines, one after another
    starts: np.ndarray  # (units,) bool: a document (not a later part of one) starts here
    joined: list[str]
    joined_units: np.ndarray  # (joined,) int64: units in each joined text

    @classmethod
    def of(cls, documents: list[list[str]], continues: Sequence[bool] = ()) -> BatchTexts:
        """``documents``: each one's lines as read; ``continues``: which documents are a
        later part of a document (none if empty)."""
        lines = list(itertools.chain.from_iterable(documents))
        starts = document_starts(list(map(len, documents)), continues)
        later = [bool(part) for part in continues] or [False] * len(documents)
        return cls(documents, later, lines, starts, *join_lines(lines, starts))

    @functools.cached_property
    def units(self) -> list[str]:
        return units_of(self.lines, self.starts)

    def first_units(self, count: int) -> list[str]:
        """The batch's first ``count`` units, without making the others."""
        return units_of(self.lines[:count], self.starts[:count])

    def words(self) -> m.Words:
        """``Words.of(self.units)``: all units joined by "\n" are the joined texts
        joined by "\n", so one join of a few hundred texts makes them."""
        lengths = np.fromiter(map(len, self.lines), np.int64, len(self.lines)) + ~self.starts
        return m.Words.of_joined("\n".join(self.joined) + "\n" if self.lines else "", lengths)

    def document_texts(self) -> list[str]:
        """Each document's units joined ("".join): its lines joined by " ", after a space
        where it continues a document."""
        return [
            " " + " ".join(lines) if part else " ".join(lines)
            for lines, part in zip(self.documents, self.continues, strict=True)
        ]


# A function that runs its arguments on the encoder thread: submit(fn, *args) -> Future
_Submit = Callable[..., "Future[Any]"]


class _Run:
    """The encoding and counting, batch by batch, partition by partition, file by file.

    Each batch is encoded while the one before it is counted: its timed share now, alone
    (nothing else runs, so ``encode_mb_s`` is the tokenizer's own speed), the rest on
    the encoder thread (tokenizers lets go of the GIL) while this thread counts the
    previous batch and reads on. Counting, and the ends of partitions and files, keep
    their order: each waits in ``pending`` until the next batch is under way.
    """

    def __init__(
        self,
        contestants: list[Contestant],
        config: CompareConfig,
        n_files: int,
        encoders: list[ThreadPoolExecutor],
    ):
        self.contestants = contestants
        self.config = config
        self.encoders = encoders  # (contestants,) each one's thread, one batch after another
        self.in_flight: list[Future[Any]] = []  # work on the encoder threads
        self.timed_files: set[int] = set()  # files with a timed batch (encode_mb_s)
        self.pending: list[Callable[[], None]] = []  # counting and ends, in order
        self.partition_starts: list[np.ndarray] = []  # (units,) bool: starts a document
        self.partition_files: list[np.ndarray] = []  # (units,) int64: file index
        self.files_done: list[int] = []
        self.current_file = -1
        self.batches = 0  # batches given: names each for the encoder check's sample
        per_file = max(1, math.ceil(config.samples / max(n_files, 1))) if config.samples else 0
        self.samples_per_file = per_file
        self.sample_candidates: dict[int, list[str]] = {}

    def _submitter(self, index: int) -> _Submit:
        """Submit to contestant ``index``'s encoder thread."""

        def submit(function: Callable[..., Any], *args: Any) -> Future[Any]:
            future = self.encoders[index].submit(function, *args)
            self.in_flight.append(future)
            return future

        return submit

    def _run_pending(self) -> None:
        pending, self.pending = self.pending, []
        for step in pending:
            step()

    def finish(self) -> None:
        """Count everything given so far."""
        self._run_pending()

    # one batch ---------------------------------------------------------------------------

    def batch(self, batch: _Batch) -> None:
        if not batch.units:
            return
        texts = BatchTexts.of(batch.documents, batch.continues)
        self.batches += 1
        encodes: list[EncodeIds | EncodeWithOffsets] = []
        for contestant in self.contestants:
            by_ids = contestant.byte_lengths is not None or contestant.pre_tokens is not None
            encodes.append(
                EncodeIds(contestant, texts, self.batches, self.config.check_fraction)
                if by_ids
                else EncodeWithOffsets(contestant, texts)
            )
        # The timed calls run alone: with the encoder thread idle. Where it is still busy
        # with the batch before, this batch goes to it untimed, unless its file has no
        # timed batch yet or a tokenizer is placed by offsets (whose check needs them).
        must_time = batch.file not in self.timed_files or any(
            isinstance(encode, EncodeWithOffsets) for encode in encodes
        )
        if must_time:
            wait(self.in_flight)
        self.in_flight = [future for future in self.in_flight if not future.done()]
        if not self.in_flight:
            self.timed_files.add(batch.file)
        for contestant, encode in zip(self.contestants, encodes, strict=True):
            tally = contestant.tallies.setdefault(batch.file, m.Tally())
            if not self.in_flight:
                encode.timed(tally)
        for index, encode in enumerate(encodes):
            encode.start(self._submitter(index))
        words = texts.words()
        doc_units = np.fromiter(map(len, batch.documents), np.int64, len(batch.documents))
        doc_texts = texts.document_texts()
        # Each tokenizer's tokens placed in words and its round trip, on its own thread
        # after its encode: what holds the GIL there is little (kernels, tokenizers).
        placed = [
            self._submitter(index)(
                _placed_and_round_trip, contestant, encode, words, texts, doc_units, doc_texts
            )
            for index, (contestant, encode) in enumerate(
                zip(self.contestants, encodes, strict=True)
            )
        ]
        self._run_pending()
        self.pending.append(
            functools.partial(self._count_batch, batch, texts, words, doc_units, placed)
        )

    def end_partition(self) -> None:
        """The partition's units are all given (``shard`` packs each partition alone)."""
        self.pending.append(self._pack_partition)

    def end_file(self) -> None:
        """The current file's units are all given."""
        if self.current_file >= 0:
            self.pending.append(functools.partial(self._end_file, self.current_file))

    def _count_batch(
        self,
        batch: _Batch,
        texts: BatchTexts,
        words: m.Words,
        doc_units: np.ndarray,
        placed: list[Future[_Placed]],
    ) -> None:
        self.partition_starts.append(texts.starts)
        self.partition_files.append(np.full(len(texts.lines), batch.file, dtype=np.int64))
        for contestant, future in zip(self.contestants, placed, strict=True):
            self._count(contestant, contestant.tallies[batch.file], words, batch, future.result())

    def _count(
        self, contestant: Contestant, tally: m.Tally, words: m.Words, batch: _Batch, placed: _Placed
    ) -> None:
        """Count one batch's encoding: tokens per unit, all ids, each token's word, and
        the documents' round trips."""
        lengths, ids, token_words, exact, normalized = placed
        per_word = m.tokens_per_word(token_words, words.count)
        contestant.words_tokens += m.histogram(per_word, m.WORD_TOKENS_CAP)
        contestant.file_counts += np.bincount(ids, minlength=contestant.id_limit)
        contestant.partition_lengths.append(lengths)

        tally.documents += len(batch.documents) - sum(batch.continues)
        tally.units += len(lengths)
        tally.words += words.count
        tally.bytes += words.utf8_bytes
        tally.chars += words.chars
        tally.tokens += len(ids)
        tally.continued_words += int((per_word >= 2).sum())
        if contestant.unk_id is not None:
            unk = ids == contestant.unk_id
            tally.unk_tokens += int(unk.sum())
            unk_words = token_words[unk]
            tally.unk_words += int(np.unique(unk_words[unk_words >= 0]).size)
        if not any(batch.continues) and all(batch.closes):
            tally.roundtrip_exact += int(exact.sum())
            tally.roundtrip_normalized += int(normalized.sum())
            return
        for part, closes in enumerate(batch.closes):  # a document in parts holds if all do
            so_far = contestant.open_roundtrip
            so_far = (so_far[0] and bool(exact[part]), so_far[1] and bool(normalized[part]))
            contestant.open_roundtrip = (True, True) if closes else so_far
            if closes:
                tally.roundtrip_exact += so_far[0]
                tally.roundtrip_normalized += so_far[1]

    # partitions, files, samples --------------------------------------------------------------

    def _pack_partition(self) -> None:
        """Pack the partition's units into rows, as shard does: overall and per file."""
        if not self.partition_starts:
            return
        starts = np.concatenate(self.partition_starts)
        files = np.concatenate(self.partition_files)
        bounds = np.flatnonzero(np.diff(files)) + 1
        spans = list(zip(np.r_[0, bounds], np.r_[bounds, files.size], strict=True))
        for contestant in self.contestants:
            lengths = np.concatenate(contestant.partition_lengths)
            rows, tokens = _pack(lengths, starts, self.config.seq_len)
            contestant.rows += rows
            contestant.row_tokens += tokens
            for lo, hi in spans:
                rows, tokens = _pack(lengths[lo:hi], starts[lo:hi], self.config.seq_len)
                tally = contestant.tallies[int(files[lo])]
                tally.rows += rows
                tally.row_tokens += tokens
            contestant.partition_lengths.clear()
        self.partition_starts.clear()
        self.partition_files.clear()

    def _end_file(self, file: int) -> None:
        """Fold the file's token counts into the corpus's, keeping what they tell."""
        for contestant in self.contestants:
            counts = contestant.file_counts
            contestant.file_extras[file] = (
                int(np.count_nonzero(counts)),
                m.renyi_efficiency(counts, contestant.vocab_size, self.config.renyi_alpha),
            )
            contestant.counts += counts
            counts[:] = 0
        self.files_done.append(file)

    def consider_sample(self, file: int, document: Document) -> None:
        """Keep the document's first sentence-like unit, while its file needs samples."""
        chosen = self.sample_candidates.setdefault(file, [])
        if len(chosen) < self.samples_per_file:
            unit = next((u for u in document.units if _sentence_like(u)), None)
            if unit is not None and unit not in chosen:
                chosen.append(unit)


def _flat(id_lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Tokens per unit, (units,) int64, and all ids, (tokens,) int64."""
    lengths = np.fromiter(map(len, id_lists), np.int64, len(id_lists))
    ids = np.fromiter(itertools.chain.from_iterable(id_lists), np.int64, int(lengths.sum()))
    return lengths, ids


# A batch counted for one tokenizer: tokens per unit (units,), ids (tokens,), each token's
# word (tokens,), and which documents come back exactly and up to the normaliser (docs,).
_Placed = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _placed_and_round_trip(
    contestant: Contestant,
    encode: EncodeIds | EncodeWithOffsets,
    words: m.Words,
    texts: BatchTexts,
    doc_units: np.ndarray,
    doc_texts: list[str],
) -> _Placed:
    """``encode``'s ids placed in ``words`` (offsets where the ids alone do not fit the
    text) and the round trip of the documents (``doc_units`` units each)."""
    if isinstance(encode, EncodeIds):
        text_lengths, text_ids, text_units = encode.result()
        encoded = placed_by_ids(contestant, words, text_lengths, text_ids, text_units)
        if encoded is not None:  # each unit's tokens: the first unit's are checked
            encode.check_first(texts.first_units(1), encoded[0], encoded[1])
        elif text_units.size == len(texts.lines):  # a unit a text
            encode.check_first(texts.first_units(1), text_lengths, text_ids)
        else:
            encode.check_first(encode.inputs, text_lengths, text_ids)
    else:
        encoded = placed_by_offsets(words, *encode.result())
    if encoded is None:  # ids that do not fit the text: offsets after all
        encoded = placed_by_offsets(words, *encode_offsets(contestant.tokenizer, texts.units))
    lengths, ids, token_words = encoded
    unit_token_ends = np.cumsum(lengths)  # (units,) int64
    doc_tokens = np.diff(unit_token_ends[np.cumsum(doc_units) - 1], prepend=0)  # (docs,)
    return (lengths, ids, token_words, *round_trip(contestant, ids, doc_tokens, doc_texts))


class EncodeIds:
    """One tokenizer's encode of one batch by its encoder: a document's units joined where
    the tokenizer allows (``line_break_id``, ``pre_tokens``), else unit by unit.
    ``timed`` (where called) encodes every ``_SPEED_SHARE``-th text; ``start`` gives the
    encoder thread the others, a check of a sample against the reference where the
    encoder is the fast one, and the cut; ``result`` waits for them and gives the tokens
    of each text encoded (texts,), all ids (tokens,) and the units in each text (texts,):
    one unit each where the line breaks' tokens cut the texts back into units."""

    def __init__(
        self, contestant: Contestant, texts: BatchTexts, batch_number: int, check_fraction: float
    ):
        self.contestant = contestant
        self.texts = texts
        self.batch_number = batch_number
        self.check_fraction = check_fraction
        self.one_each = np.ones(len(texts.lines), dtype=np.int64)
        if contestant.line_break_id is not None or contestant.pre_tokens is not None:
            self.inputs, self.text_units = texts.joined, texts.joined_units
        else:
            self.inputs, self.text_units = texts.units, self.one_each
        self.timed_encoded: tuple[np.ndarray, np.ndarray] | None = None
        self.encoded: Future[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    def timed(self, tally: m.Tally) -> None:
        # (less the "\n"s that join units: the speed is over the units' bytes)
        joins = int(self.text_units[::_SPEED_SHARE].sum()) - len(self.text_units[::_SPEED_SHARE])
        self.timed_encoded = _timed_encode(
            self.contestant, tally, self.inputs[::_SPEED_SHARE], joins
        )

    def start(self, submit: _Submit) -> None:
        rest = self.inputs
        if self.timed_encoded is not None:
            rest = [text for i, text in enumerate(self.inputs) if i % _SPEED_SHARE]
        self.encoded = submit(self._encode_rest, rest)

    def _encode_rest(self, rest: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """On the encoder thread, beside the counting: the texts not timed encoded, the
        check, and the cut into units (the reference and the kernels let go of the GIL)."""
        try:
            encoded = self.contestant.encoder.encode_texts(rest)
        except EncoderMismatch as mismatch:  # the fast encoder's own byte count check
            raise _ContestantMismatch(self.contestant.name, mismatch) from None
        if self.timed_encoded is None:
            ids, lengths = encoded
        else:
            timed = np.arange(len(self.inputs)) % _SPEED_SHARE == 0  # (texts,) bool
            lengths, ids = interleave(timed, self.timed_encoded[::-1], encoded[::-1])
        self._check(lengths, ids)
        if self.contestant.line_break_id is None:
            return lengths, ids, self.text_units
        ids, lengths = self.contestant.encoder.cut_joined(
            ids, lengths, self.text_units, lambda: self.texts.units
        )
        return lengths, ids, self.one_each

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self.encoded is not None
        return self.encoded.result()

    def _check(self, lengths: np.ndarray, ids: np.ndarray) -> None:
        """A deterministic ``check_fraction`` of the texts encoded, encoded again by the
        reference (``check``); each batch's first unit is checked apart, once placed
        (``check_first``): where the first text is a document's lines joined, a few KB,
        that is a hundredth of its cost."""
        chosen = sample_units(self.batch_number, len(self.inputs), self.check_fraction, False)
        self.check(self.inputs, lengths, ids, chosen)

    def check_first(self, texts: list[str], lengths: np.ndarray, ids: np.ndarray) -> None:
        """The first of ``texts`` (this batch's units, else the texts encoded), whose ids
        the fast encoder gave as ``ids`` (``lengths`` (texts,) each), against the
        reference's: every batch is checked, whatever the sample draws."""
        self.check(texts[:1], lengths[:1], ids[: int(lengths[0])] if len(lengths) else ids[:0])

    def check(
        self,
        texts: Sequence[str],
        lengths: np.ndarray,
        ids: np.ndarray,
        chosen: np.ndarray | None = None,
    ) -> None:
        """The ``chosen`` of ``texts`` (all where None), encoded again by the reference:
        ``_ContestantMismatch`` where the fast encoder's ``ids`` (``lengths`` (texts,)
        each) differ."""
        contestant = self.contestant
        if contestant.encoder.id == contestant.reference.id or not len(texts):
            return
        chosen = np.ones(len(texts), dtype=np.bool_) if chosen is None else chosen
        try:
            check_encoded(
                contestant.encoder.id,
                contestant.reference,
                [texts[i] for i in np.flatnonzero(chosen)],
                ids[np.repeat(chosen, lengths)],
                lengths[chosen],
                contestant.name,
            )
        except EncoderMismatch as mismatch:
            raise _ContestantMismatch(contestant.name, mismatch) from None


class _ContestantMismatch(Exception):
    """A fast encoder's ids differ from the reference's for tokenizer ``name``."""

    def __init__(self, name: str, mismatch: EncoderMismatch) -> None:
        super().__init__(str(mismatch))
        self.name = name
        self.mismatch = mismatch


class EncodeWithOffsets:
    """One tokenizer's encode of one batch with offsets (``encode_offsets``, by the
    reference: the fast encoder has no batch call with offsets), through the encoder
    thread (``start``); ``timed`` times the contestant's encoder, as ``shard`` calls it,
    on every ``_SPEED_SHARE``-th unit, and ``result`` checks those ids where it is the
    fast one."""

    def __init__(self, contestant: Contestant, texts: BatchTexts):
        self.contestant = contestant
        self.texts = texts
        self.timed_encoded: tuple[np.ndarray, np.ndarray] | None = None
        self.future: Future[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    def timed(self, tally: m.Tally) -> None:
        units = self.texts.units[::_SPEED_SHARE]
        self.timed_encoded = _timed_encode(self.contestant, tally, units, 0)

    def start(self, submit: _Submit) -> None:
        self.future = submit(encode_offsets, self.contestant.tokenizer, self.texts.units)

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self.future is not None and self.timed_encoded is not None
        lengths, ids, offsets = self.future.result()
        contestant = self.contestant
        if contestant.encoder.id != contestant.reference.id:
            timed = np.arange(len(lengths)) % _SPEED_SHARE == 0  # (units,) bool
            try:
                check_equal(
                    contestant.encoder.id,
                    self.texts.units[::_SPEED_SHARE],
                    *self.timed_encoded,
                    ids[np.repeat(timed, lengths)],
                    lengths[timed],
                    contestant.name,
                )
            except EncoderMismatch as mismatch:
                raise _ContestantMismatch(contestant.name, mismatch) from None
        return lengths, ids, offsets


def _timed_encode(
    contestant: Contestant, tally: m.Tally, texts: list[str], joins: int
) -> tuple[np.ndarray, np.ndarray]:
    """The contestant's encoder on ``texts``, the call alone timed into ``tally`` over
    their bytes less ``joins`` (the "\n"s joining units); returns (ids, lengths)."""
    started = time.perf_counter()
    try:
        encoded = contestant.encoder.encode_texts(texts)
    except EncoderMismatch as mismatch:  # the fast encoder's own byte count check
        raise _ContestantMismatch(contestant.name, mismatch) from None
    tally.encode_seconds += time.perf_counter() - started
    tally.encode_bytes += sum(len(text.encode()) for text in texts) - joins
    return encoded


def encode_offsets(
    tokenizer: Tokenizer, texts: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens per unit (units,), all ids (tokens,) and each token's character offsets
    (tokens * 2,) int64, start and end in its unit, by ``encode_batch``."""
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    id_lists = [e.ids for e in encodings]
    offset_lists = [e.offsets for e in encodings]
    del encodings
    lengths, ids = _flat(id_lists)
    del id_lists
    offsets = np.fromiter(  # (tokens * 2,) int64: start, end in characters
        itertools.chain.from_iterable(itertools.chain.from_iterable(offset_lists)),
        np.int64,
        2 * len(ids),
    )
    return lengths, ids, offsets


def placed_by_offsets(
    words: m.Words, lengths: np.ndarray, ids: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens per unit, ids and each token's word, from the tokens' offsets."""
    token_text = np.repeat(np.arange(len(lengths)), lengths)  # (tokens,) int64
    return lengths, ids, words.token_words(token_text, offsets[0::2], offsets[1::2])


def placed_by_ids(
    contestant: Contestant,
    words: m.Words,
    text_lengths: np.ndarray,
    ids: np.ndarray,
    text_units: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Tokens per unit, ids and each token's word, from what ``EncodeIds`` returned:
    by the pre-tokens of a BERT WordPiece, else by the bytes each token spells (one unit
    per text). None where the ids do not fit the text."""
    if contestant.pre_tokens is not None:
        placed = contestant.pre_tokens.place(words, text_lengths, ids, text_units)
        return None if placed is None else (placed[0], ids, placed[1])
    return _placed_by_bytes(contestant, words, text_lengths, ids)


def _placed_by_bytes(
    contestant: Contestant, words: m.Words, lengths: np.ndarray, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Tokens per unit, ids and each token's word, from the bytes each token spells;
    None where a unit's tokens do not spell its bytes."""
    assert contestant.byte_lengths is not None
    token_words = words.byte_token_words(ids, lengths, contestant.byte_lengths)
    return None if token_words is None else (lengths, ids, token_words)


def round_trip(
    contestant: Contestant, ids: np.ndarray, doc_tokens: np.ndarray, doc_texts: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Which documents decode back exactly, and up to normaliser and spacing: two
    (docs,) bool arrays.

    ``ids`` (tokens,) are the documents' tokens in order, ``doc_tokens`` (docs,) how many
    each has. Where the decoder is a table (``Spellings``) the documents it settles are
    counted without decoding; the others are decoded (by the table where it writes text,
    else by ``Tokenizer.decode_batch``) and normalised.
    """
    exact = np.zeros(len(doc_texts), dtype=np.bool_)  # (docs,) bool
    normalized = np.zeros(len(doc_texts), dtype=np.bool_)  # (docs,) bool
    undecided = np.ones(len(doc_texts), dtype=np.bool_)  # (docs,) bool
    spellings = contestant.spellings
    if spellings is not None:
        exact[:] = spellings.spelled(ids, doc_tokens, doc_texts)
        normalized |= exact
        undecided = ~exact
        if spellings.whole_unless is not None:
            # WordPiece: a document without an unknown token comes back up to the
            # normaliser and whitespace (roundtrip.whole_pieces).
            unknown = np.concatenate(([0], np.cumsum(ids == spellings.whole_unless)))
            ends = np.cumsum(doc_tokens)
            whole = undecided & (unknown[ends] == unknown[ends - doc_tokens])
            normalized |= whole
            undecided &= ~whole
    rest = np.flatnonzero(undecided)
    if rest.size and spellings is not None and spellings.text and contestant.pre_tokens is not None:
        rest = rest[
            _may_come_back(contestant.pre_tokens, spellings, ids, doc_tokens, doc_texts, rest)
        ]
    if rest.size == 0:
        return exact, normalized
    ends = np.cumsum(doc_tokens)
    if spellings is not None and spellings.text:  # the table writes what decode writes
        decoded = [spellings.write(ids[ends[d] - doc_tokens[d] : ends[d]]) for d in rest]
    else:
        decoded = contestant.tokenizer.decode_batch(
            [ids[ends[d] - doc_tokens[d] : ends[d]].tolist() for d in rest],
            skip_special_tokens=False,
        )
    normalizer = contestant.tokenizer.normalizer
    for d, back in zip(rest, decoded, strict=True):
        original = doc_texts[d]
        if back == original:
            exact[d] = normalized[d] = True
            continue
        # Equal up to whitespace once both are normalised; decoded text usually is
        # normalised already (lowercase), which spares normalising it again.
        expected = m.squash_whitespace(
            normalizer.normalize_str(original) if normalizer else original
        )
        got = m.squash_whitespace(back)
        if got != expected and normalizer is not None:
            got = m.squash_whitespace(normalizer.normalize_str(back))
        normalized[d] = got == expected
    return exact, normalized


def _may_come_back(
    pre_tokens: PreTokens,
    spellings: Spellings,
    ids: np.ndarray,
    doc_tokens: np.ndarray,
    doc_texts: list[str],
    docs: np.ndarray,
) -> np.ndarray:
    """(len(docs),) bool: which of the documents ``docs`` (indices; none spelled back
    exactly) may still come back up to the normaliser and whitespace, by length alone.

    ``round_trip`` asks whether squash(N(text)) equals squash(decoded) or
    squash(N(decoded)); equal strings are of equal length, and a BERT normaliser
    works character by character, so each length is a sum over code points
    (``PreTokens.squashed_lengths``): no document need be normalised whole for that.
    A document with an ``[UNK]`` writes five characters where its text has usually one.
    """

    def per_doc(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
        ends = np.concatenate(([0], np.cumsum(values, dtype=np.int64)))
        bounds = np.concatenate(([0], np.cumsum(counts)))
        return ends[bounds[1:]] - ends[bounds[:-1]]

    written, written_counts = spellings.written(ids, doc_tokens, docs)
    texts = [doc_texts[d] for d in docs.tolist()]
    codes = np.frombuffer(  # (chars,) uint32
        "".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32
    )
    want = per_doc(pre_tokens.squashed_lengths(codes), np.fromiter(map(len, texts), np.int64))
    decoded = per_doc(~m.is_space(written), written_counts)
    decoded_normalized = per_doc(pre_tokens.squashed_lengths(written), written_counts)
    return (want == decoded) | (want == decoded_normalized)


def _sentence_like(unit: str) -> bool:
    """Prose rather than code, a URL or a heading: of middling length, mostly letters."""
    low, high = _SAMPLE_CHARS
    if not low <= len(unit) <= high:
        return False
    words = unit.split()
    letters = sum(char.isalpha() for char in unit)
    return max(map(len, words)) <= 30 and letters >= 0.75 * sum(map(len, words))


def _pack(lengths: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[int, int]:
    """Rows and tokens in them (specials included) for units of these token lengths."""
    if lengths.size == 0:
        return 0, 0
    token_ids = np.zeros(int(lengths.sum()), dtype=np.uint32)  # (tokens,) uint32: ids unused
    row_offsets, _ = kernels.pack_rows(token_ids, lengths, starts, seq_len, True, 0, 0)
    return len(row_offsets) - 1, int(row_offsets[-1])


# --- the whole comparison -----------------------------------------------------------------


@dataclass
class Comparison:
    """What ``compare_tokenizers`` measured; ``as_dict()`` is the documented JSON."""

    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return self.data

    def report(self, width: int = 100) -> str:
        """The side-by-side tables for the terminal."""
        from rbprep.compare.report import text_report

        return text_report(self.data, width=width)

    def markdown(self, plots: Sequence[str] = ()) -> str:
        """The whole report as Markdown; ``plots`` are image paths to embed."""
        from rbprep.compare.report import markdown_report

        return markdown_report(self.data, plots)

    def write_json(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.data, indent=2, ensure_ascii=False) + "\n")

    def write_markdown(self, path: str | os.PathLike, plots: Sequence[Path] = ()) -> None:
        """Write the Markdown report; ``plots`` (PNG files) are linked relative to it."""
        path = Path(path)
        links = [os.path.relpath(p, path.parent.resolve()) for p in map(Path.resolve, plots)]
        path.write_text(self.markdown(links))

    def write_plots(self, directory: str | os.PathLike) -> list[Path]:
        """PNG plots into ``directory`` (needs matplotlib: ``pip install 'rbprep[plots]'``)."""
        from rbprep.compare.plots import write_plots

        return write_plots(self.data, Path(directory))


def compare_tokenizers(
    corpus: Sequence[str | os.PathLike] | Corpus,
    tokenizers: Sequence[str | os.PathLike | tuple[str, str | os.PathLike]],
    config: CompareConfig = CompareConfig(),
    *,
    progress: bool = False,
) -> Comparison:
    """Measure ``tokenizers`` side by side on ``corpus`` (docs/compare.md).

    Each tokenizer is a tokenizer.json, a directory holding one (a Hugging Face
    tokenizer directory, ``train-vocab``'s ``DIR/bpe``), a ``train-vocab`` output
    directory (both of its tokenizers), or a ``(name, path)`` pair. Text is counted in
    the sentence units ``shard`` tokenises, each once per tokenizer.
    """
    config.check()
    if not isinstance(corpus, Corpus):
        corpus = open_corpus(corpus)
    named = _named(tokenizers)
    if not named:
        raise RbprepError("no tokenizer to compare; give --tokenizers DIR or --tokenizer PATH")
    fallbacks = {name: Fallback(config.encoder) for name, _ in named}
    while True:
        contestants = [open_contestant(name, path, fallbacks[name].encoder) for name, path in named]
        for contestant in contestants:
            note = fallbacks[contestant.name].note  # a mismatch's, after one
            contestant.encoder_note = contestant.encoder_note if note is None else note
        try:
            return _compare(corpus, contestants, config, progress)
        except _ContestantMismatch as found:
            # What was counted from the fast encoder's ids is dropped: the comparison
            # runs again, that tokenizer on the reference.
            fallbacks[found.name].to_reference(
                found.mismatch, f"comparing again with {REFERENCE_NAME} for {found.name}"
            )


def _compare(
    corpus: Corpus, contestants: list[Contestant], config: CompareConfig, progress: bool
) -> Comparison:
    started = time.perf_counter()
    stats = ReadStats()
    usage = Usage()
    encoders = [
        ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rbprep-encode-{c.name}")
        for c in contestants
    ]
    run = _Run(contestants, config, len(corpus.files), encoders)
    batch = _Batch()
    partition = None
    with contextlib.ExitStack() as stack:
        for executor in encoders:
            stack.enter_context(executor)
        bar = stack.enter_context(ByteProgress("compare", corpus.size, enabled=progress))
        reported = 0
        for partition_id, document in sample_documents(
            corpus, stats, config.sample_bytes, config.seed, usage
        ):
            if partition_id != partition or document.source != batch.file:
                run.batch(batch)
                if partition_id != partition:
                    run.end_partition()
                    partition = partition_id
                if document.source != run.current_file:
                    run.end_file()
                    run.current_file = document.source
                batch = _Batch(file=document.source)
            parts = document_parts(document.units)
            for part, units in enumerate(parts):
                if part:  # a long document: each part is a batch of its own
                    run.batch(batch)
                    batch = _Batch(file=document.source)
                batch.add(units, continues=part > 0, closes=part == len(parts) - 1)
            run.consider_sample(document.source, document)
            if batch.units >= _BATCH_UNITS or batch.chars >= BATCH_CHARS:
                run.batch(batch)
                batch = _Batch(file=document.source)
            bar.update(stats.text_bytes - reported)
            reported = stats.text_bytes
        run.batch(batch)
        run.end_partition()
        run.end_file()
        run.finish()
    if usage.documents == 0:
        raise RbprepError(
            f"the corpus holds no text: {counted(len(corpus.files), 'file')}, no document"
        )
    data = _result(corpus, run, config, stats, usage)
    data["seconds"] = round(time.perf_counter() - started, 3)
    return Comparison(data)


def _result(
    corpus: Corpus, run: _Run, config: CompareConfig, stats: ReadStats, usage: Usage
) -> dict[str, Any]:
    files = [corpus.files[i].path for i in run.files_done]
    tokenizers = []
    surfaces: list[list[Piece]] = []
    for contestant in run.contestants:
        vocab = vocabulary(contestant.tokenizer)
        spelled = [""] * contestant.id_limit  # "" for an id no token has
        for token, index in vocab.items():
            spelled[index] = token
        pieces = pieces_of(spelled, contestant.style)
        surfaces.append(pieces)
        per_file = {}
        overall = m.Tally()
        for index in run.files_done:
            tally = contestant.tallies[index]
            seen, renyi = contestant.file_extras[index]
            per_file[corpus.files[index].path] = m.metrics(
                tally,
                vocab_size=contestant.vocab_size,
                vocab_seen=seen,
                renyi=renyi,
                seq_len=config.seq_len,
            )
            overall.add(tally)
        overall.rows, overall.row_tokens = contestant.rows, contestant.row_tokens
        tokenizers.append(
            {
                "name": contestant.name,
                "path": contestant.path,
                "model": contestant.style.label,
                "normalizer": contestant.tokenizer.normalizer is not None,
                "encoder": contestant.encoder.id.as_dict(),
                "encoder_note": contestant.encoder_note,
                "shardable": contestant.shardable,
                "overall": m.metrics(
                    overall,
                    vocab_size=contestant.vocab_size,
                    vocab_seen=int(np.count_nonzero(contestant.counts)),
                    renyi=m.renyi_efficiency(
                        contestant.counts, contestant.vocab_size, config.renyi_alpha
                    ),
                    seq_len=config.seq_len,
                ),
                "per_file": per_file,
                "tokens_per_word": m.histogram_dict(contestant.words_tokens),
                "token_bytes": _token_bytes(contestant, pieces),
                "top_tokens": _top_tokens(contestant, pieces),
                "longest_tokens": _longest_tokens(contestant, pieces),
            }
        )
    pairs = []
    for (i, a), (j, b) in itertools.combinations(enumerate(run.contestants), 2):
        ta, tb = tokenizers[i]["overall"], tokenizers[j]["overall"]
        pairs.append(
            {
                "a": a.name,
                "b": b.name,
                "vocab_overlap": m.vocab_overlap(
                    _pieces_set(a, surfaces[i]), _pieces_set(b, surfaces[j])
                ),
                "ratios": {
                    key: (ta[key] / tb[key] if tb[key] else None)
                    for key in ("vocab_size", "tokens", "fertility", "rows", "encode_mb_s")
                },
            }
        )
    return {
        "rbprep_version": __version__,
        "parameters": asdict(config),
        "corpus": {
            "files": files,
            "documents": usage.documents,
            "units": usage.units,
            "text_bytes": usage.text_bytes,
            "sampled": usage.sampled,
            "read": stats.as_dict(),
        },
        "tokenizers": tokenizers,
        "pairs": pairs,
        "samples": _samples(run, corpus, config.samples),
    }


def _pieces_set(contestant: Contestant, pieces: list[Piece]) -> set[str]:
    special = set(contestant.special_ids)
    return {p.text for index, p in enumerate(pieces) if index not in special and p.text}


def _token_bytes(contestant: Contestant, pieces: list[Piece]) -> dict[str, dict[str, int]]:
    """Token lengths in bytes (marker left out): over the text, and over the vocabulary."""
    lengths = np.fromiter((p.nbytes for p in pieces), np.int64, len(pieces))
    content = np.ones(len(pieces), dtype=np.bool_)
    content[list(contestant.special_ids)] = False
    used = m.histogram(lengths, m.TOKEN_BYTES_CAP, weights=contestant.counts.astype(np.float64))
    vocab = m.histogram(lengths[content], m.TOKEN_BYTES_CAP)
    return {
        "occurrences": m.histogram_dict(used.astype(np.int64)[1:], first=1),
        "vocabulary": m.histogram_dict(vocab[1:], first=1),
    }


def _top_tokens(contestant: Contestant, pieces: list[Piece]) -> list[dict[str, Any]]:
    total = int(contestant.counts.sum())
    order = np.argsort(-contestant.counts, kind="stable")[:_TOP]
    return [
        {
            "token": display(pieces[i], contestant.style),
            "count": int(contestant.counts[i]),
            "share": int(contestant.counts[i]) / total if total else 0.0,
        }
        for i in order
        if contestant.counts[i] > 0
    ]


def _longest_tokens(contestant: Contestant, pieces: list[Piece]) -> list[dict[str, Any]]:
    special = set(contestant.special_ids)
    used = np.flatnonzero(contestant.counts)  # (used,) int64 ids
    nbytes = np.fromiter((pieces[i].nbytes for i in used.tolist()), np.int64, used.size)
    # Longest first, then most used, then the lower id: the order of the whole list.
    order = used[np.lexsort((used, -contestant.counts[used], -nbytes))]
    longest: list[int] = []
    for i in order.tolist():
        # runs of whitespace (code indentation) left out: words are what is of interest
        if i not in special and pieces[i].text.strip():
            longest.append(i)
            if len(longest) == _TOP:
                break
    return [
        {
            "token": display(pieces[i], contestant.style),
            "bytes": pieces[i].nbytes,
            "count": int(contestant.counts[i]),
        }
        for i in longest
    ]


def _samples(run: _Run, corpus: Corpus, wanted: int) -> list[dict[str, Any]]:
    """A few units, spread evenly over the files, tokenised by each tokenizer word by word."""
    files = sorted(run.sample_candidates)
    if not files or not wanted:
        return []
    spread = sorted({round(float(x)) for x in np.linspace(0, len(files) - 1, wanted)})
    order = spread + [i for i in range(len(files)) if i not in spread]
    chosen: list[tuple[int, int]] = []  # (index into files, index among its candidates)
    for depth in range(run.samples_per_file):
        for i in order:
            if depth < len(run.sample_candidates[files[i]]) and len(chosen) < wanted:
                chosen.append((i, depth))
    samples = []
    for i, depth in sorted(chosen):
        text = run.sample_candidates[files[i]][depth]
        samples.append(
            {
                "file": corpus.files[files[i]].path,
                "text": text,
                "words": text.split(),
                "tokens": {c.name: _split_words(c, text) for c in run.contestants},
            }
        )
    return samples


def _split_words(contestant: Contestant, text: str) -> list[list[str]]:
    """The pieces of each whitespace word of ``text``, as text (markers left out)."""
    encoding = contestant.tokenizer.encode(text, add_special_tokens=False)
    words = m.Words.of([text])
    offsets = np.array(encoding.offsets, dtype=np.int64).reshape(-1, 2)  # (tokens, 2)
    token_words = words.token_words(
        np.zeros(len(encoding.ids), dtype=np.int64), offsets[:, 0], offsets[:, 1]
    )
    split: list[list[Piece]] = [[] for _ in range(words.count)]
    for token, word in zip(encoding.tokens, token_words, strict=True):
        if word >= 0:
            split[int(word)].append(piece(token, contestant.style))
    return [word_pieces(pieces) for pieces in split]
