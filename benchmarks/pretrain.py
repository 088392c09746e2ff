"""Trainer throughput: tokens/s and MFU of `rbprep pretrain` for a preset on a device, and
the data loader's rows/s alone (it must never be the bottleneck), static against dynamic
masking.

    python benchmarks/pretrain.py [DATA] [--dynamic-data DATA2] [--model base]
        [--device cuda] [--micro-batch 32] [--steps 30] [--compile]
        [--results benchmarks/results/pretrain.jsonl]

DATA is a dataset from `rbprep shard` (static, --dup); DATA2 the same corpus sharded with
`--masking dynamic`. Without them the built-in corpus is sharded both ways first (seq
512, an 8K BPE trained here). All figures come from the same run: the loader alone
(rows/s, assembling batches exactly as training does, on one thread), static and dynamic
interleaved, median of --pairs pairs; then training on DATA, whose steady-state tokens/s
and MFU are the median of the logged windows after the first (warm-up and compilation
excluded). The ratio loader rows/s over training rows/s says how much headroom each
loader has.
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


def default_dataset(work: Path, masking: str = "static", mode: str = "full-sentences") -> Path:
    """The built-in corpus sharded at seq 512 (dup 10, or dynamic masking; FULL- or
    DOC-SENTENCES) into ``work/data[-dynamic][-doc]``, with an 8K BPE trained once into
    work/vocab."""
    from rbprep.corpus.builtin import builtin_corpus_path
    from rbprep.sharding import ShardConfig, shard
    from rbprep.vocab import VocabConfig, train_vocab

    vocab = work / "vocab"
    if not (vocab / "bpe").exists():
        train_vocab([builtin_corpus_path()], vocab, VocabConfig(only="bpe", bpe_size=8000))
    name = "data" + ("-dynamic" if masking == "dynamic" else "") + ("-doc" if "doc" in mode else "")
    data = work / name
    shard([builtin_corpus_path()], vocab / "bpe", data, ShardConfig(masking=masking, mode=mode))
    return data


def loader_rows_per_s(data: Path, micro_batch: int, batches: int, pairs: int) -> list[float]:
    """Rows/s of the loader alone on each dataset of ``data``, measured in turn ``pairs``
    times (interleaved, so drift hits all alike); the median per dataset."""
    from rbprep.dataset import open_dataset
    from rbprep.train.data import Cursor, FixedBatches, Loader

    loaders = [Loader(open_dataset(path), FixedBatches(micro_batch), seed=0) for path in data]
    for loader in loaders:
        loader.step_at(Cursor())  # warm the memory map and numba's kernels
    rates: list[list[float]] = [[] for _ in loaders]
    for pair in range(pairs):
        for loader, rate in zip(loaders, rates, strict=True):
            cursor = Cursor(epoch=pair)  # a new epoch: a dynamic loader computes new masks
            started = time.perf_counter()
            for _ in range(batches):
                cursor = loader.step_at(cursor).cursor
            rate.append(batches * micro_batch / (time.perf_counter() - started))
    return [statistics.median(rate) for rate in rates]


def train(data: Path, args: argparse.Namespace, run: Path) -> list[dict]:
    from rbprep.train.loop import TrainConfig, pretrain

    config = TrainConfig(
        model=args.model,
        micro_batch=args.micro_batch,
        batch_size=None if args.batch_tokens else args.micro_batch,
        batch_tokens=args.batch_tokens,
        attention=args.attention,
        steps=args.steps,
        device=args.device,
        compile=args.compile,
        log_every=args.log_every,
        eval_every=10**9,
        save_every=10**9,
    )
    pretrain(data, run, config, force=True, progress=False)
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path)
    parser.add_argument("--dynamic-data", type=Path)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--attention", choices=["row", "document"], default="row")
    parser.add_argument(
        "--batch-tokens", type=int, help="token-budget steps (micro-batches of micro x seq_len)"
    )
    parser.add_argument(
        "--doc-sentences", action="store_true", help="shard the default dataset DOC-SENTENCES"
    )
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks/results/pretrain.jsonl")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as work:
        mode = "doc-sentences" if args.doc_sentences else "full-sentences"
        data = args.data or default_dataset(Path(work), mode=mode)
        dynamic = args.dynamic_data or default_dataset(Path(work), "dynamic", mode)
        loader_rate, dynamic_rate = loader_rows_per_s(
            [data, dynamic], args.micro_batch, batches=50, pairs=args.pairs
        )
        every_step = train(data, args, Path(work) / "run")
        seq_len = json.loads((data / "manifest.json").read_text())["parameters"]["seq_len"]
    records = [r for r in every_step if r.get("tokens_per_s")]
    steady = records[1:] or records
    tokens_per_s = statistics.median(r["tokens_per_s"] for r in steady)
    mfus = [r["mfu"] for r in steady if r["mfu"] is not None]
    mfu = statistics.median(mfus) if mfus else None
    tokens_per_row = sum(r["tokens"] for r in every_step) / sum(r["sequences"] for r in every_step)
    train_rows = tokens_per_s / tokens_per_row
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.machine()
    print(f"data: {data} (seq_len {seq_len})")
    print(f"device: {device} ({name}), torch {torch.__version__}, model {args.model}")
    batch = f"--batch-tokens {args.batch_tokens}" if args.batch_tokens else "fixed batches"
    print(f"attention {args.attention}, {batch}, {tokens_per_row:.0f} real tokens per row")
    print(f"  loader alone      {loader_rate:>12,.0f} rows/s  (static masks, stored)")
    print(
        f"  dynamic loader    {dynamic_rate:>12,.0f} rows/s  (masks computed: "
        f"{dynamic_rate / loader_rate:.2f}x the static loader)"
    )
    print(f"  training          {tokens_per_s:>12,.0f} tokens/s  (~{train_rows:,.0f} rows/s)")
    print(f"  MFU               {f'{mfu:.1%}' if mfu is not None else 'n/a (no known peak)':>12}")
    print(f"  loader headroom   {loader_rate / train_rows:>12.1f}x the rows training consumes")
    print(f"  dynamic headroom  {dynamic_rate / train_rows:>12.1f}x")
    record = {
        **record_header(),
        "device": device,
        "device_name": name,
        "model": args.model,
        "micro_batch": args.micro_batch,
        "steps": args.steps,
        "compile": args.compile,
        "attention": args.attention,
        "batch_tokens": args.batch_tokens,
        "doc_sentences": args.doc_sentences,
        "tokens_per_row": round(tokens_per_row, 1),
        "loader_rows_per_s": round(loader_rate, 1),
        "dynamic_loader_rows_per_s": round(dynamic_rate, 1),
        "loader_pairs": args.pairs,
        "tokens_per_s": tokens_per_s,
        "mfu": mfu,
        "windows": steady,
    }
    append_record(args.results, record)


if __name__ == "__main__":
    main()
