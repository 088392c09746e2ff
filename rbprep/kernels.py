"""Every numba kernel of rbprep: the counter-based RNG, packing, masking (DESIGN §5),
cutting encodings of joined texts apart, reading text, and gathering a batch's rows from
the shards (DESIGN §6).

The kernels are pure: arrays and scalars in, arrays out, no I/O and no validation. The two
public entry points, :func:`pack_rows` and :func:`mask_rows`, check their arguments once
in Python and call the numba kernels ``_pack_rows`` and ``_mask_rows``: compiled ahead of
time where ``rbprep.aot`` has built them (no numba loaded at run time), else on numba's
JIT (``use_jit``). All loops are serial, so the output never depends on threads.

The random scheme (part of the on-disk format: ``rbprep verify`` recomputes masks)
=================================================================================

Version string: :data:`RNG_SCHEME` = ``"rbprep-splitmix64-v1"``. All arithmetic is on
unsigned 64-bit integers, wrapping modulo 2**64; ``G = 0x9E3779B97F4A7C15``.

- ``splitmix64(x)``: ``x += G; z = x; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EB; return z ^ (z >> 31)``.
- ``row_key(seed, stream, partition, row, copy)``: ``k = splitmix64(seed)``, then
  ``k = splitmix64(k ^ v)`` for ``v`` = stream, partition, row, copy, in that order.
  ``stream`` is the split (0 = train, 1 = valid), ``partition`` the partition id, ``row``
  the row's index within its partition, ``copy`` the copy ``k`` in ``0..dup-1``.
- ``random_u64(key, c) = splitmix64(key + c * G)``;
  ``random_float(key, c) = (random_u64(key, c) >> 11) * 2**-53``, in [0, 1);
  ``random_below(key, c, m) = ((random_u64(key, c) >> 32) * m) >> 32``, in [0, m),
  for ``1 <= m < 2**32``.

For one row and copy, ``key = row_key(seed, stream, partition, row, copy)``. The row's
candidates are the list of its positions (0 is ``<s>``), ascending, whose token is not
special; ``C`` is their number, and ``p`` below is a position in the row.

1. counter 0: ``n = floor(mask_prob * C + random_float(key, 0))`` in float64 (stochastic
   rounding), then ``n = min(n, max_predictions, C)``.
2. counters ``1 + i``: the shuffle.
   - Token masking: a partial Fisher-Yates over the candidate list: for ``i`` in
     ``0..n-1``: ``j = i + random_below(key, 1 + i, C - i)``; swap items ``i`` and ``j``.
     The chosen positions are the first ``n`` items.
   - Whole-word masking: words are the maximal runs of consecutive candidate positions;
     a candidate starts a new word when ``word_start[token]`` is True or the position
     before it is not a candidate. With ``W`` words in position order, for ``i`` in
     ``0..W-1``: ``j = i + random_below(key, 1 + i, W - i)``; swap words ``i`` and ``j``;
     take word ``i`` (all its positions) if ``taken + len(word) <= n``, else skip it
     (BERT's ``create_pretraining_data``). Drawing stops once ``taken == n``, which
     changes nothing: no word fits after that.
3. counter ``2**32 + p`` for each chosen position ``p``: ``u = random_float(key, .)``;
   ``u < 1.0 - random_prob - keep_prob`` (float64, evaluated left to right) makes it
   ``<mask>``; else ``u < 1.0 - keep_prob`` gives it a random token; else it is kept.
4. counter ``2**40 + p`` for each random position ``p``: the replacement is
   ``replacement_ids[random_below(key, ., len(replacement_ids))]``.

The chosen positions are stored per copy as the ``<mask>`` group, the random group and the
kept group, each ascending, with the random group's replacements in the same order. A key
depends on the row's index within its partition, never on a global row number, and a
draw's counter on its position, never on earlier draws: any row's masks can be recomputed
alone, with the same result for any number of workers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "RNG_SCHEME",
    "apply_masks",
    "blend",
    "cut_at_breaks",
    "gather_masks",
    "gather_rows",
    "join_lines",
    "mask_rows",
    "pack_rows",
    "random_below",
    "random_float",
    "random_u64",
    "row_key",
    "shard_invariants",
    "splitmix64",
    "text_byte_counts",
    "text_lines",
    "typed_list",
]

RNG_SCHEME = "rbprep-splitmix64-v1"

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_ACTION_COUNTER = 1 << 32  # + position: the <mask> / random / keep draw
_REPLACE_COUNTER = 1 << 40  # + position: which replacement token
_U64_MAX = 2**64 - 1
# For scanning text 8 bytes at a time (_next_stop).
_BYTES_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_BYTES_HIGH = np.uint64(0x8080808080808080)
_BYTES_LF = np.uint64(0x0A0A0A0A0A0A0A0A)
_BYTES_CR = np.uint64(0x0D0D0D0D0D0D0D0D)
_ALL_BITS = np.uint64(_U64_MAX)
# The index of a uint64's only set bit, by a de Bruijn multiplication: the top 6 bits of
# bit * _DEBRUIJN differ for each bit.
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_DEBRUIJN_BITS = np.zeros(64, dtype=np.int64)
_DEBRUIJN_BITS[[(((1 << b) * 0x03F79D71B4CB0A89) % 2**64) >> 58 for b in range(64)]] = np.arange(64)


# --------------------------------------------------------------------------- numba

_KERNELS: list[str] = []  # the names of the functions below marked ``_kernel``
_jitted: list[bool] = []  # [True] once ``use_jit`` has made them numba functions
_jitting = threading.Lock()


def _kernel(function: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``function`` a numba kernel (``njit(cache=True, nogil=True)``), made one by
    ``use_jit`` when first needed: a process that runs the compiled kernels (``rbprep.aot``)
    never imports numba. Until then it is plain Python, which nothing calls."""
    _KERNELS.append(function.__name__)
    return function


def use_jit() -> None:
    """Make the kernels numba's (compiled now or loaded from numba's cache as called)."""
    if _jitted:
        return
    with _jitting:
        if not _jitted:
            from numba import njit

            for name in _KERNELS:  # all before any compiles: kernels call each other
                globals()[name] = njit(cache=True, nogil=True)(globals()[name])
            _jitted.append(True)


def _run(name: str, *args: Any) -> Any:
    """Run the kernel ``_name`` on ``args``: compiled (``rbprep.aot``) where built, else
    with numba's JIT."""
    from rbprep.aot import VARIANTS, check_arguments, compiled_kernels

    compiled = compiled_kernels()
    if compiled is not None:
        check_arguments(name, args)
        return getattr(compiled, name)(*args)
    use_jit()
    return globals()[f"_{VARIANTS.get(name, name)}"](*args)


def _run_typed(name: str, *args: Any) -> Any:
    """``_run`` after making each array argument the dtype the kernel takes
    (``aot.as_arguments``), for wrappers that accept any integer or bool arrays."""
    from rbprep.aot import as_arguments

    return _run(name, *as_arguments(name, args))


# --------------------------------------------------------------------------- RNG


@_kernel
def _splitmix64(x):
    z = np.uint64(x) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@_kernel
def _row_key(seed, stream, partition, row, copy):
    k = _splitmix64(np.uint64(seed))
    k = _splitmix64(k ^ np.uint64(stream))
    k = _splitmix64(k ^ np.uint64(partition))
    k = _splitmix64(k ^ np.uint64(row))
    return _splitmix64(k ^ np.uint64(copy))


@_kernel
def _random_u64(key, counter):
    return _splitmix64(np.uint64(key) + np.uint64(counter) * _GOLDEN)


@_kernel
def _random_float(key, counter):
    return float(_random_u64(key, counter) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@_kernel
def _random_below(key, counter, m):
    x = _random_u64(key, counter) >> np.uint64(32)
    return np.int64((x * np.uint64(m)) >> np.uint64(32))


# Python entry points to the generator (a verifier, tests). They take any ints in
# [0, 2**64) (numba's dispatcher cannot type a Python int >= 2**63 itself).


def splitmix64(x: int) -> int:
    """The SplitMix64 finaliser of ``x`` (uint64, wrapping)."""
    use_jit()
    return int(_splitmix64(np.uint64(x)))


def row_key(seed: int, stream: int, partition: int, row: int, copy: int) -> int:
    """The uint64 key of one (seed, stream, partition, row, copy): a chain of splitmix64."""
    values = (seed, stream, partition, row, copy)
    use_jit()
    return int(_row_key(*(np.uint64(v) for v in values)))


def random_u64(key: int, counter: int) -> int:
    """Draw number ``counter`` of stream ``key``: ``splitmix64(key + counter * G)``."""
    use_jit()
    return int(_random_u64(np.uint64(key), np.uint64(counter)))


def random_float(key: int, counter: int) -> float:
    """A float in [0, 1) from the top 53 bits of ``random_u64(key, counter)``."""
    use_jit()
    return float(_random_float(np.uint64(key), np.uint64(counter)))


def random_below(key: int, counter: int, m: int) -> int:
    """An int in [0, m), 1 <= m < 2**32, by multiply-shift on ``random_u64``'s top 32 bits."""
    if not 1 <= m < 2**32:
        raise ValueError(f"m must be in [1, 2**32), got {m}")
    use_jit()
    return int(_random_below(np.uint64(key), np.uint64(counter), np.uint64(m)))


# --------------------------------------------------------------------------- packing


@_kernel
def _close_row(row_tokens, row_offsets, w, n_rows, eos):
    """End the open row with ``eos`` at ``w``; return the new (w, n_rows)."""
    row_tokens[w] = eos
    row_offsets[n_rows + 1] = w + 1
    return w + 1, n_rows + 1


@_kernel
def _pack_rows(token_ids, unit_lengths, unit_starts_document, seq_len, full_sentences, bos, eos):
    n_units = unit_lengths.shape[0]
    n_tokens = token_ids.shape[0]
    cap = seq_len - 2
    # Each row holds >= 1 token; a row ends before a unit, inside a long unit, or at the end.
    max_rows = min(n_tokens, n_units + n_tokens // cap + 1)
    row_offsets = np.empty(max_rows + 1, np.int64)  # (max_rows + 1,) int64
    row_tokens = np.empty(n_tokens + n_units + 2 * max_rows, np.uint32)  # (bound,) uint32
    row_offsets[0] = 0
    n_rows = 0
    w = 0  # write cursor in row_tokens
    cur = 0  # content tokens (separators included) in the open row; 0 = no open row
    src = 0  # read cursor in token_ids
    starts_pending = False
    for i in range(n_units):
        length = unit_lengths[i]
        if unit_starts_document[i]:
            starts_pending = True
        if length == 0:
            continue
        starts = starts_pending
        starts_pending = False
        if starts and cur > 0 and not full_sentences:  # doc-sentences: close the document
            w, n_rows = _close_row(row_tokens, row_offsets, w, n_rows, eos)
            cur = 0
        sep = 1 if (starts and cur > 0) else 0
        if length > cap:  # a long unit: full rows of cap tokens, the rest stays open
            if cur > 0:
                w, n_rows = _close_row(row_tokens, row_offsets, w, n_rows, eos)
                cur = 0
            while length > cap:
                row_tokens[w] = bos
                row_tokens[w + 1 : w + 1 + cap] = token_ids[src : src + cap]
                row_tokens[w + 1 + cap] = eos
                w += cap + 2
                n_rows += 1
                row_offsets[n_rows] = w
                src += cap
                length -= cap
            sep = 0
        if cur + sep + length > cap:
            w, n_rows = _close_row(row_tokens, row_offsets, w, n_rows, eos)
            cur = 0
            sep = 0
        if cur == 0:
            row_tokens[w] = bos
            w += 1
        if sep:
            row_tokens[w] = eos
            w += 1
            cur += 1
        row_tokens[w : w + length] = token_ids[src : src + length]
        w += length
        src += length
        cur += length
    if cur > 0:
        w, n_rows = _close_row(row_tokens, row_offsets, w, n_rows, eos)
    return row_offsets[: n_rows + 1].copy(), row_tokens[:w].copy()


def pack_rows(
    token_ids: np.ndarray,
    unit_lengths: np.ndarray,
    unit_starts_document: np.ndarray,
    seq_len: int,
    full_sentences: bool,
    bos_id: int,
    eos_id: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Pack sentence units greedily into rows ``<s> content </s>`` of at most ``seq_len``.

    Args:
        token_ids: (n_tokens,) uint32, every unit's tokens concatenated, no specials.
        unit_lengths: (n_units,) int64 tokens per unit (0 allowed); sums to n_tokens.
        unit_starts_document: (n_units,) bool, True on each document's first unit.
        seq_len: the longest row, specials included (>= 3); rows hold seq_len - 2 content.
        full_sentences: True for FULL-SENTENCES (rows cross documents, an extra
            ``eos_id`` between two documents inside a row), False for DOC-SENTENCES.
        bos_id, eos_id: the ids of ``<s>`` and ``</s>`` (``[CLS]``/``[SEP]``).

    Returns:
        ``(row_offsets, row_tokens)``: (n_rows + 1,) int64 offsets into (total,) uint32
        unpadded rows, concatenated. A unit that does not fit starts a new row; a unit
        longer than a row is cut into full rows and its rest opens the next row. No token
        is dropped, and every row has at least one content token.
    """
    token_ids = _unsigned(token_ids, np.uint32, "token_ids")
    unit_lengths = np.ascontiguousarray(unit_lengths, dtype=np.int64)
    unit_starts_document = np.ascontiguousarray(unit_starts_document, dtype=np.bool_)
    if unit_lengths.ndim != 1 or unit_starts_document.shape != unit_lengths.shape:
        raise ValueError("unit_lengths and unit_starts_document must be 1-D of one length")
    if unit_lengths.size and unit_lengths.min() < 0:
        raise ValueError("unit_lengths must be >= 0")
    if int(unit_lengths.sum()) != token_ids.size:
        raise ValueError("unit_lengths must sum to len(token_ids)")
    if seq_len < 3:
        raise ValueError(f"seq_len must be >= 3, got {seq_len}")
    return _run(
        "pack_rows",
        token_ids,
        unit_lengths,
        unit_starts_document,
        int(seq_len),
        bool(full_sentences),
        np.uint32(bos_id),
        np.uint32(eos_id),
    )


# --------------------------------------------------------------------------- masking


@_kernel
def _mask_rows(
    row_offsets,
    row_tokens,
    is_special,
    replacement_ids,
    word_start,
    seed,
    stream,
    partitions,
    row_numbers,
    dup,
    mask_prob,
    random_prob,
    keep_prob,
    max_predictions,
    whole_word,
    first_copy,
):
    n_rows = row_offsets.shape[0] - 1
    n_replacements = replacement_ids.shape[0]
    mask_below = 1.0 - random_prob - keep_prob
    random_below_ = 1.0 - keep_prob
    max_len = 0
    bound = 0
    for r in range(n_rows):
        length = row_offsets[r + 1] - row_offsets[r]
        max_len = max(max_len, length)
        bound += dup * min(max_predictions, length)
    positions = np.empty(bound, np.uint16)  # (bound,) uint16, trimmed at the end
    random_tokens = np.empty(bound, np.uint32)  # (bound,) uint32, trimmed at the end
    groups = np.zeros((n_rows, dup, 3), np.uint16)  # (rows, dup, 3): masked, random, kept
    position_offsets = np.zeros(n_rows + 1, np.int64)  # (rows + 1,) int64
    random_offsets = np.zeros(n_rows + 1, np.int64)  # (rows + 1,) int64
    # Scratch, one row at a time. `perm` and `order` are the identity between copies: each
    # copy undoes its Fisher-Yates swaps (recorded in `swaps`) in reverse.
    cand = np.empty(max_len, np.int64)  # (max_len,) candidate positions, ascending
    perm = np.arange(max_len)  # (max_len,) int64 indices into cand (token masking)
    order = np.arange(max_len)  # (max_len,) int64 word indices (whole-word masking)
    swaps = np.empty(max_len, np.int64)  # (max_len,) the j of each Fisher-Yates step
    new_word = np.empty(max_len, np.bool_)  # (max_len,) by candidate index: starts a word
    word_first = np.empty(max_len + 1, np.int64)  # (words + 1,) first candidate index, end
    mark = np.zeros(max_len, np.int64)  # (max_len,) == stamp where a candidate is chosen
    stamp = 0  # one per (row, copy), so `mark` never needs clearing
    chosen = np.empty(max_len, np.int64)  # (max_len,) the first m: chosen, ascending
    kind = np.empty(max_len, np.int8)  # (max_len,) of chosen: 0 masked, 1 random, 2 kept
    n_pos = 0
    n_rand = 0
    for r in range(n_rows):
        start = row_offsets[r]
        length = row_offsets[r + 1] - start
        n_cand = 0
        previous = -2  # the last candidate position
        for p in range(length):
            token = row_tokens[start + p]
            if not is_special[token]:
                if whole_word:  # word_start is not read otherwise
                    new_word[n_cand] = (previous != p - 1) | word_start[token]
                cand[n_cand] = p
                n_cand += 1
                previous = p
        n_words = 0
        if whole_word:  # branchless: a non-start writes a slot the next start overwrites
            for q in range(n_cand):
                word_first[n_words] = q
                n_words += new_word[q]
            word_first[n_words] = n_cand
        for k in range(dup):
            stamp += 1
            key = _row_key(seed, stream, partitions[r], row_numbers[r], first_copy + np.uint64(k))
            n = np.int64(np.floor(mask_prob * n_cand + _random_float(key, 0)))
            n = min(n, max_predictions, n_cand)
            m = 0
            if not whole_word:
                for i in range(n):
                    j = i + _random_below(key, 1 + i, n_cand - i)
                    swaps[i] = j
                    perm[i], perm[j] = perm[j], perm[i]
                    mark[perm[i]] = stamp
                for i in range(n - 1, -1, -1):
                    j = swaps[i]
                    perm[i], perm[j] = perm[j], perm[i]
                m = n
            else:
                drawn = 0
                while drawn < n_words and m < n:
                    i = drawn
                    j = i + _random_below(key, 1 + i, n_words - i)
                    swaps[i] = j
                    order[i], order[j] = order[j], order[i]
                    word = order[i]
                    first = word_first[word]
                    size = word_first[word + 1] - first
                    if m + size <= n:
                        mark[first : first + size] = stamp
                        m += size
                    drawn += 1
                for i in range(drawn - 1, -1, -1):
                    j = swaps[i]
                    order[i], order[j] = order[j], order[i]
            # Sort by scanning the candidates in order: branchless, faster than a sort.
            if m > 0:
                m = 0
                for q in range(n_cand):
                    chosen[m] = cand[q]
                    m += mark[q] == stamp
            n_masked = 0
            n_random = 0
            for i in range(m):
                p = chosen[i]
                u = _random_float(key, _ACTION_COUNTER + p)
                c = (u >= mask_below) + (u >= random_below_)  # 0 masked, 1 random, 2 kept
                kind[i] = c
                n_masked += c == 0
                if c == 1:
                    t = _random_below(key, _REPLACE_COUNTER + p, n_replacements)
                    random_tokens[n_rand + n_random] = replacement_ids[t]
                    n_random += 1
            next_masked = n_pos
            next_random = n_pos + n_masked
            next_kept = next_random + n_random
            for i in range(m):  # branchless: selects, not jumps
                c = kind[i]
                w = next_masked if c == 0 else (next_random if c == 1 else next_kept)
                positions[w] = chosen[i]
                next_masked += c == 0
                next_random += c == 1
                next_kept += c == 2
            groups[r, k, 0] = n_masked
            groups[r, k, 1] = n_random
            groups[r, k, 2] = m - n_masked - n_random
            n_rand += n_random
            n_pos += m
        position_offsets[r + 1] = n_pos
        random_offsets[r + 1] = n_rand
    return (
        positions[:n_pos].copy(),
        groups,
        random_tokens[:n_rand].copy(),
        position_offsets,
        random_offsets,
    )


def mask_rows(
    row_offsets: np.ndarray,
    row_tokens: np.ndarray,
    is_special: np.ndarray,
    replacement_ids: np.ndarray,
    word_start: np.ndarray,
    seed: int,
    stream: int,
    partition: int | np.ndarray,
    first_row: int | np.ndarray,
    dup: int,
    mask_prob: float,
    random_prob: float,
    keep_prob: float,
    max_predictions: int,
    whole_word: bool,
    first_copy: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Choose ``dup`` masks for every row, copies ``first_copy`` to ``first_copy + dup
    - 1``; the scheme is in this module's docstring.

    Args:
        row_offsets, row_tokens: (n_rows + 1,) int64 and (total,) uint32, as from
            :func:`pack_rows`; rows at most 65,536 tokens (positions are uint16).
        is_special: (vocab,) bool by token id; special tokens are never candidates.
        replacement_ids: (n,) uint32, sorted, the non-special ids a random token is drawn
            from uniformly (may be empty only when ``random_prob`` is 0).
        word_start: (vocab,) bool by token id, True where a token starts a word; read
            only when ``whole_word``.
        seed, stream, partition: the key of this partition's masks (stream 0 = train,
            1 = valid); each in [0, 2**64). ``partition`` may also be (n_rows,), each
            row's own (rows of several partitions in one call, as a batch has them).
        first_row: the index within the partition of row 0 of this call (row ``r`` is
            ``first_row + r``), or (n_rows,): each row's index within its partition.
        dup: copies per row; copy ``k`` uses ``row_key(seed, stream, partition, row, k)``.
        first_copy: the first copy's number, so that any copy can be computed alone
            (copy ``k`` is the same whatever ``first_copy`` and ``dup`` include it).
        mask_prob: share of candidates chosen (0.15), rounded stochastically.
        random_prob, keep_prob: of the chosen, the share given a random token (0.1) and
            kept (0.1); the rest (0.8) become ``<mask>``.
        max_predictions: the most positions chosen per row and copy.
        whole_word: choose whole words (runs of pieces up to the next word start).

    Returns:
        ``(positions, groups, random_tokens, position_offsets, random_offsets)``:
        positions (total,) uint16, for row 0 copy 0, row 0 copy 1, ..., row 1 copy 0, ...,
        each copy's masked, then random, then kept positions, each group ascending
        (indices into the unpadded row, 0 = ``<s>``); groups (n_rows, dup, 3) uint16, the
        three group sizes; random_tokens (total,) uint32, the replacement of each random
        position in the same order; position_offsets and random_offsets (n_rows + 1,)
        int64, where each row's copies start in positions and random_tokens.
    """
    row_offsets = np.ascontiguousarray(row_offsets, dtype=np.int64)
    row_tokens = _unsigned(row_tokens, np.uint32, "row_tokens")
    is_special = np.ascontiguousarray(is_special, dtype=np.bool_)
    word_start = np.ascontiguousarray(word_start, dtype=np.bool_)
    replacement_ids = _unsigned(replacement_ids, np.uint32, "replacement_ids")
    lengths = np.diff(row_offsets)
    if row_offsets.ndim != 1 or row_offsets.size == 0 or row_offsets[0] != 0:
        raise ValueError("row_offsets must be 1-D and start at 0")
    if row_offsets[-1] != row_tokens.size or (lengths < 0).any():
        raise ValueError("row_offsets must be non-decreasing and end at len(row_tokens)")
    if lengths.size and lengths.max() > 65536:
        raise ValueError("rows must be at most 65,536 tokens (positions are uint16)")
    vocab = min(is_special.size, word_start.size if whole_word else is_special.size)
    if row_tokens.size and int(row_tokens.max()) >= vocab:
        raise ValueError("row_tokens holds an id outside is_special / word_start")
    if replacement_ids.size:
        if int(replacement_ids.max()) >= is_special.size or is_special[replacement_ids].any():
            raise ValueError("replacement_ids must be non-special ids of the vocabulary")
        if (np.diff(replacement_ids.astype(np.int64)) <= 0).any():
            raise ValueError("replacement_ids must be sorted and distinct")
    if not (0.0 <= mask_prob <= 1.0 and random_prob >= 0.0 and keep_prob >= 0.0):
        raise ValueError("probabilities must lie in [0, 1]")
    if random_prob + keep_prob > 1.0:
        raise ValueError("random_prob + keep_prob must be at most 1")
    if random_prob > 0.0 and replacement_ids.size == 0:
        raise ValueError("random_prob > 0 needs replacement_ids")
    if not 1 <= dup <= 65535 or max_predictions < 0:
        raise ValueError("dup must be in 1..65535 and max_predictions >= 0")
    for name, value in (("seed", seed), ("stream", stream)):
        if not 0 <= value <= _U64_MAX:
            raise ValueError(f"{name} must be in [0, 2**64), got {value}")
    partitions = _per_row(partition, len(lengths), "partition")
    if np.ndim(first_row) == 0:
        if not 0 <= first_row <= _U64_MAX - len(lengths):
            raise ValueError(f"first_row out of range: {first_row}")
        row_numbers = np.uint64(first_row) + np.arange(len(lengths), dtype=np.uint64)
    else:
        row_numbers = _per_row(first_row, len(lengths), "first_row")
    if not 0 <= first_copy <= _U64_MAX - dup:
        raise ValueError(f"first_copy out of range: {first_copy}")
    return _run(
        "mask_rows",
        row_offsets,
        row_tokens,
        is_special,
        replacement_ids,
        word_start,
        np.uint64(seed),
        np.uint64(stream),
        partitions,
        row_numbers,
        int(dup),
        float(mask_prob),
        float(random_prob),
        float(keep_prob),
        int(min(max_predictions, 65536)),
        bool(whole_word),
        np.uint64(first_copy),
    )


# --------------------------------------------------------------------------- encodings


@_kernel
def _cut_at_breaks(ids, text_lengths, group_sizes, line_break_id):
    n_texts = text_lengths.shape[0]
    unit_lengths = np.zeros(group_sizes.sum(), np.int64)  # (units,) int64
    kept = np.empty(ids.shape[0], np.uint32)  # (tokens,) the ids less the breaks
    src = 0  # read cursor in ids
    w = 0  # write cursor in kept
    u = 0  # the unit being filled
    for t in range(n_texts):
        length = text_lengths[t]
        if length == 0:
            return unit_lengths, kept[:0].copy(), False
        unit_start = w
        breaks = 0
        for i in range(src, src + length):
            if ids[i] == line_break_id:
                breaks += 1
                if breaks >= group_sizes[t]:
                    return unit_lengths, kept[:0].copy(), False
                unit_lengths[u] = w - unit_start
                u += 1
                unit_start = w
            else:
                kept[w] = ids[i]
                w += 1
        if breaks != group_sizes[t] - 1:
            return unit_lengths, kept[:0].copy(), False
        unit_lengths[u] = w - unit_start
        u += 1
        src += length
    return unit_lengths, kept[:w].copy(), True


def cut_at_breaks(
    ids: np.ndarray, text_lengths: np.ndarray, group_sizes: np.ndarray, line_break_id: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Cut texts that were encoded joined by line breaks back into their units.

    Args:
        ids: (tokens,) uint32, every text's ids in order.
        text_lengths: (texts,) int64 tokens per text; sums to len(ids).
        group_sizes: (texts,) int64 units joined in each text (>= 1).
        line_break_id: the id of the break between two units.

    Returns:
        ``(unit_lengths, kept_ids)``: (units,) int64 tokens per unit and the ids less the
        breaks; None where a text is empty or holds other than ``group_size - 1`` breaks.
    """
    ids = _unsigned(ids, np.uint32, "ids")
    text_lengths = np.ascontiguousarray(text_lengths, dtype=np.int64)
    group_sizes = np.ascontiguousarray(group_sizes, dtype=np.int64)
    if text_lengths.ndim != 1 or group_sizes.shape != text_lengths.shape:
        raise ValueError("text_lengths and group_sizes must be 1-D of one length")
    if (text_lengths < 0).any() or int(text_lengths.sum()) != ids.size:
        raise ValueError("text_lengths must be >= 0 and sum to len(ids)")
    if (group_sizes < 1).any():
        raise ValueError("group_sizes must be >= 1")
    if not 0 <= line_break_id < 2**32:
        raise ValueError(f"line_break_id must be a uint32, got {line_break_id}")
    unit_lengths, kept, ok = _run(
        "cut_at_breaks", ids, text_lengths, group_sizes, np.uint32(line_break_id)
    )
    return (unit_lengths, kept) if ok else None


@_kernel
def _text_byte_counts(ids, text_lengths, byte_lengths):
    counts = np.zeros(text_lengths.shape[0], np.int64)  # (texts,) int64
    n_ids = byte_lengths.shape[0]
    src = 0
    for t in range(text_lengths.shape[0]):
        total = 0
        for i in range(src, src + text_lengths[t]):
            if ids[i] >= n_ids:
                return counts, False
            total += byte_lengths[ids[i]]
        counts[t] = total
        src += text_lengths[t]
    return counts, True


def text_byte_counts(
    ids: np.ndarray, text_lengths: np.ndarray, byte_lengths: np.ndarray
) -> np.ndarray:
    """(texts,) int64: the sum of ``byte_lengths[id]`` over each text's ids.

    ``ids`` (tokens,) uint32 are the texts' ids in order, ``text_lengths`` (texts,) int64
    tokens per text (summing to len(ids)), ``byte_lengths`` (vocab,) int64 a value per id.
    Raises ValueError for an id outside ``byte_lengths``.
    """
    ids = _unsigned(ids, np.uint32, "ids")
    text_lengths = np.ascontiguousarray(text_lengths, dtype=np.int64)
    byte_lengths = np.ascontiguousarray(byte_lengths, dtype=np.int64)
    if text_lengths.ndim != 1 or (text_lengths < 0).any() or int(text_lengths.sum()) != ids.size:
        raise ValueError("text_lengths must be 1-D, >= 0, and sum to len(ids)")
    if byte_lengths.ndim != 1:
        raise ValueError("byte_lengths must be 1-D")
    counts, ok = _run("text_byte_counts", ids, text_lengths, byte_lengths)
    if not ok:
        raise ValueError(f"ids holds an id outside byte_lengths (size {byte_lengths.size})")
    return counts


# --------------------------------------------------------------------------- text


@_kernel
def _space3(x, y, z):
    # Whether the 3 bytes are one of the 3-byte str.isspace characters in UTF-8:
    # U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
    if x == 0xE1:
        return y == 0x9A and z == 0x80
    if x == 0xE2:
        if y == 0x80:
            return z <= 0x8A or z == 0xA8 or z == 0xA9 or z == 0xAF
        return y == 0x81 and z == 0x9F
    return x == 0xE3 and y == 0x80 and z == 0x80


@_kernel
def _space_at(data, a, b):
    # The bytes of the str.isspace character that starts at data[a], within data[a:b],
    # else 0: ASCII \t-\r, \x1c-\x1f and " ", U+0085 and U+00A0, then _space3's.
    x = data[a]
    if x == 32 or 9 <= x <= 13 or 28 <= x <= 31:
        return 1
    if x == 0xC2:
        return 2 if a + 1 < b and (data[a + 1] == 0x85 or data[a + 1] == 0xA0) else 0
    return 3 if a + 2 < b and _space3(x, data[a + 1], data[a + 2]) else 0


@_kernel
def _space_before(data, a, b):
    # The bytes of the str.isspace character that ends at data[b - 1], within data[a:b],
    # else 0. Their first byte is a lead byte, never part of an earlier character.
    x = data[b - 1]
    if x == 32 or 9 <= x <= 13 or 28 <= x <= 31:
        return 1
    if b - a >= 2 and data[b - 2] == 0xC2 and (x == 0x85 or x == 0xA0):
        return 2
    return 3 if b - a >= 3 and _space3(data[b - 3], data[b - 2], x) else 0


@_kernel
def _utf8_length(data, i):
    # The length of the valid UTF-8 character that starts with the byte >= 0x80 at
    # data[i], else 0: overlong forms, surrogates and code points past U+10FFFF are
    # invalid, as Python's decoder has them.
    x = data[i]
    if 0xC2 <= x <= 0xDF:
        more, low, high = 1, 0x80, 0xBF
    elif 0xE0 <= x <= 0xEF:
        more = 2
        low = 0xA0 if x == 0xE0 else 0x80
        high = 0x9F if x == 0xED else 0xBF
    elif 0xF0 <= x <= 0xF4:
        more = 3
        low = 0x90 if x == 0xF0 else 0x80
        high = 0x8F if x == 0xF4 else 0xBF
    else:
        return 0
    if i + more >= data.shape[0] or not low <= data[i + 1] <= high:
        return 0
    for k in range(i + 2, i + more + 1):
        if not 0x80 <= data[k] <= 0xBF:
            return 0
    return more + 1


@_kernel
def _zero_bytes(word):
    # The high bit of each zero byte of a uint64, exactly: adding 0x7F to each byte's
    # low 7 bits sets its high bit unless they are all 0, and carries into no other byte.
    return ~(((word & _BYTES_LOW7) + _BYTES_LOW7) | word | _BYTES_LOW7)


@_kernel
def _stop_bytes(word):
    # The high bit of each byte of a uint64 that is >= 0x80, "\n", "\r" or NUL.
    return (
        (word & _BYTES_HIGH)
        | _zero_bytes(word)
        | _zero_bytes(word ^ _BYTES_LF)
        | _zero_bytes(word ^ _BYTES_CR)
    )


@_kernel
def _next_stop(data, words, i):
    # The index of the first byte at or after i that is >= 0x80, "\n", "\r" or NUL, else
    # len(data); 8 bytes at a time through `words` (data's whole words, as uint64).
    n = data.shape[0]
    k = i >> 3
    if k < words.shape[0]:
        stops = _stop_bytes(words[k]) & (_ALL_BITS << np.uint64(8 * (i & 7)))  # from i on
        while stops == 0:
            k += 1
            if k == words.shape[0]:
                break
            stops = _stop_bytes(words[k])
        if stops != 0:
            lowest = stops & (~stops + np.uint64(1))
            return k * 8 + (_DEBRUIJN_BITS[(lowest * _DEBRUIJN) >> np.uint64(58)] >> 3)
        i = k * 8
    while i < n:
        x = data[i]
        if x >= 0x80 or x == 10 or x == 13 or x == 0:
            return i
        i += 1
    return n


@_kernel
def _text_lines(data, longest):
    n = data.shape[0]
    capacity = 1  # lines at most: line ends + 1
    for i in range(n):
        x = data[i]
        capacity += (x == 10) | (x == 13)
    begins = np.empty(capacity, np.int64)  # (lines,) int64 byte ranges of the kept lines
    ends = np.empty(capacity, np.int64)
    chars = np.empty(capacity, np.int64)  # (lines,) int64 characters of each
    opens = np.empty(capacity, np.bool_)  # (lines,) bool: starts a document
    words = data[: n // 8 * 8].view(np.uint64)
    k = 0
    opening = True  # the next line that is not blank starts a document
    line_start = 0
    continuations = 0  # UTF-8 continuation bytes in the line so far
    i = 0
    while True:
        j = _next_stop(data, words, i)
        if j < n and data[j] >= 0x80:
            length = _utf8_length(data, j)
            if length == 0:
                return begins[:0], ends[:0], chars[:0], opens[:0], False
            continuations += length - 1
            i = j + length
            continue
        if (j < n and data[j] == 0) or j - line_start > longest:
            return begins[:0], ends[:0], chars[:0], opens[:0], False
        a = line_start  # the line is data[line_start:j]; strip it to data[a:b]
        b = j
        while a < b:
            width = _space_at(data, a, b)
            if width == 0:
                break
            a += width
            continuations -= width - 1
        while b > a:
            width = _space_before(data, a, b)
            if width == 0:
                break
            b -= width
            continuations -= width - 1
        if a == b:
            opening = True  # a blank line ends the document
        else:
            begins[k] = a
            ends[k] = b
            chars[k] = b - a - continuations
            opens[k] = opening
            opening = False
            k += 1
        if j == n:
            break
        i = j + 2 if data[j] == 13 and j + 1 < n and data[j + 1] == 10 else j + 1
        line_start = i
        continuations = 0
    return begins[:k].copy(), ends[:k].copy(), chars[:k].copy(), opens[:k].copy(), True


def text_lines(
    data: np.ndarray, longest: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The lines of UTF-8 text as a .txt corpus file is read (``rbprep.corpus``): split at
    ``\\n``, ``\\r\\n`` and ``\\r``, stripped of ``str.isspace`` characters at both ends,
    blank ones left out, and a document starting after each blank line.

    Args:
        data: (bytes,) uint8, the text.
        longest: lines longer than this many bytes are not taken.

    Returns:
        ``(begins, ends, chars, opens)``, (lines,) each: the byte range of each kept line
        in ``data`` (int64), its characters (int64), and whether it starts a document
        (bool; the first always does); None where ``data`` is not valid UTF-8, holds a
        NUL, or has a line over ``longest`` bytes (the general reader replaces, counts
        or cuts those).
    """
    data = _unsigned(data, np.uint8, "data")
    begins, ends, chars, opens, ok = _run("text_lines", data, np.int64(longest))
    return (begins, ends, chars, opens) if ok else None


@_kernel
def _join_lines(data, begins, ends, chars, opens, join_chars):
    n_lines = begins.shape[0]
    size = 0
    for q in range(n_lines):
        size += ends[q] - begins[q] + 2
    joined = np.empty(size, np.uint8)  # (bytes,) uint8, trimmed at the end
    run_ends = np.empty(n_lines, np.int64)  # (runs,) int64, trimmed at the end
    group_sizes = np.zeros(n_lines, np.int64)  # (runs,) int64, trimmed at the end
    w = 0
    runs = 0
    position = 0  # characters before line q, a line counted with its " " and "\n"
    document_begin = 0
    previous_run = -1
    for q in range(n_lines):
        if q == 0 or opens[q]:
            document_begin = position
        run = (position - document_begin) // join_chars
        if q == 0 or opens[q] or run != previous_run:
            if runs:
                run_ends[runs - 1] = w
            runs += 1
            if not opens[q]:
                joined[w] = 32  # a later line of its document: " " before it
                w += 1
        else:
            joined[w] = 10
            joined[w + 1] = 32
            w += 2
        size = ends[q] - begins[q]
        joined[w : w + size] = data[begins[q] : ends[q]]
        w += size
        group_sizes[runs - 1] += 1
        previous_run = run
        position += chars[q] + 2
    if runs:
        run_ends[runs - 1] = w
    return joined[:w], run_ends[:runs].copy(), group_sizes[:runs].copy()


def join_lines(
    data: np.ndarray,
    begins: np.ndarray,
    ends: np.ndarray,
    chars: np.ndarray,
    opens: np.ndarray,
    join_chars: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rbprep.encoding.join_lines`` on lines held as byte ranges of ``data`` (``text_lines``):
    the same runs, as UTF-8.

    Args:
        data: (bytes,) uint8 text.
        begins, ends: (lines,) int64 each line's byte range in ``data``.
        chars: (lines,) int64 each line's characters.
        opens: (lines,) bool: the line starts a document.
        join_chars: characters per run, as ``JOIN_CHARS``.

    Returns:
        ``(joined, run_ends, group_sizes)``: the runs one after another (uint8), where
        each ends in ``joined`` (int64) and how many lines it holds (int64).
    """
    data = _unsigned(data, np.uint8, "data")
    begins, ends, chars = (np.ascontiguousarray(a, dtype=np.int64) for a in (begins, ends, chars))
    opens = np.ascontiguousarray(opens, dtype=np.bool_)
    if not begins.shape == ends.shape == chars.shape == opens.shape or begins.ndim != 1:
        raise ValueError("begins, ends, chars and opens must be 1-D of one length")
    if begins.size and (begins.min() < 0 or ends.max() > data.size or (ends < begins).any()):
        raise ValueError("begins and ends must be ranges within data")
    if join_chars < 1:
        raise ValueError(f"join_chars must be >= 1, got {join_chars}")
    return _run("join_lines", data, begins, ends, chars, opens, np.int64(join_chars))


def _per_row(value: int | np.ndarray, n_rows: int, name: str) -> np.ndarray:
    """``value`` (one for all rows, or one per row) as (n_rows,) uint64."""
    if np.ndim(value) == 0:
        if not 0 <= int(value) <= _U64_MAX:
            raise ValueError(f"{name} must be in [0, 2**64), got {value}")
        return np.full(n_rows, value, dtype=np.uint64)
    array = _unsigned(value, np.uint64, name)
    if array.size != n_rows:
        raise ValueError(f"{name} must hold one value per row ({n_rows}), got {array.size}")
    return array


def _unsigned(array: np.ndarray, dtype: type, name: str) -> np.ndarray:
    """``array`` as a contiguous 1-D ``dtype`` array; values out of its range are an error."""
    array = np.asarray(array)
    if array.dtype != dtype and array.size:
        if array.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integers, got {array.dtype}")
        if int(array.min()) < 0 or int(array.max()) > np.iinfo(dtype).max:
            raise ValueError(f"{name} holds values outside {np.dtype(dtype).name}")
    array = np.ascontiguousarray(array, dtype=dtype)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D")
    return array


# --------------------------------------------------------------------------- reading
#
# A batch gathered from any shards in one call: the shards' flat Arrow buffers (list
# offsets and values, memory-mapped) come as numba typed lists, one entry per record
# batch of a shard (``gather_rows``). Typed lists have no ahead-of-time signature, so
# the gathering kernels always run on numba's JIT (``_run_jit``). The checks at open
# (``shard_invariants``) take one record batch's arrays: compiled ahead of time, so an
# open need not load numba.


@_kernel
def _gather_rows(id_offsets, id_values, parts, rows, sep_id, input_ids, attention_mask, documents):
    lengths = np.empty(len(parts), dtype=np.int64)
    for b in range(len(parts)):
        offsets = id_offsets[parts[b]]
        values = id_values[parts[b]]
        start = offsets[rows[b]]
        length = offsets[rows[b] + 1] - start
        lengths[b] = length
        document = 0
        for j in range(length):
            token = values[start + j]
            input_ids[b, j] = token
            attention_mask[b, j] = 1
            documents[b, j] = document
            if token == sep_id:  # the end token ends its document: the next starts after
                document += 1
    return lengths


@_kernel
def _apply_row_masks(
    input_ids,
    labels,
    kinds,
    b,
    positions,
    start,
    tokens,
    token_start,
    masked,
    random,
    kept,
    mask_id,
):
    for i in range(masked + random + kept):
        column = positions[start + i]
        labels[b, column] = input_ids[b, column]
        kind = 3  # kept
        if i < masked:
            input_ids[b, column] = mask_id
            kind = 1
        elif i < masked + random:
            input_ids[b, column] = tokens[token_start + i - masked]
            kind = 2
        if kinds.shape[0]:
            kinds[b, column] = kind


@_kernel
def _gather_masks(
    position_offsets,
    positions,
    groups,
    random_offsets,
    random_tokens,
    parts,
    rows,
    copy,
    copies,
    mask_id,
    input_ids,
    labels,
    kinds,
):
    for b in range(len(parts)):
        part = parts[b]
        row = rows[b]
        sizes = groups[part]
        base = row * copies * 3
        start = position_offsets[part][row]
        token_start = random_offsets[part][row]
        for k in range(copy):  # the copies stored before this one
            start += sizes[base + 3 * k] + sizes[base + 3 * k + 1] + sizes[base + 3 * k + 2]
            token_start += sizes[base + 3 * k + 1]
        at = base + 3 * copy
        _apply_row_masks(
            input_ids,
            labels,
            kinds,
            b,
            positions[part],
            start,
            random_tokens[part],
            token_start,
            sizes[at],
            sizes[at + 1],
            sizes[at + 2],
            mask_id,
        )


@_kernel
def _apply_masks(position_offsets, positions, groups, random_offsets, random_tokens, mask_id,
                 input_ids, labels, kinds):  # fmt: skip
    for b in range(len(position_offsets) - 1):
        _apply_row_masks(
            input_ids,
            labels,
            kinds,
            b,
            positions,
            position_offsets[b],
            random_tokens,
            random_offsets[b],
            groups[b, 0, 0],
            groups[b, 0, 1],
            groups[b, 0, 2],
            mask_id,
        )


# What ``_shard_invariants`` found first (0: nothing); ``shard_invariants`` says it in words.
_LIST_OFFSETS, _LENGTH, _ID, _GROUPS, _POSITION, _RANDOM_TOKEN = 1, 2, 3, 4, 5, 6


@_kernel
def _list_offsets_bad(offsets, rows, values):
    if len(offsets) != rows + 1 or offsets[0] < 0 or offsets[rows] > values:
        return True
    for r in range(rows):  # noqa: SIM110 (a plain loop: what numba compiles best)
        if offsets[r + 1] < offsets[r]:
            return True
    return False


@_kernel
def _shard_invariants(
    id_offsets, ids, position_offsets, positions, groups, random_offsets, random_tokens,
    copies, seq_len, vocab_size,
):  # fmt: skip
    rows = len(id_offsets) - 1
    if rows < 0 or _list_offsets_bad(id_offsets, rows, len(ids)):
        return _LIST_OFFSETS, 0
    if copies and (
        _list_offsets_bad(position_offsets, rows, len(positions))
        or _list_offsets_bad(random_offsets, rows, len(random_tokens))
        or len(groups) != rows * copies * 3
    ):
        return _LIST_OFFSETS, 0
    for r in range(rows):
        length = id_offsets[r + 1] - id_offsets[r]
        if length < 3 or length > seq_len:
            return _LENGTH, r
        for i in range(id_offsets[r], id_offsets[r + 1]):
            if ids[i] >= vocab_size:
                return _ID, r
        if not copies:
            continue
        chosen = 0
        random = 0
        for g in range(r * copies * 3, (r + 1) * copies * 3):
            chosen += groups[g]
            if g % 3 == 1:
                random += groups[g]
        if (
            chosen != position_offsets[r + 1] - position_offsets[r]
            or random != random_offsets[r + 1] - random_offsets[r]
        ):
            return _GROUPS, r
        for i in range(position_offsets[r], position_offsets[r + 1]):
            if positions[i] >= length:
                return _POSITION, r
        for i in range(random_offsets[r], random_offsets[r + 1]):
            if random_tokens[i] >= vocab_size:
                return _RANDOM_TOKEN, r
    return 0, 0


def shard_invariants(
    id_offsets: np.ndarray,
    ids: np.ndarray,
    masks: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
    copies: int,
    seq_len: int,
    vocab_size: int,
) -> tuple[str, int] | None:
    """What in one record batch would make a wrong batch or let the reading kernels read
    outside its buffers, and the row (None if nothing): one pass over each buffer.

    ``id_offsets`` and ``ids``: its ``input_ids`` list offsets (rows + 1,) and values;
    ``masks`` (None for ids alone): ``mask_positions`` offsets and values, ``mask_groups``
    flat (rows * copies * 3,), ``random_tokens`` offsets and values. Checked: every list's
    offsets non-decreasing and within its values, lengths in 3..``seq_len``, ids and random
    tokens below ``vocab_size``, each row's group sizes adding up to its positions and
    random tokens, and every position inside its row."""
    if masks is None:  # ids alone: empty mask buffers
        offsets = np.zeros(1, dtype=np.int32)
        none = np.zeros(0, dtype=np.uint16)
        masks, copies = (offsets, none, none, offsets, np.zeros(0, dtype=ids.dtype)), 0
    what, row = _run(
        f"shard_invariants_u{ids.dtype.itemsize}", id_offsets, ids, *masks, int(copies),
        int(seq_len), int(vocab_size),
    )  # fmt: skip
    if not what:
        return None
    words = {
        _LIST_OFFSETS: "list offsets outside their values (not a shard rbprep wrote)",
        _LENGTH: f"a length outside 3..{seq_len}",
        _ID: f"an id outside the {vocab_size:,}-id vocabulary",
        _GROUPS: "mask group sizes that do not match its positions",
        _POSITION: "a mask position beyond its end",
        _RANDOM_TOKEN: f"a random token outside the {vocab_size:,}-id vocabulary",
    }
    return words[int(what)], int(row)


def _run_jit(name: str, *args: Any) -> Any:
    """Run the kernel ``_name`` on numba's JIT (kernels that take typed lists)."""
    use_jit()
    return globals()[f"_{name}"](*args)


def typed_list(arrays: list[np.ndarray]) -> Any:
    """``arrays`` (1-D, C-contiguous, one dtype) as a numba typed list, for the reading
    kernels: it refers to the arrays, it copies none."""
    from numba.typed import List

    use_jit()
    typed = List()
    for array in arrays:
        typed.append(array)
    return typed


def gather_rows(
    id_offsets: Any,
    id_values: Any,
    parts: np.ndarray,
    rows: np.ndarray,
    sep_id: int,
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    document_ids: np.ndarray,
) -> np.ndarray:
    """Copy rows ``rows`` (batch,) int64 of record batches ``parts`` (batch,) int64 into
    row ``b`` of the padded outputs, in one call whatever the shards; return each row's
    length (batch,) int64.

    Args:
        id_offsets, id_values: ``typed_list``s, one entry per record batch: its
            ``input_ids`` list offsets (rows + 1,) int32 and flat values (uint16/uint32).
        input_ids, attention_mask: (batch, seq_len) int64, filled with the pad id and 0;
            a row's ids and 1s are written from column 0.
        document_ids: (batch, seq_len) int32 filled with -1: each position's document
            within its row from 0, the ``sep_id`` that ends a document being its last.
    """
    if not parts.shape == rows.shape or len(parts) > len(input_ids):
        raise ValueError("parts and rows must be (batch,) and fit the outputs")
    return _run_jit(
        "gather_rows", id_offsets, id_values, parts, rows, sep_id, input_ids, attention_mask,
        document_ids,
    )  # fmt: skip


def gather_masks(
    position_offsets: Any,
    positions: Any,
    groups: Any,
    random_offsets: Any,
    random_tokens: Any,
    parts: np.ndarray,
    rows: np.ndarray,
    copy: int,
    copies: int,
    mask_id: int,
    input_ids: np.ndarray,
    labels: np.ndarray,
    kinds: np.ndarray,
) -> None:
    """Apply stored copy ``copy`` of ``copies`` to the gathered rows (``gather_rows``):
    each chosen position's label becomes its id, then its id the mask id, its random
    token or itself, and ``kinds`` (batch, seq_len) int8 (or (0, 0): not wanted) 1, 2 or
    3. The typed lists hold each record batch's ``mask_positions`` offsets (int32) and
    values (uint16), ``mask_groups`` flat (rows * copies * 3,) uint16, and
    ``random_tokens`` offsets and values."""
    _run_jit(
        "gather_masks", position_offsets, positions, groups, random_offsets, random_tokens,
        parts, rows, np.int64(copy), np.int64(copies), mask_id, input_ids, labels, kinds,
    )  # fmt: skip


def apply_masks(
    position_offsets: np.ndarray,
    positions: np.ndarray,
    groups: np.ndarray,
    random_offsets: np.ndarray,
    random_tokens: np.ndarray,
    mask_id: int,
    input_ids: np.ndarray,
    labels: np.ndarray,
    kinds: np.ndarray,
) -> None:
    """As ``gather_masks``, for masks ``mask_rows`` computed for the batch's rows, one
    copy (``groups`` (batch, 1, 3)): row ``b`` of the outputs takes row ``b``'s."""
    if groups.shape[1:] != (1, 3) or len(position_offsets) != len(groups) + 1:
        raise ValueError("apply_masks takes one copy's masks for every row of the batch")
    _run_jit(
        "apply_masks", position_offsets, positions, groups, random_offsets, random_tokens,
        mask_id, input_ids, labels, kinds,
    )  # fmt: skip


# --------------------------------------------------------------------------- mixtures


@_kernel
def _blend(weights, counts, first, choices):
    for i in range(len(choices)):
        best = 0
        gap = weights[0] * (first + i + 1) - counts[0]
        for s in range(1, len(weights)):
            behind = weights[s] * (first + i + 1) - counts[s]
            if behind > gap:
                best, gap = s, behind
        choices[i] = best
        counts[best] += 1


def blend(weights: np.ndarray, counts: np.ndarray, first: int, n: int) -> np.ndarray:
    """Megatron's greedy blending: the source of each of samples ``first .. first + n -
    1`` of a mixture, (n,) int64, each the source furthest below its share of the samples
    so far (``weights`` (sources,) float64, summing to 1; ties to the first). ``counts``
    (sources,) int64, the samples each source gave before ``first``, is advanced in place.
    A pure function of the weights and the position: no random state."""
    choices = np.empty(n, dtype=np.int64)
    _run_jit("blend", np.ascontiguousarray(weights, np.float64), counts, np.int64(first), choices)
    return choices


# --------------------------------------------------------------------------- comparison
#
# compare-tokenizers places every token in its whitespace word and checks its round
# trip, over every character of the sample: one pass each here, where NumPy took ten.

UNCLASSIFIED = 255  # place_pre_tokens: a class_table entry for a code point not seen yet


@_kernel
def _scan_words(codes, text_lengths, space_table):
    n = codes.shape[0]
    space = np.empty(n, np.bool_)  # (chars,) str.isspace()
    word_of_char = np.empty(n, np.int32)  # (chars,) words started at or before, less 1
    byte_starts = np.empty(n + 1, np.int32)  # (chars + 1,) UTF-8 offset of each char
    next_nonspace = np.empty(n + 1, np.int32)  # (chars + 1,)
    words = 0
    after_space = True
    at = 0
    for i in range(n):
        code = codes[i]
        is_space = code < space_table.shape[0] and space_table[code]
        if after_space and not is_space:
            words += 1
        after_space = is_space
        space[i] = is_space
        word_of_char[i] = words - 1
        byte_starts[i] = at
        at += 1 + (code >= 0x80) + (code >= 0x800) + (code >= 0x10000)
    byte_starts[n] = at
    following = n
    next_nonspace[n] = n
    for i in range(n - 1, -1, -1):
        if not space[i]:
            following = i
        next_nonspace[i] = following
    text_words = np.empty(text_lengths.shape[0], np.int64)  # (texts,)
    start = 0
    for t in range(text_lengths.shape[0]):
        end = start + text_lengths[t]
        before = word_of_char[start - 1] + 1 if start > 0 else 0
        text_words[t] = (word_of_char[end - 1] + 1 if end > 0 else 0) - before
        start = end + 1  # past the joining "\n"
    return space, word_of_char, byte_starts, next_nonspace, text_words


def scan_words(
    codes: np.ndarray, text_lengths: np.ndarray, space_table: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The whitespace words of texts joined by "\\n" (one "\\n" after each), by code point.

    Args:
        codes: (chars,) uint32 code points of the joined texts.
        text_lengths: (texts,) int64 characters of each text, its "\\n" not counted.
        space_table: (limit,) bool, ``str.isspace()`` of each code point below ``limit``
            (none at or above it is whitespace).

    Returns:
        ``(space, word_of_char, byte_starts, next_nonspace, text_words)``: (chars,) bool
        whitespace; (chars,) int32 index of the word at or before each char (-1 before
        the first); (chars + 1,) int32 UTF-8 offset of each char, then the end; (chars +
        1,) int32 the first non-space position at or after each (chars where none); and
        (texts,) int64 words per text. Int32, half the memory traffic of int64: a batch
        is far below the 2**29 characters that allows.
    """
    codes = _unsigned(codes, np.uint32, "codes")
    if codes.size >= 2**29:  # 4 UTF-8 bytes a character at most must fit an int32
        raise ValueError("codes must hold fewer than 2**29 characters")
    text_lengths = np.ascontiguousarray(text_lengths, dtype=np.int64)
    if int(text_lengths.sum()) + text_lengths.size != codes.size or (text_lengths < 0).any():
        raise ValueError("text_lengths must be >= 0 and, with a joining char each, make codes")
    return _run("scan_words", codes, text_lengths, np.ascontiguousarray(space_table, np.bool_))


@_kernel
def _place_pre_tokens(codes, class_table, space, word_of_char, unit_starts, text_units,
                      text_lengths, ids, continues):  # fmt: skip
    # class_table: 0 vanishes, 1 joins, 2 breaks, 3 stands alone, 4 anything else,
    # UNCLASSIFIED not known yet. Status: 1 placed, 0 the ids do not fit, 2 unclassified.
    n = codes.shape[0]
    n_tokens = ids.shape[0]
    unit_tokens = np.zeros(unit_starts.shape[0], np.int64)  # (units,)
    token_words = np.empty(n_tokens, np.int64)  # (tokens,)
    starts = np.empty(n, np.int32)  # the pre-tokens' first characters, in order
    n_starts = 0
    previous = 2  # the class of the last kept character: a break before the first
    spaces_between = 0  # whitespace characters dropped since the last kept one
    for i in range(n):
        code = codes[i]
        c = class_table[code] if code < class_table.shape[0] else 4
        if c == UNCLASSIFIED:
            return unit_tokens, token_words, 2
        if c == 4:
            return unit_tokens, token_words, 0
        if c == 0:
            spaces_between += space[i]
            continue
        if space[i] and c != 2:  # whitespace that does not break (no normaliser: "\x1c")
            return unit_tokens, token_words, 0
        joined = c == 1 and previous == 1
        # A pre-token running over a character Python calls whitespace (say "\f", which
        # BERT drops) would have its tokens in two words: offsets tell those apart.
        if joined and spaces_between > 0:
            return unit_tokens, token_words, 0
        if c == 3 or (c == 1 and not joined):
            starts[n_starts] = i
            n_starts += 1
        previous = c
        spaces_between = 0
    # Each text's word-starting tokens must be its pre-tokens, one each, in order; each
    # token lies in its pre-token, so its word and unit follow from where that starts.
    s = 0  # pre-tokens before the text's end
    p = -1  # the pre-token of the token at hand
    token = 0
    unit = 0
    u = 0  # the unit of the token at hand
    for t in range(text_lengths.shape[0]):
        unit += text_units[t]
        text_end = unit_starts[unit] if unit < unit_starts.shape[0] else n
        while s < n_starts and starts[s] < text_end:
            s += 1
        for k in range(token, token + text_lengths[t]):
            if ids[k] >= continues.shape[0]:
                return unit_tokens, token_words, 0
            if not continues[ids[k]]:
                p += 1
                if p >= s:  # more word-starting tokens than pre-tokens
                    return unit_tokens, token_words, 0
            elif k == token:  # a text's first token continues nothing
                return unit_tokens, token_words, 0
            at = starts[p]
            while u + 1 < unit_starts.shape[0] and unit_starts[u + 1] <= at:
                u += 1
            token_words[k] = word_of_char[at]
            unit_tokens[u] += 1
        if p + 1 != s:  # fewer
            return unit_tokens, token_words, 0
        token += text_lengths[t]
    return unit_tokens, token_words, 1 if token == n_tokens else 0


class Unclassified(Exception):
    """``place_pre_tokens`` met a character whose class is ``UNCLASSIFIED``: classify the
    text's new code points and call it again."""


def place_pre_tokens(
    codes: np.ndarray,
    class_table: np.ndarray,
    space: np.ndarray,
    word_of_char: np.ndarray,
    unit_starts: np.ndarray,
    text_units: np.ndarray,
    text_lengths: np.ndarray,
    ids: np.ndarray,
    continues: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Where a BERT WordPiece's tokens lie, from the classes of the text's characters.

    Args:
        codes: (chars,) uint32 code points of the units joined by "\\n".
        class_table: (code points,) uint8, what the normaliser and pre-tokenizer make of
            each code point (``compare.pretokens``: 0 vanishes, 1 joins, 2 breaks, 3
            stands alone, 4 anything else, ``UNCLASSIFIED`` not known yet); looked up in
            the same pass that finds the pre-tokens.
        space: (chars,) bool, ``str.isspace()``; word_of_char: (chars,) int32
            (``scan_words``).
        unit_starts: (units,) int64 first character of each unit.
        text_units: (texts,) int64 units in each encoded text (they sum to units).
        text_lengths: (texts,) int64 tokens of each encoded text; ids: (tokens,) int64.
        continues: (ids,) bool, the token continues a pre-token ("##...").

    Returns:
        ``(unit_tokens, token_words)``, (units,) int64 tokens per unit and (tokens,) int64
        each token's word; None where a character is of class 4, the pre-tokens of a text
        do not match its word-starting tokens, or an id is outside ``continues``.

    Raises:
        Unclassified: a character's class is ``UNCLASSIFIED``.
    """
    if len(codes) >= 2**31:  # its pre-tokens' starts are int32
        raise ValueError("codes must hold fewer than 2**31 characters")
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.size and int(ids.min()) < 0:
        return None
    arrays = (codes, class_table, space, word_of_char, unit_starts, text_units, text_lengths)
    unit_tokens, token_words, status = _run_typed("place_pre_tokens", *arrays, ids, continues)
    if status == 2:
        raise Unclassified
    return (unit_tokens, token_words) if status == 1 else None


@_kernel
def _place_by_bytes(ids, text_lengths, byte_lengths, text_starts, byte_starts, next_nonspace,
                    word_of_char):  # fmt: skip
    token_words = np.empty(ids.shape[0], np.int64)  # (tokens,)
    k = 0
    for t in range(text_lengths.shape[0]):
        c = text_starts[t]  # the character holding the token's first byte
        at = byte_starts[c]
        text_end = byte_starts[text_starts[t + 1] - 1]  # the text's last byte, and one
        for _ in range(text_lengths[t]):
            if ids[k] >= byte_lengths.shape[0]:
                return token_words, False
            size = byte_lengths[ids[k]]
            end = at + size
            if end > text_end:
                return token_words, False
            first = next_nonspace[c]
            if (
                c + size < byte_starts.shape[0]
                and byte_starts[c] == at
                and byte_starts[c + size] == end
            ):
                # Its bytes are `size` whole characters of one byte each (ASCII, the
                # common case): no walk, whose exit mispredicts about once a token.
                token_words[k] = word_of_char[first] if first < c + size else -1
                c += size
                at = end
                k += 1
                continue
            last = c  # the character holding the token's last byte
            while byte_starts[last + 1] < end:
                last += 1
            if end == at and byte_starts[c] == at:  # no byte: ends before its char
                last = c - 1
            token_words[k] = word_of_char[first] if first <= last else -1
            # The next token's first byte, ``end``, lies in the character after ``last``
            # where ``last`` ends there, else (a character cut inside) in ``last``; each
            # character is walked once.
            if last >= c:
                c = last + 1 if byte_starts[last + 1] == end else last
            at = end
            k += 1
        if at != text_end:
            return token_words, False
    return token_words, True


def place_by_bytes(
    ids: np.ndarray,
    text_lengths: np.ndarray,
    byte_lengths: np.ndarray,
    text_starts: np.ndarray,
    byte_starts: np.ndarray,
    next_nonspace: np.ndarray,
    word_of_char: np.ndarray,
) -> np.ndarray | None:
    """Each token's word, for tokens that spell their texts byte for byte, in order.

    Args:
        ids: (tokens,) int64, the texts' tokens in order; text_lengths: (texts,) int64
            tokens of each text; byte_lengths: (ids,) int64 bytes each id spells.
        text_starts: (texts + 1,) int64 first character of each text in the texts
            joined by "\\n" (one after each); byte_starts, next_nonspace, word_of_char:
            of the joined texts (``scan_words``).

    Returns:
        (tokens,) int64 the word holding the first non-space character a token's bytes
        touch, -1 where they touch none; None where a text's tokens do not spell exactly
        its bytes, or an id is outside ``byte_lengths``.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.size and int(ids.min()) < 0:
        return None
    arrays = (ids, text_lengths, byte_lengths, text_starts, byte_starts, next_nonspace)
    token_words, ok = _run_typed("place_by_bytes", *arrays, word_of_char)
    return token_words if ok else None


@_kernel
def _load_u64(data, i):
    # The 8 bytes data[i:i + 8] as a little-endian uint64, i a uint64: an unsigned index
    # needs no wraparound check, which leaves LLVM free to make the eight loads one.
    value = np.uint64(data[i])
    for byte in range(1, 8):
        value |= np.uint64(data[i + np.uint64(byte)]) << np.uint64(8 * byte)
    return value


@_kernel
def _spelled(ids, doc_tokens, flat, bounds, words, vocab_size, want, doc_lengths):
    # With `words` (bytes), an entry of up to 8 bytes is compared at once: its `words`
    # value against the 8 bytes of `want` from `at` on (`want` holds 8 bytes past its
    # documents), not unit by unit, whose loop exits mispredict about once a token.
    by_words = words.shape[0] > 0
    same = np.zeros(doc_tokens.shape[0], np.bool_)  # (docs,)
    k = 0
    w = 0
    for d in range(doc_tokens.shape[0]):
        end = w + doc_lengths[d]
        at = w
        equal = True
        for j in range(doc_tokens[d]):
            key = ids[k + j] + (vocab_size if j == 0 else 0)
            first = bounds[key]
            size = bounds[key + 1] - first
            if at + size > end:
                equal = False
                break
            if by_words and size <= 8:
                low = (_ALL_BITS >> np.uint64(64 - 8 * size)) if size else np.uint64(0)
                if (words[key] ^ _load_u64(want, np.uint64(at))) & low:
                    equal = False
                    break
            else:
                for e in range(size):
                    if flat[first + e] != want[at + e]:
                        equal = False
                        break
                if not equal:
                    break
            at += size
        same[d] = equal and at == end
        k += doc_tokens[d]
        w = end
    return same


def entry_words(flat: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """(entries,) uint64: the first 8 bytes of each entry ``flat[bounds[k]:bounds[k + 1]]``
    (uint8) as a little-endian number, zero past its end: what ``spelled`` compares an
    entry of up to 8 bytes by."""
    starts, sizes = bounds[:-1], np.diff(bounds)
    words = np.zeros(sizes.size, dtype=np.uint64)
    padded = np.concatenate((flat, np.zeros(8, np.uint8)))
    for byte in range(8):
        value = padded[starts + byte].astype(np.uint64) << np.uint64(8 * byte)
        words |= np.where(sizes > byte, value, np.uint64(0))
    return words


def spelled(
    ids: np.ndarray,
    doc_tokens: np.ndarray,
    flat: np.ndarray,
    bounds: np.ndarray,
    vocab_size: int,
    want: np.ndarray,
    doc_lengths: np.ndarray,
    words: np.ndarray | None = None,
) -> np.ndarray:
    """(docs,) bool: do the tokens of each document write exactly its text?

    Args:
        ids: (tokens,) int64, the documents' tokens one document after another, each
            below ``vocab_size``; doc_tokens: (docs,) int64 tokens of each.
        flat, bounds: what each id writes: entry k is ``flat[bounds[k]:bounds[k + 1]]``,
            entry ``vocab_size + id`` for a document's first token (``compare.roundtrip``);
            flat is uint32 code points or uint8 bytes, as ``want`` is.
        want: the documents' text one after another, ``doc_lengths`` (docs,) int64 each;
            for bytes, at least 8 more bytes after them spare a copy.
        words: for bytes, ``entry_words(flat, bounds)``, made here where None.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"ids must be in [0, {vocab_size})")
    bounds = np.ascontiguousarray(bounds, np.int64)
    if bounds.size != 2 * vocab_size + 1:
        raise ValueError("bounds must hold 2 * vocab_size + 1 offsets")
    if flat.dtype != want.dtype or flat.dtype not in (np.uint32, np.uint8):
        raise ValueError("flat and want must both be uint32 or both uint8")
    doc_tokens = np.ascontiguousarray(doc_tokens, np.int64)
    doc_lengths = np.ascontiguousarray(doc_lengths, np.int64)
    if flat.dtype == np.uint32:
        words = np.zeros(0, np.uint64)  # code points are compared one by one
    else:
        if want.size < int(doc_lengths.sum()) + 8:
            want = np.concatenate((want, np.zeros(8, np.uint8)))
        words = entry_words(flat, bounds) if words is None else words
        if words.dtype != np.uint64 or words.size != bounds.size - 1:
            raise ValueError("words must hold a uint64 for each entry (entry_words)")
    return _run(
        "spelled_u4" if flat.dtype == np.uint32 else "spelled_u1",
        *(ids, doc_tokens, np.ascontiguousarray(flat), bounds, words),
        *(np.int64(vocab_size), np.ascontiguousarray(want), doc_lengths),
    )
