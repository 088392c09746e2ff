"""``rbprep demo``: the whole pipeline, as far as it exists, on the built-in corpus."""

from __future__ import annotations

import os
from pathlib import Path

from rbprep.corpus import open_corpus
from rbprep.corpus.builtin import builtin_corpus_path
from rbprep.dataset.inspection import inspect
from rbprep.sharding import ShardConfig, shard
from rbprep.sizes import format_size
from rbprep.vocab import VocabConfig, train_vocab

# Sizes the ~4 MB built-in corpus fills, and that keep the demo quick; real corpora
# use the defaults (50,000 and 30,000).
DEMO_VOCAB = VocabConfig(bpe_size=8_000, wordpiece_size=8_000)


def run_demo(out: str | os.PathLike, *, progress: bool = False) -> str:
    """Train both tokenizers on the built-in corpus into ``out/vocab``, shard it with the
    BPE into ``out/data`` (seq 512, 10 masked copies) and return a report.

    What the demo wrote before under ``out`` (vocab/bpe, vocab/wordpiece, data) is replaced.
    """
    out_dir = Path(out)
    corpus_path = builtin_corpus_path()
    corpus = open_corpus([corpus_path])
    vocab = train_vocab(corpus, out_dir / "vocab", DEMO_VOCAB, force=True, progress=progress)
    bpe_dir = out_dir / "vocab" / "bpe"
    data = out_dir / "data"
    sharded = shard(corpus, bpe_dir, data, ShardConfig(), force=True, progress=progress)
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
            "Next:",
            f"  rbprep verify {data}",
            '  python -c "import rbprep; ds = rbprep.open_dataset('
            f"'{data}'); print(ds.batch([0, 1], copy=3))\"",
        ]
    )
