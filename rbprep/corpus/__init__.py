"""Reading text: paths and formats, encodings, documents and units, partitions, and the
built-in corpus. Every command reads its corpus through ``open_corpus``."""

from rbprep.corpus.formats import Document, ReadOptions, ReadStats, TextLines
from rbprep.corpus.partitions import (
    DEFAULT_PARTITION_SIZE,
    Corpus,
    Partition,
    Piece,
    document_coin,
    open_corpus,
)
from rbprep.corpus.paths import InputFile, SkippedInput

__all__ = [
    "DEFAULT_PARTITION_SIZE",
    "Corpus",
    "Document",
    "InputFile",
    "Partition",
    "Piece",
    "ReadOptions",
    "ReadStats",
    "SkippedInput",
    "TextLines",
    "document_coin",
    "open_corpus",
]
