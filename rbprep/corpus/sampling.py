"""A deterministic sample of a corpus's documents (``--sample-bytes``), for train-vocab
and compare-tokenizers: each document kept by a hash, at the rate that makes about the
size asked of the corpus's text."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

from rbprep.corpus.formats import Document, ReadStats, SkipFile, decompressed_blocks, open_raw
from rbprep.corpus.partitions import Corpus, document_coin
from rbprep.corpus.paths import InputFile
from rbprep.storage import Location


@dataclass
class Usage:
    """The text a training pass actually used."""

    documents: int = 0
    units: int = 0
    text_bytes: int = 0
    sampled: bool = False


def text_size(file: InputFile, text_field: str) -> int:
    """The bytes of text in ``file`` (local or remote): a plain file's size, a compressed
    file's decompressed size, the UTF-8 bytes of a parquet file's ``text_field`` column.
    Raises ``OSError`` or ``SkipFile`` where the file cannot be measured."""
    if file.format == "parquet":
        return _parquet_text_bytes(file, text_field)
    if file.compression:
        with open_raw(file.path) as raw:
            return sum(map(len, decompressed_blocks(raw, file.compression)))
    return Location(file.path).size()


def _parquet_text_bytes(file: InputFile, text_field: str) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        with open_raw(file.path) as raw:
            parquet = pq.ParquetFile(raw)
            return sum(
                pc.sum(pc.binary_length(batch.column(0))).as_py() or 0
                for batch in parquet.iter_batches(columns=[text_field], batch_size=65_536)
            )
    except (pa.ArrowException, ValueError, KeyError) as exc:
        raise SkipFile("corrupt", str(exc)) from exc


@functools.lru_cache(maxsize=4)  # each training pass asks; measuring may decompress
def _sample_rate(corpus: Corpus, sample_bytes: int | None) -> float:
    """The share of documents to keep so that about ``sample_bytes`` of text is used."""
    if sample_bytes is None:
        return 1.0
    total = 0
    for file in corpus.files:
        try:
            total += text_size(file, corpus.options.text_field)
        except (OSError, SkipFile):  # the reader reports the damage when it reads the file
            continue
    return min(1.0, sample_bytes / total) if total else 1.0


def sample_documents(
    corpus: Corpus, stats: ReadStats, sample_bytes: int | None, seed: int, usage: Usage
) -> Iterator[tuple[int, Document]]:
    """Yield (partition id, document) for the corpus's documents, or for a deterministic
    sample of about ``sample_bytes`` of their text.

    The sample keeps each document with probability ``sample_bytes / text size`` by a
    hash of (seed, partition id, index in the partition), so it is spread evenly over
    all files and the same for any reader. There is no hard stop at ``sample_bytes``:
    one would cut off the files that sort last. Counts what it yields into ``usage``.
    """
    rate = _sample_rate(corpus, sample_bytes)
    usage.sampled = rate < 1.0
    corpus.count_skipped(stats)
    for partition in corpus.partitions:
        for index, document in enumerate(corpus.read_partition(partition, stats)):
            if usage.sampled and not document_coin(seed, "sample", partition.id, index, rate):
                continue
            usage.documents += 1
            usage.units += len(document.units)
            usage.text_bytes += sum(len(unit.encode()) for unit in document.units)
            yield partition.id, document
