"""Encode a corpus's units to token ids, as every command does: one rule, two encoders.

A document is read as sentence units (lines). ``document_units`` (``units_of`` for many
documents) gives the texts that are encoded: a document's later units carry a leading
space, so they read as they would in running text ("Ġword"), at no token's cost.
``Encoder.encode_lines`` turns documents' lines into their units' ids, concatenated
(uint32), and each unit's length (int64).

Two encoders sit behind that interface:

- the reference, Hugging Face ``tokenizers`` (``ReferenceEncoder``): the library the
  tokenizer.json belongs to, and the arbiter of what its ids are;
- a fast encoder, ``tokie`` (``FastEncoder``): it loads the same tokenizer.json and
  returns the same ids several times faster (README, "Encoders").

Identity is checked, never assumed: the fast encoder is given only the texts it is
proven on (``FastEncoder.encode_texts``: the rest go to the reference, whatever a sample
draws), ``open_encoder`` encodes a probe set of hard text with both when a tokenizer is
loaded, and ``check_sample`` compares a deterministic sample of every partition's
documents with the reference during a run. The fast encoder is used only while they
agree; see ``EncoderMismatch``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import itertools
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from rbprep import kernels, tokie_proven
from rbprep.cache import default_cache_dir
from rbprep.corpus.formats import TextLines
from rbprep.errors import RbprepError

ENCODER_CHOICES = ("auto", "fast", "reference")
REFERENCE_NAME = "tokenizers"
FAST_NAME = "tokie"
# Characters per text when a document's lines are encoded joined (see line_break_id):
# long enough to spare the tokenizer's cost per input, short enough to spread over threads.
JOIN_CHARS = 4_096
# Units per encode call: bounds the memory alive at once; measured a little faster than
# larger batches for both encoders (tokie is 3x slower on one call of 100K lines).
UNIT_BATCH = 2_000
JOINED_BATCH = 256  # joined texts per encode call, about 1 MB
# Characters per encode call at most: a tokeniser holds ~100 bytes per character of a
# call, so long units (up to formats.MAX_UNIT_BYTES each) go a few at a time.
BATCH_CHARS = 2**20
# The share of each partition's units that the reference re-encodes during a run, unless
# shard's check_fraction says otherwise.
CHECK_FRACTION = 0.02
# tokie 0.1.4 encodes a text of this many UTF-8 bytes or more, and a pre-token of as many,
# in pieces, one per core of the machine, that it cuts at a space or (within a pre-token)
# anywhere: its ids then depend on the machine and differ from tokenizers' (a 200 KB word
# with no spaces, on 2 cores; the same word agrees on 1). Below it, tokie encodes a text
# whole, on one thread. Texts below it are the proven set (the long-run differential tests
# in tests/test_encoding.py); longer ones reach tokie only as pieces below it
# (``tokie_pieces``), and what cannot be cut so goes to the reference.
TOKIE_TEXT_BYTES = 10_000
# Every code point Python counts as space (``str.isspace``, a superset of the \s of the
# pre-tokenizers' regexes), and those some Unicode version or regex engine treats so: no
# cut is made after one (``tokie_pieces``).
_SPACE_LIKE = np.array(
    [*range(0x09, 0x0E), *range(0x1C, 0x21), 0x85, 0xA0, 0x1680, 0x180E, *range(0x2000, 0x200E),
     0x2028, 0x2029, 0x202F, 0x205F, 0x2060, 0x3000, 0xFEFF],
    dtype=np.uint32,
)  # fmt: skip
# How FastEncoder makes tokie's tokenizer from a tokenizer.json: part of the name of
# its cached form, so raise it whenever _tokie_tokenizer changes what it gives tokie.
_TOKIE_FORM = 1

# Text that encoders get wrong first: control characters, invisible and combining
# characters, every Unicode space, astral characters, scripts without spaces, long runs.
_PROBE_TEXTS = (
    "",
    " ",
    "plain English, with punctuation: (it's 3.14!) -- and 'quotes'.",
    "".join(chr(c) for c in range(0x20)) + "x",
    "".join(chr(c) for c in range(0x7F, 0xA0)) + "y",
    "a\x00b\x7fc\x85d\x9fe\ufffdf\ufeffg\u200bh\u200di\u2060j",
    "e\u0301 n\u0303 a\u030a\u0308 \u0915\u094d\u0937 \u05e9\u05c1\u05b8",
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000 x  y   z",
    "😀👍🏽👨\u200d👩\u200d👧 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈 \U0001f9ea\U000e0041 \U0010fffd",
    "日本語のテキストと中文文本，以及한국어 텍스트。ภาษาไทยไม่มีช่องว่าง",
    "Größe, naïve café, İstanbul, ǅ, ﬁ ligature, Ⅻ, ①, ＦＵＬＬＷＩＤＴＨ，",
    "Привет, мир! Γειά σου κόσμε. مرحبا بالعالم. שלום עולם. नमस्ते दुनिया",
    "x" * 3_000,
    # A pre-token tokie cuts in pieces of its own (TOKIE_TEXT_BYTES): it goes to the reference.
    "antidisestablishmentarianism" * 400,
    "supercalifragilisticexpialidocious" * 40,
    "https://example.com/path?query=1&b=%20#frag user@example.com 0x7fffffff 1e-9",
    "def f(x):\n    return {'a': [1, 2, 3]}  # code\n\n\n",
    "   leading and trailing spaces   ",
    "\u0301\u0301\u0301",
    "\x00\x01\x02",
    # Found by the differential tests: tokie 0.1.4's WordPiece differs on these.
    "0\U0001e944 \ufada \U0001da8c",
)


@dataclass(frozen=True)
class EncoderId:
    """Which encoder wrote a dataset (``manifest.json``'s ``encoder``)."""

    name: str
    version: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}


class EncoderMismatch(RbprepError):
    """The fast encoder's ids differ from the reference's for ``text``."""

    def __init__(self, message: str, text: str) -> None:
        super().__init__(message)
        self.text = text

    @classmethod
    def on(cls, encoder: EncoderId, text: str, where: str, spelled: int = -1) -> EncoderMismatch:
        """The mismatch on ``text``; ``spelled``: the bytes its ids spell, where those
        are what is wrong."""
        shown = text if len(text) <= 80 else text[:77] + "..."
        what = f"encodes {shown!r} otherwise than {REFERENCE_NAME}"
        if spelled >= 0:
            what = f"gives ids for {shown!r} that spell {spelled} of its {len(text.encode())} bytes"
        return cls(f"{where + ': ' if where else ''}{encoder.name} {encoder.version} {what}", text)

    def at(self, where: str) -> EncoderMismatch:
        """The same mismatch, said to be at ``where`` (a file and partition)."""
        return EncoderMismatch(f"{where}: {self}", self.text)

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process and Dask boundaries
        return (type(self), (str(self), self.text))


def document_units(lines: Sequence[str]) -> list[str]:
    """The texts encoded for a document of these lines: the first as it is, each later
    one with a leading space (it continues the running text)."""
    if not lines:
        return []
    return [lines[0], *(" " + line for line in lines[1:])]


def units_of(lines: Sequence[str], starts: np.ndarray) -> list[str]:
    """``document_units`` of many documents' lines at once: ``starts`` (lines,) bool marks
    the first line of each (a line it does not mark continues the one before)."""
    return [
        line if start else " " + line for line, start in zip(lines, starts.tolist(), strict=True)
    ]


def document_starts(sizes: Sequence[int], later: Sequence[bool] = ()) -> np.ndarray:
    """(lines,) bool: where each of the documents of ``sizes`` lines, laid one after
    another, starts; ``later`` (documents,) marks those that continue the one before
    (a later part of a long document), whose first line starts nothing."""
    sizes = np.asarray(sizes, dtype=np.int64)
    starts = np.zeros(int(sizes.sum()), dtype=np.bool_)
    opens = sizes > 0
    if len(later):
        opens &= ~np.asarray(later, dtype=np.bool_)
    starts[(np.cumsum(sizes) - sizes)[opens]] = True
    return starts


class Encoder:
    """Encodes texts with one tokenizer; ``encode_lines`` is what commands call."""

    id: EncoderId

    def __init__(self, line_break_id: int | None) -> None:
        # The id of a lone "\n" where a document's units may be encoded joined by "\n"
        # (see ``line_break_id``), else None.
        self.line_break_id = line_break_id

    def encode_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Ids of ``texts`` concatenated (uint32) and each text's length (int64): one
        call, no special tokens added, text that spells a special token stays text."""
        raise NotImplementedError

    def encode_lines(
        self, lines: Sequence[str], starts: np.ndarray | Sequence[bool]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ids of the units of ``lines`` (``units_of``) concatenated (uint32), and each
        unit's length (int64).

        ``lines`` are documents' lines as read; ``starts`` (lines,) bool marks each
        document's first. With a line break id, a document's lines are encoded a few KB
        at a time, joined by breaks (``join_lines``), and cut apart at them: the same
        ids, fewer inputs, and no unit made in Python.
        """
        starts = np.asarray(starts, dtype=np.bool_)
        if self.line_break_id is not None:
            texts, group_sizes = join_lines(lines, starts)
            ids, text_lengths = self._batched(texts, JOINED_BATCH)
            cut = kernels.cut_at_breaks(ids, text_lengths, group_sizes, self.line_break_id)
            if cut is not None:
                return cut[1], cut[0]
        return self._batched(units_of(lines, starts), UNIT_BATCH)

    def _batched(self, texts: Sequence[str], batch: int) -> tuple[np.ndarray, np.ndarray]:
        bounds = batch_bounds(np.fromiter(map(len, texts), np.int64, len(texts)), batch)
        if len(bounds) <= 2:
            return self.encode_texts(texts)
        parts = [self.encode_texts(texts[a:b]) for a, b in itertools.pairwise(bounds)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def batch_bounds(lengths: np.ndarray, most: int, chars: int = BATCH_CHARS) -> list[int]:
    """Where to cut texts of ``lengths`` into batches of at most ``most`` texts and, past
    their first text, at most ``chars`` characters: ``[0, ..., len(lengths)]``."""
    ends = np.cumsum(lengths)
    bounds = [0]
    while bounds[-1] < len(lengths):
        start = bounds[-1]
        within = int(np.searchsorted(ends, (ends[start - 1] if start else 0) + chars, "right"))
        bounds.append(min(start + most, max(within, start + 1), len(lengths)))
    return bounds


class ReferenceEncoder(Encoder):
    """Hugging Face ``tokenizers`` with ``encode_batch_fast`` (no offsets)."""

    def __init__(self, tokenizer: Tokenizer, line_break_id: int | None) -> None:
        super().__init__(line_break_id)
        self.tokenizer = tokenizer
        self.id = EncoderId(REFERENCE_NAME, installed_version("tokenizers"))

    def encode_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encodings = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        id_lists = [encoding.ids for encoding in encodings]
        lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
        ids = np.fromiter(
            itertools.chain.from_iterable(id_lists), dtype=np.uint32, count=int(lengths.sum())
        )
        return ids, lengths


class FastEncoder(Encoder):
    """tokie's flat batch call, on the tokenizer less its added tokens and post-processor.

    tokie matches added tokens in text whatever it is told, so it gets none: a special
    token's spelling in text is then encoded by the model, as the reference encodes it
    with ``encode_special_tokens``. The probe set checks that this holds.

    For a byte-level BPE without a normaliser every call is also checked whole: its
    tokens spell the text byte for byte, so the bytes of each text's ids must add up to
    the text's UTF-8 bytes. No text is lost or doubled unseen, even outside the sample
    that ``check_sample`` compares with the reference.

    tokie is given only its proven set: texts under ``TOKIE_TEXT_BYTES`` without a
    character it is not proven on (``unproven_characters``). A longer text is cut into
    pieces under it at pre-token starts (``tokie_pieces``); what stays longer, and any
    text with such a character, is encoded by the reference (``fallback``), whatever the
    sample draws."""

    def __init__(
        self, config: dict[str, Any], line_break_id: int | None, source_sha256: str | None = None
    ) -> None:
        """``source_sha256``: the sha256 of the JSON text ``config`` was parsed from,
        where known; tokie's own form of the tokenizer is then cached under it."""
        super().__init__(line_break_id)
        self.tokenizer = _tokie_tokenizer(config, source_sha256)
        self.id = EncoderId(FAST_NAME, installed_version("tokie"))
        self.byte_lengths = _spelled_bytes(config)
        self.cut_before = cut_characters(config)
        self.unproven = unproven_characters(config)
        # Encodes what tokie is not proven on (``encode_texts``): the reference, as
        # ``open_encoder`` sets it; None encodes everything with tokie, as it is.
        self.fallback: Encoder | None = None

    def encode_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """As ``Encoder.encode_texts``; with a fallback, only the proven set reaches tokie.

        A text of ``TOKIE_TEXT_BYTES`` or more is cut into pieces below that where the
        pre-tokenizer allows (``tokie_pieces``); a piece still that long (one pre-token),
        and any piece holding a character tokie is not proven on (``unproven_characters``),
        goes to the fallback. The texts' byte counts, made once here, serve the route and
        tokie's byte check."""
        text_bytes = utf8_lengths(texts)
        if self.fallback is None:
            return self._encode(texts, text_bytes)
        long = text_bytes >= TOKIE_TEXT_BYTES
        pieces, piece_bytes, owners = texts, text_bytes, None
        if long.any():
            cut = {int(i): tokie_pieces(texts[i], self.cut_before) for i in np.flatnonzero(long)}
            pieces = list(
                itertools.chain.from_iterable(cut.get(i, (t,)) for i, t in enumerate(texts))
            )
            counts = np.ones(len(texts), dtype=np.int64)
            counts[list(cut)] = [len(parts) for parts in cut.values()]
            owners = np.repeat(np.arange(len(texts)), counts)  # (pieces,) the text of each
            piece_bytes = utf8_lengths(pieces)
        routed = piece_bytes >= TOKIE_TEXT_BYTES
        routed |= holding(pieces, self.unproven)
        if not routed.any():
            ids, lengths = self._encode(pieces, piece_bytes)
        else:
            kept = np.flatnonzero(~routed).tolist()
            rest = self._encode([pieces[i] for i in kept], piece_bytes[kept])
            by_fallback = self.fallback.encode_texts([pieces[i] for i in np.flatnonzero(routed)])
            lengths, ids = interleave(routed, (by_fallback[1], by_fallback[0]), (rest[1], rest[0]))
            ids = ids.astype(np.uint32)
        if owners is not None:  # the pieces' tokens, counted per text they came from
            lengths = np.bincount(owners, weights=lengths, minlength=len(texts)).astype(np.int64)
        return ids, lengths

    def _encode(
        self, texts: Sequence[str], text_bytes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """tokie's ids for ``texts`` of ``text_bytes`` UTF-8 bytes each, byte-checked."""
        flat, counts = self.tokenizer.encode_batch_flat(list(texts), add_special_tokens=False)
        ids = np.asarray(flat, dtype=np.uint32)
        lengths = np.asarray(counts, dtype=np.int64)
        if self.byte_lengths is not None:
            per_text = kernels.text_byte_counts(ids, lengths, self.byte_lengths)
            wrong = np.flatnonzero(per_text != text_bytes)
            if wrong.size:
                first = int(wrong[0])
                raise EncoderMismatch.on(self.id, texts[first], "", int(per_text[first]))
        return ids, lengths


def utf8_lengths(texts: Sequence[str]) -> np.ndarray:
    """(texts,) int64: each text's UTF-8 bytes (an ASCII str's length is its UTF-8 length:
    no copy is made for it)."""
    return np.fromiter(
        (len(text) if text.isascii() else len(text.encode()) for text in texts),
        np.int64,
        len(texts),
    )


def cut_characters(config: dict[str, Any]) -> tuple[int, ...]:
    r"""The code points before which ``tokie_pieces`` may cut a text for this tokenizer:
    " " and "\n" for a byte-level pre-tokenizer with its regex and no normaliser (only
    " " where it adds a prefix space: it would add one to a piece that starts otherwise),
    and for BERT's normaliser and pre-tokenizer (the normaliser maps each character on its
    own, and a space ends every pre-token); none for any other kind, never cut."""
    pre_tokenizer = config.get("pre_tokenizer") or {}
    if _bert_kind(config):
        return (0x20, 0x0A)
    if not _byte_level_kind(config) or not pre_tokenizer.get("use_regex", True):
        return ()
    return (0x20,) if pre_tokenizer.get("add_prefix_space", False) else (0x20, 0x0A)


def _byte_level_kind(config: dict[str, Any]) -> bool:
    """A byte-level BPE with no normaliser (GPT-2's, RoBERTa's, ``train-vocab``'s)."""
    return (
        (config.get("model") or {}).get("type") == "BPE"
        and config.get("normalizer") is None
        and (config.get("pre_tokenizer") or {}).get("type") == "ByteLevel"
    )


def _bert_kind(config: dict[str, Any]) -> bool:
    """A WordPiece with BERT's normaliser and pre-tokenizer (BERT's, ``train-vocab``'s)."""
    return (
        (config.get("model") or {}).get("type") == "WordPiece"
        and (config.get("normalizer") or {}).get("type") == "BertNormalizer"
        and (config.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer"
    )


# Characters tokie 0.1.4 may encode otherwise than tokenizers, at any length, on every
# kind but BERT's (whose set is ``tokie_proven``'s): a vertical tab or form feed, after two
# spaces, with some BPE vocabularies (found by the differential tests).
_FEW_UNPROVEN = "\x0b\x0c"


@functools.cache
def _wordpiece_unproven() -> np.ndarray:
    """(0x110000,) bool: the code points of ``tokie_proven.WORDPIECE_UNPROVEN``."""
    table = np.zeros(0x110000, dtype=np.bool_)
    for span in "".join(tokie_proven.WORDPIECE_UNPROVEN).split():
        first, _, last = span.partition("-")
        table[int(first, 16) : int(last or first, 16) + 1] = True
    return table


def unproven_characters(config: dict[str, Any]) -> str | np.ndarray:
    """The characters tokie is not proven on for this tokenizer, whose texts go to the
    reference: a (0x110000,) bool table over code points for BERT's kind, else a few
    characters as a str."""
    return _wordpiece_unproven() if _bert_kind(config) else _FEW_UNPROVEN


def holding(texts: Sequence[str], characters: str | np.ndarray) -> np.ndarray:
    """(texts,) bool: the texts holding any of ``characters`` (``unproven_characters``).

    One pass over the texts joined by a line feed (which neither set holds), none per
    text: a few characters are looked for with ``in`` (memchr speed), a table is indexed
    with the code points (the bytes of ASCII text, else UTF-32); only where one is found
    are the texts it lies in worked out."""
    found = np.zeros(len(texts), dtype=np.bool_)
    joined = "\n".join(texts)
    if isinstance(characters, str):
        if not any(character in joined for character in characters):
            return found
        table = np.zeros(0x110000, dtype=np.bool_)
        table[[ord(character) for character in characters]] = True
    else:
        table = characters
    if joined.isascii():
        points = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)  # (chars,)
    else:
        points = np.frombuffer(joined.encode("utf-32-le"), dtype="<u4")  # (chars,)
    at = np.flatnonzero(table[points])
    if at.size:
        ends = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)) + 1)
        found[np.searchsorted(ends, at, "right")] = True
    return found


def tokie_pieces(text: str, cut_before: Sequence[int], limit: int = TOKIE_TEXT_BYTES) -> list[str]:
    r"""``text`` cut into pieces of fewer than ``limit`` UTF-8 bytes where it can be, each
    as long as it can be, whose ids, concatenated, are the text's.

    A cut is made only before a character of ``cut_before`` (``cut_characters``: a space
    or line feed) that follows one that is not space-like (``_SPACE_LIKE``). There the
    byte-level regex always starts a new pre-token: its alternatives hold a space only
    first (`` ?\p{L}+``, ...) or among spaces (``\s+``), so none spans the two; and no
    pre-token before the cut looks past it (the one lookahead, ``(?!\S)``, follows only a
    run of spaces). The pieces are thus pre-tokenized, and encoded, as in the whole. A
    stretch with no such cut in ``limit`` bytes (a pre-token that long) stays one piece.
    """
    if not cut_before:
        return [text]
    points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")  # (chars,) code points
    ends = np.cumsum(
        1 + (points >= 0x80) + (points >= 0x800) + (points >= 0x10000), dtype=np.int64
    )  # (chars,) UTF-8 bytes up to and with each character
    if not len(points) or ends[-1] < limit:
        return [text]
    cuts = (
        1
        + np.flatnonzero(  # (cuts,) where a piece may start
            np.isin(points[1:], cut_before) & ~np.isin(points[:-1], _SPACE_LIKE)
        )
    )
    before = ends[cuts - 1]  # (cuts,) bytes before each cut, increasing
    pieces, start, start_byte = [], 0, 0
    while ends[-1] - start_byte >= limit:
        # The last cut that leaves the piece under the limit, else the first after start.
        k = int(np.searchsorted(before, start_byte + limit)) - 1
        if k < 0 or cuts[k] <= start:
            k = int(np.searchsorted(cuts, start, "right"))
            if k == len(cuts):
                break
        pieces.append(text[start : cuts[k]])
        start, start_byte = int(cuts[k]), int(before[k])
    pieces.append(text[start:])
    return pieces


@functools.cache
def installed_version(package: str) -> str:
    """The installed version of ``package`` (a distribution whose module has its name):
    its ``__version__``, else the version in the name of the ``.dist-info`` directory
    beside its module, else ``importlib.metadata``'s answer. The first two spare a run's
    start-up importing importlib.metadata and scanning every entry of ``sys.path`` for
    distributions (15 ms), for a package that is imported anyway."""
    module = importlib.import_module(package)
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    if module.__file__ is not None:
        site = Path(module.__file__).resolve().parent.parent
        found = sorted(site.glob(f"{package}-*.dist-info"))
        if len(found) == 1:
            return found[0].name[len(package) + 1 : -len(".dist-info")]
    from importlib import metadata

    return metadata.version(package)


def tokie_cache_file(source_sha256: str) -> Path:
    """Where tokie's binary form (.tkz) of the tokenizer.json with this sha256 is kept,
    for the tokie installed; ``FastEncoder`` writes it on first use."""
    name = f"{source_sha256}-{_TOKIE_FORM}-tokie-{installed_version('tokie')}.tkz"
    return default_cache_dir() / "tokie" / name


def _tokie_tokenizer(config: dict[str, Any], source_sha256: str | None) -> Any:
    """tokie's tokenizer for ``config`` less its added tokens, post-processor, truncation
    and padding: from the cache where ``source_sha256`` finds it there (9 ms for a 50K
    BPE), else from that JSON (0.2 s, holding the GIL), then cached. The probe set
    checks it against the reference either way (``open_encoder``)."""
    import tokie

    cached = None if source_sha256 is None else tokie_cache_file(source_sha256)
    if cached is not None and cached.is_file():
        try:
            return tokie.Tokenizer.from_file(str(cached))
        except Exception:  # damaged (tokie raises plain exceptions): made again below
            pass
    plain = {**config, "added_tokens": [], "post_processor": None, "truncation": None}
    plain["padding"] = None
    # tokie reads a tokenizer from a file only.
    handle, path = tempfile.mkstemp(suffix=".json", prefix="rbprep-tokenizer-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(json.dumps(plain))  # dumps: the C encoder, 3x json.dump's speed
        tokenizer = tokie.Tokenizer.from_json(path)
    finally:
        os.unlink(path)
    if cached is not None:
        # Written whole under another name, then renamed: a reader never sees a part.
        partial = cached.with_name(f"{cached.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tokenizer.save(str(partial))
            os.replace(partial, cached)
        except Exception:  # a cache that cannot be written only costs the next run time
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
    return tokenizer


def interleave(
    first: np.ndarray, firsts: tuple[np.ndarray, np.ndarray], rest: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Tokens per text (texts,) int64 and all ids (tokens,) int64, in text order, from the
    (lengths, ids) of the texts ``first`` (texts,) marks and of the others, each in order."""
    lengths = np.empty(len(first), dtype=np.int64)
    lengths[first], lengths[~first] = firsts[0], rest[0]
    from_first = np.repeat(first, lengths)  # (tokens,) bool
    ids = np.empty(len(from_first), dtype=np.int64)
    ids[from_first], ids[~from_first] = firsts[1], rest[1]
    return lengths, ids


def _spelled_bytes(config: dict[str, Any]) -> np.ndarray | None:
    """(ids,) int64: the bytes of text each id stands for, for a byte-level BPE with no
    normaliser (each character of its vocabulary is one byte); None for other kinds.
    Added tokens, which tokie is never given, count a huge negative: an id of one
    makes its text's sum wrong."""
    if not _byte_level_kind(config):
        return None
    vocab = config["model"]["vocab"]
    added = {token["id"] for token in config.get("added_tokens") or []}
    size = max([*vocab.values(), *added]) + 1
    lengths = np.full(size, -(2**40), dtype=np.int64)  # (ids,) int64
    lengths[np.fromiter(vocab.values(), np.int64, len(vocab))] = np.fromiter(
        map(len, vocab), np.int64, len(vocab)
    )
    lengths[list(added)] = -(2**40)
    return lengths


def start_fast_encoder(
    config: dict[str, Any], choice: str, source_sha256: str | None = None
) -> Future[FastEncoder] | None:
    """tokie loading the tokenizer ``config`` describes on a thread of its own, where
    ``open_encoder(..., choice, loading=...)`` would load it (else None), while the
    caller loads the reference. ``source_sha256`` as ``FastEncoder`` takes it."""
    if choice == "reference" or _ids_skip(config) or _long_tokens(config):
        return None
    if choice == "auto" and unverified_kind(config):
        return None
    loading: Future[FastEncoder] = Future()

    def load() -> None:
        try:
            loading.set_result(FastEncoder(config, None, source_sha256))
        except Exception as exc:  # open_encoder says why
            loading.set_exception(exc)

    threading.Thread(target=load, name="rbprep-fast-encoder", daemon=True).start()
    return loading


def open_encoder(
    reference: Tokenizer,
    config: dict[str, Any],
    line_break_id: int | None,
    choice: str = "auto",
    where: str = "tokenizer",
    loading: Future[FastEncoder] | None = None,
    source_sha256: str | None = None,
) -> tuple[Encoder, str | None]:
    """The encoder ``choice`` names for this tokenizer, and why it is not the fast one
    (None when it is, or when the reference was asked for).

    ``reference`` is ``tokenizer_info.encoding_tokenizer``'s tokenizer, ``config`` the
    parsed tokenizer.json. ``auto`` takes the fast encoder where it loads the tokenizer,
    agrees with the reference on the probe set, and the tokenizer is of a kind the
    differential tests cover (``unverified_kind``), else the reference; ``fast`` takes
    it on any kind it loads and agrees on (an ``RbprepError`` where it does not);
    ``reference`` is tokenizers. ``loading``: ``start_fast_encoder``'s, for this config.
    """
    if choice not in ENCODER_CHOICES:
        raise RbprepError(f"--encoder must be one of {', '.join(ENCODER_CHOICES)}, got {choice!r}")
    slow = ReferenceEncoder(reference, line_break_id)
    if choice == "reference":
        return slow, None
    unverified = (
        _ids_skip(config)
        or _long_tokens(config)
        or (None if choice == "fast" else unverified_kind(config))
    )
    if unverified and choice == "fast":
        raise RbprepError(f"{where}: {unverified}; use --encoder auto or reference")
    if unverified:
        return slow, f"{where}: {unverified}"
    try:
        fast = (
            FastEncoder(config, line_break_id, source_sha256)
            if loading is None
            else loading.result()
        )
        fast.line_break_id = line_break_id
        fast.fallback = slow
        probe_texts = [*_PROBE_TEXTS, *_special_spellings(reference)]
        check_texts(fast, slow, probe_texts, where)
        check_sample(fast, slow, *_probe_document(), where=where)
    except EncoderMismatch as mismatch:
        reason = str(mismatch)
    except Exception as exc:  # tokie raises plain exceptions for what it cannot load
        reason = f"{where}: {FAST_NAME} cannot load it ({str(exc)[:200]})"
    else:
        return fast, None
    if choice == "fast":
        raise RbprepError(f"{reason}; use --encoder auto or reference")
    return slow, reason


def unverified_kind(config: dict[str, Any]) -> str | None:
    """Why the tokenizer ``config`` describes is not of a kind the fast encoder is
    tested to match on, or None where it is: a byte-level BPE with no normaliser
    (GPT-2's, RoBERTa's, ``train-vocab``'s), and a WordPiece with BERT's normaliser and
    pre-tokenizer (BERT's, ``train-vocab``'s), whose texts with a code point tokie is not
    proven on go to the reference (``unproven_characters``). Elsewhere tokie 0.1.4 was
    seen to differ: the NFKC, NFD, Lowercase, Strip, Replace and Prepend normalisers
    (README, "Encoders"). Vocabularies tokie cannot load right on any kind are refused
    before this (``_ids_skip``, ``_long_tokens``)."""
    if _byte_level_kind(config) or _bert_kind(config):
        return None
    model = (config.get("model") or {}).get("type")
    normalizer = (config.get("normalizer") or {}).get("type")
    pre_tokenizer = (config.get("pre_tokenizer") or {}).get("type")
    return (
        f"{FAST_NAME} is not tested to match on a {model} model with normaliser "
        f"{normalizer} and pre-tokenizer {pre_tokenizer}"
    )


def _ids_skip(config: dict[str, Any]) -> str | None:
    """Why tokie must not load this tokenizer: its ids skip some (tokie 0.1.4 spins on
    loading one with an added token far above the vocabulary)."""
    vocab = (config.get("model") or {}).get("vocab")
    if not isinstance(vocab, dict):  # Unigram's is a list: dense by construction
        return None
    ids = set(vocab.values()) | {token["id"] for token in config.get("added_tokens") or []}
    if ids and max(ids) + 1 != len(ids):
        return f"its ids skip some ({len(ids)} ids up to {max(ids)}), which {FAST_NAME} cannot load"
    return None


# tokie 0.1.4 cannot make a token of this many bytes or more: it splits one into ids
# that spell a byte too many, and drops a long run of such text altogether (found by the
# shard tests on a BPE with runs of "x").
_TOKIE_TOKEN_BYTES = 256


def _long_tokens(config: dict[str, Any]) -> str | None:
    """Why tokie must not encode with this tokenizer: a vocabulary entry of
    ``_TOKIE_TOKEN_BYTES`` bytes or more (a byte-level entry's characters are its bytes;
    others are counted in UTF-8, which can only overstate them)."""
    vocab = (config.get("model") or {}).get("vocab")
    entries = vocab if isinstance(vocab, dict) else [entry[0] for entry in vocab or ()]
    byte_level = (config.get("pre_tokenizer") or {}).get("type") == "ByteLevel"
    longest = max(
        map(len, entries) if byte_level else (len(t.encode()) for t in entries), default=0
    )
    if longest >= _TOKIE_TOKEN_BYTES:
        return (
            f"its vocabulary has a token of {longest} bytes, and {FAST_NAME} splits tokens of "
            f"{_TOKIE_TOKEN_BYTES} bytes or more"
        )
    return None


def check_texts(fast: Encoder, reference: Encoder, texts: Sequence[str], where: str) -> None:
    """Raise ``EncoderMismatch`` naming the first text the two encode differently."""
    check_encoded(fast.id, reference, texts, *fast.encode_texts(texts), where)


def check_encoded(
    encoder: EncoderId,
    reference: Encoder,
    texts: Sequence[str],
    ids: np.ndarray,
    lengths: np.ndarray,
    where: str,
) -> None:
    """Check ``ids``/``lengths``, what ``encoder`` gave for ``texts`` (``encode_texts``),
    against the reference's; raise ``EncoderMismatch`` naming the first text that differs."""
    reference_ids, reference_lengths = reference.encode_texts(texts)
    check_equal(encoder, texts, ids, lengths, reference_ids, reference_lengths, where)


def check_sample(
    fast: Encoder,
    reference: Encoder,
    lines: Sequence[str],
    starts: np.ndarray | Sequence[bool],
    ids: np.ndarray | None = None,
    lengths: np.ndarray | None = None,
    chosen: Sequence[bool] | np.ndarray | None = None,
    where: str = "",
) -> None:
    """Check that ``ids``/``lengths`` (``fast.encode_lines(lines, starts)``, computed
    here when None) hold the reference's ids for the units ``chosen`` marks (bool per
    line; all when None), each unit encoded alone by the reference; raise
    ``EncoderMismatch`` naming a unit that differs."""
    starts = np.asarray(starts, dtype=np.bool_)
    if ids is None or lengths is None:
        ids, lengths = fast.encode_lines(lines, starts)
    in_sample = (
        np.ones(len(lines), dtype=np.bool_) if chosen is None else np.asarray(chosen, np.bool_)
    )
    picked = np.flatnonzero(in_sample)
    if not picked.size:
        return
    units = units_of([lines[i] for i in picked.tolist()], starts[picked])
    reference_ids, reference_lengths = reference.encode_texts(units)
    check_equal(
        fast.id,
        units,
        ids[np.repeat(in_sample, lengths)],
        lengths[picked],
        reference_ids,
        reference_lengths,
        where,
    )


def sample_units(key: int, count: int, fraction: float = CHECK_FRACTION) -> np.ndarray:
    """(count,) bool: the units that ``check_sample`` checks, the same on every run: the
    first, and each other one where a hash of (``key``, its index) lands under
    ``fraction``: the finaliser of ``kernels.splitmix64``, vectorised in NumPy here so
    that it costs no Python work per unit and does not wait for numba to load. A
    ``fraction`` of 1 chooses every unit."""
    if fraction >= 1:
        return np.ones(count, dtype=np.bool_)
    with np.errstate(over="ignore"):
        z = np.arange(count, dtype=np.uint64) + np.uint64((key * 0x9E3779B97F4A7C15) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    chosen = z < np.uint64(int(fraction * 2**64))
    chosen[:1] = True
    return chosen


def check_equal(
    encoder: EncoderId,
    texts: Sequence[str],
    fast_ids: np.ndarray,
    fast_lengths: np.ndarray,
    ids: np.ndarray,
    lengths: np.ndarray,
    where: str,
) -> None:
    """Raise ``EncoderMismatch`` naming the first of ``texts`` whose ids by ``encoder``
    (``fast_ids``, ``fast_lengths``) differ from the reference's (``ids``, ``lengths``)."""
    if np.array_equal(fast_lengths, lengths) and np.array_equal(fast_ids, ids):
        return
    fast_ends, ends = np.cumsum(fast_lengths), np.cumsum(lengths)
    for index, text in enumerate(texts):
        a = fast_ids[fast_ends[index] - fast_lengths[index] : fast_ends[index]]
        b = ids[ends[index] - lengths[index] : ends[index]]
        if not np.array_equal(a, b):
            raise EncoderMismatch.on(encoder, text, where)
    raise EncoderMismatch.on(encoder, "".join(texts), where)  # lengths differ, ids agree


def _special_spellings(tokenizer: Tokenizer) -> list[str]:
    """Text that spells each added token, alone and inside words."""
    contents = [token.content for token in tokenizer.get_added_tokens_decoder().values()]
    return [*contents, " ".join(contents), "x".join(contents) + "x", "".join(contents)]


def _probe_document() -> tuple[list[str], list[bool]]:
    """The probe texts as two documents of lines, as a partition's are encoded."""
    lines = [text.strip() for text in _PROBE_TEXTS if text.strip() and "\n" not in text]
    return lines, [index in (0, 7) for index in range(len(lines))]


def line_break_id(tokenizer: Tokenizer, config: dict[str, Any]) -> int | None:
    r"""The id of a lone ``"\n"`` if lines joined by ``"\n"`` encode to each line's own
    tokens with that id between them, else None.

    Lines here are stripped (no whitespace at either end, no line break inside) and each
    after the first starts with one space, as ``document_units`` gives them. Then it
    holds for a byte-level BPE with no normaliser and no ordinary added tokens: each
    alternative of its pre-tokenizer's regex matches letters, digits, other non-space
    characters or whitespace, so no piece spans a line's last character and the break;
    at the break, ``\s+(?!\S)`` takes the ``"\n"`` alone (one byte, one token) and
    leaves the space to the next line, as if it started the text. Encoding whole
    documents this way saves the tokenizer's cost per input, a quarter of its time on
    short lines. ``kernels.cut_at_breaks`` still checks the count of breaks per text.
    """
    pre_tokenizer = config.get("pre_tokenizer") or {}
    if (
        config.get("normalizer") is not None
        or config["model"]["type"] != "BPE"
        or pre_tokenizer.get("type") != "ByteLevel"
        or not pre_tokenizer.get("use_regex", True)
        or not all(token.special for token in tokenizer.get_added_tokens_decoder().values())
    ):
        return None
    ids = tokenizer.encode("\n", add_special_tokens=False).ids
    return ids[0] if len(ids) == 1 else None


def join_lines(lines: Sequence[str], starts: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Runs of one document's units (``units_of(lines, starts)``) joined by ``"\\n"``,
    about ``JOIN_CHARS`` each, and the number of units in each.

    A run is one call to ``str.join`` over its lines with ``"\\n "`` (a later unit's
    leading space comes with the break before it); where runs start is found for all
    lines at once, so no Python step is taken per line. Lines a reader kept in one
    buffer (``TextLines``) are gathered by a kernel instead, and decoded once a run.
    """
    if not len(lines):
        return [], np.zeros(0, dtype=np.int64)
    if isinstance(lines, TextLines):  # a reader's buffer: a kernel gathers the runs
        return lines.joined(starts, JOIN_CHARS)
    sizes = np.fromiter(map(len, lines), np.int64, len(lines)) + 2  # a line, " " and "\n"
    begins = np.cumsum(sizes) - sizes  # (lines,) characters before each line
    first = starts.copy()
    first[0] = True  # the first line starts a run, whether or not it starts a document
    document_begin = begins[np.flatnonzero(first)][np.cumsum(first) - 1]
    run = (begins - document_begin) // JOIN_CHARS  # (lines,) run within its document
    first[1:] |= run[1:] != run[:-1]
    bounds = [*np.flatnonzero(first).tolist(), len(lines)]
    texts = [
        "\n ".join(lines[a:b]) if start else " " + "\n ".join(lines[a:b])
        for a, b, start in zip(bounds[:-1], bounds[1:], starts[bounds[:-1]].tolist(), strict=True)
    ]
    return texts, np.diff(bounds)
