"""How a tokenizer spells its pieces: word markers ("Ġ", "▁", "##"), the byte-level
alphabet, and the readable text each piece stands for."""

from __future__ import annotations

import functools
import json
import unicodedata
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from tokenizers import Tokenizer


@functools.cache
def byte_of_char() -> dict[str, int]:
    """The inverse of GPT-2's byte-level alphabet: each of the 256 characters -> its byte.

    Printable Latin-1 bytes stand for themselves; the others are shifted to U+0100 on,
    in byte order (so a space is "Ġ", U+0120, and "\\n" is "Ċ").
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    mapping: dict[str, int] = {chr(b): b for b in printable}
    shifted = 0
    for b in range(256):
        if b not in printable:
            mapping[chr(256 + shifted)] = b
            shifted += 1
    return mapping


@functools.cache
def _to_latin1() -> dict[int, str]:
    return str.maketrans({char: chr(byte) for char, byte in byte_of_char().items()})


@functools.cache
def _alphabet_removed() -> dict[int, None]:
    return str.maketrans(dict.fromkeys(byte_of_char()))


def in_byte_alphabet(token: str) -> bool:
    """Is every character of ``token`` one of the byte-level alphabet's 256?"""
    return not token.translate(_alphabet_removed())


def byte_spellings(tokens: list[str]) -> list[bytes | None]:
    """``byte_spelling`` of each of ``tokens``, in a few array operations: a vocabulary
    holds 50K."""
    lengths = np.fromiter(map(len, tokens), np.int64, len(tokens))
    codes = np.frombuffer("".join(tokens).encode("utf-32-le", "surrogatepass"), np.uint32)
    table = _byte_table()
    inside = codes < table.size
    values = np.where(inside, table[np.minimum(codes, table.size - 1)], -1)  # (chars,)
    outside = np.concatenate(([0], np.cumsum(values < 0)))  # (chars + 1,)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    whole = (outside[ends] - outside[starts]) == 0  # (tokens,) every char in the alphabet
    data = values.astype(np.uint8).tobytes()  # (chars,) one byte each where inside
    return [
        data[a:b] if ok else None
        for a, b, ok in zip(starts.tolist(), ends.tolist(), whole.tolist(), strict=True)
    ]


@functools.cache
def _byte_table() -> np.ndarray:
    """(limit,) int16: the byte each alphabet code point stands for, -1 elsewhere."""
    mapping = byte_of_char()
    table = np.full(max(map(ord, mapping)) + 1, -1, dtype=np.int16)
    for char, byte in mapping.items():
        table[ord(char)] = byte
    return table


def byte_spelling(token: str) -> bytes | None:
    """The bytes a byte-level vocabulary entry stands for ("Ġthe": b" the"); None for an
    entry outside the byte alphabet (an added token's plain spelling)."""
    if in_byte_alphabet(token):
        return token.translate(_to_latin1()).encode("latin-1")
    return None


@dataclass(frozen=True)
class Style:
    """What a tokenizer's pieces look like (read from its tokenizer.json)."""

    model: str  # "BPE" | "WordPiece" | "Unigram" | "WordLevel"
    byte_level: bool  # pieces are spelled in GPT-2's byte alphabet ("Ġ" is a space)
    word_prefix: str | None  # "▁" (Metaspace): a piece starting with it starts a word
    continuation: str | None  # "##" (WordPiece): a piece starting with it continues one

    @property
    def label(self) -> str:
        return f"byte-level {self.model}" if self.byte_level else self.model

    @classmethod
    def of(cls, tokenizer: Tokenizer, config: dict[str, Any] | None = None) -> Style:
        """``config``: the tokenizer's tokenizer.json, parsed, if at hand."""
        data = json.loads(tokenizer.to_str()) if config is None else config
        parts = [data.get("pre_tokenizer"), data.get("decoder")]
        types = set(_types(parts))
        metaspace = next(
            (c.get("replacement", "▁") for c in _components(parts) if c.get("type") == "Metaspace"),
            None,
        )
        return cls(
            model=data["model"].get("type", "?"),
            byte_level="ByteLevel" in types,
            word_prefix=metaspace,
            continuation=data["model"].get("continuing_subword_prefix") or None,
        )


def _components(value: Any) -> list[dict[str, Any]]:
    """Every JSON object inside ``value`` (Sequence pre-tokenizers nest them)."""
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        found.append(value)
        for item in value.values():
            found.extend(_components(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_components(item))
    return found


def _types(value: Any) -> list[str]:
    return [c["type"] for c in _components(value) if isinstance(c.get("type"), str)]


class Piece(NamedTuple):
    """One vocabulary entry read as text (a tuple: a vocabulary makes 50K of them)."""

    marker: str  # "start" (Ġ / ▁ prefix), "continue" (## prefix) or "" (neither)
    body: bytes  # what it stands for, marker removed, as UTF-8 (byte-level: the bytes)
    spelling: str  # the entry as the vocabulary writes it

    @property
    def text(self) -> str:
        """The body as text; bytes that are no whole UTF-8 character as \\xNN."""
        return self.body.decode("utf-8", "backslashreplace")

    @property
    def nbytes(self) -> int:
        return len(self.body)


def pieces_of(tokens: list[str], style: Style) -> list[Piece]:
    """``piece`` of each of ``tokens`` (a vocabulary by id)."""
    if not style.byte_level:
        return [piece(token, style) for token in tokens]
    pieces = []
    for token, raw in zip(tokens, byte_spellings(tokens), strict=True):
        if raw is None:
            pieces.append(piece(token, style))
        elif raw[:1] == b" " and len(raw) > 1:  # as ``piece`` reads it, inline: 50K of them
            pieces.append(Piece("start", raw[1:], token))
        else:
            pieces.append(Piece("", raw, token))
    return pieces


def piece(token: str, style: Style) -> Piece:
    """Read vocabulary entry ``token`` of a tokenizer of ``style``."""
    if style.byte_level:
        raw = byte_spelling(token)
        if raw is not None:
            marker = "start" if raw[:1] == b" " and len(raw) > 1 else ""
            return Piece(marker, raw[1:] if marker else raw, token)
    if style.continuation and token.startswith(style.continuation) and token != style.continuation:
        return Piece("continue", _utf8(token[len(style.continuation) :]), token)
    if style.word_prefix and token.startswith(style.word_prefix) and token != style.word_prefix:
        return Piece("start", _utf8(token[len(style.word_prefix) :]), token)
    return Piece("", _utf8(token), token)


def byte_length(token: str, style: Style) -> int | None:
    """UTF-8 bytes of the text a byte-level entry spells, marker included ("Ġthe": 4);
    None for an entry outside the byte alphabet (an added token's plain spelling)."""
    return len(token) if style.byte_level and in_byte_alphabet(token) else None


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def word_pieces(pieces: list[Piece]) -> list[str]:
    """A word's pieces as readable text, for showing how the word was split.

    Byte-level tokenizers may cut a character into several tokens; such fragments are
    shown joined, as the character(s) they make, with the number of tokens in braces:
    "Г" in two byte tokens is "Г{2}".
    """
    shown: list[str] = []
    pending = b""
    count = 0
    for item in pieces:
        pending += item.body
        count += 1
        try:
            text = pending.decode("utf-8")
        except UnicodeDecodeError:
            continue
        shown.append(escape(text) + (f"{{{count}}}" if count > 1 else ""))
        pending, count = b"", 0
    if count:
        shown.append(escape(pending.decode("utf-8", "backslashreplace")))
    return shown


def escape(text: str) -> str:
    """``text`` with line breaks, tabs and other invisible characters made visible."""
    out = []
    for char in text:
        if char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif unicodedata.category(char)[0] in "CZ" and char != " ":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def display(item: Piece, style: Style) -> str:
    """How a report writes a vocabulary entry: its own marker, readable text.

    A byte-level entry that stands for whitespace only keeps its spelling ("Ġ", "ĊĊ").
    """
    if not item.text.strip():
        return item.spelling
    if item.marker == "start":
        return ("Ġ" if style.byte_level else style.word_prefix or "") + escape(item.text)
    if item.marker == "continue":
        return (style.continuation or "") + escape(item.text)
    return escape(item.text)


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide (CJK) characters count 2, combining 0."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return width
