"""``torch_dataset``: a dataset made by ``rbprep shard`` as a ``torch.utils.data.Dataset``,
for the Hugging Face ``Trainer`` or any torch loop.

An item is one row as ``Dataset.batch`` gives it, in int64 tensors: ``input_ids`` masked
as the copy of the current epoch, ``attention_mask``, ``labels`` (-100 where not masked);
with ``positions``, also ``position_ids`` (RoBERTa's, restarting at each document of the
row) and ``document_ids``. Epoch ``e`` reads copy ``e % dup`` of a static dataset and copy
``e`` of a dynamic one. ``set_epoch(e)`` moves it on; ``transformers``' ``Trainer``
calls it before each epoch through accelerate in a one-process run (see ``set_epoch``
for where it does not, and ``trainer_callback`` for the fix).

A batch is read as one ``Dataset.batch`` call: torch's ``DataLoader`` hands
``__getitems__`` a whole batch's indices. The rows come back as a list of per-row dicts,
what ``default_data_collator`` (and torch's ``default_collate``) stack.

Worker processes: the epoch lives in a one-element tensor in shared memory, so a
``set_epoch`` in the main process reaches ``DataLoader`` workers, persistent ones too
(they keep the object they were started with). Pickling drops the reader (memory maps
are not pickled); a process that unpickles the object opens its own on first use, one
that forks inherits the open one (read-only maps; the reading kernels are single-threaded).
"""

from __future__ import annotations

import math
import os
from typing import Any

try:
    import torch
except ImportError as exc:  # an extra: the core package does not need torch
    raise ModuleNotFoundError(
        "rbprep.torch_dataset needs PyTorch: pip install 'rbprep[train]'"
    ) from exc

from rbprep.dataset.reader import Agree, Dataset, open_dataset
from rbprep.train.model import position_ids

__all__ = ["TorchDataset", "torch_dataset"]


class TorchDataset(torch.utils.data.Dataset):
    """One split of a dataset made by ``rbprep shard``, one row per item, masked as the
    copy of the current epoch (``torch_dataset`` makes one; see the module's docstring)."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        epoch: int = 0,
        positions: bool = False,
        checksums: bool = True,
        share: tuple[int, int] = (0, 1),
        agree: Agree | None = None,
        cache_bytes: int | None = None,
    ) -> None:
        # Opened here, so that a bad path or split fails now, in one line naming it.
        reader = open_dataset(
            root, split, checksums=checksums, share=share, agree=agree, cache_bytes=cache_bytes
        )
        self.root = str(root)
        self.split = split
        self.positions = positions
        self.masking: str = reader.masking
        self.dup: int | None = reader.dup
        self.seq_len: int = reader.seq_len
        self.pad_id: int = reader.pad_id
        self._rows = len(reader)
        # A process that opens its own reader checks its share again (cheap where the
        # sha256 cache is inherited); ``agree`` stays with the process that was given it:
        # a collective called from a DataLoader worker would hang.
        self._options = {"checksums": checksums, "share": share, "cache_bytes": cache_bytes}
        self._reader: Dataset | None = reader
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.set_epoch(epoch)

    def __len__(self) -> int:
        return self._rows

    def __repr__(self) -> str:
        return (
            f"TorchDataset({self.root!r}, split={self.split!r}, rows={len(self)}, "
            f"masking={self.masking!r}, dup={self.dup}, epoch={self.epoch})"
        )

    @property
    def epoch(self) -> int:
        """The epoch whose copy items are masked as (``set_epoch`` sets it)."""
        return int(self._epoch.item())

    @property
    def copy(self) -> int:
        """The masked copy items come from: ``epoch % dup`` (static) or ``epoch`` (dynamic)."""
        epoch = self.epoch
        return epoch if self.dup is None else epoch % self.dup

    def set_epoch(self, epoch: int) -> None:
        """Serve copy ``epoch`` (``epoch % dup`` of a static dataset) from now on, here and
        in every ``DataLoader`` worker; call it before iterating the epoch.

        accelerate's ``DataLoaderShard.set_epoch``, which the ``Trainer`` calls before each
        epoch, passes the epoch on to the dataset only where its batch sampler does not
        wrap another one with a seedable sampler: it does in a one-process run, but not
        under several processes (``BatchSamplerShard``) nor when resuming mid-epoch
        (``SkipBatchSampler``). Pass ``callbacks=[dataset.trainer_callback()]`` to the
        ``Trainer`` to cover those."""
        epoch = int(epoch)
        if epoch < 0:
            raise ValueError(f"epoch must be at least 0, got {epoch}")
        self._epoch.fill_(epoch)

    def trainer_callback(self) -> Any:
        """A ``transformers.TrainerCallback`` that sets this dataset's epoch as each of the
        ``Trainer``'s epochs begins (also on resume, and under several processes, where
        accelerate does not: see ``set_epoch``)."""
        from transformers import TrainerCallback

        dataset = self

        class SetEpoch(TrainerCallback):
            def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                # ``state.epoch`` is the epochs done so far, a fraction when resumed mid-epoch:
                # its floor is the epoch that begins.
                dataset.set_epoch(math.floor(state.epoch or 0))

        return SetEpoch()

    @property
    def reader(self) -> Dataset:
        """The ``rbprep.open_dataset`` reader, opened in this process on first use."""
        if self._reader is None:
            self._reader = open_dataset(self.root, self.split, **self._options)
        return self._reader

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_reader"] = None  # its memory maps stay in this process
        return state

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        """Rows ``indices`` as one ``Dataset.batch`` call, split into per-row dicts."""
        batch = self.reader.batch(indices, copy=self.copy)
        columns = {
            "input_ids": torch.from_numpy(batch["input_ids"]),  # (batch, seq_len) int64
            "attention_mask": torch.from_numpy(batch["attention_mask"]),
            "labels": torch.from_numpy(batch["labels"]),
        }
        if self.positions:
            document_ids = torch.from_numpy(batch["document_ids"]).long()
            columns["position_ids"] = position_ids(
                columns["attention_mask"], document_ids, self.pad_id
            )
            columns["document_ids"] = document_ids
        rows = {name: column.unbind(0) for name, column in columns.items()}
        return [{name: rows[name][i] for name in rows} for i in range(len(batch["input_ids"]))]


def torch_dataset(
    data: str | os.PathLike,
    split: str = "train",
    *,
    epoch: int = 0,
    positions: bool = False,
    checksums: bool = True,
    share: tuple[int, int] = (0, 1),
    agree: Agree | None = None,
    cache_bytes: int | None = None,
) -> TorchDataset:
    """Split ``split`` of the dataset at ``data`` (made by ``rbprep shard``; a path or a
    URI) as a ``torch.utils.data.Dataset`` of per-row dicts of int64 tensors.

    ``epoch``: the first epoch (``set_epoch`` moves on). ``positions``: items also carry
    ``position_ids`` (RoBERTa's: ``pad_id + 1`` at each document's first token of the
    row, ``pad_id`` on padding) and ``document_ids`` (each position's document within
    its row, from 0; -1 on padding), for attention within documents. ``checksums``,
    ``share``, ``agree`` and ``cache_bytes`` are ``open_dataset``'s. A missing dataset
    or a bad split is an ``RbprepError`` naming the path.

    Example, with ``transformers``::

        train = rbprep.torch_dataset("data")
        trainer = Trainer(model, args, train_dataset=train, data_collator=default_data_collator,
                          callbacks=[train.trainer_callback()])
    """
    return TorchDataset(
        data,
        split,
        epoch=epoch,
        positions=positions,
        checksums=checksums,
        share=share,
        agree=agree,
        cache_bytes=cache_bytes,
    )
