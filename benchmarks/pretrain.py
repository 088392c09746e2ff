"""Trainer throughput: tokens/s and MFU of `rbprep pretrain` for a preset on a device, and
the data loader's rows/s alone (it must never be the bottleneck).

    python benchmarks/pretrain.py DATA [--model base] [--device cuda] [--micro-batch 32]
        [--steps 30] [--compile] [--results benchmarks/results/pretrain.jsonl]

DATA is a dataset from `rbprep shard`; without it the built-in corpus is sharded first
(seq 512, dup 10, with the tokenizer trained by `rbprep demo`, or a new one). Both
figures come from the same run: the loader alone (rows/s, assembling batches exactly as
training does, on one thread), then training, whose steady-state tokens/s and MFU are
the median of the logged windows after the first (warm-up and compilation excluded).
The ratio loader rows/s over training rows/s says how much headroom the loader has.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from common import ROOT, append_record, record_header


def default_dataset(work: Path) -> Path:
    from rbprep.corpus.builtin import builtin_corpus_path
    from rbprep.sharding import ShardConfig, shard
    from rbprep.vocab import VocabConfig, train_vocab

    vocab = work / "vocab"
    train_vocab([builtin_corpus_path()], vocab, VocabConfig(only="bpe", bpe_size=8000))
    data = work / "data"
    shard([builtin_corpus_path()], vocab / "bpe", data, ShardConfig())
    return data


def loader_rows_per_s(data: Path, micro_batch: int, batches: int) -> float:
    from rbprep.dataset import open_dataset
    from rbprep.train.data import Cursor, Loader

    loader = Loader(open_dataset(data), micro_batch, seed=0)
    cursor = Cursor()
    loader.batch_at(cursor)  # warm the memory map
    started = time.perf_counter()
    for _ in range(batches):
        loader.batch_at(cursor)
        cursor = loader.next_cursor(cursor)
    return batches * micro_batch / (time.perf_counter() - started)


def train(data: Path, args: argparse.Namespace, run: Path) -> list[dict]:
    from rbprep.train.loop import TrainConfig, pretrain

    config = TrainConfig(
        model=args.model,
        micro_batch=args.micro_batch,
        batch_size=args.micro_batch,
        steps=args.steps,
        device=args.device,
        compile=args.compile,
        log_every=args.log_every,
        eval_every=10**9,
        save_every=10**9,
    )
    pretrain(data, run, config, force=True, progress=False)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if "tokens_per_s" in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks/results/pretrain.jsonl")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as work:
        data = args.data or default_dataset(Path(work))
        loader_rate = loader_rows_per_s(data, args.micro_batch, batches=50)
        records = train(data, args, Path(work) / "run")
        seq_len = json.loads((data / "manifest.json").read_text())["parameters"]["seq_len"]
    steady = records[1:] or records
    tokens_per_s = statistics.median(r["tokens_per_s"] for r in steady)
    mfus = [r["mfu"] for r in steady if r["mfu"] is not None]
    mfu = statistics.median(mfus) if mfus else None
    train_rows = tokens_per_s / seq_len  # about: full rows carry ~seq_len real tokens
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.machine()
    print(f"data: {data} (seq_len {seq_len})")
    print(f"device: {device} ({name}), torch {torch.__version__}, model {args.model}")
    print(f"  loader alone      {loader_rate:>12,.0f} rows/s")
    print(f"  training          {tokens_per_s:>12,.0f} tokens/s  (~{train_rows:,.0f} rows/s)")
    print(f"  MFU               {f'{mfu:.1%}' if mfu is not None else 'n/a (no known peak)':>12}")
    print(f"  loader headroom   {loader_rate / train_rows:>12.1f}x the rows training consumes")
    record = {
        **record_header(),
        "device": device,
        "device_name": name,
        "model": args.model,
        "micro_batch": args.micro_batch,
        "steps": args.steps,
        "compile": args.compile,
        "loader_rows_per_s": round(loader_rate, 1),
        "tokens_per_s": tokens_per_s,
        "mfu": mfu,
        "windows": steady,
    }
    append_record(args.results, record)


if __name__ == "__main__":
    main()
