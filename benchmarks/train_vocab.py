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
  reference to measure one, or ``fast,reference`` to run both, each interleaved with the
  floor; the ratio to the floor is then each BPE trainer's speed-up over tokenizers
  called directly, with the files compared).

Every contestant is a separate process, timed whole (imports and start-up included):
wall time around the child, peak RSS from ``os.wait4``'s rusage of that child. Runs are
interleaved (floor, each rbprep trainer, floor, ...) so all share the machine's noise,
and the result is the median over rounds of the ratio rbprep / floor (target: at most
1.15). Each trainer also runs once on a sample of half the corpus (``--sample-bytes``),
to show how its peak memory depends on the amount of text.

Sanity checks (printed, not asserted): both reach the same vocabulary size; for BPE the
two vocabularies and merge lists are identical; for WordPiece the vocabulary sets are
compared (rbprep renumbers the pieces canonically). The first and last runs of each
contestant are compared too, as a baseline: tokenizers' plain WordPiece trainer breaks
count ties in hash-map order, so its vocabulary changes from run to run
(huggingface/tokenizers#1794); rbprep's should not.

Each run appends one JSON line to ``--results``. Run it from the repository root::

    .venv/bin/python benchmarks/train_vocab.py                  # the dev corpus, or built-in
    .venv/bin/python benchmarks/train_vocab.py corpus/ --repeats 5 --kinds bpe
    .venv/bin/python benchmarks/train_vocab.py corpus/ --kinds bpe --trainer fast,reference

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
class Contestant:
    """All runs of ``rbprep train-vocab --trainer TRAINER`` for one kind."""

    trainer: str
    runs: list[Run] = field(default_factory=list)
    sample: Run | None = None
    vocab: list[int] = field(default_factory=list)  # per run
    same_vocab: str = ""  # against the floor, last runs
    first_vs_last: str = ""  # its first run against its last


@dataclass
class KindResult:
    """All runs of one tokenizer kind: the floor's and each rbprep trainer's, interleaved
    (floor, trainer 1, trainer 2, floor, ...), and what they produced."""

    kind: str
    floor: list[Run] = field(default_factory=list)
    contestants: dict[str, Contestant] = field(default_factory=dict)
    sample_bytes: int = 0
    vocab_floor: list[int] = field(default_factory=list)  # per run
    floor_vs_floor: str = ""  # first vs last floor run: the trainer's own variation

    @property
    def floor_median(self) -> float:
        return statistics.median(r.seconds for r in self.floor)

    def median(self, trainer: str) -> float:
        return statistics.median(r.seconds for r in self.contestants[trainer].runs)

    def ratio(self, trainer: str) -> float:
        """The median of the rounds' rbprep / floor ratios (below 1: rbprep is faster)."""
        runs = self.contestants[trainer].runs
        return statistics.median(
            r.seconds / f.seconds for r, f in zip(runs, self.floor, strict=True)
        )

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "floor_seconds": [r.seconds for r in self.floor],
            "floor_median_s": round(self.floor_median, 3),
            "floor_peak_rss_mb": max(r.peak_rss_mb for r in self.floor),
            "vocab_floor": self.vocab_floor,
            "floor_vs_floor": self.floor_vs_floor,
            "sample_bytes": self.sample_bytes,
            "contestants": {
                trainer: {
                    "seconds": [r.seconds for r in c.runs],
                    "median_s": round(self.median(trainer), 3),
                    "ratio": round(self.ratio(trainer), 4),
                    "speedup": round(1 / self.ratio(trainer), 3),
                    "peak_rss_mb": max(r.peak_rss_mb for r in c.runs),
                    "sample": asdict(c.sample) if c.sample else None,
                    "vocab": c.vocab,
                    "same_vocab": c.same_vocab,
                    "first_vs_last": c.first_vs_last,
                }
                for trainer, c in self.contestants.items()
            },
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
    trainers: list[str],
) -> KindResult:
    # --trainer chooses the BPE's trainer only: the WordPiece has one.
    trainers = trainers if kind == "bpe" else trainers[:1]
    result = KindResult(kind, sample_bytes=sample_bytes)
    result.contestants = {trainer: Contestant(trainer) for trainer in trainers}
    floor_jsons: list[Path] = []
    jsons: dict[str, list[Path]] = {trainer: [] for trainer in trainers}
    for repeat in range(repeats):
        floor_dir = work / f"floor-{kind}-{repeat}"
        result.floor.append(run_floor(kind, corpus, floor_dir))
        floor_jsons.append(floor_dir / "tokenizer.json")
        line = f"  {kind} run {repeat + 1}/{repeats}: floor {result.floor[-1].seconds:.1f} s"
        for trainer, contestant in result.contestants.items():
            out = work / f"rbprep-{kind}-{trainer}-{repeat}"
            contestant.runs.append(run_rbprep(kind, corpus_args, out, None, trainer))
            jsons[trainer].append(out / kind / "tokenizer.json")
            line += f", {trainer} {contestant.runs[-1].seconds:.1f} s"
        print(line, flush=True)
    result.vocab_floor = [vocab_size(path) for path in floor_jsons]
    if repeats > 1:
        result.floor_vs_floor = compare_vocabs(kind, floor_jsons[0], floor_jsons[-1])
    for trainer, contestant in result.contestants.items():
        contestant.vocab = [vocab_size(path) for path in jsons[trainer]]
        contestant.same_vocab = compare_vocabs(kind, floor_jsons[-1], jsons[trainer][-1])
        if repeats > 1:
            contestant.first_vs_last = compare_vocabs(kind, jsons[trainer][0], jsons[trainer][-1])
        sample_dir = work / f"sample-{kind}-{trainer}"
        contestant.sample = run_rbprep(kind, corpus_args, sample_dir, sample_bytes, trainer)
        print(f"  {kind} {trainer} sample run: {contestant.sample.seconds:.1f} s", flush=True)
    return result


def table(result: KindResult, corpus_bytes: int, requested: int) -> str:
    lines = [
        f"{result.kind} (vocab {requested:,} asked, corpus {format_size(corpus_bytes)})",
        f"  {'contestant':<28}{'median s':>10}  {'runs s':<30}{'peak RSS MB':>12}  vocab",
    ]
    rows = [("floor (tokenizers)", result.floor, result.vocab_floor)]
    rows += [(f"rbprep --trainer {t}", c.runs, c.vocab) for t, c in result.contestants.items()]
    for name, runs, sizes in rows:
        times = ", ".join(f"{r.seconds:.1f}" for r in runs)
        median = statistics.median(r.seconds for r in runs)
        peak = max(r.peak_rss_mb for r in runs)
        vocab = f"{min(sizes):,}" + (f"-{max(sizes):,}" if max(sizes) > min(sizes) else "")
        lines.append(f"  {name:<28}{median:>10.2f}  {times:<30}{peak:>12.0f}  {vocab}")
    for trainer, contestant in result.contestants.items():
        ratio = result.ratio(trainer)
        verdict = "ok" if ratio <= TARGET_RATIO else "OVER TARGET"
        lines.append(
            f"  {trainer}: rbprep/floor, median of rounds {ratio:.3f} ({1 / ratio:.2f}x the "
            f"floor's speed; target <= {TARGET_RATIO}: {verdict}); vs floor: "
            f"{contestant.same_vocab}"
        )
        if contestant.sample:
            lines.append(
                f"    memory: peak {max(r.peak_rss_mb for r in contestant.runs):.0f} MB on "
                f"{format_size(corpus_bytes)}, {contestant.sample.peak_rss_mb:.0f} MB on a "
                f"{format_size(result.sample_bytes)} sample ({contestant.sample.seconds:.1f} s)"
            )
        if contestant.first_vs_last:
            lines.append(f"    its run 1 vs run {len(contestant.runs)}: {contestant.first_vs_last}")
    if result.floor_vs_floor:
        lines.append(f"  floor run 1 vs run {len(result.floor)}: {result.floor_vs_floor}")
    return "\n".join(lines)


def append_results(
    path: Path, corpus_args: list[str], corpus_bytes: int, results: list, trainers: list[str]
) -> None:
    record = {
        **record_header(),
        "trainers": trainers,
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
        "--trainer",
        default="auto",
        help="rbprep's --trainer for the BPE, or several, comma-separated, run interleaved "
        "with the floor (e.g. fast,reference): auto, fast, reference (auto)",
    )
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON lines file")
    args = parser.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not args.kinds or set(args.kinds) - set(KINDS):
        parser.error(f"--kinds takes a comma-separated list of {', '.join(KINDS)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    args.trainers = [t.strip() for t in args.trainer.split(",") if t.strip()]
    if not args.trainers or set(args.trainers) - {"auto", "fast", "reference"}:
        parser.error("--trainer takes a comma-separated list of auto, fast, reference")
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
                    kind, corpus_args, corpus, args.repeats, sample_bytes, Path(work), args.trainers
                )
            )
    print()
    for result in results:
        requested = config.bpe_size if result.kind == "bpe" else config.wordpiece_size
        print(table(result, corpus.size, requested))
        print()
    append_results(args.results, corpus_args, corpus.size, results, args.trainers)


if __name__ == "__main__":
    main()
