"""MosaicML Streaming's MDS format, as ``shard --format mds`` writes it (DESIGN §7): read
by ``streaming.StreamingDataset``, Composer and ModernBERT-style trainers.

One sample per packed row, two columns (MDS sorts columns by name):

- ``input_ids``, encoding ``ndarray:uint16`` (or ``ndarray:uint32`` where the vocabulary
  does not fit 16 bits): the row's ids with its specials, unpadded; streaming decodes it
  to a 1-D array of exactly that dtype;
- ``length``, encoding ``int``: the row's length, decoded to a Python int.

A shard (``streaming/base/format/mds/writer.py``, ``MDSWriter.encode_joint_shard``),
little-endian: the sample count as uint32; ``samples + 1`` uint32 byte offsets of the
samples from the start of the file (so a shard stays below 4 GiB); the writer's
configuration as JSON (keys sorted); then the samples. A sample is the uint32 size of its
``input_ids`` datum (its only variable-size column), that datum, and ``length`` as int64.
An ``ndarray:<dtype>`` datum of a 1-D array of ``n`` ids is one byte ``(1 << 2) | k``, then
``n`` as uint8/uint16/uint32 (k = 0/1/2, the smallest that holds ``n``), then the ids.

``index.json`` (version 2) lists the shards in order, each with that configuration, its
file (``raw_data``: basename and bytes), no compressed file and no hashes. The shards
are uncompressed. ``size_limit`` is null: it tells a writer when to start a new shard
(rbprep writes one per partition and split), and readers only check it is not negative.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

INDEX_NAME = "index.json"
COLUMN_NAMES = ("input_ids", "length")
LENGTH_BYTES = 8  # the ``int`` encoding: int64
SIZE_LIMIT = None
ID_DTYPES = (np.dtype(np.uint16), np.dtype(np.uint32))
_CHUNK_TOKENS = 1 << 20  # shard_bytes fills its output this many tokens at a time


@dataclass(frozen=True)
class ShardInfo:
    """One shard file as ``index.json`` lists it."""

    basename: str  # its path relative to the index.json's directory
    bytes: int
    samples: int


def column_encodings(dtype: np.dtype | type) -> list[str]:
    """The MDS encodings of :data:`COLUMN_NAMES` for ids of ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype not in ID_DTYPES:
        raise ValueError(f"MDS ids are uint16 or uint32, not {dtype}")
    return [f"ndarray:{dtype.name}", "int"]


def shard_config(dtype: np.dtype | type) -> dict[str, Any]:
    """The configuration an ``MDSWriter`` with these columns records, in each shard file
    and in each of its ``index.json`` entries."""
    return {
        "version": 2,
        "format": "mds",
        "compression": None,
        "hashes": [],
        "size_limit": SIZE_LIMIT,
        "column_names": list(COLUMN_NAMES),
        "column_encodings": column_encodings(dtype),
        "column_sizes": [None, LENGTH_BYTES],
    }


def shard_bytes(row_offsets: np.ndarray, row_tokens: np.ndarray, dtype: np.dtype | type) -> bytes:
    """One ``.mds`` shard holding every row, byte for byte what ``MDSWriter`` (columns as
    :func:`column_encodings`, no compression, no hashes, ``size_limit=None``) writes for
    samples ``{"input_ids": row.astype(dtype), "length": len(row)}``.

    Args:
        row_offsets: (rows + 1,) int64, row ``i`` is ``row_tokens[row_offsets[i]:
            row_offsets[i + 1]]``; every row has at least one token.
        row_tokens: (tokens,) uint32, the rows' ids.
        dtype: uint16 or uint32, the stored ids' dtype.

    Raises:
        ValueError: on an empty row (MDS cannot encode an empty array), ids that do not fit
            ``dtype``, or a shard of 4 GiB or more.
    """
    dtype = np.dtype(dtype)
    config = json.dumps(shard_config(dtype), sort_keys=True).encode("utf-8")
    offsets = np.asarray(row_offsets, dtype=np.int64)
    tokens = np.asarray(row_tokens)
    if offsets.ndim != 1 or offsets.size == 0 or offsets[0] != 0 or offsets[-1] != tokens.size:
        raise ValueError("row_offsets must run from 0 to the number of tokens")
    lengths = np.diff(offsets)  # (rows,) int64
    rows = lengths.size
    if rows and lengths.min() <= 0:
        raise ValueError("MDS cannot store an empty row")
    if tokens.size and int(tokens.max()) > np.iinfo(dtype).max:
        raise ValueError(f"token ids do not fit {dtype.name}")

    # the shape's dtype code k and width 2**k: the smallest uint holding the length
    shape_code = (
        (lengths >= 1 << 8).astype(np.int64)
        + (lengths >= 1 << 16).astype(np.int64)
        + (lengths >= 1 << 32).astype(np.int64)
    )
    shape_width = np.left_shift(1, shape_code)  # (rows,) int64
    value_bytes = lengths * dtype.itemsize
    datum = 1 + shape_width + value_bytes  # (rows,) the input_ids datum's size
    sample_sizes = 4 + datum + LENGTH_BYTES
    start = 4 + 4 * (rows + 1) + len(config)
    sample_offsets = np.empty(rows + 1, np.int64)  # (rows + 1,) from the file's start
    sample_offsets[0] = start
    np.cumsum(sample_sizes, out=sample_offsets[1:])
    sample_offsets[1:] += start
    total = int(sample_offsets[-1])
    if total >= 1 << 32:
        raise ValueError(f"an MDS shard must stay below 4 GiB; this one would be {total} bytes")

    # Each sample's bytes other than its ids, all fixed-width: the datum's size (uint32),
    # the shape byte, the length in 8 bytes of which the first shape_width are the
    # shape, and the length column (int64). `used` keeps the bytes the sample has.
    meta = np.zeros(rows, dtype=[("size", "<u4"), ("shape", "u1"), ("n", "<u8"), ("length", "<i8")])
    meta["size"] = datum
    meta["shape"] = (1 << 2) | shape_code
    meta["n"] = lengths
    meta["length"] = lengths
    used = np.ones((rows, 21), dtype=bool)  # (rows, 21) bool, 21 = meta's itemsize
    used[:, 5:13] = np.arange(8) < shape_width[:, None]
    meta_bytes = meta.view(np.uint8).reshape(rows, 21)
    # a sample's bytes: [size, shape byte, shape], ids, [length]
    segments = np.stack([5 + shape_width, value_bytes, np.full(rows, LENGTH_BYTES)], axis=1)

    out = np.empty(total, np.uint8)  # the whole file
    out[:4] = np.frombuffer(np.uint32(rows).tobytes(), np.uint8)
    out[4 : 4 + 4 * (rows + 1)] = sample_offsets.astype("<u4").view(np.uint8)
    out[4 + 4 * (rows + 1) : start] = np.frombuffer(config, np.uint8)
    # The samples, a chunk of rows at a time so the temporaries stay small: ids go where
    # the chunk's mask is True, the other bytes where it is False.
    bounds = np.unique(
        np.concatenate([np.searchsorted(offsets, np.arange(0, tokens.size, _CHUNK_TOKENS)), [rows]])
    )
    pattern = np.array([False, True, False])
    ids_dtype = dtype.newbyteorder("<")
    for a, b in itertools.pairwise(bounds):
        body = out[sample_offsets[a] : sample_offsets[b]]
        is_ids = np.repeat(np.tile(pattern, b - a), segments[a:b].ravel())  # (bytes,) bool
        body[is_ids] = tokens[offsets[a] : offsets[b]].astype(ids_dtype).view(np.uint8)
        np.logical_not(is_ids, out=is_ids)
        body[is_ids] = meta_bytes[a:b][used[a:b]]
    return out.tobytes()


def index_json(shards: Sequence[ShardInfo], dtype: np.dtype | type) -> dict[str, Any]:
    """The ``index.json`` object listing ``shards`` in order, all written by
    :func:`shard_bytes` with ``dtype``; write it with :func:`index_text`."""
    entries = []
    for shard in shards:
        entry = {
            "samples": int(shard.samples),
            "raw_data": {"basename": shard.basename, "bytes": int(shard.bytes), "hashes": {}},
            "zip_data": None,
        }
        entry.update(shard_config(dtype))
        entries.append(entry)
    return {"version": 2, "shards": entries}


def index_text(index: dict[str, Any]) -> str:
    """``index.json``'s text, as streaming's writers dump it (keys sorted)."""
    return json.dumps(index, sort_keys=True)


def read_shard(data: bytes, dtype: np.dtype | type) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a shard :func:`shard_bytes` wrote with ids of ``dtype``: row offsets
    (rows + 1,) int64 and row tokens (tokens,) uint32, read without a loop per row.

    Raises:
        ValueError: where ``data`` is not such a shard (its offsets, a sample's sizes or
            its ``length`` column do not fit together).
    """
    dtype = np.dtype(dtype)
    buffer = np.frombuffer(data, np.uint8)
    if buffer.size < 4:
        raise ValueError("too short for an MDS shard")
    rows = int(buffer[:4].view("<u4")[0])
    if buffer.size < 4 * (rows + 2):
        raise ValueError("too short for its sample count")
    offsets = buffer[4 : 4 * (rows + 2)].view("<u4").astype(np.int64)  # (rows + 1,)
    if offsets[-1] != buffer.size or np.any(np.diff(offsets) < 4 + 2 + LENGTH_BYTES):
        raise ValueError("its sample offsets do not fit the file")
    starts = offsets[:-1]
    shape = buffer[starts + 4].astype(np.int64)  # (rows,) (1 << 2) | k
    width = np.left_shift(1, shape & 3)
    n = np.zeros(rows, np.int64)  # each row's length, little-endian in `width` bytes
    for byte in range(8):
        has = width > byte
        n[has] |= buffer[starts[has] + 5 + byte].astype(np.int64) << (8 * byte)
    datum = buffer[(starts[:, None] + np.arange(4)).reshape(-1)].view("<u4").astype(np.int64)
    id_starts = starts + 5 + width
    ends = id_starts + n * dtype.itemsize
    lengths = (
        buffer[(ends[:, None] + np.arange(LENGTH_BYTES)).reshape(-1)].view("<i8")
        if rows
        else np.zeros(0, np.int64)
    )
    if (
        np.any((shape >> 2) != 1)
        or np.any(datum != 1 + width + n * dtype.itemsize)
        or np.any(ends + LENGTH_BYTES != offsets[1:])
        or np.any(lengths != n)
    ):
        raise ValueError("a sample is not an input_ids array and its length")
    row_offsets = np.concatenate(([0], np.cumsum(n))).astype(np.int64)
    # every id byte: each row's id bytes sit at id_starts[row] onwards
    byte_rows = np.repeat(id_starts - row_offsets[:-1] * dtype.itemsize, n * dtype.itemsize)
    positions = byte_rows + np.arange(int(row_offsets[-1]) * dtype.itemsize)
    tokens = buffer[positions].view(dtype.newbyteorder("<")).astype(np.uint32)
    return row_offsets, tokens
