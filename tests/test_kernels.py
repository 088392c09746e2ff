"""The numba kernels (DESIGN §5): the RNG, packing and masking, against tests/naive.py;
packing and masking both compiled (rbprep.aot) and on numba's JIT."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rbprep import kernels
from rbprep.kernels import mask_rows, pack_rows
from tests import naive
from tests.test_aot import BACKENDS, kernels_of

BOS, EOS = 0, 2  # as in the byte-level BPE: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4
U64 = st.integers(0, 2**64 - 1)
EDGES = [0, 1, 2, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, naive.GOLDEN]
EDGES.append(2**64 - naive.GOLDEN)  # x + G wraps to exactly 0

# --------------------------------------------------------------------------- RNG


def test_splitmix64_matches_the_reference_on_edge_values():
    for x in EDGES:
        assert kernels.splitmix64(x) == naive.splitmix64(x), x
    # First output of Vigna's splitmix64.c seeded with 0.
    assert kernels.splitmix64(0) == 0xE220A8397B1DCDAF


@settings(max_examples=300, deadline=None)
@given(U64, U64, U64, U64, U64, st.integers(1, 2**32 - 1))
def test_rng_matches_the_reference(a, b, c, d, e, m):
    assert kernels.splitmix64(a) == naive.splitmix64(a)
    assert kernels.row_key(a, b, c, d, e) == naive.row_key(a, b, c, d, e)
    assert kernels.random_u64(a, b) == naive.random_u64(a, b)
    u = kernels.random_float(a, b)
    assert u == naive.random_float(a, b) and 0.0 <= u < 1.0
    r = kernels.random_below(a, b, m)
    assert r == naive.random_below(a, b, m) and 0 <= r < m


def test_rng_edge_keys_and_counters():
    for key in EDGES:
        for counter in EDGES:
            assert kernels.random_u64(key, counter) == naive.random_u64(key, counter)
            assert kernels.random_below(key, counter, 2**32 - 1) == naive.random_below(
                key, counter, 2**32 - 1
            )
    assert kernels.row_key(*EDGES[:5]) == naive.row_key(*EDGES[:5])
    with pytest.raises(ValueError):
        kernels.random_below(1, 1, 2**32)


# --------------------------------------------------------------------------- packing

# Documents as lists of unit lengths; every token id in a case is distinct (>= 10).
documents_st = st.lists(
    st.lists(st.integers(0, 25), min_size=1, max_size=6), min_size=0, max_size=8
)


def build_units(documents):
    """(units, starts, document of each token) with distinct token ids from 10 up."""
    units, starts, token_document = [], [], []
    next_id = 10
    for d, lengths in enumerate(documents):
        for i, length in enumerate(lengths):
            units.append(list(range(next_id, next_id + length)))
            starts.append(i == 0)
            token_document += [d] * length
            next_id += length
    return units, starts, dict(zip(range(10, next_id), token_document, strict=True))


def pack(units, starts, seq_len, full_sentences):
    tokens = np.array([t for unit in units for t in unit], np.uint32)
    lengths = np.array([len(unit) for unit in units], np.int64)
    offsets, row_tokens = pack_rows(
        tokens, lengths, np.array(starts, bool), seq_len, full_sentences, BOS, EOS
    )
    assert offsets.dtype == np.int64 and row_tokens.dtype == np.uint32
    return [row_tokens[a:b].tolist() for a, b in itertools.pairwise(offsets)]


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=300, deadline=None)
@given(documents_st, st.integers(3, 40), st.booleans())
def test_pack_rows_equals_reference(backend, documents, seq_len, full_sentences):
    units, starts, _ = build_units(documents)
    expected = naive.pack_rows(units, starts, seq_len, full_sentences, BOS, EOS)
    with kernels_of(backend):
        assert pack(units, starts, seq_len, full_sentences) == expected


@settings(max_examples=200, deadline=None)
@given(documents_st, st.integers(3, 40), st.booleans())
def test_pack_rows_invariants(documents, seq_len, full_sentences):
    units, starts, document_of = build_units(documents)
    rows = pack(units, starts, seq_len, full_sentences)
    content = []
    for row in rows:
        assert row[0] == BOS and row[-1] == EOS and 3 <= len(row) <= seq_len
        inner = row[1:-1]
        assert inner[0] != EOS and inner[-1] != EOS  # never a separator at an end
        real = [t for t in inner if t != EOS]
        content += real
        if not full_sentences:
            assert real == inner and len({document_of[t] for t in inner}) == 1
            continue
        for a, b in itertools.pairwise(inner):
            assert not (a == EOS and b == EOS)
        # a separator exactly where two neighbouring tokens come from different documents
        for i in range(len(inner) - 1):
            a, b = inner[i], inner[i + 1]
            if b == EOS:
                assert document_of[a] < document_of[inner[i + 2]]
            elif a != EOS:
                assert document_of[a] == document_of[b]
    assert content == [t for unit in units for t in unit]  # in order, exactly once


def test_pack_rows_worked_example():
    # seq_len 6: 4 content slots. Doc A: [10 11 12] [13]; doc B (after an empty unit that
    # carries its start): [14..20] (7 tokens, cut); doc C: [21 22].
    units = [[10, 11, 12], [13], [], [14, 15, 16, 17, 18, 19, 20], [21, 22]]
    starts = [True, False, True, False, True]
    assert pack(units, starts, 6, True) == [
        [BOS, 10, 11, 12, 13, EOS],
        [BOS, 14, 15, 16, 17, EOS],
        [BOS, 18, 19, 20, EOS],  # 18 19 20 + separator + 21 22 would need 6 slots
        [BOS, 21, 22, EOS],
    ]
    units = [[10, 11], [12], [13], [14, 15]]
    assert pack(units, [True, False, True, True], 8, True) == [
        [BOS, 10, 11, 12, EOS, 13, EOS],  # a separator before 14 15 would need 9
        [BOS, 14, 15, EOS],
    ]
    assert pack(units, [True, False, True, True], 8, False) == [
        [BOS, 10, 11, 12, EOS],
        [BOS, 13, EOS],
        [BOS, 14, 15, EOS],
    ]


def test_pack_rows_empty_and_exact_fit():
    assert pack([], [], 8, True) == []
    assert pack([[], []], [True, True], 8, True) == []
    assert pack([[10, 11, 12, 13]], [True], 6, True) == [[BOS, 10, 11, 12, 13, EOS]]
    assert pack([list(range(10, 18))], [True], 6, False) == [
        [BOS, 10, 11, 12, 13, EOS],
        [BOS, 14, 15, 16, 17, EOS],
    ]


def test_pack_rows_rejects_bad_arguments():
    tokens = np.arange(10, 14, dtype=np.uint32)
    with pytest.raises(ValueError, match="sum"):
        pack_rows(tokens, np.array([3]), np.array([True]), 8, True, BOS, EOS)
    with pytest.raises(ValueError, match="seq_len"):
        pack_rows(tokens, np.array([4]), np.array([True]), 2, True, BOS, EOS)
    with pytest.raises(ValueError, match="outside"):
        pack_rows(np.array([-1, 5]), np.array([2]), np.array([True]), 8, True, BOS, EOS)


# --------------------------------------------------------------------------- masking


@st.composite
def mask_cases(draw):
    vocab = draw(st.integers(6, 40))
    specials = draw(st.sets(st.integers(0, vocab - 1), min_size=1, max_size=5))
    is_special = np.zeros(vocab, bool)
    is_special[sorted(specials)] = True
    word_start = np.array(draw(st.lists(st.booleans(), min_size=vocab, max_size=vocab)))
    token = st.integers(0, vocab - 1)
    rows = draw(st.lists(st.lists(token, max_size=40), max_size=6))
    random_prob = draw(st.floats(0, 1))
    keep_prob = draw(st.floats(0, 1 - random_prob))
    assume(random_prob + keep_prob <= 1.0)
    return dict(
        rows=rows,
        is_special=is_special,
        replacement_ids=np.flatnonzero(~is_special).astype(np.uint32),
        word_start=word_start,
        seed=draw(U64),
        stream=draw(st.integers(0, 3)),
        partition=draw(U64),
        first_row=draw(st.integers(0, 2**40)),
        dup=draw(st.integers(1, 4)),
        probs=(draw(st.floats(0, 1)), random_prob, keep_prob),
        max_pred=draw(st.integers(0, 40)),
    )


def run_mask(rows, whole_word, *, probs, max_pred, **keys):
    offsets = np.cumsum([0] + [len(row) for row in rows], dtype=np.int64)
    tokens = np.array([t for row in rows for t in row], np.uint32)
    return mask_rows(
        offsets,
        tokens,
        keys["is_special"],
        keys["replacement_ids"],
        keys["word_start"],
        keys["seed"],
        keys["stream"],
        keys["partition"],
        keys["first_row"],
        keys["dup"],
        *probs,
        max_pred,
        whole_word,
        keys.get("first_copy", 0),
    )


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=200, deadline=None)
@given(mask_cases(), st.booleans())
def test_mask_rows_equals_reference(backend, case, whole_word):
    with kernels_of(backend):
        got = run_mask(whole_word=whole_word, **case)
    names = ["is_special", "replacement_ids", "word_start", "seed", "stream", "partition"]
    expected = naive.mask_rows(
        case["rows"],
        *(case[name] for name in names),
        case["first_row"],
        case["dup"],
        case["probs"],
        case["max_pred"],
        whole_word,
    )
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_array_equal(g, e)


def copies(result, rows, dup):
    """Yield (row, copy, masked, random, kept, replacements) for every row and copy."""
    positions, groups, random_tokens, position_offsets, random_offsets = result
    for r in range(len(rows)):
        p, t = position_offsets[r], random_offsets[r]
        for k in range(dup):
            a, b, c = (int(x) for x in groups[r, k])
            masked, randomised, kept = np.split(positions[p : p + a + b + c], [a, a + b])
            yield r, k, masked, randomised, kept, random_tokens[t : t + b]
            p, t = p + a + b + c, t + b
        assert p == position_offsets[r + 1] and t == random_offsets[r + 1]


VOCAB = 50_000
IS_SPECIAL = np.zeros(VOCAB, bool)
IS_SPECIAL[:5] = True
KEYS = dict(
    is_special=IS_SPECIAL,
    replacement_ids=np.arange(5, VOCAB, dtype=np.uint32),
    word_start=np.ones(VOCAB, bool),
    seed=1234,
    stream=0,
    partition=7,
    first_row=0,
)
DEFAULT = dict(probs=(0.15, 0.1, 0.1), max_pred=77)


def full_rows(n, length=512, seed=0):
    """n rows of <s>, length - 2 random non-special tokens, </s>."""
    body = np.random.default_rng(seed).integers(5, VOCAB, (n, length - 2))
    return [[BOS, *row, EOS] for row in body.tolist()]


def test_mask_rate_and_80_10_10_split():
    result = run_mask(full_rows(2000), False, dup=1, **KEYS, **DEFAULT)
    groups = result[1].astype(np.int64).reshape(-1, 3)
    chosen = groups.sum(axis=1)
    assert abs(chosen.mean() / 510 - 0.15) < 0.002
    assert set(np.unique(chosen)) <= {76, 77}  # 76.5 rounded stochastically
    shares = groups.sum(axis=0) / groups.sum()
    np.testing.assert_allclose(shares, [0.8, 0.1, 0.1], atol=0.01)


def test_replacements_are_uniform_non_special_tokens():
    rows = full_rows(1000, seed=3)
    keys = {**KEYS, "replacement_ids": np.arange(10, 20, dtype=np.uint32)}
    result = run_mask(rows, False, dup=2, probs=(0.15, 0.5, 0.0), max_pred=77, **keys)
    counts = np.bincount(result[2], minlength=20)
    assert counts[:10].sum() == 0 and counts.sum() == len(result[2])
    expected = len(result[2]) / 10
    assert np.all(np.abs(counts[10:] - expected) < 0.1 * expected)


def test_positions_distinct_in_range_grouped_and_never_special():
    rng = np.random.default_rng(5)
    rows = []
    for _ in range(300):  # rows with separators and other specials inside
        row = [BOS, *rng.integers(0, 60, rng.integers(1, 100)).tolist(), EOS]
        rows.append(row)
    is_special = np.zeros(60, bool)
    is_special[[0, 1, 2, 3, 4, 33]] = True
    keys = {
        **KEYS,
        "is_special": is_special,
        "replacement_ids": np.flatnonzero(~is_special).astype(np.uint32),
        "word_start": np.ones(60, bool),
    }
    for whole_word in (False, True):
        result = run_mask(rows, whole_word, dup=4, probs=(0.5, 0.1, 0.1), max_pred=9, **keys)
        assert result[0].dtype == np.uint16 and result[1].shape == (300, 4, 3)
        for r, _, masked, randomised, kept, replacements in copies(result, rows, 4):
            chosen = np.concatenate([masked, randomised, kept])
            assert len(set(chosen.tolist())) == len(chosen) <= 9
            for group in (masked, randomised, kept):
                assert np.all(np.diff(group.astype(np.int64)) > 0)
            assert all(0 < p < len(rows[r]) - 1 for p in chosen)
            assert not is_special[[rows[r][p] for p in chosen]].any()
            assert not is_special[replacements].any()


def test_max_predictions_caps_and_zero_rates():
    rows = full_rows(50)
    result = run_mask(rows, False, dup=3, **KEYS, probs=(0.9, 0.1, 0.1), max_pred=20)
    assert (result[1].sum(axis=2) == 20).all()
    result = run_mask(rows, False, dup=3, **KEYS, probs=(0.0, 0.1, 0.1), max_pred=20)
    assert result[0].size == 0 and result[1].sum() == 0
    # all specials: nothing to choose, whatever the rate
    result = run_mask([[BOS, EOS, 3], []], True, dup=2, **KEYS, probs=(1.0, 0, 0), max_pred=9)
    assert result[0].size == 0 and list(result[3]) == [0, 0, 0]


def test_copies_of_a_row_differ():
    rows = full_rows(50)
    result = run_mask(rows, False, dup=10, **KEYS, **DEFAULT)
    by_row = {}
    for r, _, masked, randomised, kept, _ in copies(result, rows, 10):
        chosen = tuple(sorted(np.concatenate([masked, randomised, kept]).tolist()))
        by_row.setdefault(r, set()).add(chosen)
    assert all(len(masks) == 10 for masks in by_row.values())


def test_masks_are_deterministic_and_depend_on_every_key():
    rows = full_rows(20)
    base = run_mask(rows, False, dup=2, **KEYS, **DEFAULT)
    again = run_mask(rows, False, dup=2, **KEYS, **DEFAULT)
    for a, b in zip(base, again, strict=True):
        np.testing.assert_array_equal(a, b)
    for name, value in [("seed", 1235), ("stream", 1), ("partition", 8), ("first_row", 1)]:
        other = run_mask(rows, False, dup=2, **{**KEYS, name: value}, **DEFAULT)
        assert not np.array_equal(base[0], other[0]), name


def test_any_row_recomputes_alone():
    rows = full_rows(30, length=100)
    keys = {**KEYS, "first_row": 1000}
    positions, groups, random_tokens, position_offsets, random_offsets = run_mask(
        rows, True, dup=3, **keys, **DEFAULT
    )
    for r in (0, 17, 29):
        alone = run_mask([rows[r]], True, dup=3, **{**keys, "first_row": 1000 + r}, **DEFAULT)
        a, b = position_offsets[r], position_offsets[r + 1]
        np.testing.assert_array_equal(alone[0], positions[a:b])
        np.testing.assert_array_equal(alone[1][0], groups[r])
        np.testing.assert_array_equal(
            alone[2], random_tokens[random_offsets[r] : random_offsets[r + 1]]
        )


def test_rows_of_several_partitions_in_one_call_as_a_batch_takes_them():
    """Per-row partition and row numbers give each row the masks of its own partition's
    call: a batch of rows from anywhere is masked in one call."""
    rows = full_rows(10, length=60)
    by_partition = {
        p: run_mask(rows, False, dup=2, **{**KEYS, "partition": p}, **DEFAULT) for p in (3, 8)
    }
    picked = [(3, 5), (8, 2), (3, 0), (8, 9)]  # (partition, row within it)
    together = run_mask(
        [rows[r] for _, r in picked],
        False,
        dup=2,
        **{
            **KEYS,
            "partition": np.array([p for p, _ in picked], np.uint64),
            "first_row": np.array([r for _, r in picked], np.uint64),
        },
        **DEFAULT,
    )
    for i, (p, r) in enumerate(picked):
        alone = by_partition[p]
        np.testing.assert_array_equal(
            together[0][together[3][i] : together[3][i + 1]],
            alone[0][alone[3][r] : alone[3][r + 1]],
        )
        np.testing.assert_array_equal(together[1][i], alone[1][r])


@pytest.mark.parametrize("whole_word", [False, True])
def test_any_copy_computes_alone(whole_word):
    """Copy k is the same whether it is computed with copies 0..N-1 or alone
    (``first_copy``), which makes masks for any epoch computable when a batch is made."""
    rows = full_rows(12, length=80)
    together = run_mask(rows, whole_word, dup=5, **KEYS, **DEFAULT)
    for k in (0, 3, 4):
        alone = run_mask(rows, whole_word, dup=1, **{**KEYS, "first_copy": k}, **DEFAULT)
        for r in range(len(rows)):
            sizes = together[1][r].sum(axis=1).astype(np.int64)  # (dup,) per copy
            start = together[3][r] + sizes[:k].sum()
            np.testing.assert_array_equal(
                alone[0][alone[3][r] : alone[3][r + 1]], together[0][start : start + sizes[k]]
            )
            np.testing.assert_array_equal(alone[1][r][0], together[1][r][k])
    beyond = run_mask(rows, whole_word, dup=1, **{**KEYS, "first_copy": 5}, **DEFAULT)
    assert not np.array_equal(beyond[0], run_mask(rows, whole_word, dup=1, **KEYS, **DEFAULT)[0])


@pytest.mark.parametrize(
    ("pieces", "starts_word"),
    [
        (["the", "cat", "run", "a", "##s", "##ing", "##ed", "##ly", "un", "##break"], "##"),
        (["Ġthe", "Ġcat", "Ġrun", "Ġa", "s", "ing", "ed", ".", "Ġun", "break"], "Ġ"),
    ],
)
def test_whole_word_takes_every_chosen_word_whole(pieces, starts_word):
    vocab = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", *pieces]
    is_special = np.array([i < 5 for i in range(len(vocab))])

    def is_start(piece):
        return not piece.startswith("##") if starts_word == "##" else piece.startswith("Ġ")

    word_start = np.array([is_start(piece) for piece in vocab])
    rng = np.random.default_rng(11)
    rows = []
    for _ in range(300):
        body = rng.integers(5, len(vocab), 60)
        body[rng.random(60) < 0.05] = EOS  # document separators split words too
        rows.append([BOS, *body.tolist(), EOS])
    keys = {
        **KEYS,
        "is_special": is_special,
        "replacement_ids": np.arange(5, len(vocab), dtype=np.uint32),
        "word_start": word_start,
    }
    multi_piece = 0
    result = run_mask(rows, True, dup=4, **keys, probs=(0.15, 0.1, 0.1), max_pred=20)
    for r, _, masked, randomised, kept, _ in copies(result, rows, 4):
        chosen = set(np.concatenate([masked, randomised, kept]).tolist())
        assert chosen and len(chosen) <= 20
        words, previous_special = [], True
        for p, token in enumerate(rows[r]):
            if is_special[token]:
                previous_special = True
                continue
            if previous_special or is_start(vocab[token]):
                words.append([])
            words[-1].append(p)
            previous_special = False
        for word in words:
            taken = [p in chosen for p in word]
            assert all(taken) or not any(taken), (vocab, [vocab[rows[r][p]] for p in word])
            multi_piece += all(taken) and len(word) > 1
    assert multi_piece > 100


def test_mask_rows_rejects_bad_arguments():
    rows = full_rows(2, length=10)
    with pytest.raises(ValueError, match="replacement_ids"):
        bad = {**KEYS, "replacement_ids": np.array([2, 7], np.uint32)}
        run_mask(rows, False, dup=1, **bad, **DEFAULT)
    with pytest.raises(ValueError, match="random_prob"):
        run_mask(rows, False, dup=1, **KEYS, probs=(0.15, 0.6, 0.6), max_pred=5)
    with pytest.raises(ValueError, match="outside"):
        run_mask([[BOS, VOCAB, EOS]], False, dup=1, **KEYS, **DEFAULT)
    with pytest.raises(ValueError, match="65,536"):
        run_mask([[5] * 65537], False, dup=1, **KEYS, **DEFAULT)


# --------------------------------------------------------------------------- encodings

BREAK = 7


@st.composite
def joined_texts(draw):
    """Texts of ids in 0..9 (7 the break) and, mostly, the units each was joined from."""
    texts = draw(st.lists(st.lists(st.integers(0, 9), max_size=12), max_size=8))
    sizes = [text.count(BREAK) + 1 + draw(st.sampled_from([0] * 6 + [-1, 1])) for text in texts]
    return texts, [max(size, 1) for size in sizes]


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=300, deadline=None)
@given(joined_texts())
def test_cut_at_breaks_equals_reference(backend, case):
    texts, sizes = case
    ids = np.array([t for text in texts for t in text], np.uint32)
    lengths = np.array([len(text) for text in texts], np.int64)
    with kernels_of(backend):
        got = kernels.cut_at_breaks(ids, lengths, np.array(sizes, np.int64), BREAK)
    expected = naive.cut_at_breaks(texts, sizes, BREAK)
    if expected is None:
        assert got is None
        return
    unit_lengths, kept = got
    assert unit_lengths.dtype == np.int64 and kept.dtype == np.uint32
    assert unit_lengths.tolist() == [len(unit) for unit in expected]
    assert kept.tolist() == [t for unit in expected for t in unit]


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 11), max_size=10), max_size=8), st.integers(1, 12))
def test_text_byte_counts_equals_reference(backend, texts, table_size):
    table = np.arange(table_size, dtype=np.int64) * 3 - 5  # any values, negative too
    ids = np.array([t for text in texts for t in text], np.uint32)
    lengths = np.array([len(text) for text in texts], np.int64)
    with kernels_of(backend):
        if any(t >= table_size for text in texts for t in text):
            with pytest.raises(ValueError, match="outside byte_lengths"):
                kernels.text_byte_counts(ids, lengths, table)
            return
        got = kernels.text_byte_counts(ids, lengths, table)
    assert got.tolist() == [sum(int(table[t]) for t in text) for text in texts]


def test_encoding_kernels_reject_bad_arguments():
    ids = np.array([1, BREAK, 2], np.uint32)
    with pytest.raises(ValueError, match="sum to len"):
        kernels.cut_at_breaks(ids, [2], [2], BREAK)
    with pytest.raises(ValueError, match=">= 1"):
        kernels.cut_at_breaks(ids, [3], [0], BREAK)
    with pytest.raises(ValueError, match="one length"):
        kernels.cut_at_breaks(ids, [3], [2, 1], BREAK)
    with pytest.raises(ValueError, match="uint32"):
        kernels.cut_at_breaks(ids, [3], [2], -1)
    with pytest.raises(ValueError, match="sum to len"):
        kernels.text_byte_counts(ids, [1, 1], np.ones(9, np.int64))


# --------------------------------------------------------------------------- text

# Every str.isspace character, characters that look like spaces but are not, line ends,
# and characters of 1-4 UTF-8 bytes.
TEXT_PIECES = [
    *("a", "b", "é", "中", "😀", "\u0301", "\u200b", "\u180e", "\ufeff", "\x7f", "\x1b"),
    *("\n", "\r", "\r\n", "\n\n", " ", "  "),
    *(c for c in map(chr, range(0x110000)) if c.isspace() and c not in "\n\r"),
]


def decoded(data: np.ndarray, begins: np.ndarray, ends: np.ndarray) -> list[str]:
    return [bytes(data[b:e]).decode() for b, e in zip(begins, ends, strict=True)]


@st.composite
def text_bytes(draw):
    """UTF-8 text of TEXT_PIECES, at times with a byte replaced or inserted (invalid UTF-8,
    a NUL), then cut anywhere."""
    data = bytearray("".join(draw(st.lists(st.sampled_from(TEXT_PIECES), max_size=60))).encode())
    for _ in range(draw(st.sampled_from([0] * 4 + [1, 2]))):
        at = draw(st.integers(0, len(data)))
        data[at:at] = bytes([draw(st.sampled_from([0, 0x80, 0xC2, 0xE2, 0xED, 0xF0, 0xFF]))])
    return bytes(data[: draw(st.integers(0, len(data)))])


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=400, deadline=None)
@given(st.one_of(text_bytes(), st.binary(max_size=40)), st.integers(0, 30))
def test_text_lines_equals_the_readers_rule(backend, data, longest):
    array = np.frombuffer(bytearray(data), np.uint8)
    with kernels_of(backend):
        got = kernels.text_lines(array, longest)
    expected = naive.text_lines(data, longest)
    if expected is None:
        assert got is None
        return
    begins, ends, chars, opens = got
    assert decoded(array, begins, ends) == expected[0]
    assert chars.tolist() == [len(line) for line in expected[0]]
    assert opens.tolist() == expected[1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_lines_finds_line_ends_at_every_alignment(backend):
    """The scan reads 8 bytes at a time: each byte value after each line end, at each
    offset in a word (a borrow from one byte into the next once made "\n\x0b" a break)."""
    after = b"".join(b"\n" + bytes([x]) + b"a\r" + bytes([x]) + b"b\r\nc" for x in range(1, 128))
    for offset in range(16):
        data = b"x" * offset + after + "é\n\u3000y\u2028".encode()
        array = np.frombuffer(bytearray(data), np.uint8)
        with kernels_of(backend):
            begins, ends, _, opens = kernels.text_lines(array, 100)
        lines, starts = naive.text_lines(data, 100)
        assert (decoded(array, begins, ends), opens.tolist()) == (lines, starts)


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_lines_strips_exactly_what_str_strip_strips(backend):
    """Every code point but the surrogates, NUL and line ends, at both ends of a line and
    inside it: whitespace is str.isspace's set, UTF-8 of 1-4 bytes is counted right."""
    text = "\n".join(
        f"{c}x{c}y{c}"
        for c in map(chr, range(0x110000))
        if not 0xD800 <= ord(c) < 0xE000 and c not in "\0\n\r"
    )
    data = text.encode()
    array = np.frombuffer(bytearray(data), np.uint8)
    with kernels_of(backend):
        begins, ends, chars, opens = kernels.text_lines(array, 20)
    lines, starts = naive.text_lines(data, 20)
    assert decoded(array, begins, ends) == lines
    assert chars.tolist() == list(map(len, lines)) and opens.tolist() == starts


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(st.sampled_from(["a", "é", "中", "😀", " "]), min_size=1), st.booleans()),
        max_size=20,
    ),
    st.integers(1, 30),
)
def test_join_lines_equals_the_rule(backend, lines_and_starts, join_chars):
    lines = [line.strip() or "x" for line, _ in lines_and_starts]
    starts = [start or index == 0 for index, (_, start) in enumerate(lines_and_starts)]
    data = "".join(lines).encode()
    ends = np.cumsum([len(line.encode()) for line in lines], dtype=np.int64)
    begins = ends - [len(line.encode()) for line in lines]
    with kernels_of(backend):
        joined, run_ends, sizes = kernels.join_lines(
            np.frombuffer(bytearray(data), np.uint8),
            begins,
            ends,
            [len(line) for line in lines],
            starts,
            join_chars,
        )
    texts = [bytes(joined[a:b]).decode() for a, b in itertools.pairwise([0, *run_ends])]
    assert (texts, sizes.tolist()) == naive.join_lines(lines, starts, join_chars)


def test_text_kernels_reject_bad_arguments():
    with pytest.raises(ValueError, match="uint8"):
        kernels.text_lines(np.array([300]), 10)
    data = np.frombuffer(bytearray(b"abc"), np.uint8)
    with pytest.raises(ValueError, match="within data"):
        kernels.join_lines(data, [0], [4], [4], [True], 10)
    with pytest.raises(ValueError, match="one length"):
        kernels.join_lines(data, [0], [3], [3, 1], [True], 10)
    with pytest.raises(ValueError, match="join_chars"):
        kernels.join_lines(data, [0], [3], [3], [True], 0)


# --------------------------------------------------------------------------- compilation


def test_compiled_kernels_are_cached_for_a_fresh_process():
    """cache=True: a second process on numba's JIT (no compiled kernels, rbprep.aot)
    loads both kernels from disk instead of compiling."""
    script = """
import numpy as np
from rbprep import kernels as K
offsets, tokens = K.pack_rows(
    np.arange(10, 20, dtype=np.uint32), [4, 6], [True, True], 8, True, 0, 2
)
special = np.zeros(30, bool)
special[:5] = True
K.mask_rows(offsets, tokens, special, np.arange(5, 30), special, 1, 0, 0, 0, 2, .15, .1, .1, 2, 1)
for kernel in (K._pack_rows, K._mask_rows):
    print(sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values()))
"""
    root = Path(__file__).resolve().parents[1]
    for _ in range(2):  # the first run may compile (a fresh checkout), the second must not
        out = subprocess.run(
            [sys.executable, "-c", script],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "RBPREP_KERNELS": "jit"},
        ).stdout
    assert out.split() == ["1", "0", "1", "0"]
