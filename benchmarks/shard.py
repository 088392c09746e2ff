"""Benchmark ``rbprep shard`` against the tokenizer alone and the Hugging Face pipeline.

The contestants, on the same text files and the same cores, in one run:

- ceiling: a small Python script (``python -c``) that reads the files the plain way (open,
  iterate lines, strip, skip blank ones) and runs ``tokenizers.Tokenizer.from_file(
  TOK/tokenizer.json).encode_batch_fast(lines[i:i + 2000], add_special_tokens=False)``
  over all of it, writing nothing: the ``tokenizers`` ceiling (``encode_special_tokens``
  on, so that text spelling ``<s>`` is text, as in rbprep and tokie).
- tokie ceiling: the same script with tokie 's ``encode_batch_flat`` on the same lines
  and batches, given the tokenizer.json as rbprep gives it (no added tokens, no
  post-processor; ``rbprep.encoding.FastEncoder``): the fast encoder's own ceiling.
  Nothing that tokenises this text with it can be faster.
- rbprep: ``rbprep shard FILES --tokenizer TOK --out TMP --dup 10 --valid-fraction 0
  -q --force --json`` (seq 512): tokenise, pack, mask 10 copies, write Arrow shards. Its
  totals come from ``TMP/manifest.json``, the seconds of each stage (summed over the
  partitions' threads) from ``--json``'s ``stage_seconds``.
- rbprep reference: the same with ``--encoder reference`` (what ``shard`` was before the
  fast encoder), for its memory and for what tokie gains inside rbprep.
- Hugging Face: what a user writes with ``datasets`` + ``transformers`` (``HF_SCRIPT``):
  ``load_dataset("text", data_files=FILES)`` (its cache in a fresh temporary directory),
  a batched ``map`` that tokenises with ``AutoTokenizer.from_pretrained(TOK)`` and
  ``return_special_tokens_mask=True``, ``group_texts`` to 512 exactly as transformers'
  ``examples/pytorch/language-modeling/run_mlm.py`` (concatenate each batch of 1,000
  lines, drop its remainder), then ``DataCollatorForLanguageModeling(tokenizer,
  mlm_probability=0.15, return_tensors="np")`` applied in 10 batched maps (one per
  masked copy), ``concatenate_datasets`` and ``save_to_disk``. Every map uses
  ``num_proc=--hf-num-proc`` (default: all cores, which is faster here than one process).
  The collator's numpy path needs no torch. If torch is installed, the HF scripts hide
  it (a wrapper around ``sys.meta_path`` finds no ``torch``, as if it were not
  installed; importing it would cost each process ~1.6 s and ~190 MB) unless
  ``--hf-with-torch``. The collator's ``seed=`` does not work in ``map``'s worker
  processes (it wants a torch DataLoader worker), so each batch seeds numpy's global
  RNG with (copy, first row index), which the collator uses when it has no seed: copies
  and batches all get different masks.

Every contestant is a separate process, timed whole (imports and start-up included):
wall time around the child and its peak RSS from ``os.wait4`` (the largest single
process of its tree); a sampler in this process also adds up the RSS of the child's whole
process tree every 0.2 s ("tree"), which matters for the multi-process ones. The
machine may be shared: each run also reports its CPU seconds and the share of the
machine's CPU that other processes used meanwhile ("others", from /proc/stat); each
run first waits (up to ``--wait-idle`` s) for an idle CPU, and a run during which
others used more than ``--max-others`` of the CPU is run again (``--retries`` times at
most; the JSON line keeps the discarded runs). Runs are
interleaved (ceiling, rbprep, HF, ceiling, ...) so all share the machine's noise, and
each figure is the median of ``--repeats`` runs. Throughput is text bytes on disk /
median wall seconds; "x ceiling" is the ceiling's median / the contestant's (1 = as fast
as tokenising alone). The targets are judged on the median of the pairs instead (each
round's ceiling seconds / rbprep's seconds; ``pair_shares`` in the JSON line), as this
project measures: a pair shares the machine's state of the moment, where the medians of
two columns may come from different minutes; both figures are printed.

Untimed, around the runs: rbprep's modules are compiled to bytecode first, as pip does
for an installed wheel, and its kernels where not built yet (``common.prepare_rbprep``);
the ceiling is run once more counting its tokens (the content tokens every contestant
should keep); the first HF output is read back to count the content tokens it kept (ids
with the labels put back, specials excluded), to check that the 10 copies hold the same
rows with different masks and that ~15% of content tokens is masked (80/10/10); the HF
script itself records, after ``save_to_disk`` (a negligible cost), how many tokens its
tokenising map made and how many lines were blank. Bytes on disk are apparent file
sizes: rbprep's shards (from the manifest) and its whole output directory (which adds a
copy of ``tokenizer.json``); HF's saved dataset, and separately the ``datasets`` cache
directory it filled on the way.

Targets (issue 12, on 2 cores with a 50K BPE): rbprep at least 3x the ``tokenizers``
ceiling's throughput (goal 5x) and at least 0.7x the tokie ceiling's; peak memory no
higher than rbprep reference's; rbprep well ahead of HF; at most 8 bytes on disk per
content token.

Each run appends one JSON line to ``--results``. Run it from the repository root::

    .venv/bin/python benchmarks/shard.py                  # ~16 MB of the dev corpus
    .venv/bin/python benchmarks/shard.py corpus/*.txt --tokenizer vocab/bpe --skip-hf

Without ``--tokenizer``, a byte-level BPE vocabulary is first trained on the corpus
with ``rbprep train-vocab CORPUS --only bpe`` (timed on its own, not compared). The
default corpus is four files of the dev corpus ``~/.cache/rbprep-dev-corpus/en``
(``bash ../shared/corpus/make_corpus.sh`` builds it), or the built-in corpus without it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common import (
    CHILD_ENV,
    DEV_CORPUS,
    Run,
    append_record,
    brief,
    prepare_rbprep,
    rbprep_command,
    record_header,
    timed,
    wait_for_idle,
    warm_page_cache,
)

from rbprep.corpus import Corpus, open_corpus
from rbprep.corpus.builtin import builtin_corpus_path
from rbprep.encoding.check import CHECK_FRACTION
from rbprep.sizes import format_size

# About 15.5 MB, like the 15.8 MB that ../shared/PEERS.md measured the peers on.
DEV_SUBSET = ("sqlite-doc.txt", "git-doc.txt", "debian-docs.txt", "apache-httpd-doc.txt")
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results" / "shard.jsonl"
SEQ_LEN, DUP, MASK_PROB = 512, 10, 0.15
TARGET_CEILING_SHARE = 3.0  # rbprep's throughput / the tokenizers ceiling's (goal 5)
TARGET_FAST_CEILING_SHARE = 0.7  # rbprep's throughput / the tokie ceiling's
TARGET_BYTES_PER_TOKEN = 8.0

# Both ceilings read the files the plain way: open, iterate lines, strip, skip blank ones.
READ_LINES = """\
lines = []
for path in paths:
    with open(path, encoding="utf-8", errors="replace") as file:
        for line in file:
            line = line.strip()
            if line:
                lines.append(line)
tokens = 0
"""

# The ceiling. Arguments: tokenizer.json, COUNT ("1": print the token count, untimed
# runs only), then the files.
CEILING_SCRIPT = (
    """\
import sys
from tokenizers import Tokenizer

tokenizer_json, count, *paths = sys.argv[1:]
tokenizer = Tokenizer.from_file(tokenizer_json)
tokenizer.encode_special_tokens = True  # text that spells <s> stays text, as in rbprep
"""
    + READ_LINES
    + """\
for i in range(0, len(lines), 2000):
    encodings = tokenizer.encode_batch_fast(lines[i : i + 2000], add_special_tokens=False)
    if count == "1":
        tokens += sum(len(encoding.ids) for encoding in encodings)
if count == "1":
    print(tokens, len(lines))
"""
)

# The fast encoder's ceiling: the same lines and batches through tokie, on the
# tokenizer.json as rbprep.encoding.FastEncoder gives it. Arguments as CEILING_SCRIPT's.
FAST_CEILING_SCRIPT = (
    """\
import json, os, sys, tempfile
import tokie

tokenizer_json, count, *paths = sys.argv[1:]
with open(tokenizer_json, encoding="utf-8") as file:
    config = json.load(file)
config.update(added_tokens=[], post_processor=None, truncation=None, padding=None)
handle, plain = tempfile.mkstemp(suffix=".json")
with os.fdopen(handle, "w", encoding="utf-8") as file:
    file.write(json.dumps(config))
tokenizer = tokie.Tokenizer.from_json(plain)
os.unlink(plain)
"""
    + READ_LINES
    + """\
for i in range(0, len(lines), 2000):
    ids, lengths = tokenizer.encode_batch_flat(lines[i : i + 2000], add_special_tokens=False)
    tokens += len(ids)
if count == "1":
    print(tokens, len(lines))
"""
)

# The Hugging Face pipeline. Arguments: TOK (directory), OUT, CACHE, STATS (json),
# NUM_PROC (0: none), SEQ_LEN, DUP, MASK_PROB, then the files.
# Prepended to the HF scripts unless --hf-with-torch: torch then looks uninstalled to
# transformers and datasets (importlib.util.find_spec gives None; importing it fails).
HIDE_TORCH = """\
import sys

class _WithoutTorch:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "torchgen", "functorch"):
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, name):
        return getattr(self.finder, name)

sys.meta_path[:] = [_WithoutTorch(finder) for finder in sys.meta_path]
"""

HF_SCRIPT = """\
import json, sys
from itertools import chain

import datasets
import numpy as np
import pyarrow.compute as pc
from transformers import AutoTokenizer, DataCollatorForLanguageModeling

tok_dir, out, cache, stats_path, num_proc, seq_len, dup, mask_prob, *files = sys.argv[1:]
num_proc, seq_len, dup, mask_prob = int(num_proc) or None, int(seq_len), int(dup), float(mask_prob)

tokenizer = AutoTokenizer.from_pretrained(tok_dir)
raw = datasets.load_dataset("text", data_files=files, cache_dir=cache, split="train")

def tokenize_function(examples):  # run_mlm.py, without --line_by_line
    return tokenizer(examples["text"], return_special_tokens_mask=True)

tokenized = raw.map(tokenize_function, batched=True, num_proc=num_proc, remove_columns=["text"])

def group_texts(examples):  # run_mlm.py
    concatenated_examples = {k: list(chain(*examples[k])) for k in examples.keys()}
    total_length = len(concatenated_examples[list(examples.keys())[0]])
    total_length = (total_length // seq_len) * seq_len
    return {
        k: [t[i : i + seq_len] for i in range(0, total_length, seq_len)]
        for k, t in concatenated_examples.items()
    }

grouped = tokenized.map(group_texts, batched=True, num_proc=num_proc)

collator = DataCollatorForLanguageModeling(
    tokenizer, mlm_probability=mask_prob, return_tensors="np"
)

def mask(batch, indices, copy):
    np.random.seed([copy, indices[0]])  # the collator's seed= needs a torch DataLoader
    examples = [dict(zip(batch, values)) for values in zip(*batch.values())]
    masked = collator(examples)
    return {k: masked[k] for k in ("input_ids", "attention_mask", "labels")}

copies = [
    grouped.map(
        mask,
        batched=True,
        with_indices=True,
        fn_kwargs={"copy": copy},
        num_proc=num_proc,
        remove_columns=["special_tokens_mask"],
    )
    for copy in range(dup)
]
datasets.concatenate_datasets(copies).save_to_disk(out)

lengths = pc.list_value_length(tokenized.data.column("input_ids"))
with open(stats_path, "w") as stats:
    json.dump(
        {
            "lines": raw.num_rows,
            "blank_lines": pc.sum(pc.equal(raw.data.column("text"), "")).as_py(),
            "tokenized_tokens": pc.sum(lengths).as_py(),
            "grouped_rows": grouped.num_rows,
            "columns": {k: str(v) for k, v in copies[0].features.items()},
            "torch_imported": sys.modules.get("torch") is not None,
        },
        stats,
    )
"""

# Reads the HF output back (untimed). Arguments: TOK, OUT, DUP; prints one JSON object.
HF_CHECK_SCRIPT = """\
import json, sys

import datasets
import numpy as np
from transformers import AutoTokenizer

tok_dir, out, dup = sys.argv[1], sys.argv[2], int(sys.argv[3])
tokenizer = AutoTokenizer.from_pretrained(tok_dir)
table = datasets.load_from_disk(out).data.table
rows = table.num_rows // dup
def flat(name):
    column = table.column(name).combine_chunks()
    return column.flatten().to_numpy().reshape(table.num_rows, -1)
ids, labels = flat("input_ids"), flat("labels")
masked = labels != -100
original = np.where(masked, labels, ids)
specials = np.isin(original, np.array(tokenizer.all_special_ids))
per_copy = [slice(c * rows, (c + 1) * rows) for c in range(dup)]
content = int((~specials[per_copy[0]]).sum())
same_rows = all(np.array_equal(original[per_copy[0]], original[s]) for s in per_copy[1:])
masks = [masked[s] for s in per_copy]
identical_pairs = sum(
    np.array_equal(masks[a], masks[b]) for a in range(dup) for b in range(a + 1, dup)
)
first_batch = masks[0][:1000]
n_masked = int(masked.sum())
print(json.dumps({
    "rows_per_copy": rows,
    "slots_per_copy": int(original[per_copy[0]].size),
    "content_tokens": content,
    "copies_hold_same_rows": bool(same_rows),
    "identical_mask_pairs": int(identical_pairs),
    "mask_overlap_copy0_copy1": float((masks[0] & masks[1]).sum() / max(masks[0].sum(), 1)),
    "batch0_equals_batch1_copy0": bool(
        rows >= 2000 and np.array_equal(first_batch, masks[0][1000:2000])
    ),
    "masked_share_per_copy": [float(m.sum() / content) for m in masks],
    "masked_specials": int((masked & specials).sum()),
    "of_masked_mask_token": float((masked & (ids == tokenizer.mask_token_id)).sum() / n_masked),
    "of_masked_unchanged": float((masked & (ids == labels)).sum() / n_masked),
}))
"""


@dataclass
class Contestant:
    name: str
    runs: list[Run] = field(default_factory=list)
    tokens: int | None = None  # content tokens it produced (the ceiling: counted)
    data_bytes: int | None = None  # its output on disk, per run (the same every run)
    extra: dict = field(default_factory=dict)
    discarded: list[Run] = field(default_factory=list)  # runs others disturbed (retried)

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    def as_dict(self, ceiling_median: float, text_bytes: int) -> dict:
        return {
            "name": self.name,
            "seconds": [r.seconds for r in self.runs],
            "discarded": [asdict(r) for r in self.discarded],
            "cpu_s": [r.cpu_s for r in self.runs],
            "others_cpu_share": [r.others for r in self.runs],
            "median_s": round(self.median, 3),
            "mb_per_s": round(text_bytes / 1e6 / self.median, 3),
            "x_ceiling": round(ceiling_median / self.median, 4),
            "peak_rss_mb": max(r.peak_rss_mb for r in self.runs),
            "tree_rss_mb": max(r.tree_rss_mb for r in self.runs),
            "content_tokens": self.tokens,
            "data_bytes": self.data_bytes,
            "bytes_per_content_token": (
                round(self.data_bytes / self.tokens, 3) if self.data_bytes and self.tokens else None
            ),
            **self.extra,
        }


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- the contestants -------------------------------------------------------------------


def run_ceiling(tokenizer_json: Path, paths: list[str], log: Path, script: str) -> Run:
    return timed([sys.executable, "-c", script, str(tokenizer_json), "0", *paths], log)


def count_ceiling_tokens(tokenizer_json: Path, paths: list[str], script: str) -> tuple[int, int]:
    command = [sys.executable, "-c", script, str(tokenizer_json), "1", *paths]
    done = subprocess.run(
        command, capture_output=True, text=True, check=True, env={**os.environ, **CHILD_ENV}
    )
    tokens, lines = done.stdout.split()
    return int(tokens), int(lines)


def run_rbprep(
    corpus_args: list[str],
    tokenizer: Path,
    out: Path,
    encoder: str,
    check_fraction: float | None = None,
) -> tuple[Run, dict]:
    command = [*rbprep_command(), "shard", *corpus_args, "--tokenizer", str(tokenizer)]
    command += ["--out", str(out), "--seq-len", str(SEQ_LEN), "--dup", str(DUP)]
    command += ["--valid-fraction", "0", "-q", "--force", "--json", "--encoder", encoder]
    if check_fraction is not None:
        command += ["--check-fraction", str(check_fraction)]
    log = out.with_suffix(".log")
    run = timed(command, log)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    summary = json.loads(log.read_text(encoding="utf-8"))
    totals = manifest["totals"]
    return run, {
        "encoder": manifest["encoder"],
        "stage_seconds": summary["extra"]["stage_seconds"],
        "kernels": summary["extra"].get("kernels"),
        "content_tokens": totals["content_tokens"],
        "tokens": totals["tokens"],
        "rows": totals["rows"],
        "slots": totals["slots"],
        "padding_share": totals["padding_share"],
        "shard_bytes": totals["bytes"],
        "bytes_per_token": totals["bytes_per_token"],
        "dir_bytes": dir_bytes(out),
        "masked_share": sum(manifest["splits"][s]["masked_positions"] for s in ("train", "valid"))
        / (DUP * totals["content_tokens"]),
    }


def run_hf(
    tokenizer: Path, paths: list[str], work: Path, num_proc: int, prelude: str
) -> tuple[Run, dict]:
    out, cache, stats = work / "saved", work / "cache", work / "stats.json"
    command = [sys.executable, "-c", prelude + HF_SCRIPT, str(tokenizer), str(out), str(cache)]
    command += [str(stats), str(num_proc), str(SEQ_LEN), str(DUP), str(MASK_PROB), *paths]
    work.mkdir(parents=True)
    run = timed(command, work / "log.txt")
    info = json.loads(stats.read_text(encoding="utf-8"))
    info.update(saved_bytes=dir_bytes(out), cache_bytes=dir_bytes(cache))
    return run, info


def check_hf(tokenizer: Path, work: Path) -> dict:
    script = HIDE_TORCH + HF_CHECK_SCRIPT
    command = [sys.executable, "-c", script, str(tokenizer), str(work / "saved"), str(DUP)]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **CHILD_ENV}, check=False
    )
    if done.returncode != 0:
        sys.exit(f"reading the HF output back failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def collator_needs_torch(prelude: str) -> str:
    """Say whether DataCollatorForLanguageModeling(return_tensors="np") runs here."""
    code = prelude + (
        "import numpy as np\n"
        "from transformers import DataCollatorForLanguageModeling\n"
        "class T:\n"
        "    mask_token = '<mask>'; mask_token_id = 4; pad_token_id = 1\n"
        "    def __len__(self): return 100\n"
        "c = DataCollatorForLanguageModeling(T(), return_tensors='np')\n"
        "c.numpy_mask_tokens(np.full((4, 64), 50), special_tokens_mask=np.zeros((4, 64)))\n"
        "try:\n    import torch\n    print('works, torch imported')\n"
        "except ImportError:\n    print('works without torch')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **CHILD_ENV},
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"DataCollatorForLanguageModeling(return_tensors='np') fails:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


# --- the benchmark ---------------------------------------------------------------------


def default_corpus() -> tuple[list[str], str]:
    subset = [DEV_CORPUS / "en" / name for name in DEV_SUBSET]
    if all(path.is_file() for path in subset):
        return [str(p) for p in subset], f"the dev corpus, {len(subset)} of its files"
    return [str(builtin_corpus_path())], "the built-in corpus (dev corpus not built)"


def check_plain_text(corpus: Corpus) -> None:
    for file in corpus.files:
        if file.format != "txt" or file.compression is not None:
            sys.exit(f"{file.path}: the ceiling and HF scripts read only plain .txt files")


def train_tokenizer(corpus_args: list[str], work: Path) -> tuple[Path, float]:
    command = [*rbprep_command(), "train-vocab", *corpus_args, "--only", "bpe"]
    command += ["--out", str(work / "vocab"), "--force", "--quiet"]
    run = timed(command, work / "train-vocab.log")
    return work / "vocab" / "bpe", run.seconds


def table(contestants: list[Contestant], text_bytes: int) -> str:
    ceiling = contestants[0]
    header = (
        f"  {'contestant':<18}{'median s':>9}  {'runs s':<20}{'MB/s':>7}{'x ceiling':>10}"
        f"{'peak RSS MB':>12}{'tree MB':>9}{'content tokens':>16}{'B/token':>9}"
    )
    lines = [header]
    for c in contestants:
        runs = ", ".join(f"{r.seconds:.1f}" for r in c.runs)
        per_token = f"{c.data_bytes / c.tokens:.2f}" if c.data_bytes and c.tokens else "-"
        tokens = f"{c.tokens:,}" if c.tokens else "-"
        lines.append(
            f"  {c.name:<18}{c.median:>9.2f}  {runs:<20}{text_bytes / 1e6 / c.median:>7.3f}"
            f"{ceiling.median / c.median:>10.3f}{max(r.peak_rss_mb for r in c.runs):>12.0f}"
            f"{max(r.tree_rss_mb for r in c.runs):>9.0f}{tokens:>16}{per_token:>9}"
        )
    return "\n".join(lines)


def details(contestants: dict[str, Contestant], ceiling_lines: int) -> list[str]:
    ceiling, rb = contestants["ceiling"], contestants["rbprep"]
    hf = contestants.get("hf")
    out = [
        f"  ceiling: {ceiling.tokens:,} tokens from {ceiling_lines:,} non-blank lines "
        "(nothing written)",
    ]
    x = rb.extra
    out.append(
        f"  rbprep: {x['rows']:,} rows of {SEQ_LEN}, {x['tokens']:,} tokens with specials, "
        f"padding {x['padding_share']:.1%} of slots; content tokens "
        f"{rb.tokens / ceiling.tokens - 1:+.2%} vs the ceiling (continuation lines get a "
        f"leading space); masked {x['masked_share']:.2%} of content tokens per copy"
    )
    out.append(
        f"          on disk: shards {format_size(x['shard_bytes'])} = "
        f"{x['shard_bytes'] / rb.tokens:.2f} B/content token ({x['bytes_per_token']:.2f} per "
        f"token with specials); whole --out {format_size(x['dir_bytes'])} = "
        f"{x['dir_bytes'] / rb.tokens:.2f} B/content token (adds tokenizer.json)"
    )
    if hf:
        x = hf.extra
        check = x["check"]
        dropped = 1 - hf.tokens / ceiling.tokens
        grouped_content = x["tokenized_tokens"] - 2 * x["lines"]
        out.append(
            f"  HF: {x['lines']:,} lines ({x['blank_lines']:,} blank) -> "
            f"{x['tokenized_tokens']:,} tokens incl. <s></s> per line; {check['rows_per_copy']:,}"
            f" rows of {SEQ_LEN} per copy; columns {x['columns']}"
        )
        other = ""
        if grouped_content != ceiling.tokens:  # it tokenises lines unstripped
            other = f"; it tokenised {grouped_content / ceiling.tokens - 1:+.2%} vs the ceiling"
        out.append(
            f"      content tokens kept {hf.tokens:,}: {dropped:.2%} fewer than the ceiling "
            f"({1 - hf.tokens / grouped_content:.2%} of its {grouped_content:,} dropped by "
            f"group_texts' per-batch remainders{other}); specials fill "
            f"{1 - check['content_tokens'] / check['slots_per_copy']:.1%} of slots"
        )
        shares = check["masked_share_per_copy"]
        out.append(
            f"      checks: copies hold the same rows: {check['copies_hold_same_rows']}; "
            f"identical mask pairs among {DUP} copies: {check['identical_mask_pairs']}; "
            f"copy 0/1 mask overlap {check['mask_overlap_copy0_copy1']:.1%}; masked "
            f"{min(shares):.2%}-{max(shares):.2%} of content tokens per copy, of which "
            f"{check['of_masked_mask_token']:.1%} <mask>, {check['of_masked_unchanged']:.1%} "
            f"unchanged; masked specials: {check['masked_specials']}"
        )
        out.append(
            f"      on disk: saved dataset {format_size(x['saved_bytes'])} = "
            f"{x['saved_bytes'] / hf.tokens:.1f} B/content token; datasets cache besides "
            f"{format_size(x['cache_bytes'])} = {x['cache_bytes'] / hf.tokens:.1f} B/content "
            f"token; masking: the collator's numpy path ({x['collator']})"
        )
    return out


def pair_share(baseline: Contestant, contestant: Contestant) -> float:
    """The median over rounds of baseline seconds / contestant seconds: each round runs
    every contestant once, one after another, so a pair shares the machine's state of
    the moment (this machine drifts by a third within minutes)."""
    return statistics.median(
        b.seconds / c.seconds for b, c in zip(baseline.runs, contestant.runs, strict=True)
    )


def verdicts(contestants: dict[str, Contestant]) -> list[str]:
    ceiling, rb, hf = contestants["ceiling"], contestants["rbprep"], contestants.get("hf")
    fast, reference = contestants["fast_ceiling"], contestants.get("reference")
    share, fast_share = pair_share(ceiling, rb), pair_share(fast, rb)
    per_token = rb.data_bytes / rb.tokens
    rounds = len(rb.runs)
    lines = [
        f"  rbprep throughput / tokenizers ceiling, median of {rounds} interleaved pairs: "
        f"{share:.3f} (ratio of medians {ceiling.median / rb.median:.3f}; target >= "
        f"{TARGET_CEILING_SHARE:g}, goal 5: {'ok' if share >= TARGET_CEILING_SHARE else 'UNDER'})",
        f"  rbprep throughput / tokie ceiling, median of {rounds} interleaved pairs: "
        f"{fast_share:.3f} (ratio of medians {fast.median / rb.median:.3f}; target >= "
        f"{TARGET_FAST_CEILING_SHARE:g}: "
        f"{'ok' if fast_share >= TARGET_FAST_CEILING_SHARE else 'UNDER TARGET'})",
        "  rbprep stage seconds (median run, summed over threads): "
        + ", ".join(f"{k} {v:.2f}" for k, v in median_stages(rb).items())
        + f"; kernels {rb.extra.get('kernels')}",
    ]
    checked = rb.extra.get("encoder", {}).get("check_fraction")
    if checked is not None and checked != CHECK_FRACTION:
        lines.append(
            f"  NOTE: rbprep ran with --check-fraction {checked:g}, not the default "
            f"{CHECK_FRACTION:g}; the targets are for default options"
        )
    if reference:
        peak = max(r.peak_rss_mb for r in rb.runs)
        before = max(r.peak_rss_mb for r in reference.runs)
        lines.append(
            f"  rbprep vs rbprep --encoder reference: {reference.median / rb.median:.2f}x "
            f"faster; peak RSS {peak:.0f} vs {before:.0f} MB "
            f"({'ok' if peak <= before * 1.05 else 'HIGHER'})"
        )
    if hf:
        lines.append(
            f"  rbprep vs HF: {hf.median / rb.median:.1f}x faster, "
            f"{(hf.data_bytes / hf.tokens) / per_token:.0f}x fewer bytes per content token, "
            f"peak RSS {max(r.tree_rss_mb for r in rb.runs):.0f} vs "
            f"{max(r.tree_rss_mb for r in hf.runs):.0f} MB (trees)"
        )
    lines.append(
        f"  rbprep bytes on disk per content token: {per_token:.2f} (target <= "
        f"{TARGET_BYTES_PER_TOKEN:g}: {'ok' if per_token <= TARGET_BYTES_PER_TOKEN else 'OVER'})"
    )
    return lines


def median_stages(contestant: Contestant) -> dict[str, float]:
    """Each stage's seconds over the runs, the median per stage."""
    runs = contestant.extra.get("stage_runs") or []
    return {k: statistics.median(run[k] for run in runs) for k in (runs[0] if runs else {})}


def uncommitted(path: str) -> list[str] | None:
    """Files under ``path`` that differ from the commit (others may be editing them)."""
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--", path],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return [line[3:] for line in done.stdout.splitlines()]


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for name in ("rbprep", "tokenizers", "transformers", "datasets", "numpy", "pyarrow"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "corpus",
        nargs="*",
        help="plain .txt CORPUS paths (default: 4 files of the dev corpus, else the built-in one)",
    )
    parser.add_argument("--tokenizer", type=Path, help="tokenizer directory (default: train one)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per contestant (5)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON lines file")
    parser.add_argument("--skip-hf", action="store_true", help="leave out the HF pipeline")
    parser.add_argument(
        "--skip-reference",
        action="store_true",
        help="leave out rbprep --encoder reference",
    )
    parser.add_argument(
        "--hf-with-torch",
        action="store_true",
        help="let the HF pipeline import torch if installed (default: hide it)",
    )
    parser.add_argument(
        "--hf-num-proc",
        type=int,
        default=os.cpu_count() or 1,
        help="num_proc of the HF maps (all cores; 1: none)",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=60,
        metavar="S",
        help="before each run, wait up to S s for an idle CPU (60; 0: don't)",
    )
    parser.add_argument(
        "--max-others",
        type=float,
        default=0.15,
        metavar="SHARE",
        help="retry a run during which other processes used more of the CPU (0.15)",
    )
    parser.add_argument("--retries", type=int, default=2, help="tries more per run at most (2)")
    parser.add_argument(
        "--check-fraction",
        type=float,
        help="rbprep shard --check-fraction (default: shard's own, 0.02); the targets are "
        "judged at the default",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.tokenizer is not None:
        if args.tokenizer.name == "tokenizer.json":
            args.tokenizer = args.tokenizer.parent
        if not (args.tokenizer / "tokenizer.json").is_file():
            parser.error(f"--tokenizer: no tokenizer.json in {args.tokenizer}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    corpus_args, which = (args.corpus, "as given") if args.corpus else default_corpus()
    corpus = open_corpus(corpus_args)
    check_plain_text(corpus)
    paths = [file.path for file in corpus.files]
    text_bytes = corpus.size
    print(f"Corpus ({which}): {format_size(text_bytes)} in {len(paths)} files")
    for file in corpus.files:
        print(f"  {file.path} ({format_size(os.path.getsize(file.path))})")
    print(f"  machine: {platform.platform()}, {os.cpu_count()} CPUs; {args.repeats} runs each")
    if not args.skip_hf:
        try:
            import datasets  # noqa: F401
        except ImportError:
            sys.exit("the HF pipeline needs `datasets` (pip install datasets), or --skip-hf")
        import importlib.util

        torch_installed = importlib.util.find_spec("torch") is not None
        prelude = "" if args.hf_with_torch else HIDE_TORCH
        collator = collator_needs_torch(prelude)
        if torch_installed:
            how = "left visible (--hf-with-torch)" if args.hf_with_torch else "hidden from it"
            collator += f"; torch is installed here and {how}"
        else:
            collator += " (torch not installed)"
        print(f"  DataCollatorForLanguageModeling(return_tensors='np'): {collator}")
    warm_page_cache(file.path for file in corpus.files)
    prepare_rbprep()
    record: dict = {}
    with tempfile.TemporaryDirectory(prefix="rbprep-bench-shard-") as tmp:
        work = Path(tmp)
        if args.tokenizer is None:
            tokenizer, seconds = train_tokenizer(corpus_args, work)
            record["tokenizer"] = {"trained": True, "train_vocab_seconds": seconds}
            print(f"  tokenizer: trained by rbprep train-vocab --only bpe in {seconds:.1f} s")
        else:
            tokenizer = args.tokenizer.resolve()
            record["tokenizer"] = {"trained": False, "path": str(tokenizer)}
            print(f"  tokenizer: {tokenizer}")
        tokenizer_json = tokenizer / "tokenizer.json"
        ceiling_tokens, ceiling_lines = count_ceiling_tokens(tokenizer_json, paths, CEILING_SCRIPT)
        fast_tokens, _ = count_ceiling_tokens(tokenizer_json, paths, FAST_CEILING_SCRIPT)
        if fast_tokens != ceiling_tokens:
            sys.exit(
                f"tokie gives {fast_tokens:,} tokens, tokenizers {ceiling_tokens:,}: they differ"
            )
        contestants = {
            "ceiling": Contestant("ceiling"),
            "fast_ceiling": Contestant("tokie ceiling"),
            "rbprep": Contestant("rbprep"),
            "reference": Contestant("rbprep reference"),
        }
        contestants["ceiling"].tokens = contestants["fast_ceiling"].tokens = ceiling_tokens
        if args.skip_reference:
            del contestants["reference"]
        if not args.skip_hf:
            contestants["hf"] = Contestant("Hugging Face")
            contestants["hf"].extra["num_proc"] = args.hf_num_proc
            contestants["hf"].extra["collator"] = collator
        print(flush=True)

        def attempt(contestant: Contestant, go: Callable[[], tuple[Run, dict]]) -> str:
            """Run ``go`` until others used at most --max-others of the CPU meanwhile
            (--retries more tries at most); keep the last run, note the discarded."""
            notes = []
            for tries_left in range(args.retries, -1, -1):
                idle = wait_for_idle(args.wait_idle) if args.wait_idle > 0 else ""
                run, info = go()
                if run.others <= args.max_others or tries_left == 0:
                    break
                contestant.discarded.append(run)
                notes.append(f"{run.seconds:.1f} s discarded, others {run.others:.0%}")
            contestant.runs.append(run)
            contestant.extra.update(info)
            if "stage_seconds" in info:
                contestant.extra.setdefault("stage_runs", []).append(info["stage_seconds"])
            if idle.startswith("still"):
                notes.append(f"machine {idle}")
            return brief(contestant.name, run) + (f" [{'; '.join(notes)}]" if notes else "")

        def ceiling_run(script: str, name: str, repeat: int) -> tuple[Run, dict]:
            return run_ceiling(tokenizer_json, paths, work / f"{name}-{repeat}", script), {}

        def rbprep_run(encoder: str, repeat: int) -> tuple[Run, dict]:
            out = work / f"rbprep-{encoder}-{repeat}"
            run, info = run_rbprep(corpus_args, tokenizer, out, encoder, args.check_fraction)
            shutil.rmtree(out)
            return run, info

        def hf_run(repeat: int) -> tuple[Run, dict]:
            out = work / f"hf-{repeat}"
            shutil.rmtree(out, ignore_errors=True)
            run, info = run_hf(tokenizer, paths, out, args.hf_num_proc, prelude)
            if "check" not in contestants["hf"].extra:
                info["check"] = check_hf(tokenizer, out)
            shutil.rmtree(out)
            return run, info

        runners = {
            "ceiling": functools.partial(ceiling_run, CEILING_SCRIPT, "ceiling"),
            "fast_ceiling": functools.partial(ceiling_run, FAST_CEILING_SCRIPT, "fast-ceiling"),
            "rbprep": functools.partial(rbprep_run, "auto"),
            "reference": functools.partial(rbprep_run, "reference"),
            "hf": hf_run,
        }
        for repeat in range(args.repeats):
            said = [
                attempt(contestant, functools.partial(runners[key], repeat))
                for key, contestant in contestants.items()
            ]
            print(f"  run {repeat + 1}/{args.repeats}: {', '.join(said)}", flush=True)
        hf = contestants.get("hf")
        for key in ("rbprep", "reference"):
            if key in contestants:
                c = contestants[key]
                c.tokens, c.data_bytes = c.extra["content_tokens"], c.extra["shard_bytes"]
        if hf:
            hf.tokens, hf.data_bytes = hf.extra["check"]["content_tokens"], hf.extra["saved_bytes"]

    ordered = list(contestants.values())
    print()
    print(
        f"shard, seq {SEQ_LEN}, {DUP} masked copies, {format_size(text_bytes)} of text "
        f"(medians of {args.repeats}; tree: the process tree's RSS summed, sampled; B/token: "
        "bytes on disk per content token)"
    )
    print(table(ordered, text_bytes))
    for line in details(contestants, ceiling_lines):
        print(line)
    for line in verdicts(contestants):
        print(line)

    ceiling_median = contestants["ceiling"].median
    record = {
        **record_header(),
        "rbprep_uncommitted": uncommitted("rbprep"),
        "versions": package_versions(),
        "corpus": corpus_args,
        "corpus_bytes": text_bytes,
        "ceiling_lines": ceiling_lines,
        "seq_len": SEQ_LEN,
        "dup": DUP,
        "max_others": args.max_others,
        **record,
        "pair_shares": {  # rbprep's throughput / each ceiling's, median of the pairs
            "ceiling": round(pair_share(contestants["ceiling"], contestants["rbprep"]), 4),
            "tokie_ceiling": round(
                pair_share(contestants["fast_ceiling"], contestants["rbprep"]), 4
            ),
        },
        "contestants": [c.as_dict(ceiling_median, text_bytes) for c in ordered],
    }
    append_record(args.results, record)


if __name__ == "__main__":
    main()
