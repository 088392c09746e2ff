"""The training side of RoBERTa's paper in full: attention within documents (padded and
packed), token-budget steps, batch recipes, and load_model; real torch, real datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from rbprep.cli import main  # noqa: E402
from rbprep.dataset import open_dataset  # noqa: E402
from rbprep.errors import RbprepError  # noqa: E402
from rbprep.sharding import ShardConfig, shard  # noqa: E402
from rbprep.train import load_model  # noqa: E402
from rbprep.train.loop import RECIPES, TrainConfig, pretrain  # noqa: E402

TINY = dict(model="tiny", micro_batch=8, batch_size=16, lr=2e-3, log_every=1, eval_every=1000)


@pytest.fixture(scope="module")
def documents_data(tmp_path_factory, small_vocab) -> Path:
    """Short documents of a few lines each, packed full-sentences into 64-token rows, so
    most rows hold several documents."""
    rng = np.random.default_rng(5)
    words = [
        "the",
        "a",
        "river",
        "stone",
        "light",
        "moves",
        "under",
        "over",
        "quietly",
        "city",
        "old",
        "new",
        "green",
    ]
    documents = [
        [" ".join(rng.choice(words, rng.integers(3, 12))) + "." for _ in range(rng.integers(1, 4))]
        for _ in range(400)
    ]
    work = tmp_path_factory.mktemp("documents")
    corpus = work / "documents.txt"
    corpus.write_text("\n\n".join("\n".join(lines) for lines in documents) + "\n")
    shard([corpus], small_vocab / "bpe", work / "data", ShardConfig(seq_len=64, dup=2))
    return work / "data"


@pytest.fixture(scope="module")
def document_run(documents_data, tmp_path_factory) -> Path:
    """A tiny model trained a few steps with --attention document."""
    run = tmp_path_factory.mktemp("run") / "run"
    config = TrainConfig(**{**TINY, "steps": 4, "save_every": 2, "attention": "document"})
    pretrain(documents_data, run, config, progress=False)
    return run


def rows_with_documents(data: Path, count: int = 6) -> dict[str, torch.Tensor]:
    """Unmasked rows holding at least three documents, as tensors."""
    dataset = open_dataset(data)
    arrays = dataset.batch(np.arange(len(dataset)), copy=None)
    several = np.flatnonzero(arrays["document_ids"].max(axis=1) >= 2)[:count]
    assert len(several) == count
    return {name: torch.from_numpy(array[several]) for name, array in arrays.items()}


@pytest.mark.parametrize("packed", [False, True])
def test_a_document_sees_only_itself(document_run, documents_data, packed):
    model = load_model(document_run)
    model.packed = packed
    batch = rows_with_documents(documents_data)
    ids, mask, documents = batch["input_ids"], batch["attention_mask"], batch["document_ids"]
    others = (documents != 1) & (mask == 1)  # every document but the second, specials too
    replaced = ids.clone()
    replaced[others] = torch.randint(5, 200, (int(others.sum()),))
    mine = documents == 1
    with torch.no_grad():
        before = model(ids, mask, documents)
        after = model(replaced, mask, documents)
        torch.testing.assert_close(after[mine], before[mine], atol=1e-5, rtol=0)
        # Row attention: the same change reaches the second document.
        row_before, row_after = model(ids, mask), model(replaced, mask)
        assert (row_after[mine] - row_before[mine]).abs().max() > 1e-3


def test_a_packed_row_gives_each_document_the_logits_it_gets_alone_in_transformers(
    document_run, documents_data
):
    transformers = pytest.importorskip("transformers")
    theirs = transformers.RobertaForMaskedLM.from_pretrained(document_run / "hf").eval()
    ours = load_model(document_run)
    ours.packed = True
    batch = rows_with_documents(documents_data)
    ids, mask, documents = batch["input_ids"], batch["attention_mask"], batch["document_ids"]
    with torch.no_grad():
        packed = ours(ids, mask, documents)
        checked = 0
        for row in range(len(ids)):
            for document in range(int(documents[row].max()) + 1):
                where = documents[row] == document
                alone = ids[row][where][None]  # (1, its length)
                expected = theirs(input_ids=alone, attention_mask=torch.ones_like(alone)).logits
                torch.testing.assert_close(packed[row][where], expected[0], atol=1e-5, rtol=1e-4)
                checked += 1
    assert checked >= 3 * len(ids)


def test_packed_and_padded_document_attention_agree_in_loss_and_gradients(documents_data):
    from rbprep.train.model import RobertaMLM, preset

    dataset = open_dataset(documents_data)
    batch = dataset.batch(np.arange(12), copy=0)
    tensors = {name: torch.from_numpy(array) for name, array in batch.items()}
    config = preset("tiny", dataset.manifest.tokenizer.vocab_size, dataset.pad_id, 64)
    torch.manual_seed(0)
    model = RobertaMLM(config).eval()  # dropout off: the two paths draw differently
    results = []
    for packed in (False, True):
        model.packed = packed
        model.zero_grad()
        loss = model(**tensors, reduction="sum")
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-4, rtol=1e-5)
    for a, b in zip(results[1][1], results[0][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_load_model_takes_a_run_a_checkpoint_or_an_export(document_run, tmp_path):
    ids = torch.tensor([[0, 50, 60, 70, 2]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        expected = load_model(document_run / "hf")(ids, mask)
        checkpoint = document_run / "checkpoints" / "step-00000004"
        for path in (document_run, checkpoint, checkpoint / "trainer.pt"):
            model = load_model(path)
            assert not model.training
            torch.testing.assert_close(model(ids, mask), expected)
        earlier = load_model(document_run / "checkpoints" / "step-00000002")(ids, mask)
        assert not torch.allclose(earlier, expected)
    for path, message in (
        (tmp_path / "nothing", "no such run, checkpoint or model directory"),
        (tmp_path, "neither a model directory nor a run"),
    ):
        with pytest.raises(RbprepError, match=message):
            load_model(path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    (broken / "config.json").write_text((document_run / "hf" / "config.json").read_text())
    with pytest.raises(RbprepError, match=r"model\.safetensors: not readable"):
        load_model(broken)


def test_token_budget_steps_train_with_the_loss_of_all_masked_positions(
    builtin_corpus, small_vocab, tmp_path
):
    """DOC-SENTENCES rows under --batch-tokens: every step logs its tokens and sequences,
    within the budget; how a step is cut into micro-batches changes neither the losses
    nor the weights (dropout off); --resume is exact."""
    data = tmp_path / "doc"
    shard(
        [builtin_corpus],
        small_vocab / "bpe",
        data,
        ShardConfig(seq_len=64, dup=2, mode="doc-sentences"),
    )
    dataset = open_dataset(data)
    tiny = {"layers": 2, "hidden": 128, "heads": 2, "ffn": 512, "dropout": 0.0}
    base = {
        **TINY,
        "batch_size": None,
        "batch_tokens": 900,
        "steps": 4,
        "save_every": 2,
        "model_config": tiny,
    }
    runs = {}
    for micro in (64, 900):
        config = TrainConfig(**{**base, "micro_batch_tokens": micro})
        pretrain(data, tmp_path / str(micro), config, progress=False)
        records = [
            json.loads(line)
            for line in (tmp_path / str(micro) / "metrics.jsonl").read_text().splitlines()
        ]
        assert [r["step"] for r in records] == [1, 2, 3, 4]
        assert all(0 < r["tokens"] <= 900 and r["sequences"] >= 900 // 64 for r in records)
        runs[micro] = records
    assert [r["tokens"] for r in runs[64]] == [r["tokens"] for r in runs[900]]
    np.testing.assert_allclose(
        [r["loss"] for r in runs[64]], [r["loss"] for r in runs[900]], rtol=1e-5
    )
    halves = tmp_path / "halves"
    config = TrainConfig(**{**base, "micro_batch_tokens": 64})
    pretrain(data, halves, TrainConfig(**{**base, "micro_batch_tokens": 64, "stop_at": 2}))
    pretrain(data, halves, config, resume=True, progress=False)
    resumed = [json.loads(line)["loss"] for line in (halves / "metrics.jsonl").open()]
    assert resumed == [r["loss"] for r in runs[64]]
    assert len(dataset) > 0


def test_recipes_set_batch_steps_lr_and_warmup_and_explicit_options_win():
    config = TrainConfig(recipe="bsz2k").resolved()
    assert (config.batch_size, config.steps, config.lr, config.warmup) == (
        2048,
        125_000,
        7e-4,
        10_000,
    )
    config = TrainConfig(recipe="bsz8k", lr=5e-4, steps=10).resolved()
    assert (config.batch_size, config.steps, config.lr, config.warmup) == (8192, 10, 5e-4, 1)
    config = TrainConfig(recipe="bsz256", batch_tokens=100_000).resolved()
    assert config.batch_size is None and config.steps == 1_000_000
    config = TrainConfig().resolved()
    assert (config.batch_size, config.steps, config.lr, config.warmup) == (256, None, 6e-4, None)
    # The same sequences seen, as in the paper's table.
    seen = {recipe.batch_size * recipe.steps for recipe in RECIPES.values()}
    assert max(seen) / min(seen) < 1.02
    help_text = CliRunner().invoke(main, ["pretrain", "--help"]).output
    assert all(name in help_text for name in RECIPES)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "16", "--batch-tokens", "1000"], "not both"),
        (["--micro-batch-tokens", "100"], "goes with --batch-tokens"),
        (["--batch-tokens", "10"], "cannot hold one row"),
        (["--batch-tokens", "1000", "--micro-batch-tokens", "10"], "cannot hold a row"),
    ],
)
def test_bad_budget_options_are_one_line_errors(documents_data, tmp_path, args, message):
    result = CliRunner().invoke(
        main, ["pretrain", str(documents_data), "--out", str(tmp_path / "run"), *args]
    )
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output


def pretrain_cli(data: Path, run: Path, *options: str):
    """``rbprep pretrain`` of the tiny model on the CPU, quiet."""
    args = ["pretrain", str(data), "--out", str(run), "--model", "tiny", "--device", "cpu"]
    return CliRunner().invoke(main, [*args, "--quiet", *options])


def test_cli_document_attention_with_a_token_budget_trains_and_exports(documents_data, tmp_path):
    run = tmp_path / "run"
    budget = ("--batch-tokens", "2000")
    result = pretrain_cli(documents_data, run, "--attention", "document", *budget, "--steps", "3")
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "config.json").read_text())["train"]
    assert saved["attention"] == "document" and saved["batch_tokens"] == 2000
    assert (run / "hf" / "model.safetensors").is_file()
    # --resume with the other attention is refused: it would change what is learnt.
    result = pretrain_cli(documents_data, run, "--resume", *budget, "--steps", "4")
    assert result.exit_code == 1 and "--attention document -> row" in result.output


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_cuda_packed_document_attention_matches_the_cpu(document_run, documents_data):
    """The variable-length kernel (flash-attn's or torch's) under bf16 autocast against
    the padded block-diagonal path in fp32 on the CPU."""
    model = load_model(document_run)
    batch = rows_with_documents(documents_data)
    ids, mask, documents = batch["input_ids"], batch["attention_mask"], batch["document_ids"]
    with torch.no_grad():
        on_cpu = model(ids, mask, documents)
        model.to("cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            assert model._packs(ids.cuda())
            on_cuda = model(ids.cuda(), mask.cuda(), documents.cuda()).float().cpu()
    real = mask.bool()
    torch.testing.assert_close(on_cuda[real], on_cpu[real], atol=0.1, rtol=0.05)  # bf16


@needs_cuda
def test_cuda_document_attention_with_a_token_budget_learns(documents_data, tmp_path):
    config = TrainConfig(
        **{
            **TINY,
            "batch_size": None,
            "batch_tokens": 4096,
            "steps": 30,
            "attention": "document",
            "device": "cuda",
        }
    )
    summary = pretrain(documents_data, tmp_path / "run", config, progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    losses = [r["loss"] for r in records]
    assert np.mean(losses[-5:]) < losses[0] - 1.0 and summary.steps == 30
    print("cuda document attention:", torch.cuda.get_device_name(), records[-1])


def test_a_recipe_keeps_its_warmup_share_when_the_run_is_shorter():
    config = TrainConfig(recipe="bsz2k", steps=2_000).resolved()
    assert config.warmup == 160  # 10K of 125K steps: 8%
    by_epochs = TrainConfig(recipe="bsz8k", epochs=2).resolved()
    assert by_epochs.steps is None and by_epochs.warmup is None
    assert by_epochs.warmup_steps(1_000) == round(2_500 / 31_000 * 1_000)
    assert TrainConfig().resolved().warmup_steps(1_000) == 60  # 6% without a recipe
    assert TrainConfig(warmup=7).resolved().warmup_steps(1_000) == 7
