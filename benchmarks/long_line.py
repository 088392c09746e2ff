"""Peak memory on one long line: a text file of SIZE (default 50 MB) of words with no
newline, through train-vocab, shard and compare-tokenizers, each in a fresh process,
against the same process doing nothing but start (`rbprep --help`).

    python benchmarks/long_line.py [--mb 50] [--results benchmarks/results/long_line.jsonl]

Units over `MAX_UNIT_BYTES` are cut in pieces as they are read, so the peak should not
grow with the line (the issue that asked for it measured 5.3-8.3 GB before the cut).
Memory is not noisy as time is, so each command runs once.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, append_record, record_header

PEAK_RSS_KB = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_mb(*args: object) -> float:
    command = [sys.executable, "-m", "rbprep", *map(str, args)]
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_KB, *command], capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks/results/long_line.jsonl")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        line = Path(work) / "line.txt"
        words = (f"{chr(97 + i % 26)}{i % 7919}" for i in range(args.mb * 2**20))
        text = " ".join(words)[: args.mb * 2**20]
        line.write_text(text, encoding="utf-8")
        del text
        vocab = Path(work) / "vocab"
        peaks = {
            "start only": peak_mb("--help"),
            "train-vocab": peak_mb(
                "train-vocab", line, "--out", vocab, "--bpe-size", 8000, "--wordpiece-size", 8000
            ),
            "shard": peak_mb(
                "shard", line, "--tokenizer", vocab / "bpe", "--out", Path(work) / "d", "--dup", 1
            ),
            "compare-tokenizers": peak_mb("compare-tokenizers", line, "--tokenizers", vocab),
        }
    print(f"one line of {args.mb} MB, no newline: peak RSS")
    for name, mb in peaks.items():
        print(f"  {name:20} {mb:8,.0f} MB")
    append_record(
        args.results,
        {
            **record_header(),
            "line_mb": args.mb,
            "peak_rss_mb": {k: round(v) for k, v in peaks.items()},
        },
    )


if __name__ == "__main__":
    main()
