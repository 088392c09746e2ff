"""Slow, obvious references for the kernels in rbprep/kernels.py (pure Python, no numba).

Written from the specification (DESIGN §5 and the kernels' module docstring), with plain
Python ints masked to 64 bits and lists, so that a test can check each kernel equals its
reference exactly. The counter constants are spelled out here on purpose: they are part of
the on-disk format, and a change in the kernels must fail these tests.
"""

from __future__ import annotations

import itertools
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


# --------------------------------------------------------------------------- the reader


def batch(dataset, indices, copy=0, groups=False) -> dict[str, np.ndarray]:
    """``Dataset.batch`` as it was before the gathering kernels: one Arrow ``take`` per
    shard touched, then NumPy index arithmetic over the rows taken. Slow (its cost grows
    with the shards a batch touches), obvious, and the reference the kernels must equal."""
    from rbprep.dataset.format import arrow_array
    from rbprep.dataset.masking import mask_partition_rows
    from rbprep.dataset.reader import IGNORE_INDEX

    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    size, seq_len = len(indices), dataset.seq_len
    input_ids = np.full((size, seq_len), dataset.pad_id, dtype=np.int64)
    attention_mask = np.zeros((size, seq_len), dtype=np.int64)
    labels = np.full((size, seq_len), IGNORE_INDEX, dtype=np.int64)
    document_ids = np.full((size, seq_len), -1, dtype=np.int32)
    kinds = np.zeros((size, seq_len), dtype=np.int8)
    counts = [table.num_rows for table in dataset._tables]
    starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    shard_of = np.searchsorted(starts, indices, side="right") - 1
    for shard in np.unique(shard_of):
        out_rows = np.flatnonzero(shard_of == shard)
        rows_in_shard = indices[out_rows] - starts[shard]
        table = dataset._tables[shard].take(arrow_array(rows_in_shard))
        lengths, values = _lists(table.column("input_ids"))
        rows, columns = _scatter_index(out_rows, lengths)
        input_ids[rows, columns] = values
        attention_mask[rows, columns] = 1
        ends = values == dataset.sep_id
        ends_before = np.cumsum(ends, dtype=np.int32) - ends
        document_ids[rows, columns] = ends_before - np.repeat(ends_before[columns == 0], lengths)
        if copy is None:
            continue
        if dataset.dup is None:  # computed: the one copy asked for
            masks = mask_partition_rows(
                np.concatenate(([0], np.cumsum(lengths))),
                values.astype(np.uint32),
                dataset.mask_tables,
                dataset.manifest.parameters.masks,
                dataset.split,
                dataset.shards[shard].partition,
                range(copy, copy + 1),
                rows_in_shard.astype(np.uint64),
            )
            group_sizes, positions, k = masks.groups, masks.positions, 0
            random_tokens = masks.random_tokens
        else:
            group_sizes = _fixed(table.column("mask_groups")).reshape(-1, dataset.dup, 3)
            _, positions = _lists(table.column("mask_positions"))
            _, random_tokens = _lists(table.column("random_tokens"))
            k = copy
        per_copy = group_sizes.sum(axis=2, dtype=np.int64)
        position_starts = _row_starts(per_copy.sum(axis=1)) + per_copy[:, :k].sum(axis=1)
        chosen = _slices(position_starts, per_copy[:, k])
        random_counts = group_sizes[:, :, 1].astype(np.int64)
        random_starts = _row_starts(random_counts.sum(axis=1)) + random_counts[:, :k].sum(axis=1)
        replacements = random_tokens[_slices(random_starts, random_counts[:, k])]
        rows, rank = _scatter_index(out_rows, per_copy[:, k])
        columns = positions[chosen].astype(np.int64)
        labels[rows, columns] = input_ids[rows, columns]
        masked_count = group_sizes[:, k, 0].astype(np.int64)
        random_count = group_sizes[:, k, 1].astype(np.int64)
        row_in_table = np.repeat(np.arange(len(out_rows)), per_copy[:, k])
        is_masked = rank < masked_count[row_in_table]
        is_random = ~is_masked & (rank < (masked_count + random_count)[row_in_table])
        input_ids[rows[is_masked], columns[is_masked]] = dataset.mask_id
        input_ids[rows[is_random], columns[is_random]] = replacements
        kinds[rows, columns] = np.where(is_masked, 1, np.where(is_random, 2, 3))
    result = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "document_ids": document_ids,
    }
    if copy is not None:
        result["labels"] = labels
        if groups:
            result["mask_groups"] = kinds
    return result


def _row_starts(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def _slices(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat indices of the slices [start, start + length) of each row, in row order."""
    offsets = np.repeat(starts - _row_starts(lengths), lengths)
    return offsets + np.arange(int(lengths.sum()), dtype=np.int64)


def _scatter_index(out_rows: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(output row, rank within the row) of every element of rows of ``lengths``."""
    rows = np.repeat(out_rows, lengths)
    rank = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(_row_starts(lengths), lengths)
    return rows, rank


def _lists(column) -> tuple[np.ndarray, np.ndarray]:
    """Lengths (int64) and flat values of a list column."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    offsets = array.offsets.to_numpy().astype(np.int64)
    values = array.values.to_numpy()[offsets[0] : offsets[-1]]
    return np.diff(offsets), values


def _fixed(column) -> np.ndarray:
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return array.flatten().to_numpy()


def shard_invariants(id_offsets, ids, masks, copies, seq_len, vocab_size):
    """``kernels.shard_invariants`` row by row in Python: (what, row) or None."""
    rows = len(id_offsets) - 1

    def offsets_bad(offsets, values):
        return (
            len(offsets) != rows + 1
            or offsets[0] < 0
            or offsets[-1] > len(values)
            or any(b < a for a, b in itertools.pairwise(offsets))
        )

    if rows < 0 or offsets_bad(id_offsets, ids):
        return "offsets", 0
    if masks is not None:
        position_offsets, positions, groups, random_offsets, random_tokens = masks
        if (
            offsets_bad(position_offsets, positions)
            or offsets_bad(random_offsets, random_tokens)
            or len(groups) != rows * copies * 3
        ):
            return "offsets", 0
    for r in range(rows):
        row = ids[id_offsets[r] : id_offsets[r + 1]]
        if not 3 <= len(row) <= seq_len:
            return "length", r
        if any(int(t) >= vocab_size for t in row):
            return "id", r
        if masks is None:
            continue
        sizes = [int(g) for g in groups[r * copies * 3 : (r + 1) * copies * 3]]
        if (
            sum(sizes) != position_offsets[r + 1] - position_offsets[r]
            or sum(sizes[1::3]) != random_offsets[r + 1] - random_offsets[r]
        ):
            return "groups", r
        if any(
            int(p) >= len(row) for p in positions[position_offsets[r] : position_offsets[r + 1]]
        ):
            return "position", r
        if any(
            int(t) >= vocab_size for t in random_tokens[random_offsets[r] : random_offsets[r + 1]]
        ):
            return "random", r
    return None
