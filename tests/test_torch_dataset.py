"""``rbprep.torch_dataset``: items are the reader's rows of the epoch's copy, a batch is one
read, the epoch reaches DataLoader workers, and transformers' own ``Trainer`` trains on
copy ``e`` in epoch ``e`` (real shards, a real tiny RoBERTa; no mocks)."""

from __future__ import annotations

import contextlib
import pickle
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rbprep  # noqa: E402
from rbprep.dataset import open_dataset  # noqa: E402
from rbprep.errors import RbprepError  # noqa: E402

COLUMNS = ("input_ids", "attention_mask", "labels")
DATASETS = ("static_data", "dynamic_data")


@pytest.fixture(scope="session")
def little_corpus(tmp_path_factory, builtin_corpus) -> Path:
    """The built-in corpus's first 40 KB of documents under 4 KB: about 400 rows of 32
    tokens, most of them holding parts of two documents."""
    documents = builtin_corpus.read_text(encoding="utf-8")[:400_000].split("\n\n")[:-1]
    kept: list[str] = []
    for document in documents:
        if len(document) < 4000 and sum(map(len, kept)) < 40_000:
            kept.append(document.strip("\n"))
    path = tmp_path_factory.mktemp("little-corpus") / "corpus.txt"
    path.write_text("\n\n".join(kept) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def static_data(tmp_path_factory, little_corpus, small_vocab) -> Path:
    """Two stored masked copies, 32-token rows, with a valid split."""
    out = tmp_path_factory.mktemp("static-data")
    config = rbprep.ShardConfig(seq_len=32, dup=2, valid_fraction=0.05)
    rbprep.shard([little_corpus], small_vocab / "bpe", out, config, force=True)
    return out


@pytest.fixture(scope="session")
def dynamic_data(tmp_path_factory, little_corpus, small_vocab) -> Path:
    """No stored copies: copy k is computed for epoch k."""
    out = tmp_path_factory.mktemp("dynamic-data")
    config = rbprep.ShardConfig(seq_len=32, masking="dynamic", valid_fraction=0.05)
    rbprep.shard([little_corpus], small_vocab / "bpe", out, config, force=True)
    return out


def copy_of(data: Path, epoch: int) -> int:
    dup = open_dataset(data).dup
    return epoch if dup is None else epoch % dup


def assert_rows_equal(items: list[dict[str, Any]], expected: dict[str, np.ndarray]) -> None:
    for name in expected:
        got = torch.stack([item[name] for item in items])
        assert got.dtype == torch.int64, name
        np.testing.assert_array_equal(got.numpy(), expected[name], err_msg=name)


@pytest.mark.parametrize("name", DATASETS)
def test_items_are_the_readers_rows_of_the_epochs_copy(name, request):
    data = request.getfixturevalue(name)
    reader = open_dataset(data)
    dataset = rbprep.torch_dataset(data)
    rows = [0, 1, len(reader) // 2, len(reader) - 1]
    assert len(dataset) == len(reader) and dataset.epoch == 0
    for epoch in (0, 1, 2, 3, 7):
        dataset.set_epoch(epoch)
        assert dataset.copy == copy_of(data, epoch)
        items = [dataset[i] for i in rows]
        assert all(set(item) == set(COLUMNS) for item in items)
        expected = reader.batch(rows, copy=copy_of(data, epoch))
        assert_rows_equal(items, {k: expected[k] for k in COLUMNS})
    everything = range(len(reader))
    epoch_0, epoch_2 = (reader.batch(everything, copy=copy_of(data, e)) for e in (0, 2))
    # static: epoch 2 wraps round to copy 0; dynamic: a new copy every epoch
    assert (epoch_0["labels"] == epoch_2["labels"]).all() == (reader.dup == 2)
    later = rbprep.torch_dataset(data, epoch=2)
    assert_rows_equal(later.__getitems__(list(everything)), {"labels": epoch_2["labels"]})
    with pytest.raises(IndexError):
        dataset[len(reader)]


def test_a_batch_is_one_read_equal_to_its_items_and_positions_restart_per_document(
    static_data,
):
    from transformers import default_data_collator

    from rbprep.train.model import position_ids

    reader = open_dataset(static_data)
    dataset = rbprep.torch_dataset(static_data, epoch=1, positions=True)
    indices = [*np.random.default_rng(0).integers(0, len(reader), 24).tolist(), 3, 3]
    reads = []
    batch_of = dataset.reader.batch  # the real reader, counted
    dataset.reader.batch = lambda *args, **kwargs: reads.append(args) or batch_of(*args, **kwargs)
    items = dataset.__getitems__(indices)
    assert len(reads) == 1
    assert [set(item) for item in items] == [{*COLUMNS, "position_ids", "document_ids"}] * 26
    singles = [dataset[i] for i in indices]
    for item, single in zip(items, singles, strict=True):
        for name in item:
            torch.testing.assert_close(item[name], single[name], rtol=0, atol=0)

    batch = default_data_collator(items)  # what the Trainer's default collation makes
    expected = reader.batch(indices, copy=1)
    assert {name: tuple(tensor.shape) for name, tensor in batch.items()} == {
        name: (26, reader.seq_len) for name in items[0]
    }
    assert_rows_equal(items, {k: expected[k] for k in (*COLUMNS, "document_ids")})
    document_ids = torch.from_numpy(expected["document_ids"]).long()
    mask = torch.from_numpy(expected["attention_mask"])
    assert torch.equal(batch["position_ids"], position_ids(mask, document_ids, reader.pad_id))
    # RoBERTa's numbering by hand: pad_id + 1 at each document's start, pad_id on padding.
    assert (expected["document_ids"].max(axis=1) > 0).any(), "no row holds two documents"
    for row, documents in zip(
        batch["position_ids"].tolist(), expected["document_ids"], strict=True
    ):
        start, want = 0, []
        for t, document in enumerate(documents):
            if t and document != documents[t - 1]:
                start = t
            want.append(reader.pad_id if document < 0 else reader.pad_id + 1 + t - start)
        assert row == want


def test_bad_split_and_missing_dataset_are_one_line_errors(static_data, tmp_path):
    with pytest.raises(RbprepError, match="split must be one of") as caught:
        rbprep.torch_dataset(static_data, split="test")
    assert "\n" not in str(caught.value)
    missing = tmp_path / "nothing-here"
    with pytest.raises(RbprepError) as caught:
        rbprep.torch_dataset(missing)
    assert str(missing) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="at least 0"):
        rbprep.torch_dataset(static_data).set_epoch(-1)


def test_it_pickles_without_its_memory_maps_and_reopens_on_first_use(static_data):
    dataset = rbprep.torch_dataset(static_data, split="valid", epoch=1)
    data = pickle.dumps(dataset)
    assert len(data) < 4096  # the epoch and the options, no shard bytes
    again = pickle.loads(data)
    assert again._reader is None and again.epoch == 1 and len(again) == len(dataset)
    assert_rows_equal([again[0], again[len(again) - 1]], {
        k: np.stack([dataset[0][k], dataset[len(dataset) - 1][k]]) for k in COLUMNS
    })  # fmt: skip
    again.set_epoch(0)  # a pickled copy is another object: its epoch is its own
    assert dataset.epoch == 1


def epochs_through_a_loader(dataset, epochs, **options) -> list[dict[str, torch.Tensor]]:
    """Each epoch's rows through a DataLoader (in order, batches of 8), after set_epoch."""
    from transformers import default_data_collator

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=8, collate_fn=default_data_collator, **options
    )
    seen = []
    for epoch in epochs:
        dataset.set_epoch(epoch)
        batches = list(loader)
        seen.append({k: torch.cat([b[k] for b in batches]) for k in COLUMNS})
    return seen


@pytest.mark.parametrize("persistent", [False, True], ids=["workers", "persistent-workers"])
@pytest.mark.parametrize("name", DATASETS)
def test_dataloader_workers_serve_copy_e_in_epoch_e(name, persistent, request):
    data = request.getfixturevalue(name)
    reader = open_dataset(data, "valid")
    dataset = rbprep.torch_dataset(data, "valid")
    epochs = (0, 1, 2)
    seen = epochs_through_a_loader(dataset, epochs, num_workers=2, persistent_workers=persistent)
    for epoch, rows in zip(epochs, seen, strict=True):
        expected = reader.batch(range(len(reader)), copy=copy_of(data, epoch))
        for k in COLUMNS:
            np.testing.assert_array_equal(rows[k].numpy(), expected[k], err_msg=f"epoch {epoch}")


def test_spawned_persistent_workers_open_their_own_reader_and_follow_set_epoch(dynamic_data):
    """Spawned workers get the object pickled (no reader) and still share the epoch."""
    reader = open_dataset(dynamic_data, "valid")
    dataset = rbprep.torch_dataset(dynamic_data, "valid")
    seen = epochs_through_a_loader(
        dataset,
        (0, 3),
        num_workers=2,
        persistent_workers=True,
        multiprocessing_context="spawn",
    )
    for epoch, rows in zip((0, 3), seen, strict=True):
        expected = reader.batch(range(len(reader)), copy=epoch)
        np.testing.assert_array_equal(rows["labels"].numpy(), expected["labels"])


# --- transformers' Trainer ---------------------------------------------------------------


class Seen:
    """The rows a model was given, by the Trainer's epoch, and the losses it logged."""

    def __init__(self) -> None:
        self.epochs: list[list[tuple[np.ndarray, np.ndarray]]] = []
        self.losses: list[float] = []

    def callback(self) -> Any:
        from transformers import TrainerCallback

        seen = self

        class Record(TrainerCallback):
            def on_epoch_begin(self, args, state, control, **kwargs):
                seen.epochs.append([])

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    seen.losses.append(logs["loss"])

        return Record()

    def hook(self, module, args, kwargs) -> None:
        ids, labels = kwargs["input_ids"].numpy(), kwargs["labels"].numpy()
        self.epochs[-1].extend(zip(ids.copy(), labels.copy(), strict=True))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Train the tiny model on one thread: on two busy cores, more threads only wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def tiny_roberta(data: Path) -> Any:
    from transformers import RobertaConfig, RobertaForMaskedLM

    reader = open_dataset(data)
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=reader.manifest.tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=reader.seq_len + reader.pad_id + 1,
        pad_token_id=reader.pad_id,
        type_vocab_size=1,
    )
    return RobertaForMaskedLM(config)


def train(data: Path, out: Path, dataset, epochs: int = 2, **options) -> Seen:
    """Train a tiny RobertaForMaskedLM with transformers' Trainer on ``dataset``; record
    every row its forward was given."""
    from transformers import Trainer, TrainingArguments, default_data_collator

    pytest.importorskip("accelerate")  # the Trainer needs it
    model = tiny_roberta(data)
    seen = Seen()
    model.register_forward_pre_hook(seen.hook, with_kwargs=True)
    args = TrainingArguments(
        output_dir=str(out),
        num_train_epochs=epochs,
        per_device_train_batch_size=16,
        learning_rate=3e-3,
        warmup_steps=0,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
        **options,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=default_data_collator,
        callbacks=[seen.callback()],
    )
    with one_thread():
        trainer.train()
    return seen


def assert_each_epoch_saw_its_copy(data: Path, seen: Seen, epochs: list[int]) -> None:
    """Every row seen in epoch e is copy e of some row: its ids and labels match copy e,
    and not the other epoch's copy where the two differ; each epoch saw every row once."""
    reader = open_dataset(data)
    everything = range(len(reader))
    copies = {e: reader.batch(everything, copy=copy_of(data, e)) for e in epochs}
    originals = reader.batch(everything, copy=None)["input_ids"]
    rows_of: dict[bytes, list[int]] = {}
    for i, row in enumerate(originals):
        rows_of.setdefault(row.tobytes(), []).append(i)
    assert len(seen.epochs) == len(epochs)
    for epoch, rows in zip(epochs, seen.epochs, strict=True):
        others = [e for e in epochs if copy_of(data, e) != copy_of(data, epoch)]
        assert others, "the epochs compared must read different copies"
        unmasked = [np.where(labels != -100, labels, ids).tobytes() for ids, labels in rows]
        assert Counter(unmasked) == Counter(row.tobytes() for row in originals)
        told_apart = 0
        for (ids, labels), original in zip(rows, unmasked, strict=True):

            def matches(e: int, ids=ids, labels=labels, original=original) -> bool:
                return any(
                    np.array_equal(ids, copies[e]["input_ids"][i])
                    and np.array_equal(labels, copies[e]["labels"][i])
                    for i in rows_of[original]
                )

            assert matches(epoch), f"a row of epoch {epoch} is not copy {epoch}'s"
            for other in others:
                differ = any(
                    not np.array_equal(copies[epoch]["labels"][i], copies[other]["labels"][i])
                    or not np.array_equal(
                        copies[epoch]["input_ids"][i], copies[other]["input_ids"][i]
                    )
                    for i in rows_of[original]
                )
                if differ:
                    told_apart += 1
                    assert not matches(other), f"a row of epoch {epoch} is also epoch {other}'s"
        assert told_apart > len(rows) // 2


def assert_loss_falls(seen: Seen) -> None:
    first, last = np.mean(seen.losses[:5]), np.mean(seen.losses[-5:])
    assert np.isfinite(seen.losses).all() and last < first - 1.0, (first, last)


def test_trainer_trains_on_copy_e_in_epoch_e_static_with_persistent_workers(static_data, tmp_path):
    """The dup-2 dataset through two persistent DataLoader workers: accelerate's
    set_epoch reaches workers started in epoch 0."""
    dataset = rbprep.torch_dataset(static_data)
    seen = train(
        static_data,
        tmp_path,
        dataset,
        dataloader_num_workers=2,
        dataloader_persistent_workers=True,
    )
    assert_each_epoch_saw_its_copy(static_data, seen, [0, 1])
    assert_loss_falls(seen)


def test_trainer_trains_on_copy_e_in_epoch_e_dynamic_with_positions(dynamic_data, tmp_path):
    """Dynamic masks computed per epoch, with per-document position_ids fed to the model
    (the Trainer drops document_ids, which RobertaForMaskedLM does not take)."""
    dataset = rbprep.torch_dataset(dynamic_data, positions=True)
    seen = train(dynamic_data, tmp_path, dataset)
    assert_each_epoch_saw_its_copy(dynamic_data, seen, [0, 1])
    assert_loss_falls(seen)


def test_a_resumed_trainer_needs_the_callback_for_the_epoch_it_resumes(static_data, tmp_path):
    """Resuming mid-epoch, accelerate's loader skips batches through a SkipBatchSampler
    and no longer passes set_epoch to the dataset; ``trainer_callback`` does."""
    from transformers import Trainer, TrainingArguments, default_data_collator

    pytest.importorskip("accelerate")
    reader = open_dataset(static_data, "valid")  # 40 rows: 5 steps an epoch
    steps_per_epoch = -(-len(reader) // 8)

    def resume(callbacks: list) -> Seen:
        dataset = rbprep.torch_dataset(static_data, "valid")
        seen = Seen()
        model = tiny_roberta(static_data)
        model.register_forward_pre_hook(seen.hook, with_kwargs=True)
        args = TrainingArguments(
            output_dir=str(tmp_path / "run"),
            num_train_epochs=2,
            per_device_train_batch_size=8,
            use_cpu=True,
            report_to="none",
            save_strategy="steps",
            save_steps=steps_per_epoch + 2,  # a checkpoint 2 steps into epoch 1
            disable_tqdm=True,
            seed=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=default_data_collator,
            callbacks=[seen.callback(), *(c(dataset) for c in callbacks)],
        )
        checkpoint = tmp_path / "run" / f"checkpoint-{steps_per_epoch + 2}"
        with one_thread():
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint.exists() else None)
        return seen

    resume([])  # two epochs, leaving the checkpoint
    bare = resume([])
    fixed = resume([lambda dataset: dataset.trainer_callback()])
    copies = {k: reader.batch(range(len(reader)), copy=k) for k in (0, 1)}
    for seen, wanted in ((bare, 0), (fixed, 1)):
        (rows,) = seen.epochs  # the resumed epoch only
        assert len(rows) == len(reader) - 2 * 8
        for k in (0, 1):
            rows_of_copy_k = {
                (ids.tobytes(), labels.tobytes())
                for ids, labels in zip(copies[k]["input_ids"], copies[k]["labels"], strict=True)
            }
            in_copy_k = sum(
                (ids.tobytes(), labels.tobytes()) in rows_of_copy_k for ids, labels in rows
            )
            assert (in_copy_k == len(rows)) == (k == wanted), (k, wanted)
