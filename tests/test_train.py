"""The trainer on CPU: model parity with transformers, the loader, learning, exact resume,
export, and DDP under torchrun (real torch throughout); on a CUDA device, where there is
one: parity with the CPU, learning in bf16, resume and export."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from rbprep.cli import main  # noqa: E402
from rbprep.dataset import open_dataset  # noqa: E402
from rbprep.errors import RbprepError  # noqa: E402
from rbprep.sharding import ShardConfig, shard  # noqa: E402
from rbprep.train.data import (  # noqa: E402
    Cursor,
    FixedBatches,
    Loader,
    Mixture,
    TokenBudget,
    epoch_order,
)
from rbprep.train.loop import TrainConfig, lr_at, pretrain  # noqa: E402
from rbprep.train.model import ModelConfig, RobertaMLM, flops_per_token, preset  # noqa: E402

TINY = dict(model="tiny", micro_batch=8, batch_size=16, lr=2e-3, log_every=1, eval_every=1000)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, builtin_corpus, small_vocab) -> Path:
    """The built-in corpus in 64-token rows, 2 masked copies, with a valid split."""
    out = tmp_path_factory.mktemp("tiny-data")
    config = ShardConfig(seq_len=64, dup=2, valid_fraction=0.02)
    shard([builtin_corpus], small_vocab / "bpe", out, config, force=True)
    return out


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and attention mask: three rows of 32 random ids below 300, the second padded
    (pad id 1) from position 20."""
    ids = torch.randint(5, 300, (3, 32))
    mask = torch.ones_like(ids)
    mask[1, 20:] = 0
    ids[mask == 0] = 1
    return ids, mask


def test_logits_match_transformers():
    transformers = pytest.importorskip("transformers")
    config = ModelConfig(
        vocab_size=300, pad_id=1, layers=2, hidden=64, heads=4, ffn=128, max_positions=34
    )
    torch.manual_seed(0)
    ours = RobertaMLM(config).eval()
    theirs = transformers.RobertaForMaskedLM(
        transformers.RobertaConfig(
            vocab_size=300,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            max_position_embeddings=34,
            type_vocab_size=1,
            layer_norm_eps=1e-5,
            pad_token_id=1,
        )
    ).eval()
    missing, unexpected = theirs.load_state_dict(ours.hf_state_dict(), strict=False)
    assert set(missing) == {"lm_head.decoder.weight", "lm_head.decoder.bias"}  # tied
    assert unexpected == []
    ids, mask = padded_batch()
    with torch.no_grad():
        a = ours(ids, mask)
        b = theirs(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(a[mask.bool()], b[mask.bool()], atol=1e-5, rtol=1e-4)


def test_loss_is_computed_at_masked_positions_only():
    config = ModelConfig(
        vocab_size=50, pad_id=1, layers=1, hidden=16, heads=2, ffn=32, max_positions=20
    )
    model = RobertaMLM(config).eval()
    ids = torch.randint(5, 50, (2, 12))
    mask = torch.ones_like(ids)
    labels = torch.full_like(ids, -100)
    labels[0, 3], labels[1, 7] = 9, 11
    logits = model(ids, mask)
    expected = torch.nn.functional.cross_entropy(
        torch.stack([logits[0, 3], logits[1, 7]]), torch.tensor([9, 11])
    )
    torch.testing.assert_close(model(ids, mask, labels=labels), expected)


def test_a_step_is_the_same_however_it_is_split_into_micro_batches(tiny_data, tmp_path):
    """The step's loss is the mean over all its masked positions: one micro-batch of 16
    rows or four of 4 give the same loss and the same weights (dropout off)."""
    dataset = open_dataset(tiny_data)
    tiny = preset("tiny", dataset.manifest.tokenizer.vocab_size, dataset.pad_id, 64)
    runs = {}
    for micro in (16, 4):
        config = TrainConfig(
            **{**TINY, "micro_batch": micro, "batch_size": 16, "steps": 2, "save_every": 2},
            model_config={**tiny.as_dict(), "dropout": 0.0},
        )
        pretrain(tiny_data, tmp_path / str(micro), config, progress=False)
        lines = (tmp_path / str(micro) / "metrics.jsonl").read_text().splitlines()
        state = torch.load(
            tmp_path / str(micro) / "checkpoints" / "step-00000002" / "trainer.pt",
            weights_only=True,
        )
        runs[micro] = ([json.loads(line)["loss"] for line in lines], state["model"])
    np.testing.assert_allclose(runs[4][0], runs[16][0], rtol=1e-5)
    for name, tensor in runs[16][1].items():
        torch.testing.assert_close(runs[4][1][name], tensor, atol=1e-5, rtol=1e-4)


def test_a_micro_batch_with_nothing_masked_adds_nothing():
    config = ModelConfig(
        vocab_size=50, pad_id=1, layers=1, hidden=16, heads=2, ffn=32, max_positions=20
    )
    model = RobertaMLM(config)
    ids = torch.randint(5, 50, (2, 12))
    loss = model(ids, torch.ones_like(ids), labels=torch.full_like(ids, -100), reduction="sum")
    loss.backward()
    assert loss.item() == 0.0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_peak_flops_by_device_name():
    from rbprep.train.loop import peak_flops

    assert peak_flops("NVIDIA L40") == 181e12 and peak_flops("NVIDIA L40S") == 362e12
    assert peak_flops("NVIDIA L4") == 121e12 and peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("Some GPU") is None


def test_resume_refuses_other_options_and_drops_the_log_past_the_checkpoint(tiny_data, tmp_path):
    run = tmp_path / "run"
    config = TrainConfig(**{**TINY, "steps": 8, "save_every": 4})
    pretrain(tiny_data, run, TrainConfig(**{**TINY, "steps": 8, "stop_at": 4}), progress=False)
    with (run / "metrics.jsonl").open("a") as log:  # a crash after steps 5 and 6 were logged
        log.write('{"step": 5, "loss": 9.0}\n{"step": 6, "loss": 9.0}\n')
    for changed in ({"batch_size": 32}, {"seed": 1}, {"model": "small"}):
        with pytest.raises(RbprepError, match="--resume with"):
            pretrain(tiny_data, run, replace(config, **changed), resume=True, progress=False)
    # Another micro-batch is free: the global batch (--batch-size) decides the rows.
    pretrain(tiny_data, run, replace(config, micro_batch=4), resume=True, progress=False)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 9))


def test_a_checkpoint_whose_cursor_counted_micro_batches_resumes_at_its_step(tiny_data, tmp_path):
    """Checkpoints from before cursors counted steps held each rank's micro-batches (here
    8 x 2 accumulated = 16 a step: step 4 was micro-batch 8); resumed, the run goes on
    exactly as one never stopped."""
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    config = TrainConfig(**{**TINY, "micro_batch": 8, "batch_size": 16, "steps": 6})
    pretrain(tiny_data, straight, config, progress=False)
    pretrain(tiny_data, halves, replace(config, stop_at=4), progress=False)
    latest = (halves / "checkpoints" / "latest").read_text().strip()
    path = halves / "checkpoints" / latest / "trainer.pt"
    state = torch.load(path, weights_only=True)
    assert state.pop("cursor_unit") == "steps" and state["cursor"] == [0, 4]
    state["cursor"] = [0, 8]
    torch.save(state, path)
    pretrain(tiny_data, halves, config, resume=True, progress=False)
    losses = [
        [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        for run in (straight, halves)
    ]
    assert losses[0] == losses[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--micro-batch", "0"], "--micro-batch must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--log-every", "0"], "--log-every must be at least 1"),
        (["--steps", "-5"], "--steps must be at least 1"),
        (["--config", '{"hidden": 30, "heads": 4}'], "must be a positive multiple of heads"),
        (["--config", '{"dropout": "x"}'], "dropout must be a number"),
        (["--config", '{"max_positions": 10}'], "max_positions must be at least"),
        (["--config", '{"vocab_size": 10}'], "vocab_size must be at least"),
        (["--device", "tpu"], "--device must be cpu, cuda, cuda:N or auto, got 'tpu'"),
        (["--out", "FILE"], "exists and is not a directory; choose another --out"),
        (["--device", "cuda:x"], "--device must be cpu, cuda, cuda:N or auto"),
        pytest.param(
            ["--device", "cuda"],
            "--device cuda: this torch is built without CUDA",
            marks=pytest.mark.skipif(torch.version.cuda is not None, reason="a CUDA torch"),
        ),
    ],
)
def test_bad_pretrain_options_are_one_line_errors(tiny_data, tmp_path, args, message):
    if args[0] == "--config":
        path = tmp_path / "model.json"
        path.write_text(
            json.dumps({"layers": 1, "hidden": 16, "heads": 2, "ffn": 32, **json.loads(args[1])})
        )
        args = ["--config", str(path)]
    if args == ["--out", "FILE"]:  # a file where the run directory should be
        (tmp_path / "file").write_text("mine\n")
        args = ["--out", str(tmp_path / "file")]
    command = ["pretrain", str(tiny_data), "--out", str(tmp_path / "run"), "--model", "tiny"]
    result = CliRunner().invoke(main, [*command, "--steps", "2", "--quiet", *args])
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_presets_and_flops():
    base = preset("base", 50_265, 1, 512)
    assert (base.layers, base.hidden, base.heads, base.ffn, base.max_positions) == (
        12,
        768,
        12,
        3072,
        514,
    )
    assert base.encoder_parameters == 12 * 7_087_872  # RoBERTa-base: 85.1 M in the layers
    # 6 N + 12 L H T + 6 p (H^2 + H V), by hand for a small config.
    small = ModelConfig(vocab_size=100, layers=2, hidden=8, heads=2, ffn=16)
    n_enc = 2 * (4 * (64 + 8) + (2 * 8 * 16 + 16 + 8) + 4 * 8)
    assert flops_per_token(small, 10, 0.15) == 6 * n_enc + 12 * 2 * 8 * 10 + 6 * 0.15 * (64 + 800)


def test_lr_schedule():
    assert lr_at(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert lr_at(10, 1.0, 10, 100) == pytest.approx(1.0)
    assert lr_at(55, 1.0, 10, 100) == pytest.approx(0.5)
    assert lr_at(100, 1.0, 10, 100) == 0.0


def micro_batches(loader: Loader, cursor: Cursor) -> list[dict[str, torch.Tensor]]:
    return [micro.tensors for micro in loader.step_at(cursor).micro_batches]


def test_loader_order_copies_and_ranks(tiny_data):
    dataset = open_dataset(tiny_data)
    order0, order1 = epoch_order(len(dataset), 7, 0), epoch_order(len(dataset), 7, 1)
    assert sorted(order0) == list(range(len(dataset))) and (order0 != order1).any()
    np.testing.assert_array_equal(order0, epoch_order(len(dataset), 7, 0))
    ranks = [Loader(dataset, FixedBatches(4), seed=7, rank=r, world=2) for r in (0, 1)]
    first = [micro_batches(loader, Cursor(0, 0))[0]["input_ids"] for loader in ranks]
    expected = dataset.batch(order0[[0, 2, 4, 6]], copy=0)["input_ids"]
    np.testing.assert_array_equal(first[0].numpy(), expected)
    assert not torch.equal(first[0], first[1])
    step = ranks[0].step_at(Cursor(0, 0))  # the step's counts are every rank's
    lengths = dataset.lengths()[order0[:8]]
    assert (step.tokens, step.sequences) == (lengths.sum(), 8)
    assert step.local_tokens == lengths[::2].sum()
    assert "document_ids" not in step.micro_batches[0].tensors  # only with documents=True
    # Epoch 1 reads copy 1 % dup of the masks.
    loader = ranks[0]
    batch = micro_batches(loader, Cursor(1, 0))[0]
    expected = dataset.batch(order1[[0, 2, 4, 6]], copy=1)
    np.testing.assert_array_equal(batch["labels"].numpy(), expected["labels"])
    # The prefetching iterator yields exactly what step_at gives, cursor after cursor,
    # across the epoch's end; two micro-batches a step.
    loader = Loader(dataset, FixedBatches(4, accumulation=2), seed=7, rank=0, world=2)
    cursor = Cursor(0, loader.steps_per_epoch() - 1)
    stream = loader(cursor)
    for _ in range(3):
        step = next(stream)
        expected = micro_batches(loader, cursor)
        got = [micro.tensors for micro in step.micro_batches]
        assert len(got) == step.passes == 2
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a["input_ids"], b["input_ids"])
        cursor = step.cursor
    stream.close()
    assert cursor == Cursor(1, 2)


def test_token_budget_steps(builtin_corpus, small_vocab, tmp_path):
    """Steps take rows in the epoch's order until their tokens would pass the budget;
    ranks share each step, micro-batches stay within theirs, and every rank runs as
    many passes; the rows that cannot make a whole step at the end are dropped."""
    data = tmp_path / "doc"
    config = ShardConfig(seq_len=64, dup=2, mode="doc-sentences")
    shard([builtin_corpus], small_vocab / "bpe", data, config)
    dataset = open_dataset(data)
    lengths = dataset.lengths()
    assert lengths.min() < 40  # doc-sentences: short rows at documents' ends
    budget, micro_budget = 1000, 200
    ranks = [
        Loader(dataset, TokenBudget(budget, micro_budget), seed=3, rank=r, world=2) for r in (0, 1)
    ]
    alone = Loader(dataset, TokenBudget(budget, micro_budget), seed=3)  # elastic: one rank
    order = epoch_order(len(dataset), 3, 0)
    taken = 0
    cursor = Cursor()
    for _ in range(ranks[0].steps_per_epoch()):
        steps = [loader.step_at(cursor) for loader in ranks]
        one = alone._plan(cursor)[0]
        assert (one.tokens, one.sequences) == (steps[0].tokens, steps[0].sequences)
        rows = order[taken : taken + steps[0].sequences]
        assert steps[0].tokens == lengths[rows].sum() <= budget
        assert (
            lengths[order[: taken + steps[0].sequences + 1]].sum() - lengths[order[:taken]].sum()
            > budget
        )  # the next row would pass the budget
        assert steps[0].passes == steps[1].passes
        assert steps[0].local_tokens + steps[1].local_tokens == steps[0].tokens
        seen = []
        for step in steps:
            for micro in step.micro_batches:
                real = int(micro.tensors["attention_mask"].sum())
                assert real <= micro_budget or len(micro.tensors["input_ids"]) == 1
                if micro.masked or (micro.tensors["labels"] != -100).any():
                    seen.append(real)
        assert sum(seen) <= steps[0].tokens
        taken += steps[0].sequences
        cursor = ranks[0].next_cursor(cursor)
    assert cursor == Cursor(1, 0)
    assert lengths[order[taken:]].sum() <= budget  # the rest, dropped
    # Deterministic: the same step twice; the stream gives the same.
    again = ranks[1].step_at(Cursor(0, 2))
    stream = ranks[1](Cursor(0, 2))
    streamed = next(stream)
    for a, b in zip(streamed.micro_batches, again.micro_batches, strict=True):
        torch.testing.assert_close(a.tensors["labels"], b.tensors["labels"])
    stream.close()
    with pytest.raises(ValueError, match="cannot hold one row"):
        Loader(dataset, TokenBudget(100, 100), seed=3, world=2)


def test_a_dynamic_dataset_gives_epoch_e_copy_e_and_trains(builtin_corpus, small_vocab, tmp_path):
    data = tmp_path / "dynamic"
    shard([builtin_corpus], small_vocab / "bpe", data, ShardConfig(seq_len=64, masking="dynamic"))
    dataset = open_dataset(data)
    loader = Loader(dataset, FixedBatches(4), seed=7, rank=0, world=1)
    for epoch in (0, 2, 13):  # not epoch % dup: every epoch its own masks
        expected = dataset.batch(epoch_order(len(dataset), 7, epoch)[:4], copy=epoch)
        got = micro_batches(loader, Cursor(epoch, 0))[0]
        np.testing.assert_array_equal(got["labels"].numpy(), expected["labels"])
    summary = pretrain(data, tmp_path / "run", TrainConfig(**{**TINY, "steps": 3}), progress=False)
    assert summary.steps == 3 and math.isfinite(summary.final_loss)


def test_tiny_model_learns_on_cpu(tiny_data, tmp_path):
    summary = pretrain(
        tiny_data,
        tmp_path / "run",
        TrainConfig(**{**TINY, "steps": 40, "eval_every": 20}),
        progress=False,
    )
    records = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    losses = [r["loss"] for r in records if "loss" in r]
    vocab = json.loads((tiny_data / "manifest.json").read_text())["tokenizer"]["vocab_size"]
    assert losses[0] > math.log(vocab) - 0.5  # starts near chance
    assert np.mean(losses[-5:]) < losses[0] - 1.0  # and clearly learns (noise is ~0.3)
    assert {"step", "loss", "lr", "tokens_per_s", "mfu"} <= set(records[0])
    assert records[0]["mfu"] is None  # no made-up peak for a CPU
    assert [r["step"] for r in records if "val_loss" in r] == [20, 40]
    assert summary.steps == 40 and summary.val_loss < losses[0]


def test_resume_continues_exactly(tiny_data, tmp_path):
    config = TrainConfig(**{**TINY, "steps": 8, "save_every": 4})
    pretrain(tiny_data, tmp_path / "straight", config, progress=False)
    pretrain(
        tiny_data,
        tmp_path / "halves",
        TrainConfig(**{**TINY, "steps": 8, "save_every": 4, "stop_at": 4}),
        progress=False,
    )
    assert not (tmp_path / "halves" / "hf").exists()
    pretrain(tiny_data, tmp_path / "halves", config, resume=True, progress=False)

    def losses(run: str) -> list[float]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines]

    assert losses("halves") == losses("straight")  # equal floats, not approximately
    straight = torch.load(
        tmp_path / "straight" / "checkpoints" / "step-00000008" / "trainer.pt", weights_only=True
    )
    halves = torch.load(
        tmp_path / "halves" / "checkpoints" / "step-00000008" / "trainer.pt", weights_only=True
    )
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, halves["model"][name]), name
    assert straight["cursor"] == halves["cursor"]


def test_resume_passes_over_a_truncated_checkpoint(tiny_data, tmp_path, caplog):
    """A trainer.pt cut short (a full disk, a copy stopped) once failed --resume with
    "PytorchStreamReader failed reading zip archive" (issue 13). The run resumes from
    the newest checkpoint that loads, says so, and ends as a straight run does; with
    none that loads it is a one-line error."""
    config = TrainConfig(**{**TINY, "steps": 8, "save_every": 2})
    pretrain(tiny_data, tmp_path / "straight", config, progress=False)
    run = tmp_path / "cut"
    pretrain(tiny_data, run, replace(config, stop_at=6), progress=False)
    newest = run / "checkpoints" / "step-00000006" / "trainer.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    pretrain(tiny_data, run, config, resume=True, progress=False)
    [warning] = [r.getMessage() for r in caplog.records if "passed over" in r.getMessage()]
    assert str(newest) in warning and "resuming from step-00000004" in warning

    def losses(name: str) -> list[float]:
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines]

    assert losses("cut") == losses("straight")
    for trainer in (run / "checkpoints").glob("step-*/trainer.pt"):
        trainer.write_bytes(b"not a checkpoint")
    with pytest.raises(RbprepError, match=r"checkpoints: no checkpoint loads \(.*trainer.pt"):
        pretrain(tiny_data, run, replace(config, steps=10), resume=True, progress=False)


def test_resume_refuses_another_dataset_naming_the_difference(
    tiny_data, tmp_path, builtin_corpus, small_vocab
):
    """A dataset of the same shape (here: other masks) was once taken
    silently, one of another seq-len refused as "the model" (issue 13). The run records
    its dataset's manifest digest and names what differs."""
    config = TrainConfig(**{**TINY, "steps": 4, "save_every": 2})
    run = tmp_path / "run"
    pretrain(tiny_data, run, replace(config, stop_at=2), progress=False)
    assert len(json.loads((run / "config.json").read_text())["dataset"]["manifest_sha256"]) == 64
    for seq_len, mask_prob, message in (
        (64, 0.2, "its manifest differs"),
        (128, 0.15, "seq_len 64 -> 128"),
    ):
        other = tmp_path / f"other-{seq_len}"
        shard_config = ShardConfig(seq_len=seq_len, dup=2, valid_fraction=0.02, mask_prob=mask_prob)
        shard([builtin_corpus], small_vocab / "bpe", other, shard_config)
        with pytest.raises(
            RbprepError, match=f"--resume on another dataset than the run's .*{message}"
        ):
            pretrain(other, run, config, resume=True, progress=False)
    pretrain(tiny_data, run, config, resume=True, progress=False)  # its own still resumes


def assert_export_gives_the_checkpoints_logits(data: Path, run: Path, step: int) -> None:
    """RUN/hf loaded by transformers on CPU computes what the checkpoint of ``step`` does."""
    transformers = pytest.importorskip("transformers")
    loaded = transformers.RobertaForMaskedLM.from_pretrained(run / "hf").eval()
    state = torch.load(
        run / "checkpoints" / f"step-{step:08d}" / "trainer.pt",
        weights_only=True,
        map_location="cpu",
    )
    ours = RobertaMLM(ModelConfig(**json.loads((run / "config.json").read_text())["model"]))
    ours.load_state_dict(state["model"])
    ours.eval()
    batch = open_dataset(data).batch([0, 1], copy=0)
    ids, mask = torch.from_numpy(batch["input_ids"]), torch.from_numpy(batch["attention_mask"])
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(input_ids=ids, attention_mask=mask).logits,
            ours(ids, mask),
            atol=1e-5,
            rtol=1e-4,
        )


def test_export_loads_in_transformers(tiny_data, tmp_path):
    transformers = pytest.importorskip("transformers")
    pretrain(tiny_data, tmp_path / "run", TrainConfig(**{**TINY, "steps": 3}), progress=False)
    hf_dir = tmp_path / "run" / "hf"
    assert_export_gives_the_checkpoints_logits(tiny_data, tmp_path / "run", step=3)
    fill = transformers.pipeline("fill-mask", model=str(hf_dir), tokenizer=str(hf_dir))
    tokenizer = fill.tokenizer
    predictions = fill(f"Return the {tokenizer.mask_token} of the list.")
    assert len(predictions) == 5 and all("sequence" in p for p in predictions)
    assert tokenizer.model_max_length == 64
    # One token type: a pair's segment ids would index past the model's table.
    assert "token_type_ids" not in tokenizer("first text", "second text")


def test_an_exported_wordpiece_tokenizer_gives_no_token_types(small_vocab, tmp_path):
    """The model has one token type: a BERT tokenizer's segment ids for a pair's second
    text (1) would index past its table, so the export leaves them out."""
    transformers = pytest.importorskip("transformers")
    from rbprep.tokenizer_info import load_tokenizer
    from rbprep.train.export import _write_tokenizer_configs

    directory = tmp_path / "hf"
    directory.mkdir()
    shutil.copy(small_vocab / "wordpiece" / "tokenizer.json", directory)
    _, info = load_tokenizer(small_vocab / "wordpiece")
    _write_tokenizer_configs(directory, directory / "tokenizer.json", info.as_dict(), 64)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    assert "token_type_ids" not in tokenizer("first text", "second text")


def test_cli_pretrain_and_its_errors(tiny_data, tmp_path):
    runner = CliRunner()
    args = ["pretrain", str(tiny_data), "--out", str(tmp_path / "run"), "--model", "tiny"]
    args += ["--micro-batch", "8", "--batch-size", "16", "--steps", "2", "--quiet", "--json"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == 2
    again = runner.invoke(main, args)
    assert again.exit_code == 1 and "--resume or --force" in again.stderr
    bad_args = ["pretrain", str(tiny_data), "--out", str(tmp_path / "other"), "--model", "tiny"]
    bad = runner.invoke(main, [*bad_args, "--micro-batch", "8", "--batch-size", "12"])
    assert bad.exit_code == 1 and "multiple of --micro-batch" in bad.stderr


@pytest.mark.parametrize("missing", ["torch", "safetensors"])
def test_cli_pretrain_without_the_train_extra_says_how_to_install_it(
    missing, tiny_data, tmp_path, monkeypatch
):
    # As if the package were absent: a None in sys.modules makes its import fail.
    stale = [n for n in sys.modules if n.split(".")[0] == missing or n.startswith("rbprep.train")]
    for name in stale:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)
    args = ["pretrain", str(tiny_data), "--out", str(tmp_path / "r"), "--model", "tiny"]
    result = CliRunner().invoke(main, [*args, "--steps", "1", "--device", "cpu"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"({missing} is not installed): pip install 'rbprep[train]'" in result.stderr


def test_cli_pretrain_json_is_only_json_and_a_stop_has_its_loss(tiny_data, tmp_path):
    args = ["pretrain", str(tiny_data), "--out", str(tmp_path / "run"), "--model", "tiny"]
    args += ["--micro-batch", "8", "--batch-size", "16", "--steps", "4", "--stop-at", "3"]
    result = CliRunner().invoke(main, [*args, "--json"])  # log lines on, every 10 steps
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 3 and summary["final_loss"] is not None
    assert "step 3/4" in result.stderr
    resumed = CliRunner().invoke(main, [*args[:-2], "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "loss n/a" not in resumed.stdout and "step 4/4" in resumed.stdout


@pytest.mark.parametrize(
    ("damage", "message"),
    [("truncate", "missing or damaged (EOF while parsing"), ("change", "changed since shard")],
)
def test_a_damaged_dataset_tokenizer_is_a_one_line_error(tiny_data, tmp_path, damage, message):
    """inspect and pretrain, before any step and before the run directory is made."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    tokenizer = data / "tokenizer.json"
    text = tokenizer.read_text()
    tokenizer.write_text(text[:1000] if damage == "truncate" else text.replace("<mask>", "<MASK>"))
    for command in (
        ["inspect", str(data)],
        ["pretrain", str(data), "--out", str(tmp_path / "run"), "--model", "tiny", "--quiet"],
    ):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1, result.output
        assert f"{tokenizer}: {message}" in result.stderr and "rbprep verify" in result.stderr
        assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


# --- on a CUDA device (skipped without one: CI has none) ----------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_cuda_logits_equal_cpu_logits():
    config = ModelConfig(
        vocab_size=300, pad_id=1, layers=2, hidden=64, heads=4, ffn=128, max_positions=34
    )
    torch.manual_seed(0)
    model = RobertaMLM(config).eval()
    ids, mask = padded_batch()
    with torch.no_grad():
        on_cpu = model(ids, mask)
        on_cuda = model.to("cuda")(ids.cuda(), mask.cuda()).cpu()
    keep = mask.bool()
    torch.testing.assert_close(on_cuda[keep], on_cpu[keep], atol=2e-3, rtol=2e-3)  # (TF32)


@needs_cuda
def test_tiny_model_learns_on_cuda(tiny_data, tmp_path):
    """With the defaults there: bf16 autocast, fused AdamW, MFU where the peak is known."""
    from rbprep.train.loop import _peak_flops

    config = TrainConfig(**{**TINY, "steps": 40, "eval_every": 20, "device": "cuda"})
    summary = pretrain(tiny_data, tmp_path / "run", config, progress=False)
    records = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    losses = [r["loss"] for r in records if "loss" in r]
    vocab = json.loads((tiny_data / "manifest.json").read_text())["tokenizer"]["vocab_size"]
    assert losses[0] > math.log(vocab) - 0.5
    assert np.mean(losses[-5:]) < losses[0] - 1.0
    assert summary.steps == 40 and summary.val_loss < losses[0]
    known_peak = _peak_flops(torch.device("cuda")) is not None
    assert (records[0]["mfu"] is not None) == known_peak
    print("cuda run:", torch.cuda.get_device_name(), records[-1])


@needs_cuda
def test_resume_on_cuda_continues(tiny_data, tmp_path):
    """The same data and state after a resume; the losses agree up to the GPU's
    non-deterministic kernels (atomic adds in the embedding's backward)."""
    base = {**TINY, "steps": 8, "save_every": 4, "device": "cuda"}
    pretrain(tiny_data, tmp_path / "straight", TrainConfig(**base), progress=False)
    halves = tmp_path / "halves"
    pretrain(tiny_data, halves, TrainConfig(**{**base, "stop_at": 4}), progress=False)
    pretrain(tiny_data, halves, TrainConfig(**base), resume=True, progress=False)

    def losses(run: str) -> list[float]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines]

    print("cuda resume losses:", losses("straight"), losses("halves"))
    np.testing.assert_allclose(losses("halves"), losses("straight"), atol=0.05)
    step = Path("checkpoints") / "step-00000008" / "trainer.pt"
    straight = torch.load(tmp_path / "straight" / step, weights_only=True, map_location="cpu")
    resumed = torch.load(halves / step, weights_only=True, map_location="cpu")
    assert straight["cursor"] == resumed["cursor"]
    for name, tensor in straight["model"].items():
        torch.testing.assert_close(tensor, resumed["model"][name], atol=0.02, rtol=0.02)


@needs_cuda
def test_export_of_a_cuda_run_loads_in_transformers_on_cpu(tiny_data, tmp_path):
    pytest.importorskip("transformers")
    config = TrainConfig(**{**TINY, "steps": 3, "device": "cuda"})
    pretrain(tiny_data, tmp_path / "run", config, progress=False)
    assert_export_gives_the_checkpoints_logits(tiny_data, tmp_path / "run", step=3)


def torchrun_pretrain(
    data: Path, run: Path, *options: str, ranks: int = 2
) -> subprocess.CompletedProcess:
    """``rbprep pretrain`` of the tiny model on ``ranks`` gloo ranks under torchrun (one:
    a plain process)."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun
    command = [torchrun, "--standalone", "--nproc-per-node", str(ranks), "-m", "rbprep"]
    if ranks == 1:
        command = [sys.executable, "-m", "rbprep"]
    command.append("pretrain")
    command += [str(data), "--out", str(run), "--model", "tiny", "--device", "cpu"]
    command += ["--micro-batch", "4", "--batch-size", "16", "--log-every", "1", *options]
    return subprocess.run(command, timeout=300, capture_output=True, text=True)


@pytest.mark.slow
def test_ddp_under_torchrun_on_two_cpu_ranks(tiny_data, tmp_path):
    done = torchrun_pretrain(tiny_data, tmp_path / "run", "--steps", "3")
    assert done.returncode == 0, done.stderr
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in records] == [1, 2, 3]  # rank 0 alone logs
    assert (tmp_path / "run" / "hf" / "model.safetensors").exists()


@pytest.mark.slow
def test_a_failure_on_rank_zero_stops_every_rank_with_its_message(tiny_data, tmp_path):
    # Rank 0 alone prepares the run directory; the other rank once waited for it forever.
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("someone else's\n")
    done = torchrun_pretrain(tiny_data, tmp_path / "run", "--steps", "2")
    assert done.returncode != 0
    assert "run directory is not empty; use --resume or --force" in done.stderr
    assert "rank 0 stopped: " in done.stderr  # the other rank, told why
    assert "rbprep/train/" not in done.stderr  # no rank's traceback (torchrun has its own)


@pytest.mark.slow
def test_damage_one_rank_finds_stops_every_rank_before_a_step(tiny_data, tmp_path):
    """The ranks divide the shards' hashing (shard 1 is rank 1's of 2): a flipped byte in
    it stops both ranks with the one-line error naming the file, and no step is run."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    damaged = data / "train" / "shard-00001.arrow"
    content = bytearray(damaged.read_bytes())
    content[len(content) // 2] ^= 0x01
    damaged.write_bytes(bytes(content))
    done = torchrun_pretrain(data, tmp_path / "run", "--steps", "2")
    assert done.returncode != 0
    assert done.stderr.count("shard-00001.arrow: checksum differs") >= 2  # both ranks say it
    assert "rbprep/train/" not in done.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.slow
def test_resume_is_exact_under_two_gloo_ranks_each_with_its_own_random_stream(tiny_data, tmp_path):
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    assert torchrun_pretrain(tiny_data, straight, "--steps", "4").returncode == 0
    first = torchrun_pretrain(tiny_data, halves, "--steps", "4", "--stop-at", "2")
    assert first.returncode == 0, first.stderr
    latest = (halves / "checkpoints" / "latest").read_text().strip()
    state = torch.load(halves / "checkpoints" / latest / "trainer.pt", weights_only=True)
    # Each rank's own random state (dropout), and the ranks' streams are not the same.
    assert state["rng_cpu"].shape[0] == 2 and not torch.equal(*state["rng_cpu"])
    second = torchrun_pretrain(tiny_data, halves, "--steps", "4", "--resume")
    assert second.returncode == 0, second.stderr
    losses = [
        [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        for run in (straight, halves)
    ]
    assert losses[0] == losses[1]  # exact: the same floats, step by step
    assert (straight / "hf" / "model.safetensors").read_bytes() == (
        halves / "hf" / "model.safetensors"
    ).read_bytes()


@pytest.mark.slow
def test_elastic_resume_takes_the_same_rows_on_another_number_of_ranks(tiny_data, tmp_path):
    """2 gloo ranks stopped at a checkpoint resume on 1 process, and 1 process on 2 ranks,
    with the same global batch (16 sequences: 4 x 2 micro-batches x 2 ranks, or 4 x 4 x 1):
    every later step takes the same rows (its tokens and sequences) and the losses agree
    up to the order of float sums (a model without dropout: the ranks' dropout streams
    cannot carry over). A global batch the ranks cannot split is a one-line error."""
    model = tmp_path / "model.json"
    model.write_text(
        json.dumps({"layers": 2, "hidden": 64, "heads": 2, "ffn": 128, "dropout": 0.0})
    )
    options = ("--config", str(model), "--steps", "4")
    straight = tmp_path / "straight"
    assert torchrun_pretrain(tiny_data, straight, *options).returncode == 0

    def steps(run: Path) -> list[dict]:
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    expected = steps(straight)
    for first, then in ((2, 1), (1, 2)):
        run = tmp_path / f"from-{first}-to-{then}"
        done = torchrun_pretrain(tiny_data, run, *options, "--stop-at", "2", ranks=first)
        assert done.returncode == 0, done.stderr
        done = torchrun_pretrain(tiny_data, run, *options, "--resume", ranks=then)
        assert done.returncode == 0, done.stderr
        got = steps(run)
        assert [r["step"] for r in got] == [1, 2, 3, 4]
        for mine, theirs in zip(got, expected, strict=True):
            assert (mine["tokens"], mine.get("sequences")) == (
                theirs["tokens"],
                theirs.get("sequences"),
            )
            assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-4)
    done = torchrun_pretrain(
        tiny_data, tmp_path / "from-1-to-2", *options, "--resume", "--micro-batch", "3"
    )
    assert done.returncode != 0
    assert "--batch-size 16 is not a multiple of --micro-batch x ranks (3 x 2)" in done.stderr


def test_each_rank_draws_its_own_stream_from_the_seed():
    from rbprep.train.distributed import rank_seed

    seeds = [rank_seed(0, rank) for rank in range(4)] + [rank_seed(1, 0)]
    assert len(set(seeds)) == 5 and rank_seed(0, 1) == rank_seed(0, 1)


# --- mixtures ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def other_data(tmp_path_factory, builtin_corpus, small_vocab) -> Path:
    """A second, smaller dataset with tiny_data's tokenizer and options: the built-in
    corpus's last 300 KB, in 64-token rows, 2 masked copies, with a valid split."""
    out = tmp_path_factory.mktemp("other-data")
    text = builtin_corpus.read_text(encoding="utf-8")[-300_000:]
    (out / "corpus.txt").write_text(text.split("\n\n", 1)[1], encoding="utf-8")
    config = ShardConfig(seq_len=64, dup=2, valid_fraction=0.05)
    shard([out / "corpus.txt"], small_vocab / "bpe", out / "data", config, force=True)
    return out / "data"


def test_a_mixture_takes_sequences_by_weight_with_no_random_state(tiny_data, other_data):
    """Weights 3,1: after every sample, each dataset's count is within one of its share
    (greedy blending); the same steps every time; each dataset reads its own rows in its
    own order, and the small one, run out, starts its next epoch with its next copy; the
    ranks split a step's rows whatever their number (elastic)."""
    datasets = [open_dataset(tiny_data), open_dataset(other_data)]
    mixture = Mixture(datasets, [3, 1])
    loader = Loader(mixture, FixedBatches(4, accumulation=2), seed=5)
    taken = np.zeros(2, dtype=np.int64)
    small_rows: list[int] = []
    cursor = Cursor()
    for _ in range(3 * len(datasets[1]) // 4 + 2):  # past the small dataset's first epoch
        step, parts, copies = loader._plan(cursor)
        assert sum(step.sources) == step.sequences == 8
        taken += step.sources
        assert np.all(np.abs(taken - np.array([0.75, 0.25]) * taken.sum()) <= 1)
        rows = np.concatenate(parts)
        small = rows[rows >= mixture.starts[1]]
        small_rows += small.tolist()
        row_copies = np.concatenate(copies)[rows >= mixture.starts[1]]
        epochs = (np.arange(len(small_rows) - len(small), len(small_rows))) // len(datasets[1])
        assert row_copies.tolist() == (epochs % 2).tolist()  # epoch e reads copy e % dup
        cursor = step.cursor
    first_epoch = small_rows[: len(datasets[1])]
    assert sorted(first_epoch) == list(range(mixture.starts[1], mixture.starts[2]))
    assert len(small_rows) > len(datasets[1])  # its second epoch began
    again = Loader(mixture, FixedBatches(4, accumulation=2), seed=5)
    for a, b in zip(
        micro_batches(loader, Cursor(0, 3)), micro_batches(again, Cursor(0, 3)), strict=True
    ):
        torch.testing.assert_close(a["input_ids"], b["input_ids"])
    # Two ranks, micro-batches of 2 (the same global batch): together, the same rows.
    one = np.sort(np.concatenate(loader._plan(Cursor(0, 5))[1]))
    ranks = [
        Loader(mixture, FixedBatches(2, accumulation=2), seed=5, rank=r, world=2) for r in (0, 1)
    ]
    both = np.sort(np.concatenate([np.concatenate(r._plan(Cursor(0, 5))[1]) for r in ranks]))
    np.testing.assert_array_equal(one, both)
    # A micro-batch of mixed rows equals each dataset's own batch of them.
    rows, row_copies = (
        np.concatenate(loader._plan(Cursor(0, 1))[1]),
        np.concatenate(loader._plan(Cursor(0, 1))[2]),
    )
    got = mixture.batch(rows, row_copies)
    for i in range(len(rows)):
        source = int(rows[i] >= mixture.starts[1])
        own = datasets[source].batch([rows[i] - mixture.starts[source]], copy=int(row_copies[i]))
        np.testing.assert_array_equal(got["labels"][i], own["labels"][0])


def test_pretrain_on_a_mixture_logs_sources_and_resumes_exactly(tiny_data, other_data, tmp_path):
    config = TrainConfig(**{**TINY, "steps": 4, "eval_every": 2, "weights": (3.0, 1.0)})
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    pretrain([tiny_data, other_data], straight, config, progress=False)
    pretrain([tiny_data, other_data], halves, replace(config, stop_at=2), progress=False)
    pretrain([tiny_data, other_data], halves, config, resume=True, progress=False)
    records = [
        [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        for run in (straight, halves)
    ]
    assert [r["loss"] for r in records[0]] == [r["loss"] for r in records[1]]
    assert [sum(r["sources"]) for r in records[0]] == [16] * 4
    assert sum(r["sources"][0] for r in records[0]) == 48  # 3:1 of 64
    evaluated = [r for r in records[0] if "val_losses" in r]
    assert len(evaluated) == 2 and len(evaluated[0]["val_losses"]) == 2
    with pytest.raises(RbprepError, match="--resume with --weights"):
        pretrain(
            [tiny_data, other_data],
            halves,
            replace(config, weights=(1.0, 1.0)),
            resume=True,
            progress=False,
        )


def test_datasets_that_cannot_mix_are_refused_in_one_line(
    tiny_data, other_data, tmp_path, builtin_corpus, small_vocab
):
    longer = tmp_path / "longer"
    shard([builtin_corpus], small_vocab / "bpe", longer, ShardConfig(seq_len=128, dup=2))
    with pytest.raises(RbprepError, match=r"another seq_len than .* \(128 against 64\)"):
        pretrain([tiny_data, longer], tmp_path / "run", TrainConfig(**TINY), progress=False)
    with pytest.raises(RbprepError, match="--weights gives 1 weights for 2 datasets"):
        pretrain(
            [tiny_data, other_data],
            tmp_path / "run",
            TrainConfig(**{**TINY, "weights": (1.0,)}),
            progress=False,
        )
    budget = TrainConfig(**{**TINY, "batch_size": None, "batch_tokens": 4096})
    with pytest.raises(RbprepError, match="--batch-tokens with a mixture is not supported"):
        pretrain([tiny_data, other_data], tmp_path / "run", budget, progress=False)
    result = CliRunner().invoke(
        main,
        [
            "pretrain",
            str(tiny_data),
            str(other_data),
            "--out",
            str(tmp_path / "r"),
            "--weights",
            "3,x",
        ],
    )
    assert result.exit_code == 2 and "give numbers" in result.output
