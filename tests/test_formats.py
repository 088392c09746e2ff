"""The Megatron-Core indexed dataset and the MosaicML Streaming MDS shards, proven by their
consumers' own code: Megatron's ``IndexedDatasetBuilder`` writes the same bytes and its
``IndexedDataset`` and ``GPTDataset`` read them; streaming's ``MDSWriter`` writes the same
bytes and its ``StreamingDataset`` reads them (DESIGN §7)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rbprep.dataset import mds
from rbprep.dataset import megatron as mg
from tests.formats_support import import_streaming, mds_rows, megatron_samples

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
END_ID = 2

# A partition: documents of units of ids; units may be empty, so documents may be too.
units = st.lists(st.integers(0, 65499), max_size=6)
documents = st.lists(units, min_size=1, max_size=4)
partitions = st.lists(documents, max_size=6)


def flatten(partition: list[list[list[int]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token_ids, unit_lengths, starts) of a partition, as the pipeline holds it."""
    all_units = [unit for document in partition for unit in document]
    token_ids = np.array([i for unit in all_units for i in unit], dtype=np.uint32)
    unit_lengths = np.array([len(unit) for unit in all_units], dtype=np.int64)
    starts = np.array([j == 0 for document in partition for j in range(len(document))], bool)
    return token_ids, unit_lengths, starts


# ---------------------------------------------------------------- Megatron


def megatron():
    return pytest.importorskip("megatron.core.datasets.indexed_dataset")


def naive_sequences(
    partition: list[list[list[int]]], end_id: int, split_units: bool
) -> tuple[list[list[int]], list[int]]:
    """The slow, obvious layout: (sequences, document_indices)."""
    sequences: list[list[int]] = []
    document_indices = [0]
    for document in partition:
        pieces = [list(unit) for unit in document if unit]
        if not split_units and pieces:
            pieces = [[i for piece in pieces for i in piece]]
        if pieces:
            pieces[-1].append(end_id)
        sequences += pieces
        document_indices.append(len(sequences))
    return sequences, document_indices


def builder_files(
    partition: list[list[list[int]]], end_id: int, split_units: bool, dtype, prefix: str
) -> None:
    """Megatron's own writer, driven as ``tools/preprocess_data.py --append-eod``
    (``--split-sentences`` for layout B) drives it: ``Encoder.encode`` then
    ``IndexedDatasetBuilder.add_document``."""
    indexed = megatron()
    builder = indexed.IndexedDatasetBuilder(prefix + ".bin", dtype=np.dtype(dtype).type)
    for document in partition:
        sentences = document if split_units else [[i for unit in document for i in unit]]
        doc_ids: list[int] = []
        sentence_lens: list[int] = []
        for sentence in sentences:
            if len(sentence) > 0:
                doc_ids.extend(sentence)
                sentence_lens.append(len(sentence))
        if len(doc_ids) > 0:
            doc_ids.append(end_id)
            sentence_lens[-1] += 1
        builder.add_document(doc_ids, sentence_lens)
    builder.finalize(prefix + ".idx")


def write_partition(
    partition: list[list[list[int]]], end_id: int, split_units: bool, dtype, prefix: str
) -> tuple[np.ndarray, np.ndarray]:
    tokens, lengths, document_indices = mg.document_sequences(
        *flatten(partition), end_id, split_units, dtype
    )
    Path(mg.bin_path(prefix)).write_bytes(tokens.tobytes())
    Path(mg.idx_path(prefix)).write_bytes(mg.index_bytes(dtype, lengths, document_indices))
    return lengths, document_indices


def read_megatron(prefix: str) -> tuple[list[list[int]], list[int], np.dtype]:
    """Sequences and document indices as Megatron's IndexedDataset reads them. It cannot
    memory-map an empty .bin file (numpy refuses), so that one is read without mmap."""
    indexed = megatron()
    empty = os.path.getsize(mg.bin_path(prefix)) == 0
    dataset = indexed.IndexedDataset(prefix, mmap=not empty)
    sequences = [dataset[i].tolist() for i in range(len(dataset))]
    return sequences, dataset.document_indices.tolist(), np.dtype(dataset.index.dtype)


@pytest.mark.parametrize(
    ("vocab_size", "expected"),
    [(100, np.uint16), (50265, np.uint16), (65499, np.uint16), (65500, np.int32), (250002, None)],
)
def test_token_dtype_is_megatrons_choice(vocab_size, expected):
    indexed = megatron()
    assert mg.token_dtype(vocab_size) == np.dtype(indexed.DType.optimal_dtype(vocab_size))
    assert expected is None or mg.token_dtype(vocab_size) == np.dtype(expected)


@SETTINGS
@given(partition=partitions, split_units=st.booleans(), wide=st.booleans())
def test_megatron_files_are_megatrons_and_read_back(partition, split_units, wide):
    dtype = np.dtype(np.int32 if wide else np.uint16)
    if wide:  # ids past uint16 where the vocabulary needs int32
        partition = [[[i * 3 for i in unit] for unit in document] for document in partition]
    with tempfile.TemporaryDirectory() as directory:
        ours, theirs = os.path.join(directory, "ours"), os.path.join(directory, "theirs")
        lengths, document_indices = write_partition(partition, END_ID, split_units, dtype, ours)
        builder_files(partition, END_ID, split_units, dtype, theirs)
        for suffix in (".bin", ".idx"):
            assert Path(ours + suffix).read_bytes() == Path(theirs + suffix).read_bytes()

        sequences, read_indices, read_dtype = read_megatron(ours)
    expected_sequences, expected_indices = naive_sequences(partition, END_ID, split_units)
    assert read_dtype == dtype
    assert sequences == expected_sequences
    assert read_indices == expected_indices == document_indices.tolist()
    assert lengths.tolist() == [len(s) for s in expected_sequences]


def write_joined(parts, split_units: bool, dtype, directory: str) -> tuple[str, list[str]]:
    """Each partition's files, and their join: the .bin files concatenated in order and
    the index from ``join_indices``. Returns (joined prefix, partition prefixes)."""
    prefixes = [os.path.join(directory, f"part-{k}") for k in range(len(parts))]
    indices = [
        write_partition(partition, END_ID, split_units, dtype, prefix)
        for partition, prefix in zip(parts, prefixes, strict=True)
    ]
    joined = os.path.join(directory, "joined")
    Path(mg.bin_path(joined)).write_bytes(
        b"".join(Path(mg.bin_path(p)).read_bytes() for p in prefixes)
    )
    lengths, document_indices = mg.join_indices(indices)
    Path(mg.idx_path(joined)).write_bytes(mg.index_bytes(dtype, lengths, document_indices))
    return joined, prefixes


@SETTINGS
@given(parts=st.lists(partitions, min_size=1, max_size=4), split_units=st.booleans())
def test_joined_partitions_read_as_their_concatenation(parts, split_units):
    with tempfile.TemporaryDirectory() as directory:
        joined, _ = write_joined(parts, split_units, np.dtype(np.uint16), directory)
        sequences, read_indices, _ = read_megatron(joined)

    expected_sequences: list[list[int]] = []
    expected_indices = [0]
    for partition in parts:
        part_sequences, part_indices = naive_sequences(partition, END_ID, split_units)
        expected_indices += [len(expected_sequences) + i for i in part_indices[1:]]
        expected_sequences += part_sequences
    assert sequences == expected_sequences
    assert read_indices == expected_indices


@pytest.mark.parametrize("split_units", [False, True])
def test_join_is_megatrons_merge(tmp_path, split_units):
    """``IndexedDatasetBuilder.add_index`` merges the partitions into the same files (not
    under hypothesis: it runs gc.collect() for every part)."""
    indexed = megatron()
    parts = [
        [[[5, 6], [], [7]], [[]], [[8, 9, 10]]],
        [],
        [[[], []]],
        [[[11]], [[12, 13], [14]]],
    ]
    dtype = np.dtype(np.uint16)
    joined, prefixes = write_joined(parts, split_units, dtype, str(tmp_path))
    merged = str(tmp_path / "merged")
    builder = indexed.IndexedDatasetBuilder(mg.bin_path(merged), dtype=dtype.type)
    for prefix in prefixes:
        builder.add_index(prefix)
    builder.finalize(mg.idx_path(merged))
    for suffix in (".bin", ".idx"):
        assert Path(joined + suffix).read_bytes() == Path(merged + suffix).read_bytes()


@SETTINGS
@given(partition=partitions, split_units=st.booleans())
def test_read_index_round_trips(partition, split_units):
    _, lengths, document_indices = mg.document_sequences(
        *flatten(partition), END_ID, split_units, np.uint16
    )
    dtype, read_lengths, read_indices = mg.read_index(
        mg.index_bytes(np.uint16, lengths, document_indices)
    )
    assert dtype == np.uint16
    assert np.array_equal(read_lengths, lengths)
    assert np.array_equal(read_indices, document_indices)


def test_read_index_refuses_bad_data():
    good = mg.index_bytes(np.uint16, np.array([3, 4], np.int32), np.array([0, 1, 2]))
    assert mg.read_index(good)[0] == np.uint16
    bad = {
        "header": b"XXIDIDX\x00\x00" + good[9:],
        "version": good[:9] + (2).to_bytes(8, "little") + good[17:],
        "code": good[:17] + bytes([99]) + good[18:],
        "truncated": good[:-1],
        "short": good[:20],
        "pointers": good[: -24 - 8] + (5).to_bytes(8, "little") + good[-24:],
        "documents": mg.index_bytes(np.uint16, np.array([3, 4], np.int32), np.array([0, 1])),
        "decreasing": mg.index_bytes(np.uint16, np.array([3, 4], np.int32), np.array([0, 2, 1, 2])),
    }
    for name, data in bad.items():
        with pytest.raises(ValueError):
            mg.read_index(data)
            pytest.fail(f"read_index accepted bad {name}")


def test_document_sequences_refuses_bad_input():
    ids, lengths, starts = np.array([5, 6], np.uint32), np.array([2]), np.array([True])
    with pytest.raises(ValueError, match="fit"):
        mg.document_sequences(np.array([70000], np.uint32), np.array([1]), starts, 2)
    with pytest.raises(ValueError, match="fit"):
        mg.document_sequences(ids, lengths, starts, 70000)
    with pytest.raises(ValueError, match="sum"):
        mg.document_sequences(ids, np.array([3]), starts, 2)
    with pytest.raises(ValueError, match="first unit"):
        mg.document_sequences(ids, lengths, np.array([False]), 2)
    with pytest.raises(ValueError, match="dtype"):
        mg.document_sequences(ids, lengths, starts, 2, dtype=np.float32)


def test_join_of_nothing_is_empty():
    lengths, document_indices = mg.join_indices([])
    assert lengths.tolist() == [] and document_indices.tolist() == [0]


@pytest.mark.parametrize("split_units", [False, True])
def test_megatron_gpt_dataset_serves_the_written_ids(tmp_path, split_units):
    rng = np.random.default_rng(7)
    parts = []
    for _ in range(2):
        unit_lengths = rng.integers(0, 40, 60)  # some units empty
        starts = rng.random(60) < 0.25
        starts[:4] = [True, False, False, True]
        unit_lengths[:3] = 0  # and the first document
        token_ids = rng.integers(3, 1000, unit_lengths.sum()).astype(np.uint32)
        parts.append(mg.document_sequences(token_ids, unit_lengths, starts, END_ID, split_units))
    prefix = str(tmp_path / "data")
    written = np.concatenate([tokens for tokens, _, _ in parts])
    Path(mg.bin_path(prefix)).write_bytes(written.tobytes())
    lengths, document_indices = mg.join_indices((part[1], part[2]) for part in parts)
    Path(mg.idx_path(prefix)).write_bytes(mg.index_bytes(np.uint16, lengths, document_indices))

    windows = megatron_samples(prefix, seq_len=64, vocab_size=1000, end_id=END_ID)
    # the samples are windows over the sequences (checked there), and those are ours
    indexed = megatron().IndexedDataset(prefix)
    ours = np.split(written, np.cumsum(lengths)[:-1])
    assert len(indexed) == len(ours)
    assert all(np.array_equal(indexed[i], ours[i]) for i in range(len(ours)))
    assert len(windows) == (len(written) - 1) // 64


# ---------------------------------------------------------------- MDS


rows_strategy = st.lists(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=300), max_size=8)


def packed(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(rows) + 1, np.int64)  # (rows + 1,) int64
    np.cumsum([len(row) for row in rows], out=offsets[1:])
    tokens = np.array([i for row in rows for i in row], dtype=np.uint32)  # (tokens,) uint32
    return offsets, tokens


def mds_writer_files(rows: list[np.ndarray], dtype, directory: str) -> None:
    """streaming's own writer, one shard (no size limit), the same columns."""
    streaming = import_streaming()
    columns = dict(zip(mds.COLUMN_NAMES, mds.column_encodings(dtype), strict=True))
    with streaming.MDSWriter(columns=columns, out=directory, size_limit=None) as writer:
        for row in rows:
            writer.write({"input_ids": row.astype(dtype), "length": len(row)})


def write_mds(shard_rows: list[list[np.ndarray]], dtype, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    shards = []
    for k, rows in enumerate(shard_rows):
        data = mds.shard_bytes(*packed([row.tolist() for row in rows]), dtype)
        name = f"shard-{k:05}.mds"
        (directory / name).write_bytes(data)
        shards.append(mds.ShardInfo(name, len(data), len(rows)))
    (directory / mds.INDEX_NAME).write_text(mds.index_text(mds.index_json(shards, dtype)))


@SETTINGS
@given(rows=rows_strategy, wide=st.booleans(), chunk=st.sampled_from([1, 7, 300, 1 << 20]))
def test_mds_shard_is_mds_writers(rows, wide, chunk):
    dtype = np.dtype(np.uint32 if wide else np.uint16)
    rows = [[i if wide else i % 2**16 for i in row] for row in rows]
    offsets, tokens = packed(rows)
    with pytest.MonkeyPatch.context() as patch:  # shard_bytes works a chunk at a time
        patch.setattr(mds, "_CHUNK_TOKENS", chunk)
        data = mds.shard_bytes(offsets, tokens, dtype)
    with tempfile.TemporaryDirectory() as directory:
        theirs = os.path.join(directory, "theirs")
        mds_writer_files([np.array(row, np.uint32) for row in rows], dtype, theirs)
        if rows:  # MDSWriter writes no shard for no samples
            assert Path(theirs, "shard.00000.mds").read_bytes() == data
            index = mds.index_json([mds.ShardInfo("shard.00000.mds", len(data), len(rows))], dtype)
            assert Path(theirs, mds.INDEX_NAME).read_text() == mds.index_text(index)
        else:
            assert json.loads(Path(theirs, mds.INDEX_NAME).read_text())["shards"] == []

        # streaming's shard reader decodes every row to its ids, in the dtype
        streaming = import_streaming()
        from streaming.base.format import reader_from_json

        Path(directory, "ours.mds").write_bytes(data)
        entry = mds.index_json([mds.ShardInfo("ours.mds", len(data), len(rows))], dtype)
        reader = reader_from_json(directory, None, entry["shards"][0])
        assert streaming is not None
        for i, row in enumerate(rows):
            sample = reader.get_item(i)
            assert sample["input_ids"].dtype == dtype and sample["input_ids"].shape == (len(row),)
            assert sample["input_ids"].tolist() == row
            assert sample["length"] == len(row)


def test_mds_long_rows_take_wider_shapes(tmp_path):
    """Row lengths of 255/256 and 65535/65536 switch the shape's uint8/16/32."""
    rng = np.random.default_rng(3)
    rows = [rng.integers(0, 2**16, n).astype(np.uint32) for n in (1, 255, 256, 65535, 65536, 7)]
    offsets, tokens = packed([row.tolist() for row in rows])
    mds_writer_files(rows, np.uint16, str(tmp_path / "theirs"))
    assert (tmp_path / "theirs" / "shard.00000.mds").read_bytes() == mds.shard_bytes(
        offsets, tokens, np.uint16
    )


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_streaming_dataset_reads_every_row_of_several_shards(tmp_path, dtype):
    rng = np.random.default_rng(11)
    high = np.iinfo(dtype).max + 1
    shard_rows = [
        [rng.integers(0, high, n, dtype=np.uint64).astype(np.uint32) for n in lengths]
        for lengths in ([5, 512, 300], [1], [256, 255, 40, 2, 512])
    ]
    write_mds(shard_rows, dtype, tmp_path / "train")
    expected = [row for rows in shard_rows for row in rows]

    samples = mds_rows(tmp_path / "train")
    assert len(samples) == len(expected)
    for sample, row in zip(samples, expected, strict=True):
        assert sample["input_ids"].dtype == dtype
        assert np.array_equal(sample["input_ids"], row)
        assert sample["length"] == len(row) and isinstance(sample["length"], int)


def test_streaming_import_leaves_no_torchvision_behind():
    had_torchvision = importlib.util.find_spec("torchvision") is not None
    import_streaming()
    if had_torchvision:
        return
    assert importlib.util.find_spec("torchvision") is None
    assert not any(name.split(".")[0] == "torchvision" for name in sys.modules)
    if importlib.util.find_spec("transformers") is not None:
        from transformers.utils import import_utils

        assert not import_utils.is_torchvision_available()


def test_shard_bytes_refuses_what_mds_cannot_hold():
    with pytest.raises(ValueError, match="empty row"):
        mds.shard_bytes(np.array([0, 2, 2]), np.array([1, 2], np.uint32), np.uint16)
    with pytest.raises(ValueError, match="fit"):
        mds.shard_bytes(np.array([0, 1]), np.array([70000], np.uint32), np.uint16)
    with pytest.raises(ValueError, match="from 0"):
        mds.shard_bytes(np.array([0, 3]), np.array([1, 2], np.uint32), np.uint16)
    with pytest.raises(ValueError, match="uint16 or uint32"):
        mds.shard_bytes(np.array([0, 1]), np.array([1], np.uint32), np.int32)


@SETTINGS
@given(rows=rows_strategy, wide=st.booleans())
def test_read_shard_gives_back_the_rows_written(rows, wide):
    dtype = np.dtype(np.uint32 if wide else np.uint16)
    rows = [[token % (np.iinfo(dtype).max + 1) for token in row] for row in rows]
    row_offsets, row_tokens = packed(rows)
    got_offsets, got_tokens = mds.read_shard(mds.shard_bytes(row_offsets, row_tokens, dtype), dtype)
    assert np.array_equal(got_offsets, row_offsets) and np.array_equal(got_tokens, row_tokens)


def test_read_shard_refuses_damage():
    row_offsets, row_tokens = packed([[5, 6, 7], list(range(300))])
    data = bytearray(mds.shard_bytes(row_offsets, row_tokens, np.uint16))
    for damage in (
        lambda d: d[:-1],  # truncated
        lambda d: d[:4] + (99).to_bytes(4, "little") + d[8:],  # first offset moved
        lambda d: d[:-8] + (4).to_bytes(8, "little"),  # last row's length column
    ):
        with pytest.raises(ValueError):
            mds.read_shard(bytes(damage(bytearray(data))), np.uint16)
