"""The two encoders behind one interface, ``Encoder.encode_lines``: documents' lines to
their units' ids, concatenated (uint32), and each unit's length (int64).

- the reference, Hugging Face ``tokenizers`` (``ReferenceEncoder``): the library the
  tokenizer.json belongs to, and the arbiter of what its ids are;
- a fast encoder, ``tokie`` (``FastEncoder``): it loads the same tokenizer.json and
  returns the same ids several times faster (README, "Encoders"), on the texts the policy
  proves it on (``policy``); its own form of a tokenizer is cached (``tokie_cache_file``).
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from rbprep import kernels
from rbprep.cache import default_cache_dir
from rbprep.encoding.check import EncoderMismatch
from rbprep.encoding.policy import (
    FAST_NAME,
    REFERENCE_NAME,
    TOKIE_TEXT_BYTES,
    byte_level_kind,
    cut_characters,
    holding,
    tokie_pieces,
    unproven_characters,
)
from rbprep.encoding.units import join_lines, units_of

# Units per encode call: bounds the memory alive at once; measured a little faster than
# larger batches for both encoders (tokie is 3x slower on one call of 100K lines).
UNIT_BATCH = 2_000
JOINED_BATCH = 256  # joined texts per encode call, about 1 MB
# Characters per encode call at most: a tokeniser holds ~100 bytes per character of a
# call, so long units (up to formats.MAX_UNIT_BYTES each) go a few at a time.
BATCH_CHARS = 2**20
# How FastEncoder makes tokie's tokenizer from a tokenizer.json: part of the name of
# its cached form, so raise it whenever _tokie_tokenizer changes what it gives tokie.
_TOKIE_FORM = 1


@dataclass(frozen=True)
class EncoderId:
    """Which encoder wrote a dataset (``manifest.json``'s ``encoder``)."""

    name: str
    version: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}


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
            return self.cut_joined(ids, text_lengths, group_sizes, lambda: units_of(lines, starts))
        return self._batched(units_of(lines, starts), UNIT_BATCH)

    def cut_joined(
        self,
        ids: np.ndarray,
        text_lengths: np.ndarray,
        group_sizes: np.ndarray,
        units: Callable[[], Sequence[str]],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each unit's ids (uint32) and length (int64), from ``ids``/``text_lengths``: this
        encoder's for texts of ``group_sizes`` units each joined by line breaks
        (``join_lines``), cut apart at the breaks' ids. Where a text's breaks do not match
        its units (a unit holds a line break), ``units()`` (made only then) are encoded one
        by one instead."""
        cut = kernels.cut_at_breaks(ids, text_lengths, group_sizes, self.line_break_id)
        if cut is not None:
            return cut[1], cut[0]
        return self._batched(units(), UNIT_BATCH)

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
    if not byte_level_kind(config):
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
