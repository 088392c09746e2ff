"""The on-disk format of a sharded dataset (DESIGN §6; documented in docs/format.md).

One Arrow IPC file per partition and split, one row per packed sequence:

- ``input_ids``: list<uint16|uint32>, the row unpadded: ``<s>``, content with ``</s>``
  between documents, ``</s>``; padding, attention mask and labels are derived;
- ``mask_positions``: list<uint16>, for copy 0, then 1, ...: the positions that become
  the mask token, then those given a random token, then those kept, each group sorted;
- ``mask_groups``: fixed_size_list<uint16>[3 * dup], the three group sizes per copy;
- ``random_tokens``: list<uint16|uint32>, the replacement tokens of the random groups,
  copy after copy, in the order of their positions.

A dataset with dynamic masking (``shard --masking dynamic``) stores ``input_ids`` alone:
its masks are computed for any copy when a batch is made (``rbprep.dataset.masking``).

Ids are uint16 when the vocabulary fits, else uint32. Files are written atomically
(``rbprep.storage``): a file that exists is complete.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

from rbprep.dataset.masking import Masks
from rbprep.storage import Location

FORMAT_NAME = "rbprep-mlm-shards"
# 1: masks stored (static); 2: a dataset that may store none (dynamic masking), so that
# a reader from before dynamic masking refuses it with its version message, not a crash.
# Static datasets are still written as 1, readable by every version.
FORMAT_VERSION = 2
STATIC_FORMAT_VERSION = 1
OTHER_FORMAT_VERSION = 3  # --format megatron or mds: the manifest describes others' files
SPLITS = ("train", "valid")
MANIFEST = "manifest.json"
COLUMNS = ("input_ids", "mask_positions", "mask_groups", "random_tokens")


def id_type(vocab_size: int) -> pa.DataType:
    return pa.uint16() if vocab_size <= 2**16 else pa.uint32()


def id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def shard_schema(vocab_size: int, dup: int | None) -> pa.Schema:
    """The columns of a shard: ``dup`` stored copies of masks, or (None) ids alone."""
    ids = id_type(vocab_size)
    if dup is None:
        return pa.schema([pa.field("input_ids", pa.list_(ids), nullable=False)])
    return pa.schema(
        [
            pa.field("input_ids", pa.list_(ids), nullable=False),
            pa.field("mask_positions", pa.list_(pa.uint16()), nullable=False),
            pa.field("mask_groups", pa.list_(pa.uint16(), 3 * dup), nullable=False),
            pa.field("random_tokens", pa.list_(ids), nullable=False),
        ]
    )


def shard_table(
    row_offsets: np.ndarray, row_tokens: np.ndarray, masks: Masks | None, vocab_size: int
) -> pa.Table:
    """Arrow table of packed rows and their stored masks (the kernels' outputs), or the
    rows alone where ``masks`` is None (dynamic masking)."""
    ids = id_dtype(vocab_size)

    def list_array(offsets: np.ndarray, values: np.ndarray, dtype: np.dtype) -> pa.Array:
        return pa.ListArray.from_arrays(
            arrow_array(offsets.astype(np.int32)), arrow_array(values.astype(dtype, copy=False))
        )

    rows = list_array(row_offsets, row_tokens, ids)
    if masks is None:
        return pa.Table.from_arrays([rows], schema=shard_schema(vocab_size, None))
    dup = masks.groups.shape[1]
    group_values = arrow_array(masks.groups.reshape(-1).astype(np.uint16, copy=False))
    return pa.Table.from_arrays(
        [
            rows,
            list_array(masks.position_offsets, masks.positions, np.dtype(np.uint16)),
            pa.FixedSizeListArray.from_arrays(group_values, 3 * dup),
            list_array(masks.random_offsets, masks.random_tokens, ids),
        ],
        schema=shard_schema(vocab_size, dup),
    )


def arrow_array(values: np.ndarray) -> pa.Array:
    """A 1-D NumPy array of numbers as an Arrow array, zero-copy.

    Unlike ``pa.array``, which imports pandas (if installed) on first use to look for
    its types: a quarter of a second that a short ``shard`` run would pay."""
    values = np.ascontiguousarray(values)
    dtype = pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(dtype, len(values), [None, pa.py_buffer(values)])


def shard_bytes(table: pa.Table, compression: str | None) -> pa.Buffer:
    """``table`` as the bytes of a shard file (Arrow IPC, record batches of 4,096 rows)."""
    options = pa.ipc.IpcWriteOptions(compression=compression)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema, options=options) as writer:
        for batch in table.to_batches(max_chunksize=4096):
            writer.write_batch(batch)
    return sink.getvalue()


def read_json(location: Location | str | os.PathLike) -> Any:
    return as_location(location).read_json()


def write_json_atomically(data: Any, location: Location | str | os.PathLike) -> None:
    as_location(location).write_json(data)


def file_sha256(location: Location | str | os.PathLike) -> str:
    return as_location(location).sha256()


def as_location(location: Location | str | os.PathLike) -> Location:
    return location if isinstance(location, Location) else Location(location)
