"""train-vocab (DESIGN §4): both tokenizers, loadable by tokenizers and transformers."""

from __future__ import annotations

import json
import logging
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from rbprep.corpus import Document, ReadStats, open_corpus
from rbprep.corpus.sampling import Usage, sample_documents
from rbprep.errors import RbprepError
from rbprep.vocab import VocabConfig, continuation_chars, train_vocab

KINDS_ORDER = ("bpe", "wordpiece")

BPE_FILES = [
    "merges.txt",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
]
WORDPIECE_FILES = [
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
]
SAMPLES = [
    "Hello world, this is a test.",
    "  leading and trailing spaces  ",
    "Zürich, naïve café: 中文字符 and emoji 🙂 مرحبا",
    "text that spells <mask> and </s> and [SEP]",
    "line\nbreaks\r\nand\ttabs",
]


def test_files_and_sizes(small_vocab):
    assert sorted(p.name for p in (small_vocab / "bpe").iterdir()) == BPE_FILES
    assert sorted(p.name for p in (small_vocab / "wordpiece").iterdir()) == WORDPIECE_FILES
    summary = json.loads((small_vocab / "train-vocab.json").read_text())
    sizes = {t["kind"]: t["vocab_size"] for t in summary["tokenizers"]}
    assert sizes == {"bpe": 4000, "wordpiece": 3000}
    assert summary["sampled"] is True
    # About the 2 MB asked: a Bernoulli sample of ~400 documents of very unequal size.
    assert 1_400_000 < summary["text_bytes_used"] < 2_600_000


def test_special_token_ids_are_as_documented(small_vocab):
    bpe = Tokenizer.from_file(str(small_vocab / "bpe" / "tokenizer.json"))
    wordpiece = Tokenizer.from_file(str(small_vocab / "wordpiece" / "tokenizer.json"))
    assert [bpe.token_to_id(t) for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")] == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert [wordpiece.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [
        0,
        1,
        2,
        3,
        4,
    ]


def test_post_processors(small_vocab):
    bpe = Tokenizer.from_file(str(small_vocab / "bpe" / "tokenizer.json"))
    tokens = bpe.encode("first part", "second").tokens
    assert tokens[0] == "<s>" and tokens[-1] == "</s>"
    assert tokens.count("</s>") == 3 and tokens[tokens.index("</s>") + 1] == "</s>"
    wordpiece = Tokenizer.from_file(str(small_vocab / "wordpiece" / "tokenizer.json"))
    encoding = wordpiece.encode("First part", "second")
    assert encoding.tokens[0] == "[CLS]" and encoding.tokens.count("[SEP]") == 2
    assert encoding.tokens[1] == "first"  # lowercased by default
    assert encoding.type_ids[-1] == 1


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_transformers_loads_them_as_roberta_and_bert(small_vocab, kind):
    transformers = pytest.importorskip("transformers")
    directory = small_vocab / kind
    auto = transformers.AutoTokenizer.from_pretrained(str(directory))
    raw = Tokenizer.from_file(str(directory / "tokenizer.json"))
    expected = {
        "bpe": ("RobertaTokenizer", "<mask>", "<pad>", "<s>", "</s>"),
        "wordpiece": ("BertTokenizer", "[MASK]", "[PAD]", "[CLS]", "[SEP]"),
    }[kind]
    assert type(auto).__name__.startswith(expected[0])
    assert (auto.mask_token, auto.pad_token, auto.cls_token, auto.sep_token) == expected[1:]
    assert auto.mask_token_id == 4 and auto.model_max_length == 512
    for text in SAMPLES:
        assert auto(text)["input_ids"] == raw.encode(text).ids
        assert auto(text, "a pair")["input_ids"] == raw.encode(text, "a pair").ids
    if kind == "bpe":
        ids = auto("Hello world, <mask>.")["input_ids"]
        assert auto.mask_token_id in ids  # a user's own mask in text stays a mask for fill-mask


def test_wordpiece_cased(tmp_path, builtin_corpus):
    train_vocab(
        [builtin_corpus],
        tmp_path,
        VocabConfig(only="wordpiece", wordpiece_size=800, cased=True, sample_bytes=300_000),
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train-vocab.json", "wordpiece"]
    wordpiece = Tokenizer.from_file(str(tmp_path / "wordpiece" / "tokenizer.json"))
    assert wordpiece.encode("The").tokens[1] == "The"
    config = json.loads((tmp_path / "wordpiece" / "tokenizer_config.json").read_text())
    assert config["do_lower_case"] is False


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200))
def test_bpe_round_trips_any_text_exactly(small_vocab, text):
    bpe = Tokenizer.from_file(str(small_vocab / "bpe" / "tokenizer.json"))
    bpe.encode_special_tokens = True  # as shard reads text: "<mask>" is ordinary text
    encoding = bpe.encode(text, add_special_tokens=False)
    assert bpe.decode(encoding.ids, skip_special_tokens=True) == text
    assert all(i > 4 for i in encoding.ids)


def test_bpe_round_trips_awkward_text(small_vocab):
    bpe = Tokenizer.from_file(str(small_vocab / "bpe" / "tokenizer.json"))
    bpe.encode_special_tokens = True
    for text in [*SAMPLES, "\x00nul", " ", "\r\n\r", "e\u0301\u200b\u202eRTL", "👩‍👩‍👧‍👦" * 3]:
        assert bpe.decode(bpe.encode(text).ids) == text


def test_non_empty_out_is_refused_without_force(tmp_path, small_corpus):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    config = VocabConfig(only="bpe", bpe_size=300)
    with pytest.raises(RbprepError, match="not empty; use --force"):
        train_vocab([small_corpus], tmp_path / "out", config)
    train_vocab([small_corpus], tmp_path / "out", config, force=True)
    assert (tmp_path / "out" / "keep.txt").exists()  # --force replaces only what it writes
    assert (tmp_path / "out" / "bpe" / "tokenizer.json").exists()


def test_small_corpus_reports_the_size_reached(small_corpus, tmp_path, caplog):
    summary = train_vocab([small_corpus], tmp_path / "v", VocabConfig(bpe_size=5000))
    reached = {t.kind: t.vocab_size for t in summary.tokenizers}
    assert 261 <= reached["bpe"] < 5000 and reached["wordpiece"] < 30_000
    assert "filled" in caplog.text and "give more text" in caplog.text
    assert "asked for 5,000" in summary.report()


def test_summary_counts_the_corpus(small_corpus, tmp_path):
    summary = train_vocab([small_corpus], tmp_path / "v", VocabConfig(only="bpe", bpe_size=300))
    assert (summary.documents_used, summary.units_used, summary.corpus_files) == (3, 5, 1)
    assert summary.read["documents"] == 3 and not summary.sampled


def test_empty_text_is_an_error(tmp_path):
    (tmp_path / "blank.txt").write_text("\n\n")
    with pytest.raises(RbprepError, match="holds no text"):
        train_vocab([tmp_path], tmp_path / "v", VocabConfig(only="bpe", bpe_size=300))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (VocabConfig(bpe_size=100), "bpe-size"),
        (VocabConfig(min_frequency=0), "min-frequency"),
        (VocabConfig(sample_bytes=0), "sample-bytes"),
        (VocabConfig(only="sentencepiece"), "--only"),
    ],
)
def test_bad_config(small_corpus, tmp_path, config, message):
    with pytest.raises(RbprepError, match=message):
        train_vocab([small_corpus], tmp_path / "v", config)


def test_sample_is_deterministic_spread_and_about_the_size(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.txt").write_text(
            "\n\n".join(f"{name} document {i} " + "word " * 20 for i in range(300)) + "\n"
        )
    corpus = open_corpus([tmp_path], partition_size=10_000)
    total = sum(p.size for p in corpus.partitions)

    def sample(seed: int) -> tuple[list[list[str]], Usage]:
        usage = Usage()
        docs = sample_documents(corpus, ReadStats(), total // 4, seed, usage)
        return [d.units for _, d in docs], usage

    first, usage = sample(0)
    assert sample(0)[0] == first
    assert sample(1)[0] != first
    assert usage.sampled and abs(usage.text_bytes - total // 4) < total // 20
    # Every file gets its share: no hard stop cuts off the files that sort last.
    for name in ("a", "b", "c"):
        share = sum(units[0].startswith(name) for units in first) / len(first)
        assert 0.25 < share < 0.42


def test_a_parquet_corpus_is_sampled_by_its_text_not_its_compressed_bytes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"document {i}\n" + "the same words again " * 30 for i in range(2_000)]
    pq.write_table(pa.table({"text": texts}), tmp_path / "c.parquet", compression="zstd")
    total = sum(len(t.encode()) for t in texts)
    assert (tmp_path / "c.parquet").stat().st_size < total // 8  # it compresses well
    usage = Usage()
    corpus = open_corpus([tmp_path / "c.parquet"])
    sampled = list(sample_documents(corpus, ReadStats(), total // 4, 0, usage))
    assert usage.sampled and 0.2 < len(sampled) / len(texts) < 0.3


def test_training_is_deterministic(tmp_path, small_corpus):
    # A tiny corpus is all count ties: before rbprep declared the "##" pieces up front,
    # tokenizers' WordPiece trainer gave a different vocabulary in about half the runs.
    config = VocabConfig(bpe_size=400, wordpiece_size=200, min_frequency=1)
    outputs = []
    for run in range(4):
        train_vocab([small_corpus], tmp_path / str(run), config)
        outputs.append(
            [(tmp_path / str(run) / k / "tokenizer.json").read_bytes() for k in KINDS_ORDER]
        )
    assert all(output == outputs[0] for output in outputs)


def test_continuation_chars():
    documents = [Document(0, ["Ünïcode Straße, 中文 x-y!", "tab\there «quoted»"])]
    uncased = continuation_chars(documents, cased=False)
    assert uncased == sorted(set("unicodestrasexytabhrequoted") | {"ß"})
    cased = continuation_chars(documents, cased=True)
    assert {"Ü", "ï", "S"} <= set(cased) and "u" in cased
    for char in ",!-«»中文 \t":
        assert char not in uncased and char not in cased


def test_wordpiece_declared_pieces_are_ordinary_vocabulary(small_vocab):
    wordpiece = Tokenizer.from_file(str(small_vocab / "wordpiece" / "tokenizer.json"))
    assert sorted(wordpiece.get_added_tokens_decoder()) == [0, 1, 2, 3, 4]
    assert wordpiece.token_to_id("##s") is not None
    pieces = wordpiece.encode("qzxjvkwq").tokens[1:-1]  # no such word: only pieces
    assert len(pieces) > 1 and all(piece.startswith("##") for piece in pieces[1:])


def test_no_warning_when_the_size_is_reached(tmp_path, builtin_corpus, caplog):
    caplog.set_level(logging.WARNING, logger="rbprep")
    train_vocab(
        [builtin_corpus], tmp_path, VocabConfig(only="bpe", bpe_size=500, sample_bytes=200_000)
    )
    assert "filled" not in caplog.text


# --- the fast BPE trainer: gigabpe, proven to give tokenizers' files ---------------------

COMPARED = ("tokenizer.json", "vocab.json", "merges.txt")
HOSTILE_LINES = (
    "Größe und Übermaß, naïve café; İstanbul'da çay. Привет, мир! Γειά σου κόσμε.\n"
    "日本語のテキスト。中文文本没有空格。한국어 문장입니다. ภาษาไทยไม่มีช่องว่าง\n"
    "Controls \x01\x02\x1b[0m and \x7f\x85\x9f inside, a zero\u200bwidth space, \u2028 \u2029.\n"
    "form\x0cfeed and vertical\x0btab, \x1c\x1d\x1e separators, emoji 🙂👍🏽👨\u200d👩\u200d👧\n"
    "crlf line\r\nand a lone cr\rline, tabs\tand  double  spaces, <s> </s> <mask> spelled\n"
)


def _trained_files(tmp_path, text_or_files, trainer, **options):
    """train-vocab --only bpe with ``trainer`` on a file of ``text`` (or the files): its
    BPE's files, and the summary."""
    files = text_or_files
    if isinstance(text_or_files, str):
        files = [tmp_path / "corpus.txt"]
        files[0].write_bytes(text_or_files.encode("utf-8", "surrogatepass"))
    out = tmp_path / trainer
    config = VocabConfig(only="bpe", trainer=trainer, **options)
    summary = train_vocab(files, out, config, force=True)
    return {name: (out / "bpe" / name).read_bytes() for name in COMPARED}, summary


@settings(max_examples=25, deadline=None)
@given(
    lines=st.lists(
        st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=60)
        | st.sampled_from(HOSTILE_LINES.splitlines())
        | st.builds(
            lambda c, n: c * n, st.sampled_from(["ab", "x", "日本", " a"]), st.integers(1, 80)
        ),
        min_size=1,
        max_size=60,
    ),
    size=st.sampled_from([261, 300, 700, 2000, 50_000]),
    min_frequency=st.sampled_from([1, 2, 3, 7]),
)
def test_the_fast_trainer_writes_the_reference_files_on_hypothesis_text(
    tmp_path_factory, lines, size, min_frequency
):
    tmp_path = tmp_path_factory.mktemp("bpe")
    text = "\n".join(lines) + "\n"
    if not text.strip():
        return
    options = dict(bpe_size=size, min_frequency=min_frequency)
    outcomes = []
    for trainer in ("fast", "reference"):
        try:  # text the reader refuses (all NULs: a binary file) is refused by both alike
            outcomes.append(_trained_files(tmp_path, text, trainer, **options)[0])
        except RbprepError as error:
            outcomes.append(str(error).replace(trainer, "TRAINER"))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("size", [300, 5_000, 50_000])
def test_the_fast_trainer_writes_the_reference_files_on_real_and_hostile_text(
    tmp_path, builtin_corpus, size
):
    """The built-in corpus, many languages and hostile Unicode (controls, line and
    paragraph separators, CR and CRLF, spelled specials), and a line longer than
    MAX_UNIT_BYTES (cut into units as it is read), at vocabularies from 300 to 50K; with
    and without --sample-bytes."""
    from rbprep.corpus.formats import MAX_UNIT_BYTES

    hostile = tmp_path / "hostile.txt"
    hostile.write_text(
        HOSTILE_LINES * 50 + "word " * (MAX_UNIT_BYTES // 4) + "\n", encoding="utf-8"
    )
    for options in ({}, {"sample_bytes": 1_000_000, "seed": 3}):
        files = [builtin_corpus, hostile]
        fast, summary = _trained_files(tmp_path, files, "fast", bpe_size=size, **options)
        reference, _ = _trained_files(tmp_path, files, "reference", bpe_size=size, **options)
        assert fast == reference
        assert summary.tokenizers[0].trainer == {"name": "gigabpe", "version": "0.1.0"}


def test_auto_takes_the_fast_trainer_and_says_who_trained(tmp_path, small_corpus):
    summary = train_vocab([small_corpus], tmp_path / "auto", VocabConfig(only="bpe", bpe_size=300))
    assert summary.tokenizers[0].trainer["name"] == "gigabpe"
    assert "trained by gigabpe 0.1.0" in summary.report()
    recorded = json.loads((tmp_path / "auto" / "train-vocab.json").read_text())
    assert recorded["tokenizers"][0]["trainer"] == {"name": "gigabpe", "version": "0.1.0"}
    assert recorded["config"]["trainer"] == "auto"
    summary = train_vocab(
        [small_corpus], tmp_path / "ref", VocabConfig(only="bpe", bpe_size=300, trainer="reference")
    )
    assert summary.tokenizers[0].trainer["name"] == "tokenizers"


def test_a_fast_trainer_that_disagrees_at_load_is_left_for_the_reference(
    tmp_path, small_corpus, monkeypatch
):
    """A changed wheel (here: gigabpe's merges with the last one dropped) fails the probe
    at load: auto trains with tokenizers and says why; fast is a one-line error."""
    import gigabpe

    from rbprep import bpe_trainers

    original = gigabpe.train_bpe
    monkeypatch.setattr(
        gigabpe, "train_bpe", lambda *a, **k: (lambda v, m: (v, m[:-1]))(*original(*a, **k))
    )
    bpe_trainers.fast_trainer_problem.cache_clear()
    try:
        summary = train_vocab([small_corpus], tmp_path / "a", VocabConfig(only="bpe", bpe_size=300))
        result = summary.tokenizers[0]
        assert result.trainer["name"] == "tokenizers"
        assert "trains other merges than tokenizers on the probe text" in result.trainer_note
        assert "trains other merges" in summary.report()
        with pytest.raises(
            RbprepError, match=r"--trainer fast: gigabpe 0\.1\.0 trains other merges"
        ):
            train_vocab([small_corpus], tmp_path / "f", VocabConfig(only="bpe", trainer="fast"))
    finally:
        bpe_trainers.fast_trainer_problem.cache_clear()


def test_gigabpe_runs_on_half_the_cores():
    """One thread per two cores, at least one: the memory each thread's word counts
    take buys little time on a small machine (README, "train-vocab")."""
    from rbprep.bpe_trainers import gigabpe_threads

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert gigabpe_threads() == max(1, cores // 2)
