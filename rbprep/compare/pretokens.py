"""Where a BERT-style WordPiece tokenizer's tokens lie, from its ids alone.

A WordPiece encoding without offsets still says where its tokens are, given the text:
every pre-token (what the BERT normaliser and pre-tokenizer cut the text into) becomes
one token that does not start with "##" (a piece, or the unknown token) followed by
continuation pieces ("##..."). So counting pre-tokens from the characters of the text
places each token in its pre-token, and so in its whitespace word and its unit, with no
offsets: ``encode_batch_fast`` (no offsets, and on a document's lines joined, fewer
calls) serves where ``encode_batch`` would otherwise be needed.

What the normaliser and pre-tokenizer do to each code point is asked of the tokenizer
itself, once per code point seen, so its own Unicode tables decide (they may be older
than Python's): in ``a?a``, a character either vanishes (control characters, lone
accents once stripped), joins its neighbours (letters, digits), breaks them apart
(whitespace) or stands alone between them (punctuation, CJK ideographs). Any other
answer, or a count of pre-tokens that does not match the count of word-starting tokens
in a text, and ``place`` returns None: the caller asks for offsets instead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from rbprep import kernels
from rbprep.compare.metrics import Words, squash_whitespace
from rbprep.tokenizer_info import vocabulary

VANISHES, JOINS, BREAKS, ALONE, OTHER = range(5)
_UNSEEN = kernels.UNCLASSIFIED
_PROBE = "a"  # a letter every BERT normaliser leaves as it is


@dataclass
class PreTokens:
    """Counts a BERT pre-tokenizer's pre-tokens over text, for one tokenizer."""

    tokenizer: Tokenizer
    continues: np.ndarray  # (vocab,) bool: the piece continues a word ("##...")
    classes: np.ndarray  # (0x110000,) uint8: each code point's class, _UNSEEN until asked
    # (0x110000,) uint8: characters of each code point normalised, whitespace left out
    # (set where ``classes`` is)
    squashed: np.ndarray

    @classmethod
    def of(cls, tokenizer: Tokenizer, config: dict[str, Any]) -> PreTokens | None:
        """For a WordPiece model behind a BertPreTokenizer (and a BertNormalizer or
        none), with no added tokens but special ones (those are encoded as text here):
        else None. The tokenizer is used as given: with truncation or padding on, or
        specials matched in text, counts would not match and ``place`` say None."""
        model = config.get("model") or {}
        normalizer = config.get("normalizer")
        if (
            model.get("type") != "WordPiece"
            or (config.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer"
            or (normalizer is not None and normalizer.get("type") != "BertNormalizer")
            or not all(t.special for t in tokenizer.get_added_tokens_decoder().values())
        ):
            return None
        prefix = model.get("continuing_subword_prefix") or "##"
        vocab = vocabulary(tokenizer)
        # Sized by the largest id, not the vocabulary's size: ids may have gaps.
        continues = np.zeros(max(vocab.values(), default=-1) + 1, dtype=np.bool_)
        special = set(tokenizer.get_added_tokens_decoder())
        for token, index in vocab.items():
            continues[index] = index not in special and token.startswith(prefix)
        classes = np.full(0x110000, _UNSEEN, dtype=np.uint8)
        return cls(tokenizer, continues, classes, np.zeros(0x110000, dtype=np.uint8))

    def classify(self, code: int) -> int:
        """What the normaliser and pre-tokenizer make of this code point between two
        letters: VANISHES, JOINS, BREAKS, ALONE, or OTHER (anything else)."""
        return self._classify(code)[0]

    def _classify(self, code: int) -> tuple[int, str]:
        """``classify``, and the code point normalised alone."""
        normalizer, pre_tokenizer = self.tokenizer.normalizer, self.tokenizer.pre_tokenizer
        char = chr(code)
        alone = char if normalizer is None else normalizer.normalize_str(char)
        probe = _PROBE + char + _PROBE
        normalized = probe if normalizer is None else normalizer.normalize_str(probe)
        pieces = [piece for piece, _ in pre_tokenizer.pre_tokenize_str(normalized)]
        if pieces == [_PROBE * 2] and alone == "":
            return VANISHES, alone
        if pieces == [_PROBE + alone + _PROBE] and alone:
            return JOINS, alone
        if pieces == [_PROBE, _PROBE]:
            return BREAKS, alone
        # (a CJK ideograph alone normalises to itself between spaces)
        if (
            len(pieces) == 3
            and pieces[::2] == [_PROBE, _PROBE]
            and [piece for piece, _ in pre_tokenizer.pre_tokenize_str(alone)] == pieces[1:2]
        ):
            return ALONE, alone
        return OTHER, alone

    def classes_of(self, codes: np.ndarray) -> np.ndarray:
        """(chars,) uint8 classes of ``codes`` (chars,), asking for new code points."""
        found = self.classes.take(codes)
        unseen = found == _UNSEEN
        if unseen.any():
            for code in np.unique(codes[unseen]).tolist():
                self.classes[code], alone = self._classify(code)
                self.squashed[code] = len(squash_whitespace(alone))
            found = self.classes.take(codes)
        return found

    def squashed_lengths(self, codes: np.ndarray) -> np.ndarray:
        """(chars,) uint8: the characters each of ``codes`` normalises to, whitespace
        left out. A BERT normaliser works character by character, so these add up to
        ``len(squash_whitespace(normalizer.normalize_str(text)))`` for a text."""
        self.classes_of(codes)
        return self.squashed.take(codes)

    def place(
        self, words: Words, text_lengths: np.ndarray, ids: np.ndarray, text_units: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Tokens per unit and each token's word, or None where the ids and the text
        disagree.

        ``words`` are the batch's units; the tokenizer encoded them in runs
        (``text_units`` (texts,) units each, joined by "\\n" as ``Words`` joins them),
        ``text_lengths`` (texts,) tokens each, ``ids`` (tokens,) all in order. Returns
        (units,) int64 tokens per unit and (tokens,) int64 word of each token, as the
        offsets would place them (``Words.token_words``).
        """
        place = functools.partial(
            kernels.place_pre_tokens,
            *(words.codes, self.classes, words.space, words.word_of_char),
            *(words.text_starts[:-1], text_units, text_lengths, ids, self.continues),
        )
        try:
            return place()
        except kernels.Unclassified:  # classify the batch's new code points, then again
            self.classes_of(words.codes)
        return place()
