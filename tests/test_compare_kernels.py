"""compare-tokenizers' kernels (``kernels.scan_words``, ``place_by_bytes``,
``place_pre_tokens``, ``spelled``), compiled and on numba's JIT, against plain Python
models (and, for ``place_pre_tokens``, the NumPy formulation it replaced)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rbprep import kernels
from rbprep.compare import metrics as m
from tests.test_aot import BACKENDS, kernels_of

# Whitespace of every kind str.isspace knows, ASCII, wide characters and astral ones.
CHARS = st.sampled_from(list(" \t\n\x0b\x1c\x85\u00a0\u2028\u3000ab.é中😀\u200b\x00"))
TEXTS = st.lists(st.text(CHARS, max_size=12), max_size=6)


def codes_of(texts: list[str]) -> np.ndarray:
    joined = "".join(text + "\n" for text in texts)
    return np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)


def scan(texts: list[str]) -> tuple[np.ndarray, ...]:
    lengths = np.array([len(t) for t in texts], np.int64)
    return kernels.scan_words(codes_of(texts), lengths, m._SPACE)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=200, deadline=None)
@given(TEXTS)
def test_scan_words_equals_str_split(backend, texts):
    with kernels_of(backend):
        space, word_of_char, byte_starts, next_nonspace, text_words = scan(texts)
    joined = "".join(text + "\n" for text in texts)
    assert space.tolist() == [c.isspace() for c in joined]
    assert text_words.tolist() == [len(text.split()) for text in texts]
    words = -1
    for i, char in enumerate(joined):
        words += not char.isspace() and (i == 0 or joined[i - 1].isspace())
        assert word_of_char[i] == words
        assert byte_starts[i] == len(joined[:i].encode())
        assert next_nonspace[i] == next(
            (j for j in range(i, len(joined)) if not joined[j].isspace()), len(joined)
        )
    assert byte_starts[-1] == len(joined.encode()) and next_nonspace[-1] == len(joined)


def naive_byte_words(texts: list[str], cuts: list[list[int]]) -> list[int] | None:
    """Each token's word: tokens cut each text's UTF-8 bytes at ``cuts`` (byte counts)."""
    words_before = 0
    found = []
    for text, pieces in zip(texts, cuts, strict=True):
        data = text.encode()
        if sum(pieces) != len(data):
            return None
        char_of_byte = [i for i, char in enumerate(text) for _ in char.encode()]
        word_of = []  # word index of each char, -1 for whitespace
        for i, char in enumerate(text):
            if char.isspace():
                word_of.append(-1)
            else:
                words_before += i == 0 or text[i - 1].isspace()
                word_of.append(words_before - 1)
        at = 0
        for size in pieces:
            if size == 0:  # touches no character: from its start to the char before
                first = char_of_byte[at] if at < len(data) else len(text)
                last = char_of_byte[at - 1] if at else -1
            else:
                first, last = char_of_byte[at], char_of_byte[at + size - 1]
            found.append(next((word_of[c] for c in range(first, last + 1) if word_of[c] >= 0), -1))
            at += size
    return found


@st.composite
def cut_texts(draw):
    texts = draw(TEXTS)
    cuts = []
    for text in texts:
        size, pieces = len(text.encode()), []
        while size > 0:
            piece = draw(st.integers(0, min(size, 5)))
            pieces.append(piece)
            size -= piece
        if draw(st.integers(0, 9)) == 0:  # now and then a text whose pieces do not add up
            pieces.append(draw(st.integers(1, 3)))
        cuts.append(pieces)
    return texts, cuts


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=300, deadline=None)
@given(cut_texts())
def test_place_by_bytes_equals_the_bytes_each_token_touches(backend, case):
    texts, cuts = case
    _, word_of_char, byte_starts, next_nonspace, _ = scan(texts)
    text_starts = np.concatenate(([0], np.cumsum([len(t) + 1 for t in texts]))).astype(np.int64)
    ids = np.array([size for pieces in cuts for size in pieces], np.int64)  # id = its bytes
    with kernels_of(backend):
        got = kernels.place_by_bytes(
            ids,
            np.array([len(p) for p in cuts], np.int64),
            np.arange(8, dtype=np.int64),
            text_starts,
            byte_starts,
            next_nonspace,
            word_of_char,
        )
    expected = naive_byte_words(texts, cuts)
    assert (got is None) == (expected is None)
    if expected is not None:
        assert got.tolist() == expected


def numpy_place(classes, space, word_of_char, unit_starts, text_units, text_lengths, ids, cont):
    """place_pre_tokens as NumPy computed it before the kernel (rbprep 0.1, 1714c1b)."""
    if (classes == 4).any():
        return None
    n = classes.size
    kept = np.flatnonzero(classes != 0)
    kept_classes = classes[kept]
    before = np.r_[2, kept_classes[:-1]]
    joined = (kept_classes == 1) & (before == 1)
    spaces_before = np.r_[0, np.cumsum(space)]
    gaps = spaces_before[kept[1:]] - spaces_before[kept[:-1] + 1]
    if np.any(joined[1:] & (gaps > 0)) or np.any(space[kept] & (kept_classes != 2)):
        return None
    starts = kept[(kept_classes == 3) | ((kept_classes == 1) & ~joined)]
    text_first_unit = np.cumsum(text_units) - text_units
    starts_per_text = np.diff(np.searchsorted(starts, np.r_[unit_starts[text_first_unit], n]))
    if ids.size and ids.max() >= cont.size:
        return None
    first = ~cont[ids]
    first_before = np.r_[0, np.cumsum(first)]
    token_ends = np.cumsum(text_lengths)
    token_starts = token_ends - text_lengths
    if not np.array_equal(first_before[token_ends] - first_before[token_starts], starts_per_text):
        return None
    if not first[token_starts[text_lengths > 0]].all():
        return None
    start_of_token = starts[first_before[1:] - 1]
    token_units = np.searchsorted(unit_starts, start_of_token, side="right") - 1
    return np.bincount(token_units, minlength=unit_starts.size), word_of_char[start_of_token]


@st.composite
def pre_token_cases(draw):
    """Units of characters of random classes (a "\\n" after each, which breaks), grouped
    into texts, and ids whose "##" flags mostly match the pre-tokens."""
    units = draw(st.lists(st.text(st.sampled_from("abc .\u3000\x00中"), max_size=8), min_size=1))
    klass = {"a": 1, "b": 1, "c": 1, " ": 2, ".": 3, "\u3000": 2, "\x00": 0, "中": 3, "\n": 2}
    if draw(st.booleans()):
        klass["c"] = draw(st.sampled_from([0, 3, 4]))
    joined = "".join(unit + "\n" for unit in units)
    codes = np.array([ord(c) for c in joined], np.uint32)
    table = np.full(0x110000, kernels.UNCLASSIFIED, np.uint8)  # each code point's class
    table[[ord(c) for c in klass]] = list(klass.values())
    classes = table[codes]
    groups, left = [], len(units)
    while left:
        groups.append(draw(st.integers(1, left)))
        left -= groups[-1]
    if draw(st.integers(0, 3)) == 0:  # any ids: mostly not the text's
        lengths = draw(st.lists(st.integers(0, 6), min_size=len(groups), max_size=len(groups)))
        flags = draw(st.lists(st.booleans(), min_size=sum(lengths), max_size=sum(lengths)))
        return units, (codes, table), np.array(groups, np.int64), np.array(lengths, np.int64), flags
    # ids that fit: each pre-token a first token and 0-2 continuations
    starts, previous = [], 2
    for c in classes.tolist():
        if c:
            starts.append(c == 3 or (c == 1 and previous != 1))
            previous = c
        else:
            starts.append(False)
    lengths, flags, unit, char = [], [], 0, 0
    for size in groups:
        end = char + sum(len(u) + 1 for u in units[unit : unit + size])
        text_flags = []
        for _ in range(sum(starts[char:end])):
            text_flags += [False] + [True] * draw(st.integers(0, 2))
        lengths.append(len(text_flags))
        flags += text_flags
        unit, char = unit + size, end
    return units, (codes, table), np.array(groups, np.int64), np.array(lengths, np.int64), flags


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=300, deadline=None)
@given(pre_token_cases())
def test_place_pre_tokens_equals_the_numpy_formulation(backend, case):
    units, (codes, class_table), text_units, text_lengths, flags = case
    classes = class_table[codes]  # the NumPy formulation's input
    space, word_of_char, *_ = scan(units)
    unit_starts = np.concatenate(([0], np.cumsum([len(u) + 1 for u in units])[:-1]))
    continues = np.array([False, True, False])  # id 0 starts a pre-token, id 1 continues
    ids = np.array(flags, np.int64)  # (and id 2 is outside a 2-entry table below)
    for table in (continues, continues[:2]):
        if table.size == 2 and ids.size:
            ids = ids.copy()
            ids[-1] = 2
        with kernels_of(backend):
            got = kernels.place_pre_tokens(
                *(codes, class_table, space, word_of_char, unit_starts, text_units),
                *(text_lengths, ids, table),
            )
        expected = numpy_place(
            classes, space, word_of_char, unit_starts, text_units, text_lengths, ids, table
        )
        assert (got is None) == (expected is None)
        if expected is not None:
            assert got[0].tolist() == expected[0].tolist()
            assert got[1].tolist() == expected[1].tolist()
    # A code point not classified yet is asked for, never guessed (the first character's).
    unknown = class_table.copy()
    unknown[codes[0]] = kernels.UNCLASSIFIED
    with kernels_of(backend), pytest.raises(kernels.Unclassified):
        kernels.place_pre_tokens(
            *(codes, unknown, space, word_of_char, unit_starts, text_units),
            *(text_lengths, ids, continues),
        )


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=300, deadline=None)
@given(
    # entries around the 8 bytes that the byte kernel compares at once
    st.lists(st.text("ab", max_size=11), min_size=1, max_size=5),
    # each document: its ids, and its text: their spelling (0), that less its last
    # character (1), or other text (2)
    st.lists(
        st.tuples(
            st.lists(st.integers(0, 4), max_size=5),
            st.integers(0, 2),
            st.text("ab ", max_size=12),
        ),
        max_size=5,
    ),
)
def test_spelled_equals_joining_the_entries(backend, entries, docs):
    vocab = len(entries)
    # entry id later in a text; entry vocab + id as a text's first token: upper-cased
    table = [*entries, *(e.upper() for e in entries)]
    docs_ids = [[i % vocab for i in ids] for ids, _, _ in docs]
    spellings = [
        "".join(table[i + (vocab if k == 0 else 0)] for k, i in enumerate(ids)) for ids in docs_ids
    ]
    documents = [
        (spelling, spelling[:-1], other)[how]
        for spelling, (_, how, other) in zip(spellings, docs, strict=True)
    ]
    flat = np.frombuffer("".join(table).encode("utf-32-le"), np.uint32)
    bounds = np.concatenate(([0], np.cumsum([len(e) for e in table]))).astype(np.int64)
    for as_bytes in (False, True):
        want = "".join(documents)
        with kernels_of(backend):
            got = kernels.spelled(
                np.array([i for ids in docs_ids for i in ids], np.int64),
                np.array([len(ids) for ids in docs_ids], np.int64),
                flat.astype(np.uint8) if as_bytes else flat,
                bounds,
                vocab,
                np.frombuffer(want.encode("latin-1" if as_bytes else "utf-32-le"), np.uint8)
                if as_bytes
                else np.frombuffer(want.encode("utf-32-le"), np.uint32),
                np.array([len(d) for d in documents], np.int64),
            )
        expected = [s == d for s, d in zip(spellings, documents, strict=True)]
        assert got.tolist() == expected


def test_entry_words_hold_each_entrys_first_8_bytes():
    entries = [b"", b"a", b"abcdefgh", b"abcdefghij", b"\xff\x00\x01"]
    flat = np.frombuffer(b"".join(entries), np.uint8)
    bounds = np.concatenate(([0], np.cumsum([len(e) for e in entries]))).astype(np.int64)
    words = kernels.entry_words(flat, bounds)
    assert words.tolist() == [int.from_bytes(e[:8], "little") for e in entries]


def test_comparison_kernels_reject_bad_arguments():
    with pytest.raises(ValueError, match="text_lengths"):
        kernels.scan_words(np.array([97, 10], np.uint32), np.array([2], np.int64), m._SPACE)
    bounds = np.array([0, 1, 2], np.int64)
    flat = np.array([97, 98], np.uint32)
    with pytest.raises(ValueError, match="ids must be"):
        kernels.spelled(np.array([1]), np.array([1]), flat, bounds, 1, flat, np.array([1]))
    with pytest.raises(ValueError, match="bounds"):
        kernels.spelled(np.array([0]), np.array([1]), flat, bounds[:2], 1, flat, np.array([1]))
    with pytest.raises(ValueError, match="uint32 or both uint8"):
        kernels.spelled(
            np.array([0]), np.array([1]), flat, bounds, 1, flat.astype(np.uint8), np.array([1])
        )
    byte_flat = flat.astype(np.uint8)
    with pytest.raises(ValueError, match="words"):
        kernels.spelled(
            *(np.array([0]), np.array([1]), byte_flat, bounds, 1),
            *(byte_flat, np.array([1]), np.zeros(1, np.uint64)),
        )
    # Negative ids name no token: nothing is placed.
    assert kernels.place_by_bytes(np.array([-1]), *[np.array([1])] * 6) is None
