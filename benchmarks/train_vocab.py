"""Benchmark ``rbprep train-vocab`` against Hugging Face ``tokenizers`` called directly.

What is measured, per tokenizer kind (byte-level BPE, WordPiece), on one corpus:

- floor: a small Python script (run with ``python -c``) that reads the corpus files the
  simplest way a user would (open each file, iterate its lines, strip them, skip blank
  ones; ``json.loads`` for ``.jsonl``, ``gzip.open`` for ``.gz``), feeds batches of 1,000
  lines to ``Tokenizer.train_from_iterator`` and saves ``tokenizer.json``. Its tokenizer
  and trainer come from ``rbprep.vocab._new_bpe`` / ``_new_wordpiece`` with the same
  ``VocabConfig``, so the settings cannot drift from rbprep's. (The WordPiece floor
  declares no "##c" pieces: rbprep's extra pass over the text that finds them, to make
  its WordPiece deterministic, is a cost of rbprep and is timed as such.)
- rbprep: ``rbprep train-vocab CORPUS --only KIND --out TMP --force --quiet --trainer
  T`` (``--trainer``: auto by default, which takes gigabpe for the BPE; fast or
  reference to measure one; the ratio to the floor is then the BPE trainer's speed-up
  over tokenizers called directly, with the files compared).

Every contestant is a separate process, timed whole (imports and start-up included):
wall time around the child, peak RSS from ``os.wait4``'s rusage of that child. Runs are
interleaved (floor, rbprep, floor, rbprep, ...) so both share the machine's noise, and
the result is the median of ``--repeats`` runs, reported as the ratio rbprep / floor
(target: at most 1.15). rbprep is also run once on a sample of half the corpus
(``--sample-bytes``), to show how its peak memory depends on the amount of text.

Sanity checks (printed, not asserted): both reach the same vocabulary size; for BPE the
two vocabularies and merge lists are identical; for WordPiece the vocabulary sets are
compared (rbprep renumbers the pieces canonically). The first and last runs of each
contestant are compared too, as a baseline: tokenizers' plain WordPiece trainer breaks
count ties in hash-map order, so its vocabulary changes from run to run
(huggingface/tokenizers#1794); rbprep's should not.

Each run appends one JSON line to ``--results``. Run it from the repository root::

    .venv/bin/python benchmarks/train_vocab.py                  # the dev corpus, or built-in
    .venv/bin/python benchmarks/train_vocab.py corpus/ --repeats 5 --kinds bpe

The dev corpus is ``~/.cache/rbprep-dev-corpus/en``; build it with
``bash ../shared/corpus/make_corpus.sh``. Without it the built-in corpus is used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common import (
    DEV_CORPUS,
    Run,
    append_record,
    rbprep_command,
    record_header,
    timed,
    warm_page_cache,
)

from rbprep.corpus import Corpus, open_corpus
from rbprep.corpus.builtin import builtin_corpus_path
from rbprep.sizes import format_size, parse_size
from rbprep.vocab import KINDS, VocabConfig

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "train_vocab.jsonl"
TARGET_RATIO = 1.15

# The floor: what a user who calls tokenizers directly would write. Arguments: KIND,
# OUT (tokenizer.json), then the corpus files in rbprep's order.
FLOOR_SCRIPT = """\
import gzip, json, sys
from rbprep.vocab import VocabConfig, _new_bpe, _new_wordpiece

kind, out, *paths = sys.argv[1:]
config = VocabConfig(only=kind)
if kind == "bpe":
    tokenizer, trainer = _new_bpe(config)
else:  # rbprep's settings, without the "##c" pre-pass that makes its runs deterministic
    tokenizer, trainer = _new_wordpiece(config, [])

def lines():
    for path in paths:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as file:
            if ".jsonl" in path:
                for record in file:
                    if record.strip():
                        yield from json.loads(record)["text"].split("\\n")
            else:
                yield from file

def batches():
    batch = []
    for line in lines():
        line = line.strip()
        if line:
            batch.append(line)
            if len(batch) == 1000:
                yield batch
                batch = []
    if batch:
        yield batch

tokenizer.train_from_iterator(batches(), trainer)
tokenizer.save(out)
"""


@dataclass
class KindResult:
    """All runs of one tokenizer kind, and what they produced."""

    kind: str
    floor: list[Run] = field(default_factory=list)
    rbprep: list[Run] = field(default_factory=list)
    sample: Run | None = None
    sample_bytes: int = 0
    vocab_floor: list[int] = field(default_factory=list)  # per run
    vocab_rbprep: list[int] = field(default_factory=list)
    same_vocab: str = ""  # floor vs rbprep, last runs
    floor_vs_floor: str = ""  # first vs last floor run: the trainer's own variation
    rbprep_vs_rbprep: str = ""  # first vs last rbprep run

    @property
    def floor_median(self) -> float:
        return statistics.median(r.seconds for r in self.floor)

    @property
    def rbprep_median(self) -> float:
        return statistics.median(r.seconds for r in self.rbprep)

    @property
    def ratio(self) -> float:
        return self.rbprep_median / self.floor_median

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "floor_seconds": [r.seconds for r in self.floor],
            "rbprep_seconds": [r.seconds for r in self.rbprep],
            "floor_median_s": round(self.floor_median, 3),
            "rbprep_median_s": round(self.rbprep_median, 3),
            "ratio": round(self.ratio, 4),
            "floor_peak_rss_mb": max(r.peak_rss_mb for r in self.floor),
            "rbprep_peak_rss_mb": max(r.peak_rss_mb for r in self.rbprep),
            "sample": {"bytes": self.sample_bytes, **asdict(self.sample)} if self.sample else None,
            "vocab_floor": self.vocab_floor,
            "vocab_rbprep": self.vocab_rbprep,
            "same_vocab": self.same_vocab,
            "floor_vs_floor": self.floor_vs_floor,
            "rbprep_vs_rbprep": self.rbprep_vs_rbprep,
        }


def run_floor(kind: str, corpus: Corpus, out: Path) -> Run:
    paths = [file.path for file in corpus.files]
    command = [sys.executable, "-c", FLOOR_SCRIPT, kind, str(out / "tokenizer.json"), *paths]
    out.mkdir(parents=True, exist_ok=True)
    return timed(command, out / "log.txt")


def run_rbprep(
    kind: str, corpus_args: list[str], out: Path, sample_bytes: int | None, trainer: str = "auto"
) -> Run:
    command = [*rbprep_command(), "train-vocab", *corpus_args, "--only", kind]
    command += ["--out", str(out), "--force", "--quiet", "--trainer", trainer]
    if sample_bytes is not None:
        command += ["--sample-bytes", str(sample_bytes)]
    out.mkdir(parents=True, exist_ok=True)
    return timed(command, out.with_suffix(".log"))


# --- comparing what they made ----------------------------------------------------------


def load_model(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))["model"]


def vocab_size(path: Path) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path)).get_vocab_size(with_added_tokens=True)


def compare_vocabs(kind: str, floor_json: Path, rbprep_json: Path) -> str:
    """Say whether the two tokenizers learned the same vocabulary."""
    floor, ours = load_model(floor_json), load_model(rbprep_json)
    if kind == "bpe":
        if floor["vocab"] == ours["vocab"] and floor["merges"] == ours["merges"]:
            return "identical vocab and merges"
        pairs = list(zip(floor["merges"], ours["merges"], strict=False))
        shared = sum(1 for a, b in pairs if a == b)
        first = next((i for i, (a, b) in enumerate(pairs) if a != b), len(pairs))
        return (
            f"DIFFERENT: {len(floor['vocab'].keys() ^ ours['vocab'].keys())} tokens in one "
            f"vocab only; merges agree on {shared:,} positions, first difference at #{first:,}"
        )
    only_floor = floor["vocab"].keys() - ours["vocab"].keys()
    only_ours = ours["vocab"].keys() - floor["vocab"].keys()
    if not only_floor and not only_ours:
        return "same vocabulary set"
    return (
        f"sets differ: {len(only_floor)} pieces only in the first, {len(only_ours)} only in "
        f"the second (e.g. {sorted(only_floor)[:2]} / {sorted(only_ours)[:2]})"
    )


# --- the benchmark ---------------------------------------------------------------------


def default_corpus() -> tuple[list[str], str]:
    if DEV_CORPUS.is_dir():
        return [str(DEV_CORPUS / "en")], "the dev corpus"
    return [str(builtin_corpus_path())], "the built-in corpus (dev corpus not built)"


def check_floor_can_read(corpus: Corpus) -> None:
    for file in corpus.files:
        if file.format == "parquet" or file.compression not in (None, "gzip"):
            sys.exit(f"{file.path}: the floor script reads only .txt/.jsonl, plain or .gz")


def bench_kind(
    kind: str,
    corpus_args: list[str],
    corpus: Corpus,
    repeats: int,
    sample_bytes: int,
    work: Path,
    trainer: str = "auto",
) -> KindResult:
    result = KindResult(kind, sample_bytes=sample_bytes)
    floor_jsons, rbprep_jsons = [], []
    for repeat in range(repeats):
        floor_dir, rbprep_dir = work / f"floor-{kind}-{repeat}", work / f"rbprep-{kind}-{repeat}"
        result.floor.append(run_floor(kind, corpus, floor_dir))
        result.rbprep.append(run_rbprep(kind, corpus_args, rbprep_dir, None, trainer))
        floor_jsons.append(floor_dir / "tokenizer.json")
        rbprep_jsons.append(rbprep_dir / kind / "tokenizer.json")
        print(
            f"  {kind} run {repeat + 1}/{repeats}: floor {result.floor[-1].seconds:.1f} s, "
            f"rbprep {result.rbprep[-1].seconds:.1f} s",
            flush=True,
        )
    result.vocab_floor = [vocab_size(path) for path in floor_jsons]
    result.vocab_rbprep = [vocab_size(path) for path in rbprep_jsons]
    result.same_vocab = compare_vocabs(kind, floor_jsons[-1], rbprep_jsons[-1])
    if repeats > 1:
        result.floor_vs_floor = compare_vocabs(kind, floor_jsons[0], floor_jsons[-1])
        result.rbprep_vs_rbprep = compare_vocabs(kind, rbprep_jsons[0], rbprep_jsons[-1])
    result.sample = run_rbprep(kind, corpus_args, work / f"sample-{kind}", sample_bytes, trainer)
    print(f"  {kind} sample run: {result.sample.seconds:.1f} s", flush=True)
    return result


def table(result: KindResult, corpus_bytes: int, requested: int) -> str:
    runs = [result.floor, result.rbprep]
    medians = [result.floor_median, result.rbprep_median]
    vocabs = [result.vocab_floor, result.vocab_rbprep]
    lines = [
        f"{result.kind} (vocab {requested:,} asked, corpus {format_size(corpus_bytes)})",
        f"  {'contestant':<22}{'median s':>10}  {'runs s':<24}{'peak RSS MB':>12}  vocab",
    ]
    names = ("floor (tokenizers)", "rbprep")
    for name, these, median, sizes in zip(names, runs, medians, vocabs, strict=True):
        times = ", ".join(f"{r.seconds:.1f}" for r in these)
        peak = max(r.peak_rss_mb for r in these)
        vocab = f"{min(sizes):,}" + (f"-{max(sizes):,}" if max(sizes) > min(sizes) else "")
        lines.append(f"  {name:<22}{median:>10.2f}  {times:<24}{peak:>12.0f}  {vocab}")
    verdict = "ok" if result.ratio <= TARGET_RATIO else "OVER TARGET"
    lines.append(f"  ratio rbprep/floor: {result.ratio:.3f} (target <= {TARGET_RATIO}: {verdict})")
    if result.sample:
        lines.append(
            f"  memory: rbprep peak {max(r.peak_rss_mb for r in result.rbprep):.0f} MB on "
            f"{format_size(corpus_bytes)}, {result.sample.peak_rss_mb:.0f} MB on a "
            f"{format_size(result.sample_bytes)} sample ({result.sample.seconds:.1f} s)"
        )
    same_size = "equal" if result.vocab_floor[-1] == result.vocab_rbprep[-1] else "DIFFERENT"
    lines.append(
        f"  sanity: last runs' vocab sizes {same_size}; floor vs rbprep: {result.same_vocab}"
    )
    if result.floor_vs_floor:
        last = len(result.floor)
        lines.append(f"  baseline: floor run 1 vs run {last}: {result.floor_vs_floor}")
        lines.append(f"            rbprep run 1 vs run {last}: {result.rbprep_vs_rbprep}")
    return "\n".join(lines)


def append_results(
    path: Path, corpus_args: list[str], corpus_bytes: int, results: list, trainer: str
) -> None:
    record = {
        **record_header(),
        "trainer": trainer,
        "corpus": corpus_args,
        "corpus_bytes": corpus_bytes,
        "kinds": [r.as_dict() for r in results],
    }
    append_record(path, record)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="*", help="CORPUS paths (default: the dev corpus)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per contestant (3)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="bpe,wordpiece (both)")
    parser.add_argument(
        "--sample-bytes", type=parse_size, help="memory check sample (half the corpus)"
    )
    parser.add_argument(
        "--trainer", default="auto", help="rbprep's --trainer for the BPE: auto, fast, reference"
    )
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON lines file")
    args = parser.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not args.kinds or set(args.kinds) - set(KINDS):
        parser.error(f"--kinds takes a comma-separated list of {', '.join(KINDS)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    corpus_args, which = (args.corpus, "as given") if args.corpus else default_corpus()
    corpus = open_corpus(corpus_args)
    check_floor_can_read(corpus)
    sample_bytes = args.sample_bytes or corpus.size // 2
    print(f"Corpus ({which}): {' '.join(corpus_args)}")
    print(f"  {len(corpus.files)} files, {format_size(corpus.size)}; {args.repeats} runs each")
    print(f"  machine: {platform.platform()}, {os.cpu_count()} CPUs", flush=True)
    warm_page_cache(file.path for file in corpus.files)
    config = VocabConfig()
    results = []
    with tempfile.TemporaryDirectory(prefix="rbprep-bench-") as work:
        for kind in args.kinds:
            results.append(
                bench_kind(
                    kind, corpus_args, corpus, args.repeats, sample_bytes, Path(work), args.trainer
                )
            )
    print()
    for result in results:
        requested = config.bpe_size if result.kind == "bpe" else config.wordpiece_size
        print(table(result, corpus.size, requested))
        print()
    append_results(args.results, corpus_args, corpus.size, results, args.trainer)


if __name__ == "__main__":
    main()
