"""``rbprep.torch_dataset`` read through a torch ``DataLoader``, against the reader it
wraps (``Dataset.batch``), on one dataset: rows per second in random order, batches of
``--batch`` rows of copy 1, collated by transformers' ``default_data_collator``.

Contestants, each timed for ``--seconds`` after two warm-up batches, in ``--rounds``
interleaved rounds: ``Dataset.batch`` alone; ``torch_dataset`` through a ``DataLoader``
in this process (``num_workers=0``); and with ``--workers`` worker processes. Appends one
JSON line to ``--results``::

    .venv/bin/python benchmarks/torch_dataset.py DATA --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from common import append_record, record_header
from torch.utils.data import DataLoader, RandomSampler
from transformers import default_data_collator

import rbprep

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "torch_dataset.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="a dataset made by rbprep shard (Arrow)")
    parser.add_argument("--batch", type=int, default=32, help="rows per batch (32)")
    parser.add_argument("--seconds", type=float, default=5, help="timed per contestant (5)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (2)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (2)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON lines file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = rbprep.torch_dataset(args.data, epoch=1, checksums=False)
    reader, rows = dataset.reader, len(dataset)
    rng = np.random.default_rng(0)

    def reader_rate() -> float:
        started, served = time.perf_counter(), 0
        while time.perf_counter() - started < args.seconds:
            reader.batch(rng.integers(0, rows, args.batch), copy=1)
            served += args.batch
        return served / (time.perf_counter() - started)

    def loader_rate(workers: int) -> float:
        loader = DataLoader(
            dataset,
            batch_size=args.batch,
            sampler=RandomSampler(dataset),
            num_workers=workers,
            collate_fn=default_data_collator,
        )
        started, served = 0.0, 0
        for n, batch in enumerate(loader):
            if n == 2:  # after the workers' start
                started, served = time.perf_counter(), 0
            served += len(batch["input_ids"])
            if n > 2 and time.perf_counter() - started > args.seconds:
                break
        return served / (time.perf_counter() - started)

    contestants = {
        "reader_batch": reader_rate,
        "torch_dataset_in_process": lambda: loader_rate(0),
        f"torch_dataset_{args.workers}_workers": lambda: loader_rate(args.workers),
    }
    rates: dict[str, list[float]] = {name: [] for name in contestants}
    for _ in range(args.rounds):
        for name, rate in contestants.items():
            rates[name].append(rate())
    print(f"{args.data}: {rows:,} rows, batches of {args.batch}, rows/s (median of rounds):")
    for name, values in rates.items():
        print(f"  {name:<28} {statistics.median(values):>10,.0f}")
    append_record(
        args.results,
        {**record_header(), "data": args.data, "rows": rows, "batch": args.batch, "rates": rates},
    )


if __name__ == "__main__":
    main()
