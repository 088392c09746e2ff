"""Benchmark ``rbprep compare-tokenizers`` against one plain encode pass per tokenizer.

The issue's budget: the comparison may cost about one encode pass per tokenizer over
the sample. What is measured, on one corpus and set of tokenizers:

- floor: a small Python script (run with ``python -c``) that reads the same sample with
  rbprep's reader (``rbprep.vocab.sample_documents``: the same documents), builds the
  units as ``shard`` tokenises them (later lines with a leading space), and encodes them
  once with each tokenizer by ``Tokenizer.encode_batch_fast`` (no offsets), in batches
  of 10,000 units. Nothing is counted: it is the cost of tokenising with ``tokenizers``.
- fast floor: the same, each tokenizer encoded by the encoder ``--encoder auto`` takes
  for it (``rbprep.encoding.open_encoder``: tokie's ``encode_batch_flat`` for a
  byte-level BPE, ``tokenizers`` for the others), ``encode_texts`` on the units in
  batches of ``UNIT_BATCH`` as they are read (it holds one batch, as rbprep does, not
  the whole sample): one bare fast encode pass per tokenizer. The issue's budget is
  rbprep <= 1.3x this.
- rbprep: ``rbprep compare-tokenizers CORPUS --tokenizer ... --sample-bytes S --json
  OUT -q`` (the table goes to a log file): one encode per tokenizer (``encode_batch_fast``
  for a byte-level BPE or a BERT WordPiece, whose ids alone place their tokens in words,
  on a document's lines joined by newlines: less tokenizer time than the floor's
  unit-by-unit call; ``encode_batch`` with offsets for others, in a thread beside the
  counting, plus ``encode_batch_fast`` on every 10th unit to time shard's call), the
  round trip (from tables of the decoders where they are tables, else one decode per
  document), all metrics, rows packed as ``shard`` packs. Each tokenizer encodes and
  counts a batch on its own thread while the next is read; of the batches that find
  those threads idle, every 10th text first, alone and timed.

Every contestant is a separate process, timed whole (imports and start-up included),
importing rbprep from this checkout (``PYTHONPATH`` is set to its root):
wall time around the child and its peak RSS (``os.wait4``). Runs are interleaved
(floor, fast floor, rbprep, floor, ...) and the result is the median of ``--repeats``
runs, reported as the ratios rbprep / floor and rbprep / fast floor. rbprep's own JSON
says how its time splits (encoder seconds per tokenizer, from ``encode_mb_s``); that is
printed too.

Without ``--tokenizers``/``--tokenizer``, both tokenizers are first trained on a 10 MB
sample of the corpus (untimed). Run it from the repository root::

    .venv/bin/python benchmarks/compare_tokenizers.py                 # dev corpus en/ + multi/
    .venv/bin/python benchmarks/compare_tokenizers.py corpus/ --tokenizers vocab \\
        --tokenizer small=vocab-small/bpe --sample-bytes 30MB --repeats 3

Each run appends one JSON line to ``--results``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from common import (
    DEV_CORPUS,
    Run,
    append_record,
    prepare_rbprep,
    rbprep_command,
    record_header,
    timed,
)

from rbprep.corpus import open_corpus
from rbprep.corpus.builtin import builtin_corpus_path
from rbprep.sizes import format_size, parse_size

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "compare_tokenizers.jsonl"

# Both floors read the sample with rbprep's reader into the units shard encodes.
# Arguments: SAMPLE_BYTES (or "none"), the number of corpus paths, the paths, then the
# tokenizer paths.
OPEN_CORPUS = """\
import json, sys
from rbprep.corpus import ReadStats, open_corpus
from rbprep.encoding import UNIT_BATCH, document_units, open_encoder
from rbprep.tokenizer_info import load_tokenizer
from rbprep.corpus.sampling import Usage, sample_documents

size = None if sys.argv[1] == "none" else int(sys.argv[1])
n = int(sys.argv[2])
paths, tokenizers = sys.argv[3 : 3 + n], sys.argv[3 + n :]
corpus = open_corpus(paths)
units = []
"""
READ_UNITS = (
    OPEN_CORPUS
    + """\
for _, document in sample_documents(corpus, ReadStats(), size, 0, Usage()):
    units.extend(document_units(document.units))
"""
)

# The floor: each tokenizer's encode_batch_fast, 10,000 units a call.
FLOOR_SCRIPT = (
    READ_UNITS
    + """\
for path in tokenizers:
    tokenizer, _ = load_tokenizer(path)
    tokens = 0
    for start in range(0, len(units), 10_000):
        batch = units[start : start + 10_000]
        encodings = tokenizer.encode_batch_fast(batch, add_special_tokens=False)
        tokens += sum(len(e.ids) for e in encodings)
    print(path, tokens)
"""
)

# The fast floor: the same units through the encoder auto takes, UNIT_BATCH units a call
# as they are read (so it holds one batch, not the corpus: holding 575 MB of units costs
# it more than encoding them in a stream does).
FAST_FLOOR_SCRIPT = (
    OPEN_CORPUS
    + """\
encoders = []
for path in tokenizers:
    tokenizer, _ = load_tokenizer(path)
    encoders.append(open_encoder(tokenizer, json.loads(tokenizer.to_str()), None, "auto")[0])
tokens = [0] * len(encoders)

def encode_units():
    for i, encoder in enumerate(encoders):
        ids, _ = encoder.encode_texts(units)
        tokens[i] += len(ids)
    units.clear()

for _, document in sample_documents(corpus, ReadStats(), size, 0, Usage()):
    units.extend(document_units(document.units))
    if len(units) >= UNIT_BATCH:
        encode_units()
encode_units()
for path, encoder, count in zip(tokenizers, encoders, tokens):
    print(path, encoder.id.name, count)
"""
)


def default_corpus() -> list[str]:
    if DEV_CORPUS.is_dir():
        return [str(DEV_CORPUS / "en"), str(DEV_CORPUS / "multi")]
    return [str(builtin_corpus_path())]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="*", help="CORPUS paths (default: dev corpus en/ multi/)")
    parser.add_argument("--tokenizers", help="a train-vocab output directory (bpe/, wordpiece/)")
    parser.add_argument("--tokenizer", action="append", default=[], help="NAME=PATH; repeat")
    parser.add_argument(
        "--sample-bytes", type=parse_size, default=parse_size("20MB"), help="(20MB)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per contestant (5)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON lines file")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    corpus_args = args.corpus or default_corpus()
    corpus = open_corpus(corpus_args)
    print(
        f"Corpus: {' '.join(corpus_args)} ({len(corpus.files)} files, {format_size(corpus.size)})"
    )
    print(
        f"  sample {format_size(args.sample_bytes)}; machine: {platform.platform()}, "
        f"{os.cpu_count()} CPUs; {args.repeats} runs each",
        flush=True,
    )
    prepare_rbprep()
    with tempfile.TemporaryDirectory(prefix="rbprep-bench-compare-") as work_dir:
        work = Path(work_dir)
        named: list[tuple[str, str]] = []
        if args.tokenizers:
            named += [
                (k, str(Path(args.tokenizers) / k))
                for k in ("bpe", "wordpiece")
                if (Path(args.tokenizers) / k / "tokenizer.json").exists()
            ]
        for item in args.tokenizer:
            name, _, path = item.partition("=") if "=" in item else ("", "", item)
            named.append((name or Path(path).name, path))
        if not named:
            print("  training bpe and wordpiece on a 10 MB sample (untimed) ...", flush=True)
            vocab = work / "vocab"
            command = [*rbprep_command(), "train-vocab", *corpus_args, "--out", str(vocab)]
            timed([*command, "--sample-bytes", "10MB", "--quiet"], work / "train.log")
            named = [("bpe", str(vocab / "bpe")), ("wordpiece", str(vocab / "wordpiece"))]
        paths = [path for _, path in named]
        floor_command = [
            sys.executable,
            "-c",
            FLOOR_SCRIPT,
            str(args.sample_bytes),
            str(len(corpus_args)),
            *corpus_args,
            *paths,
        ]
        fast_floor_command = [sys.executable, "-c", FAST_FLOOR_SCRIPT, *floor_command[3:]]
        ours_command = [
            *rbprep_command(),
            "compare-tokenizers",
            *corpus_args,
            "-q",
            "--sample-bytes",
            str(args.sample_bytes),
            "--json",
            str(work / "c.json"),
        ]
        for name, path in named:
            ours_command += ["--tokenizer", f"{name}={path}"]
        timed(floor_command, work / "warm.log")  # warm the page cache, untimed
        floor: list[Run] = []
        fast_floor: list[Run] = []
        ours: list[Run] = []
        for repeat in range(args.repeats):
            floor.append(timed(floor_command, work / "floor.log"))
            fast_floor.append(timed(fast_floor_command, work / "fast-floor.log"))
            ours.append(timed(ours_command, work / "ours.log"))
            print(
                f"  run {repeat + 1}/{args.repeats}: floor {floor[-1].seconds:.1f} s, "
                f"fast floor {fast_floor[-1].seconds:.1f} s, rbprep {ours[-1].seconds:.1f} s",
                flush=True,
            )
        data = json.loads((work / "c.json").read_text())
        fast_encoders = [
            line.split()[-2] for line in (work / "fast-floor.log").read_text().splitlines()
        ]
    floor_median = statistics.median(r.seconds for r in floor)
    ours_median = statistics.median(r.seconds for r in ours)
    ratio = ours_median / floor_median
    fast_floor_median = statistics.median(r.seconds for r in fast_floor)
    fast_ratio = ours_median / fast_floor_median
    text_bytes = data["corpus"]["text_bytes"]
    encode_s = {
        t["name"]: round(t["overall"]["bytes"] / 1e6 / t["overall"]["encode_mb_s"], 2)
        for t in data["tokenizers"]
    }
    print()
    print(
        f"{len(named)} tokenizers ({', '.join(n for n, _ in named)}) on "
        f"{format_size(text_bytes)} of text"
    )
    print(
        f"  floor (read + encode_batch_fast per tokenizer): median {floor_median:.2f} s, "
        f"peak {max(r.peak_rss_mb for r in floor):.0f} MB"
    )
    print(
        f"  fast floor (read + auto's encoder: {', '.join(fast_encoders)}): median "
        f"{fast_floor_median:.2f} s, peak {max(r.peak_rss_mb for r in fast_floor):.0f} MB"
    )
    print(
        f"  rbprep compare-tokenizers:                     median {ours_median:.2f} s, "
        f"peak {max(r.peak_rss_mb for r in ours):.0f} MB"
    )
    print(f"  ratio rbprep / floor: {ratio:.2f}")
    print(
        f"  ratio rbprep / fast floor: {fast_ratio:.2f} (target <= 1.3: "
        f"{'ok' if fast_ratio <= 1.3 else 'OVER'})"
    )
    print(
        f"  inside rbprep: {data['seconds']:.1f} s in all, of which encoding "
        f"{sum(encode_s.values()):.1f} s {encode_s} (all text at encode_mb_s, which is "
        "timed on every 10th text of the batches timed, encoded alone)"
    )
    record = {
        **record_header(),
        "corpus": corpus_args,
        "sample_bytes": args.sample_bytes,
        "text_bytes": text_bytes,
        "tokenizers": named,
        "floor_seconds": [r.seconds for r in floor],
        "rbprep_seconds": [r.seconds for r in ours],
        "floor_median_s": floor_median,
        "rbprep_median_s": ours_median,
        "ratio": round(ratio, 4),
        "fast_floor_seconds": [r.seconds for r in fast_floor],
        "fast_floor_median_s": fast_floor_median,
        "fast_floor_encoders": fast_encoders,
        "fast_ratio": round(fast_ratio, 4),
        "fast_floor_peak_rss_mb": max(r.peak_rss_mb for r in fast_floor),
        "encoders": {t["name"]: t["encoder"] for t in data["tokenizers"]},
        "floor_peak_rss_mb": max(r.peak_rss_mb for r in floor),
        "rbprep_peak_rss_mb": max(r.peak_rss_mb for r in ours),
        "rbprep_encode_seconds": encode_s,
        "rbprep_inner_seconds": data["seconds"],
    }
    append_record(args.results, record)


if __name__ == "__main__":
    main()
