"""Helpers every benchmark shares: the record header of a results line, and a warm cache.

Scripts run as `python benchmarks/NAME.py`, which puts this folder on sys.path.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def git_commit() -> str | None:
    """The short commit of the checkout being measured, or None outside git."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() or None


def record_header() -> dict[str, Any]:
    """Date, commit and machine: the first fields of every results line."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
    }


def warm_page_cache(paths: Iterable[str]) -> None:
    """Read every file once, untimed, so the first timed run does not pay for the disk."""
    for path in paths:
        with open(path, "rb") as raw:
            while raw.read(1 << 22):
                pass


def prepare_rbprep() -> None:
    """Compile rbprep's modules to bytecode (.pyc) as pip does when it installs a wheel, and
    its kernels (``rbprep.aot``) where they are not built yet, untimed. An editable install
    under ``PYTHONDONTWRITEBYTECODE`` (set on this project's machines) never writes .pyc
    files, so every timed process would compile the modules changed since their last one
    (25 ms a process, that a user's install does not pay); and a first run after a kernel
    changed would include the kernels' one-time build."""
    import compileall

    from rbprep.aot import compiled_kernels

    compileall.compile_dir(str(ROOT / "rbprep"), quiet=1)
    compiled_kernels()


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line to the results file ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")
    print(f"Appended to {path}")
