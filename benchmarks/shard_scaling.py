"""Throughput of `rbprep shard` from 1 to 2 workers: the local process pool, and a Dask
cluster (a scheduler and N single-threaded workers started here on 127.0.0.1).

    python benchmarks/shard_scaling.py [CORPUS ...] [--tokenizer DIR] [--partition-size 4MB]
        [--repeats 2] [--results benchmarks/results/shard_scaling.jsonl]

Default corpus: ~16 MB of the dev corpus (en/sqlite-doc, git-doc, debian-docs,
apache-httpd-doc) if built, else the built-in corpus. Whole `rbprep shard` processes are
timed (start-up included), the median of --repeats runs; MB/s and the speed-up over one
worker are printed and appended to the results file. Every run's output is checked
byte-identical to the first.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, append_record, record_header

BIN = Path(sys.executable).parent
DEV = Path.home() / ".cache/rbprep-dev-corpus/en"
DEV_FILES = ["sqlite-doc.txt", "git-doc.txt", "debian-docs.txt", "apache-httpd-doc.txt"]


def dataset_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and ".parts" not in p.parts
    }


def start_cluster(work: Path, workers: int) -> list[subprocess.Popen]:
    scheduler_file = work / f"scheduler-{workers}.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    processes = [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            ],
            **quiet,
        )
    ]
    while not scheduler_file.exists():
        time.sleep(0.1)
    for _ in range(workers):
        processes.append(
            subprocess.Popen(
                [
                    str(BIN / "dask"),
                    "worker",
                    "--scheduler-file",
                    str(scheduler_file),
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                ],
                **quiet,
            )
        )
    from distributed import Client

    with Client(scheduler_file=str(scheduler_file)) as client:
        client.wait_for_workers(workers, timeout=60)
        processes[0].address = client.scheduler.address  # type: ignore[attr-defined]
    return processes


def time_shard(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="*")
    parser.add_argument("--tokenizer")
    parser.add_argument("--partition-size", default="4MB")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--results", type=Path, default=ROOT / "benchmarks/results/shard_scaling.jsonl"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = args.corpus or (
            [str(DEV / f) for f in DEV_FILES] if DEV.exists() else [_builtin()]
        )
        text_bytes = sum(Path(p).stat().st_size for p in corpus)
        tokenizer = args.tokenizer or _train_tokenizer(corpus, work)
        base = [str(BIN / "rbprep"), "shard", *corpus, "--tokenizer", tokenizer, "-q"]
        base += ["--partition-size", args.partition_size, "--force", "--valid-fraction", "0"]
        reference: dict[str, bytes] | None = None
        rows = []
        for kind in ("local", "dask"):
            for workers in (1, 2):
                cluster = start_cluster(work, workers) if kind == "dask" else []
                out = work / f"{kind}-{workers}"
                where = (
                    ["--scheduler", cluster[0].address]  # type: ignore[attr-defined]
                    if cluster
                    else ["--workers", str(workers)]
                )
                try:
                    seconds = [
                        time_shard([*base, "--out", str(out), *where]) for _ in range(args.repeats)
                    ]
                finally:
                    for process in cluster:
                        process.kill()
                        process.wait()
                files = dataset_bytes(out)
                reference = reference or files
                rows.append(
                    {
                        "executor": kind,
                        "workers": workers,
                        "seconds": [round(s, 3) for s in seconds],
                        "median_s": round(statistics.median(seconds), 3),
                        "identical_to_first": files == reference,
                    }
                )
    print(
        f"corpus: {len(corpus)} files, {text_bytes / 1e6:.1f} MB; partitions {args.partition_size}"
    )
    print(f"{'executor':<8} {'workers':>7} {'median s':>9} {'MB/s':>7} {'speed-up':>9}  identical")
    for row in rows:
        one = next(r for r in rows if r["executor"] == row["executor"] and r["workers"] == 1)
        row["mb_per_s"] = round(text_bytes / 1e6 / row["median_s"], 3)
        row["speed_up"] = round(one["median_s"] / row["median_s"], 3)
        print(
            f"{row['executor']:<8} {row['workers']:>7} {row['median_s']:>9.2f} "
            f"{row['mb_per_s']:>7.2f} {row['speed_up']:>8.2f}x  {row['identical_to_first']}"
        )
    record = {
        **record_header(),
        "corpus": corpus,
        "text_bytes": text_bytes,
        "partition_size": args.partition_size,
        "rows": rows,
    }
    append_record(args.results, record)


def _builtin() -> str:
    from rbprep.corpus.builtin import builtin_corpus_path

    return str(builtin_corpus_path())


def _train_tokenizer(corpus: list[str], work: Path) -> str:
    subprocess.run(
        [
            str(BIN / "rbprep"),
            "train-vocab",
            *corpus,
            "--only",
            "bpe",
            "--out",
            str(work / "v"),
            "--quiet",
            "--sample-bytes",
            "8MB",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return str(work / "v" / "bpe")


if __name__ == "__main__":
    main()
