"""compare-tokenizers: metric functions by hand, the whole comparison against a slow
independent count, rows against shard's own manifest, the CLI, JSON, Markdown and plots."""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from rbprep.cli import main
from rbprep.compare import CompareConfig, compare_tokenizers
from rbprep.compare import metrics as m
from rbprep.compare.comparison import (
    BatchTexts,
    Comparison,
    EncodeIds,
    open_contestant,
    round_trip,
)
from rbprep.compare.pieces import (
    Style,
    byte_length,
    byte_of_char,
    byte_spelling,
    byte_spellings,
    display,
    piece,
    pieces_of,
    word_pieces,
)
from rbprep.corpus import ReadStats, open_corpus
from rbprep.encoding import ReferenceEncoder, backends, document_units, fallback, units_of
from rbprep.errors import RbprepError
from rbprep.sharding import ShardConfig, shard
from rbprep.tokenizer_info import load_tokenizer

METRIC_KEYS = {
    "vocab_size",
    "vocab_used",
    "tokens",
    "bytes_per_token",
    "chars_per_token",
    "fertility",
    "continued_words",
    "unk_rate",
    "unk_word_rate",
    "roundtrip_exact",
    "roundtrip_normalized",
    "rows",
    "padding",
    "encode_mb_s",
    "renyi_efficiency",
}
RATES = METRIC_KEYS & {
    "vocab_used",
    "continued_words",
    "unk_rate",
    "unk_word_rate",
    "roundtrip_exact",
    "roundtrip_normalized",
    "padding",
    "renyi_efficiency",
}

# Three documents: plain lowercase English (WordPiece round-trips it exactly), accented
# and capitalised text (lowercasing and accent stripping lose it), and Chinese and an
# emoji that a vocabulary trained on English docstrings has no pieces for.
MIXED = {
    "en.txt": "the value of the function is returned\nas a list of strings\n",
    "accents.txt": "Naïve café owners in Zürich serve crème brûlée\nÉcole\n\nThe second document\n",
    "zh.txt": "中文字符 and emoji 🙂 here\n你好 世界\n",
}


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def mixed_corpus(tmp_path: Path) -> Path:
    directory = tmp_path / "mixed"
    directory.mkdir()
    for name, text in MIXED.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def unigram_json(tmp_path_factory, builtin_corpus) -> Path:
    """A third kind: a SentencePiece-style Unigram (Metaspace "▁", NFKC), no mask or pad."""
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

    lines = builtin_corpus.read_text(encoding="utf-8").splitlines()[:4000]
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=600, special_tokens=["<unk>"], unk_token="<unk>", show_progress=False
    )
    tokenizer.train_from_iterator(lines, trainer)
    path = tmp_path_factory.mktemp("unigram") / "unigram.json"
    tokenizer.save(str(path))
    return path


# --- metric functions, by hand ------------------------------------------------------------


def test_renyi_efficiency_matches_the_papers_scorer():
    # The examples in the authors' tokenization-scorer README: "pick @@ed pick @@l @@ed
    # pick @@les" scores 0.8031528501359657 over its 4 observed types, and "pick @@e @@d
    # pick @@l @@e @@d pick @@l @@e @@s" 0.9105681923824472 over 5. (The README says
    # power=2.5; those figures are its code's default power, 3.0.)
    assert m.renyi_efficiency(np.array([3, 2, 1, 1]), 4, 3.0) == pytest.approx(0.8031528501359657)
    assert m.renyi_efficiency(np.array([3, 3, 2, 2, 1]), 5, 3.0) == pytest.approx(
        0.9105681923824472
    )
    # By hand: H_2.5 = log(sum p^2.5) / (1 - 2.5); divided by log |V|.
    p = np.array([0.5, 0.25, 0.25])
    expected = math.log((p**2.5).sum()) / -1.5 / math.log(8)
    assert m.renyi_efficiency(np.array([2, 1, 1, 0, 0]), 8) == pytest.approx(expected)
    assert m.renyi_efficiency(np.array([5, 5, 5, 5]), 4) == pytest.approx(1.0)  # uniform
    assert m.renyi_entropy(np.array([1, 1]), 1.0) == pytest.approx(math.log(2))  # Shannon
    assert m.renyi_efficiency(np.array([0, 0]), 10) == 0.0


def test_words_and_token_attribution_by_hand():
    texts = ["a  bc", " d\u3000e"]  # two spaces; an ideographic space separates too
    words = m.Words.of(texts)
    assert words.text_words.tolist() == [2, 2] and words.count == 4
    assert words.chars == 5 + 4 and words.utf8_bytes == 5 + (1 + 1 + 3 + 1)
    # Tokens of text 0: "a" (0,1), lone space (2,2) empty, "Ġbc" (2,5) with its space;
    # of text 1: "Ġd" (0,2), "\u3000" (2,3) whitespace only, "e" (3,4).
    token_text = np.array([0, 0, 0, 1, 1, 1])
    starts = np.array([0, 2, 2, 0, 2, 3])
    ends = np.array([1, 2, 5, 2, 3, 4])
    token_words = words.token_words(token_text, starts, ends)
    assert token_words.tolist() == [0, -1, 1, 2, -1, 3]
    assert m.tokens_per_word(np.array([0, 0, 1, -1, 3]), 4).tolist() == [2, 1, 0, 1]
    assert m.histogram(np.array([0, 1, 1, 5, 9]), 4).tolist() == [1, 2, 0, 0, 2]
    assert m.histogram_dict(np.array([1, 2, 3])) == {"0": 1, "1": 2, "2+": 3}


def test_byte_lengths_are_the_bytes_each_id_spells(small_vocab):
    """The byte-level tokenizer's byte lengths, read off its decoder's table, are each
    entry's bytes: its length in the byte alphabet, else its UTF-8."""
    bpe = open_contestant("bpe", str(small_vocab / "bpe"), "reference")
    tokens = [bpe.tokenizer.id_to_token(i) or "" for i in range(bpe.id_limit)]
    spelled = [byte_length(token, bpe.style) for token in tokens]
    expected = [len(t.encode()) if n is None else n for t, n in zip(tokens, spelled, strict=True)]
    assert bpe.byte_lengths is not None and bpe.byte_lengths.tolist() == expected


def test_byte_level_words_without_offsets_equal_words_by_offsets(small_vocab):
    """The byte-level shortcut places tokens from their byte lengths alone; it must agree
    with the offsets tokenizers report, on text with every kind of awkward character."""
    bpe = open_contestant("bpe", str(small_vocab / "bpe"), "reference")
    texts = [
        "Naïve café  in\tZürich 🙂🙂 中文字符",
        " second   line,with punctuation… and\u00a0nbsp",
        "\u3000ideographic\u3000space and \u200bzero width",
        "x",
    ]
    words = m.Words.of(texts)
    encodings = bpe.tokenizer.encode_batch(texts, add_special_tokens=False)
    ids = np.array([i for e in encodings for i in e.ids])
    token_text = np.repeat(np.arange(len(texts)), [len(e.ids) for e in encodings])
    offsets = np.array([o for e in encodings for o in e.offsets]).reshape(-1, 2)
    by_offsets = words.token_words(token_text, offsets[:, 0], offsets[:, 1])
    token_bytes = bpe.byte_lengths[ids]
    assert np.bincount(token_text, weights=token_bytes).tolist() == words.text_bytes.tolist()
    lengths = np.array([len(e.ids) for e in encodings])
    assert words.byte_token_words(ids, lengths, bpe.byte_lengths).tolist() == by_offsets.tolist()
    # Ids that do not spell their texts' bytes place nothing: offsets are needed.
    assert (
        words.byte_token_words(ids[:-1], lengths - np.eye(4, dtype=int)[3], bpe.byte_lengths)
        is None
    )


def test_metrics_object_by_hand():
    tally = m.Tally(
        documents=4,
        units=6,
        words=10,
        bytes=60,
        chars=50,
        tokens=20,
        unk_tokens=2,
        unk_words=1,
        continued_words=4,
        roundtrip_exact=3,
        roundtrip_normalized=4,
        rows=2,
        row_tokens=24,
        encode_seconds=0.5,
        encode_bytes=60,
    )
    result = m.metrics(tally, vocab_size=100, vocab_seen=25, renyi=0.4, seq_len=16)
    assert set(result) >= METRIC_KEYS
    assert result["vocab_used"] == 0.25 and result["tokens"] == 20
    assert result["bytes_per_token"] == 3.0 and result["chars_per_token"] == 2.5
    assert result["fertility"] == 2.0 and result["continued_words"] == 0.4
    assert result["unk_rate"] == 0.1 and result["unk_word_rate"] == 0.1
    assert result["roundtrip_exact"] == 0.75 and result["roundtrip_normalized"] == 1.0
    assert result["rows"] == 2 and result["padding"] == (32 - 24) / 32
    assert result["encode_mb_s"] == pytest.approx(60 / 1e6 / 0.5)
    empty = m.metrics(m.Tally(), vocab_size=10, vocab_seen=0, renyi=0.0, seq_len=16)
    assert all(empty[key] == 0 for key in METRIC_KEYS - {"vocab_size"})


def test_vocab_overlap_and_pieces():
    overlap = m.vocab_overlap({"the", "ing", "a"}, {"the", "ing", "b", "c"})
    assert overlap == {"shared": 2, "jaccard": 0.4, "share_of_a": 2 / 3, "share_of_b": 0.5}
    byte_level = Style("BPE", byte_level=True, word_prefix=None, continuation=None)
    wordpiece = Style("WordPiece", byte_level=False, word_prefix=None, continuation="##")
    metaspace = Style("Unigram", byte_level=False, word_prefix="▁", continuation=None)
    the = piece("Ġthe", byte_level)
    assert (the.marker, the.text, the.nbytes) == ("start", "the", 3)
    assert piece("Ã©", byte_level).text == "é" and piece("Ċ", byte_level).body == b"\n"
    assert (
        piece("Ġ", byte_level).marker == "" and display(piece("Ġ", byte_level), byte_level) == "Ġ"
    )
    assert (piece("##ing", wordpiece).marker, piece("##ing", wordpiece).text) == ("continue", "ing")
    assert piece("▁the", metaspace).text == "the" and piece("[UNK]", wordpiece).text == "[UNK]"
    assert display(piece("Ġcafé".replace("é", "Ã©"), byte_level), byte_level) == "Ġcafé"
    # A character cut into byte tokens shows as itself, with the number of tokens.
    cut = [piece(token, byte_level) for token in ("Ð", "ĵ", "Ð»", "Ð")]
    assert word_pieces(cut) == ["Г{2}", "л", "\\xd0"]


BYTE_ALPHABET = sorted(byte_of_char())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(st.sampled_from(BYTE_ALPHABET) | st.characters(exclude_categories=("Cs",))),
        max_size=20,
    )
)
def test_a_vocabulary_read_at_once_is_read_token_by_token(tokens):
    """``pieces_of`` reads a whole vocabulary in a few array operations: the same pieces
    as ``piece`` one token at a time, entries outside the byte alphabet (added tokens,
    empty ones) included."""
    byte_level = Style("BPE", byte_level=True, word_prefix=None, continuation=None)
    tokens = [*tokens, "", "Ġ", "Ġthe", "<s>", "ĠĠ", "日本"]
    assert byte_spellings(tokens) == [byte_spelling(token) for token in tokens]
    assert pieces_of(tokens, byte_level) == [piece(token, byte_level) for token in tokens]


# --- the comparison against independent counts ---------------------------------------------


def first_letter(text: str, start: int, end: int) -> int:
    """Where the first non-space character of text[start:end] is; -1 if there is none."""
    return next((k for k in range(start, end) if not text[k].isspace()), -1)


def naive_counts(paths: list[Path], tokenizer_path: Path) -> dict[str, dict[str, float]]:
    """Per file: the metrics counted the slow, obvious way, one unit and one word at a time."""
    tokenizer, info = load_tokenizer(tokenizer_path)
    results = {}
    for path in paths:
        corpus = open_corpus([path])
        counts: Counter[int] = Counter()
        tokens = words = unk = unk_words = continued = exact = normalized = docs = 0
        text_bytes = chars = 0
        for document in corpus.documents(ReadStats()):
            docs += 1
            ids_of_document = []
            for index, unit in enumerate(document.units):
                text = unit if index == 0 else " " + unit
                encoding = tokenizer.encode(text, add_special_tokens=False)
                ids_of_document += encoding.ids
                counts.update(encoding.ids)
                tokens += len(encoding.ids)
                unk += encoding.ids.count(info.unk_id)
                text_bytes += len(text.encode())
                chars += len(text)
                position = 0
                for word in text.split():
                    begin = text.index(word, position)
                    position = begin + len(word)
                    mine = [
                        i
                        for i, (s, e) in zip(encoding.ids, encoding.offsets, strict=True)
                        if begin <= first_letter(text, s, e) < position
                    ]
                    words += 1
                    continued += len(mine) >= 2
                    unk_words += info.unk_id in mine
            original = " ".join(document.units)
            back = tokenizer.decode(ids_of_document, skip_special_tokens=False)
            exact += back == original
            norm = tokenizer.normalizer.normalize_str if tokenizer.normalizer else str
            normalized += "".join(norm(back).split()) == "".join(norm(original).split())
        frequencies = np.array(list(counts.values()), dtype=float)
        p = frequencies / frequencies.sum()
        vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        results[str(path)] = {
            "tokens": tokens,
            "vocab_used": len(counts) / vocab_size,
            "bytes_per_token": text_bytes / tokens,
            "chars_per_token": chars / tokens,
            "fertility": tokens / words,
            "continued_words": continued / words,
            "unk_rate": unk / tokens,
            "unk_word_rate": unk_words / words,
            "roundtrip_exact": exact / docs,
            "roundtrip_normalized": normalized / docs,
            "renyi_efficiency": math.log((p**2.5).sum()) / -1.5 / math.log(vocab_size),
        }
    return results


def test_mixed_text_unk_lowercasing_and_exact_bpe(mixed_corpus, small_vocab):
    comparison = compare_tokenizers([mixed_corpus], [small_vocab])
    data = comparison.as_dict()
    bpe, wordpiece = data["tokenizers"]
    assert (bpe["name"], wordpiece["name"]) == ("bpe", "wordpiece")
    files = sorted(str(p) for p in mixed_corpus.iterdir())
    assert data["corpus"]["files"] == files and set(bpe["per_file"]) == set(files)
    by_name = {Path(f).name: f for f in files}
    # Byte-level BPE: nothing lost, anywhere.
    assert bpe["overall"]["roundtrip_exact"] == 1.0 and bpe["overall"]["unk_rate"] == 0.0
    # WordPiece: Chinese and the emoji become [UNK]; case and accents are lost.
    zh = wordpiece["per_file"][by_name["zh.txt"]]
    assert zh["unk_rate"] > 0 and zh["unk_word_rate"] > 0 and zh["roundtrip_normalized"] == 0
    accents = wordpiece["per_file"][by_name["accents.txt"]]
    assert accents["roundtrip_exact"] == 0.0 and accents["roundtrip_normalized"] == 1.0
    assert wordpiece["per_file"][by_name["en.txt"]]["roundtrip_exact"] == 1.0
    assert wordpiece["overall"]["roundtrip_exact"] == pytest.approx(1 / 4)  # 4 documents
    assert wordpiece["overall"]["unk_rate"] > 0
    # Every figure agrees with the slow count, file by file, for both tokenizers.
    for tokenizer in (bpe, wordpiece):
        expected = naive_counts([Path(f) for f in files], small_vocab / tokenizer["name"])
        for file in files:
            for key, value in expected[file].items():
                assert tokenizer["per_file"][file][key] == pytest.approx(value), (file, key)
        overall_tokens = sum(e["tokens"] for e in expected.values())
        assert tokenizer["overall"]["tokens"] == overall_tokens
    # The report shows it side by side.
    text = comparison.report()
    assert "bpe" in text and "wordpiece" in text and "[UNK] tokens" in text
    sample = next(s for s in data["samples"] if "Zürich" in s["text"])
    assert "Zürich" in text  # the sample, aligned word under word
    at = sample["words"].index("Zürich")
    assert "".join(sample["tokens"]["wordpiece"][at]) == "zurich"
    # (a character cut into byte tokens shows as itself with their number: "ü{2}")
    assert re.sub(r"\{\d+\}", "", "".join(sample["tokens"]["bpe"][at])) == "Zürich"


def test_rows_and_padding_are_what_shard_makes(tmp_path, builtin_corpus, small_vocab):
    # About 600 KB of real text in three files and several partitions.
    text = builtin_corpus.read_text(encoding="utf-8")
    cuts = [text.index("\n\n", at) + 2 for at in (200_000, 400_000, 600_000)]
    for name, (lo, hi) in zip("abc", zip([0, *cuts[:2]], cuts, strict=True), strict=True):
        (tmp_path / "corpus").mkdir(exist_ok=True)
        (tmp_path / "corpus" / f"{name}.txt").write_text(text[lo:hi], encoding="utf-8")
    corpus = open_corpus([tmp_path / "corpus"], partition_size=150_000)
    assert len(corpus.partitions) > 3
    data = compare_tokenizers(corpus, [small_vocab], CompareConfig(seq_len=128)).as_dict()
    for tokenizer in data["tokenizers"]:
        summary = shard(
            corpus,
            small_vocab / tokenizer["name"],
            tmp_path / tokenizer["name"],
            ShardConfig(seq_len=128, dup=1, valid_fraction=0),
            workers=1,
        )
        totals = summary.manifest.totals
        assert tokenizer["overall"]["rows"] == totals.rows
        assert tokenizer["overall"]["padding"] == pytest.approx(totals.padding_share)
        assert tokenizer["overall"]["tokens"] == totals.content_tokens
        # A file's rows are what shard makes of that file alone (same partition size:
        # rows never cross a partition; a.txt is cut in two).
        first = str(tmp_path / "corpus" / "a.txt")
        alone = shard(
            open_corpus([first], partition_size=150_000),
            small_vocab / tokenizer["name"],
            tmp_path / f"{tokenizer['name']}-a",
            ShardConfig(seq_len=128, dup=1, valid_fraction=0),
            workers=1,
        )
        assert tokenizer["per_file"][first]["rows"] == alone.manifest.totals.rows
    bpe, wordpiece = (t["overall"]["rows"] for t in data["tokenizers"])
    assert data["pairs"][0]["ratios"]["rows"] == pytest.approx(bpe / wordpiece)


def test_json_schema_and_a_third_tokenizer(mixed_corpus, small_vocab, unigram_json):
    config = CompareConfig(seq_len=64, samples=2)
    data = compare_tokenizers(
        [mixed_corpus], [small_vocab, ("uni", unigram_json)], config
    ).as_dict()
    assert [t["name"] for t in data["tokenizers"]] == ["bpe", "wordpiece", "uni"]
    for tokenizer in data["tokenizers"]:
        assert {"name", "path", "overall", "per_file"} <= set(tokenizer)
        for metrics in [tokenizer["overall"], *tokenizer["per_file"].values()]:
            assert set(metrics) >= METRIC_KEYS
            assert all(0.0 <= metrics[key] <= 1.0 for key in RATES)
        assert tokenizer["top_tokens"] and tokenizer["longest_tokens"]
    uni = data["tokenizers"][2]
    assert uni["model"] == "Unigram" and uni["shardable"] is False
    assert uni["overall"]["rows"] > 0 and uni["overall"]["unk_rate"] > 0  # no byte fallback
    assert len(data["pairs"]) == 3 and len(data["samples"]) == 2
    assert set(data["samples"][0]["tokens"]) == {"bpe", "wordpiece", "uni"}
    json.dumps(data)  # plain JSON types throughout


# --- the encoders -------------------------------------------------------------------------


def without_encoders(data: dict) -> dict:
    """The comparison less what depends on who encoded: speed, time, encoder names."""
    data = json.loads(json.dumps(data))
    data.pop("seconds")
    data["parameters"].pop("encoder")
    data["parameters"].pop("check_fraction")
    for tokenizer in data["tokenizers"]:
        del tokenizer["encoder"], tokenizer["encoder_note"]
        for metrics in [tokenizer["overall"], *tokenizer["per_file"].values()]:
            del metrics["encode_mb_s"]
    for pair in data["pairs"]:
        del pair["ratios"]["encode_mb_s"]
    return data


def test_fast_and_reference_encoders_give_identical_metrics(
    tmp_path, mixed_corpus, builtin_corpus, small_vocab, unigram_json
):
    """auto takes tokie for the byte-level BPE and the WordPiece, and tokenizers for the
    Unigram (saying why); every count is the same as with tokenizers throughout."""
    hard = tmp_path / "hard.txt"
    text = builtin_corpus.read_text(encoding="utf-8")[:400_000]
    word = re.sub(r"[^A-Za-z]", "", text)[:200_000]
    # Control characters (no NUL: that makes a file binary, skipped), then a 200 KB word
    # past a batch's first text, which tokie alone cuts in a piece per core.
    hard.write_text(
        f"\x01\x1f\x7f\x85 control\n<mask> <s> spelled\n\u3000 日本語 😀 e\u0301\n{text[:50_000]}"
        f"\n{word}\n",
        encoding="utf-8",
    )
    corpus = open_corpus([mixed_corpus, builtin_corpus, hard], partition_size=1_000_000)
    tokenizers = [small_vocab, ("uni", unigram_json)]
    runs = {
        encoder: compare_tokenizers(corpus, tokenizers, CompareConfig(encoder=encoder)).as_dict()
        for encoder in ("auto", "reference")
    }
    assert len(corpus.partitions) > 1
    assert str(hard) in runs["auto"]["tokenizers"][0]["per_file"]
    encoders = [(t["encoder"]["name"], t["encoder_note"]) for t in runs["auto"]["tokenizers"]]
    assert encoders[:2] == [("tokie", None), ("tokie", None)]
    assert encoders[2][0] == "tokenizers"
    assert "not tested to match on a Unigram model" in encoders[2][1]
    assert all(t["encoder"]["name"] == "tokenizers" for t in runs["reference"]["tokenizers"])
    assert without_encoders(runs["auto"]) == without_encoders(runs["reference"])
    assert "Encoded by tokie" in Comparison(runs["auto"]).report()


def test_a_fast_encoder_that_disagrees_is_caught_and_the_comparison_redone(
    tmp_path, builtin_corpus, replacing_bpe, caplog
):
    """tokie ignores a Replace normaliser ("zq" -> "Z"), which the probe set never
    spells: --encoder fast takes it. The tokenizer is placed by offsets, which only
    tokenizers gives, so tokie encodes the timed share alone; its ids there are checked
    against the reference's, the first "zq" is caught, and the comparison runs again on
    tokenizers, as a reference run."""
    tokenizer = replacing_bpe
    odd = tmp_path / "zz-odd.txt"
    odd.write_text("Every line here spells zq once.\n" * 50)
    corpus = open_corpus([builtin_corpus, odd])
    runs = {
        encoder: compare_tokenizers(corpus, [tokenizer], CompareConfig(encoder=encoder)).as_dict()
        for encoder in ("fast", "reference")
    }
    [warning] = [r.getMessage() for r in caplog.records if "otherwise than" in r.getMessage()]
    assert "'Every line here spells zq once.'" in warning and "again with tokenizers" in warning
    [fallen_back] = runs["fast"]["tokenizers"]
    assert fallen_back["encoder"]["name"] == "tokenizers"
    assert "otherwise than tokenizers" in fallen_back["encoder_note"]
    assert without_encoders(runs["fast"]) == without_encoders(runs["reference"])


def _unrouted(monkeypatch) -> None:
    """tokie given every text, its probe set plain: what the run-time checks must catch
    without the proven set's route (U+FADA, which tokie's WordPiece gives no id)."""
    monkeypatch.setattr(fallback, "_PROBE_TEXTS", ("plain text",))
    monkeypatch.setattr(
        backends, "unproven_characters", lambda config: ""
    )  # as FastEncoder sees it


def test_the_sample_check_catches_what_the_probe_set_missed(
    tmp_path, small_corpus, small_vocab, caplog, monkeypatch
):
    """A WordPiece is placed by the fast encoder's own ids. With a probe set that
    misses tokie's WordPiece divergence (U+FADA: no id where tokenizers gives [UNK]),
    and with no code point routed to the reference (``_unrouted``), the run's sample
    check meets it in the first unit of a batch and the comparison is redone on
    tokenizers."""
    _unrouted(monkeypatch)
    odd = tmp_path / "zz-odd.txt"
    odd.write_text("A rare code point \ufada here.\n", encoding="utf-8")
    corpus = open_corpus([small_corpus, odd])
    tokenizers = [small_vocab / "wordpiece"]
    runs = {
        encoder: compare_tokenizers(corpus, tokenizers, CompareConfig(encoder=encoder)).as_dict()
        for encoder in ("fast", "reference")
    }
    [warning] = [r.getMessage() for r in caplog.records if "otherwise than" in r.getMessage()]
    assert repr("A rare code point \ufada here.") in warning
    assert runs["fast"]["tokenizers"][0]["encoder"]["name"] == "tokenizers"
    assert without_encoders(runs["fast"]) == without_encoders(runs["reference"])


def test_check_fraction_sets_how_many_texts_the_reference_checks(
    tmp_path, small_corpus, small_vocab, monkeypatch
):
    """As shard's --check-fraction: at 1 every text of a batch is checked, and the
    U+FADA divergence (one document of 301, not the first of its batch) is found; at 0
    only each batch's first unit is, tokie stays the encoder, and the parameters say
    how little was checked. The counts are still the reference's here: tokie's ids,
    one [UNK] short, do not spell the batch's text, so that batch is counted from the
    reference's offsets (placement by ids checks every batch so). No code point is
    routed to the reference here (``_unrouted``)."""
    _unrouted(monkeypatch)
    odd = tmp_path / "zz-odd.txt"
    documents = [f"Plain document number {i}." for i in range(300)]
    documents.insert(150, "A rare code point \ufada here.")
    odd.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    corpus = open_corpus([small_corpus, odd])
    tokenizers = [small_vocab / "wordpiece"]
    runs = {
        fraction: compare_tokenizers(
            corpus, tokenizers, CompareConfig(encoder="fast", check_fraction=fraction)
        ).as_dict()
        for fraction in (1.0, 0.0)
    }
    assert runs[1.0]["tokenizers"][0]["encoder"]["name"] == "tokenizers"
    assert runs[0.0]["tokenizers"][0]["encoder"]["name"] == "tokie"
    assert runs[0.0]["parameters"]["check_fraction"] == 0.0
    assert without_encoders(runs[0.0]) == without_encoders(runs[1.0])
    with pytest.raises(RbprepError, match=r"--check-fraction must be in 0\.\.1"):
        compare_tokenizers(corpus, tokenizers, CompareConfig(check_fraction=-0.1))


def test_encoder_fast_refuses_a_tokenizer_tokie_gets_wrong(small_corpus, unigram_json):
    """The Unigram with NFKC: tokie differs on the probe set's combining marks."""
    result = run(
        "compare-tokenizers",
        small_corpus,
        "--tokenizer",
        unigram_json,
        "--encoder",
        "fast",
        "-q",
    )
    assert result.exit_code == 1 and "use --encoder auto or reference" in result.stderr
    assert "Traceback" not in result.output


# --- the command line ---------------------------------------------------------------------


def test_truncation_and_padding_saved_in_a_tokenizer_are_turned_off(
    tmp_path, mixed_corpus, small_vocab, unigram_json
):
    """Tokenizers saved with truncation and padding on measure as they do without: the
    one shard could use and the one it could not (no mask or pad token)."""
    plain = {"bpe": small_vocab / "bpe" / "tokenizer.json", "unigram": unigram_json}
    saved = {}
    for name, path in plain.items():
        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.enable_truncation(4)
        tokenizer.enable_padding(length=32)
        saved[name] = tmp_path / f"{name}.json"
        tokenizer.save(str(saved[name]))

    def measured(paths):
        data = compare_tokenizers([mixed_corpus], list(paths.items())).as_dict()
        overall = [t["overall"] for t in data["tokenizers"]]
        for metrics in overall:
            del metrics["encode_mb_s"]
        return overall

    assert measured(saved) == measured(plain)


def test_tokenizers_whose_ids_skip(tmp_path, mixed_corpus, small_vocab, monkeypatch):
    """A WordPiece with a vocabulary entry removed (its id unused, the last id still in
    use) and a BPE with <mask> moved far above the rest are measured; the WordPiece's
    words as its offsets place them; vocab_size counts entries."""
    from rbprep.compare import comparison

    config = json.loads((small_vocab / "wordpiece" / "tokenizer.json").read_text())
    vocab = config["model"]["vocab"]
    del vocab[next(token for token, i in vocab.items() if i == 1500)]
    wordpiece = tmp_path / "wordpiece.json"
    wordpiece.write_text(json.dumps(config))
    config = json.loads((small_vocab / "bpe" / "tokenizer.json").read_text())
    config["model"]["vocab"]["<mask>"] = 70_000
    next(t for t in config["added_tokens"] if t["content"] == "<mask>")["id"] = 70_000
    bpe = tmp_path / "bpe.json"
    bpe.write_text(json.dumps(config))
    text = (mixed_corpus / "en.txt").read_text()
    last = Tokenizer.from_file(str(wordpiece)).id_to_token(max(vocab.values()))
    (mixed_corpus / "en.txt").write_text(text + last.removeprefix("##") + " <mask>\n")

    def measured():
        data = compare_tokenizers([mixed_corpus], [wordpiece, bpe]).as_dict()
        for tokenizer in data["tokenizers"]:
            del tokenizer["overall"]["encode_mb_s"]
            for metrics in tokenizer["per_file"].values():
                del metrics["encode_mb_s"]
        del data["pairs"][0]["ratios"]["encode_mb_s"], data["seconds"]
        return data

    fast = measured()
    assert [t["overall"]["vocab_size"] for t in fast["tokenizers"]] == [
        len(vocab),
        len(config["model"]["vocab"]),
    ]
    monkeypatch.setattr(comparison.PreTokens, "of", lambda *_: None)
    assert measured() == fast


def test_cli_writes_table_json_markdown_and_plots(
    tmp_path, mixed_corpus, small_vocab, unigram_json
):
    result = run(
        "compare-tokenizers",
        mixed_corpus,
        "--tokenizers",
        small_vocab,
        "--tokenizer",
        f"uni={unigram_json}",
        "--tokenizer",
        small_vocab / "wordpiece",
        "--seq-len",
        "64",
        "--json",
        tmp_path / "c.json",
        "--markdown",
        tmp_path / "c.md",
        "--plots",
        tmp_path / "plots",
        "-q",
    )
    assert result.exit_code == 0, result.output
    assert "byte-level BPE" in result.stdout and "wordpiece-2" in result.stdout
    assert "fertility" in result.stdout and "round trip exact" in result.stdout
    data = json.loads((tmp_path / "c.json").read_text())
    assert [t["name"] for t in data["tokenizers"]] == ["bpe", "wordpiece", "uni", "wordpiece-2"]
    markdown = (tmp_path / "c.md").read_text()
    assert markdown.startswith("# Tokenizer comparison") and "| fertility" in markdown
    assert "](plots/tokens_per_word.png)" in markdown
    import matplotlib.image

    pngs = sorted((tmp_path / "plots").glob("*.png"))
    assert len(pngs) == 4
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.image.imread(png).shape[0] > 100


def test_cli_json_to_stdout_and_sample_bytes(builtin_corpus, small_vocab):
    result = run(
        "compare-tokenizers",
        builtin_corpus,
        "--tokenizer",
        small_vocab / "bpe",
        "--sample-bytes",
        "200KB",
        "--json",
        "-",
        "-q",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["corpus"]["sampled"] and data["corpus"]["text_bytes"] <= 200_000
    assert data["tokenizers"][0]["name"] == "bpe" and data["pairs"] == []


def test_cli_failures(tmp_path, small_corpus, small_vocab):
    no_tokenizer = run("compare-tokenizers", small_corpus)
    assert no_tokenizer.exit_code == 2 and "--tokenizers" in no_tokenizer.output
    not_vocab = run("compare-tokenizers", small_corpus, "--tokenizers", tmp_path)
    assert not_vocab.exit_code == 1 and "no bpe/ or wordpiece/" in not_vocab.stderr
    (tmp_path / "bad.json").write_text("{}")
    bad = run("compare-tokenizers", small_corpus, "--tokenizer", tmp_path / "bad.json")
    assert bad.exit_code == 1 and "not a tokenizers tokenizer.json" in bad.stderr
    assert "Traceback" not in bad.output
    seq = run("compare-tokenizers", small_corpus, "--tokenizers", small_vocab, "--seq-len", "2")
    assert seq.exit_code == 1 and "--seq-len" in seq.stderr
    with pytest.raises(RbprepError, match="no tokenizer"):
        compare_tokenizers([small_corpus], [])


def test_bar_plots_start_at_zero_when_every_value_is_zero():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from rbprep.compare.plots import _grouped_bars

    for values, right in (([0.0, 0.0], 1.0), ([0.0, 2.0], 2.1)):
        ax = Figure().add_subplot()
        _grouped_bars(ax, ["a.txt", "b.txt"], {"bpe": values, "wordpiece": [0.0, 0.0]})
        assert ax.get_xlim() == pytest.approx((0.0, right))


def test_matplotlib_only_when_plots_are_asked_for(small_corpus, small_vocab):
    code = (
        "import sys, rbprep, rbprep.compare; "
        f"c = rbprep.compare_tokenizers([{str(small_corpus)!r}], [{str(small_vocab)!r}]); "
        "c.report(); c.markdown(); "
        "print('matplotlib' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


# --- the fast paths: joined lines, the decoder as a table ---------------------------------

# Lines as the reader makes them (stripped, non-empty), with what stresses tokenizers:
# odd whitespace and control characters, accents and combining marks, contractions and
# cleanup's patterns, CJK, emoji, specials spelled out, and U+FFFD.
LINE_PIECES = [
    *"ab Zé9'.,?!-#\t\x0b\x0c\x1c\x1f\x85\u00a0\u2028\u3000\u0301\ufffd🙂中Σ",
    *("<s>", "[UNK]", "[SEP]", " n't", " do not", " 's", "##", "ﬁ"),
]
LINE_TEXT = (
    st.lists(st.sampled_from(LINE_PIECES) | st.characters(exclude_categories=("Cs",)), max_size=30)
    .map("".join)
    .map(str.strip)
)
DOCUMENTS = st.lists(st.lists(LINE_TEXT.filter(bool), min_size=1, max_size=8), max_size=10)


def as_units(documents: list[list[str]]) -> list[list[str]]:
    return [document_units(document) for document in documents]


@settings(max_examples=200, deadline=None)
@given(documents=DOCUMENTS, later=st.lists(st.booleans(), max_size=10))
def test_batch_texts_make_words_and_document_texts_from_the_lines(documents, later):
    """A batch's words and document texts, made from its lines and joined texts, are those
    of its units (a later line of a document with its space; a later part of a long
    document continuing it), the units made only where asked for."""
    continues = (later + [False] * len(documents))[: len(documents)]
    texts = BatchTexts.of(documents, continues)
    units = texts.units
    assert units == units_of(texts.lines, texts.starts)
    assert texts.first_units(1) == units[:1]
    got, want = texts.words(), m.Words.of(units)
    for name in ("codes", "text_starts", "text_words", "word_of_char", "byte_starts"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert (got.chars, got.utf8_bytes) == (want.chars, want.utf8_bytes)
    bounds = np.concatenate(([0], np.cumsum([len(d) for d in documents]))).tolist()
    assert texts.document_texts() == ["".join(units[a:b]) for a, b in itertools.pairwise(bounds)]


def encoded_by_ids(contestant, documents: list[list[str]]):
    """What compare-tokenizers' encode gives for a batch of documents (each its lines as
    read): texts encoded, ids, units per text; its untimed share on a thread as in a run,
    every text checked against the reference."""
    encode = EncodeIds(contestant, BatchTexts.of(documents), batch_number=1, check_fraction=1.0)
    encode.timed(m.Tally())
    with ThreadPoolExecutor(max_workers=1) as encoder:
        encode.start(encoder.submit)
        return encode.result()


@pytest.mark.parametrize("encoder", ["auto", "reference"])
@settings(max_examples=150, deadline=None)
@given(documents=DOCUMENTS)
def test_joined_encoding_gives_the_ids_of_units_one_by_one(small_vocab, documents, encoder):
    """The byte-level BPE's encode (a document's lines joined by newlines, as shard), by
    tokie (auto) and by tokenizers, gives exactly the ids and unit lengths of encoding
    every unit alone by tokenizers; a unit holding a line break falls back to that."""
    bpe = open_contestant("bpe", str(small_vocab / "bpe"), encoder)
    assert bpe.line_break_id is not None
    assert bpe.encoder.id.name == ("tokie" if encoder == "auto" else "tokenizers")
    for documents_ in (documents, [["first line", "with\na break", "last"]]):
        units = [unit for doc in as_units(documents_) for unit in doc]
        lengths, ids, text_units = encoded_by_ids(bpe, documents_)
        assert text_units.tolist() == [1] * len(units)
        expected = [bpe.tokenizer.encode(unit, add_special_tokens=False).ids for unit in units]
        assert lengths.tolist() == [len(unit_ids) for unit_ids in expected]
        assert ids.tolist() == [i for unit_ids in expected for i in unit_ids]


def wordpiece_variants(small_vocab: Path) -> dict[str, Tokenizer]:
    """The test WordPiece as trained, and with each BertNormalizer switch turned, and
    with no normaliser at all."""
    config = json.loads((small_vocab / "wordpiece" / "tokenizer.json").read_text())
    bert = config["normalizer"]
    changes = {
        "trained": bert,
        "cased": {**bert, "lowercase": False},
        "accents kept": {**bert, "strip_accents": False},
        "no cleaning": {**bert, "clean_text": False, "handle_chinese_chars": False},
        "no normaliser": None,
    }
    variants = {}
    for name, normalizer in changes.items():
        tokenizer = Tokenizer.from_str(json.dumps({**config, "normalizer": normalizer}))
        tokenizer.encode_special_tokens = True
        variants[name] = tokenizer
    return variants


def placed_both_ways(tokenizer: Tokenizer, documents: list[list[str]]):
    """(by pre-tokens, or None where they refuse; by offsets): tokens per unit, ids, and
    each token's word, for a batch of documents encoded as compare-tokenizers does."""
    from rbprep.compare import comparison as c

    contestant = c.Contestant(
        name="wp",
        path="",
        tokenizer=tokenizer,
        encoder=ReferenceEncoder(tokenizer, None),
        reference=ReferenceEncoder(tokenizer, None),
        encoder_note=None,
        style=Style.of(tokenizer),
        vocab_size=tokenizer.get_vocab_size(with_added_tokens=True),
        id_limit=tokenizer.get_vocab_size(with_added_tokens=True),
        unk_id=tokenizer.token_to_id("[UNK]"),
        special_ids=(),
        shardable=False,
        byte_lengths=None,
        line_break_id=None,
        pre_tokens=c.PreTokens.of(tokenizer, json.loads(tokenizer.to_str())),
        spellings=None,
        counts=np.zeros(1, dtype=np.int64),
        file_counts=np.zeros(1, dtype=np.int64),
        words_tokens=np.zeros(1, dtype=np.int64),
    )
    assert contestant.pre_tokens is not None
    units = [unit for doc in as_units(documents) for unit in doc]
    words = m.Words.of(units)
    fast = c.placed_by_ids(contestant, words, *encoded_by_ids(contestant, documents))
    slow = c.placed_by_offsets(words, *c.encode_offsets(tokenizer, units))
    return fast, slow


@settings(max_examples=100, deadline=None)
@given(documents=DOCUMENTS)
def test_wordpiece_placed_by_pre_tokens_as_by_offsets(small_vocab, documents):
    """A BERT WordPiece encoded without offsets, a document's lines joined, places its
    tokens in units and words exactly as its offsets do, whatever its normaliser does;
    where it cannot tell (a pre-token over a character str.split calls whitespace) it
    says so and the offsets decide. Without those characters it always tells."""
    told = [[line.translate(PYTHON_ONLY_SPACES) for line in doc] for doc in documents]
    for name, tokenizer in wordpiece_variants(small_vocab).items():
        fast, slow = placed_both_ways(tokenizer, documents)
        if fast is not None:
            for got, expected in zip(fast, slow, strict=True):
                assert got.tolist() == expected.tolist(), name
        fast, slow = placed_both_ways(tokenizer, told)
        assert fast is not None, name
        for got, expected in zip(fast, slow, strict=True):
            assert got.tolist() == expected.tolist(), name


# What str.split takes for whitespace and BERT's pre-tokenizer does not (the normaliser
# may drop them, joining two words): made plain spaces.
PYTHON_ONLY_SPACES = str.maketrans(dict.fromkeys("\x0b\x0c\x1c\x1d\x1e\x1f\x85", " "))


def test_wordpiece_pre_tokens_serve_real_text(small_vocab):
    """On ordinary multilingual text (accents, CJK, emoji, odd spaces, punctuation,
    specials spelled out) the offsets are not needed, for every normaliser variant; a
    form feed inside a word, where the normaliser drops it, is where they are."""
    documents = [
        [*MIXED["accents.txt"].split("\n")[:2], "x\u00a0y\u3000z \u200bw — «q»"],
        [*MIXED["zh.txt"].split("\n")[:2], "Ｆｕｌｌ ｗｉｄｔｈ ﬁn [UNK] <s> ##a"],
        ["Ελληνικά: ΣΊΣΥΦΟΣ; Иванов, 1234.5 e\u0301te İstanbul"],
    ]
    for name, tokenizer in wordpiece_variants(small_vocab).items():
        fast, slow = placed_both_ways(tokenizer, documents)
        assert fast is not None, name
        for got, expected in zip(fast, slow, strict=True):
            assert got.tolist() == expected.tolist(), name
        # clean_text drops a form feed, making "a\x0cb" one pre-token of two words
        fast, slow = placed_both_ways(tokenizer, [["one a\x0cb two"]])
        assert (fast is None) == (name not in ("no cleaning", "no normaliser")), name
        if fast is not None:
            assert fast[1].tolist() == slow[1].tolist()


def test_wordpiece_metrics_without_offsets_equal_those_with(mixed_corpus, small_vocab, monkeypatch):
    """The whole comparison, WordPiece placed by pre-tokens or by offsets: every number
    but the encode speed is the same."""
    from rbprep.compare import comparison

    def measured():
        data = compare_tokenizers([mixed_corpus], [small_vocab / "wordpiece"]).as_dict()
        for metrics in [
            data["tokenizers"][0]["overall"],
            *data["tokenizers"][0]["per_file"].values(),
        ]:
            del metrics["encode_mb_s"]
        del data["seconds"]
        return data

    placed = []
    place = comparison.PreTokens.place
    monkeypatch.setattr(
        comparison.PreTokens, "place", lambda *a: placed.append(place(*a)) or placed[-1]
    )
    fast = measured()
    assert placed and None not in placed  # the pre-tokens placed every batch
    monkeypatch.setattr(comparison.PreTokens, "of", lambda *_: None)
    assert measured() == fast


def written(spellings, ids: list[int]) -> str:
    """What the table says the decoder writes for ``ids``, the slow way."""
    keys = [spellings.vocab_size + i if k == 0 else i for k, i in enumerate(ids)]
    parts = [spellings.flat[spellings.bounds[k] : spellings.bounds[k + 1]] for k in keys]
    if spellings.text:
        return "".join(chr(c) for part in parts for c in part.tolist())
    return b"".join(part.tobytes() for part in parts).decode("utf-8", "replace")


@pytest.fixture(scope="session")
def cleanup_wordpiece() -> Tokenizer:
    """A WordPiece whose vocabulary holds what the decoder's cleanup rewrites."""
    from tokenizers import decoders, models

    vocab = ["[UNK]", "a", "##b", ".", "##.", "'", "' ", "n't", "do not", "##do not", "'s", "##"]
    vocab += ["#", "####", " ,", "x ?", "##'ve", "'re", "!", "don't", "not", "do", "é", "##é"]
    tokenizer = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.add_special_tokens(["[SEP]"])
    return tokenizer


CLEANUP_PARTS = [" ", ".", "'", "n't", " do", " not", "s", "\x00"]  # and the joining char


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(CLEANUP_PARTS)).map("".join)))
def test_cleanup_of_many_texts_at_once_is_each_ones(texts):
    """The decoder's cleanup run on a vocabulary joined is each entry's, even where an
    entry holds the joining character."""
    from rbprep.compare.roundtrip import cleaned, cleanup

    assert cleaned(texts) == [cleanup(text) for text in texts]


@settings(max_examples=300, deadline=None)
@given(picks=st.lists(st.lists(st.integers(0, 10**9), max_size=12), min_size=1, max_size=6))
def test_decoder_tables_write_what_decode_writes(small_vocab, cleanup_wordpiece, picks):
    """Spellings (the ByteLevel and WordPiece decoders as tables) against
    Tokenizer.decode on random ids, and ``spelled`` against decode == document."""
    from rbprep.compare.roundtrip import Spellings

    tokenizers = [
        Tokenizer.from_file(str(small_vocab / kind / "tokenizer.json"))
        for kind in ("bpe", "wordpiece")
    ]
    for tokenizer in [*tokenizers, cleanup_wordpiece]:
        spellings = Spellings.of(tokenizer)
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        documents = [[pick % size for pick in doc] for doc in picks]
        decoded = [tokenizer.decode(ids, skip_special_tokens=False) for ids in documents]
        assert [written(spellings, ids) for ids in documents] == decoded
        if spellings.text:
            assert [spellings.write(np.array(ids, dtype=np.int64)) for ids in documents] == decoded
        # Each document against its decoding, and against that changed by one character.
        changed = [text[1:] if len(text) % 2 else text + "x" for text in decoded]
        ids = np.array([i for doc in documents for i in doc], dtype=np.int64)
        doc_tokens = np.array([len(doc) for doc in documents], dtype=np.int64)
        assert not spellings.spelled(ids, doc_tokens, changed).any()
        same = spellings.spelled(ids, doc_tokens, decoded)
        if spellings.text:
            assert same.all()
        else:  # the bytes are the text's exactly where they are valid UTF-8
            assert same.tolist() == ["\ufffd" not in text for text in decoded]


def test_the_python_whitespace_covers_the_pre_tokenizers():
    """``whole_pieces`` needs every character that tokenizers' pre-tokenizers split off
    as whitespace (Rust's char::is_whitespace) to be whitespace to str.split too."""
    from tokenizers import pre_tokenizers

    chars = [chr(c) for c in range(0x3001) if not 0xD800 <= c < 0xE000]  # isspace() < U+3001
    text = "".join("x" + char for char in chars) + "x"
    pieces = pre_tokenizers.WhitespaceSplit().pre_tokenize_str(text)
    split_off = [chars[start // 2 - 1] for _, (start, _) in pieces[1:] if text[start - 1] != "x"]
    assert split_off and all(char.isspace() for char in split_off)


@settings(max_examples=100, deadline=None)
@given(documents=DOCUMENTS)
# An [UNK] spelled out beside an unknown character (the decoding holds [UNK] where the
# text holds one, and, lowercased, where it holds the other), and letters whose lowercase
# or accent-stripped forms change length.
@example(documents=[["[UNK] 🙂 x", "🙂[UNK]"], ["İstanbul ǅ e\u0301 \ufb01", "[unk]"], ["[UNK] x"]])
def test_round_trip_counts_equal_decoding_every_document(small_vocab, documents):
    """The round trip counted through the decoder tables equals decoding every document
    and normalising it, for both tokenizers, on text full of what they lose."""
    documents = as_units(documents)
    for kind in ("bpe", "wordpiece"):
        contestant = open_contestant(kind, str(small_vocab / kind), "reference")
        assert contestant.spellings is not None
        ids_of = [
            [e.ids for e in contestant.tokenizer.encode_batch(doc, add_special_tokens=False)]
            for doc in documents
        ]
        ids = np.array([i for doc in ids_of for unit in doc for i in unit], dtype=np.int64)
        doc_tokens = np.array([sum(map(len, doc)) for doc in ids_of], dtype=np.int64)
        texts = ["".join(doc) for doc in documents]
        fast = round_trip(contestant, ids, doc_tokens, texts)
        contestant.spellings = None
        slow = round_trip(contestant, ids, doc_tokens, texts)
        assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])


def test_a_document_compared_in_parts_counts_as_it_does_whole(
    tmp_path, mixed_corpus, builtin_corpus, small_vocab, monkeypatch
):
    """Documents over BATCH_CHARS go in parts of whole units, a batch each, so memory is
    bounded on any document; every count is as if each were compared whole."""
    from rbprep.compare import comparison

    corpus = open_corpus([mixed_corpus, builtin_corpus])
    whole = compare_tokenizers(corpus, [small_vocab], CompareConfig()).as_dict()
    monkeypatch.setattr(comparison, "BATCH_CHARS", 300)
    longest = max(
        sum(len(unit) + 1 for unit in document.units) for document in corpus.documents(ReadStats())
    )
    assert longest > 10 * 300  # documents in many parts
    parts = compare_tokenizers(corpus, [small_vocab], CompareConfig()).as_dict()
    assert without_encoders(parts) == without_encoders(whole)
