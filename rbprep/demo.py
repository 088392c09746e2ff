"""``rbprep demo``: the whole pipeline, as far as it exists, on the built-in corpus."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rbprep.compare import compare_tokenizers
from rbprep.corpus import open_corpus
from rbprep.corpus.builtin import builtin_corpus_path
from rbprep.dataset.inspection import inspect
from rbprep.errors import RbprepError
from rbprep.sharding import ShardConfig, shard
from rbprep.sizes import format_size
from rbprep.vocab import VocabConfig, train_vocab

# Sizes the ~4 MB built-in corpus fills, and that keep the demo quick; real corpora
# use the defaults (50,000 and 30,000).
DEMO_VOCAB = VocabConfig(bpe_size=8_000, wordpiece_size=8_000)


FILL_MASK_PROMPT = "Return a new list containing all items from the <mask> in ascending order."


def run_demo(out: str | os.PathLike, *, progress: bool = False) -> str:
    """Train both tokenizers on the built-in corpus into ``out/vocab``, shard it with the
    BPE into ``out/data`` (seq 512, 10 masked copies), compare the two tokenizers into
    ``out/compare``, pretrain a tiny RoBERTa for a few CPU steps into ``out/run`` (when
    torch is installed), and return a report.

    What the demo wrote before under ``out`` (vocab, data, compare, run) is replaced.
    """
    out_dir = Path(out)
    corpus_path = builtin_corpus_path()
    corpus = open_corpus([corpus_path])
    vocab = train_vocab(corpus, out_dir / "vocab", DEMO_VOCAB, force=True, progress=progress)
    bpe_dir = out_dir / "vocab" / "bpe"
    data = out_dir / "data"
    sharded = shard(corpus, bpe_dir, data, ShardConfig(), force=True, progress=progress)
    comparison = compare_tokenizers(corpus, [out_dir / "vocab"], progress=progress)
    compare_dir = out_dir / "compare"
    compare_dir.mkdir(parents=True, exist_ok=True)
    try:
        plots = comparison.write_plots(compare_dir / "plots")
    except RbprepError as exc:  # matplotlib is the optional `plots` extra
        plots, plots_note = [], f"no plots: {exc}"
    else:
        plots_note = f"{len(plots)} plots in {compare_dir / 'plots'}"
    comparison.write_json(compare_dir / "compare.json")
    comparison.write_markdown(compare_dir / "compare.md", plots)
    return "\n".join(
        [
            f"Built-in corpus: {corpus_path} ({format_size(corpus.size)})",
            "",
            "1. train-vocab (demo sizes: BPE 8,000, WordPiece 8,000; defaults 50,000/30,000)",
            vocab.report(),
            "",
            f"2. shard --tokenizer {bpe_dir} --dup 10",
            sharded.report(),
            "",
            f"3. inspect {data}",
            inspect(data, rows=1).report(),
            "",
            f"4. compare-tokenizers --tokenizers {out_dir / 'vocab'}",
            comparison.report(),
            f"-> {compare_dir / 'compare.json'}, {compare_dir / 'compare.md'}; {plots_note}",
            "",
            _pretrain_section(data, out_dir / "run", progress),
            "",
            "Next:",
            f"  rbprep verify {data}",
            '  python -c "import rbprep; ds = rbprep.open_dataset('
            f"'{data}'); print(ds.batch([0, 1], copy=3))\"",
        ]
    )


def _pretrain_section(data: Path, run: Path, progress: bool) -> str:
    """A short CPU run of the tiny preset, and a fill-mask example with its result."""
    try:
        import torch
    except ImportError:
        return "5. pretrain: skipped (torch is not installed: pip install 'rbprep[train]')"
    from tokenizers import Tokenizer

    from rbprep.train import load_model
    from rbprep.train.loop import TrainConfig, pretrain

    config = TrainConfig(
        model="tiny",
        micro_batch=8,
        batch_size=16,
        lr=2e-3,
        steps=30,
        device="cpu",
        log_every=10,
        eval_every=30,
        save_every=30,
    )
    summary = pretrain(data, run, config, force=True, progress=progress)
    hf_dir = Path(summary.hf_dir)
    model = load_model(hf_dir)
    tokenizer = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    encoding = tokenizer.encode(FILL_MASK_PROMPT)
    ids = torch.tensor([encoding.ids])
    with torch.no_grad():
        mask_id = json.loads((data / "manifest.json").read_text())["tokenizer"]["mask_id"]
        logits = model(ids, torch.ones_like(ids))[0, encoding.ids.index(mask_id)]
    guesses = [tokenizer.decode([int(i)]).strip() for i in logits.topk(5).indices]
    return "\n".join(
        [
            "5. pretrain --model tiny --device cpu --steps 30 (a smoke run, not a useful model)",
            summary.report(),
            f"fill-mask: {FILL_MASK_PROMPT}",
            f"  top 5: {', '.join(repr(g) for g in guesses)}",
        ]
    )
