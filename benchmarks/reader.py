"""The reader's rows/s: ``Dataset.batch`` on batches of rows in the trainer's epoch order
(random: consecutive slices of a permutation of the rows) and in contiguous runs, against
the reader before the gathering kernels (``tests/naive.py``'s ``batch``: one Arrow
``take`` per shard touched), on the same datasets, in the same process.

    .venv/bin/python benchmarks/reader.py DATA [DATA ...] [--batch 32] [--seconds 2]
        [--pairs 5] [--results benchmarks/results/reader.jsonl]

DATA are datasets from ``rbprep shard`` (static or dynamic masking): measure on data the
size users have (0.5 GB of text and more, default partitions), where a batch of random
rows touches as many shards as it has rows. For each dataset, order and reader, one
measurement is batches made for about ``--seconds`` (each a ``batch(indices, copy=1)``,
its arrays written, as the trainer asks for them); the contestants are interleaved
(new random, new contiguous, old random, old contiguous, ...) ``--pairs`` times, after
one untimed warm-up each (page cache, numba's JIT), and the figure is the median. The
ratio new / old is the median over pairs. Also timed once: ``open_dataset`` (checks
and hashing included).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

from common import ROOT, append_record, record_header

sys.path.insert(0, str(ROOT))  # tests.naive: the reader before the gathering kernels

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "reader.jsonl"


def rows_per_s(batch, batches: list, seconds: float) -> float:
    """Rows/s of ``batch(indices)`` over ``batches`` in turn, for about ``seconds``."""
    rows, started, i = 0, time.perf_counter(), 0
    while True:
        indices = batches[i % len(batches)]
        arrays = batch(indices)
        rows += len(indices)
        i += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and i >= 3:
            assert arrays["labels"].shape == (len(indices), arrays["input_ids"].shape[1])
            return rows / elapsed


def main() -> None:
    import numpy as np

    from rbprep.dataset import open_dataset
    from tests import naive

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="+", type=Path)
    parser.add_argument("--batch", type=int, default=32, help="rows per batch (32)")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement (2)")
    parser.add_argument("--pairs", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    args = parser.parse_args()
    records = []
    for data in args.data:
        started = time.perf_counter()
        dataset = open_dataset(data)
        open_s = time.perf_counter() - started
        rows = len(dataset)
        permutation = np.random.default_rng(0).permutation(rows)
        random = [permutation[i : i + args.batch] for i in range(0, rows - args.batch, args.batch)]
        contiguous = [np.arange(i, i + args.batch) for i in range(0, rows - args.batch, args.batch)]
        new = functools.partial(dataset.batch, copy=1)
        old = functools.partial(naive.batch, dataset, copy=1)
        contestants = {
            "new random": (new, random),
            "new contiguous": (new, contiguous),
            "old random": (old, random),
            "old contiguous": (old, contiguous),
        }
        rates: dict[str, list[float]] = {name: [] for name in contestants}
        for batch, batches in contestants.values():  # warm-up
            rows_per_s(batch, batches, 0.2)
        for _ in range(args.pairs):
            for name, (batch, batches) in contestants.items():
                rates[name].append(rows_per_s(batch, batches, args.seconds))
        median = {name: statistics.median(values) for name, values in rates.items()}
        ratios = {
            order: statistics.median(
                n / o for n, o in zip(rates[f"new {order}"], rates[f"old {order}"], strict=True)
            )
            for order in ("random", "contiguous")
        }
        shard_bytes = sum(record.bytes for record in dataset.shards)
        print(
            f"{data}: {dataset.masking}, {rows:,} rows in {len(dataset.shards)} shards "
            f"({shard_bytes / 1e6:,.0f} MB), seq {dataset.seq_len}, batches of {args.batch}; "
            f"open {open_s:.2f} s"
        )
        for name, value in median.items():
            print(f"  {name:15} {value:12,.0f} rows/s   runs: {[round(r) for r in rates[name]]}")
        print(
            f"  new / old, median of {args.pairs} pairs: random {ratios['random']:.1f}x, "
            f"contiguous {ratios['contiguous']:.1f}x; new random / new contiguous "
            f"{median['new random'] / median['new contiguous']:.2f}"
        )
        records.append(
            {
                "data": str(data),
                "masking": dataset.masking,
                "rows": rows,
                "shards": len(dataset.shards),
                "shard_bytes": shard_bytes,
                "seq_len": dataset.seq_len,
                "batch": args.batch,
                "open_s": round(open_s, 3),
                "rows_per_s": {
                    name: [round(r, 1) for r in values] for name, values in rates.items()
                },
                "median_rows_per_s": {name: round(v, 1) for name, v in median.items()},
                "new_over_old": {order: round(r, 2) for order, r in ratios.items()},
            }
        )
    append_record(args.results, {**record_header(), "datasets": records})


if __name__ == "__main__":
    main()
