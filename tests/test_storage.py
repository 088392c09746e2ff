"""Inputs and datasets on an object store: URIs that pyarrow's file systems reach; and
writes done behind the caller (``WriteBehind``).

The store is a real S3 endpoint on 127.0.0.1 (``object_store`` in conftest.py), spoken to
by pyarrow's own S3 client over HTTP, as a bucket in the cloud would be."""

from __future__ import annotations

import gzip
import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rbprep.cli import main
from rbprep.corpus import ReadStats, open_corpus
from rbprep.dataset import open_dataset
from rbprep.dataset.verification import verify
from rbprep.errors import RbprepError
from rbprep.sharding import ShardConfig, shard
from rbprep.storage import Location, WriteBehind
from tests.test_shard import dataset_files

ARGS = ["--partition-size", "400KB", "--dup", "3", "-q"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def documents(corpus) -> list[list[str]]:
    return [document.units for document in corpus.documents(ReadStats())]


@pytest.fixture(scope="module")
def mixed_corpus(tmp_path_factory, builtin_corpus):
    """The built-in corpus (one text file) plus one file of each other format, locally."""
    folder = tmp_path_factory.mktemp("mixed")
    (folder / "builtin.txt").write_bytes(builtin_corpus.read_bytes())
    lines = [json.dumps({"text": f"Record {i} line one.\nAnd line two of {i}."}) for i in range(50)]
    (folder / "records.jsonl.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    table = pa.table({"text": [f"Parquet row {i}.\nIts second line." for i in range(40)]})
    pq.write_table(table, folder / "rows.parquet")
    return folder


def test_a_corpus_on_s3_reads_as_the_same_files_locally(object_store, mixed_corpus):
    uri = object_store.upload(mixed_corpus, "inputs/mixed")
    size = 300_000  # several partitions cut inside files by byte ranges read remotely
    local = open_corpus([mixed_corpus], partition_size=size)
    remote = open_corpus([uri], partition_size=size)
    assert len(remote.partitions) == len(local.partitions) > len(local.files)
    assert [f.path.split("?")[0].rsplit("/", 1)[1] for f in remote.files] == [
        f.path.rsplit("/", 1)[1] for f in local.files
    ]
    assert remote.files[0].path.startswith("s3://rbprep-test/inputs/mixed/")
    assert documents(remote) == documents(local)
    pattern = open_corpus([object_store.uri("inputs/mixed/*.txt")])
    assert [f.format for f in pattern.files] == ["txt"]


def test_missing_and_unreachable_uris_are_one_line_errors(object_store, tmp_path, small_vocab):
    with pytest.raises(RbprepError, match="no such file or folder"):
        open_corpus([object_store.uri("inputs/nothing-here")])
    with pytest.raises(RbprepError, match="pattern matches no file"):
        open_corpus([object_store.uri("inputs/mixed/*.nothing")])
    result = run(
        "shard", "nosuch://bucket/x", "--tokenizer", small_vocab / "bpe", "--out", tmp_path
    )
    assert result.exit_code == 1
    assert "nosuch://bucket/x: not a location pyarrow's file systems reach" in result.stderr
    assert "Traceback" not in result.output
    # A store that does not answer, and a bucket that does not exist: the store's own
    # words on one line, no traceback.
    dead = "s3://rbprep-test/x?endpoint_override=127.0.0.1:1&scheme=http"
    for corpus, out in (
        (dead, tmp_path / "a"),
        (small_vocab, object_store.uri("").replace("rbprep-test", "no-such-bucket")),
    ):
        result = run("shard", corpus, "--tokenizer", small_vocab / "bpe", "--out", out, "-q")
        assert result.exit_code == 1
        assert "check the path or URI, its permissions and your credentials" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_sample_bytes_on_s3_samples_as_on_a_local_copy(object_store, mixed_corpus):
    # The text size of a remote file was once taken from os.stat, which failed: no sample.
    from rbprep.corpus.sampling import Usage, sample_documents

    uri = object_store.upload(mixed_corpus, "inputs/sampled")
    samples = {}
    for where, corpus in (("local", open_corpus([mixed_corpus])), ("s3", open_corpus([uri]))):
        usage = Usage()
        documents = sample_documents(corpus, ReadStats(), 200_000, 0, usage)
        samples[where] = ([d.units for _, d in documents], usage)
    assert samples["s3"][1].sampled and samples["s3"][1].text_bytes < 300_000
    assert samples["s3"][0] == samples["local"][0]


def test_shard_from_s3_to_s3_equals_a_local_run(object_store, mixed_corpus, tmp_path, small_vocab):
    """Inputs and --out on the store (the tokenizer too): the same shard files and
    manifest as a local run, and open_dataset, verify and inspect read it there."""
    tokenizer = object_store.upload(small_vocab / "bpe", "tokenizers/bpe")
    corpus = object_store.upload(mixed_corpus, "inputs/for-shard")
    out = object_store.uri("datasets/one")
    assert run("shard", corpus, "--tokenizer", tokenizer, "--out", out, *ARGS).exit_code == 0
    local = tmp_path / "local"
    args = [mixed_corpus, "--tokenizer", small_vocab / "bpe", "--out", local, *ARGS]
    assert run("shard", *args).exit_code == 0

    remote_files = object_store.download("datasets/one")
    local_files = dataset_files(local)
    shards = sorted(name for name in local_files if name.endswith(".arrow"))
    assert len(shards) > 3
    assert {name: remote_files[name] for name in shards} == {n: local_files[n] for n in shards}
    remote_manifest = json.loads(remote_files["manifest.json"])
    local_manifest = json.loads(local_files["manifest.json"])
    assert remote_manifest.pop("corpus")["files"][0].startswith("s3://")
    local_manifest.pop("corpus")
    assert remote_manifest == local_manifest
    assert ".lock" not in remote_files  # released

    dataset = open_dataset(out)
    reference = open_dataset(local)
    rows = np.arange(len(reference))
    for copy in (None, 2):
        batch, expected = dataset.batch(rows, copy=copy), reference.batch(rows, copy=copy)
        assert all(np.array_equal(batch[key], expected[key]) for key in expected)
    assert dataset.tokenizer.get_vocab_size() == reference.tokenizer.get_vocab_size()
    assert verify(out).rows == verify(local).rows
    assert run("inspect", out, "--rows", "1").exit_code == 0


def test_resume_and_force_on_s3(object_store, builtin_corpus, small_vocab):
    out = object_store.uri("datasets/resume")
    args = [builtin_corpus, "--tokenizer", small_vocab / "bpe", "--out", out, *ARGS]
    assert run("shard", *args).exit_code == 0
    finished = object_store.download("datasets/resume")
    assert run("shard", *args).exit_code == 1  # a finished dataset is kept

    # An interrupted run: no manifest, and the last partitions' files and markers gone.
    location = Location(out)
    location.child("manifest.json").delete()
    markers = location.child(".parts").files()
    for marker in markers[-2:]:
        marker.delete()
        location.child(f"train/shard-{marker.name.removesuffix('.json')}.arrow").delete()
    result = run("shard", *args)
    assert result.exit_code == 1 and "--resume" in result.stderr
    assert run("shard", *args, "--resume").exit_code == 0
    assert object_store.download("datasets/resume") == finished
    assert run("shard", *args, "--force").exit_code == 0
    assert object_store.download("datasets/resume") == finished


def test_a_live_lock_on_s3_refuses_a_second_run_and_a_stale_one_is_taken_over(
    object_store, small_corpus, small_vocab
):
    out = object_store.uri("datasets/locked")
    lock = Location(out).child(".lock")
    lock.write_json({"host": "elsewhere", "pid": 1, "run": "x", "time": time.time()})
    args = [small_corpus, "--tokenizer", small_vocab / "bpe", "--out", out, "-q"]
    result = run("shard", *args)
    assert result.exit_code == 1
    assert "another rbprep shard is writing here" in result.stderr
    lock.write_json({"host": "elsewhere", "pid": 1, "run": "x", "time": time.time() - 3600})
    assert run("shard", *args).exit_code == 0
    assert not lock.exists()


def test_shard_library_call_with_a_uri(object_store, small_corpus, small_vocab):
    out = object_store.uri("datasets/library")
    summary = shard([small_corpus], small_vocab / "wordpiece", out, ShardConfig(dup=2))
    assert summary.out == out
    assert len(open_dataset(out)) == summary.manifest.splits["train"].rows


def test_locations_name_local_paths_file_uris_and_remote_children(object_store, tmp_path):
    assert str(Location(f"file://{tmp_path}")) == str(tmp_path)
    assert not Location(f"file://{tmp_path}").remote
    remote = Location(object_store.uri("a/b"))
    child = remote.child("c/d.txt")
    assert str(child) == object_store.uri("a/b/c/d.txt")  # the query travels along
    assert (child.name, child.stem, remote.parent.name) == ("d.txt", "d", "a")
    with pytest.raises(RbprepError, match="may not hold"):
        Location(object_store.uri("a/../b"))


def test_write_behind_writes_each_batch_in_order_and_wait_sees_all_on_disk(tmp_path):
    written = []
    write = Location.write_atomically

    class Recorded(Location):
        def write_atomically(self, data) -> None:
            write(self, data)
            written.append(self.name)

    batches = [
        [
            (Recorded(str(tmp_path / f"{n}.arrow")), bytes([n]) * 100_000),
            (Recorded(str(tmp_path / f"{n}.json")), b"{}"),
        ]
        for n in range(12)
    ]
    with WriteBehind(backlog=1) as writes:
        for batch in batches:
            writes.submit(batch)
        writes.wait()
        assert written == [location.name for batch in batches for location, _ in batch]
        assert (tmp_path / "11.arrow").read_bytes() == bytes([11]) * 100_000
        writes.submit([(Recorded(str(tmp_path / "last.json")), b"[]")])
    assert (tmp_path / "last.json").read_bytes() == b"[]"  # leaving it waits too


def test_a_failed_write_behind_stops_later_writes_and_is_raised_where_it_is_used(tmp_path):
    """A shard that cannot be written leaves its marker unwritten, and nothing after it
    is written: the caller learns of it at its next submit or wait."""
    shard_file = Location(str(tmp_path / "gone" / "0.arrow"))  # no such directory
    marker, later, last = (Location(str(tmp_path / f"{n}.json")) for n in range(3))
    with pytest.raises(FileNotFoundError), WriteBehind() as writes:
        writes.submit([(shard_file, b"rows"), (marker, b"{}")])
        writes.submit([(later, b"{}")])
        with pytest.raises(FileNotFoundError):
            writes.wait()
        assert not marker.exists() and not later.exists()
        writes.submit([(last, b"{}")])
    assert not last.exists()


# --- a dataset on an object store, read in bounded memory ------------------------------


@pytest.fixture(scope="module")
def sharded_small(tmp_path_factory, builtin_corpus, small_vocab):
    """The built-in corpus in partitions of 300 KB (about 15 shards), seq 128, 2 copies;
    and the same corpus four times over (four times the shards)."""
    out = tmp_path_factory.mktemp("for-s3")
    config = ShardConfig(seq_len=128, dup=2, valid_fraction=0.02)
    shard(
        open_corpus([builtin_corpus], partition_size=300_000),
        small_vocab / "bpe",
        out / "one",
        config,
    )
    copies = []
    for n in range(4):
        copy = out / f"copy{n}.txt"
        copy.write_bytes(builtin_corpus.read_bytes())
        copies.append(copy)
    shard(open_corpus(copies, partition_size=300_000), small_vocab / "bpe", out / "four", config)
    return out / "one", out / "four"


def _cache_bytes(directory) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*.arrow"))


def test_a_remote_dataset_is_fetched_as_batches_need_it_into_a_bounded_folder(
    object_store, sharded_small, tmp_path, monkeypatch
):
    """Opening reads no shard; each batch fetches the shards it needs, checked, and the
    folder stays within its bound (a batch's own shards aside); batches equal a local
    open's. A shard damaged in the store is a one-line error when first needed, and its
    copy is not kept."""
    monkeypatch.setenv("RBPREP_CACHE_DIR", str(tmp_path / "cache"))
    local_root = sharded_small[0]
    uri = object_store.upload(local_root, "datasets/bounded")
    local = open_dataset(local_root)
    sizes = [record.bytes for record in local.shards]
    bound = int(2.5 * max(sizes))
    remote = open_dataset(uri, cache_bytes=bound)
    folder = tmp_path / "cache" / "datasets"
    assert len(local.shards) > 8 and _cache_bytes(folder) == 0  # nothing fetched at open
    rng = np.random.default_rng(0)
    for _ in range(12):
        rows = rng.choice(len(local), size=3, replace=False)
        got, expected = remote.batch(rows, 1, groups=True), local.batch(rows, 1, groups=True)
        for name, array in expected.items():
            np.testing.assert_array_equal(got[name], array)
        assert _cache_bytes(folder) <= max(bound, 3 * max(sizes))
    assert len(remote.lengths()) == len(local) and (remote.lengths() == local.lengths()).all()
    assert _cache_bytes(folder) <= bound
    # Damage in the store: found on arrival, named, not kept.
    damaged = tmp_path / "damaged"
    import shutil

    shutil.copytree(local_root, damaged)
    target = damaged / local.shards[3].file
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    bad = open_dataset(object_store.upload(damaged, "datasets/damaged"), cache_bytes=bound)
    first_of_three = int(bad._parts.starts[3])
    with pytest.raises(RbprepError, match=r"shard-00003\.arrow\S*: checksum differs"):
        bad.batch([first_of_three], 0)
    assert not list(folder.rglob(f"{local.shards[3].sha256}*"))


def test_reading_a_remote_dataset_holds_no_more_than_its_bound(
    object_store, sharded_small, tmp_path, monkeypatch
):
    """Every row of a dataset four times the bound, in order: Arrow never holds more than
    a shard in memory (the reader once read a remote dataset into memory whole: as many
    bytes as its shards), and the folder never more than its bound."""
    monkeypatch.setenv("RBPREP_CACHE_DIR", str(tmp_path / "cache"))
    root = sharded_small[1]
    uri = object_store.upload(root, "datasets/whole")
    shards = json.loads((root / "manifest.json").read_text())["splits"]["train"]["shards"]
    largest, total = max(s["bytes"] for s in shards), sum(s["bytes"] for s in shards)
    bound = 2 * largest
    assert total > 4 * bound
    before = pa.total_allocated_bytes()  # what earlier tests left in Arrow's pool
    dataset = open_dataset(uri, cache_bytes=bound)
    held, on_disk = [], []
    for start in range(0, len(dataset), 64):
        dataset.batch(np.arange(start, min(start + 64, len(dataset))), copy=1)
        held.append(pa.total_allocated_bytes() - before)
        on_disk.append(_cache_bytes(tmp_path / "cache" / "datasets"))
    assert max(held) < largest and max(on_disk) <= bound
