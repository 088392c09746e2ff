"""``pretrain``: the training loop over rbprep shards, on CPU or CUDA, one or many ranks.

Laid out as it runs: ``_setup`` (dataset, model, optimizer, loader, resume), ``_step``
(one optimizer step over its micro-batches), ``_evaluate`` (validation loss) and
``_save`` (checkpoints), tied together by ``_train``.

A step takes ``batch_size`` sequences (``micro_batch`` per forward pass, accumulated
over ranks and passes) or, with ``batch_tokens``, rows until their real tokens would pass
it (micro-batches of at most ``micro_batch_tokens``). AdamW (fused on CUDA) with
RoBERTa's betas, eps and weight decay; the learning rate is a pure function of the step
(linear warmup, then linear decay to 0). Checkpoints hold model, optimizer, step, data
cursor and RNG state, written atomically and loaded with ``weights_only=True`` (no
arbitrary unpickling); a resumed run continues exactly where the saved one was.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import torch

from rbprep.dataset.reader import Dataset, open_dataset
from rbprep.errors import RbprepError
from rbprep.options import comma_floats, opt, read_json
from rbprep.storage import Location, check_output_directory
from rbprep.train import distributed
from rbprep.train.data import Cursor, FixedBatches, Loader, Mixture, Step, TokenBudget
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

ATTENTIONS = ("row", "document")


@dataclass(frozen=True)
class Recipe:
    """A batch recipe: sequences per step, steps, peak learning rate, warmup steps."""

    batch_size: int
    steps: int
    lr: float
    warmup: int


# RoBERTa (Liu et al. 2019), Table 3: batch sizes trained on the same number of
# sequences. The paper gives no warmup for these rows: 10K is BERT's (for 1M steps) and
# fairseq's RoBERTa-base recipe's (for 125K); for 31K steps rbprep takes 2.5K (8%).
RECIPES = {
    "bsz256": Recipe(batch_size=256, steps=1_000_000, lr=1e-4, warmup=10_000),
    "bsz2k": Recipe(batch_size=2048, steps=125_000, lr=7e-4, warmup=10_000),
    "bsz8k": Recipe(batch_size=8192, steps=31_000, lr=1e-3, warmup=2_500),
}
DEFAULT_BATCH_SIZE = 256
DEFAULT_LR = 6e-4


@dataclass(frozen=True)
class TrainConfig:
    """Parameters of ``pretrain``; CLI options carry the same names. ``batch_size``,
    ``steps``, ``lr`` and ``warmup`` left None come from ``recipe`` where one is named,
    else from the defaults (256 sequences, one epoch, 6e-4, 6% of the run)."""

    # A preset name, ignored when model_config is given.
    model: str = opt("base", choices=PRESETS, help="Size preset (base: RoBERTa-base, 12 x 768).")
    model_config: dict[str, Any] | None = opt(  # noqa: RUF009 (its default is None)
        None,
        name="--config",
        type=read_json,
        metavar="FILE",
        help="JSON model config (layers, hidden, heads, ffn, ...) instead of --model.",
    )
    recipe: str | None = opt(
        None,
        choices=RECIPES,
        help="RoBERTa's batch recipes (Table 3), same sequences seen: bsz256 = 256 sequences "
        "x 1M steps at lr 1e-4, warmup 10K; bsz2k = 2,048 x 125K at 7e-4, warmup 10K; bsz8k "
        "= 8,192 x 31K at 1e-3, warmup 2.5K. Sets --batch-size, --steps, --lr and --warmup; "
        "each given explicitly wins.",
    )
    micro_batch: int = opt(32, help="Sequences per forward pass.")
    batch_size: int | None = opt(
        None,
        show_default=str(DEFAULT_BATCH_SIZE),
        help="Sequences per optimizer step (accumulation x ranks x micro-batch).",
    )
    batch_tokens: int | None = opt(
        None,
        help="Instead of --batch-size: each step takes rows in the epoch's order until their "
        "real tokens would pass this (RoBERTa's variable batch, for doc-sentences rows).",
    )
    micro_batch_tokens: int | None = opt(
        None,
        show_default="micro-batch x seq_len",
        help="With --batch-tokens: real tokens per forward pass at most.",
    )
    attention: str = opt(
        "row",
        choices=ATTENTIONS,
        help="row: every token of a row attends to all of it (RoBERTa's). document: only to "
        "its own document, position ids restarting at each (doc-sentences semantics at "
        "full-sentences packing; unpadded variable-length attention on CUDA).",
    )
    lr: float | None = opt(None, show_default=f"{DEFAULT_LR:g}", help="Peak learning rate.")
    warmup: int | None = opt(None, show_default="6% of the run", help="Warmup steps.")
    steps: int | None = opt(None, show_default="one epoch", help="Optimizer steps.")
    epochs: float | None = opt(None, help="Epochs instead of --steps.")
    weight_decay: float = opt(
        0.01, help="AdamW's weight decay, of the weight matrices (not biases or LayerNorm)."
    )
    betas: tuple[float, float] = opt((0.9, 0.98), help="AdamW's betas.")
    eps: float = opt(1e-6, help="AdamW's epsilon.")
    grad_clip: float = opt(1.0, help="Max gradient norm; 0: off.")
    seed: int = opt(
        0, help="Seed of the model's initial weights, the data order and (with the rank) dropout."
    )
    device: str = opt("auto", help="cuda, cuda:N, cpu or auto.")
    precision: str = opt(
        "auto",
        choices=("auto", "bf16", "fp32"),
        help="auto: bf16 autocast on CUDA, fp32 on CPU.",
    )
    compile: bool = opt(False, help="torch.compile the model.")
    log_every: int = opt(10, help="Steps between log lines.")
    eval_every: int = opt(500, help="Steps between val losses.")
    eval_batches: int = opt(
        50, hidden=True, help="Batches of --micro-batch rows (each rank's) per val loss."
    )
    save_every: int = opt(1000, help="Steps between checkpoints.")
    stop_at: int | None = opt(
        None,
        help="Stop after this step with a checkpoint (preemptible jobs); --resume goes on.",
    )
    weights: tuple[float, ...] | None = opt(
        None,
        type=comma_floats,
        help="Shares of several DATA, comma-separated (3,1: three sequences of the first for "
        "one of the second); default equal.",
    )

    def resolved(self) -> TrainConfig:
        """This config with the recipe's values and the defaults filled in where None
        (explicit values win; a token budget replaces the recipe's batch size; a run
        whose length is set otherwise keeps the recipe's warmup share, not its steps)."""
        if self.recipe is not None and self.recipe not in RECIPES:
            raise RbprepError(f"--recipe must be one of {', '.join(RECIPES)}, not {self.recipe}")
        recipe = RECIPES.get(self.recipe)
        batch_size, steps, warmup = self.batch_size, self.steps, self.warmup
        if batch_size is None and self.batch_tokens is None:
            batch_size = recipe.batch_size if recipe else DEFAULT_BATCH_SIZE
        if recipe is not None:
            if steps is None and self.epochs is None:
                steps = recipe.steps
            if warmup is None and steps is not None:  # with --epochs: warmup_steps
                warmup = max(1, round(recipe.warmup * steps / recipe.steps))
        lr = self.lr if self.lr is not None else (recipe.lr if recipe else DEFAULT_LR)
        return replace(self, batch_size=batch_size, steps=steps, warmup=warmup, lr=lr)

    def warmup_steps(self, total: int) -> int:
        """Warmup steps of a run of ``total`` steps: ``warmup`` where set, else the
        recipe's share of its own length (6% without a recipe), at least 1."""
        if self.warmup is not None:
            return self.warmup
        share = RECIPES[self.recipe].warmup / RECIPES[self.recipe].steps if self.recipe else 0.06
        return max(1, round(share * total))

    def check(self) -> None:
        counts = {
            "--micro-batch": self.micro_batch,
            "--batch-size": self.batch_size,
            "--batch-tokens": self.batch_tokens,
            "--micro-batch-tokens": self.micro_batch_tokens,
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
        if self.batch_tokens is not None and self.batch_size is not None:
            raise RbprepError("give --batch-size (sequences) or --batch-tokens, not both")
        if self.micro_batch_tokens is not None and self.batch_tokens is None:
            raise RbprepError("--micro-batch-tokens goes with --batch-tokens")
        if self.attention not in ATTENTIONS:
            raise RbprepError(f"--attention must be one of {', '.join(ATTENTIONS)}")
        if self.epochs is not None and self.epochs <= 0:
            raise RbprepError(f"--epochs must be positive, got {self.epochs}")
        if self.lr is not None and self.lr <= 0:
            raise RbprepError("--lr must be positive")
        if self.warmup is not None and self.warmup < 0:
            raise RbprepError("--warmup must be at least 0")


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
    data: str | os.PathLike | Sequence[str | os.PathLike],
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

    ``data`` may be several datasets with one tokenizer, seq_len and masking rules: each
    step takes sequences from each in proportion to ``config.weights`` (equal by
    default), by Megatron's greedy blending (``train.data.Mixture``); each step's line in
    metrics.jsonl then gives ``sources``, and validation a loss per dataset.

    The dataset's shards are checked before the first step (``open_dataset``; the
    sha256 of each unless ``checksums`` is False), each rank its share, and damage any
    rank finds stops every rank. Log lines go to ``log_stream``
    (stdout by default; the CLI sends them to stderr under --json), unless ``progress``
    is False.

    Under ``torchrun`` each rank trains on its share of the rows (DDP). Writes
    ``out/metrics.jsonl``, ``out/checkpoints/step-N/`` (trainer state and a Hugging Face
    export) and the final model as a Hugging Face directory ``out/hf/``.
    """
    check_output_directory(out)
    rank, world, device = distributed.setup(config.device)
    training = None
    try:
        training = _setup(
            data,
            Path(out),
            config,
            rank,
            world,
            device,
            resume=resume,
            force=force,
            checksums=checksums,
        )
        return _train(training, progress, log_stream if log_stream is not None else sys.stdout)
    finally:
        # DDP sits in a reference cycle that holds the process group: left to the
        # collector, it may be freed at interpreter exit, after the group is destroyed,
        # and abort the process ("terminate called without an active exception").
        del training
        gc.collect()
        distributed.teardown()


@dataclass
class _Training:
    """What a run is made of once set up, and where it stands (``step``, ``cursor``)."""

    run: Path
    config: TrainConfig  # resolved: recipe and defaults filled in
    rank: int
    world: int
    device: torch.device
    precision: str  # "bf16" or "fp32"
    train_set: Dataset
    # (dataset's index, path, its valid split) of each dataset with a valid split
    valid_sets: list[tuple[int, str, Dataset]]
    dataset: dict[str, Any]  # its identity, for --resume (a mixture's: "mixture" too)
    model_config: ModelConfig
    model: RobertaMLM
    wrapped: torch.nn.Module  # the model under DDP (its no_sync skips the all-reduce)
    forward: torch.nn.Module  # the model as called: DDP-wrapped, compiled
    optimizer: torch.optim.Optimizer
    loader: Loader
    total: int  # steps of the whole run
    warmup: int
    step: int = 0
    cursor: Cursor = field(default_factory=Cursor)
    started: float = 0.0

    @property
    def documents(self) -> bool:
        return self.config.attention == "document"


def _setup(
    data: str | os.PathLike,
    run: Path,
    config: TrainConfig,
    rank: int,
    world: int,
    device: torch.device,
    *,
    resume: bool,
    force: bool,
    checksums: bool,
) -> _Training:
    """Open the dataset, build model, optimizer and loader, prepare the run directory
    and, with ``resume``, restore the latest checkpoint."""
    started = time.perf_counter()
    config = config.resolved()
    config.check()
    # The ranks divide the shards' checks, and stop together on damage any rank finds.
    checks = dict(checksums=checksums, share=(rank, world), agree=distributed.gather_objects)
    paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    if config.weights is not None and len(config.weights) != len(paths):
        raise RbprepError(
            f"--weights gives {len(config.weights)} weights for {len(paths)} datasets; "
            "give one per dataset"
        )
    train_sets = [open_dataset(path, "train", **checks) for path in paths]
    train_set = train_sets[0]
    train_set.tokenizer  # noqa: B018  (a damaged tokenizer.json stops the run before a step)
    _check_mixable(paths, train_sets)
    valid_sets = [
        (index, str(path), open_dataset(path, "valid", **checks))
        for index, path in enumerate(paths)
        if _has_rows(path, "valid")
    ]
    model_config = _model_config(config, train_set)
    source: Dataset | Mixture = train_set
    if len(train_sets) > 1 and config.batch_tokens is not None:
        raise RbprepError(
            "several datasets mix in steps of --batch-size sequences; --batch-tokens with a "
            "mixture is not supported yet"
        )
    if len(train_sets) > 1:
        source = Mixture(train_sets, list(config.weights or [1.0] * len(train_sets)))
    loader = _loader(paths[0], config, source, rank, world, device)
    identity = _dataset_identity(train_set)
    if len(train_sets) > 1:
        identity["mixture"] = [_dataset_identity(dataset) for dataset in train_sets]
    total = _total_steps(config, loader)
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
    training = _Training(
        run=run,
        config=config,
        rank=rank,
        world=world,
        device=device,
        precision=precision,
        train_set=train_set,
        valid_sets=valid_sets,
        dataset=identity,
        model_config=model_config,
        model=model,
        wrapped=model,
        forward=model,
        optimizer=optimizer,
        loader=loader,
        total=total,
        warmup=config.warmup_steps(total),
        started=started,
    )
    distributed.on_rank_zero(lambda: _prepare_run(run, resume=resume, force=force))
    if resume:
        _resume(training)
    training.wrapped = distributed.wrap(model, device)
    training.forward = torch.compile(training.wrapped) if config.compile else training.wrapped
    run_record = {
        "train": asdict(config),
        "model": model_config.as_dict(),
        "data": str(data),
        "world": world,
        "dataset": training.dataset,
    }
    distributed.on_rank_zero(lambda: _write_atomically(run / "config.json", run_record))
    return training


def _loader(
    data: str | os.PathLike,
    config: TrainConfig,
    train_set: Dataset | Mixture,
    rank: int,
    world: int,
    device: torch.device,
) -> Loader:
    """The loader of fixed batches (``batch_size`` sequences) or token budgets."""
    if config.batch_tokens is not None:
        micro_tokens = config.micro_batch_tokens or config.micro_batch * train_set.seq_len
        plan: FixedBatches | TokenBudget = TokenBudget(config.batch_tokens, micro_tokens)
        advice = "use a larger --batch-tokens or --micro-batch-tokens"
    else:
        per_step = config.micro_batch * world
        if config.batch_size % per_step:
            raise RbprepError(
                f"--batch-size {config.batch_size} is not a multiple of --micro-batch x ranks "
                f"({config.micro_batch} x {world}); choose a --micro-batch that makes it one "
                "(a resumed run keeps its --batch-size)"
            )
        plan = FixedBatches(config.micro_batch, config.batch_size // per_step)
        advice = "use a smaller --micro-batch"
    try:
        return Loader(
            train_set, plan, config.seed, rank, world, device, config.attention == "document"
        )
    except ValueError as exc:
        raise RbprepError(f"{data}: {exc}; {advice}") from exc


def _resume(training: _Training) -> None:
    """Restore model, optimizer, step, cursor and this rank's RNG from the latest
    checkpoint that loads, after checking the run is resumable with these options."""
    run = training.run
    _check_resumable(run, training.config, training.model_config, training.world, training.dataset)
    state = _load_latest(run / "checkpoints", training.device)
    if state is None:
        raise RbprepError(f"{run}: no checkpoint to resume from")
    distributed.on_rank_zero(lambda: _drop_metrics_after(run / "metrics.jsonl", int(state["step"])))
    training.model.load_state_dict(state["model"])
    training.optimizer.load_state_dict(state["optimizer"])
    training.step, training.cursor = int(state["step"]), Cursor(*state["cursor"])
    if state.get("cursor_unit") != "steps" and isinstance(training.loader.plan, FixedBatches):
        training.cursor = _steps_cursor(run, training.cursor, training.loader)
    _restore_rng(state, training.config.seed, training.rank, training.world, training.device)


def _train(training: _Training, progress: bool, log_stream: TextIO) -> TrainSummary:
    """Steps until the run's end (or ``stop_at``), logging, evaluating and saving."""
    config, rank, total = training.config, training.rank, training.total
    peak = _peak_flops(training.device)
    metrics = open(training.run / "metrics.jsonl", "a") if rank == 0 else None  # noqa: SIM115
    last = {"loss": None, "val_loss": None, "tokens_per_s": None, "mfu": None}
    window = _Window()
    steps = training.loader(training.cursor)
    try:
        end = min(total, config.stop_at) if config.stop_at is not None else total
        while training.step < end:
            step = next(steps)
            lr = lr_at(training.step, config.lr, training.warmup, total)
            loss = _step(training, step, lr, window)
            training.step += 1
            training.cursor = step.cursor
            record: dict[str, Any] = {
                "step": training.step,
                "epoch": step.cursor.epoch,
                "tokens": step.tokens,
                "sequences": step.sequences,
            }
            if step.sources is not None:
                record["sources"] = step.sources
            # The last step of this invocation (--stop-at included) always has its loss.
            if training.step % config.log_every == 0 or training.step == end:
                loss_value = distributed.all_mean(loss).item()
                tokens_per_s, mfu = window.rates(
                    training.model_config, training.world, peak, training.device
                )
                record.update(loss=loss_value, lr=lr, tokens_per_s=tokens_per_s, mfu=mfu)
                last.update(loss=loss_value, tokens_per_s=tokens_per_s, mfu=mfu)
            if training.valid_sets and (
                training.step % config.eval_every == 0 or training.step == total
            ):
                losses = [_evaluate(training, valid) for _, _, valid in training.valid_sets]
                count = len(training.dataset.get("mixture", [0]))
                weights = training.config.weights or [1.0] * count
                shares = [weights[index] for index, _, _ in training.valid_sets]
                mixed = sum(w * loss for w, loss in zip(shares, losses, strict=True)) / sum(shares)
                record["val_loss"] = last["val_loss"] = mixed  # a mixture's: as it is mixed
                if "mixture" in training.dataset:
                    names = [path for _, path, _ in training.valid_sets]
                    record["val_losses"] = dict(zip(names, losses, strict=True))
                window.restart()  # no credit or blame for evaluation time
            if metrics is not None:
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                if progress and ("loss" in record or "val_loss" in record):
                    print(_log_line(record, total), file=log_stream, flush=True)
            if training.step % config.save_every == 0 or training.step == end:
                _save(training)
                window.restart()
    finally:
        steps.close()
        if metrics is not None:
            metrics.close()
    hf_dir = training.run / "hf"
    if training.step == total:
        distributed.on_rank_zero(lambda: export_hf(training.model, hf_dir, training.train_set.root))
    return TrainSummary(
        run=str(training.run),
        steps=training.step,
        total_steps=total,
        final_loss=last["loss"],
        val_loss=last["val_loss"],
        tokens_per_s=last["tokens_per_s"],
        mfu=last["mfu"],
        seconds=round(time.perf_counter() - training.started, 3),
        hf_dir=str(hf_dir),
    )


def _step(training: _Training, step: Step, lr: float, window: _Window) -> torch.Tensor:
    """One optimizer step over ``step``'s micro-batches; returns this rank's share of
    the step's loss (the mean over all its masked positions, on all ranks, once summed).

    Each micro-batch adds the sum of its losses; the gradients are then scaled by ranks
    over masked positions (DDP averages over ranks), so how a step is split into
    micro-batches and ranks changes nothing. Counts come from the loader's CPU arrays:
    no device sync here."""
    for group in training.optimizer.param_groups:
        group["lr"] = lr
    device, world = training.device, training.world
    loss_sum = torch.zeros((), device=device)
    masked = squares = 0
    for index, micro in enumerate(step.micro_batches):
        batch = micro.tensors
        sync = index == step.passes - 1
        with (
            distributed.no_sync(training.wrapped, sync),  # a compiled module has none
            _autocast(device, training.precision),
        ):
            loss = training.forward(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                document_ids=batch.get("document_ids"),
                labels=batch["labels"],
                reduction="sum",
            )
        loss.backward()
        loss_sum += loss.detach()
        masked += micro.masked
        squares += micro.squares
    if world > 1:
        step_masked = distributed.all_sum(torch.tensor(float(masked), device=device))
        scale = world / step_masked.clamp(min=1)
    else:
        scale = torch.tensor(1.0 / max(1, masked), device=device)
    gradients = [p.grad for p in training.model.parameters() if p.grad is not None]
    torch._foreach_mul_(gradients, scale)
    if training.config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(training.model.parameters(), training.config.grad_clip)
    training.optimizer.step()
    training.optimizer.zero_grad(set_to_none=True)
    window.add(step.tokens, step.local_tokens, squares, masked)
    return loss_sum * scale


def _has_rows(data: str | os.PathLike, split: str) -> bool:
    from rbprep.dataset.reader import read_manifest

    return read_manifest(data).splits[split].rows > 0


def _model_config(config: TrainConfig, dataset: Any) -> ModelConfig:
    vocab = dataset.manifest.tokenizer.vocab_size
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


def _total_steps(config: TrainConfig, loader: Loader) -> int:
    if config.steps is not None:
        return config.steps
    epochs = config.epochs if config.epochs is not None else 1.0
    return max(1, math.floor(epochs * loader.steps_per_epoch()))


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
    """Real tokens (all ranks), and this rank's real tokens, squared attended lengths
    and masked positions, since the last restart: plain integers from the loader."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.started = time.perf_counter()
        self.tokens = 0
        self.local_tokens = 0
        self.squares = 0
        self.masked = 0

    def add(self, tokens: int, local_tokens: int, squares: int, masked: int) -> None:
        self.tokens += tokens
        self.local_tokens += local_tokens
        self.squares += squares
        self.masked += masked

    def rates(
        self, config: ModelConfig, world: int, peak: float | None, device: torch.device
    ) -> tuple[float | None, float | None]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - self.started
        if not self.local_tokens or seconds <= 0:
            return None, None
        tokens_per_s = self.tokens / seconds
        # T: mean squared attended length (rows, or documents) over mean length.
        attended = self.squares / self.local_tokens
        flops = flops_per_token(config, attended, self.masked / self.local_tokens)
        mfu = tokens_per_s * flops / (peak * world) if peak else None
        self.restart()
        return round(tokens_per_s, 1), (round(mfu, 4) if mfu is not None else None)


@torch.no_grad()
def _evaluate(training: _Training, dataset: Dataset) -> float:
    """Mean masked-LM loss on ``dataset`` (a valid split; copy 0, in order), at most
    eval_batches batches of micro_batch rows, with the run's attention."""
    model, config = training.model, training.config
    device, rank, world = training.device, training.rank, training.world
    model.eval()
    rows = torch.arange(len(dataset))[rank::world][: config.eval_batches * config.micro_batch]
    total = torch.zeros(2, device=device)  # (loss sum, masked count)
    for start in range(0, len(rows), config.micro_batch):
        arrays = dataset.batch(rows[start : start + config.micro_batch].numpy(), copy=0)
        if not training.documents:
            del arrays["document_ids"]
        masked = int((arrays["labels"] != -100).sum())
        if masked:
            batch = {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}
            with _autocast(device, training.precision):
                loss = model(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    document_ids=batch.get("document_ids"),
                    labels=batch["labels"],
                    reduction="sum",
                )
            total += torch.stack([loss.float(), torch.tensor(float(masked), device=device)])
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


# What fixes the order of the data, the shape of the model and what it learns: a
# resumed run must keep it. The number of ranks and the micro-batches are free (elastic
# resume): a step's rows depend on the global batch alone (``train.data``).
_RESUME_FIXED = (
    "seed",
    "batch_size",
    "batch_tokens",
    "attention",
    "weights",
)


def _check_mixable(paths: list[Any], datasets: list[Dataset]) -> None:
    """Refuse datasets that cannot be mixed, in one line naming the difference: another
    tokenizer, seq_len or masking rules than the first's."""
    first = datasets[0]
    for path, dataset in zip(paths[1:], datasets[1:], strict=True):
        rules = [
            ("tokenizer (sha256)", lambda d: d.manifest.tokenizer.sha256),
            ("seq_len", lambda d: d.seq_len),
            ("masking rules", lambda d: _masking_rules(d)),
        ]
        for what, of in rules:
            if of(dataset) != of(first):
                raise RbprepError(
                    f"{path}: another {what} than {paths[0]}'s ({of(dataset)} against "
                    f"{of(first)}); mix datasets sharded with one tokenizer and options"
                )


def _masking_rules(dataset: Dataset) -> dict[str, Any]:
    """What decides how a row is masked, but the seed (datasets mask apart anyway)."""
    masks = asdict(dataset.manifest.parameters.masks)
    masks.pop("seed", None)
    return masks


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
        "tokenizer_sha256": manifest.tokenizer.sha256,
        "rows": manifest.totals.rows,
    }


def _check_resumable(
    run: Path, config: TrainConfig, model: ModelConfig, world: int, dataset: dict[str, Any]
) -> None:
    """Refuse to resume on another dataset, or with options that would change which
    rows come next (the cursor counts steps of this global batch or token budget, from
    this seed's order) or the model's shape. Another number of ranks or micro-batch size
    is fine: the global batch decides a step's rows (``_loader`` refuses a global batch
    the ranks cannot split evenly, saying which option to change)."""
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
    now = json.loads(json.dumps(asdict(config)))  # as config.json holds it
    changed = [
        f"--{key.replace('_', '-')} {saved['train'][key]} -> {now[key]}"
        for key in _RESUME_FIXED
        if key in saved.get("train", {}) and saved["train"][key] != now[key]
    ]
    mixed = [d["manifest_sha256"] for d in (before or {}).get("mixture", [])]
    if before and mixed != [d["manifest_sha256"] for d in dataset.get("mixture", [])]:
        raise RbprepError(
            f"{run}: --resume on other datasets than the run's "
            f"({', '.join(d['path'] for d in before.get('mixture', [before]))}); resume on "
            "those or start a new run"
        )
    if saved.get("model") not in (None, model.as_dict()):
        changed.append("the model (--model / --config)")
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


def _save(training: _Training) -> None:
    """Write checkpoints/step-N/{trainer.pt, Hugging Face files} atomically: rank 0
    writes, with every rank's random state (all ranks call this)."""
    device = training.device
    rng = distributed.gather_objects(
        (torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None)
    )
    distributed.on_rank_zero(
        lambda: _write_checkpoint(
            training.run,
            training.model,
            training.optimizer,
            training.step,
            training.cursor,
            rng,
            training.train_set.root,
            training.dataset,
        )
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
        "cursor_unit": "steps",  # before: each rank's micro-batches (_steps_cursor)
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


def _restore_rng(
    state: dict[str, Any], seed: int, rank: int, world: int, device: torch.device
) -> None:
    """Set this rank's random state from a checkpoint (one row per rank; a checkpoint
    from before that holds rank 0's state alone, which then seeds every rank). Resumed on
    another number of ranks, the ranks' streams (dropout) cannot carry over: each rank
    starts a new one from the seed, its rank and the step."""
    cpu = state["rng_cpu"]
    if cpu.dim() == 2 and cpu.shape[0] != world:
        torch.manual_seed(distributed.rank_seed(seed + int(state["step"]), rank))
        return
    torch.set_rng_state((cpu[rank] if cpu.dim() == 2 else cpu).clone())
    cuda = state.get("rng_cuda")
    if device.type == "cuda" and cuda is not None:
        torch.cuda.set_rng_state((cuda[rank] if cuda.dim() == 2 else cuda).clone(), device)


def _steps_cursor(run: Path, cursor: Cursor, loader: Loader) -> Cursor:
    """A fixed-batch cursor of a checkpoint from before cursors counted steps: it counted
    each rank's micro-batches, of the saved run's micro-batch and ranks (config.json)."""
    saved = json.loads((run / "config.json").read_text())
    rows = cursor.batch * saved["train"]["micro_batch"] * saved.get("world", 1)
    return Cursor(cursor.epoch, rows // loader.global_batch)


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
