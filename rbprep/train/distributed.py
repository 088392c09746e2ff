"""The distributed set-up in one place: one process, or one rank of ``torchrun`` (DDP)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from rbprep.errors import RbprepError

Result = TypeVar("Result")


def setup(device: str) -> tuple[int, int, torch.device]:
    """Return (rank, world size, device); join the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = _device(device)
    if chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return rank, world, chosen


def _device(name: str) -> torch.device:
    """``name`` as a device this process can use, or a one-line ``RbprepError``."""
    try:
        chosen = torch.device(name)
    except RuntimeError:
        chosen = None
    if chosen is None or chosen.type not in ("cpu", "cuda"):
        raise RbprepError(f"--device must be cpu, cuda, cuda:N or auto, got {name!r}")
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                "this torch is built without CUDA"
                if torch.version.cuda is None
                else "no CUDA device is visible"
            )
            raise RbprepError(
                f"--device {name}: {why} (torch {torch.__version__}); use --device cpu or auto"
            )
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise RbprepError(
                f"--device {name}: there are {torch.cuda.device_count()} CUDA devices "
                f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})"
            )
    return chosen


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP when there are several ranks; the model itself otherwise."""
    if not dist.is_initialized():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def no_sync(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Skip the gradient all-reduce on accumulation passes that are not the last."""
    if sync or not isinstance(model, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def all_mean(tensor: torch.Tensor) -> torch.Tensor:
    return all_sum(tensor) / (dist.get_world_size() if dist.is_initialized() else 1)


def rank_seed(seed: int, rank: int) -> int:
    """The torch seed of ``rank``'s random stream (dropout): independent streams per
    rank, each a function of (--seed, rank), so a run is reproducible on any ranks."""
    import numpy as np

    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0])


def on_rank_zero(work: Callable[[], Result]) -> Result | None:
    """Run ``work`` on rank 0 alone, and let every rank know whether it failed.

    Rank 0's files (the run directory, config.json, checkpoints) are written by rank 0
    only; were it to fail there, the other ranks would wait at the next collective until
    they are killed. So rank 0 sends the outcome, and on failure every rank stops with
    the message: rank 0 with its own error, the others with a one-line ``RbprepError``.
    """
    if not dist.is_initialized():
        return work()
    outcome: list[Any] = [None]
    result = None
    failure: BaseException | None = None
    if dist.get_rank() == 0:
        try:
            result = work()
        except Exception as exc:  # every rank must hear of any failure, not only ours
            failure = exc
            outcome[0] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    dist.broadcast_object_list(outcome, src=0)
    if failure is not None:
        raise failure
    if outcome[0] is not None:
        raise RbprepError(f"rank 0 stopped: {outcome[0]}")
    return result


def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (the value alone on one process)."""
    if not dist.is_initialized():
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values
