"""shard, the reader, inspect and verify, end to end on real text (DESIGN §5-7)."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import itertools
import json
import os
import pickle
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from tokenizers import Tokenizer

from rbprep.cli import main
from rbprep.corpus import Corpus, ReadStats, document_coin, open_corpus
from rbprep.dataset import open_dataset
from rbprep.dataset.inspection import inspect
from rbprep.dataset.reader import KEPT, MASKED, RANDOM
from rbprep.dataset.verification import verify
from rbprep.encoding.backends import installed_version
from rbprep.errors import RbprepError
from rbprep.sharding import ShardConfig, shard
from rbprep.storage import Location
from rbprep.tokenizer_info import load_tokenizer


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def dataset_files(root: Path) -> dict[str, bytes]:
    """Every file a dataset consists of (the run's own bookkeeping aside)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and ".parts" not in p.parts
    }


@pytest.fixture(scope="session")
def bpe_dataset(tmp_path_factory, builtin_corpus, small_vocab) -> Path:
    """The built-in corpus sharded at the defaults (seq 512, dup 10) with the BPE."""
    out = tmp_path_factory.mktemp("bpe-data")
    shard([builtin_corpus], small_vocab / "bpe", out, ShardConfig(valid_fraction=0.05), force=True)
    return out


def test_summary_and_manifest(bpe_dataset):
    manifest = json.loads((bpe_dataset / "manifest.json").read_text())
    totals = manifest["totals"]
    assert manifest["parameters"]["dup"] == 10 and manifest["parameters"]["max_predictions"] == 77
    assert (
        totals["rows"] == manifest["splits"]["train"]["rows"] + manifest["splits"]["valid"]["rows"]
    )
    assert manifest["splits"]["valid"]["documents"] > 10  # about 5% of ~900
    # Every content token is in a row: rows hold content + <s> + </s> + separators.
    separators = totals["tokens"] - totals["content_tokens"] - 2 * totals["rows"]
    assert 0 <= separators < totals["documents"]
    assert totals["padding_share"] < 0.06  # FULL-SENTENCES packs tightly
    assert totals["bytes_per_token"] < 8  # the ceiling at dup 10, seq 512
    assert (bpe_dataset / "tokenizer.json").exists()


def test_rows_decode_to_the_input_text_in_order(bpe_dataset, builtin_corpus):
    corpus = open_corpus([builtin_corpus])
    texts = {"train": [], "valid": []}
    for partition in corpus.partitions:
        for index, document in enumerate(corpus.read_partition(partition, ReadStats())):
            valid = document_coin(0, "valid", partition.id, index, 0.05)
            texts["valid" if valid else "train"].append(" ".join(document.units))
    for split in ("train", "valid"):
        dataset = open_dataset(bpe_dataset, split)
        batch = dataset.batch(np.arange(len(dataset)), copy=None)
        lengths = batch["attention_mask"].sum(axis=1)
        rows = [ids[1 : n - 1] for ids, n in zip(batch["input_ids"], lengths, strict=True)]
        sep = dataset.manifest.tokenizer.sep_id
        # Row breaks fall inside documents or between them; inner </s> only between them.
        content = np.concatenate(rows)
        pieces = np.split(content, np.flatnonzero(content == sep))
        decoded = "".join(
            dataset.tokenizer.decode(piece[piece != sep].tolist()) for piece in pieces
        )
        assert decoded == "".join(texts[split])
        assert len(pieces) <= len(texts[split])


def test_batches(bpe_dataset):
    dataset = open_dataset(bpe_dataset)
    assert (dataset.seq_len, dataset.dup, len(dataset)) == (
        512,
        10,
        dataset.manifest.splits["train"].rows,
    )
    indices = np.array([len(dataset) - 1, 0, 5, 5])
    plain = dataset.batch(indices, copy=None)
    assert set(plain) == {"input_ids", "attention_mask", "document_ids"}
    masked = dataset.batch(indices, copy=3)
    for name in ("input_ids", "attention_mask", "labels"):
        assert masked[name].dtype == np.int64 and masked[name].shape == (4, 512)
    np.testing.assert_array_equal(masked["input_ids"][2], masked["input_ids"][3])
    chosen = masked["labels"] != -100
    np.testing.assert_array_equal(masked["labels"][chosen], plain["input_ids"][chosen])
    assert (plain["input_ids"][plain["attention_mask"] == 0] == 1).all()  # <pad> is 1
    unchanged = ~chosen
    np.testing.assert_array_equal(masked["input_ids"][unchanged], plain["input_ids"][unchanged])
    assert isinstance(dataset.tokenizer, Tokenizer)


def test_mask_statistics_over_the_dataset(bpe_dataset):
    dataset = open_dataset(bpe_dataset)
    rows = np.arange(len(dataset))
    plain = dataset.batch(rows, copy=None)
    candidates = (
        plain["attention_mask"].sum()
        - 2 * len(rows)
        - ((plain["input_ids"] == 2).sum() - len(rows))
    )
    shares, per_copy = [], []
    for copy in range(dataset.dup):
        batch = dataset.batch(rows, copy=copy)
        chosen = batch["labels"] != -100
        per_copy.append(chosen)
        masked = (batch["input_ids"] == 4) & chosen
        kept = (batch["input_ids"] == plain["input_ids"]) & chosen
        shares.append(
            (chosen.sum() / candidates, masked.sum() / chosen.sum(), kept.sum() / chosen.sum())
        )
        special = plain["input_ids"] <= 4
        assert not (chosen & special).any()  # specials never chosen
        assert (batch["input_ids"][chosen & ~masked & ~kept] > 4).all()  # nor drawn
    rate, mask_share, keep_share = np.mean(shares, axis=0)
    assert abs(rate - 0.15) < 0.003
    assert abs(mask_share - 0.8) < 0.01 and abs(keep_share - 0.1) < 0.01
    assert (per_copy[0] != per_copy[1]).any(axis=1).all()  # every row's copies differ


def test_verify_passes_and_catches_a_flipped_byte(bpe_dataset, tmp_path):
    assert verify(bpe_dataset).rows == open_dataset(bpe_dataset).manifest.totals.rows
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name, data in dataset_files(bpe_dataset).items():
        (damaged / name).parent.mkdir(parents=True, exist_ok=True)
        (damaged / name).write_bytes(data)
    shard_file = damaged / "train" / "shard-00000.arrow"
    data = bytearray(shard_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard_file.write_bytes(bytes(data))
    result = run("verify", damaged, "-q")
    assert result.exit_code == 1
    assert "shard-00000.arrow: checksum differs" in result.stderr
    failed = run("verify", damaged, "--json")
    assert failed.exit_code == 1 and "checksum differs" in failed.stderr
    assert json.loads(failed.stdout)["ok"] is False
    assert "shard-00000.arrow: checksum differs" in json.loads(failed.stdout)["error"]
    passed = json.loads(run("verify", bpe_dataset, "--json", "--retokenize", "0.01").stdout)
    assert passed["ok"] is True and passed["retokenized_partitions"] == 1
    assert passed["rows"] == open_dataset(bpe_dataset).manifest.splits["train"].rows + (
        open_dataset(bpe_dataset, "valid").manifest.splits["valid"].rows
    )


def test_verify_recomputes_masks(bpe_dataset, tmp_path):
    """A consistent-looking shard whose masks were not made from the seed is caught."""
    from rbprep.dataset.format import file_sha256, shard_bytes

    copy = tmp_path / "copy"
    for name, data in dataset_files(bpe_dataset).items():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes(data)
    path = copy / "train" / "shard-00000.arrow"
    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    positions = table.column("mask_positions").combine_chunks()
    values = positions.values.to_numpy().copy()
    values[positions.offsets[7].as_py()] += 1  # row 7's first masked position moves
    moved = pa.ListArray.from_arrays(positions.offsets, pa.array(values))
    table = table.set_column(1, table.schema.field(1), moved)
    path.write_bytes(shard_bytes(table, None))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"][0]["sha256"] = file_sha256(path)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RbprepError, match=r"shard-00000\.arrow: row 7: masks differ"):
        verify(copy)


def _copy_of(dataset: Path, to: Path) -> Path:
    shutil.copytree(dataset, to, ignore=shutil.ignore_patterns(".*"))
    return to


def _rewrite_column(root: Path, column: str, edit) -> None:
    """Rewrite train shard 0 with ``edit(values)`` applied to a list column's values,
    the manifest's size and sha256 updated: damage no checksum sees."""
    from rbprep.dataset.format import file_sha256, shard_bytes

    path = root / "train" / "shard-00000.arrow"
    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    index = table.schema.get_field_index(column)
    lists = table.column(column).combine_chunks()
    values = lists.values.to_numpy().copy()
    edit(values, lists.offsets.to_numpy())
    edited = pa.ListArray.from_arrays(lists.offsets, pa.array(values, lists.type.value_type))
    table = table.set_column(index, table.schema.field(index), edited)
    path.write_bytes(shard_bytes(table, None))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"][0].update(
        sha256=file_sha256(path), bytes=path.stat().st_size
    )
    (root / "manifest.json").write_text(json.dumps(manifest))


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_reading_a_flipped_byte_or_a_truncated_shard_is_a_one_line_error(bpe_dataset, tmp_path):
    """inspect and pretrain stop before any batch, naming the file and verify."""
    flipped = _copy_of(bpe_dataset, tmp_path / "flipped")
    shard_file = flipped / "train" / "shard-00000.arrow"
    data = bytearray(shard_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard_file.write_bytes(bytes(data))
    truncated = _copy_of(bpe_dataset, tmp_path / "truncated")
    (truncated / "train" / "shard-00001.arrow").write_bytes(data[: len(data) // 3])
    for root, problem in ((flipped, "checksum differs"), (truncated, "the manifest says")):
        for command in (
            ["inspect", root],
            ["pretrain", root, "--out", tmp_path / "run", "--model", "tiny", "--device", "cpu"],
        ):
            line = one_line_error(run(*command))
            assert "shard-0000" in line and problem in line and "run `rbprep verify" in line
    with pytest.raises(RbprepError, match=r"shard-00000\.arrow: checksum differs"):
        open_dataset(flipped)
    # Off, the hash is skipped loudly; the sizes are still checked.
    with pytest.raises(RbprepError, match=r"shard-00001\.arrow: .* bytes, the manifest says"):
        open_dataset(truncated, checksums=False)
    result = run("inspect", flipped, "--skip-checksums")
    assert "not checked against their sha256" in result.stderr


@pytest.mark.parametrize(
    "column, edit, problem",
    [
        ("input_ids", lambda v, o: v.__setitem__(o[3] + 5, 60000), "row 3 has an id outside"),
        (
            "mask_positions",
            lambda v, o: v.__setitem__(o[2], 600),
            "row 2 has a mask position beyond its end",
        ),
        (
            "random_tokens",
            lambda v, o: v.__setitem__(o[np.argmax(np.diff(o) > 0)], 65000),
            r"row \d+ has a random token outside",
        ),
    ],
)
def test_reading_checks_ids_and_positions_whatever_the_checksums(
    bpe_dataset, tmp_path, column, edit, problem
):
    damaged = _copy_of(bpe_dataset, tmp_path / "damaged")
    _rewrite_column(damaged, column, edit)
    for checksums in (True, False):
        with pytest.raises(RbprepError, match=rf"shard-00000\.arrow: {problem}.*rbprep verify"):
            open_dataset(damaged, checksums=checksums)


def test_reading_hashes_a_file_once_per_process_and_again_when_it_changes(
    bpe_dataset, tmp_path, monkeypatch
):
    from rbprep.storage import Location

    copy = _copy_of(bpe_dataset, tmp_path / "copy")
    hashed = []
    original = Location.sha256
    monkeypatch.setattr(Location, "sha256", lambda self: hashed.append(self.name) or original(self))
    open_dataset(copy)
    shards = len(json.loads((copy / "manifest.json").read_text())["splits"]["train"]["shards"])
    assert len(hashed) == shards
    open_dataset(copy)
    assert len(hashed) == shards
    shard_file = copy / "train" / "shard-00000.arrow"
    data = bytearray(shard_file.read_bytes())
    data[-100] ^= 0x01
    shard_file.write_bytes(bytes(data))
    stat = shard_file.stat()
    os.utime(shard_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with pytest.raises(RbprepError, match="checksum differs"):
        open_dataset(copy)


def test_files_open_in_pyarrow_polars_and_duckdb(bpe_dataset):
    path = bpe_dataset / "train" / "shard-00000.arrow"
    table = pa.ipc.open_file(str(path)).read_all()
    assert table.column_names == ["input_ids", "mask_positions", "mask_groups", "random_tokens"]
    assert table.schema.field("input_ids").type == pa.list_(pa.uint16())
    polars = pytest.importorskip("polars")
    frame = polars.read_ipc(path)
    assert frame.height == table.num_rows
    duckdb = pytest.importorskip("duckdb")
    import pyarrow.dataset as pads

    shards = pads.dataset(str(bpe_dataset / "train"), format="ipc")  # noqa: F841 - queried by name
    [(count, longest)] = duckdb.sql("select count(*), max(len(input_ids)) from shards").fetchall()
    manifest = json.loads((bpe_dataset / "manifest.json").read_text())
    assert count == manifest["splits"]["train"]["rows"] and longest <= 512


def test_inspect_shows_numbers_and_marked_rows(bpe_dataset):
    result = inspect(bpe_dataset, rows=2, copy=1)
    text = result.report()
    assert "padding" in text and "B/token" in text and "[<mask>|" in text
    version = installed_version("tokie")
    assert f"encoder:    tokie {version}, 2% of each partition's lines checked" in text
    assert len(result.samples) == 2 and result.samples[0]["masked"] > 0
    cli = run("inspect", bpe_dataset, "--json", "--rows", "1")
    assert json.loads(cli.stdout)["samples"][0]["row"] == 0


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("bpe", "<s>the value [<mask>|of] the [=function]</s>"),
        ("wordpiece", "[CLS] the value [<mask>|of] the [=function] [SEP]"),
    ],
)
def test_marked_rows_keep_the_decoders_spacing(small_vocab, kind, expected):
    from rbprep.dataset.inspection import _marked_text

    tokenizer, info = load_tokenizer(small_vocab / kind)
    content = tokenizer.encode("the value of the function", add_special_tokens=False).ids
    assert len(content) == 5  # every word one piece
    row = np.array([info.cls_id, *content, info.sep_id])
    groups = np.zeros(row.size, dtype=np.int8)
    groups[[3, 5]] = MASKED, KEPT  # "of" masked, "function" kept
    masked = row.copy()
    masked[3] = info.mask_id
    assert _marked_text(tokenizer, row, masked, groups) == expected
    # A random replacement that drew the original token is still a random replacement.
    groups[5] = RANDOM
    drawn = expected.replace("[=function]", "[~function|function]")
    assert _marked_text(tokenizer, row, masked, groups) == drawn


def test_batch_tells_each_chosen_position_s_group(bpe_dataset):
    dataset = open_dataset(bpe_dataset)
    plain = dataset.batch(np.arange(40), copy=None)["input_ids"]
    batch = dataset.batch(np.arange(40), copy=3, groups=True)
    groups, ids = batch["mask_groups"], batch["input_ids"]
    assert ((groups > 0) == (batch["labels"] != -100)).all()
    assert (ids[groups == MASKED] == dataset.mask_id).all()
    assert (ids[groups == KEPT] == plain[groups == KEPT]).all()
    random = groups == RANDOM
    assert random.sum() > 100 and (ids[random] != dataset.mask_id).all()
    assert "mask_groups" not in dataset.batch(np.arange(4), copy=3)


def test_specials_in_text_are_ordinary_text(tmp_path, small_vocab):
    corpus = tmp_path / "inject.txt"
    corpus.write_text("Try <mask> and </s> and <s> and <pad> and [SEP] here.\n\nNext doc <mask>.\n")
    shard([corpus], small_vocab / "bpe", tmp_path / "d", ShardConfig(valid_fraction=0))
    dataset = open_dataset(tmp_path / "d")
    ids = dataset.batch([0], copy=None)["input_ids"][0]
    content = ids[1 : dataset.manifest.totals.tokens - 1]
    assert ids[0] == 0
    assert set(content[content <= 4].tolist()) == {2}  # only the document separator
    assert (content == 2).sum() == 1
    text = dataset.tokenizer.decode(content[content != 2].tolist())
    assert text == "Try <mask> and </s> and <s> and <pad> and [SEP] here.Next doc <mask>."


def test_truncation_and_padding_saved_in_a_tokenizer_are_turned_off(
    tmp_path, small_corpus, small_vocab
):
    """A tokenizer.json saved with truncation and padding on (as published ones can be)
    shards exactly as the same tokenizer without them: no unit cut short, no pad added."""
    config = json.loads((small_vocab / "bpe" / "tokenizer.json").read_text())
    config["truncation"] = {
        "direction": "Right",
        "max_length": 8,
        "strategy": "LongestFirst",
        "stride": 0,
    }
    config["padding"] = {
        "strategy": {"Fixed": 16},
        "direction": "Right",
        "pad_to_multiple_of": None,
        "pad_id": 1,
        "pad_type_id": 0,
        "pad_token": "<pad>",
    }
    saved = tmp_path / "saved" / "tokenizer.json"
    saved.parent.mkdir()
    saved.write_text(json.dumps(config))
    assert Tokenizer.from_file(str(saved)).encode("a b c d e f g h i j").ids[8:] == [1] * 8
    for name, tokenizer in (("plain", small_vocab / "bpe"), ("saved", saved)):
        shard([small_corpus], tokenizer, tmp_path / f"{name}-data", ShardConfig(dup=2))
    plain = dataset_files(tmp_path / "plain-data")
    saved_files = dataset_files(tmp_path / "saved-data")
    arrow = [name for name in plain if name.endswith(".arrow")]
    assert arrow and all(plain[name] == saved_files[name] for name in arrow)


def test_roles_from_tokenizer_config_hold_in_worker_processes(tmp_path, small_vocab):
    """Roles named by the tokenizer's directory (tokenizer_config.json: <cls> ... <eos>)
    reach the workers of a process pool, which see only the dataset's tokenizer.json:
    1 worker and 5 (two processes) write the same bytes, rows start and end as named."""
    tokenizer = Tokenizer.from_file(str(small_vocab / "bpe" / "tokenizer.json"))
    tokenizer.add_special_tokens(["<cls>", "<eos>"])
    directory = tmp_path / "esm"
    directory.mkdir()
    tokenizer.save(str(directory / "tokenizer.json"))
    roles = {"cls_token": "<cls>", "eos_token": "<eos>", "pad_token": "<pad>"}
    (directory / "tokenizer_config.json").write_text(json.dumps({**roles, "mask_token": "<mask>"}))
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"Document {i} says hello.\nLine two {i}.\n\n" for i in range(4000)))
    outputs = []
    for workers in (1, 5):
        out = tmp_path / f"w{workers}"
        args = ["shard", corpus, "--tokenizer", directory, "--out", out, "--dup", "1", "-q"]
        assert run(*args, "--partition-size", "20KB", "--workers", workers).exit_code == 0
        outputs.append(dataset_files(out))
    assert outputs[0] == outputs[1]
    assert len([name for name in outputs[0] if name.startswith("train/")]) > 5
    dataset = open_dataset(tmp_path / "w5")
    row = dataset.batch([0], copy=None)["input_ids"][0][: dataset.manifest.totals.tokens]
    assert tokenizer.id_to_token(int(row[0])) == "<cls>"
    assert "<eos>" in {tokenizer.id_to_token(int(i)) for i in row[1:40]}
    assert verify(tmp_path / "w5").rows == dataset.manifest.totals.rows


def test_text_that_encodes_as_a_special_token_is_refused(tmp_path, small_corpus, small_vocab):
    """A tokenizer whose <mask> is an added token not marked special encodes "<mask>" in
    the corpus as the mask token: a one-line error, not a dataset verify rejects."""
    config = json.loads((small_vocab / "bpe" / "tokenizer.json").read_text())
    next(t for t in config["added_tokens"] if t["content"] == "<mask>")["special"] = False
    loose = tmp_path / "loose.json"
    loose.write_text(json.dumps(config))
    clean = run("shard", small_corpus, "--tokenizer", loose, "--out", tmp_path / "a", "-q")
    assert clean.exit_code == 0  # text that spells no special token is fine
    corpus = tmp_path / "inject.txt"
    corpus.write_text("Fill the <mask> here.\n")
    result = CliRunner().invoke(
        main, ["shard", str(corpus), "--tokenizer", str(loose), "--out", str(tmp_path / "b")]
    )
    assert result.exit_code == 1
    assert "inject.txt: text encodes as the special token '<mask>'" in result.stderr
    assert "Traceback" not in result.output


def test_bpe_dropout_saved_in_a_tokenizer_is_turned_off(tmp_path, small_corpus, small_vocab):
    """Dropout would make every run tokenise differently: off, so runs are reproducible."""
    config = json.loads((small_vocab / "bpe" / "tokenizer.json").read_text())
    config["model"]["dropout"] = 0.5
    dropping = tmp_path / "dropout.json"
    dropping.write_text(json.dumps(config))
    for name, tokenizer in (("a", dropping), ("b", dropping), ("plain", small_vocab / "bpe")):
        shard([small_corpus], tokenizer, tmp_path / name, ShardConfig(dup=1))
    arrow = {name: dataset_files(tmp_path / name) for name in ("a", "b", "plain")}
    shards = [name for name in arrow["a"] if name.endswith(".arrow")]
    assert shards and all(arrow["a"][n] == arrow["b"][n] == arrow["plain"][n] for n in shards)


def test_a_tokenizer_whose_ids_skip(tmp_path, small_corpus, small_vocab):
    """<mask> moved from id 4 to 70,000: ids are stored as uint32, the manifest's
    vocab_size is the id space (what an embedding needs), random replacements are real
    tokens only (never the gap), and verify agrees."""
    config = json.loads((small_vocab / "bpe" / "tokenizer.json").read_text())
    config["model"]["vocab"]["<mask>"] = 70_000
    next(t for t in config["added_tokens"] if t["content"] == "<mask>")["id"] = 70_000
    skipping = tmp_path / "skipping.json"
    skipping.write_text(json.dumps(config))
    out = tmp_path / "d"
    shard([small_corpus], skipping, out, ShardConfig(dup=3, valid_fraction=0))
    dataset = open_dataset(out)
    tokenizer = dataset.manifest.tokenizer
    assert tokenizer.vocab_size == 70_001 and tokenizer.mask_id == 70_000
    assert (
        pa.ipc.open_file(next(out.rglob("*.arrow"))).schema.field("input_ids").type.value_type
        == pa.uint32()
    )
    real = set(Tokenizer.from_file(str(skipping)).get_vocab(with_added_tokens=True).values())
    real -= set(tokenizer.special_ids)
    replaced = []
    for copy in range(3):
        batch = dataset.batch(np.arange(len(dataset)), copy=copy)
        masked = batch["labels"] != -100
        inputs, labels = batch["input_ids"][masked], batch["labels"][masked]
        replaced += inputs[(inputs != 70_000) & (inputs != labels)].tolist()
    assert replaced and set(replaced) <= real
    assert verify(out).rows == len(dataset)


def test_wordpiece_whole_word_doc_sentences(tmp_path, builtin_corpus, small_vocab):
    config = ShardConfig(seq_len=128, dup=3, mode="doc-sentences", whole_word=True)
    summary = shard([builtin_corpus], small_vocab / "wordpiece", tmp_path / "wp", config)
    assert summary.manifest.tokenizer.continuation_prefix == "##"
    verify(tmp_path / "wp")
    dataset = open_dataset(tmp_path / "wp")
    plain = dataset.batch(np.arange(200), copy=None)["input_ids"]
    assert (plain[:, 0] == 2).all()  # [CLS]
    lengths = (plain != 0).sum(axis=1)
    inner = [row[1 : n - 1] for row, n in zip(plain, lengths, strict=True)]
    assert not any((row == 3).any() for row in inner)  # no [SEP] inside doc-sentences rows
    vocab = {i: t for t, i in dataset.tokenizer.get_vocab().items()}
    labels = dataset.batch(np.arange(200), copy=0)["labels"]
    for row, label in zip(plain, labels, strict=True):
        chosen = label != -100
        # A chosen ## piece never stands without the piece before it.
        for position in np.flatnonzero(chosen):
            if vocab[int(row[position])].startswith("##"):
                assert chosen[position - 1]


def test_any_number_of_workers_gives_identical_bytes(tmp_path, builtin_corpus, small_vocab):
    """1: in this process, one partition at a time; 2: on two threads; 5: a pool of two
    processes (THREADS_PER_PROCESS is 4)."""
    common = [builtin_corpus, "--tokenizer", small_vocab / "bpe", "--partition-size", "600KB"]
    common += ["--dup", "2", "-q"]
    outputs = []
    for workers in (1, 2, 5):
        out = tmp_path / str(workers)
        assert run("shard", *common, "--out", out, "--workers", workers).exit_code == 0
        outputs.append(dataset_files(out))
    assert len([n for n in outputs[0] if n.endswith(".arrow")]) > 5
    assert outputs[0] == outputs[1] == outputs[2]


def test_tokies_cached_tokenizer_serves_the_next_run_with_the_same_bytes(
    tmp_path, builtin_corpus, small_vocab, monkeypatch
):
    """shard keys tokie's cached form by the tokenizer.json's sha256: the first run
    writes it, the next loads it (tokie never parses the JSON again) and writes the
    same dataset."""
    import tokie

    from rbprep.encoding.backends import tokie_cache_file

    monkeypatch.setenv("RBPREP_CACHE_DIR", str(tmp_path / "cache"))
    tokenizer = small_vocab / "bpe"
    sha256 = hashlib.sha256((tokenizer / "tokenizer.json").read_bytes()).hexdigest()
    common = [builtin_corpus, "--tokenizer", tokenizer, "--dup", "2", "-q"]
    assert run("shard", *common, "--out", tmp_path / "first").exit_code == 0
    assert tokie_cache_file(sha256).is_file()
    monkeypatch.setattr(tokie.Tokenizer, "from_json", None)
    assert run("shard", *common, "--out", tmp_path / "second").exit_code == 0
    assert dataset_files(tmp_path / "first") == dataset_files(tmp_path / "second")
    assert (
        json.loads((tmp_path / "second" / "manifest.json").read_text())["encoder"]["name"]
        == "tokie"
    )


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="malloc arenas are glibc's",
)
def test_malloc_arenas_are_limited_unless_the_user_set_them():
    """shard's CLI keeps an arena per partition thread (limit_malloc_arenas); a
    MALLOC_ARENA_MAX the user set wins."""
    code = "from rbprep.executors import limit_malloc_arenas; print(limit_malloc_arenas(2))"
    env = {name: value for name, value in os.environ.items() if name != "MALLOC_ARENA_MAX"}
    for user_set, expected in (({}, "True"), ({"MALLOC_ARENA_MAX": "8"}, "False")):
        done = subprocess.run(
            [sys.executable, "-c", code], env={**env, **user_set}, capture_output=True, text=True
        )
        assert done.stdout.strip() == expected, done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("output", ["arrow", "megatron", "mds"])
def test_resume_after_kill_9_is_byte_identical(tmp_path, builtin_corpus, small_vocab, output):
    args = [sys.executable, "-m", "rbprep", "shard", str(builtin_corpus), "--tokenizer"]
    args += [str(small_vocab / "bpe"), "--partition-size", "300KB", "--workers", "1", "-q"]
    args += ["--format", output]
    subprocess.run([*args, "--out", str(tmp_path / "straight")], check=True)
    victim = subprocess.Popen([*args, "--out", str(tmp_path / "killed")])
    parts = tmp_path / "killed" / ".parts"
    deadline = time.monotonic() + 120
    while len(list(parts.glob("*.json"))) < 3 and victim.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed" / "manifest.json").exists()
    refused = subprocess.run(
        [*args, "--out", str(tmp_path / "killed")], capture_output=True, text=True
    )
    assert refused.returncode == 1 and "--resume" in refused.stderr
    subprocess.run([*args, "--out", str(tmp_path / "killed"), "--resume"], check=True)
    assert dataset_files(tmp_path / "killed") == dataset_files(tmp_path / "straight")


def test_a_second_concurrent_run_is_refused(tmp_path, small_corpus, small_vocab):
    out = tmp_path / "d"
    out.mkdir()
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = run("shard", small_corpus, "--tokenizer", small_vocab / "bpe", "--out", out)
    assert result.exit_code == 1 and "another rbprep shard" in result.stderr


def test_existing_output_needs_force(tmp_path, small_corpus, small_vocab):
    args = [
        "shard",
        small_corpus,
        "--tokenizer",
        small_vocab / "bpe",
        "--out",
        tmp_path / "d",
        "-q",
    ]
    assert run(*args).exit_code == 0
    again = run(*args)
    assert again.exit_code == 1 and "--force" in again.stderr
    assert run(*args, "--force").exit_code == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("x")
    foreign = run(
        "shard", small_corpus, "--tokenizer", small_vocab / "bpe", "--out", tmp_path / "other"
    )
    assert foreign.exit_code == 1 and "not empty" in foreign.stderr


def test_tokenizer_without_mask_or_pad_is_refused(tmp_path, small_corpus):
    from tokenizers import models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(
        ["some text"], trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"])
    )
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    result = run(
        "shard", small_corpus, "--tokenizer", tmp_path / "tokenizer.json", "--out", tmp_path / "d"
    )
    assert result.exit_code == 1
    assert "no pad or mask token" in result.stderr


def test_damaged_input_through_shard(tmp_path, small_vocab):
    import gzip

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text("Some good text here.\n\nAnother document.\n")
    (corpus / "binary.txt").write_bytes(b"\x00\x01" * 100)
    data = gzip.compress(b"text\n" * 10_000)
    (corpus / "cut.txt.gz").write_bytes(data[: len(data) // 2])
    (corpus / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    (corpus / "bad.jsonl").write_text('{"text": "fine"}\n{oops\n')
    (corpus / "notes.md").write_text("x\n")
    (corpus / "empty.txt").write_text("")
    (corpus / "loop.txt").symlink_to(corpus / "loop.txt")
    args = ["shard", corpus, "--tokenizer", small_vocab / "bpe", "--valid-fraction", "0"]
    result = run(*args, "--out", tmp_path / "d", "--json", "-q")
    assert result.exit_code == 0, result.output
    read = json.loads(result.stdout)["manifest"]["totals"]["read"]
    assert read["skipped"] == {"binary": 1, "corrupt": 1, "unknown_format": 1, "unreadable": 1}
    assert (read["invalid_utf8"], read["malformed_records"], read["empty_files"]) == (1, 1, 1)
    assert read["documents"] == 4
    assert "latin1.txt: invalid UTF-8 at byte 3 replaced with U+FFFD" in result.stderr
    shown = run("inspect", tmp_path / "d").stdout
    assert "1 binary, 1 corrupt, 1 unknown_format, 1 unreadable, 1 invalid utf8" in shown
    strict = run(*args, "--out", tmp_path / "s", "--strict")
    assert strict.exit_code == 1 and len(strict.stderr.strip().splitlines()) == 1


def test_a_corpus_without_text_is_an_error(tmp_path, small_vocab):
    corpus = tmp_path / "blank"
    corpus.mkdir()
    (corpus / "a.txt").write_text("\n\n   \n")
    (corpus / "b.txt").write_text("")
    for _ in range(2):  # and no run state is left that the next run must --resume
        result = run("shard", corpus, "--tokenizer", small_vocab / "bpe", "--out", tmp_path / "d")
        assert (
            result.exit_code == 1 and "the corpus holds no text: 2 readable files" in result.stderr
        )
    assert os.listdir(tmp_path / "d") == [".lock"]


def test_summary_counts_say_what_they_count(tmp_path, small_corpus, small_vocab):
    args = ["shard", small_corpus, "--tokenizer", small_vocab / "bpe", "--out", tmp_path / "d"]
    report = run(*args, "--dup", "1", "--partition-size", "100MB", "-q").stdout
    assert "tokens of text" in report and report.count("tokens with specials") == 2
    assert " 1 shard " in report and "(1 masked copy)" in report
    assert "valid is empty: of 3 documents, none fell to --valid-fraction 0.01" in report
    assert "1 partition\n" in run("inspect", tmp_path / "d").stdout
    assert "OK: 1 shard, " in run("verify", tmp_path / "d", "-q").stdout


@pytest.mark.parametrize("workers", ["0", "-3"])
def test_workers_below_one_are_refused(tmp_path, small_corpus, small_vocab, workers):
    args = ["shard", small_corpus, "--tokenizer", small_vocab / "bpe", "--out", tmp_path / "d"]
    result = run(*args, "--workers", workers)
    assert result.exit_code == 1 and f"--workers must be 1 or more, got {workers}" in result.stderr


def test_an_output_directory_that_is_a_file_is_one_line(tmp_path, small_corpus, small_vocab):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    for command in (
        ["shard", small_corpus, "--tokenizer", small_vocab / "bpe", "--out", taken],
        ["train-vocab", small_corpus, "--out", taken],
        ["compare-tokenizers", small_corpus, "--tokenizers", small_vocab, "--plots", taken],
    ):
        result = run(*command)
        assert result.exit_code == 1, command
        assert result.stderr.strip().endswith(
            f"{taken}: exists and is not a directory; choose another {command[-2]}"
        )
    assert taken.read_text() == "mine"


def test_verify_catches_a_shard_dropped_from_the_manifest_and_damage(tmp_path, bpe_dataset):
    copy = tmp_path / "d"
    shutil.copytree(bpe_dataset, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"].pop()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RbprepError, match="a shard is missing from the list"):
        verify(copy)
    del manifest["parameters"]["seed"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = run("verify", copy, "-q")
    assert result.exit_code == 1 and "manifest.json: damaged" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_length_histogram_labels_hold_their_lengths():
    from rbprep.sharding.sinks import length_histogram

    histogram = length_histogram(np.array([1, 3, 3, 8]), 8)
    assert histogram == {
        "1-1": 1,
        "2-2": 0,
        "3-3": 2,
        "4-4": 0,
        "5-5": 0,
        "6-6": 0,
        "7-7": 0,
        "8-8": 1,
    }


def test_whole_word_needs_word_markers(tmp_path, small_corpus, small_vocab):
    config = json.loads((small_vocab / "bpe" / "tokenizer.json").read_text())
    config["pre_tokenizer"] = {"type": "Whitespace"}
    config["model"]["unk_token"] = "<unk>"
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(config))
    args = ["shard", small_corpus, "--tokenizer", path, "-q"]
    assert run(*args, "--out", tmp_path / "a").exit_code == 0  # token masking is fine
    result = run(*args, "--out", tmp_path / "b", "--whole-word")
    assert result.exit_code == 1 and "--whole-word needs pieces that mark" in result.stderr


@pytest.mark.parametrize(
    ("tokenizer_change", "message"),
    [
        ({"model": {"unk_token": "[NOPE]"}}, "names the unknown token '[NOPE]'"),
        ({"model": {"type": "BPE", "unk_token": None}, "pre_tokenizer": None}, "no unknown token"),
    ],
)
def test_tokenizers_that_would_lose_text_are_refused(
    tmp_path, small_corpus, small_vocab, tokenizer_change, message
):
    kind = "wordpiece" if tokenizer_change["model"].get("type") != "BPE" else "bpe"
    config = json.loads((small_vocab / kind / "tokenizer.json").read_text())
    for key, change in tokenizer_change.items():
        config[key] = {**config[key], **change} if isinstance(change, dict) else change
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(config))
    result = run("shard", small_corpus, "--tokenizer", path, "--out", tmp_path / "d")
    assert result.exit_code == 1 and message in result.stderr


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--dup", "0"], "--dup"),
        (["--random-prob", "0.6", "--keep-prob", "0.6"], "sum to at most 1"),
        (["--seed", "-1"], "--seed must be in"),
        (["--seed", str(2**64)], "--seed must be in"),
        (["--masking", "dynamic", "--dup", "3"], "--masking dynamic computes a new one"),
    ],
)
def test_bad_options(tmp_path, small_corpus, small_vocab, option, message):
    result = run(
        "shard", small_corpus, "--tokenizer", small_vocab / "bpe", "--out", tmp_path / "d", *option
    )
    assert result.exit_code == 1 and message in result.stderr


HARD_LINES = (
    """Größe und Übermaß, naïve café; İstanbul'da çay. Привет, мир!
日本語のテキスト。中文文本没有空格。한국어 문장입니다. ภาษาไทยไม่มีช่องว่าง
Controls \x01\x02\x1b[0m and \x7f\x85\x9f inside a line, a zero\u200bwidth space.
Emoji 🙂👍🏽👨\u200d👩\u200d👧 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢, en\u2003space, ideographic\u3000space.
Text that spells <s> and </s> and <mask> and [CLS] stays text.
e\u0301 combining marks a\u030a\u0308, and a long run: """
    + "x" * 3000
    + "\n"
)


def _hard_corpus(tmp_path: Path, builtin_corpus: Path) -> list[Path]:
    hard = tmp_path / "hard.txt"
    hard.write_text((HARD_LINES + "\n") * 40, encoding="utf-8")
    return [builtin_corpus, hard]


@pytest.fixture(scope="module")
def published_styles(tmp_path_factory, builtin_corpus) -> dict[str, Path]:
    """Tokenizers built as the published ones are: RoBERTa's (GPT-2's byte-level BPE
    with <s> <pad> </s> <unk> <mask> and its post-processor) and BERT's cased
    WordPiece, each trained here on the built-in corpus and the hard lines."""
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

    with open(builtin_corpus, encoding="utf-8") as file:
        # Less the long run: tokens of 256 bytes or more keep tokie away (test_encoding).
        texts = [*file.read(1_000_000).splitlines(), *HARD_LINES.splitlines()[:-1] * 20]
    roberta = Tokenizer(models.BPE())
    roberta.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    roberta.decoder = decoders.ByteLevel()
    roberta.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=3000,
            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    roberta.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    bert = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    bert.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    bert.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    bert.decoder = decoders.WordPiece()
    bert.train_from_iterator(
        texts,
        trainers.WordPieceTrainer(
            vocab_size=3000,
            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
            show_progress=False,
        ),
    )
    out = tmp_path_factory.mktemp("styles")
    for name, tokenizer in (("roberta-style", roberta), ("bert-cased", bert)):
        (out / name).mkdir()
        tokenizer.save(str(out / name / "tokenizer.json"))
    return {"roberta-style": out / "roberta-style", "bert-cased": out / "bert-cased"}


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "roberta-style", "bert-cased"])
def test_fast_and_reference_encoders_write_identical_shards(
    tmp_path, builtin_corpus, small_vocab, published_styles, kind
):
    """On the built-in corpus and multilingual lines with control characters: auto
    takes tokie for the byte-level BPEs (train-vocab's, RoBERTa's style) and for the
    WordPieces (train-vocab's, BERT's cased style), the lines with a character it is not
    proven on going to tokenizers. Every shard equals the --encoder reference run's byte
    for byte; the manifests differ in the encoder only."""
    tokenizer = published_styles.get(kind) or small_vocab / kind
    corpus = _hard_corpus(tmp_path, builtin_corpus)
    config = ShardConfig(dup=2)
    manifests, files = {}, {}
    for encoder in ("auto", "reference"):
        out = tmp_path / encoder
        summary = shard(corpus, tokenizer, out, config, encoder=encoder, workers=2)
        manifests[encoder] = json.loads((out / "manifest.json").read_text())
        files[encoder] = {k: v for k, v in dataset_files(out).items() if k != "manifest.json"}
        assert summary.extra["stage_seconds"]["encode"] > 0
    assert manifests["auto"].pop("encoder")["name"] == "tokie"
    assert manifests["reference"].pop("encoder")["name"] == "tokenizers"
    assert manifests["auto"] == manifests["reference"]
    assert len([name for name in files["auto"] if name.endswith(".arrow")]) > 2
    assert files["auto"] == files["reference"]


def test_a_200_kb_word_shards_as_the_reference_does(tmp_path, builtin_corpus, small_vocab):
    """The held-out case of issue 29: one line holding a single 200 KB word (English with
    its spaces taken out, as the Bible's was), between ordinary lines. tokie 0.1.4 alone
    splits it otherwise than tokenizers wherever the machine has more than one core (it
    cuts a pre-token of 10,000 bytes or more into a piece per core), and the 2% sample
    would almost never draw that line. The default encoder gives it to the reference, so
    the shards equal --encoder reference's byte for byte, and tokie still encodes the rest."""
    with open(builtin_corpus, encoding="utf-8") as file:
        text = file.read(1_000_000)
    word = re.sub(r"[^A-Za-z]", "", text)[:200_000]
    corpus = tmp_path / "word.txt"
    corpus.write_text(f"{text[:50_000]}\n{word}\n{text[50_000:100_000]}\n", encoding="utf-8")
    files, manifests = {}, {}
    for encoder in ("auto", "reference"):
        out = tmp_path / encoder
        assert run("shard", corpus, "--tokenizer", small_vocab / "bpe", "--out", out, "--dup", 2,
                   "--encoder", encoder, "-q").exit_code == 0  # fmt: skip
        manifests[encoder] = json.loads((out / "manifest.json").read_text())
        files[encoder] = {k: v for k, v in dataset_files(out).items() if k != "manifest.json"}
    assert manifests["auto"]["encoder"]["name"] == "tokie"
    assert files["auto"] == files["reference"]


def test_a_fast_encoder_that_disagrees_falls_back_and_redoes_its_partitions(
    tmp_path, builtin_corpus, replacing_bpe, caplog
):
    """A real disagreement: tokie ignores a Replace normaliser ("zq" -> "Z"). The probe
    set never spells "zq", so --encoder fast takes tokie; the built-in corpus's
    partitions are written, then the last file's first document is caught. The run
    warns naming the text, redoes everything with tokenizers, and its shards equal a
    reference run's."""
    tokenizer = replacing_bpe
    odd = tmp_path / "zz-odd.txt"
    odd.write_text("Every line here spells zq once.\n" * 50)
    corpus = open_corpus([str(builtin_corpus), str(odd)], partition_size=1_000_000)
    outputs = {}
    for encoder in ("fast", "reference"):
        summary = shard(
            corpus, tokenizer, tmp_path / encoder, ShardConfig(dup=1), encoder=encoder, workers=1
        )
        outputs[encoder] = dataset_files(tmp_path / encoder)
        assert summary.manifest.encoder.name == "tokenizers"
    assert len(corpus.partitions) > 2
    [warning] = [r.getMessage() for r in caplog.records if "otherwise than" in r.getMessage()]
    assert "zz-odd.txt" in warning and "'Every line here spells zq once.'" in warning
    assert f"redoing the {len(corpus.partitions) - 1} partitions it wrote" in warning
    assert outputs["fast"] == outputs["reference"]


def test_check_fraction_decides_how_much_the_reference_checks(tmp_path, replacing_bpe):
    """--check-fraction is the share of lines tokenizers encodes again. Here tokie gets
    one line of 400 wrong (it ignores the Replace normaliser, "zq" -> "Z"): at 1 the
    check finds it and the reference writes the shards; at 0 only each split's first
    line is checked, so tokie's wrong ids are written, and the manifest and the summary
    say how little was checked. (At the default 0.02 it is found only where the hash
    picks that line.)"""
    text = tmp_path / "one.txt"
    lines = [f"Line {i} of plain text." for i in range(400)]
    lines[201] = "This one line spells zq."
    text.write_text("\n".join(lines) + "\n")
    config = ShardConfig(dup=1, valid_fraction=0)
    outputs, summaries = {}, {}
    for name, encoder, fraction in [
        ("all", "fast", 1.0),
        ("none", "fast", 0.0),
        ("reference", "reference", 0.02),
    ]:
        summaries[name] = shard(
            [text], replacing_bpe, tmp_path / name, config, encoder=encoder, check_fraction=fraction
        )
        outputs[name] = dataset_files(tmp_path / name)
    manifests = {name: json.loads(files["manifest.json"]) for name, files in outputs.items()}
    assert manifests["all"]["encoder"]["name"] == "tokenizers"  # found, and redone by it
    assert outputs["all"] == outputs["reference"]
    assert manifests["none"]["encoder"] == {
        "name": "tokie",
        "version": installed_version("tokie"),
        "check_fraction": 0.0,
    }
    assert "0% of each partition's lines checked against tokenizers" in summaries["none"].report()
    assert (
        outputs["none"]["train/shard-00000.arrow"]
        != outputs["reference"]["train/shard-00000.arrow"]
    )
    assert "check_fraction" not in manifests["reference"]["encoder"]
    assert "checked against" not in summaries["reference"].report()
    args = ["shard", str(text), "--tokenizer", str(replacing_bpe), "--out", str(tmp_path / "x")]
    bad = CliRunner().invoke(main, [*args, "--check-fraction", "1.5"])
    assert bad.exit_code == 1 and "--check-fraction must be in 0..1" in bad.stderr
    assert "Traceback" not in bad.output and not (tmp_path / "x").exists()


def test_the_manifest_records_the_smallest_check_fraction_a_resume_used(
    tmp_path, builtin_corpus, small_vocab
):
    corpus = open_corpus([builtin_corpus], partition_size=600_000)
    out, config = tmp_path / "data", ShardConfig(dup=1)
    summary = shard(corpus, small_vocab / "bpe", out, config, check_fraction=0.5)
    assert summary.manifest.encoder.check_fraction == 0.5
    assert "50% of each partition's lines checked against tokenizers" in summary.report()
    (out / "manifest.json").unlink()
    next(iter(sorted((out / ".parts").glob("*.json")))).unlink()
    resumed = shard(corpus, small_vocab / "bpe", out, config, resume=True, check_fraction=0.1)
    assert resumed.partitions_resumed == len(corpus.partitions) - 1 > 1
    assert resumed.manifest.encoder.check_fraction == 0.1


def _retokenizable(tmp_path: Path, builtin_corpus: Path) -> list[Path]:
    """The built-in corpus, multilingual lines, and JSONL whose text is in "body"."""
    records = tmp_path / "records.jsonl"
    lines = HARD_LINES.splitlines()
    records.write_text(
        "".join(
            json.dumps({"body": f"{a}\n{b}", "text": "not this"}) + "\n"
            for a, b in itertools.pairwise(lines)
        )
        * 30,
        encoding="utf-8",
    )
    return [*_hard_corpus(tmp_path, builtin_corpus), records]


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_verify_retokenize_reencodes_partitions_with_the_reference(
    tmp_path, builtin_corpus, small_vocab, kind
):
    """Every partition read again from the corpus, encoded by tokenizers and packed,
    equals the stored rows: for a dataset tokie wrote (BPE) and one tokenizers wrote."""
    corpus = open_corpus(
        _retokenizable(tmp_path, builtin_corpus), text_field="body", partition_size=1_000_000
    )
    out = tmp_path / "data"
    shard(corpus, small_vocab / kind, out, ShardConfig(dup=1, valid_fraction=0.05), workers=2)
    report = verify(out, retokenize=1.0)
    assert report.retokenized_partitions == report.partitions == len(corpus.partitions) > 2
    assert report.retokenized_rows == report.rows
    n = report.partitions
    assert f"Re-encoded {n} of {n} partitions from the corpus with tokenizers" in report.report()
    some = verify(out, retokenize=0.1)
    assert some.retokenized_partitions == 1 and 0 < some.retokenized_rows < report.rows


def test_verify_retokenize_catches_ids_the_checksums_vouch_for(
    tmp_path, builtin_corpus, small_vocab
):
    """Stored ids that are not the corpus's own pass every other check (the checksums
    are of what was written); re-encoding finds them. Here the corpus is changed under
    the dataset, keeping its size, as a wrong encoder would have written it."""
    text = tmp_path / "one.txt"
    text.write_text("The quick brown fox jumps over the lazy dog.\n" * 200)
    out = tmp_path / "data"
    shard([text], small_vocab / "bpe", out, ShardConfig(dup=1, valid_fraction=0))
    text.write_text("The quick brown cat jumps over the lazy dog.\n" * 200)
    assert verify(out).rows > 0
    with pytest.raises(
        RbprepError,
        match=r"train/shard-00000.arrow: row 0: the stored ids "
        r"differ from .*one.txt \(partition 0\) encoded again by tokenizers",
    ):
        verify(out, retokenize=1.0)
    text.write_text("The quick brown fox.\n")
    with pytest.raises(RbprepError, match="the corpus changed since it was sharded"):
        verify(out, retokenize=1.0)
    text.unlink()
    result = CliRunner().invoke(main, ["verify", str(out), "--retokenize", "0.5", "-q"])
    assert result.exit_code == 1 and "--retokenize reads the corpus" in result.stderr
    assert "Traceback" not in result.output
    bad = CliRunner().invoke(main, ["verify", str(out), "--retokenize", "2"])
    assert bad.exit_code == 1 and "--retokenize must be in 0..1" in bad.stderr


def test_a_task_is_sent_its_partitions_files_only(tmp_path):
    """Each partition task once pickled the whole Corpus, every file and partition of
    it: 16K partitions would have sent about 40 GB (issue 13). A task's job is now its
    partition's files alone, the same size for a corpus of 4 files or of 400, and it
    reads the same documents."""
    sizes = {}
    for count in (4, 400):
        directory = tmp_path / f"corpus-{count:03d}"  # paths of one length
        directory.mkdir()
        for index in range(count):
            (directory / f"file-{index:04d}.txt").write_text(f"Document {index}, a line.\n" * 80)
        corpus = open_corpus([directory], partition_size=2_000)
        assert len(corpus.partitions) == count
        first = corpus.partitions[1]
        job = corpus.for_partition(first)
        assert [p.id for p in job.partitions] == [1] and len(job.files) == 1
        read = [d.units for d in job.read_partition(job.partitions[0], ReadStats())]
        assert read == [d.units for d in corpus.read_partition(first, ReadStats())]
        sizes[count] = (len(pickle.dumps(job)), len(pickle.dumps(corpus)))
    assert sizes[4][0] == sizes[400][0]
    assert sizes[400][1] > 50 * sizes[400][0]  # what was sent before


def test_resume_redoes_a_finished_partition_whose_shard_is_damaged(
    tmp_path, builtin_corpus, small_vocab, caplog
):
    """A finished run with its manifest gone, one shard with a flipped byte and one
    deleted: --resume once kept them and wrote a manifest over them (issue 13). It
    redoes both partitions, saying why, and the dataset equals an untouched run's."""
    corpus = open_corpus([builtin_corpus], partition_size=600_000)
    out, config = tmp_path / "data", ShardConfig(dup=2)
    shard(corpus, small_vocab / "bpe", out, config)
    straight = dataset_files(out)
    shards = sorted((out / "train").glob("*.arrow"))
    assert len(shards) > 3
    flipped = bytearray(shards[1].read_bytes())
    flipped[len(flipped) // 2] ^= 0x40
    shards[1].write_bytes(bytes(flipped))
    shards[2].unlink()
    (out / "manifest.json").unlink()
    summary = shard(corpus, small_vocab / "bpe", out, config, resume=True)
    warnings = [r.getMessage() for r in caplog.records if "redoing it" in r.getMessage()]
    assert len(warnings) == 2
    assert f"train/{shards[1].name} is missing or damaged" in warnings[0]
    assert f"train/{shards[2].name} is missing or damaged" in warnings[1]
    assert summary.partitions_resumed == len(corpus.partitions) - 2
    assert dataset_files(out) == straight


def test_a_write_the_disk_refuses_stops_the_run_and_resume_redoes_what_it_lost(
    tmp_path, builtin_corpus, small_vocab, monkeypatch
):
    """Partition threads queue their files to one writer thread (storage.WriteBehind).
    A write the disk refuses (ENOSPC on one shard) is a one-line error; that partition
    has no marker, no manifest is written, every marker left names shards that are
    whole, and --resume gives an untroubled run's bytes."""
    args = [builtin_corpus, "--tokenizer", small_vocab / "bpe", "--partition-size", "300KB"]
    args += ["--dup", "2", "--workers", "2", "-q"]
    assert run("shard", *args, "--out", tmp_path / "straight").exit_code == 0
    write = Location.write_atomically

    def full_disk(location: Location, data) -> None:
        if location.name == "shard-00002.arrow":
            raise OSError(errno.ENOSPC, "No space left on device", location.path)
        write(location, data)

    monkeypatch.setattr(Location, "write_atomically", full_disk)
    out = tmp_path / "full"
    failed = run("shard", *args, "--out", out)
    assert failed.exit_code == 1 and "No space left on device" in failed.stderr
    assert "Traceback" not in failed.stderr and len(failed.stderr.strip().splitlines()) == 1
    assert not (out / "manifest.json").exists()
    markers = sorted((out / ".parts").glob("[0-9]*.json"))
    assert (out / ".parts" / "00002.json") not in markers
    for marker in markers:
        for part in json.loads(marker.read_text())["splits"].values():
            if "file" in part:
                data = (out / part["file"]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == part["sha256"]
    monkeypatch.undo()
    assert run("shard", *args, "--out", out, "--resume").exit_code == 0
    assert dataset_files(out) == dataset_files(tmp_path / "straight")


def test_text_read_by_the_kernel_shards_as_the_general_reader_does(
    tmp_path, builtin_corpus, small_vocab, monkeypatch
):
    """For a byte-level BPE, plain UTF-8 .txt files are read into one buffer by a kernel
    (Corpus.read_partition_lines). With that turned off, every partition goes through
    the general reader: the same dataset, byte for byte, with CRLF and CR line ends,
    Unicode spaces, a BOM, control characters, blank lines and several files a
    partition."""
    text = builtin_corpus.read_text(encoding="utf-8")[:400_000]
    mixed = "\u3000 Ideographic\u2003spaces\x85 \r\nCR only\rtabs\t\x0b\x1f end\u2029\r\n\r\n"
    texts = ["\ufeff" + text[:150_000], mixed * 50 + text[150_000:300_000], text[300_000:] + mixed]
    for index, content in enumerate(texts):
        (tmp_path / f"{index}.txt").write_bytes(content.encode())
    config = ShardConfig(dup=2, valid_fraction=0.2)
    corpus = open_corpus([tmp_path / f"{index}.txt" for index in range(3)], partition_size=60_000)
    read_by_kernel = []
    read_partition_lines = Corpus.read_partition_lines

    def counted(self, partition, stats):
        read = read_partition_lines(self, partition, stats)
        read_by_kernel.append(read is not None)
        return read

    monkeypatch.setattr(Corpus, "read_partition_lines", counted)
    shard(corpus, small_vocab / "bpe", tmp_path / "kernel", config)
    assert len(read_by_kernel) == len(corpus.partitions) > 3 and all(read_by_kernel)
    monkeypatch.setattr(Corpus, "read_partition_lines", lambda self, partition, stats: None)
    shard(corpus, small_vocab / "bpe", tmp_path / "general", config)
    assert dataset_files(tmp_path / "kernel") == dataset_files(tmp_path / "general")


# --- dynamic masking ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def dynamic_and_static(tmp_path_factory, builtin_corpus, small_vocab) -> tuple[Path, Path]:
    """The built-in corpus at seq 512, masked dynamically and with 3 stored copies,
    whole-word, so both masking kinds and the word-start table take part."""
    out = tmp_path_factory.mktemp("masking")
    options = dict(valid_fraction=0.05, whole_word=True, seed=7)
    dynamic, static = out / "dynamic", out / "static"
    shard([builtin_corpus], small_vocab / "bpe", dynamic, ShardConfig(masking="dynamic", **options))
    shard([builtin_corpus], small_vocab / "bpe", static, ShardConfig(dup=3, **options))
    return dynamic, static


def test_dynamic_copy_k_equals_static_copy_k_array_for_array(dynamic_and_static):
    dynamic_root, static_root = dynamic_and_static
    for split in ("train", "valid"):
        dynamic, static = open_dataset(dynamic_root, split), open_dataset(static_root, split)
        assert dynamic.dup is None and dynamic.masking == "dynamic" and static.dup == 3
        assert len(dynamic) == len(static) > 0
        rows = np.random.default_rng(0).permutation(len(static))[:500]  # across shards
        for copy in range(3):
            a = static.batch(rows, copy=copy, groups=True)
            b = dynamic.batch(rows, copy=copy, groups=True)
            assert a.keys() == b.keys()
            for name in a:
                np.testing.assert_array_equal(a[name], b[name], err_msg=f"{split} {copy} {name}")
    with pytest.raises(IndexError):
        static.batch(rows, copy=3)
    later = [dynamic.batch(rows[:50], copy=k)["labels"] for k in (3, 40, 1000)]
    assert not np.array_equal(later[0], later[1]) and not np.array_equal(later[1], later[2])


def test_a_dynamic_dataset_stores_ids_only_and_says_so(dynamic_and_static):
    dynamic_root, _ = dynamic_and_static
    manifest = json.loads((dynamic_root / "manifest.json").read_text())
    assert manifest["masking"] == "dynamic" and manifest["parameters"]["dup"] is None
    shard_file = dynamic_root / manifest["splits"]["train"]["shards"][0]["file"]
    table = pa.ipc.open_file(pa.memory_map(str(shard_file))).read_all()
    assert table.column_names == ["input_ids"]
    stored = sum(manifest["splits"][split]["bytes"] for split in ("train", "valid"))
    assert stored / manifest["totals"]["content_tokens"] <= 2.2  # a vocabulary < 65,536
    assert verify(dynamic_root).masked_positions > 0
    shown = inspect(dynamic_root, copy=41, rows=2)
    assert "masking=dynamic" in shown.report() and len(shown.samples) == 2


def test_verify_checks_the_computed_masks_of_a_dynamic_dataset(dynamic_and_static, monkeypatch):
    from rbprep.dataset import verification

    real = verification.mask_partition_rows

    def a_special_chosen(*args, **kwargs):  # as a different masking would choose
        masks = real(*args, **kwargs)
        masks.positions[masks.position_offsets[1]] = 0  # row 1's first: <s>
        return masks

    monkeypatch.setattr(verification, "mask_partition_rows", a_special_chosen)
    with pytest.raises(RbprepError, match="row 1, copy 0: the computed masks have a special"):
        verify(dynamic_and_static[0])


# --- document ids -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["full-sentences", "doc-sentences"])
def test_document_ids_say_which_document_each_position_is_of(tmp_path, small_vocab, mode):
    import re

    rng = np.random.default_rng(3)
    documents = [
        [f"Document {i} line {j} about topic {i}." for j in range(rng.integers(1, 6))]
        for i in range(80)
    ]
    corpus = tmp_path / "documents.txt"
    corpus.write_text("\n\n".join("\n".join(lines) for lines in documents) + "\n")
    out = tmp_path / "data"
    shard([corpus], small_vocab / "bpe", out, ShardConfig(seq_len=40, dup=1, mode=mode))
    dataset = open_dataset(out)
    tokenizer = dataset.tokenizer
    batch = dataset.batch(np.arange(len(dataset)), copy=None)
    ids, attention = batch["input_ids"], batch["attention_mask"]
    document_ids = batch["document_ids"]
    assert document_ids.dtype == np.int32 and document_ids.shape == ids.shape
    assert (document_ids[attention == 0] == -1).all()
    segments = 0
    for row_ids, row_documents, length in zip(
        ids, document_ids, attention.sum(axis=1), strict=True
    ):
        row_ids, row_documents = row_ids[:length], row_documents[:length]
        # From 0, one more after each separating end token; the end token ends its document.
        separators = np.flatnonzero(row_ids[:-1] == dataset.sep_id)
        expected = np.zeros(length, dtype=np.int32)
        for separator in separators:
            expected[separator + 1 :] += 1
        np.testing.assert_array_equal(row_documents, expected)
        for document in range(int(row_documents.max()) + 1):
            text = tokenizer.decode(row_ids[row_documents == document].tolist())
            numbers = set(re.findall(r"(?:Document|topic) (\d+)", text))
            assert len(numbers) <= 1, text  # one source document's text per document id
            segments += 1
    if mode == "doc-sentences":
        assert (document_ids.max(axis=1) == 0).all()
    else:
        assert segments > len(dataset) and (document_ids.max(axis=1) >= 2).any()
    # Copies and the unmasked rows share the document ids.
    masked = dataset.batch(np.arange(len(dataset)), copy=0)
    np.testing.assert_array_equal(masked["document_ids"], document_ids)


# --- the typed manifest -------------------------------------------------------------------


def test_the_manifest_reads_and_writes_back_key_for_key(bpe_dataset, dynamic_and_static):
    from rbprep.dataset.manifest import Manifest

    for root in (bpe_dataset, *dynamic_and_static):
        on_disk = json.loads((root / "manifest.json").read_text())
        manifest = Manifest.read(root)
        assert json.dumps(manifest.to_json()) == json.dumps(on_disk)  # order included
        assert manifest.masking == on_disk["masking"]
        # A dynamic dataset is format 2, so that older readers refuse it cleanly.
        assert on_disk["format_version"] == (2 if manifest.masking == "dynamic" else 1)
        assert manifest.parameters.masks.max_predictions == on_disk["parameters"]["max_predictions"]


def test_older_manifests_still_open_and_bad_ones_are_one_line_errors(bpe_dataset, tmp_path):
    from rbprep.dataset.manifest import Manifest

    older = tmp_path / "older"
    shutil.copytree(bpe_dataset, older)
    data = json.loads((older / "manifest.json").read_text())
    # As written before masking, the encoder and the corpus's text field and size.
    for key in ("masking", "encoder"):
        del data[key]
    del data["parameters"]["masking"]
    del data["corpus"]["text_field"], data["corpus"]["bytes"]
    (older / "manifest.json").write_text(json.dumps(data))
    manifest = Manifest.read(older)
    assert manifest.masking == "static" and manifest.encoder is None
    assert manifest.corpus.text_field is None and manifest.corpus.bytes is None
    assert verify(older).rows == manifest.totals.rows
    assert len(open_dataset(older).batch([0], copy=9)["labels"]) == 1
    assert "encoder:    not recorded" in inspect(older, rows=0).report()
    for damage, message in (
        (lambda d: d.update(format_version=99), "format version 99, this rbprep reads 1, 2, 3"),
        (lambda d: d.update(format="other"), "not an rbprep dataset manifest"),
        (lambda d: d["splits"].pop("valid"), "damaged manifest (KeyError: 'valid')"),
        (lambda d: d["tokenizer"].pop("sep_id"), "damaged manifest (TypeError"),
    ):
        broken = json.loads(json.dumps(data))
        damage(broken)
        (older / "manifest.json").write_text(json.dumps(broken))
        with pytest.raises(RbprepError, match=re.escape(message)):
            open_dataset(older)
        result = run("verify", older)
        assert result.exit_code == 1 and "Traceback" not in result.output


def test_resume_accepts_a_run_state_written_before_masking_modes(small_corpus, small_vocab):
    from dataclasses import asdict

    from rbprep.sharding.run import _as_now, _run_state

    corpus = open_corpus([small_corpus])
    _, info = load_tokenizer(small_vocab / "bpe")
    config = ShardConfig(dup=4, seq_len=64)
    now = _run_state(corpus, info, config)
    older = json.loads(json.dumps(now))  # as that version wrote it: no masking, no cap
    older["parameters"] = {k: v for k, v in asdict(config).items() if k != "masking"}
    assert older != now and _as_now(older) == now
    other = {**older, "parameters": {**older["parameters"], "dup": 5}}
    assert _as_now(other) != now  # other options still refuse
