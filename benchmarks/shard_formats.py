"""``rbprep shard --format megatron`` and ``--format mds`` against the Arrow format, on
the same corpus and tokenizer.

Each contestant is the same command (``rbprep shard FILES --tokenizer TOK --out TMP -q
--force``, plus any option this script does not know) with ``--format F``; Arrow runs
with its defaults (10 masked copies stored), as a user would. Every run is a whole
process in ``common.CHILD_ENV``, timed by ``common.timed``, with its peak memory. One
untimed run of each comes first (it warms the page cache and tokie's cache); then
``--rounds`` interleaved rounds (arrow, megatron, mds, ...). The figure per format is the
median over rounds of Arrow's seconds / the format's seconds (above 1: faster than
Arrow). It appends one JSON line to ``--results``::

    .venv/bin/python benchmarks/shard_formats.py ~/.cache/rbprep-dev-corpus/en \\
        --tokenizer VOCAB/bpe --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import (
    DEV_CORPUS,
    append_record,
    brief,
    corpus_files,
    prepare_rbprep,
    rbprep_command,
    record_header,
    timed,
    wait_for_idle,
    warm_page_cache,
)

DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "shard_formats.jsonl"
FORMATS = ("arrow", "megatron", "mds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", nargs="*", help="text files or folders (default: dev corpus en/)")
    parser.add_argument("--tokenizer", type=Path, required=True, help="a tokenizer directory")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--wait-idle", type=float, default=60, help="wait for idle CPU (s)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON lines file")
    args, options = parser.parse_known_args()  # options it does not know go to shard
    corpus = args.corpus or [str(DEV_CORPUS / "en")]
    files = corpus_files(corpus)
    text_bytes = sum(Path(f).stat().st_size for f in files)
    prepare_rbprep()
    warm_page_cache(files)
    seconds: dict[str, list[float]] = {name: [] for name in FORMATS}
    peaks: dict[str, list[float]] = {name: [] for name in FORMATS}
    stored: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="rbprep-formats-") as work_dir:
        work = Path(work_dir)

        def run(name: str, record: bool) -> None:
            out = work / f"out-{name}"
            command = [*rbprep_command(), "shard", *corpus, "--tokenizer", str(args.tokenizer)]
            command += ["--out", str(out), "--format", name, "-q", "--force", *options]
            result = timed(command, work / f"{name}.log")
            if record:
                seconds[name].append(result.seconds)
                peaks[name].append(result.peak_rss_mb)
                print(f"  {brief(name, result)}", flush=True)
            else:
                stored[name] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())

        for name in FORMATS:
            run(name, record=False)
        print(wait_for_idle(args.wait_idle), flush=True)
        for _ in range(args.rounds):
            for name in FORMATS:
                run(name, record=True)
    ratios = {
        name: [a / s for a, s in zip(seconds["arrow"], seconds[name], strict=True)]
        for name in FORMATS[1:]
    }
    record = {
        **record_header(),
        "corpus": corpus,
        "text_bytes": text_bytes,
        "tokenizer": str(args.tokenizer),
        "options": options,
        "seconds": seconds,
        "peak_rss_mb": peaks,
        "stored_bytes": stored,
        "round_ratios": {name: [round(r, 4) for r in values] for name, values in ratios.items()},
        "median_ratio": {name: round(statistics.median(v), 4) for name, v in ratios.items()},
    }
    print(f"{text_bytes / 1e6:.1f} MB, {args.rounds} rounds; median seconds and peak MB:")
    for name in FORMATS:
        print(
            f"  {name:<9} {statistics.median(seconds[name]):7.2f} s  "
            f"{statistics.median(peaks[name]):7.0f} MB  {stored[name] / 1e6:8.1f} MB stored"
            + (f"  Arrow / {name}: {record['median_ratio'][name]:.3f}" if name in ratios else "")
        )
    append_record(args.results, record)


if __name__ == "__main__":
    main()
