"""Batches for the trainer from ``rbprep.open_dataset``: shuffled per epoch from the seed,
copy ``epoch % dup`` of the masks (copy ``epoch`` of a dynamic dataset), rows sharded
across ranks, loaded ahead on a thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from rbprep.dataset.reader import Dataset


@dataclass(frozen=True)
class Cursor:
    """Where the loader is: the epoch and the micro-batches of it already taken."""

    epoch: int = 0
    batch: int = 0


def epoch_order(rows: int, seed: int, epoch: int) -> np.ndarray:
    """The row order of ``epoch``: a permutation that depends only on (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(rows)  # (rows,) int64


class Loader:
    """Micro-batches of ``micro_batch`` rows for one rank of ``world``.

    Each epoch shuffles all rows (the same order on every rank), gives rank ``r`` the
    rows ``r, r + world, ...`` of it, and masks them as copy ``epoch % dup``, so every
    sequence is seen with a different mask in each of ``dup`` epochs; a dynamic dataset
    (``dup`` None) computes copy ``epoch``, a new mask every epoch. A rank's
    incomplete last batch is dropped, so all ranks take the same number of steps.
    """

    def __init__(
        self,
        dataset: Dataset,
        micro_batch: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        device: torch.device | str = "cpu",
        prefetch: int = 4,
    ):
        self.dataset = dataset
        self.micro_batch = micro_batch
        self.seed = seed
        self.rank = rank
        self.world = world
        self.device = torch.device(device)
        self.prefetch = prefetch
        self._order: tuple[int, np.ndarray] = (-1, np.zeros(0, dtype=np.int64))  # (epoch, rows)
        self.batches_per_epoch = len(dataset) // world // micro_batch
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{len(dataset)} rows make no micro-batch of {micro_batch} on {world} ranks"
            )

    def batch_at(self, cursor: Cursor) -> dict[str, torch.Tensor]:
        """The micro-batch at ``cursor`` (CPU tensors; pinned when feeding a GPU)."""
        if self._order[0] != cursor.epoch:  # one permutation per epoch, not per batch
            order = epoch_order(len(self.dataset), self.seed, cursor.epoch)
            self._order = (cursor.epoch, order[self.rank :: self.world])
        order = self._order[1]
        start = cursor.batch * self.micro_batch
        dup = self.dataset.dup
        copy = cursor.epoch if dup is None else cursor.epoch % dup
        arrays = self.dataset.batch(order[start : start + self.micro_batch], copy=copy)
        tensors = {name: torch.from_numpy(array) for name, array in arrays.items()}
        if self.device.type == "cuda":
            tensors = {name: t.pin_memory() for name, t in tensors.items()}
        return tensors

    def next_cursor(self, cursor: Cursor) -> Cursor:
        if cursor.batch + 1 < self.batches_per_epoch:
            return Cursor(cursor.epoch, cursor.batch + 1)
        return Cursor(cursor.epoch + 1, 0)

    def __call__(self, start: Cursor) -> Iterator[tuple[Cursor, dict[str, torch.Tensor]]]:
        """Yield (cursor after the batch, batch) from ``start`` on, loading ahead on a
        thread (NumPy and Arrow release the GIL) so loading overlaps compute."""
        ready: queue.Queue = queue.Queue(self.prefetch)
        stop = threading.Event()

        def produce() -> None:
            cursor = start
            try:
                while not stop.is_set():
                    batch = self.batch_at(cursor)
                    cursor = self.next_cursor(cursor)
                    ready.put((cursor, batch))
            except Exception as exc:  # handed to the consumer, which raises it
                ready.put(exc)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        try:
            while True:
                item = ready.get()
                if isinstance(item, Exception):
                    raise item
                cursor, batch = item
                yield (
                    cursor,
                    {name: t.to(self.device, non_blocking=True) for name, t in batch.items()},
                )
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    ready.get_nowait()
                except queue.Empty:
                    thread.join(0.01)
