"""rbprep: prepare data for RoBERTa-style masked-language-model pretraining.

The library behind the ``rbprep`` command; each command is one of these functions:

- ``open_corpus(paths, ...)``: read text files, directories and globs (DESIGN §3).
- ``train_vocab(corpus, out, VocabConfig(...))``: the byte-level BPE and the WordPiece.
- ``shard(corpus, tokenizer, out, ShardConfig(...))``: packed rows with masked copies.
- ``open_dataset(out, split)``: read them back as padded, masked NumPy batches.
- ``torch_dataset(out, split)``: the same as a torch ``Dataset``, for ``Trainer`` (torch).
- ``inspect(out)``, ``verify(out)``: look at a dataset; check it.
- ``pretrain(data, run, TrainConfig(...))``: train a RoBERTa masked-LM on it (torch).

Imports are lazy, so ``import rbprep`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "open_corpus": "rbprep.corpus",
    "ReadStats": "rbprep.corpus",
    "builtin_corpus_path": "rbprep.corpus.builtin",
    "train_vocab": "rbprep.vocab",
    "VocabConfig": "rbprep.vocab",
    "shard": "rbprep.sharding",
    "ShardConfig": "rbprep.sharding",
    "compare_tokenizers": "rbprep.compare",
    "open_dataset": "rbprep.dataset",
    "torch_dataset": "rbprep.dataset.torch_dataset",
    "inspect": "rbprep.dataset.inspection",
    "verify": "rbprep.dataset.verification",
    "pretrain": "rbprep.train.loop",
    "TrainConfig": "rbprep.train.loop",
    "RbprepError": "rbprep.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rbprep' has no attribute {name!r}")
