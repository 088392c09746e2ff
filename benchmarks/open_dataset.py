"""What `open_dataset`'s checks cost: seconds to open a dataset's train split with the
sha256 of every shard checked, against the same open without the hash (sizes and
invariants are checked in both) and against hashing the shards' bytes once and nothing
else (sha256 streamed in 1 MiB blocks, as the reader streams them), each in a fresh
process, page cache warm. The target (issue 30): the open with checks within 1.5x of
the hash alone; with W ranks (``--world W``: the open of rank 0's share), each rank
hashes about 1/W.

    python benchmarks/open_dataset.py DATA [--pairs 5] [--world W]
        [--results benchmarks/results/open_dataset.jsonl]

DATA is a dataset from `rbprep shard`; without it the built-in corpus is sharded first
(seq 512, dup 10, a BPE of 8,000). The two contestants are interleaved, the figures are
medians of the pairs, and the cost is given per GB of shards and as a ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, append_record, record_header, warm_page_cache

# Seconds inside the process, so interpreter and import start-up are left out (the
# open's own imports, numba's among them, are counted).
TIMED_OPEN = """
import sys, time
started = time.perf_counter()
from rbprep.dataset import open_dataset
open_dataset(sys.argv[1], checksums=sys.argv[2] == "on", share=(0, int(sys.argv[3])))
print(time.perf_counter() - started)
"""
TIMED_HASH = """
import hashlib, json, sys, time
started = time.perf_counter()
root = sys.argv[1]
for shard in json.load(open(root + "/manifest.json"))["splits"]["train"]["shards"]:
    digest = hashlib.sha256()
    with open(root + "/" + shard["file"], "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
print(time.perf_counter() - started)
"""


def default_dataset(work: Path) -> Path:
    from rbprep.corpus.builtin import builtin_corpus_path
    from rbprep.sharding import ShardConfig, shard
    from rbprep.vocab import VocabConfig, train_vocab

    vocab = work / "vocab"
    train_vocab([builtin_corpus_path()], vocab, VocabConfig(only="bpe", bpe_size=8000))
    data = work / "data"
    shard([builtin_corpus_path()], vocab / "bpe", data, ShardConfig(), progress=False)
    return data


def open_seconds(data: Path, checksums: str, world: int = 1) -> float:
    script = TIMED_HASH if checksums == "hash alone" else TIMED_OPEN
    done = subprocess.run(
        [sys.executable, "-c", script, str(data), checksums, str(world)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--world", type=int, default=1, help="also time rank 0's share of W")
    parser.add_argument(
        "--results", type=Path, default=ROOT / "benchmarks/results/open_dataset.jsonl"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        data = args.data or default_dataset(Path(work))
        shards = json.loads((data / "manifest.json").read_text())["splits"]["train"]["shards"]
        size = sum(shard["bytes"] for shard in shards)
        warm_page_cache(str(data / shard["file"]) for shard in shards)
        hashed, unhashed, hash_alone, ranked = [], [], [], []
        for _ in range(args.pairs):
            hashed.append(open_seconds(data, "on"))
            unhashed.append(open_seconds(data, "off"))
            hash_alone.append(open_seconds(data, "hash alone"))
            if args.world > 1:
                ranked.append(open_seconds(data, "on", args.world))
    on, off = statistics.median(hashed), statistics.median(unhashed)
    alone = statistics.median(hash_alone)
    ratios = [o / h for o, h in zip(hashed, hash_alone, strict=True)]
    gigabytes = size / 1e9
    print(f"data: {data} (train: {len(shards)} shards, {size / 1e6:,.1f} MB)")
    print(f"  open, sha256 checked   {on:8.3f} s  ({on / gigabytes:.2f} s per GB)")
    print(f"  open, sizes/invariants {off:8.3f} s  ({off / gigabytes:.2f} s per GB)")
    print(f"  sha256 of the shards   {alone:8.3f} s  (nothing else)")
    print(
        f"  open with checks / hash alone, median of pairs: {statistics.median(ratios):.2f}"
        " (target <= 1.5)"
    )
    if ranked:
        print(f"  rank 0 of {args.world}, checks on   {statistics.median(ranked):8.3f} s")
    append_record(
        args.results,
        {
            **record_header(),
            "data": str(data),
            "train_bytes": size,
            "shards": len(shards),
            "pairs": args.pairs,
            "open_s_checksums": round(on, 4),
            "open_s_no_checksums": round(off, 4),
            "hashed_s": hashed,
            "unhashed_s": unhashed,
            "hash_alone_s": hash_alone,
            "open_over_hash": round(statistics.median(ratios), 3),
            "world": args.world,
            "rank0_open_s": ranked,
        },
    )


if __name__ == "__main__":
    main()
