"""Who encodes which text: the reference (``tokenizers``) or the fast encoder (``tokie``).

tokie is given only what the differential tests (tests/test_encoding.py) prove it right
on. Of tokenizers: the kinds they cover (``unverified_kind``), with a vocabulary tokie
loads right (``fast_refused``). Of texts: those under ``TOKIE_TEXT_BYTES`` without a
character tokie is not proven on (``unproven_characters``, found by ``holding``); a longer
text reaches tokie as pieces cut where its pre-tokens start anyway (``tokie_pieces``).
``FastEncoder`` sends the rest to the reference, whatever the sample check draws. These
are functions of the tokenizer.json and the texts alone; no encoder is made here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from rbprep import tokie_proven

REFERENCE_NAME = "tokenizers"
FAST_NAME = "tokie"
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
SPACE_LIKE = np.array(
    [*range(0x09, 0x0E), *range(0x1C, 0x21), 0x85, 0xA0, 0x1680, 0x180E, *range(0x2000, 0x200E),
     0x2028, 0x2029, 0x202F, 0x205F, 0x2060, 0x3000, 0xFEFF],
    dtype=np.uint32,
)  # fmt: skip


def fast_refused(config: dict[str, Any], choice: str) -> str | None:
    """Why the fast encoder must not encode with the tokenizer ``config`` describes when
    ``choice`` (``ENCODER_CHOICES``) asks for it, or None where it may (the probe set
    permitting): a vocabulary tokie cannot load right on any kind (``_ids_skip``,
    ``_long_tokens``), and for ``auto`` a kind the differential tests do not cover."""
    return (
        _ids_skip(config)
        or _long_tokens(config)
        or (unverified_kind(config) if choice == "auto" else None)
    )


def unverified_kind(config: dict[str, Any]) -> str | None:
    """Why the tokenizer ``config`` describes is not of a kind the fast encoder is
    tested to match on, or None where it is: a byte-level BPE with no normaliser
    (GPT-2's, RoBERTa's, ``train-vocab``'s), and a WordPiece with BERT's normaliser and
    pre-tokenizer (BERT's, ``train-vocab``'s), whose texts with a code point tokie is not
    proven on go to the reference (``unproven_characters``). Elsewhere tokie 0.1.4 was
    seen to differ: the NFKC, NFD, Lowercase, Strip, Replace and Prepend normalisers
    (README, "Encoders"). Vocabularies tokie cannot load right on any kind are refused
    before this (``_ids_skip``, ``_long_tokens``)."""
    if byte_level_kind(config) or bert_kind(config):
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


def cut_characters(config: dict[str, Any]) -> tuple[int, ...]:
    r"""The code points before which ``tokie_pieces`` may cut a text for this tokenizer:
    " " and "\n" for a byte-level pre-tokenizer with its regex and no normaliser (only
    " " where it adds a prefix space: it would add one to a piece that starts otherwise),
    and for BERT's normaliser and pre-tokenizer (the normaliser maps each character on its
    own, and a space ends every pre-token); none for any other kind, never cut."""
    pre_tokenizer = config.get("pre_tokenizer") or {}
    if bert_kind(config):
        return (0x20, 0x0A)
    if not byte_level_kind(config) or not pre_tokenizer.get("use_regex", True):
        return ()
    return (0x20,) if pre_tokenizer.get("add_prefix_space", False) else (0x20, 0x0A)


def byte_level_kind(config: dict[str, Any]) -> bool:
    """A byte-level BPE with no normaliser (GPT-2's, RoBERTa's, ``train-vocab``'s)."""
    return (
        (config.get("model") or {}).get("type") == "BPE"
        and config.get("normalizer") is None
        and (config.get("pre_tokenizer") or {}).get("type") == "ByteLevel"
    )


def bert_kind(config: dict[str, Any]) -> bool:
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
    return _wordpiece_unproven() if bert_kind(config) else _FEW_UNPROVEN


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
    at = np.flatnonzero(table.take(points))  # 1.15 ms on 1M points; table[points] 1.4
    if at.size:
        ends = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)) + 1)
        found[np.searchsorted(ends, at, "right")] = True
    return found


def tokie_pieces(text: str, cut_before: Sequence[int], limit: int = TOKIE_TEXT_BYTES) -> list[str]:
    r"""``text`` cut into pieces of fewer than ``limit`` UTF-8 bytes where it can be, each
    as long as it can be, whose ids, concatenated, are the text's.

    A cut is made only before a character of ``cut_before`` (``cut_characters``: a space
    or line feed) that follows one that is not space-like (``SPACE_LIKE``). There the
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
            np.isin(points[1:], cut_before) & ~np.isin(points[:-1], SPACE_LIKE)
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
