"""``shard --format megatron|mds``: the same pipeline, others' files, read by their own
readers (megatron-core's ``IndexedDataset`` and GPT dataset, mosaicml-streaming's
``StreamingDataset``); resume and Dask in tests/test_shard.py and tests/test_dask.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tokenizers import Tokenizer

from rbprep.cli import main
from rbprep.dataset import open_dataset
from rbprep.errors import RbprepError
from rbprep.tokenizer_info import load_tokenizer
from tests.conftest import read_documents
from tests.formats_support import mds_rows, megatron_samples


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def encoded_documents(corpus: Path, vocab: Path) -> list[list[list[int]]]:
    """Every document's units' ids, encoded by tokenizers directly, one unit at a time
    (a unit after the first with the leading space that joins it to the one before)."""
    tokenizer = Tokenizer.from_file(str(vocab / "tokenizer.json"))
    tokenizer.encode_special_tokens = True
    documents, _ = read_documents([corpus])
    return [
        [
            tokenizer.encode(unit if i == 0 else " " + unit, add_special_tokens=False).ids
            for i, unit in enumerate(units)
        ]
        for units in documents
    ]


def megatron_sequences(prefix: Path) -> tuple[list[np.ndarray], np.ndarray]:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    indexed = IndexedDataset(str(prefix))  # copies: its maps close when it goes
    sequences = [np.array(indexed[i]) for i in range(len(indexed))]
    return sequences, np.array(indexed.document_indices)


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_megatron_documents_are_the_corpus_encoded(tmp_path, builtin_corpus, small_vocab, kind):
    """IndexedDataset(OUT/train) holds each document's ids, then the end token: the
    corpus encoded independently, across several partitions."""
    pytest.importorskip("megatron.core")
    out = tmp_path / "data"
    args = ["shard", builtin_corpus, "--tokenizer", small_vocab / kind, "--out", out]
    result = run(*args, "--format", "megatron", "--valid-fraction", "0", "--partition-size",
                 "400KB", "-q", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    _, info = load_tokenizer(small_vocab / kind)
    expected = [
        np.array([i for unit in units for i in unit] + [info.sep_id])
        for units in encoded_documents(builtin_corpus, small_vocab / kind)
    ]
    sequences, documents = megatron_sequences(out / "train")
    assert summary["partitions"] > 2 and len(sequences) == len(expected)
    assert np.array_equal(documents, np.arange(len(expected) + 1))
    for got, wanted in zip(sequences, expected, strict=True):
        assert got.dtype == np.uint16 and np.array_equal(got, wanted)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["format"] == "megatron" and manifest["format_version"] == 3
    train = manifest["splits"]["train"]
    assert [f["file"] for f in train["files"]] == ["train.bin", "train.idx"]
    assert train["rows"] == len(expected) and train["shards"] == []
    assert train["tokens"] == sum(len(s) for s in expected)
    assert not (out / "train").exists() and not (out / "valid.bin").exists()
    assert run("verify", out, "-q").exit_code == 0
    refused = run("verify", out, "--retokenize", "0.5")
    assert refused.exit_code == 1 and "--format megatron" in refused.output
    inspected = run("inspect", out, "--rows", "1")
    assert inspected.exit_code == 0 and "-- row 0:" in inspected.output
    assert (
        Tokenizer.from_file(str(out / "tokenizer.json")).decode(
            expected[0].tolist(), skip_special_tokens=False
        )
        in inspected.output
    )


def test_megatron_split_sentences_makes_each_unit_a_sequence(tmp_path, builtin_corpus, small_vocab):
    pytest.importorskip("megatron.core")
    out = tmp_path / "data"
    args = ["shard", builtin_corpus, "--tokenizer", small_vocab / "bpe", "--out", out, "-q"]
    assert run(*args, "--format", "megatron", "--split-sentences", "--valid-fraction", "0",
               "--partition-size", "400KB").exit_code == 0  # fmt: skip
    _, info = load_tokenizer(small_vocab / "bpe")
    documents = encoded_documents(builtin_corpus, small_vocab / "bpe")
    sequences, indices = megatron_sequences(out / "train")
    expected_indices = np.concatenate(([0], np.cumsum([len(d) for d in documents])))
    assert np.array_equal(indices, expected_indices)
    flat = [unit for units in documents for unit in units]
    ends = set((expected_indices[1:] - 1).tolist())
    for n, (got, unit) in enumerate(zip(sequences, flat, strict=True)):
        assert got.tolist() == unit + ([info.sep_id] if n in ends else [])


def test_megatron_gpt_dataset_builds_samples_from_shard_output(
    tmp_path, builtin_corpus, small_vocab
):
    """Megatron's own sample builder (GPTDataset, on CPU) serves windows of the data."""
    pytest.importorskip("megatron.core")
    out = tmp_path / "data"
    args = ["shard", builtin_corpus, "--tokenizer", small_vocab / "bpe", "--out", out, "-q"]
    assert run(*args, "--format", "megatron").exit_code == 0
    _, info = load_tokenizer(small_vocab / "bpe")
    windows = megatron_samples(str(out / "valid"), 128, info.vocab_size, info.sep_id,
                               cache=tmp_path / "cache")  # fmt: skip
    assert len(windows) > 10 and all(w.max() < info.vocab_size for w in windows)


@pytest.mark.parametrize(("mode", "seq_len"), [("full-sentences", 128), ("doc-sentences", 64)])
def test_mds_samples_are_the_arrow_rows(tmp_path, builtin_corpus, small_vocab, mode, seq_len):
    """StreamingDataset(local=OUT/train) reads one sample per packed row: the Arrow
    format's rows of the same options, unpadded, with their lengths."""
    common = ["shard", builtin_corpus, "--tokenizer", small_vocab / "bpe", "-q", "--mode", mode]
    common += ["--seq-len", seq_len, "--partition-size", "400KB", "--valid-fraction", "0.05"]
    assert run(*common, "--out", tmp_path / "mds", "--format", "mds").exit_code == 0
    assert run(*common, "--out", tmp_path / "arrow", "--masking", "dynamic").exit_code == 0
    for split in ("train", "valid"):
        samples = mds_rows(tmp_path / "mds" / split)
        rows = open_dataset(tmp_path / "arrow", split)
        batch = rows.batch(np.arange(len(rows)), copy=None)
        assert len(samples) == len(rows) > 0
        for n, sample in enumerate(samples):
            length = int(batch["attention_mask"][n].sum())
            assert sample["length"] == length
            assert sample["input_ids"].dtype == np.uint16
            assert np.array_equal(sample["input_ids"], batch["input_ids"][n, :length])
    checked = run("verify", tmp_path / "mds", "--retokenize", "1")
    assert checked.exit_code == 0 and "equal the stored ids" in checked.output, checked.output
    inspected = run("inspect", tmp_path / "mds", "--rows", "2")
    assert inspected.exit_code == 0 and "Sample rows of train, as stored" in inspected.output


def test_other_formats_refuse_masks_and_rbprep_reader(tmp_path, small_corpus, small_vocab):
    args = ["shard", small_corpus, "--tokenizer", small_vocab / "bpe", "--out", tmp_path / "d"]
    for extra in (["--dup", "5"], ["--masking", "dynamic"], ["--whole-word"]):
        refused = run(*args, "--format", "mds", *extra)
        assert refused.exit_code == 1 and "stores no masks" in refused.output
    refused = run(*args, "--split-sentences")
    assert refused.exit_code == 1 and "--format megatron" in refused.output
    for extra in (["--seq-len", "128"], ["--mode", "doc-sentences"]):
        refused = run(*args, "--format", "megatron", *extra)
        assert refused.exit_code == 1 and "writes documents, not rows" in refused.output
    assert run(*args, "--format", "mds", "-q").exit_code == 0
    with pytest.raises(RbprepError, match="StreamingDataset"):
        open_dataset(tmp_path / "d")
    inspected = run("inspect", tmp_path / "d")
    assert inspected.exit_code == 0 and "--format mds" in inspected.output
    # --force with another format leaves nothing of the one it replaces (3 documents:
    # none fell to valid, which gets no files)
    assert run(*args, "--format", "megatron", "--force", "-q").exit_code == 0
    names = sorted(p.name for p in (tmp_path / "d").iterdir() if not p.name.startswith("."))
    assert names == ["manifest.json", "tokenizer.json", "train.bin", "train.idx"]


@pytest.mark.slow
def test_megatron_and_mds_on_an_object_store_equal_local(
    tmp_path, object_store, builtin_corpus, small_vocab
):
    """--out on S3 (a real endpoint on loopback): the partitions' pairs, the joined
    .bin streamed into an object, the MDS index; the same bytes as a local run."""
    for output in ("megatron", "mds"):
        args = ["shard", builtin_corpus, "--tokenizer", small_vocab / "bpe", "--format", output]
        args += ["--partition-size", "1MB", "-q"]
        assert run(*args, "--out", tmp_path / output).exit_code == 0
        result = run(*args, "--out", object_store.uri(f"sinks/{output}"))
        assert result.exit_code == 0, result.output
        remote = object_store.download(f"sinks/{output}")
        local = {
            str(p.relative_to(tmp_path / output)): p.read_bytes()
            for p in sorted((tmp_path / output).rglob("*"))
            if p.is_file() and not p.name.startswith(".") and ".parts" not in p.parts
        }
        assert {k: v for k, v in remote.items() if not k.startswith(".")} == local
