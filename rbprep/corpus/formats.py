"""Read one input file (or a byte range of one) into documents of sentence units.

Every command reads text through here, so encodings, compression, damaged input and
the document/unit rules of DESIGN §3 are decided in one place:

- ``.txt``: a line is a unit (stripped of surrounding whitespace); a blank line ends
  a document. ``.jsonl``: a record is a document; the lines of its text field are its
  units. ``.parquet``: the same, one row per document.
- UTF-8, a UTF-8 BOM dropped; UTF-16/UTF-32 with a BOM decoded. Invalid UTF-8 and
  NUL characters become U+FFFD and are counted; ``strict`` makes them an error.
- A file that is binary (NUL in its first 8 KiB), unreadable, or damaged (truncated
  or corrupt compression, not parquet) is skipped whole, before any of its text is
  used, and counted by reason; ``strict`` makes that an error.
"""

from __future__ import annotations

import bz2
import codecs
import itertools
import json
import logging
import lzma
import re
import unicodedata
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, BinaryIO, NamedTuple, overload

import numpy as np

from rbprep import kernels
from rbprep.corpus.paths import InputFile, SkippedInput
from rbprep.errors import RbprepError
from rbprep.storage import Location

logger = logging.getLogger("rbprep")

BLOCK_SIZE = 4 * 2**20
# A sentence unit longer than this is cut into pieces before anything tokenises it:
# tokenisers hold ~100 bytes per byte of one input, so one 50 MB line once took 6 GB.
MAX_UNIT_BYTES = 256 * 2**10
SNIFF_SIZE = 8192
_BOMS = (  # longest first: the UTF-32 LE BOM starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_REPLACEMENT = "\ufffd"


class Document(NamedTuple):
    """A document: the index of its input file in the corpus and its sentence units."""

    source: int
    units: list[str]


@dataclass
class ReadStats:
    """What reading saw; partitions' stats merge into a run's summary and manifest."""

    files_read: int = 0
    text_bytes: int = 0  # decompressed bytes of the inputs read
    documents: int = 0
    units: int = 0
    empty_files: int = 0  # read fine, but hold no text
    invalid_utf8: int = 0  # invalid byte sequences replaced by U+FFFD
    nul_chars: int = 0  # NUL characters (after the first 8 KiB) replaced by U+FFFD
    malformed_records: int = 0  # JSONL lines or parquet rows without usable text
    long_line_cuts: int = 0  # cuts made in units over ReadOptions.max_unit_bytes
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> files

    def count_skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def merge(self, other: ReadStats) -> None:
        for name in (
            "files_read",
            "text_bytes",
            "documents",
            "units",
            "empty_files",
            "invalid_utf8",
            "nul_chars",
            "malformed_records",
            "long_line_cuts",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, count in other.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count

    def as_dict(self) -> dict[str, Any]:
        result = dict(self.__dict__)
        result["skipped"] = dict(sorted(self.skipped.items()))
        return result

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReadStats:
        """The stats a manifest or summary recorded (``as_dict``); unknown keys ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def problems(self) -> str | None:
        """``Input problems (skipped, replaced or cut): ...`` for a summary, or None."""
        problems = [f"{n:,} {reason}" for reason, n in sorted(self.skipped.items())]
        for name in (
            "invalid_utf8",
            "nul_chars",
            "malformed_records",
            "empty_files",
            "long_line_cuts",
        ):
            if getattr(self, name):
                problems.append(f"{getattr(self, name):,} {name.replace('_', ' ')}")
        if not problems:
            return None
        return "Input problems (skipped, replaced or cut): " + ", ".join(problems)


@dataclass(frozen=True)
class ReadOptions:
    """How to read: the JSONL/parquet text field, whether damage is an error, and the
    longest unit (UTF-8 bytes of a .txt line, else characters) before it is cut."""

    text_field: str = "text"
    strict: bool = False
    max_unit_bytes: int = MAX_UNIT_BYTES


class SkipFile(Exception):
    """Raised inside the reader when a whole file must be skipped."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def report_skip(skipped: SkippedInput, stats: ReadStats, strict: bool) -> None:
    """Count a skipped input and warn, or raise under ``strict``."""
    message = f"{skipped.path}: {skipped.detail}"
    if strict:
        raise RbprepError(f"{message}; fix or remove the file, or run without --strict to skip it")
    stats.count_skip(skipped.reason)
    logger.warning("skipped %s (%s)", message, skipped.reason)


# --- sniffing ---------------------------------------------------------------------------


def sniff(file: InputFile) -> str:
    """Return the encoding of ``file`` ("utf-8", "utf-8-sig", "utf-16", "utf-32").

    Raises ``SkipFile`` if the file cannot be opened or looks binary (a NUL byte in
    its first 8 KiB, after decompression, and no UTF-16/32 BOM).
    """
    head = b""
    with open_raw(file.path) as raw:
        for block in decompressed_blocks(raw, file.compression, SNIFF_SIZE):
            head += block
            if len(head) >= SNIFF_SIZE:
                break
    head = head[:SNIFF_SIZE]
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    if b"\0" in head:
        raise SkipFile("binary", "looks binary (NUL bytes in its first 8 KiB)")
    return "utf-8"


def open_raw(path: str) -> BinaryIO:
    """Open a corpus file (a local path or a URI, see ``rbprep.storage``) for reading."""
    try:
        return Location(path).open()
    except OSError as exc:
        raise SkipFile("unreadable", exc.strerror or str(exc)) from exc


# --- decompression ------------------------------------------------------------------


def _decompressor_factory(compression: str) -> Callable[[], Any]:
    if compression == "gzip":
        return lambda: zlib.decompressobj(wbits=31)
    if compression == "bz2":
        return bz2.BZ2Decompressor
    if compression == "xz":
        return lzma.LZMADecompressor
    if compression == "zstd":
        import zstandard

        return lambda: zstandard.ZstdDecompressor().decompressobj()
    raise ValueError(compression)


def decompressed_blocks(
    raw: BinaryIO, compression: str | None, block_size: int = BLOCK_SIZE
) -> Iterator[bytes]:
    """Yield the bytes of ``raw``, decompressed; concatenated streams are read in turn.

    Raises ``SkipFile("corrupt", ...)`` when the data is damaged or ends mid-stream
    (the standard modules and zstandard read a truncated stream silently).
    """
    if compression is None:
        while block := raw.read(block_size):
            yield block
        return
    new_decompressor = _decompressor_factory(compression)
    decompressor = None
    try:
        while block := raw.read(block_size):
            while block:
                if decompressor is None:
                    decompressor = new_decompressor()
                out = decompressor.decompress(block)
                if out:
                    yield out
                if decompressor.eof:
                    block = decompressor.unused_data
                    decompressor = None
                else:
                    block = b""
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise SkipFile("corrupt", f"damaged {compression} data ({exc})") from exc
    except Exception as exc:  # zstandard.ZstdError has no common base with the above
        if type(exc).__name__ != "ZstdError":
            raise
        raise SkipFile("corrupt", f"damaged {compression} data ({exc})") from exc
    if decompressor is not None:
        raise SkipFile("corrupt", f"truncated {compression} data (the stream ends early)")


def verify_compressed(file: InputFile) -> None:
    """Decompress ``file`` to its end, so damage is found before any text is used."""
    with open_raw(file.path) as raw:
        for _ in decompressed_blocks(raw, file.compression):
            pass


# --- bytes -> text lines --------------------------------------------------------------


def _line_aligned(
    blocks: Iterator[bytes], longest_line: int | None = None
) -> Iterator[tuple[int, bytes, bool]]:
    """Re-cut byte blocks at line ends; yield (offset in the stream, bytes, whether the
    bytes end inside a line). With ``longest_line`` (UTF-8 text only), a line longer
    than that is cut into pieces (``long_line_cut``), so no line is held whole."""
    offset = 0
    pending = b""
    for block in blocks:
        data = pending + block if pending else block
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            # No "\n": a CR-only file, or one long line. A "\r" that is not the last
            # byte cannot be half of a "\r\n", so it is a safe place to cut.
            cut = data.rfind(b"\r", 0, len(data) - 1) + 1
        if cut == 0:
            while longest_line is not None and len(data) > longest_line:
                piece = long_line_cut(data, longest_line)
                yield offset, data[:piece], True
                offset += piece
                data = data[piece:]
            pending = data
            continue
        yield offset, data[:cut], False
        offset += cut
        pending = data[cut:]
    if pending:
        yield offset, pending, False


def long_line_cut(data: bytes, longest: int) -> int:
    """Where to cut UTF-8 ``data`` (longer than ``longest`` bytes) for a first piece of
    at most ``longest`` bytes: after its last space or tab in the second half of that
    window, else before a character's first byte (never inside a UTF-8 sequence)."""
    space = max(data.rfind(b" ", longest // 2, longest), data.rfind(b"\t", longest // 2, longest))
    if space >= 0:
        return space + 1
    cut = longest
    # A UTF-8 sequence has at most 3 continuation bytes (0b10xxxxxx); past that the
    # bytes are invalid anyway and are replaced wherever the cut falls.
    while cut > longest - 3 and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut if data[cut] & 0xC0 != 0x80 else longest


_LAST_SPACE = re.compile(r"[\s\S]*\s")  # greedy: ends after the last whitespace


def cut_long_unit(unit: str, longest: int) -> list[str]:
    """``unit`` in pieces of at most ``longest`` characters, each stripped: cut after
    the last whitespace in the second half of each window, else between characters,
    never before a combining mark (which belongs to the character before it)."""
    pieces = []
    start = 0
    while len(unit) - start > longest:
        end = start + longest
        space = _LAST_SPACE.match(unit, start + longest // 2, end)
        if space is not None:
            cut = space.end()
        else:
            cut = end
            while cut > start + 1 and unicodedata.combining(unit[cut]):
                cut -= 1
        pieces.append(unit[start:cut].strip())
        start = cut
    pieces.append(unit[start:].strip())
    return [piece for piece in pieces if piece]


class _TextDecoder:
    """Decode chunks, replacing invalid input with U+FFFD and counting it."""

    def __init__(self, file: InputFile, encoding: str, strict: bool, stats: ReadStats):
        self.file = file
        self.encoding = encoding
        self.strict = strict
        self.stats = stats
        self.warned = False  # one warning per file; the summary counts the rest
        if encoding not in ("utf-8", "utf-8-sig"):
            # UTF-16/32 chunks are not line-aligned: decode incrementally, twice,
            # so replaced input can be told from genuine U+FFFD characters.
            self.replacing = codecs.getincrementaldecoder(encoding)(errors="replace")
            self.ignoring = codecs.getincrementaldecoder(encoding)(errors="ignore")

    def decode(self, offset: int, data: bytes, final: bool = False) -> str:
        if self.encoding in ("utf-8", "utf-8-sig"):
            if offset == 0 and self.encoding == "utf-8-sig":
                data = data[len(codecs.BOM_UTF8) :]
                offset = len(codecs.BOM_UTF8)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                if self.strict:
                    raise RbprepError(
                        f"{self.file.path}: invalid UTF-8 at byte {offset + exc.start}"
                        f"{' of the decompressed text' if self.file.compression else ''}; "
                        "convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8), "
                        "or run without --strict to replace invalid bytes with U+FFFD"
                    ) from exc
                text = data.decode("utf-8", errors="replace")
                self.stats.invalid_utf8 += text.count(_REPLACEMENT) - data.count(
                    _REPLACEMENT.encode()
                )
                self._warn(f"invalid UTF-8 at byte {offset + exc.start}", "convert it to UTF-8")
            # UTF-8 spells U+0000 as a zero byte, and no other character holds one: a
            # search of the bytes (memchr) spares scanning the text, 4 bytes a character
            # where it holds an emoji.
            if b"\0" not in data:
                return text
        else:
            text = self.replacing.decode(data, final)
            genuine = self.ignoring.decode(data, final).count(_REPLACEMENT)
            replaced = text.count(_REPLACEMENT) - genuine
            if replaced and self.strict:
                raise RbprepError(
                    f"{self.file.path}: invalid {self.encoding} near byte {offset}; "
                    "fix the file or run without --strict to replace it with U+FFFD"
                )
            self.stats.invalid_utf8 += replaced
            if replaced:
                self._warn(f"invalid {self.encoding} near byte {offset}", "fix the file")
        return replace_nuls(text, self.stats, self.strict, f"{self.file.path}: near byte {offset}")

    def _warn(self, where: str, fix: str) -> None:
        if self.warned:
            return
        self.warned = True
        decompressed = " of the decompressed text" if self.file.compression else ""
        logger.warning(
            f"{self.file.path}: {where}{decompressed} replaced with U+FFFD (any later ones "
            f"in this file are counted in the summary only); {fix}, or use --strict to stop"
        )


def replace_nuls(text: str, stats: ReadStats, strict: bool, where: str) -> str:
    """Replace NUL characters (never meaningful in text) with U+FFFD, counting them."""
    if "\0" not in text:
        return text
    if strict:
        raise RbprepError(
            f"{where}: NUL character in text; remove it, or run without --strict "
            "to replace NULs with U+FFFD"
        )
    stats.nul_chars += text.count("\0")
    return text.replace("\0", _REPLACEMENT)


def split_lines(text: str) -> list[str]:
    """Split on ``\\n``, ``\\r\\n`` and ``\\r`` only (not on the other characters that
    ``str.splitlines`` treats as line ends, which BERT-format text keeps inside a line)."""
    if "\r" in text:  # one scan, where most text has no "\r" for two replaces to find
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n")


def _text_lines(
    file: InputFile,
    encoding: str,
    chunks: Iterator[tuple[int, bytes, bool]],
    options: ReadOptions,
    stats: ReadStats,
    longest: int | None = None,
) -> Iterator[tuple[list[str], bool]]:
    """Yield the lines of the text, a chunk's at a time (``\\n``, ``\\r\\n`` and ``\\r``
    all end a line, and so does a chunk cut inside a long line), each chunk's with
    whether none of its lines can be longer than ``longest`` characters (False where
    ``longest`` is None)."""
    decoder = _TextDecoder(file, encoding, options.strict, stats)
    carry = ""
    for offset, data, inside_a_line in chunks:
        stats.text_bytes += len(data)
        text = carry + decoder.decode(offset, data)
        short = longest is not None and _lines_at_most(text, longest)
        if inside_a_line:
            stats.long_line_cuts += 1
            carry = ""
            yield split_lines(text), short
            continue
        # Hold back a final "\r": its "\n" may start the next chunk.
        carry = "\r" if text.endswith("\r") else ""
        if carry:
            text = text[:-1]
        lines = split_lines(text)
        carry = lines.pop() + carry
        yield lines, short
    if encoding not in ("utf-8", "utf-8-sig"):
        carry += decoder.decode(0, b"", final=True)
    if carry:
        yield split_lines(carry), longest is not None and _lines_at_most(carry, longest)


def _lines_at_most(text: str, longest: int) -> bool:
    """True when no line of ``text`` can be longer than ``longest`` characters: every
    aligned window of ``longest // 2`` characters holds a ``\\n``, and a longer line
    would cover one such window whole. A few searches per MB, where measuring every
    line took 40 ns a line; False (measure them) where a window has none."""
    window = max(1, longest // 2)
    return all(
        text.find("\n", start, start + window) >= 0
        for start in range(0, len(text) - window + 1, window)
    )


# --- plain UTF-8 text as one buffer -------------------------------------------------------


class TextLines(Sequence[str]):
    """Lines of UTF-8 text kept as one buffer and each line's byte range (stripped, none
    blank; ``kernels.text_lines``): a line becomes a Python string only when asked for,
    as the check's sample asks; ``joined`` gives an encoder its runs without any."""

    def __init__(
        self, data: np.ndarray, begins: np.ndarray, ends: np.ndarray, chars: np.ndarray
    ) -> None:
        self.data = data  # (bytes,) uint8
        self.begins = begins  # (lines,) int64 byte ranges in data
        self.ends = ends
        self.chars = chars  # (lines,) int64 characters of each line
        self._view = memoryview(data)

    def __len__(self) -> int:
        return len(self.begins)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return str(self._view[self.begins[index] : self.ends[index]], "utf-8")

    def __iter__(self) -> Iterator[str]:
        view = self._view
        for begin, end in zip(self.begins.tolist(), self.ends.tolist(), strict=True):
            yield str(view[begin:end], "utf-8")

    def take(self, chosen: np.ndarray) -> TextLines:
        """The lines where ``chosen`` (lines,) bool is True, on the same buffer."""
        return TextLines(self.data, self.begins[chosen], self.ends[chosen], self.chars[chosen])

    def joined(self, starts: np.ndarray, join_chars: int) -> tuple[list[str], np.ndarray]:
        """``rbprep.encoding.join_lines`` of these lines (``starts`` (lines,) bool marks
        each document's first), gathered by a kernel and decoded once per run."""
        joined, run_ends, group_sizes = kernels.join_lines(
            self.data, self.begins, self.ends, self.chars, starts, join_chars
        )
        view = memoryview(joined)
        bounds = [0, *run_ends.tolist()]
        texts = [str(view[a:b], "utf-8") for a, b in itertools.pairwise(bounds)]
        return texts, group_sizes


def read_text_lines(
    ranges: Sequence[tuple[InputFile, int, int | None]], options: ReadOptions, stats: ReadStats
) -> tuple[TextLines, np.ndarray] | None:
    """The lines of these ranges (file, start, end) of plain .txt files as ``read_file``
    reads them, found by a kernel over their bytes (``kernels.text_lines``) with no
    Python work per line, and (lines,) bool: where each document starts.

    None, with ``stats`` untouched, where a range needs ``read_file``: another format, a
    compressed file, an encoding other than UTF-8, invalid UTF-8, a NUL, a line over
    ``options.max_unit_bytes`` bytes, a file that cannot be read, or a range holding no
    text (``read_file`` counts, replaces, cuts or warns of each as it should)."""
    buffer = bytearray()
    spans = []  # (offset in buffer, bytes) per range
    read = ReadStats()
    for file, start, end in ranges:
        if file.format != "txt" or file.compression is not None:
            return None
        try:
            encoding = sniff(file)
            if encoding not in ("utf-8", "utf-8-sig"):
                return None
            with open_raw(file.path) as raw:
                if start:
                    raw.seek(start)
                data = raw.read() if end is None else raw.read(end - start)
        except (SkipFile, OSError):
            return None
        read.text_bytes += len(data)
        read.files_read += int(start == 0)
        bom = len(codecs.BOM_UTF8) if start == 0 and encoding == "utf-8-sig" else 0
        spans.append((len(buffer), len(data) - bom))
        buffer += memoryview(data)[bom:]
    data = np.frombuffer(buffer, dtype=np.uint8)
    parts = []
    for offset, size in spans:
        found = kernels.text_lines(data[offset : offset + size], options.max_unit_bytes)
        if found is None or not len(found[0]):
            return None
        begins, ends, chars, opens = found
        parts.append((begins + offset, ends + offset, chars, opens))
        read.documents += int(opens.sum())
        read.units += len(begins)
    begins, ends, chars, opens = (np.concatenate(arrays) for arrays in zip(*parts, strict=True))
    stats.merge(read)
    return TextLines(data, begins, ends, chars), opens


# --- formats -----------------------------------------------------------------------------


def read_file(
    file: InputFile,
    source: int,
    options: ReadOptions,
    stats: ReadStats,
    start: int = 0,
    end: int | None = None,
) -> Iterator[Document]:
    """Yield the documents of ``file`` (or of its byte range ``[start, end)``).

    A range always starts at a document start (see ``rbprep.corpus.partitions``).
    Damaged files are skipped whole, counted in ``stats`` (or raise under strict).
    """
    documents_before = stats.documents
    try:
        if file.format == "parquet":
            yield from _read_parquet(file, source, options, stats)
        else:
            if file.compression:
                verify_compressed(file)
            encoding = sniff(file)
            with open_raw(file.path) as raw:
                if file.compression is None and start:
                    raw.seek(start)
                blocks = decompressed_blocks(raw, file.compression)
                if end is not None:
                    blocks = _limited(blocks, end - start)
                # A .txt line in UTF-8 is cut as it is read; a JSONL line must be read
                # whole to be parsed, and UTF-16/32 bytes are cut once decoded.
                longest = options.max_unit_bytes
                cut_bytes = file.format == "txt" and encoding in ("utf-8", "utf-8-sig")
                chunks = (
                    (start + offset, data, inside)
                    for offset, data, inside in _line_aligned(
                        blocks, longest if cut_bytes else None
                    )
                )
                if file.format == "txt":
                    lines = _text_lines(file, encoding, chunks, options, stats, longest)
                    yield from _txt_documents(lines, source, longest, stats)
                else:
                    first_line = 1 if start == 0 else None
                    lines = _text_lines(file, encoding, chunks, options, stats)
                    yield from _jsonl_documents(
                        itertools.chain.from_iterable(chunk for chunk, _ in lines),
                        file,
                        source,
                        options,
                        stats,
                        start,
                        first_line,
                    )
    except SkipFile as skip:
        report_skip(SkippedInput(file.path, skip.reason, skip.detail), stats, options.strict)
        return
    if start == 0:  # a file cut into ranges counts once, at its first range
        stats.files_read += 1
        if end is None and stats.documents == documents_before:
            stats.empty_files += 1
            logger.warning("%s: holds no text", file.path)


def _limited(blocks: Iterator[bytes], size: int) -> Iterator[bytes]:
    for block in blocks:
        if len(block) >= size:
            yield block[:size]
            return
        size -= len(block)
        yield block


def _txt_documents(
    chunks: Iterator[tuple[list[str], bool]], source: int, longest: int, stats: ReadStats
) -> Iterator[Document]:
    """Documents of the lines (``_text_lines``' chunks): a blank line ends one. A chunk's
    lines are stripped and searched at once (``map``, ``list.index``): no Python step
    per line."""
    units: list[str] = []
    for lines, short in chunks:
        stripped = list(map(str.strip, lines))
        if stripped and not short and max(map(len, stripped)) > longest:
            stripped = [piece for unit in stripped for piece in _cut(unit, longest, stats)]
        start = 0
        while start < len(stripped):
            try:
                blank = stripped.index("", start)
            except ValueError:
                blank = len(stripped)
            units += stripped[start:blank]
            if blank < len(stripped) and units:
                stats.documents += 1
                stats.units += len(units)
                yield Document(source, units)
                units = []
            start = blank + 1
    if units:
        stats.documents += 1
        stats.units += len(units)
        yield Document(source, units)


def _units_of(text: str, longest: int, stats: ReadStats) -> list[str]:
    units = [unit for line in split_lines(text) if (unit := line.strip())]
    if any(len(unit) > longest for unit in units):
        units = [piece for unit in units for piece in _cut(unit, longest, stats)]
    return units


def _cut(unit: str, longest: int, stats: ReadStats) -> list[str]:
    if len(unit) <= longest:
        return [unit]
    pieces = cut_long_unit(unit, longest)
    stats.long_line_cuts += len(pieces) - 1
    return pieces


def _jsonl_documents(
    lines: Iterator[str],
    file: InputFile,
    source: int,
    options: ReadOptions,
    stats: ReadStats,
    start: int,
    first_line: int | None,
) -> Iterator[Document]:
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            text = record[options.text_field] if isinstance(record, dict) else None
        except (ValueError, KeyError, RecursionError) as exc:  # (JSONDecodeError, huge ints)
            problem = f"not a JSON object with a {options.text_field!r} field ({exc})"
        else:
            problem = None if isinstance(text, str) else f"no string {options.text_field!r} field"
        if problem:
            where = _line_number(file, start, first_line, index)
            message = f"{file.path}: line {where}: {problem}"
            if options.strict:
                raise RbprepError(
                    f"{message}; fix the record, set --text-field, or run without --strict "
                    "to skip bad records"
                )
            stats.malformed_records += 1
            logger.warning("skipped record: %s", message)
            continue
        units = _units_of(text, options.max_unit_bytes, stats)
        if units:
            stats.documents += 1
            stats.units += len(units)
            yield Document(source, units)


def _line_number(file: InputFile, start: int, first_line: int | None, index: int) -> int:
    if first_line is None:
        # A byte range past the start of the file: count the lines before it, which is
        # needed only to name a bad record.
        with open_raw(file.path) as raw:
            blocks = _limited(decompressed_blocks(raw, None), start)
            first_line = 1 + sum(block.count(b"\n") for block in blocks)
    return first_line + index


def _read_parquet(
    file: InputFile, source: int, options: ReadOptions, stats: ReadStats
) -> Iterator[Document]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(open_raw(file.path))
    except OSError as exc:
        raise SkipFile("unreadable", exc.strerror or str(exc)) from exc
    except (pa.ArrowException, ValueError) as exc:
        raise SkipFile("corrupt", f"not a readable parquet file ({exc})") from exc
    schema = parquet.schema_arrow
    if options.text_field not in schema.names or not (
        pa.types.is_string(schema.field(options.text_field).type)
        or pa.types.is_large_string(schema.field(options.text_field).type)
    ):
        raise SkipFile(
            "corrupt",
            f"no string column {options.text_field!r} (columns: {', '.join(schema.names)}); "
            "set --text-field",
        )
    try:
        for batch in parquet.iter_batches(columns=[options.text_field], batch_size=4096):
            for text in batch.column(0).to_pylist():
                if text is None:
                    stats.malformed_records += 1
                    continue
                stats.text_bytes += len(text.encode())
                text = replace_nuls(text, stats, options.strict, file.path)
                units = _units_of(text, options.max_unit_bytes, stats)
                if units:
                    stats.documents += 1
                    stats.units += len(units)
                    yield Document(source, units)
    except (pa.ArrowException, OSError) as exc:
        raise SkipFile("corrupt", f"damaged parquet data ({exc})") from exc
