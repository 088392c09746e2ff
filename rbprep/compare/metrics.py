"""The measures of ``compare-tokenizers``, as pure functions over arrays and counts.

Definitions and formulas: docs/compare.md. Nothing here reads files or tokenises; the
run in ``comparison.py`` feeds these with what one encode pass per tokenizer returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from rbprep import kernels

RENYI_ALPHA = 2.5  # Zouhar et al. 2023: the order that best predicted BLEU
WORD_TOKENS_CAP = 16  # tokens-per-word histogram: 0, 1, ..., 15, "16+"
TOKEN_BYTES_CAP = 24  # token-length histogram: 1, ..., 23, "24+" bytes

# str.isspace() is true only below U+3001 (U+3000 IDEOGRAPHIC SPACE is the last), so a
# table that long answers "is this code point whitespace?" for all of Unicode.
_SPACE_LIMIT = 0x3001
_SPACE = np.array([chr(c).isspace() for c in range(_SPACE_LIMIT)], dtype=np.bool_)


def is_space(codes: np.ndarray) -> np.ndarray:
    """(chars,) bool: ``str.isspace()`` of each of ``codes`` (code points)."""
    space = np.zeros(codes.shape, dtype=np.bool_)
    low = codes < _SPACE_LIMIT
    space[low] = _SPACE[codes[low]]
    return space


def renyi_entropy(counts: np.ndarray, alpha: float = RENYI_ALPHA) -> float:
    """H_alpha(p) = log(sum_i p_i ** alpha) / (1 - alpha), in nats, of the unigram
    distribution p_i = counts_i / sum(counts); Shannon entropy at alpha = 1."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    if alpha == 1.0:
        return float(-(p * np.log(p)).sum())
    return float(np.log(np.power(p, alpha).sum()) / (1.0 - alpha))


def renyi_efficiency(counts: np.ndarray, vocab_size: int, alpha: float = RENYI_ALPHA) -> float:
    """Rényi efficiency (Zouhar et al. 2023): H_alpha(p) / log |V|, in [0, 1].

    ``counts`` are token frequencies (any order); ``vocab_size`` is |V|, the whole
    vocabulary, so a tokenizer that leaves much of its vocabulary unused scores lower.
    (The authors' tokenization-scorer divides by the number of distinct tokens seen
    unless told the vocabulary size.)
    """
    if vocab_size < 2:
        return 0.0
    return renyi_entropy(counts, alpha) / math.log(vocab_size)


@dataclass
class Words:
    """The whitespace-separated words of a batch of texts, located by character.

    The texts are joined with "\\n" (so no word crosses two texts) and read as an array
    of code points; a word is a maximal run of characters for which ``str.isspace()``
    is false, exactly the words of ``text.split()``.
    """

    codes: np.ndarray  # (chars,) uint32: the joined string's code points
    text_starts: np.ndarray  # (texts + 1,) int64: offset of each text in the joined string
    text_words: np.ndarray  # (texts,) int64: words per text
    space: np.ndarray  # (chars,) bool: str.isspace()
    next_nonspace: np.ndarray  # (chars + 1,) int32: first non-space position at or after
    word_of_char: np.ndarray  # (chars,) int32: word index at non-space positions
    byte_starts: np.ndarray  # (chars + 1,) int32: UTF-8 offset of each char, then the end
    chars: int  # characters of the texts (the joining "\n" not counted)
    utf8_bytes: int  # UTF-8 bytes of the texts

    @property
    def count(self) -> int:
        return int(self.text_words.sum())

    @property
    def text_bytes(self) -> np.ndarray:
        """(texts,) int64: UTF-8 bytes of each text."""
        starts = self.byte_starts[self.text_starts].astype(np.int64)
        return starts[1:] - starts[:-1] - 1

    @classmethod
    def of(cls, texts: Sequence[str]) -> Words:
        joined = "\n".join(texts) + "\n" if texts else ""
        return cls.of_joined(joined, np.fromiter(map(len, texts), np.int64, len(texts)))

    @classmethod
    def of_joined(cls, joined: str, lengths: np.ndarray) -> Words:
        """``of(texts)`` from the texts joined, each followed by "\n", and their
        ``lengths`` (texts,) int64."""
        codes = np.frombuffer(  # (chars,) uint32
            joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32
        )
        space, word_of_char, byte_starts, next_nonspace, text_words = kernels.scan_words(
            codes, lengths, _SPACE
        )
        return cls(
            codes=codes,
            text_starts=np.concatenate(([0], np.cumsum(lengths + 1))),  # (texts + 1,)
            text_words=text_words,
            space=space,
            next_nonspace=next_nonspace,
            word_of_char=word_of_char,
            byte_starts=byte_starts,
            chars=int(lengths.sum()),
            utf8_bytes=int(byte_starts[-1]) - len(lengths),  # less the joining "\n"s
        )

    def token_words(
        self, token_text: np.ndarray, starts: np.ndarray, ends: np.ndarray
    ) -> np.ndarray:
        """The word each token belongs to, or -1 for a token of whitespace only.

        A token spanning characters ``[start, end)`` of text ``token_text`` belongs to
        the word holding its first non-space character ("Ġword" and "word" alike); a
        token whose span holds none (a lone "Ġ", an empty span) belongs to no word.
        Returns (tokens,) int64 word indices into this batch's words.
        """
        offset = self.text_starts[token_text]
        first = self.next_nonspace[offset + starts]  # the first non-space from the start
        inside = first < offset + ends
        words = np.full(first.shape, -1, dtype=np.int64)  # (tokens,) int64
        words[inside] = self.word_of_char[first[inside]]
        return words

    def byte_token_words(
        self, ids: np.ndarray, text_lengths: np.ndarray, byte_lengths: np.ndarray
    ) -> np.ndarray | None:
        """``token_words`` for tokens that spell their texts byte for byte, in order.

        For a byte-level tokenizer without a normaliser the tokens of a text are its
        UTF-8 bytes cut in pieces, so their spans follow from their byte lengths alone
        (``byte_lengths[id]``), no offsets needed: a token's span is every character
        any of its bytes belongs to. ``ids`` (tokens,) are every text's tokens in order,
        ``text_lengths`` (texts,) how many each has. None where a text's tokens do not
        spell exactly its bytes.
        """
        return kernels.place_by_bytes(
            ids,
            text_lengths,
            byte_lengths,
            self.text_starts,
            self.byte_starts,
            self.next_nonspace,
            self.word_of_char,
        )


def tokens_per_word(token_words: np.ndarray, n_words: int) -> np.ndarray:
    """(n_words,) int64: how many tokens each word was split into (0 if it lost all)."""
    return np.bincount(token_words[token_words >= 0], minlength=n_words)


def histogram(values: np.ndarray, cap: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(cap + 1,) counts of values 0..cap-1 and, last, of values >= cap."""
    clipped = np.minimum(np.asarray(values, dtype=np.int64), cap)
    return np.bincount(clipped, weights=weights, minlength=cap + 1)[: cap + 1]


def histogram_dict(counts: np.ndarray, first: int = 0) -> dict[str, int]:
    """{"0": n0, "1": n1, ..., "CAP+": n} for a histogram from ``histogram``."""
    last = first + len(counts) - 1
    return {
        (f"{first + i}" if first + i < last else f"{last}+"): int(n) for i, n in enumerate(counts)
    }


@dataclass
class Tally:
    """Additive counts for one tokenizer over one file (or a whole corpus)."""

    documents: int = 0
    units: int = 0
    words: int = 0
    bytes: int = 0
    chars: int = 0
    tokens: int = 0
    unk_tokens: int = 0
    unk_words: int = 0
    continued_words: int = 0
    roundtrip_exact: int = 0  # documents that decode back exactly
    roundtrip_normalized: int = 0  # documents that decode back up to normaliser and spacing
    rows: int = 0
    row_tokens: int = 0  # tokens in rows, <s> / </s> / separators included
    encode_seconds: float = 0.0  # in encode_batch_fast, over encode_bytes of text
    encode_bytes: int = 0

    def add(self, other: Tally) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))


def _share(part: float, whole: float) -> float:
    return float(part) / whole if whole else 0.0


def metrics(
    tally: Tally,
    *,
    vocab_size: int,
    vocab_seen: int,
    renyi: float,
    seq_len: int,
) -> dict[str, float | int]:
    """The documented metrics object (docs/compare.md) from a tally and its counts.

    Rates are fractions in [0, 1]; a rate over nothing (no words, no documents) is 0.
    """
    slots = tally.rows * seq_len
    return {
        "vocab_size": vocab_size,
        "vocab_used": _share(vocab_seen, vocab_size),
        "tokens": tally.tokens,
        "bytes_per_token": _share(tally.bytes, tally.tokens),
        "chars_per_token": _share(tally.chars, tally.tokens),
        "fertility": _share(tally.tokens, tally.words),
        "continued_words": _share(tally.continued_words, tally.words),
        "unk_rate": _share(tally.unk_tokens, tally.tokens),
        "unk_word_rate": _share(tally.unk_words, tally.words),
        "roundtrip_exact": _share(tally.roundtrip_exact, tally.documents),
        "roundtrip_normalized": _share(tally.roundtrip_normalized, tally.documents),
        "rows": tally.rows,
        "padding": _share(slots - tally.row_tokens, slots),
        "encode_mb_s": _share(tally.encode_bytes / 1e6, tally.encode_seconds),
        "renyi_efficiency": renyi,
        "vocab_seen": vocab_seen,
        "documents": tally.documents,
        "units": tally.units,
        "words": tally.words,
        "bytes": tally.bytes,
        "chars": tally.chars,
        "unk_tokens": tally.unk_tokens,
        "unk_words": tally.unk_words,
    }


def vocab_overlap(a: set[str], b: set[str]) -> dict[str, float | int]:
    """How two vocabularies (marker-free pieces, specials left out) overlap."""
    shared = len(a & b)
    union = len(a | b)
    return {
        "shared": shared,
        "jaccard": _share(shared, union),
        "share_of_a": _share(shared, len(a)),
        "share_of_b": _share(shared, len(b)),
    }


def squash_whitespace(text: str) -> str:
    """``text`` without any whitespace: spacing that a pre-tokenizer does not record."""
    return "".join(text.split())
