"""Megatron-Core's indexed dataset (``.bin`` + ``.idx``), as ``shard --format megatron``
writes it (DESIGN §7): read by Megatron-Core's ``IndexedDataset``, NeMo and most LM
pipelines.

The ``.bin`` file is every sequence's token ids, back to back, in one dtype. The ``.idx``
file (``megatron/core/datasets/indexed_dataset.py``, ``_IndexWriter``), little-endian:

- ``b"MMIDIDX\\x00\\x00"``, then version 1 as uint64, then the dtype code as uint8
  (``DType``: uint8 1, int8 2, int16 3, int32 4, int64 5, float64 6, float32 7, uint16 8);
- the sequence count and the document count as uint64 (the document count is the length
  of ``document_indices``, one more than the number of documents);
- ``sequence_lengths``: int32 per sequence, in tokens;
- ``sequence_pointers``: int64 per sequence, its byte offset in the ``.bin`` file;
- ``document_indices``: int64, ``[0, end of document 0, end of document 1, ...]`` in
  sequences: document ``d`` is sequences ``document_indices[d]:document_indices[d + 1]``.

Two layouts, as Megatron's ``tools/preprocess_data.py`` makes them with ``--append-eod``:

- A (default): one sequence per document, its units' ids and then ``end_id``;
- B (``split_units``, ``--split-sentences``): one sequence per unit, grouped into
  documents; ``end_id`` ends the last sequence of each document.

Empty input follows ``preprocess_data.py`` exactly: a unit with no tokens makes no
sequence, and a document with no tokens makes no sequence and gets no ``end_id``, yet it
is still a document (``document_indices`` repeats a value). So every document of the
partition is a document of the output, no sequence is empty, and the files are the ones
Megatron's own builder would write for the same ids. Megatron's readers accept such
documents: GPT datasets split by sequence and never see them, and the BERT/T5 sample
mapping (``helpers.cpp``, ``build_mapping``) counts and skips them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import numpy as np

INDEX_HEADER = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
# Megatron-Core's DType codes (indexed_dataset.DType).
DTYPE_CODES = {
    np.dtype(np.uint8): 1,
    np.dtype(np.int8): 2,
    np.dtype(np.int16): 3,
    np.dtype(np.int32): 4,
    np.dtype(np.int64): 5,
    np.dtype(np.float64): 6,
    np.dtype(np.float32): 7,
    np.dtype(np.uint16): 8,
}
CODE_DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}
# header, version, dtype code, sequence count, document count
_PREFIX = struct.Struct("<9sQBQQ")


def token_dtype(vocab_size: int) -> np.dtype:
    """The dtype Megatron's ``preprocess_data.py`` stores ids of this vocabulary in
    (``DType.optimal_dtype``): uint16 below 65500 ids, else int32."""
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


def bin_path(prefix: str) -> str:
    """The ``.bin`` file of a dataset prefix, as Megatron names it."""
    return prefix + ".bin"


def idx_path(prefix: str) -> str:
    """The ``.idx`` file of a dataset prefix, as Megatron names it."""
    return prefix + ".idx"


def document_sequences(
    token_ids: np.ndarray,
    unit_lengths: np.ndarray,
    starts: np.ndarray,
    end_id: int,
    split_units: bool = False,
    dtype: np.dtype | type = np.uint16,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One partition's ``.bin`` tokens and its index, from its encoded units.

    Args:
        token_ids: (tokens,) uint32, all units' ids concatenated, without specials.
        unit_lengths: (units,) each unit's number of tokens (0 allowed).
        starts: (units,) bool, True where a unit starts a document; ``starts[0]`` must be
            True when there are units.
        end_id: the id appended to each non-empty document (Megatron's ``eod``).
        split_units: layout B (a sequence per unit) rather than A (a sequence per
            document).
        dtype: the ``.bin`` dtype (:func:`token_dtype`).

    Returns:
        ``(tokens, sequence_lengths, document_indices)``: ``tokens`` (tokens + non-empty
        documents,) ``dtype``, the ``.bin`` contents; ``sequence_lengths`` (sequences,)
        int32; ``document_indices`` (documents + 1,) int64, starting at 0.

    Raises:
        ValueError: on inconsistent arguments, or ids that do not fit ``dtype``.
    """
    dtype = np.dtype(dtype)
    if dtype not in DTYPE_CODES or dtype.kind not in "iu":
        raise ValueError(f"not an integer dtype Megatron stores tokens in: {dtype}")
    token_ids = np.asarray(token_ids)
    unit_lengths = np.asarray(unit_lengths).astype(np.int64, copy=False)
    starts = np.asarray(starts, dtype=bool)
    if token_ids.ndim != 1 or unit_lengths.ndim != 1 or starts.shape != unit_lengths.shape:
        raise ValueError("token_ids, unit_lengths and starts must be 1-D; one start per unit")
    if unit_lengths.size and (unit_lengths.min() < 0 or not starts[0]):
        raise ValueError("unit lengths must be >= 0 and the first unit must start a document")
    if int(unit_lengths.sum()) != token_ids.size:
        raise ValueError(f"unit lengths sum to {unit_lengths.sum()}, not {token_ids.size} tokens")
    info = np.iinfo(dtype)
    if not info.min <= end_id <= info.max or (
        token_ids.size and not info.min <= int(token_ids.min()) <= int(token_ids.max()) <= info.max
    ):
        raise ValueError(f"token ids do not fit {dtype.name}")

    first_units = np.flatnonzero(starts)  # (documents,) each document's first unit
    documents = first_units.size
    if documents:
        document_tokens = np.add.reduceat(unit_lengths, first_units)  # (documents,) int64
    else:
        document_tokens = np.zeros(0, np.int64)
    kept = document_tokens > 0  # (documents,) the documents that make sequences
    if split_units:
        nonempty = unit_lengths > 0
        if documents:
            per_document = np.add.reduceat(nonempty.astype(np.int64), first_units)
        else:
            per_document = np.zeros(0, np.int64)
        lengths = unit_lengths[nonempty]  # (sequences,) int64
        # end_id goes at the end of each kept document's last sequence
        lengths[np.cumsum(per_document)[kept] - 1] += 1
    else:
        per_document = kept.astype(np.int64)
        lengths = document_tokens[kept] + 1
    if lengths.size and lengths.max() > np.iinfo(np.int32).max:
        raise ValueError("a sequence is longer than Megatron's int32 sequence lengths allow")
    document_indices = np.zeros(documents + 1, np.int64)  # (documents + 1,) int64
    np.cumsum(per_document, out=document_indices[1:])
    ends = np.cumsum(document_tokens)[kept]  # where each end_id goes in token_ids
    tokens = np.insert(token_ids.astype(dtype), ends, np.array(end_id, dtype))
    return tokens, lengths.astype(np.int32), document_indices


def sequence_pointers(dtype: np.dtype | type, sequence_lengths: np.ndarray) -> np.ndarray:
    """(sequences,) int64: each sequence's byte offset in the ``.bin`` file."""
    lengths = np.asarray(sequence_lengths, dtype=np.int64)
    pointers = np.zeros(lengths.size, np.int64)
    if lengths.size > 1:
        np.cumsum(lengths[:-1] * np.dtype(dtype).itemsize, out=pointers[1:])
    return pointers


def index_bytes(
    dtype: np.dtype | type, sequence_lengths: np.ndarray, document_indices: np.ndarray
) -> bytes:
    """The ``.idx`` file of a ``.bin`` file of ``dtype`` tokens, byte for byte as
    Megatron-Core's ``IndexedDatasetBuilder.finalize`` writes it (no sequence modes)."""
    dtype = np.dtype(dtype)
    if dtype not in DTYPE_CODES:
        raise ValueError(f"Megatron has no code for dtype {dtype}")
    lengths = np.ascontiguousarray(sequence_lengths, dtype="<i4")
    documents = np.ascontiguousarray(document_indices, dtype="<i8")
    prefix = _PREFIX.pack(
        INDEX_HEADER, INDEX_VERSION, DTYPE_CODES[dtype], lengths.size, documents.size
    )
    pointers = sequence_pointers(dtype, lengths).astype("<i8", copy=False)
    return b"".join([prefix, lengths.tobytes(), pointers.tobytes(), documents.tobytes()])


def read_index(data: bytes) -> tuple[np.dtype, np.ndarray, np.ndarray]:
    """Parse and check an ``.idx`` file: ``(dtype, sequence_lengths, document_indices)``,
    the arrays read-only views of ``data`` (int32 and int64).

    Raises:
        ValueError: when ``data`` is not a well-formed Megatron index without sequence modes
            (header, version, dtype code, size, pointers, or document indices wrong).
    """
    view = memoryview(data).cast("B")
    if view.nbytes < _PREFIX.size:
        raise ValueError(f"not a Megatron index: {view.nbytes} bytes, shorter than a header")
    header, version, code, sequences, documents = _PREFIX.unpack_from(view)
    if header != INDEX_HEADER:
        raise ValueError(f"not a Megatron index: header {header!r}, expected {INDEX_HEADER!r}")
    if version != INDEX_VERSION:
        raise ValueError(f"unsupported Megatron index version {version}, expected 1")
    if code not in CODE_DTYPES:
        raise ValueError(f"unknown Megatron dtype code {code}")
    expected = _PREFIX.size + 4 * sequences + 8 * sequences + 8 * documents
    if view.nbytes != expected:
        raise ValueError(
            f"Megatron index of {sequences} sequences and {documents} document indices "
            f"should be {expected} bytes, not {view.nbytes}"
        )
    offset = _PREFIX.size
    lengths = np.frombuffer(view, "<i4", sequences, offset)
    offset += lengths.nbytes
    pointers = np.frombuffer(view, "<i8", sequences, offset)
    offset += pointers.nbytes
    document_indices = np.frombuffer(view, "<i8", documents, offset)
    dtype = CODE_DTYPES[code]
    if sequences and lengths.min() < 0:
        raise ValueError("Megatron index has negative sequence lengths")
    if not np.array_equal(pointers, sequence_pointers(dtype, lengths)):
        raise ValueError("Megatron index's sequence pointers do not follow its lengths")
    if (
        documents == 0
        or document_indices[0] != 0
        or document_indices[-1] != sequences
        or np.any(np.diff(document_indices) < 0)
    ):
        raise ValueError("Megatron index's document indices must rise from 0 to the sequence count")
    return dtype, lengths, document_indices


def join_indices(
    parts: Iterable[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Join partitions' ``(sequence_lengths, document_indices)`` into the index of their
    ``.bin`` files concatenated in the same order (as ``IndexedDatasetBuilder.add_index``
    merges datasets). With no parts: an empty index (no sequences, no documents)."""
    all_lengths = [np.zeros(0, np.int32)]
    all_documents = [np.zeros(1, np.int64)]
    sequences = 0
    for lengths, document_indices in parts:
        lengths = np.asarray(lengths, dtype=np.int32)
        document_indices = np.asarray(document_indices, dtype=np.int64)
        if document_indices.size == 0 or document_indices[-1] != lengths.size:
            raise ValueError("a part's document indices do not end at its sequence count")
        all_lengths.append(lengths)
        all_documents.append(document_indices[1:] + sequences)
        sequences += lengths.size
    return np.concatenate(all_lengths), np.concatenate(all_documents)
