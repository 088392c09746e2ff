"""The reader's batches, gathered by kernels from any shards, equal the slow reference's
(``tests/naive.py``: one Arrow ``take`` per shard touched), for every copy, both masking
kinds, with and without mask groups, on index sets that span many shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rbprep import kernels
from rbprep.corpus import open_corpus
from rbprep.dataset import open_dataset
from rbprep.sharding import ShardConfig, shard
from tests import naive


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory, builtin_corpus, small_vocab) -> dict[str, Path]:
    """The built-in corpus in partitions of 256 KB (a shard each, per split), short rows
    (seq 128) so that shards hold hundreds of rows: with 3 stored copies, whole-word;
    and the same masked dynamically."""
    out = tmp_path_factory.mktemp("many-shards")
    options = dict(seq_len=128, valid_fraction=0.05, whole_word=True, seed=3)
    roots = {}
    for name, config in (
        ("static", ShardConfig(dup=3, **options)),
        ("dynamic", ShardConfig(masking="dynamic", **options)),
    ):
        corpus = open_corpus([builtin_corpus], partition_size=256_000)
        shard(corpus, small_vocab / "bpe", out / name, config)
        roots[name] = out / name
    return roots


def _assert_same(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert got.keys() == expected.keys()
    for name, array in expected.items():
        assert got[name].dtype == array.dtype, name
        assert np.array_equal(got[name], array), name


INDICES = st.lists(st.integers(0, 2**31), min_size=0, max_size=40)


@pytest.mark.parametrize("kind", ["static", "dynamic"])
@pytest.mark.parametrize("split", ["train", "valid"])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(draws=INDICES, copy=st.integers(0, 2), groups=st.booleans(), contiguous=st.booleans())
def test_batches_equal_the_slow_reference(
    many_shards, kind, split, draws, copy, groups, contiguous
):
    dataset = open_dataset(many_shards[kind], split)
    assert len(dataset.shards) > (10 if split == "train" else 2)
    rows = len(dataset)
    if contiguous and draws:  # a run of rows, across a shard boundary where one is near
        indices = (draws[0] + np.arange(len(draws))) % rows
    else:
        indices = np.array([d % rows for d in draws], dtype=np.int64)
    _assert_same(
        dataset.batch(indices, copy, groups=groups), naive.batch(dataset, indices, copy, groups)
    )
    _assert_same(dataset.batch(indices, None), naive.batch(dataset, indices, None))


def test_every_row_of_every_shard_equals_the_reference(many_shards):
    """All rows at once, in a shuffled order, for every stored copy and a computed one
    past them (copy 5 of the dynamic dataset)."""
    for kind, copies in (("static", range(3)), ("dynamic", [0, 5])):
        dataset = open_dataset(many_shards[kind])
        order = np.random.default_rng(0).permutation(len(dataset))
        for copy in copies:
            _assert_same(
                dataset.batch(order, copy, groups=True), naive.batch(dataset, order, copy, True)
            )


def test_shards_of_several_record_batches_are_read_row_for_row(many_shards, tmp_path):
    """A shard file written as several record batches (pyarrow may write one so; rbprep
    writes one batch): each is its own part, with its rows keyed within the shard."""
    import json
    import shutil

    from rbprep.dataset.manifest import Manifest

    for kind in ("static", "dynamic"):
        copy = tmp_path / kind
        shutil.copytree(many_shards[kind], copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        for record in manifest["splits"]["train"]["shards"][:3]:
            path = copy / record["file"]
            table = pa.ipc.open_file(path).read_all()
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as out:
                for batch in table.to_batches(max_chunksize=7):
                    out.write_batch(batch)
            record["bytes"] = path.stat().st_size
        (copy / "manifest.json").write_text(json.dumps(manifest))
        Manifest.read(copy)
        split = open_dataset(copy, checksums=False)
        original = open_dataset(many_shards[kind])
        assert len(split._parts.starts) > len(original._parts.starts) + 10
        order = np.random.default_rng(1).permutation(len(split))
        for copy_number in (0, 2):
            _assert_same(
                split.batch(order, copy_number, groups=True),
                original.batch(order, copy_number, groups=True),
            )


def test_gather_rows_checks_its_shapes():
    offsets = kernels.typed_list([np.array([0, 3], dtype=np.int32)])
    values = kernels.typed_list([np.array([0, 5, 2], dtype=np.uint16)])
    out = np.zeros((1, 4), dtype=np.int64), np.zeros((1, 4), dtype=np.int64)
    documents = np.full((1, 4), -1, dtype=np.int32)
    lengths = kernels.gather_rows(
        offsets, values, np.zeros(1, np.int64), np.zeros(1, np.int64), 2, *out, documents
    )
    assert lengths.tolist() == [3] and out[0].tolist() == [[0, 5, 2, 0]]
    assert documents.tolist() == [[0, 0, 0, -1]]  # the end token 2 ends document 0
    with pytest.raises(ValueError, match="parts and rows"):
        kernels.gather_rows(
            offsets, values, np.zeros(2, np.int64), np.zeros(1, np.int64), 2, *out, documents
        )


def test_ranks_divide_the_checks_and_stop_together_on_damage_any_finds(
    many_shards, tmp_path, monkeypatch
):
    """With ``share`` (rank, world), a rank hashes and checks shards rank, rank + world,
    ...; damage outside its share is for another rank to find, and ``agree`` (every
    rank's finding) stops this one too, with the one-line error naming the file."""
    import shutil

    from rbprep.errors import RbprepError
    from rbprep.storage import Location

    copy = tmp_path / "copy"
    shutil.copytree(many_shards["static"], copy)
    hashed: list[str] = []
    original = Location.sha256
    monkeypatch.setattr(Location, "sha256", lambda self: hashed.append(self.name) or original(self))
    dataset = open_dataset(copy, share=(1, 3))
    names = [Path(record.file).name for record in dataset.shards]
    assert sorted(hashed) == sorted(names[1::3])
    damaged = copy / dataset.shards[2].file  # rank 2's of 3
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged.write_bytes(bytes(data))
    for rank in (0, 1):
        open_dataset(copy, share=(rank, 3))  # not theirs: no error of their own
    with pytest.raises(RbprepError, match=r"shard-00002\.arrow: checksum differs"):
        open_dataset(copy, share=(2, 3))

    def agree(finding):  # what rank 2 would report, as gather_objects gives it
        return [finding, None, f"{damaged}: checksum differs from the manifest (damaged)"]

    with pytest.raises(RbprepError, match=r"shard-00002\.arrow: checksum differs"):
        open_dataset(copy, share=(0, 3), agree=agree)
    with pytest.raises(RbprepError, match="share must be"):
        open_dataset(copy, share=(3, 3))


WORDS = {
    "list offsets": "offsets",
    "a length": "length",
    "an id": "id",
    "mask group": "groups",
    "a mask position": "position",
    "a random token": "random",
}


@st.composite
def record_batches(draw):
    """A record batch's buffers as a shard holds them, then damaged (or not) at random."""
    rows, copies = draw(st.integers(0, 6)), draw(st.integers(1, 3))
    lengths = draw(st.lists(st.integers(1, 12), min_size=rows, max_size=rows))
    ids = [draw(st.integers(0, 60)) for _ in range(sum(lengths))]
    groups, positions, randoms = [], [], []
    for length in lengths:
        for _ in range(copies):
            sizes = [draw(st.integers(0, 2)) for _ in range(3)]
            groups += sizes
            positions += [draw(st.integers(0, length + 1)) for _ in range(sum(sizes))]
            randoms += [draw(st.integers(0, 60)) for _ in range(sizes[1])]
    arrays = [
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32),
        np.array(ids, dtype=np.uint16),
    ]
    group_array = np.array(groups, dtype=np.uint16).reshape(-1, 3)
    per_row = group_array.sum(axis=1).reshape(rows, copies).sum(axis=1) if rows else []
    random_row = group_array[:, 1].reshape(rows, copies).sum(axis=1) if rows else []
    masks = [
        np.concatenate([[0], np.cumsum(per_row)]).astype(np.int32),
        np.array(positions, dtype=np.uint16),
        np.array(groups, dtype=np.uint16),
        np.concatenate([[0], np.cumsum(random_row)]).astype(np.int32),
        np.array(randoms, dtype=np.uint16),
    ]
    if rows and draw(st.booleans()):  # damage one buffer's element
        which = draw(st.sampled_from([0, 2, 4, 5]))
        target = masks[which - 2] if which >= 2 else arrays[which]
        if len(target) > 1:
            at = draw(st.integers(0, len(target) - 1))
            target[at] = draw(st.integers(0, 70))
    wide = draw(st.booleans())  # ids as uint32, as a vocabulary past 65,536 stores them
    if wide:
        arrays[1], masks[4] = arrays[1].astype(np.uint32), masks[4].astype(np.uint32)
    return arrays, masks, copies, draw(st.booleans())


@pytest.mark.parametrize("backend", ["compiled", "jit"])
@settings(max_examples=300, deadline=None)
@given(case=record_batches(), seq_len=st.integers(3, 12), vocab=st.integers(40, 70))
def test_shard_invariants_equal_the_reference(backend, case, seq_len, vocab):
    from tests.test_aot import kernels_of

    (id_offsets, ids), masks, copies, dynamic = case
    masks = None if dynamic else tuple(masks)
    expected = naive.shard_invariants(id_offsets, ids, masks, copies, seq_len, vocab)
    with kernels_of(backend):
        found = kernels.shard_invariants(id_offsets, ids, masks, copies, seq_len, vocab)
    if expected is None:
        assert found is None
    else:
        assert found is not None and found[1] == expected[1]
        assert [word for start, word in WORDS.items() if found[0].startswith(start)] == [
            expected[0]
        ]
