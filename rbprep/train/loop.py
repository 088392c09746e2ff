"""``pretrain``: the training loop over rbprep shards, on CPU or CUDA, one or many ranks.

A step takes ``batch_size`` sequences: ``micro_batch`` per forward pass, accumulated
over ranks and passes. AdamW (fused on CUDA) with RoBERTa's betas, eps and weight decay;
the learning rate is a pure function of the step (linear warmup, then linear decay to
0). Checkpoints hold model, optimizer, step, data cursor and RNG state, written
atomically and loaded with ``weights_only=True`` (no arbitrary unpickling); a resumed
run continues exactly where the saved one was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import torch

from rbprep.dataset.reader import open_dataset
from rbprep.errors import RbprepError
from rbprep.storage import Location, check_output_directory
from rbprep.train import distributed
from rbprep.train.data import Cursor, Loader
from rbprep.train.export import export_hf
from rbprep.train.model import (
    PRESETS,
    ModelConfig,
    RobertaMLM,
    decay_groups,
    flops_per_token,
    preset,
)

logger = logging.getLogger("rbprep")

# Dense bf16 peak FLOP/s by device name (vendor data sheets); MFU is not reported for
# a device not listed here rather than guessed.
PEAK_BF16_FLOPS = {  # matched in the device name, longest name first ("L40S", "L40", "L4")
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 80GB HBM3": 989e12,
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L40": 181e12,
    "L4": 121e12,
    "A10G": 70e12,
    "RTX 4090": 165e12,
}


@dataclass(frozen=True)
class TrainConfig:
    """Parameters of ``pretrain``; CLI options carry the same names."""

    model: str = "base"  # a preset name, or ignored when model_config is given
    model_config: dict[str, Any] | None = None  # from --config config.json
    micro_batch: int = 32
    batch_size: int = 256
    lr: float = 6e-4
    warmup: int | None = None  # steps; default 6% of the run
    steps: int | None = None
    epochs: float | None = None
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float = 1.0  # 0 turns clipping off
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # bf16 on CUDA, fp32 on CPU
    compile: bool = False
    log_every: int = 10
    eval_every: int = 500
    eval_batches: int = 50
    save_every: int = 1000
    stop_at: int | None = None  # stop (with a checkpoint) after this step; --resume goes on

    def check(self) -> None:
        counts = {
            "--micro-batch": self.micro_batch,
            "--batch-size": self.batch_size,
            "--log-every": self.log_every,
            "--eval-every": self.eval_every,
            "--eval-batches": self.eval_batches,
            "--save-every": self.save_every,
            "--steps": self.steps,
            "--stop-at": self.stop_at,
        }
        for option, value in counts.items():
            if value is not None and value < 1:
                raise RbprepError(f"{option} must be at least 1, got {value}")
        if self.epochs is not None and self.epochs <= 0:
            raise RbprepError(f"--epochs must be positive, got {self.epochs}")
        if self.lr <= 0 or (self.warmup is not None and self.warmup < 0):
            raise RbprepError("--lr must be positive and --warmup at least 0")


def lr_at(step: int, peak: float, warmup: int, total: int) -> float:
    """Linear warmup from 0 to ``peak`` over ``warmup`` steps, then linear decay to 0."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


@dataclass
class TrainSummary:
    run: str
    steps: int
    total_steps: int
    final_loss: float | None
    val_loss: float | None
    tokens_per_s: float | None
    mfu: float | None
    seconds: float
    hf_dir: str

    def report(self) -> str:
        mfu = f", MFU {self.mfu:.1%}" if self.mfu is not None else ""
        val = f", validation loss {self.val_loss:.3f}" if self.val_loss is not None else ""
        rate = f", {self.tokens_per_s:,.0f} tokens/s" if self.tokens_per_s else ""
        loss = f"{self.final_loss:.3f}" if self.final_loss is not None else "n/a"
        head = f"Trained to step {self.steps} in {self.seconds:.1f} s: loss {loss}{val}{rate}{mfu}"
        if self.steps < self.total_steps:
            stopped = f"Stopped at step {self.steps} of {self.total_steps}; go on with --resume."
            return f"{head}\n{stopped}"
        return f"{head}\nHugging Face model: {self.hf_dir} (RobertaForMaskedLM.from_pretrained)"


def pretrain(
    data: str | os.PathLike,
    out: str | os.PathLike,
    config: TrainConfig = TrainConfig(),
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    checksums: bool = True,
    log_stream: TextIO | None = None,
) -> TrainSummary:
    """Train a RoBERTa masked-LM on the dataset at ``data``; write the run to ``out``.

    The dataset's shards are checked before the first step (``open_dataset``; the
    sha256 of each unless ``checksums`` is False). Log lines go to ``log_stream``
    (stdout by default; the CLI sends them to stderr under --json), unless ``progress``
    is False.

    Under ``torchrun`` each rank trains on its share of the rows (DDP). Writes
    ``out/metrics.jsonl``, ``out/checkpoints/step-N/`` (trainer state and a Hugging Face
    export) and the final model as a Hugging Face directory ``out/hf/``.
    """
    check_output_directory(out)
    rank, world, device = distributed.setup(config.device)
    try:
        return _pretrain(
            data,
            Path(out),
            config,
            rank,
            world,
            device,
            resume,
            force,
            progress,
            checksums,
            log_stream if log_stream is not None else sys.stdout,
        )
    finally:
        distributed.teardown()


def _pretrain(
    data: str | os.PathLike,
    run: Path,
    config: TrainConfig,
    rank: int,
    world: int,
    device: torch.device,
    resume: bool,
    force: bool,
    progress: bool,
    checksums: bool,
    log_stream: TextIO,
) -> TrainSummary:
    started = time.perf_counter()
    config.check()
    train_set = open_dataset(data, "train", checksums=checksums)
    train_set.tokenizer  # noqa: B018  (a damaged tokenizer.json stops the run before a step)
    dataset = _dataset_identity(train_set)
    valid_set = (
        open_dataset(data, "valid", checksums=checksums) if _has_rows(data, "valid") else None
    )
    model_config = _model_config(config, train_set)
    per_step = config.micro_batch * world
    if config.batch_size % per_step:
        raise RbprepError(
            f"--batch-size {config.batch_size} is not a multiple of --micro-batch x ranks "
            f"({per_step})"
        )
    accumulation = config.batch_size // per_step
    try:
        loader = Loader(train_set, config.micro_batch, config.seed, rank, world, device)
    except ValueError as exc:
        raise RbprepError(f"{data}: {exc}; use a smaller --micro-batch") from exc
    total = _total_steps(config, loader, accumulation)
    warmup = config.warmup if config.warmup is not None else max(1, round(0.06 * total))
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"

    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model = RobertaMLM(model_config).to(device)
    torch.manual_seed(distributed.rank_seed(config.seed, rank))  # dropout: one per rank
    optimizer = torch.optim.AdamW(
        decay_groups(model, config.weight_decay),
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        fused=device.type == "cuda",
    )
    step, cursor = 0, Cursor()
    checkpoints = run / "checkpoints"
    distributed.on_rank_zero(lambda: _prepare_run(run, resume=resume, force=force))
    if resume:
        _check_resumable(run, config, model_config, world, dataset)
        state = _load_latest(checkpoints, device)
        if state is None:
            raise RbprepError(f"{run}: no checkpoint to resume from")
        distributed.on_rank_zero(
            lambda: _drop_metrics_after(run / "metrics.jsonl", int(state["step"]))
        )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, cursor = int(state["step"]), Cursor(*state["cursor"])
        _restore_rng(state, rank, device)
    trained = distributed.wrap(model, device)
    forward = torch.compile(trained) if config.compile else trained
    run_record = {
        "train": asdict(config),
        "model": model_config.as_dict(),
        "data": str(data),
        "world": world,
        "dataset": dataset,
    }
    distributed.on_rank_zero(lambda: _write_atomically(run / "config.json", run_record))
    peak = _peak_flops(device)
    metrics = open(run / "metrics.jsonl", "a") if rank == 0 else None  # noqa: SIM115
    last = {"loss": None, "val_loss": None, "tokens_per_s": None, "mfu": None}
    window = _Window()
    batches = loader(cursor)
    try:
        end = min(total, config.stop_at) if config.stop_at is not None else total
        while step < end:
            lr = lr_at(step, config.lr, warmup, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            micro_batches = [next(batches) for _ in range(accumulation)]
            cursor = micro_batches[-1][0]
            # The step's loss is the mean over all its masked positions, on all ranks:
            # each micro-batch adds its sum over that count, so how a step is split into
            # micro-batches and ranks changes nothing (DDP averages over ranks: x world).
            masked = sum((b["labels"] != -100).sum() for _, b in micro_batches)
            step_masked = distributed.all_sum(masked.float()).clamp(min=1)
            step_loss = torch.zeros((), device=device)
            for micro, (_, batch) in enumerate(micro_batches):
                sync = micro == accumulation - 1
                with distributed.no_sync(trained, sync), _autocast(device, precision):
                    loss_sum = forward(
                        batch["input_ids"], batch["attention_mask"], batch["labels"], "sum"
                    )
                share = loss_sum * world / step_masked
                share.backward()
                step_loss += share.detach()
                window.add(batch)
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            record: dict[str, Any] = {}
            # The last step of this invocation (--stop-at included) always has its loss.
            if step % config.log_every == 0 or step == end:
                loss_value = distributed.all_mean(step_loss).item()
                tokens_per_s, mfu = window.rates(model_config, world, peak, device)
                record = {
                    "step": step,
                    "epoch": cursor.epoch,
                    "loss": loss_value,
                    "lr": lr,
                    "tokens_per_s": tokens_per_s,
                    "mfu": mfu,
                }
                last.update(loss=loss_value, tokens_per_s=tokens_per_s, mfu=mfu)
            if valid_set is not None and (step % config.eval_every == 0 or step == total):
                val_loss = _evaluate(model, valid_set, config, rank, world, device, precision)
                record = {**record, "step": step, "val_loss": val_loss}
                last["val_loss"] = val_loss
                window.restart()  # no credit or blame for evaluation time
            if record and rank == 0:
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                if progress:
                    print(_log_line(record, total), file=log_stream, flush=True)
            if step % config.save_every == 0 or step == end:
                _save(run, model, optimizer, step, cursor, device, train_set.root, dataset)
                window.restart()
    finally:
        batches.close()
        if metrics is not None:
            metrics.close()
    hf_dir = run / "hf"
    if step == total:
        distributed.on_rank_zero(lambda: export_hf(model, hf_dir, train_set.root))
    return TrainSummary(
        run=str(run),
        steps=step,
        total_steps=total,
        final_loss=last["loss"],
        val_loss=last["val_loss"],
        tokens_per_s=last["tokens_per_s"],
        mfu=last["mfu"],
        seconds=round(time.perf_counter() - started, 3),
        hf_dir=str(hf_dir),
    )


def _has_rows(data: str | os.PathLike, split: str) -> bool:
    from rbprep.dataset.reader import read_manifest

    return read_manifest(data)["splits"].get(split, {}).get("rows", 0) > 0


def _model_config(config: TrainConfig, dataset: Any) -> ModelConfig:
    vocab = dataset.manifest["tokenizer"]["vocab_size"]
    pad = dataset.pad_id
    positions = dataset.seq_len + pad + 1
    if config.model_config is None:
        if config.model not in PRESETS:
            raise RbprepError(f"--model must be one of {', '.join(PRESETS)}")
        return preset(config.model, vocab, pad, dataset.seq_len)
    base = ModelConfig(vocab_size=vocab, pad_id=pad, max_positions=positions)
    try:
        chosen = replace(base, **config.model_config)
    except TypeError as exc:
        raise RbprepError(f"--config: {exc}; fields are {list(base.as_dict())}") from exc
    problem = _model_problem(chosen, vocab, pad, positions)
    if problem:
        raise RbprepError(f"--config: {problem}")
    return chosen


def _model_problem(model: ModelConfig, vocab: int, pad: int, positions: int) -> str | None:
    """What makes a --config model unfit for the dataset, or None."""
    if not all(isinstance(n, int) and n > 0 for n in (model.layers, model.heads, model.ffn)):
        return "layers, heads and ffn must be positive integers"
    if not isinstance(model.hidden, int) or model.hidden <= 0 or model.hidden % model.heads:
        return f"hidden ({model.hidden}) must be a positive multiple of heads ({model.heads})"
    if not isinstance(model.dropout, int | float) or not 0 <= model.dropout < 1:
        return "dropout must be a number in [0, 1)"
    if not isinstance(model.vocab_size, int) or model.vocab_size < vocab:
        return f"vocab_size must be at least the dataset's {vocab}"
    if not isinstance(model.max_positions, int) or model.max_positions < positions:
        return f"max_positions must be at least {positions} (seq_len + pad_id + 1)"
    if model.pad_id != pad:
        return f"pad_id must be the dataset's {pad}"
    return None


def _total_steps(config: TrainConfig, loader: Loader, accumulation: int) -> int:
    if config.steps is not None:
        return config.steps
    epochs = config.epochs if config.epochs is not None else 1.0
    return max(1, math.floor(epochs * loader.batches_per_epoch / accumulation))


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return peak_flops(torch.cuda.get_device_name(device))


def peak_flops(device_name: str) -> float | None:
    """The dense bf16 peak (FLOP/s) of the GPU so named, from PEAK_BF16_FLOPS."""
    names = sorted(PEAK_BF16_FLOPS, key=len, reverse=True)
    return next((PEAK_BF16_FLOPS[key] for key in names if key in device_name), None)


class _Window:
    """Real tokens, masked positions and attended length since the last restart."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.started = time.perf_counter()
        self.tokens = 0
        self.squares = 0
        self.masked = 0

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        lengths = batch["attention_mask"].sum(dim=1)
        self.tokens += int(lengths.sum())
        self.squares += int((lengths * lengths).sum())
        self.masked += int((batch["labels"] != -100).sum())

    def rates(
        self, config: ModelConfig, world: int, peak: float | None, device: torch.device
    ) -> tuple[float | None, float | None]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - self.started
        if not self.tokens or seconds <= 0:
            return None, None
        tokens_per_s = self.tokens * world / seconds
        attended = self.squares / self.tokens  # T: mean squared length over mean length
        flops = flops_per_token(config, attended, self.masked / self.tokens)
        mfu = tokens_per_s * flops / (peak * world) if peak else None
        self.restart()
        return round(tokens_per_s, 1), (round(mfu, 4) if mfu is not None else None)


@torch.no_grad()
def _evaluate(
    model: RobertaMLM,
    dataset: Any,
    config: TrainConfig,
    rank: int,
    world: int,
    device: torch.device,
    precision: str,
) -> float:
    """Mean masked-LM loss on valid/ (copy 0, in order), at most eval_batches batches."""
    model.eval()
    rows = torch.arange(len(dataset))[rank::world][: config.eval_batches * config.micro_batch]
    total = torch.zeros(2, device=device)  # (loss sum, masked count)
    for start in range(0, len(rows), config.micro_batch):
        arrays = dataset.batch(rows[start : start + config.micro_batch].numpy(), copy=0)
        batch = {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}
        masked = int((batch["labels"] != -100).sum())
        if masked:
            with _autocast(device, precision):
                loss = model(batch["input_ids"], batch["attention_mask"], batch["labels"])
            total += torch.stack([loss.float() * masked, torch.tensor(masked, device=device)])
    model.train()
    total = distributed.all_sum(total)
    return (total[0] / total[1]).item() if total[1] else float("nan")


def _log_line(record: dict[str, Any], total: int) -> str:
    parts = [f"step {record['step']}/{total}"]
    if "loss" in record:
        parts.append(f"loss {record['loss']:.4f}")
        parts.append(f"lr {record['lr']:.2e}")
        if record["tokens_per_s"]:
            parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
        if record["mfu"] is not None:
            parts.append(f"MFU {record['mfu']:.1%}")
    if "val_loss" in record:
        parts.append(f"val_loss {record['val_loss']:.4f}")
    return "  ".join(parts)


# --- checkpoints ---------------------------------------------------------------------


# What fixes the order of the data and the shape of the model: a resumed run must keep it.
_RESUME_FIXED = ("seed", "micro_batch", "batch_size")


def _dataset_identity(train_set: Any) -> dict[str, Any]:
    """What a resumed run must train on again: the manifest's sha256 decides; the rest
    says what differs when it does."""
    manifest = train_set.manifest
    return {
        "path": str(train_set.root),
        "manifest_sha256": hashlib.sha256(
            train_set.root.child("manifest.json").read_bytes()
        ).hexdigest(),
        "seq_len": train_set.seq_len,
        "tokenizer_sha256": manifest["tokenizer"]["sha256"],
        "rows": manifest["totals"]["rows"],
    }


def _check_resumable(
    run: Path, config: TrainConfig, model: ModelConfig, world: int, dataset: dict[str, Any]
) -> None:
    """Refuse to resume on another dataset, or with options that would change which
    rows come next (the cursor counts micro-batches of this size, from this seed's
    order, over this many ranks) or the model's shape."""
    try:
        saved = json.loads((run / "config.json").read_text())
    except (OSError, ValueError):
        return  # a run from before config.json held these: nothing to compare
    before = saved.get("dataset")
    if before and before.get("manifest_sha256") != dataset["manifest_sha256"]:
        differences = [
            f"{key} {before[key]} -> {dataset[key]}"
            for key in ("seq_len", "rows")
            if before.get(key) != dataset[key]
        ]
        if before.get("tokenizer_sha256") != dataset["tokenizer_sha256"]:
            differences.append("another tokenizer")
        raise RbprepError(
            f"{run}: --resume on another dataset than the run's ({before['path']}): "
            f"{', '.join(differences) or 'its manifest differs'}; resume on that dataset "
            "or start a new run"
        )
    changed = [
        f"--{key.replace('_', '-')} {saved['train'][key]} -> {getattr(config, key)}"
        for key in _RESUME_FIXED
        if key in saved.get("train", {}) and saved["train"][key] != getattr(config, key)
    ]
    if saved.get("model") not in (None, model.as_dict()):
        changed.append("the model (--model / --config)")
    if saved.get("world", world) != world:
        changed.append(f"ranks {saved['world']} -> {world}")
    if changed:
        raise RbprepError(
            f"{run}: --resume with {', '.join(changed)}; resume with the run's options "
            "(RUN/config.json) or start a new run"
        )


def _drop_metrics_after(path: Path, step: int) -> None:
    """Keep the log up to the checkpoint resumed from: later steps are trained again."""
    if not path.exists():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= step
    ]
    path.write_text("".join(line + "\n" for line in kept))


def _prepare_run(run: Path, *, resume: bool, force: bool) -> None:
    if run.exists() and any(run.iterdir()) and not (resume or force):
        raise RbprepError(f"{run}: run directory is not empty; use --resume or --force")
    if force and not resume:
        import shutil

        for name in ("checkpoints", "hf", "metrics.jsonl", "config.json"):
            path = run / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)


def _save(
    run: Path,
    model: RobertaMLM,
    optimizer: torch.optim.Optimizer,
    step: int,
    cursor: Cursor,
    device: torch.device,
    data_root: Location,
    dataset: dict[str, Any],
) -> None:
    """Write checkpoints/step-N/{trainer.pt, Hugging Face files} atomically: rank 0
    writes, with every rank's random state (all ranks call this)."""
    rng = distributed.gather_objects(
        (torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None)
    )
    distributed.on_rank_zero(
        lambda: _write_checkpoint(run, model, optimizer, step, cursor, rng, data_root, dataset)
    )


def _write_checkpoint(
    run: Path,
    model: RobertaMLM,
    optimizer: torch.optim.Optimizer,
    step: int,
    cursor: Cursor,
    rng: list[tuple[torch.Tensor, torch.Tensor | None]],
    data_root: Location,
    dataset: dict[str, Any],
) -> None:
    directory = run / "checkpoints" / f"step-{step:08d}"
    staging = directory.with_name(directory.name + ".tmp")
    staging.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "cursor": [cursor.epoch, cursor.batch],
        # One row per rank: each rank resumes its own random stream.
        "rng_cpu": torch.stack([cpu for cpu, _ in rng]),
        # Which dataset the state belongs to (config.json records it too, and --resume
        # checks that one before a checkpoint is read).
        "dataset_manifest_sha256": dataset["manifest_sha256"],
    }
    if rng[0][1] is not None:
        state["rng_cuda"] = torch.stack([cuda for _, cuda in rng])
    torch.save(state, staging / "trainer.pt")
    export_hf(model, staging, data_root)
    for written in staging.iterdir():  # on disk before the rename makes them the checkpoint
        if written.is_file():
            with written.open("rb") as file:
                os.fsync(file.fileno())
    if directory.exists():
        import shutil

        shutil.rmtree(directory)
    os.replace(staging, directory)
    (run / "checkpoints" / "latest.tmp").write_text(directory.name + "\n")
    os.replace(run / "checkpoints" / "latest.tmp", run / "checkpoints" / "latest")


def _restore_rng(state: dict[str, Any], rank: int, device: torch.device) -> None:
    """Set this rank's random state from a checkpoint (one row per rank; a checkpoint
    from before that holds rank 0's state alone, which then seeds every rank)."""
    cpu = state["rng_cpu"]
    torch.set_rng_state((cpu[rank] if cpu.dim() == 2 else cpu).clone())
    cuda = state.get("rng_cuda")
    if device.type == "cuda" and cuda is not None:
        torch.cuda.set_rng_state((cuda[rank] if cuda.dim() == 2 else cuda).clone(), device)


def _write_atomically(path: Path, record: dict[str, Any]) -> None:
    """``record`` as JSON at ``path``, never half-written (other ranks read it)."""
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(staging, path)


def _load_latest(checkpoints: Path, device: torch.device) -> dict[str, Any] | None:
    """The newest checkpoint that loads whole: the one ``latest`` names, else the step
    directories newest first, each passed over with a warning saying why; None where
    there is none at all, a one-line ``RbprepError`` where none loads."""
    latest = checkpoints / "latest"
    named = [latest.read_text().strip()] if latest.exists() else []
    steps = sorted(
        (p.name for p in checkpoints.glob("step-*") if p.is_dir() and "." not in p.name),
        reverse=True,
    )
    candidates = list(dict.fromkeys([*named, *steps]))
    if not candidates:
        return None
    problems = []
    for name in candidates:
        path = checkpoints / name / "trainer.pt"
        try:
            # weights_only: tensors, numbers, strings and containers only, never objects.
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not {"model", "optimizer", "step", "cursor", "rng_cpu"} <= set(state):
                raise ValueError("keys are missing")
        except Exception as exc:  # torch raises RuntimeError, EOFError, pickle errors ...
            said = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            problems.append(f"{path}: {said}")
            continue
        for problem in problems:
            logger.warning("%s: unreadable, passed over; resuming from %s", problem, name)
        return state
    raise RbprepError(
        f"{checkpoints}: no checkpoint loads ({problems[0]}); start again with --force"
    )
