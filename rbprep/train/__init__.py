"""The companion trainer (torch imported on first use): ``pretrain`` trains,
``load_model`` loads what it trained (a run, a checkpoint or an ``hf/`` export)."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "pretrain": "rbprep.train.loop",
    "TrainConfig": "rbprep.train.loop",
    "load_model": "rbprep.train.export",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rbprep.train' has no attribute {name!r}")
