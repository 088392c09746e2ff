"""Cut a corpus into partitions at document boundaries; open and read a corpus.

A partition is the unit of work, parallelism, resume and determinism. Its id and
contents depend only on the corpus (its files, in sorted order, and their bytes) and
the partition size, never on the number of workers:

- a plain ``.txt``/``.jsonl`` file larger than the partition size is cut into byte
  ranges of about that size; each cut moves forward to the next document start (the
  first non-blank line after a blank line for ``.txt``, the next line for ``.jsonl``),
  found by a short forward scan, so ranges hold whole documents and cover the file;
- a compressed file, a parquet file, or a UTF-16/32 file is one partition;
- consecutive small plain files share a partition up to the partition size.

A file with CR-only line ends has no "\\n" to cut at and stays one partition.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from rbprep.corpus.formats import (
    MAX_UNIT_BYTES,
    Document,
    ReadOptions,
    ReadStats,
    SkipFile,
    TextLines,
    open_raw,
    read_file,
    read_text_lines,
    report_skip,
    sniff,
)
from rbprep.corpus.paths import InputFile, SkippedInput, resolve_corpus
from rbprep.errors import RbprepError
from rbprep.storage import Location

DEFAULT_PARTITION_SIZE = 64_000_000
MIN_AUTO_PARTITION_SIZE = 1_000_000
AUTO_PARTITIONS = 32  # what a small corpus is cut into, so a few cores have work


def auto_partition_size(corpus_bytes: int) -> int:
    """The default partition size: the corpus's size / 32, between 1 MB and 64 MB.

    A function of the corpus alone (never of the workers), so ids stay deterministic;
    a corpus under 2 GB gets 32 partitions to share among cores instead of one or two.
    """
    return min(
        DEFAULT_PARTITION_SIZE, max(MIN_AUTO_PARTITION_SIZE, corpus_bytes // AUTO_PARTITIONS)
    )


@dataclass(frozen=True)
class Piece:
    """A whole file (``end is None``) or the byte range ``[start, end)`` of one."""

    file: int  # index into Corpus.files
    start: int = 0
    end: int | None = None


@dataclass(frozen=True)
class Partition:
    """A run of pieces read together; ``id`` is its index in the corpus plan."""

    id: int
    pieces: tuple[Piece, ...]
    size: int  # bytes on disk (compressed size for compressed files)


@dataclass(frozen=True)
class Corpus:
    """A resolved corpus: its files in order, what was skipped, and the partition plan.

    Plain data (picklable), so partitions can be read in other processes.
    """

    files: tuple[InputFile, ...]
    skipped: tuple[SkippedInput, ...]
    partitions: tuple[Partition, ...]
    options: ReadOptions
    partition_size: int

    @property
    def size(self) -> int:
        """Bytes of input on disk (compressed files count their compressed size)."""
        return sum(p.size for p in self.partitions)

    def for_partition(self, partition: Partition) -> Corpus:
        """A corpus of only what ``partition`` reads: its files (their indices renumbered
        in its pieces), the read options, and the partition, under its own id. What a
        task is sent: its size does not grow with the corpus's files or partitions."""
        used = sorted({piece.file for piece in partition.pieces})
        renumbered = {old: new for new, old in enumerate(used)}
        pieces = tuple(
            Piece(renumbered[piece.file], piece.start, piece.end) for piece in partition.pieces
        )
        return Corpus(
            files=tuple(self.files[index] for index in used),
            skipped=(),
            partitions=(Partition(partition.id, pieces, partition.size),),
            options=self.options,
            partition_size=self.partition_size,
        )

    def read_partition(self, partition: Partition, stats: ReadStats) -> Iterator[Document]:
        """Yield the documents of ``partition`` in corpus order, counting into ``stats``."""
        for piece in partition.pieces:
            yield from read_file(
                self.files[piece.file], piece.file, self.options, stats, piece.start, piece.end
            )

    def read_partition_lines(
        self, partition: Partition, stats: ReadStats
    ) -> tuple[TextLines, np.ndarray] | None:
        """The lines of ``partition`` as ``read_partition`` gives its documents' units, in
        one buffer (``formats.read_text_lines``), and (lines,) bool where each document
        starts; None where its files need ``read_partition`` (then ``stats`` is as was)."""
        ranges = [(self.files[piece.file], piece.start, piece.end) for piece in partition.pieces]
        return read_text_lines(ranges, self.options, stats)

    def documents(self, stats: ReadStats) -> Iterator[Document]:
        """Yield every document of the corpus in order; skipped inputs are counted first."""
        self.count_skipped(stats)
        for partition in self.partitions:
            yield from self.read_partition(partition, stats)

    def count_skipped(self, stats: ReadStats) -> None:
        """Count the inputs skipped while resolving paths (unknown format, unreadable)."""
        for skipped in self.skipped:
            report_skip(skipped, stats, strict=False)


def document_coin(seed: int, purpose: str, partition: int, document: int, rate: float) -> bool:
    """A deterministic coin that lands True with probability ``rate`` for one document.

    A hash of (seed, purpose, partition id, document index in the partition): the same
    for any number of workers, and independent between purposes ("sample", "valid").
    """
    key = f"{seed}:{purpose}:{partition}:{document}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "little") < rate * 2**64


def open_corpus(
    paths: Sequence[str | os.PathLike],
    *,
    text_field: str = "text",
    strict: bool = False,
    partition_size: int | None = None,
    max_unit_bytes: int = MAX_UNIT_BYTES,
) -> Corpus:
    """Resolve CORPUS paths (files, directories, globs) and plan their partitions
    (``partition_size`` bytes each; None: ``auto_partition_size`` of the corpus).
    Units longer than ``max_unit_bytes`` are cut in pieces as they are read.

    Raises ``RbprepError`` for a path that names nothing, for an empty corpus, and under
    ``strict`` for any input that would be skipped.
    """
    if not paths:
        raise RbprepError("no corpus given; name files, directories or glob patterns")
    if partition_size is not None and partition_size <= 0:
        raise RbprepError(f"partition size must be positive, got {partition_size}")
    files, skipped = resolve_corpus(paths)
    if strict and skipped:
        report_skip(skipped[0], ReadStats(), strict=True)
    if not files:
        reasons = ", ".join(sorted({s.reason for s in skipped})) or "no files"
        raise RbprepError(
            f"the corpus {' '.join(map(str, paths))} holds no readable .txt, .jsonl or "
            f".parquet file ({reasons}); point rbprep at your text files"
        )
    options = ReadOptions(text_field=text_field, strict=strict, max_unit_bytes=max_unit_bytes)
    if partition_size is None:
        partition_size = auto_partition_size(sum(_size(file) for file in files))
    partitions = _plan(files, partition_size)
    return Corpus(tuple(files), tuple(skipped), tuple(partitions), options, partition_size)


def _plan(files: Sequence[InputFile], partition_size: int) -> list[Partition]:
    partitions: list[Partition] = []
    group: list[Piece] = []
    group_size = 0

    def add(pieces: tuple[Piece, ...], size: int) -> None:
        partitions.append(Partition(len(partitions), pieces, size))

    def flush() -> None:
        nonlocal group, group_size
        if group:
            add(tuple(group), group_size)
        group, group_size = [], 0

    for index, file in enumerate(files):
        size = _size(file)
        if file.compression or file.format == "parquet":
            flush()
            add((Piece(index),), size)
        elif size > partition_size and _splittable(file):
            flush()
            bounds = [0]
            for cut in range(partition_size, size, partition_size):
                bound = _next_document_start(file, cut)
                if bound > bounds[-1]:
                    bounds.append(bound)
            bounds.append(size)
            for start, end in itertools.pairwise(bounds):
                if end > start:
                    add((Piece(index, start, end),), end - start)
        else:
            if group and group_size + size > partition_size:
                flush()
            group.append(Piece(index))
            group_size += size
    flush()
    return partitions


def _size(file: InputFile) -> int:
    try:
        return Location(file.path).size()
    except OSError:
        return 0  # reading it reports why


def _splittable(file: InputFile) -> bool:
    """Only plain UTF-8 text can be cut by byte offset (and a binary file is skipped whole)."""
    try:
        return sniff(file) in ("utf-8", "utf-8-sig")
    except SkipFile:
        return False


def _next_document_start(file: InputFile, offset: int) -> int:
    """The byte offset of the first document that starts at or after ``offset``.

    Both neighbouring partitions use this same function for their shared bound, so
    every document lands in exactly one of them.
    """
    with open_raw(file.path) as raw:
        raw.seek(offset - 1)
        raw.readline()  # the rest of the line holding byte offset-1
        position = raw.tell()
        if file.format == "jsonl":
            return position
        seen_blank = False
        while line := raw.readline():
            if not line.strip():
                seen_blank = True
            elif seen_blank:
                return position
            position += len(line)
        return position
