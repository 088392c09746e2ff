"""Where partition tasks run: here, in a local process pool, or on a Dask cluster.

Executors only choose where a task runs; a task's output depends only on its
arguments (plain configuration and a partition), so every executor produces the same
bytes. Results come back as tasks finish, in any order.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TypeVar

from rbprep.errors import RbprepError

Item = TypeVar("Item")
# Dask reruns a task whose worker died; after this many deaths it gives up on it.
DASK_RETRIES = 3
# Tasks one process runs at once on threads. The tokenizer and the kernels leave the GIL
# free, so a few threads overlap one task's Python work with another's tokenising and
# share one start-up (imports, tokenizer, kernels: most of a second per process);
# the Python work they hold the GIL for (a tenth of a task's time) caps how many pay.
THREADS_PER_PROCESS = 4
_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def run_tasks(
    task: Callable[[Item], Any],
    items: Sequence[Item],
    *,
    workers: int = 1,
    scheduler: str | None = None,
) -> Iterator[tuple[Item, Any]]:
    """Yield (item, task(item)) for every item as tasks finish.

    ``scheduler`` (``tcp://HOST:PORT``) runs them on that Dask cluster; otherwise
    ``workers`` run at once: up to ``THREADS_PER_PROCESS`` on threads of this process,
    more in a pool of processes, one task at a time each, with the cores shared out
    among them. ``task`` must be thread-safe and picklable (a module-level function or
    a ``functools.partial`` of one).
    """
    workers = min(workers, len(items))
    if scheduler:
        yield from _dask(task, items, scheduler)
    elif workers <= 1:
        for item in items:
            yield item, task(item)
    elif workers <= THREADS_PER_PROCESS:
        with ThreadPoolExecutor(workers) as pool:
            yield from _completed(pool, task, items)
    else:
        yield from _pool(task, items, math.ceil(workers / THREADS_PER_PROCESS))


def _completed(pool: Any, task: Callable[[Item], Any], items: Sequence[Item]) -> Iterator:
    futures = {pool.submit(task, item): item for item in items}
    try:
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:
        for future in futures:  # on an error, start nothing more
            future.cancel()


def _pool(task: Callable[[Item], Any], items: Sequence[Item], workers: int) -> Iterator:
    from concurrent.futures import ProcessPoolExecutor  # imports multiprocessing: 6 ms
    from multiprocessing import get_context

    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn, not fork: a forked tokenizers thread pool can deadlock.
    with ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(threads,)
    ) as pool:
        yield from _completed(pool, task, items)


def limit_malloc_arenas(arenas: int) -> bool:
    """Let glibc's malloc keep at most ``arenas`` arenas in this process; True where
    that took effect. Call it before threads start. It does nothing where the user set
    ``MALLOC_ARENA_MAX`` or the C library is not glibc.

    glibc gives each thread that finds the allocator busy an arena of its own, up to 8
    per core, and hands little of an arena's freed memory back to the system. shard's
    partition threads and the two tokenizers' thread pools spread over about ten, and
    its peak RSS was a quarter above what one arena per partition thread gives, at the
    same speed (README, "shard": 430 against 345 MB on 67 MB)."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_ARENA_MAX, arenas) == 1


def _init_worker(threads: int) -> None:
    limit_malloc_arenas(2)  # the process runs one task: its thread and the tokenizers'
    # Each process tokenises with its share of the cores.
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"


def _dask(task: Callable[[Item], Any], items: Sequence[Item], scheduler: str) -> Iterator:
    try:
        from dask.distributed import Client
        from dask.distributed import as_completed as dask_completed
    except ImportError as exc:
        raise RbprepError(
            "--scheduler needs Dask: pip install 'rbprep[dask]' (dask[distributed])"
        ) from exc
    try:
        # How long to keep trying to reach the scheduler (dask's form: "30s", "2min").
        client = Client(scheduler, timeout=os.environ.get("RBPREP_DASK_CONNECT_TIMEOUT", "30s"))
    except OSError as exc:
        raise RbprepError(
            f"no Dask scheduler answers at {scheduler} ({exc}); start one with "
            "`dask scheduler` and workers with `dask worker ADDRESS`"
        ) from exc
    with client:
        futures = {
            client.submit(task, item, pure=False, retries=DASK_RETRIES): item for item in items
        }
        for future in dask_completed(futures):
            try:
                result = future.result()
            except Exception as exc:
                for other in futures:
                    other.cancel()
                if isinstance(exc, RbprepError):
                    raise
                raise RbprepError(f"a task failed on the Dask cluster: {exc!r}") from exc
            yield futures[future], result
