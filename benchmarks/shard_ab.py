"""``rbprep shard`` at this checkout against the same command at another git revision.

Both contestants are the same command (``rbprep shard FILES --tokenizer TOK --out TMP
--dup 10 --valid-fraction 0 -q --force``, plus any option this script does not know),
run by the same interpreter and environment (``common.CHILD_ENV``); only ``PYTHONPATH``
differs: this checkout, or a ``git worktree`` of ``--baseline`` made in a temporary
directory (and removed after). One untimed run of each comes first (it builds the
kernels where the revision's differ, and warms the page cache and tokie's cache); then
``--pairs`` interleaved pairs (baseline, this checkout, ...), each a whole process, timed
by ``common.timed``. The figure is the median over pairs of baseline seconds / this
checkout's seconds (above 1: this checkout is faster), with both medians beside it, and
the shards of the two are compared byte for byte (a change of speed only must not change
them). It appends one JSON line to ``--results``::

    .venv/bin/python benchmarks/shard_ab.py ~/.cache/rbprep-dev-corpus/en \\
        --tokenizer VOCAB/bpe --baseline HEAD~1 --pairs 7
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import (
    DEV_CORPUS,
    ROOT,
    append_record,
    brief,
    corpus_files,
    git_commit,
    prepare_rbprep,
    rbprep_command,
    record_header,
    timed,
    wait_for_idle,
    warm_page_cache,
)

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "shard_ab.jsonl"


def shard_digests(out: Path) -> dict[str, str]:
    """sha256 of each shard of a dataset (the manifest aside: it names its writer)."""
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*.arrow"))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="*", help="text files or folders (default: dev corpus en/)")
    parser.add_argument("--tokenizer", type=Path, required=True, help="a tokenizer directory")
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare with (HEAD)")
    parser.add_argument("--pairs", type=int, default=5, help="interleaved pairs (5)")
    parser.add_argument("--wait-idle", type=float, default=60, help="wait for idle CPU (s)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON lines file")
    args, options = parser.parse_known_args()  # options it does not know go to shard
    corpus = args.corpus or [str(DEV_CORPUS / "en")]
    files = corpus_files(corpus)
    text_bytes = sum(Path(f).stat().st_size for f in files)
    prepare_rbprep()
    warm_page_cache(files)
    with tempfile.TemporaryDirectory(prefix="rbprep-ab-") as work_dir:
        work = Path(work_dir)
        tree = work / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(tree), args.baseline],
            cwd=ROOT,
            check=True,
        )
        try:
            commit = git_commit(tree)
            trees = {"baseline": tree, "this": ROOT}
            seconds: dict[str, list[float]] = {name: [] for name in trees}
            peaks: dict[str, list[float]] = {name: [] for name in trees}
            digests = {}

            def run(name: str, record: bool) -> None:
                out = work / f"out-{name}"
                command = [*rbprep_command(), "shard", *corpus, "--tokenizer", str(args.tokenizer)]
                command += ["--out", str(out), "--dup", "10", "--valid-fraction", "0", "-q"]
                result = timed(
                    [*command, "--force", *options],
                    work / f"{name}.log",
                    {"PYTHONPATH": str(trees[name])},
                )
                if record:
                    seconds[name].append(result.seconds)
                    peaks[name].append(result.peak_rss_mb)
                    print(f"  {brief(name, result)}", flush=True)
                else:
                    digests[name] = shard_digests(out)

            for name in trees:
                run(name, record=False)
            print(wait_for_idle(args.wait_idle), flush=True)
            for _ in range(args.pairs):
                for name in trees:
                    run(name, record=True)
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True
            )
    ratios = [b / t for b, t in zip(seconds["baseline"], seconds["this"], strict=True)]
    record = {
        **record_header(),
        "baseline": commit,
        "corpus": corpus,
        "text_bytes": text_bytes,
        "tokenizer": str(args.tokenizer),
        "options": options,
        "seconds": seconds,
        "peak_rss_mb": peaks,
        "pair_ratios": [round(r, 4) for r in ratios],
        "median_ratio": round(statistics.median(ratios), 4),
        "identical_shards": digests["baseline"] == digests["this"],
    }
    print(
        f"{text_bytes / 1e6:.1f} MB, {args.pairs} pairs: baseline {commit} median "
        f"{statistics.median(seconds['baseline']):.2f} s, this checkout "
        f"{statistics.median(seconds['this']):.2f} s; baseline / this, median of pairs: "
        f"{record['median_ratio']:.3f}; shards identical: {record['identical_shards']}"
    )
    append_record(args.results, record)
    if not record["identical_shards"]:
        sys.exit("the shards differ between the two revisions")


if __name__ == "__main__":
    main()
