"""shard on a real Dask cluster: a scheduler and two worker processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from rbprep.cli import main
from tests.test_shard import dataset_files

distributed = pytest.importorskip("distributed")

ARGS = ["--partition-size", "400KB", "--dup", "3", "-q"]


def _dask(*args: str, log: Path) -> subprocess.Popen:
    dask = Path(sys.executable).parent / "dask"
    return subprocess.Popen(
        [str(dask), *args],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
    )


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two single-threaded workers; yields (address, worker processes)."""
    scheduler_file = tmp_path / "scheduler.json"
    processes = [
        _dask(
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
            log=tmp_path / "scheduler.log",
        )
    ]
    deadline = time.monotonic() + 60
    while not scheduler_file.exists():
        assert time.monotonic() < deadline, "the Dask scheduler did not start"
        time.sleep(0.1)
    workers = [
        _dask(
            "worker",
            "--scheduler-file",
            str(scheduler_file),
            "--host",
            "127.0.0.1",
            "--nworkers",
            "1",
            "--nthreads",
            "1",
            "--no-dashboard",
            "--no-nanny",
            "--name",
            f"worker-{n}",
            log=tmp_path / f"worker-{n}.log",
        )
        for n in range(2)
    ]
    processes += workers
    with distributed.Client(scheduler_file=str(scheduler_file), timeout="60s") as client:
        client.wait_for_workers(2, timeout=60)
        address = client.scheduler.address
    yield address, workers
    for process in processes:
        process.kill()
        process.wait()


@pytest.fixture
def local_reference(tmp_path, builtin_corpus, small_vocab) -> Path:
    out = tmp_path / "local"
    args = ["shard", builtin_corpus, "--tokenizer", small_vocab / "bpe", "--out", out, *ARGS]
    assert CliRunner().invoke(main, [str(a) for a in args]).exit_code == 0
    return out


@pytest.mark.slow
def test_cluster_output_is_byte_identical_to_local(
    cluster, local_reference, tmp_path, builtin_corpus, small_vocab
):
    address, _ = cluster
    out = tmp_path / "cluster"
    args = ["shard", builtin_corpus, "--tokenizer", small_vocab / "bpe", "--out", out, *ARGS]
    result = CliRunner().invoke(main, [str(a) for a in [*args, "--scheduler", address]])
    assert result.exit_code == 0, result.output
    files = dataset_files(out)
    assert len([name for name in files if name.endswith(".arrow")]) > 5
    assert files == dataset_files(local_reference)


@pytest.mark.slow
def test_long_lived_workers_take_each_runs_own_tokenizer(
    cluster, tmp_path, builtin_corpus, small_vocab
):
    """Two runs on the same workers into the same --out, the second with --force and
    another tokenizer and the same encoder: the workers must not encode it with the
    first run's (issue 13: they once cached tokenizers by the path OUT/tokenizer.json).
    The second run's output equals a local run's with its tokenizer."""
    address, _ = cluster
    out, local = tmp_path / "cluster", tmp_path / "local-wordpiece"
    for kind in ("bpe", "wordpiece"):
        args = ["shard", builtin_corpus, "--tokenizer", small_vocab / kind, "--out", out, *ARGS]
        args += ["--scheduler", address, "--force", "--encoder", "reference"]
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    args = ["shard", builtin_corpus, "--tokenizer", small_vocab / "wordpiece", "--out", local]
    args += ["--encoder", "reference"]  # as the cluster's runs: the manifests name it
    assert CliRunner().invoke(main, [str(a) for a in [*args, *ARGS]]).exit_code == 0
    files = dataset_files(out)
    assert len([name for name in files if name.endswith(".arrow")]) > 5
    assert files == dataset_files(local)


@pytest.mark.slow
def test_a_worker_killed_mid_run_still_gives_identical_output(
    cluster, local_reference, tmp_path, builtin_corpus, small_vocab
):
    address, workers = cluster
    out = tmp_path / "cluster"
    command = [sys.executable, "-m", "rbprep", "shard", str(builtin_corpus), "--tokenizer"]
    command += [str(small_vocab / "bpe"), "--out", str(out), *ARGS, "--scheduler", address]
    run = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    parts = out / ".parts"
    deadline = time.monotonic() + 120
    while len(list(parts.glob("*.json"))) < 2:
        assert run.poll() is None, run.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(workers[0].pid, signal.SIGKILL)  # dies with a partition in hand
    assert run.wait(timeout=300) == 0, run.stderr.read()
    assert dataset_files(out) == dataset_files(local_reference)


@pytest.mark.slow
def test_cluster_reads_and_writes_an_object_store(
    object_store, cluster, local_reference, builtin_corpus, small_vocab
):
    """Inputs and --out on S3 (a real endpoint on loopback): workers read their
    partitions from it and write their shards to it; the same bytes as a local run."""
    address, _ = cluster
    corpus = object_store.upload(builtin_corpus, "dask/corpus")
    out = object_store.uri("dask/data")
    args = ["shard", corpus, "--tokenizer", small_vocab / "bpe", "--out", out, *ARGS]
    result = CliRunner().invoke(main, [str(a) for a in [*args, "--scheduler", address]])
    assert result.exit_code == 0, result.output
    remote, local = object_store.download("dask/data"), dataset_files(local_reference)
    shards = sorted(name for name in local if name.endswith(".arrow"))
    assert len(shards) > 5
    assert {name: remote[name] for name in shards} == {name: local[name] for name in shards}
    remote_manifest, local_manifest = (
        json.loads(remote["manifest.json"]),
        json.loads(local["manifest.json"]),
    )
    assert remote_manifest.pop("corpus")["files"] == [
        f"{corpus.split('?')[0]}/{builtin_corpus.name}?{corpus.split('?')[1]}"
    ]
    local_manifest.pop("corpus")
    assert remote_manifest == local_manifest


def test_no_scheduler_is_a_clear_error(tmp_path, small_corpus, small_vocab, monkeypatch):
    monkeypatch.setenv("RBPREP_DASK_CONNECT_TIMEOUT", "2s")  # not the 30 s a user waits
    args = ["shard", small_corpus, "--tokenizer", small_vocab / "bpe", "--out", tmp_path / "d"]
    result = CliRunner().invoke(main, [str(a) for a in [*args, "--scheduler", "tcp://127.0.0.1:9"]])
    assert result.exit_code == 1
    assert "no Dask scheduler answers at tcp://127.0.0.1:9" in result.stderr


@pytest.mark.slow
def test_other_formats_on_the_cluster_are_byte_identical_to_local(
    cluster, tmp_path, builtin_corpus, small_vocab
):
    """Megatron's workers write their partitions' .bin/.idx to the shared --out and the
    client joins them; MDS's write their shards and the client the index.json."""
    address, _ = cluster
    for output in ("megatron", "mds"):
        args = ["shard", builtin_corpus, "--tokenizer", small_vocab / "bpe", "--format", output]
        args += ["--partition-size", "400KB", "-q"]
        for out, extra in ((tmp_path / output, ["--scheduler", address]), (tmp_path / "l", [])):
            result = CliRunner().invoke(main, [str(a) for a in [*args, "--out", out, *extra]])
            assert result.exit_code == 0, result.output
        files = dataset_files(tmp_path / output)
        assert any(name.endswith((".bin", ".mds")) for name in files)
        assert files == dataset_files(tmp_path / "l")
        (tmp_path / "l").rename(tmp_path / f"local-{output}")
