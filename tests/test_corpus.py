"""The corpus reader (DESIGN §3): formats, encodings, bad input, order and partitions."""

from __future__ import annotations

import bz2
import codecs
import gzip
import json
import lzma
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from rbprep.corpus import Partition, ReadStats, open_corpus
from rbprep.corpus.formats import MAX_UNIT_BYTES, cut_long_unit, long_line_cut
from rbprep.errors import RbprepError
from tests.conftest import SMALL_TEXT, read_documents

EXPECTED = [
    ["The quick brown fox jumps over the lazy dog.", "A second line of the first document."],
    ["Second document, one line only."],
    ["Third document: naïve café, Zürich, emoji 🙂, 中文字符, العربية.", "Its last line."],
]


def test_txt_documents_and_units(small_corpus):
    documents, stats = read_documents([small_corpus])
    assert documents == EXPECTED
    assert (stats.documents, stats.units, stats.files_read) == (3, 5, 1)
    assert stats.text_bytes == len(SMALL_TEXT.encode())


def test_units_are_stripped_and_blank_runs_are_one_boundary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("\n\n  one  \n\t two\t\n \n\t\n\n three \n\n\n")
    documents, _ = read_documents([path])
    assert documents == [["one", "two"], ["three"]]


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_crlf_and_cr_only_line_ends(tmp_path, newline):
    path = tmp_path / "a.txt"
    path.write_bytes(SMALL_TEXT.replace("\n", newline).encode())
    documents, stats = read_documents([path])
    assert documents == EXPECTED
    assert stats.invalid_utf8 == 0


def test_crlf_split_across_read_blocks_is_not_a_blank_line(tmp_path, monkeypatch):
    import rbprep.corpus.formats as formats

    monkeypatch.setattr(formats, "BLOCK_SIZE", 7)  # cuts between "\r" and "\n" somewhere
    path = tmp_path / "a.txt"
    path.write_bytes(b"abcdef\r\nghijk\r\nlmn\r\n\r\nopq\r\n")
    documents, _ = read_documents([path])
    assert documents == [["abcdef", "ghijk", "lmn"], ["opq"]]


def test_utf8_bom_is_dropped(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbf" + SMALL_TEXT.encode())
    documents, _ = read_documents([path])
    assert documents == EXPECTED


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_with_bom_are_decoded(tmp_path, encoding):
    path = tmp_path / "a.txt"
    data = SMALL_TEXT.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    path.write_bytes(data)
    documents, stats = read_documents([path])
    assert documents == EXPECTED
    assert stats.invalid_utf8 == 0


def test_invalid_utf8_becomes_replacement_and_is_counted(tmp_path):
    path = tmp_path / "a.txt"
    # Two invalid sequences, and one genuine U+FFFD that must not be counted.
    path.write_bytes(b"good \xff line\nbad \xc3\x28 and real \xef\xbf\xbd\n")
    documents, stats = read_documents([path])
    assert documents == [["good \ufffd line", "bad \ufffd( and real \ufffd"]]
    assert stats.invalid_utf8 == 2


def test_invalid_text_is_warned_once_per_file_naming_it(tmp_path, caplog):
    (tmp_path / "mixed.txt").write_bytes(b"good\nbad \xff\xfe here \xc3 and\n" * 3)
    (tmp_path / "utf16.txt").write_bytes(
        codecs.BOM_UTF16_LE + "ok\n".encode("utf-16-le") + b"\x00\xd8a\x00\n\x00"
    )
    (tmp_path / "fine.txt").write_text("all fine\n")
    _, stats = read_documents(sorted(tmp_path.iterdir()))
    assert stats.invalid_utf8 == 10
    warnings = [r.getMessage() for r in caplog.records if "replaced with U+FFFD" in r.getMessage()]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"{tmp_path / 'mixed.txt'}: invalid UTF-8 at byte 9 ")
    assert warnings[1].startswith(f"{tmp_path / 'utf16.txt'}: invalid utf-16 near byte")


def test_invalid_utf8_under_strict_names_file_and_offset(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"good line\nbad \xff\n")
    with pytest.raises(RbprepError, match=r"a\.txt: invalid UTF-8 at byte 14"):
        read_documents([path], strict=True)


def test_latin1_text_is_replaced_not_guessed(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café déjà vu\n".encode("latin-1"))
    documents, stats = read_documents([path])
    assert documents == [["caf\ufffd d\ufffdj\ufffd vu"]]
    assert stats.invalid_utf8 == 3


def test_binary_file_named_txt_is_skipped(tmp_path, small_corpus, caplog):
    binary = tmp_path / "image.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    documents, stats = read_documents([tmp_path])
    assert documents == EXPECTED
    assert stats.skipped == {"binary": 1}
    assert "image.txt" in caplog.text and "binary" in caplog.text
    with pytest.raises(RbprepError, match=r"image\.txt: looks binary.*--strict"):
        read_documents([tmp_path], strict=True)


def test_nul_bytes_after_the_first_block_are_replaced_and_counted(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"x" * 10_000 + b"\nab\x00cd\n")
    documents, stats = read_documents([path])
    assert documents == [["x" * 10_000, "ab\ufffdcd"]]
    assert stats.nul_chars == 1
    with pytest.raises(RbprepError, match="NUL"):
        read_documents([path], strict=True)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n\t\n\r\n"])
def test_empty_and_blank_only_files_hold_no_documents(tmp_path, small_corpus, content):
    (tmp_path / "empty.txt").write_bytes(content)
    documents, stats = read_documents([tmp_path], strict=True)
    assert documents == EXPECTED
    assert stats.empty_files == 1
    assert stats.skipped == {}


def test_a_5mb_line_is_cut_at_the_default_bound_and_its_neighbours_kept(tmp_path):
    line = "word " * 1_000_000
    path = tmp_path / "long.txt"
    path.write_text("short\n" + line + "\nafter\n")
    [units], stats = read_documents([path])
    assert units[0] == "short" and units[-1] == "after"
    assert all(len(unit) <= MAX_UNIT_BYTES for unit in units)
    assert " ".join(units[1:-1]) == line.strip() and stats.long_line_cuts == len(units) - 3


def test_unicode_is_kept_exactly(tmp_path):
    lines = [
        "emoji 👩‍👩‍👧‍👦 🇫🇷 🙂",
        "combining: e\u0301 a\u0308 (not normalised)",
        "zero\u200bwidth\u200djoiner\ufeffinside",
        "עברית ומספרים 123 right-to-left العربية",
        "line\u2028separator and\x85next-line stay inside the unit",
    ]
    path = tmp_path / "u.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    documents, _ = read_documents([path])
    assert documents == [lines]


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [
        (".gz", gzip.compress),
        (".bz2", bz2.compress),
        (".xz", lzma.compress),
        (".zst", lambda data: zstandard.ZstdCompressor().compress(data)),
    ],
)
def test_compressed_files(tmp_path, suffix, compress):
    path = tmp_path / f"a.txt{suffix}"
    path.write_bytes(compress(SMALL_TEXT.encode()))
    documents, stats = read_documents([path])
    assert documents == EXPECTED
    assert stats.text_bytes == len(SMALL_TEXT.encode())


def test_concatenated_gzip_members_are_all_read(tmp_path):
    path = tmp_path / "a.txt.gz"
    path.write_bytes(gzip.compress(b"one\n\n") + gzip.compress(b"two\n"))
    documents, _ = read_documents([path])
    assert documents == [["one"], ["two"]]


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [
        (".gz", gzip.compress),
        (".xz", lzma.compress),
        (".zst", lambda data: zstandard.ZstdCompressor().compress(data)),
    ],
)
def test_truncated_compressed_file_is_skipped_whole(tmp_path, small_corpus, suffix, compress):
    data = compress(("some text\n" * 20_000).encode())
    (tmp_path / f"cut.txt{suffix}").write_bytes(data[: len(data) // 2])
    documents, stats = read_documents([tmp_path])
    assert documents == EXPECTED  # nothing of the damaged file
    assert stats.skipped == {"corrupt": 1}
    with pytest.raises(RbprepError, match=rf"cut\.txt\{suffix}: truncated"):
        read_documents([tmp_path], strict=True)


def test_garbage_named_gz_is_corrupt(tmp_path, small_corpus):
    (tmp_path / "fake.txt.gz").write_bytes(b"this is not gzip at all\n")
    _, stats = read_documents([tmp_path])
    assert stats.skipped == {"corrupt": 1}


def test_jsonl_records_are_documents_and_their_lines_units(tmp_path):
    path = tmp_path / "a.jsonl"
    records = [{"text": "first doc\nsecond line", "id": 1}, {"text": "  "}, {"text": "x\r\ny"}]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    documents, stats = read_documents([path])
    assert documents == [["first doc", "second line"], ["x", "y"]]
    assert stats.malformed_records == 0


def test_jsonl_text_field(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"body": "hello"}\n{"body": "world"}\n'))
    documents, _ = read_documents([path], text_field="body")
    assert documents == [["hello"], ["world"]]


def test_malformed_jsonl_record_is_skipped_and_counted(tmp_path, caplog):
    path = tmp_path / "a.jsonl"
    path.write_text(
        '{"text": "ok"}\n{"text": broken\n{"other": 1}\n[1, 2]\n{"text": 5}\n{"text": "ok2"}\n'
        # an integer past Python's 4,300 digits, a nesting past the recursion limit
        + '{"n": '
        + "9" * 5000
        + "}\n"
        + "[" * 100_000
        + "\n"
    )
    documents, stats = read_documents([path])
    assert documents == [["ok"], ["ok2"]]
    assert stats.malformed_records == 6
    assert "a.jsonl: line 2" in caplog.text


def test_malformed_jsonl_under_strict_names_file_and_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "ok"}\n\n{"text": broken\n')
    with pytest.raises(RbprepError, match=r"a\.jsonl: line 3: not a JSON object"):
        read_documents([path], strict=True)


def test_malformed_jsonl_line_number_in_a_later_partition(tmp_path):
    path = tmp_path / "a.jsonl"
    lines = [json.dumps({"text": f"record {i} " + "x" * 50}) for i in range(100)]
    lines[70] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RbprepError, match=r"a\.jsonl: line 71:"):
        read_documents([path], strict=True, partition_size=1000)


def test_parquet_text_column(tmp_path):
    path = tmp_path / "a.parquet"
    table = pa.table({"text": ["doc one\nline two", None, "doc two"], "n": [1, 2, 3]})
    pq.write_table(table, path, row_group_size=2)
    documents, stats = read_documents([path])
    assert documents == [["doc one", "line two"], ["doc two"]]
    assert stats.malformed_records == 1


def test_parquet_without_the_text_column_is_skipped(tmp_path, small_corpus):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "a.parquet")
    _, stats = read_documents([tmp_path])
    assert stats.skipped == {"corrupt": 1}
    with pytest.raises(RbprepError, match=r"a\.parquet: no string column 'text'.*--text-field"):
        read_documents([tmp_path], strict=True)


def test_unknown_format_is_skipped(tmp_path, small_corpus):
    (tmp_path / "notes.md").write_text("# not read\n")
    (tmp_path / "data.parquet.gz").write_bytes(b"x")
    documents, stats = read_documents([tmp_path])
    assert documents == EXPECTED
    assert stats.skipped == {"unknown_format": 2}
    with pytest.raises(RbprepError, match=r"data\.parquet\.gz: not \.txt"):
        read_documents([tmp_path], strict=True)


def test_directories_recursive_globs_and_sorted_order(tmp_path):
    for name in ["b/2.txt", "b/1.txt", "a.txt", "c/d/e.jsonl"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "b/2.txt").write_text("b2\n")
    (tmp_path / "b/1.txt").write_text("b1\n")
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "c/d/e.jsonl").write_text('{"text": "e"}\n')
    documents, _ = read_documents([tmp_path / "c", tmp_path / "b", tmp_path / "a.txt"])
    assert documents == [["a"], ["b1"], ["b2"], ["e"]]
    documents, _ = read_documents([str(tmp_path / "**" / "*.txt")])
    assert documents == [["a"], ["b1"], ["b2"]]
    # The same file named twice is read once.
    documents, _ = read_documents([tmp_path / "a.txt", tmp_path])
    assert documents == [["a"], ["b1"], ["b2"], ["e"]]


def test_symlink_loops(tmp_path, small_corpus):
    (tmp_path / "loop.txt").symlink_to(tmp_path / "loop.txt")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to(tmp_path, target_is_directory=True)
    documents, stats = read_documents([tmp_path])
    assert documents == EXPECTED  # the directory loop is walked once
    assert stats.skipped == {"unreadable": 1}
    with pytest.raises(RbprepError, match=r"loop\.txt: symlink loop"):
        read_documents([tmp_path], strict=True)


def test_unreadable_inputs(tmp_path, small_corpus):
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    os.mkfifo(tmp_path / "pipe.txt")  # would block a naive reader forever
    documents, stats = read_documents([tmp_path])
    assert documents == EXPECTED
    assert stats.skipped == {"unreadable": 2}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_file_without_read_permission(tmp_path, small_corpus):
    locked = tmp_path / "locked.txt"
    locked.write_text("secret\n")
    locked.chmod(0)
    documents, stats = read_documents([tmp_path])
    assert documents == EXPECTED
    assert stats.skipped == {"unreadable": 1}


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(RbprepError, match=r"nope\.txt: no such file or directory"):
        open_corpus([tmp_path / "nope.txt"])
    with pytest.raises(RbprepError, match=r"the pattern matches no file"):
        open_corpus([str(tmp_path / "*.txt")])


def test_empty_corpus_is_an_error(tmp_path):
    with pytest.raises(RbprepError, match="holds no readable"):
        open_corpus([tmp_path])
    with pytest.raises(RbprepError, match="no corpus given"):
        open_corpus([])


# --- partitions ---------------------------------------------------------------------------


def _write_documents(path: Path, documents: list[list[str]]) -> None:
    path.write_text("\n\n".join("\n".join(units) for units in documents) + "\n")


def test_partitions_cut_big_files_and_group_small_ones(tmp_path):
    big = [[f"doc {d} line {i} " + "x" * 40 for i in range(3)] for d in range(200)]
    _write_documents(tmp_path / "a-big.txt", big)
    for name in ("b.txt", "c.txt", "d.txt"):
        (tmp_path / name).write_text(f"{name}\n")
    (tmp_path / "e.txt.gz").write_bytes(gzip.compress(b"gz\n"))
    corpus = open_corpus([tmp_path], partition_size=5000)
    pieces = [[(p.file, p.start, p.end) for p in part.pieces] for part in corpus.partitions]
    assert [part.id for part in corpus.partitions] == list(range(len(pieces)))
    big_parts = [piece for part in pieces for piece in part if piece[0] == 0]
    assert len(big_parts) > 5 and all(end is not None for _, _, end in big_parts)
    assert pieces[-2] == [(1, 0, None), (2, 0, None), (3, 0, None)]  # small files together
    assert pieces[-1] == [(4, 0, None)]  # a compressed file alone
    documents = []
    for partition in corpus.partitions:
        units = [d.units for d in corpus.read_partition(partition, ReadStats())]
        assert units, "no empty partitions"
        documents += units
    assert documents[:200] == big


@settings(max_examples=60, deadline=None)
@given(
    documents=st.lists(
        st.lists(
            st.text(
                st.characters(blacklist_categories=["Cs", "Cc", "Zl", "Zp"]),
                min_size=1,
                max_size=30,
            )
            .map(str.strip)
            .filter(bool),
            min_size=1,
            max_size=5,
        ),
        min_size=1,
        max_size=40,
    ),
    partition_size=st.integers(1, 400),
    jsonl=st.booleans(),
)
def test_partitioning_never_loses_splits_or_repeats_a_document(
    tmp_path_factory, documents, partition_size, jsonl
):
    directory = tmp_path_factory.mktemp("p")
    if jsonl:
        path = directory / "a.jsonl"
        path.write_text("".join(json.dumps({"text": "\n".join(d)}) + "\n" for d in documents))
    else:
        path = directory / "a.txt"
        _write_documents(path, documents)
    corpus = open_corpus([path], partition_size=partition_size)
    read = []
    for partition in corpus.partitions:
        read += [d.units for d in corpus.read_partition(partition, ReadStats())]
    assert read == documents
    # Ids and bounds depend on the corpus and the size only.
    assert open_corpus([path], partition_size=partition_size).partitions == corpus.partitions


@settings(max_examples=80, deadline=None)
@given(
    text=st.text(st.sampled_from(["a", "é", "中", " ", "\t", "\u3000", "\x0b", "\r", "\n"])),
    block_size=st.integers(1, 40),
)
def test_documents_are_the_stripped_lines_between_blank_ones_whatever_the_blocks(
    tmp_path_factory, text, block_size
):
    """The reader strips and groups a block's lines at once; blocks cut anywhere (inside
    a "\r\n" too) must give what the rule gives line by line."""
    import rbprep.corpus.formats as formats

    path = tmp_path_factory.mktemp("b") / "a.txt"
    path.write_bytes(text.encode())
    expected, document = [], []
    for line in re.split("\r\n|\r|\n", text):
        if line.strip():
            document.append(line.strip())
        elif document:
            expected.append(document)
            document = []
    expected += [document] if document else []
    with mock.patch.object(formats, "BLOCK_SIZE", block_size):
        documents, stats = read_documents([path])
    assert documents == expected
    assert stats.units == sum(map(len, expected))


# --- plain UTF-8 text read into one buffer (shard's path for a byte-level BPE) ----------

LINE_PIECES = ["a", "b c", "é", "中文", "😀", " ", "\t", "\u3000", "\x85", "\x1c", "\u2028"]
LINE_PIECES += ["\n", "\r\n", "\r", "\n\n", "\n \n"]


def partition_documents(corpus, partition) -> tuple[list[list[str]] | None, ReadStats]:
    """``Corpus.read_partition_lines``' lines grouped into their documents, and its stats."""
    stats = ReadStats()
    read = corpus.read_partition_lines(partition, stats)
    if read is None:
        return None, stats
    documents: list[list[str]] = []
    for line, opens in zip(*read, strict=True):
        if opens:
            documents.append([])
        documents[-1].append(line)
    return documents, stats


@settings(max_examples=60, deadline=None)
@given(
    files=st.lists(
        st.lists(st.sampled_from(LINE_PIECES), min_size=1).map("".join).filter(str.strip),
        min_size=1,
        max_size=4,
    ),
    bom=st.booleans(),
    partition_size=st.integers(1, 120),
)
def test_partition_lines_are_the_documents_the_reader_gives(
    tmp_path_factory, files, bom, partition_size
):
    """One buffer and a kernel (shard's reader for a byte-level BPE) give every partition
    the units, documents and stats that the general reader gives, wherever partitions
    cut the files."""
    directory = tmp_path_factory.mktemp("lines")
    for index, text in enumerate(files):
        (directory / f"{index}.txt").write_bytes(
            codecs.BOM_UTF8 * (bom and index == 0) + text.encode()
        )
    corpus = open_corpus([directory], partition_size=partition_size)
    for partition in corpus.partitions:
        expected_stats = ReadStats()
        expected = [d.units for d in corpus.read_partition(partition, expected_stats)]
        documents, stats = partition_documents(corpus, partition)
        if documents is None:  # only where a file's range holds no text
            assert stats == ReadStats()
            assert any(
                not list(corpus.read_partition(Partition(0, (piece,), 1), ReadStats()))
                for piece in partition.pieces
            )
        else:
            assert (documents, stats) == (expected, expected_stats)


@pytest.mark.parametrize(
    "name, content",
    [
        ("invalid.txt", b"ok\n\xff replaced\n"),
        ("nul.txt", b"x\n" * 5_000 + b"a\0b\n"),
        ("long.txt", b"short\n" + b"y" * 101 + b"\n"),
        ("compressed.txt.gz", gzip.compress(b"a\n")),
        ("utf16.txt", "a\n".encode("utf-16")),
        ("blank.txt", b" \n\n"),
        ("records.jsonl", b'{"text": "a"}\n'),
    ],
)
def test_partition_lines_leave_to_the_reader_what_it_replaces_cuts_or_decodes(
    tmp_path, name, content
):
    """Invalid UTF-8, NULs, over-long lines, compressed or UTF-16 files, files without
    text and other formats are the general reader's, to count, replace, cut or warn of."""
    (tmp_path / "a-fine.txt").write_text("fine\n")
    (tmp_path / name).write_bytes(content)
    corpus = open_corpus([tmp_path], partition_size=1 << 20, max_unit_bytes=100)
    holding = [p for p in corpus.partitions if any(piece.file == 1 for piece in p.pieces)]
    assert [corpus.files[1].path] == [str(tmp_path / name)] and len(holding) == 1
    assert partition_documents(corpus, holding[0]) == (None, ReadStats())


# --- long lines are cut before anything tokenises them ----------------------------------

HARD_TEXT = st.text(
    st.sampled_from(["a", "é", "\u0301", "中", "😀", " ", "\t", "\u3000", "x"]), min_size=1
)


@given(HARD_TEXT, st.integers(4, 40))
def test_a_long_line_is_cut_at_a_space_else_never_inside_a_utf8_sequence(text, longest):
    data = (text * (longest // len(text) + 2)).encode()
    cut = long_line_cut(data, longest)
    assert 0 < cut <= longest
    data[:cut].decode()  # whole characters: no sequence cut in two
    data[cut:].decode()
    half = data[longest // 2 : longest]
    if b" " in half or b"\t" in half:
        assert data[cut - 1 : cut] in (b" ", b"\t")


@given(HARD_TEXT, st.integers(2, 30))
def test_a_long_unit_is_cut_into_pieces_that_keep_every_character(text, longest):
    unit = (text * 3).strip()
    pieces = cut_long_unit(unit, longest)
    assert all(0 < len(piece) <= longest and piece == piece.strip() for piece in pieces)
    assert "".join("".join(p.split()) for p in pieces) == "".join(unit.split())
    if len(unit) <= longest:
        assert pieces == ([unit] if unit else [])


@settings(max_examples=300, deadline=None)
@given(
    st.text(st.sampled_from(["a", "é", "😀", " ", "\r", "\n"]), max_size=300), st.integers(1, 40)
)
def test_a_chunk_is_passed_as_short_only_when_every_line_is(text, longest):
    """The reader measures a chunk's lines only where a window of ``longest // 2``
    characters holds no line feed; where it says none can be long, none is."""
    from rbprep.corpus.formats import _lines_at_most

    if _lines_at_most(text, longest):
        assert max(map(len, re.split("\r\n|\r|\n", text))) <= longest


def test_a_long_line_among_short_ones_in_one_block_is_cut(tmp_path):
    """A line over the limit inside a block of short lines (no byte cut: the block has
    line feeds) is found and cut as the text is read."""
    path = tmp_path / "mixed.txt"
    long_line = " ".join(f"w{i}é" for i in range(60))
    path.write_text("short one\n" * 30 + long_line + "\n" + "short two\n" * 30)
    [units], stats = read_documents([path], max_unit_bytes=40)
    assert all(len(unit) <= 40 for unit in units) and stats.long_line_cuts > 5
    assert " ".join(units).split() == ("short one\n" * 30 + long_line + " short two" * 30).split()


@pytest.mark.parametrize("kind", ["txt", "utf-16 txt", "jsonl"])
def test_one_long_line_becomes_pieces_of_a_bounded_size_and_is_counted(tmp_path, kind):
    words = [f"w{i % 97}é中" for i in range(20_000)]
    line = " ".join(words)
    if kind == "jsonl":
        path = tmp_path / "long.jsonl"
        path.write_text(json.dumps({"text": line}) + "\n", encoding="utf-8")
    else:
        path = tmp_path / "long.txt"
        path.write_text(line, encoding="utf-16" if kind == "utf-16 txt" else "utf-8")
    documents, stats = read_documents([path], max_unit_bytes=1000)
    [units] = documents  # one document still, in many units
    # At most 1000 UTF-8 bytes for a UTF-8 .txt (cut as read), else 1000 characters.
    assert all(len(unit.encode() if kind == "txt" else unit) <= 1000 for unit in units)
    assert len(units) > 100 and stats.long_line_cuts == len(units) - 1
    assert " ".join(units).split() == words  # cut at spaces: no word lost or split
    assert f"{len(units) - 1:,} long line cuts" in stats.problems()


PEAK_RSS_KB = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


@pytest.mark.slow
def test_one_16_mb_line_stays_under_1_gb_in_every_command(tmp_path, small_vocab):
    """Once 1.6-2 GB peak for a 10 MB line (6-8 GB for 50 MB); cut, it is ~0.4 GB."""
    words = [f"{chr(97 + i % 26)}{i % 7919}" for i in range(3_000_000)]
    line = tmp_path / "line.txt"
    line.write_text(" ".join(words)[: 16 * 2**20], encoding="utf-8")
    commands = {
        "train-vocab": ["--out", tmp_path / "v", "--bpe-size", "2000", "--wordpiece-size", "2000"],
        "shard": ["--tokenizer", small_vocab / "bpe", "--out", tmp_path / "d", "--dup", "1"],
        "compare-tokenizers": ["--tokenizers", small_vocab],
    }
    for command, options in commands.items():
        args = [sys.executable, "-m", "rbprep", command, line, *options, "-q"]
        done = subprocess.run(
            [sys.executable, "-c", PEAK_RSS_KB, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        peak_mb = int(done.stdout.split()[-1]) / 1024
        assert peak_mb < 1024, f"{command} peaked at {peak_mb:.0f} MB"
