"""Slow, obvious references for the kernels in rbprep/kernels.py (pure Python, no numba).

Written from the specification (DESIGN §5 and the kernels' module docstring), with plain
Python ints masked to 64 bits and lists, so that a test can check each kernel equals its
reference exactly. The counter constants are spelled out here on purpose: they are part of
the on-disk format, and a change in the kernels must fail these tests.
"""

from __future__ import annotations

import math

import numpy as np

MASK64 = 0xFFFFFFFFFFFFFFFF
GOLDEN = 0x9E3779B97F4A7C15


def splitmix64(x: int) -> int:
    x = (x + GOLDEN) & MASK64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def row_key(seed: int, stream: int, partition: int, row: int, copy: int) -> int:
    k = splitmix64(seed)
    for value in (stream, partition, row, copy):
        k = splitmix64(k ^ value)
    return k


def random_u64(key: int, counter: int) -> int:
    return splitmix64((key + counter * GOLDEN) & MASK64)


def random_float(key: int, counter: int) -> float:
    return (random_u64(key, counter) >> 11) * 2.0**-53


def random_below(key: int, counter: int, m: int) -> int:
    return ((random_u64(key, counter) >> 32) * m) >> 32


def pack_rows(units, starts, seq_len, full_sentences, bos, eos):
    """units: list of lists of tokens; starts: list of bool. Returns a list of rows."""
    cap = seq_len - 2
    rows = []
    row = []  # content of the open row, separators included
    pending = False
    for unit, start in zip(units, starts, strict=True):
        pending = pending or start
        if not unit:
            continue
        new_document, pending = pending, False
        if new_document and row and not full_sentences:
            rows.append(row)
            row = []
        if len(unit) > cap:
            if row:
                rows.append(row)
                row = []
            pieces = [unit[i : i + cap] for i in range(0, len(unit), cap)]
            rows.extend(pieces[:-1])
            row = list(pieces[-1])
            continue
        piece = [eos, *unit] if new_document and row else list(unit)
        if len(row) + len(piece) > cap:
            rows.append(row)
            row, piece = [], list(unit)
        row.extend(piece)
    if row:
        rows.append(row)
    return [[bos, *row, eos] for row in rows]


def words_of(tokens, is_special, word_start):
    """The row's words: lists of candidate positions (maximal runs, split at word starts)."""
    words = []
    for p, token in enumerate(tokens):
        if is_special[token]:
            continue
        if not words or words[-1][-1] != p - 1 or word_start[token]:
            words.append([])
        words[-1].append(p)
    return words


def mask_one(tokens, key, is_special, replacement_ids, word_start, probs, max_pred, whole_word):
    """One row's copy: (masked, random, kept, random_tokens) lists."""
    mask_prob, random_prob, keep_prob = probs
    candidates = [p for p, t in enumerate(tokens) if not is_special[t]]
    n = math.floor(mask_prob * len(candidates) + random_float(key, 0))
    n = min(n, max_pred, len(candidates))
    if not whole_word:
        items = list(candidates)
        for i in range(n):
            j = i + random_below(key, 1 + i, len(items) - i)
            items[i], items[j] = items[j], items[i]
        chosen = items[:n]
    else:
        words = words_of(tokens, is_special, word_start)
        chosen = []
        for i in range(len(words)):  # a full shuffle: the kernel stops early, same result
            j = i + random_below(key, 1 + i, len(words) - i)
            words[i], words[j] = words[j], words[i]
            if len(chosen) + len(words[i]) <= n:
                chosen += words[i]
    masked, randomised, kept, replacements = [], [], [], []
    for p in sorted(chosen):
        u = random_float(key, (1 << 32) + p)
        if u < 1.0 - random_prob - keep_prob:
            masked.append(p)
        elif u < 1.0 - keep_prob:
            randomised.append(p)
            index = random_below(key, (1 << 40) + p, len(replacement_ids))
            replacements.append(int(replacement_ids[index]))
        else:
            kept.append(p)
    return masked, randomised, kept, replacements


def mask_rows(
    rows,
    is_special,
    replacement_ids,
    word_start,
    seed,
    stream,
    partition,
    first_row,
    dup,
    probs,
    max_pred,
    whole_word,
):
    """The kernel's five flat arrays, built from per-row, per-copy lists."""
    positions, random_tokens, groups = [], [], []
    position_offsets, random_offsets = [0], [0]
    for r, tokens in enumerate(rows):
        groups.append([])
        for k in range(dup):
            key = row_key(seed, stream, partition, first_row + r, k)
            masked, randomised, kept, replacements = mask_one(
                tokens, key, is_special, replacement_ids, word_start, probs, max_pred, whole_word
            )
            positions += masked + randomised + kept
            random_tokens += replacements
            groups[-1].append([len(masked), len(randomised), len(kept)])
        position_offsets.append(len(positions))
        random_offsets.append(len(random_tokens))
    return (
        np.array(positions, np.uint16),
        np.array(groups, np.uint16).reshape(len(rows), dup, 3),
        np.array(random_tokens, np.uint32),
        np.array(position_offsets, np.int64),
        np.array(random_offsets, np.int64),
    )


def cut_at_breaks(texts, group_sizes, line_break_id):
    """Each text's ids (lists) split at ``line_break_id`` into its units; None where a text
    is empty or its breaks do not make ``group_size`` units."""
    units = []
    for ids, size in zip(texts, group_sizes, strict=True):
        if not ids:
            return None
        pieces = [[]]
        for token in ids:
            if token == line_break_id:
                pieces.append([])
            else:
                pieces[-1].append(token)
        if len(pieces) != size:
            return None
        units += pieces
    return units


def text_lines(data: bytes, longest: int) -> tuple[list[str], list[bool]] | None:
    """What the corpus reader makes of a .txt file's bytes: its lines (split at "\\n",
    "\\r\\n" and "\\r"), stripped, the blank ones dropped, and whether each starts a
    document (the first after a blank one does); None for invalid UTF-8, a NUL or a line
    of over ``longest`` bytes."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    raw = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if "\0" in text or any(len(line.encode()) > longest for line in raw):
        return None
    lines, opens, opening = [], [], True
    for line in raw:
        if line.strip():
            lines.append(line.strip())
            opens.append(opening)
        opening = not line.strip()
    return lines, opens


def join_lines(lines, starts, join_chars):
    """Runs of a document's lines joined by "\\n " (a later line of its document starting
    a run gets a " "), a new run where the document starts or its characters so far (each
    line counted with 2 more) pass a multiple of ``join_chars``; and the lines in each."""
    texts, sizes = [], []
    position = document_begin = 0
    previous = None
    for q, line in enumerate(lines):
        if q == 0 or starts[q]:
            document_begin = position
        run = (position - document_begin) // join_chars
        if q == 0 or starts[q] or run != previous:
            texts.append("" if starts[q] else " ")
            sizes.append(0)
        else:
            texts[-1] += "\n "
        texts[-1] += line
        sizes[-1] += 1
        previous = run
        position += len(line) + 2
    return texts, sizes
