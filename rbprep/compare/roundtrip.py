"""The round trip of ``compare-tokenizers``, decode(encode(d)) against d, without
decoding where a tokenizer's decoder writes each token on its own.

Two common decoders do (``tokenizers`` 0.2x):

- ``ByteLevel`` (GPT-2, RoBERTa): each token stands for the bytes its vocabulary string
  spells in the byte alphabet (a string outside it for its own UTF-8); the bytes of
  all tokens, joined, are read as UTF-8 with replacement.
- ``WordPiece`` (BERT): the first token is written as it is, each later one without its
  continuation prefix ("##") or else after a space, and each of these through
  ``cleanup`` (which removes the space before "." "," "?" "!" and a few more), token by
  token.

For those, ``Spellings`` tables what each id writes, and ``spelled`` compares a batch of
documents with their tokens' writing in one pass (``kernels.spelled``). The tests hold the
tables to ``Tokenizer.decode`` on random ids; any other decoder is left to
``Tokenizer.decode_batch``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from rbprep import kernels
from rbprep.compare.pieces import byte_spellings
from rbprep.tokenizer_info import id_space

# tokenizers' decoders/wordpiece.rs ``cleanup``, in its order
_CLEANUP = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" do not", " don't"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


def cleanup(text: str) -> str:
    """The WordPiece decoder's ``cleanup`` of one token's writing."""
    if " " not in text:  # every pattern starts with a space
        return text
    for dirty, clean in _CLEANUP:
        text = text.replace(dirty, clean)
    return text


def cleaned(texts: list[str]) -> list[str]:
    """``cleanup`` of each of ``texts``, on them all joined at once: no pattern holds the
    character that joins them, so none spans two (one by one where a text holds it)."""
    joined = _JOIN.join(texts)
    if joined.count(_JOIN) != max(len(texts) - 1, 0):
        return [cleanup(text) for text in texts]
    return cleanup(joined).split(_JOIN) if texts else []


_JOIN = "\x00"  # in no _CLEANUP pattern


@dataclass(frozen=True)
class Spellings:
    """What a decoder writes for each id: at a later position (entry ``id``) and as the
    first token of a text (entry ``vocab_size + id``)."""

    text: bool  # entries are text (code points); else bytes, read as UTF-8 once joined
    flat: np.ndarray  # uint32 code points or uint8 bytes: every entry, one after another
    bounds: np.ndarray  # (2 * vocab + 1,) int64: entry k is flat[bounds[k]:bounds[k + 1]]
    vocab_size: int  # ids are below this (id_space)
    # WordPiece only, where ``whole_pieces`` holds: the model's unknown token; a text
    # whose tokens hold none comes back up to the normaliser and whitespace
    whole_unless: int | None = None
    # Byte entries only: ``kernels.entry_words`` of the table, what ``spelled`` compares
    words: np.ndarray | None = None

    @classmethod
    def of(cls, tokenizer: Tokenizer, config: dict[str, Any] | None = None) -> Spellings | None:
        """The table of ``tokenizer``'s decoder, or None where it is not one of the two;
        ``config`` is its tokenizer.json, parsed, if at hand."""
        config = json.loads(tokenizer.to_str()) if config is None else config
        decoder = config.get("decoder") or {}
        vocab_size = id_space(tokenizer)
        # Tokenizer.decode leaves out an id with no token; an encoding never holds one.
        tokens = [tokenizer.id_to_token(i) or "" for i in range(vocab_size)]
        if decoder.get("type") == "ByteLevel":
            spelled = byte_spellings(tokens)
            # A token outside the byte alphabet (an added token's spelling) is its UTF-8.
            later = [t.encode() if b is None else b for t, b in zip(tokens, spelled, strict=True)]
            entries = [*later, *later]
            flat = np.frombuffer(b"".join(entries), dtype=np.uint8)  # (bytes,) uint8
            bounds = _bounds(map(len, entries), len(entries))
            words = kernels.entry_words(flat, bounds)
            return cls(False, flat, bounds, vocab_size, words=words)
        if decoder.get("type") == "WordPiece":
            prefix = decoder.get("prefix", "##")
            later = [t[len(prefix) :] if t.startswith(prefix) else " " + t for t in tokens]
            first = tokens
            if decoder.get("cleanup", True):
                later, first = cleaned(later), cleaned(first)
            entries = [*later, *first]
            flat = np.frombuffer(  # (code points,) uint32
                "".join(entries).encode("utf-32-le", "surrogatepass"), dtype=np.uint32
            )
            return cls(
                True,
                flat,
                _bounds(map(len, entries), len(entries)),
                vocab_size,
                whole_unless=tokenizer.token_to_id(config["model"].get("unk_token") or "")
                if whole_pieces(tokenizer, config)
                else None,
            )
        return None

    def spelled(self, ids: np.ndarray, doc_tokens: np.ndarray, documents: list[str]) -> np.ndarray:
        """(docs,) bool: do the tokens of each document write it back exactly?

        ``ids`` (tokens,) are the documents' tokens one document after another and
        ``doc_tokens`` (docs,) int64 how many each has. For text entries True is
        decode(ids) == document and False its negation. For byte entries True means the
        tokens' bytes are the document's UTF-8, so decode(ids) == document; False leaves
        it open (a lossy read of other bytes may give U+FFFD where the document has one).
        """
        if self.text:
            want = np.frombuffer(  # (code points,) uint32
                "".join(documents).encode("utf-32-le", "surrogatepass"), dtype=np.uint32
            )
            doc_lengths = np.fromiter(map(len, documents), np.int64, len(documents))
        else:
            encoded = [document.encode("utf-8") for document in documents]
            # (bytes + 8,) uint8: the kernel reads 8 bytes at a time
            want = np.frombuffer(b"".join([*encoded, bytes(8)]), dtype=np.uint8)
            doc_lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        return kernels.spelled(
            ids, doc_tokens, self.flat, self.bounds, self.vocab_size, want, doc_lengths, self.words
        )

    def written(
        self, ids: np.ndarray, doc_tokens: np.ndarray, docs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """What the decoder writes for the documents ``docs`` (indices; text entries
        only): their code points one document after another, uint32, and how many each
        has, (len(docs),) int64. ``ids`` and ``doc_tokens`` as for ``spelled``."""
        ends = np.cumsum(doc_tokens)
        counts = doc_tokens[docs]  # (len(docs),)
        firsts = np.cumsum(counts) - counts  # each document's first token among them
        # (tokens of docs,) their positions in ids
        at = np.repeat(ends[docs] - counts - firsts, counts) + np.arange(int(counts.sum()))
        keys = ids[at].astype(np.int64)
        keys[firsts[counts > 0]] += self.vocab_size
        lengths = np.diff(self.bounds)[keys]  # (tokens of docs,)
        written = np.concatenate(([0], np.cumsum(lengths)))  # (tokens of docs + 1,)
        return self._gather(keys), written[firsts + counts] - written[firsts]

    def write(self, ids: np.ndarray) -> str:
        """What the decoder writes for one text's ``ids`` (text entries only)."""
        keys = ids.astype(np.int64)  # (tokens,) int64: a copy
        keys[:1] += self.vocab_size
        return self._gather(keys).tobytes().decode("utf-32-le", "surrogatepass")

    def _gather(self, keys: np.ndarray) -> np.ndarray:
        """The entries ``keys`` (tokens,) int64, one after another, from ``flat``."""
        lengths = np.diff(self.bounds)[keys]
        before = np.cumsum(lengths) - lengths
        at = np.repeat(self.bounds[keys] - before, lengths) + np.arange(int(lengths.sum()))
        return self.flat[at]


def _bounds(lengths: Any, count: int) -> np.ndarray:
    sizes = np.fromiter(lengths, np.int64, count)
    return np.concatenate(([0], np.cumsum(sizes)))  # (count + 1,) int64


def whole_pieces(tokenizer: Tokenizer, config: dict[str, Any]) -> bool:
    """Do a text's tokens, unless one is the unknown token, spell its normalised form
    less whitespace?

    So for a WordPiece model after BERT's pre-tokenizer and normaliser (or none), with
    the WordPiece decoder of the same prefix and no ordinary added tokens: the
    pre-tokenizer cuts the normalised text at whitespace (``char::is_whitespace``,
    removed; every such character is also whitespace to ``str.isspace``) and around
    punctuation (kept), and WordPiece either spells a pre-token whole, its later pieces
    prefixed, or makes it one unknown token. The decoder takes the prefix off again and
    otherwise adds only spaces, so with no unknown token, decode(ids) less whitespace is
    N(text) less whitespace: ``roundtrip_normalized`` holds. BERT's normaliser works
    character by character, so normalising each unit (as encoding does) or the whole
    document (as the metric does) is the same.
    """
    model = config.get("model") or {}
    decoder = config.get("decoder") or {}
    normalizer = config.get("normalizer")
    pre_tokenizer = config.get("pre_tokenizer") or {}
    return (
        model.get("type") == "WordPiece"
        and decoder.get("type") == "WordPiece"
        and decoder.get("prefix", "##") == model.get("continuing_subword_prefix", "##")
        and (normalizer is None or normalizer.get("type") == "BertNormalizer")
        and pre_tokenizer.get("type") == "BertPreTokenizer"
        and all(token.special for token in tokenizer.get_added_tokens_decoder().values())
    )
