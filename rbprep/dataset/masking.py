"""The masks of a partition's rows, computed in one place: ``shard`` stores them,
``verify`` recomputes them, and the reader can compute any copy when a batch is made.

A copy's masks are a function of (seed, split, partition, row within the partition,
copy) and the mask parameters (``rbprep.kernels`` has the scheme), so copy ``k`` is the
same whether it is computed with copies ``0..N-1`` or alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

STREAMS = {"train": 0, "valid": 1}  # separates the splits' mask streams


@dataclass(frozen=True)
class MaskParameters:
    """What decides the masks besides the rows (``ShardParameters.masks``)."""

    seed: int
    mask_prob: float
    random_prob: float
    keep_prob: float
    max_predictions: int
    whole_word: bool


@dataclass(frozen=True)
class MaskTables:
    """A tokenizer's tables for masking, by token id."""

    special: np.ndarray  # (vocab,) bool: never masked
    replacements: np.ndarray  # (non-special,) uint32, sorted: random replacements
    word_starts: np.ndarray  # (vocab,) bool: pieces that start a word (whole-word masking)

    @classmethod
    def of(cls, vocab: Mapping[str, int], roles: Any) -> MaskTables:
        """The tables of the tokenizer whose ``vocab`` (with added tokens) this is;
        ``roles`` (a ``TokenizerInfo`` or a manifest's ``TokenizerRecord``) gives its
        ``vocab_size``, ``special_ids``, ``word_prefix`` and ``continuation_prefix``."""
        from rbprep.tokenizer_info import replacement_ids, word_start_table

        special = np.zeros(roles.vocab_size, dtype=np.bool_)  # (vocab,) bool
        special[list(roles.special_ids)] = True
        return cls(
            special=special,
            replacements=replacement_ids(vocab, roles.vocab_size, roles.special_ids),
            word_starts=word_start_table(
                vocab, roles.vocab_size, roles.word_prefix, roles.continuation_prefix
            ),
        )


class Masks(NamedTuple):
    """The masks of rows, as ``kernels.mask_rows`` returns them (its docstring)."""

    positions: np.ndarray  # (total,) uint16
    groups: np.ndarray  # (rows, copies, 3) uint16: masked, random, kept
    random_tokens: np.ndarray  # (random positions,) uint32
    position_offsets: np.ndarray  # (rows + 1,) int64
    random_offsets: np.ndarray  # (rows + 1,) int64


def mask_partition_rows(
    row_offsets: np.ndarray,
    row_tokens: np.ndarray,
    tables: MaskTables,
    parameters: MaskParameters,
    split: str,
    partition: int | np.ndarray,
    copies: range,
    rows: int | np.ndarray = 0,
) -> Masks:
    """The masks of copies ``copies`` (consecutive) of rows ``row_offsets`` (rows + 1,)
    int64 and ``row_tokens`` (total,) uint32: a partition's rows from its row ``rows``
    on, or (with ``partition`` and ``rows`` as (n,) arrays) rows from anywhere, each
    with its partition and its index within it (a batch)."""
    from rbprep import kernels

    if copies.step != 1 or len(copies) == 0:
        raise ValueError(f"copies must be a non-empty range of step 1, got {copies}")
    return Masks(
        *kernels.mask_rows(
            row_offsets,
            row_tokens,
            tables.special,
            tables.replacements,
            tables.word_starts,
            parameters.seed,
            STREAMS[split],
            partition,
            rows,
            len(copies),
            parameters.mask_prob,
            parameters.random_prob,
            parameters.keep_prob,
            parameters.max_predictions,
            parameters.whole_word,
            copies.start,
        )
    )
