"""Steps for the trainer from ``rbprep.open_dataset``: rows shuffled per epoch from the
seed, masked as copy ``epoch % dup`` (copy ``epoch`` of a dynamic dataset), split over
ranks and micro-batches, assembled ahead on a thread.

A step is planned one of two ways, both a pure function of (seed, epoch, position):

- ``FixedBatches(micro_batch, accumulation)``: a step takes the next ``micro_batch x
  accumulation x world`` rows of the epoch's order (the global batch), and they are
  dealt to the ranks: micro-batch ``a`` of rank ``r`` is rows ``r, r + world, ...`` of
  the step's ``a``-th slice of ``micro_batch x world``. The cursor counts the epoch's
  steps, and an epoch's last rows that fill no step are dropped: which rows a step takes
  depends only on (seed, epoch, step) and the global batch, never on the number of
  ranks, so a run resumes on another number of ranks with the same data (elastic).
- ``TokenBudget(batch_tokens, micro_batch_tokens)``: a step takes rows in the epoch's
  order until their real tokens would pass ``batch_tokens`` (RoBERTa's variable batch
  for DOC-SENTENCES); the rows left at an epoch's end that cannot pass it are dropped.
  The step's rows are dealt to the ranks longest first, and each rank fills
  micro-batches up to ``micro_batch_tokens`` real tokens; every rank runs as many
  micro-batches as the busiest (splitting its own, or, having too few rows, running a
  row that adds nothing), as DDP needs. The cursor counts the epoch's steps.

Several datasets with one tokenizer (``Mixture``) are read by weight under fixed
batches: sample ``i`` of the run comes from the source furthest below its share of the
samples so far (Megatron's greedy blending, ``kernels.blend``: no random state), and each
source reads its own rows in its own order, epoch after epoch (its masked copy with
them). A step takes the next global batch of samples, so mixtures resume exactly and
elastically as one dataset does; its ``sources`` count each dataset's sequences.

Every step also carries its counts, from the CPU arrays (no device sync): the real
tokens and sequences of the whole step (all ranks: every rank knows the plan), and this
rank's masked positions and attended lengths for the loss and MFU.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from rbprep import kernels
from rbprep.dataset.reader import IGNORE_INDEX, Dataset


@dataclass(frozen=True)
class Cursor:
    """Where the loader is: the epoch, and the steps of it taken (the same on every rank,
    and for any number of ranks)."""

    epoch: int = 0
    batch: int = 0


@dataclass(frozen=True)
class FixedBatches:
    """``accumulation`` micro-batches of ``micro_batch`` rows per rank make a step."""

    micro_batch: int
    accumulation: int = 1


@dataclass(frozen=True)
class TokenBudget:
    """A step of at most ``batch_tokens`` real tokens, micro-batches of at most
    ``micro_batch_tokens`` (each at least one row)."""

    batch_tokens: int
    micro_batch_tokens: int


@dataclass
class MicroBatch:
    """One forward pass: ``tensors`` (input_ids, attention_mask, labels, and
    document_ids when asked for), its masked positions, and its sum of squared attended
    lengths (rows, or documents under document attention; T = squares / tokens)."""

    tensors: dict[str, torch.Tensor]
    masked: int
    squares: int


@dataclass
class Step:
    """A step: the cursor after it, the real tokens and sequences of the whole step (all
    ranks), this rank's real tokens, and this rank's micro-batches (a list, or, from the
    loader's stream, an iterator to take whole before the next step)."""

    cursor: Cursor
    tokens: int
    sequences: int
    local_tokens: int
    passes: int  # this rank's micro-batches (the same on every rank)
    micro_batches: Iterable[MicroBatch]
    sources: list[int] | None = None  # a mixture's: the step's sequences from each dataset


def epoch_order(rows: int, seed: int, epoch: int) -> np.ndarray:
    """The row order of ``epoch``: a permutation that depends only on (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(rows)  # (rows,) int64


class Mixture:
    """Datasets with one tokenizer, seq_len and masking rules, read by ``weights``: row
    ``i`` of the mixture is row ``i - starts[s]`` of dataset ``s`` (the datasets' rows
    one after another), and ``batch(rows, copies)`` takes each row's own copy."""

    def __init__(self, datasets: list[Dataset], weights: list[float]):
        if len(datasets) != len(weights) or not all(w > 0 for w in weights):
            raise ValueError("a mixture needs one positive weight per dataset")
        self.datasets = datasets
        self.weights = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
        sizes = [len(dataset) for dataset in datasets]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        first = datasets[0]
        self.seq_len, self.pad_id, self.sep_id = first.seq_len, first.pad_id, first.sep_id
        self.manifest = first.manifest

    def __len__(self) -> int:
        return int(self.starts[-1])

    def lengths(self) -> np.ndarray:
        """(rows,) int64: every row's real tokens, dataset after dataset."""
        return np.concatenate([dataset.lengths() for dataset in self.datasets])

    def copy_of(self, source: int, epoch: int) -> int:
        """The masked copy dataset ``source`` reads in its epoch ``epoch``."""
        dup = self.datasets[source].dup
        return epoch if dup is None else epoch % dup

    def batch(self, rows: np.ndarray, copies: np.ndarray) -> dict[str, np.ndarray]:
        """``Dataset.batch`` of mixture rows ``rows`` (n,), each masked as its copy in
        ``copies`` (n,): one call per (dataset, copy) among them, rows kept in order."""
        source = np.searchsorted(self.starts, rows, side="right") - 1  # (n,)
        out: dict[str, np.ndarray] = {}
        keys = source * (int(copies.max()) + 1 if len(copies) else 1) + copies
        for key in np.unique(keys):
            at = np.flatnonzero(keys == key)
            s = int(source[at[0]])
            part = self.datasets[s].batch(rows[at] - self.starts[s], copy=int(copies[at[0]]))
            for name, array in part.items():
                if name not in out:
                    out[name] = np.empty((len(rows), *array.shape[1:]), dtype=array.dtype)
                out[name][at] = array
        return out


class Loader:
    """Steps for one rank of ``world``, planned by ``plan`` (see the module's docstring).

    ``documents`` adds ``document_ids`` to each micro-batch and counts attended lengths
    per document (``--attention document``)."""

    def __init__(
        self,
        dataset: Dataset | Mixture,
        plan: FixedBatches | TokenBudget,
        seed: int,
        rank: int = 0,
        world: int = 1,
        device: torch.device | str = "cpu",
        documents: bool = False,
        prefetch: int = 4,
    ):
        self.dataset = dataset
        self.plan = plan
        self.seed = seed
        self.rank = rank
        self.world = world
        self.device = torch.device(device)
        self.documents = documents
        self.prefetch = prefetch
        self._order: tuple[int, np.ndarray] = (-1, np.zeros(0, dtype=np.int64))  # (epoch, rows)
        self._steps: tuple[int, np.ndarray] = (-1, np.zeros(1, dtype=np.int64))  # (epoch, bounds)
        self.mixture = dataset if isinstance(dataset, Mixture) else None
        if self.mixture is not None and not isinstance(plan, FixedBatches):
            raise ValueError("several datasets are read in fixed batches only (not --batch-tokens)")
        # A mixture's samples taken before ``_blended[0]``, per source (kernels.blend).
        self._blended: tuple[int, np.ndarray] | None = None
        self._source_orders: dict[tuple[int, int], np.ndarray] = {}
        if isinstance(plan, FixedBatches):
            self.global_batch = plan.micro_batch * plan.accumulation * world
            self.fixed_steps = len(dataset) // self.global_batch  # per epoch
            if self.fixed_steps == 0:
                raise ValueError(
                    f"{len(dataset)} rows make no step of {self.global_batch} sequences "
                    f"({plan.micro_batch} x {plan.accumulation} x {world} ranks)"
                )
        else:
            longest = dataset.seq_len
            if plan.batch_tokens < longest * world:
                raise ValueError(
                    f"a step of {plan.batch_tokens:,} tokens cannot hold one row of "
                    f"{longest} tokens per rank on {world} ranks"
                )
            if plan.micro_batch_tokens < longest:
                raise ValueError(
                    f"a micro-batch of {plan.micro_batch_tokens:,} tokens cannot hold a row of "
                    f"{longest} tokens"
                )
            if len(self._step_bounds(0)) < 2:
                raise ValueError(
                    f"{len(dataset)} rows hold no step of {plan.batch_tokens:,} tokens"
                )

    @cached_property
    def lengths(self) -> np.ndarray:
        """(rows,) int64: the real tokens of every row."""
        return self.dataset.lengths()

    def steps_per_epoch(self) -> float:
        """Steps in an epoch (under a token budget, epoch 0's; others differ slightly)."""
        if isinstance(self.plan, FixedBatches):
            return self.fixed_steps
        return len(self._step_bounds(0)) - 1

    def copy_of(self, epoch: int) -> int:
        """The masked copy an epoch reads: ``epoch % dup``, or ``epoch`` (dynamic)."""
        return epoch if self.dataset.dup is None else epoch % self.dataset.dup

    def _mixture_rows(self, step: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """A mixture's step ``step``: its rows (global batch,) of the mixture, each row's
        copy, and the sequences from each source. Samples ``step x global batch`` on
        are blended; each source reads the next rows of its own order, epoch after epoch
        (its epoch ``e``'s order: a permutation of its rows from (seed, e, source))."""
        mixture, size = self.mixture, self.global_batch
        assert mixture is not None
        first = step * size
        if self._blended is None or self._blended[0] > first:  # blend from the start
            self._blended = (0, np.zeros(len(mixture.datasets), dtype=np.int64))
        done, counts = self._blended
        if done < first:
            kernels.blend(mixture.weights, counts, done, first - done)
        before = counts.copy()
        choices = kernels.blend(mixture.weights, counts, first, size)
        self._blended = (first + size, counts)
        rows = np.empty(size, dtype=np.int64)
        copies = np.empty(size, dtype=np.int64)
        for source, dataset in enumerate(mixture.datasets):
            at = np.flatnonzero(choices == source)
            positions = before[source] + np.arange(len(at))  # its samples so far
            epochs, within = np.divmod(positions, len(dataset))
            for epoch in np.unique(epochs).tolist():
                here = epochs == epoch
                order = self._source_order(source, epoch)
                rows[at[here]] = order[within[here]] + mixture.starts[source]
                copies[at[here]] = mixture.copy_of(source, epoch)
        return rows, copies, [int(n) for n in counts - before]

    def _source_order(self, source: int, epoch: int) -> np.ndarray:
        key = (source, epoch)
        if key not in self._source_orders:
            if len(self._source_orders) > 8:  # the few epochs a step can span
                self._source_orders.clear()
            rows = len(self.mixture.datasets[source])
            self._source_orders[key] = np.random.default_rng(
                [self.seed, epoch, source + 1]
            ).permutation(rows)
        return self._source_orders[key]

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if self._order[0] != epoch:  # one permutation per epoch, not per step
            self._order = (epoch, epoch_order(len(self.dataset), self.seed, epoch))
        return self._order[1]

    def _step_bounds(self, epoch: int) -> np.ndarray:
        """(steps + 1,) int64: where each step of ``epoch`` starts in its order (token
        budget): rows while their tokens stay within the budget; the rest is dropped."""
        if self._steps[0] != epoch:
            budget = self.plan.batch_tokens
            totals = np.cumsum(self.lengths[self._epoch_order(epoch)])  # (rows,)
            bounds = [0]
            taken = 0  # tokens before the open step
            while len(totals) and totals[-1] - taken > budget:  # another step passes it
                end = int(np.searchsorted(totals, taken + budget, side="right"))
                bounds.append(end)
                taken = int(totals[end - 1])
            self._steps = (epoch, np.asarray(bounds, dtype=np.int64))
        return self._steps[1]

    def next_cursor(self, cursor: Cursor) -> Cursor:
        """The cursor after the step at ``cursor``."""
        if isinstance(self.plan, FixedBatches):
            steps = self.fixed_steps
        else:
            steps = len(self._step_bounds(cursor.epoch)) - 1
        if cursor.batch + 1 < steps:
            return Cursor(cursor.epoch, cursor.batch + 1)
        return Cursor(cursor.epoch + 1, 0)

    def step_at(self, cursor: Cursor) -> Step:
        """The step at ``cursor``, its micro-batches assembled (CPU tensors; pinned when
        feeding a GPU)."""
        step, parts, copies = self._plan(cursor)
        step.micro_batches = [
            self._micro_batch(part, c) for part, c in zip(parts, copies, strict=True)
        ]
        return step

    def _plan(self, cursor: Cursor) -> tuple[Step, list[np.ndarray], list[int]]:
        """The step at ``cursor`` without its micro-batches, and their rows and copies."""
        if isinstance(self.plan, FixedBatches):
            return self._fixed_plan(cursor)
        return self._budget_plan(cursor)

    def _fixed_plan(self, cursor: Cursor) -> tuple[Step, list[np.ndarray], list[Any]]:
        unit = self.plan.micro_batch * self.world  # rows of one micro-batch on every rank
        sources = None
        if self.mixture is not None:
            step_index = cursor.epoch * self.fixed_steps + cursor.batch  # the run's
            rows, row_copies, sources = self._mixture_rows(step_index)
        else:
            start = cursor.batch * self.global_batch
            rows = self._epoch_order(cursor.epoch)[start : start + self.global_batch]
            row_copies = np.full(len(rows), self.copy_of(cursor.epoch), dtype=np.int64)
        mine = [
            np.arange(a * unit, (a + 1) * unit)[self.rank :: self.world]
            for a in range(self.plan.accumulation)
        ]
        parts = [rows[at] for at in mine]
        copies: list[Any] = [row_copies[at] for at in mine]
        if self.mixture is None:
            copies = [int(c[0]) for c in copies]
        local_tokens = sum(int(self.lengths[part].sum()) for part in parts)
        step = Step(
            self.next_cursor(cursor),
            int(self.lengths[rows].sum()),
            len(rows),
            local_tokens,
            len(parts),
            [],
            sources,
        )
        return step, parts, copies

    def _budget_plan(self, cursor: Cursor) -> tuple[Step, list[np.ndarray], list[int]]:
        bounds = self._step_bounds(cursor.epoch)
        rows = self._epoch_order(cursor.epoch)[bounds[cursor.batch] : bounds[cursor.batch + 1]]
        lengths = self.lengths[rows]
        # Dealt longest first (stable, so ties keep the epoch's order): ranks get near
        # equal tokens, and each rank's micro-batches hold rows of like lengths.
        dealt = rows[np.argsort(-lengths, kind="stable")]
        shares = [dealt[rank :: self.world] for rank in range(self.world)]
        plans = [self._micro_plan(share) for share in shares]
        parts = _split_to(plans[self.rank], max(len(plan) for plan in plans))
        step = Step(
            self.next_cursor(cursor),
            int(lengths.sum()),
            len(rows),
            int(self.lengths[shares[self.rank]].sum()),
            len(parts),
            [],
        )
        return step, parts, [self.copy_of(cursor.epoch)] * len(parts)

    def _micro_plan(self, rows: np.ndarray) -> list[np.ndarray]:
        """``rows`` cut in order into micro-batches of at most micro_batch_tokens."""
        totals = np.cumsum(self.lengths[rows])
        parts, start, taken = [], 0, 0
        while start < len(rows):
            end = int(np.searchsorted(totals, taken + self.plan.micro_batch_tokens, "right"))
            end = max(end, start + 1)
            parts.append(rows[start:end])
            taken, start = int(totals[end - 1]), end
        return parts

    def _micro_batch(self, rows: np.ndarray, copy: Any) -> MicroBatch:
        """The micro-batch of ``rows`` masked as ``copy`` (a mixture's: each row's own,
        (rows,)); no rows: one row that adds nothing."""
        if len(rows) == 0:
            return self._idle_micro_batch()
        if self.mixture is not None:
            arrays = self.mixture.batch(rows, copy)
        else:
            arrays = self.dataset.batch(rows, copy=copy)
        lengths = arrays["attention_mask"].sum(axis=1)
        squares = int((lengths * lengths).sum())
        if self.documents:
            document_ids = arrays["document_ids"]
            real = document_ids >= 0
            keys = np.nonzero(real)[0] * self.dataset.seq_len + document_ids[real]
            per_document = np.unique(keys, return_counts=True)[1]
            squares = int((per_document * per_document).sum())
        else:
            del arrays["document_ids"]
        masked = int((arrays["labels"] != IGNORE_INDEX).sum())
        tensors = {name: torch.from_numpy(array) for name, array in arrays.items()}
        if self.device.type == "cuda":
            tensors = {name: t.pin_memory() for name, t in tensors.items()}
        return MicroBatch(tensors, masked, squares)

    def _idle_micro_batch(self) -> MicroBatch:
        """One short row whose labels are all ignored: a rank with no row left for a
        micro-batch runs it, so every rank runs as many passes as DDP expects."""
        seq_len = self.dataset.seq_len
        ids = np.full((1, seq_len), self.dataset.pad_id, dtype=np.int64)
        ids[0, :2] = (self.dataset.manifest.tokenizer.cls_id, self.dataset.sep_id)
        attention = np.zeros((1, seq_len), dtype=np.int64)
        attention[0, :2] = 1
        arrays = {
            "input_ids": ids,
            "attention_mask": attention,
            "labels": np.full((1, seq_len), IGNORE_INDEX, dtype=np.int64),
        }
        if self.documents:
            arrays["document_ids"] = np.where(attention == 1, 0, -1).astype(np.int32)
        return MicroBatch({name: torch.from_numpy(a) for name, a in arrays.items()}, 0, 0)

    def __call__(self, start: Cursor) -> Iterator[Step]:
        """Yield the steps from ``start`` on, their micro-batches assembled ahead on a
        thread (NumPy and Arrow release the GIL, so loading overlaps compute) and moved
        to the device as they are taken; at most ``prefetch`` micro-batches wait."""
        ready: queue.Queue = queue.Queue(self.prefetch)
        stop = threading.Event()

        def produce() -> None:
            cursor = start
            try:
                while not stop.is_set():
                    step, parts, copies = self._plan(cursor)
                    ready.put(step)
                    for part, copy in zip(parts, copies, strict=True):
                        ready.put(self._micro_batch(part, copy))
                    cursor = step.cursor
            except Exception as exc:  # handed to the consumer, which raises it
                ready.put(exc)

        def take() -> object:
            item = ready.get()
            if isinstance(item, Exception):
                raise item
            return item

        def micro_batches(count: int) -> Iterator[MicroBatch]:
            for _ in range(count):
                micro = take()
                micro.tensors = {
                    name: t.to(self.device, non_blocking=True) for name, t in micro.tensors.items()
                }
                yield micro

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        try:
            while True:
                step = take()
                step.micro_batches = micro_batches(step.passes)
                yield step
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    ready.get_nowait()
                except queue.Empty:
                    thread.join(0.01)


def _split_to(parts: list[np.ndarray], count: int) -> list[np.ndarray]:
    """``parts`` made ``count`` micro-batches: the one with the most rows halved until
    there are enough, then empty ones (idle passes) where no part has two rows."""
    parts = list(parts)
    while len(parts) < count:
        largest = max(range(len(parts)), key=lambda i: len(parts[i]))
        if len(parts[largest]) < 2:
            parts.extend([np.zeros(0, dtype=np.int64)] * (count - len(parts)))
            break
        half = len(parts[largest]) // 2
        parts[largest : largest + 1] = [parts[largest][:half], parts[largest][half:]]
    return parts
