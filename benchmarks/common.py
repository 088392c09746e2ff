"""Helpers every benchmark shares: the record header of a results line, a warm cache, and
running and timing a child process (``timed``) in one environment (``CHILD_ENV``).

Scripts run as `python benchmarks/NAME.py`, which puts this folder on sys.path.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def git_commit(tree: Path = ROOT) -> str | None:
    """The short commit of the checkout at ``tree`` (the one being measured), or None
    outside git."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=tree,
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


def corpus_files(corpus: list[str]) -> list[str]:
    """The files of ``corpus`` (files and folders, folders walked in sorted order)."""
    files = []
    for path in map(Path, corpus):
        files += (
            [str(p) for p in sorted(path.rglob("*")) if p.is_file()]
            if path.is_dir()
            else [str(path)]
        )
    return files


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line to the results file ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")
    print(f"Appended to {path}")


# --- running and timing a child process ----------------------------------------------

# The environment of every timed child: this checkout's rbprep (whatever is installed),
# no hub, and the tokenizers' threads on (as in a user's shell).
CHILD_ENV = {
    "PYTHONPATH": str(ROOT),
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "true",
}
# bash ../shared/corpus/make_corpus.sh builds it (en/, multi/, ...).
DEV_CORPUS = Path.home() / ".cache" / "rbprep-dev-corpus"


@dataclass
class Run:
    """One timed child process."""

    seconds: float
    peak_rss_mb: float  # the largest single process (os.wait4)
    tree_rss_mb: float  # the child's whole process tree, summed, sampled
    cpu_s: float = 0.0  # the child's CPU time, its waited-for descendants included
    others: float = 0.0  # share of the machine's CPU time others used meanwhile


def _tree_rss_bytes(root: int) -> int:
    """Resident memory of ``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)  # fields[1]: ppid
        rss[pid] = int(fields[21])  # rss, pages
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total * os.sysconf("SC_PAGE_SIZE")


class TreeSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak = pid, interval, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.peak = max(self.peak, _tree_rss_bytes(self.pid))


def busy_cpu_seconds() -> float:
    """CPU seconds all processes have spent (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:]
    ticks = sum(int(fields[i]) for i in (0, 1, 2, 5, 6, 7))
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_for_idle(limit: float, threshold: float = 0.1, window: float = 3.0) -> str:
    """Wait up to ``limit`` s until the machine's CPU is under ``threshold`` busy for a
    ``window``; say how that went."""
    started = time.perf_counter()
    while True:
        before = busy_cpu_seconds()
        time.sleep(window)
        busy = (busy_cpu_seconds() - before) / (window * (os.cpu_count() or 1))
        waited = time.perf_counter() - started
        if busy < threshold:
            return f"idle after {waited:.0f} s" if waited > window + 1 else "idle"
        if waited >= limit:
            return f"still {busy:.0%} busy after {waited:.0f} s"


def brief(name: str, run: Run) -> str:
    return f"{name} {run.seconds:.1f} s (cpu {run.cpu_s:.1f} s, others {run.others:.0%})"


def timed(command: list[str], log: Path, env: dict[str, str] | None = None) -> Run:
    """Run ``command`` to its end, in ``CHILD_ENV`` (and ``env`` over it); return its
    wall time, peak memory and CPU, and the share of the CPU others used meanwhile.

    Output goes to ``log`` (not a pipe, which could fill up while we wait). Exits with
    the log's tail if the command fails.
    """
    env = {**os.environ, **CHILD_ENV, **(env or {})}
    with open(log, "wb") as output:
        cpu_before, started = busy_cpu_seconds(), time.perf_counter()
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        sampler = TreeSampler(process.pid)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        machine_cpu = busy_cpu_seconds() - cpu_before
        sampler.done.set()
        sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        sys.exit(f"failed ({process.returncode}): {' '.join(command[:3])} ...\n{tail}")
    # Linux reports ru_maxrss in KiB.
    peak = round(usage.ru_maxrss / 1024, 1)
    cpu = usage.ru_utime + usage.ru_stime
    others = max(0.0, machine_cpu - cpu) / (seconds * (os.cpu_count() or 1))
    tree = max(peak, round(sampler.peak / 2**20, 1))
    return Run(round(seconds, 3), peak, tree, round(cpu, 2), round(others, 3))


def rbprep_command() -> list[str]:
    script = Path(sys.executable).parent / "rbprep"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rbprep"]
