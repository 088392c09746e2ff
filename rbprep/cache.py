"""Where rbprep keeps what it can make again: the built-in corpus, tokie's tokenizers."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """Return `$RBPREP_CACHE_DIR`, else `$XDG_CACHE_HOME/rbprep`, else `~/.cache/rbprep`."""
    if os.environ.get("RBPREP_CACHE_DIR"):
        return Path(os.environ["RBPREP_CACHE_DIR"]).expanduser()
    xdg_cache_home = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg_cache_home).expanduser() if xdg_cache_home else Path.home() / ".cache"
    return base / "rbprep"
