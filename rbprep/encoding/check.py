"""The check: the fast encoder's ids against the reference's, never assumed equal.

``open_encoder`` checks a probe set of hard text when it loads a tokenizer
(``check_texts``, ``check_sample``); during a run, ``check_sample`` compares a
deterministic sample of every partition's units (``sample_units``, ``CHECK_FRACTION`` of
them) with the reference. A difference raises ``EncoderMismatch``, naming the first text
that differs; the run then goes on with the reference (``fallback.Fallback``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rbprep.encoding.policy import REFERENCE_NAME
from rbprep.encoding.units import units_of
from rbprep.errors import RbprepError

if TYPE_CHECKING:  # the encoders are checked here, never made: no import cycle
    from rbprep.encoding.backends import Encoder, EncoderId

# The share of each partition's units that the reference re-encodes during a run, unless
# shard's check_fraction says otherwise.
CHECK_FRACTION = 0.02


class EncoderMismatch(RbprepError):
    """The fast encoder's ids differ from the reference's for ``text``."""

    def __init__(self, message: str, text: str) -> None:
        super().__init__(message)
        self.text = text

    @classmethod
    def on(cls, encoder: EncoderId, text: str, where: str, spelled: int = -1) -> EncoderMismatch:
        """The mismatch on ``text``; ``spelled``: the bytes its ids spell, where those
        are what is wrong."""
        shown = text if len(text) <= 80 else text[:77] + "..."
        what = f"encodes {shown!r} otherwise than {REFERENCE_NAME}"
        if spelled >= 0:
            what = f"gives ids for {shown!r} that spell {spelled} of its {len(text.encode())} bytes"
        return cls(f"{where + ': ' if where else ''}{encoder.name} {encoder.version} {what}", text)

    def at(self, where: str) -> EncoderMismatch:
        """The same mismatch, said to be at ``where`` (a file and partition)."""
        return EncoderMismatch(f"{where}: {self}", self.text)

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process and Dask boundaries
        return (type(self), (str(self), self.text))


def check_texts(fast: Encoder, reference: Encoder, texts: Sequence[str], where: str) -> None:
    """Raise ``EncoderMismatch`` naming the first text the two encode differently."""
    check_encoded(fast.id, reference, texts, *fast.encode_texts(texts), where)


def check_encoded(
    encoder: EncoderId,
    reference: Encoder,
    texts: Sequence[str],
    ids: np.ndarray,
    lengths: np.ndarray,
    where: str,
) -> None:
    """Check ``ids``/``lengths``, what ``encoder`` gave for ``texts`` (``encode_texts``),
    against the reference's; raise ``EncoderMismatch`` naming the first text that differs."""
    reference_ids, reference_lengths = reference.encode_texts(texts)
    check_equal(encoder, texts, ids, lengths, reference_ids, reference_lengths, where)


def check_sample(
    fast: Encoder,
    reference: Encoder,
    lines: Sequence[str],
    starts: np.ndarray | Sequence[bool],
    ids: np.ndarray | None = None,
    lengths: np.ndarray | None = None,
    chosen: Sequence[bool] | np.ndarray | None = None,
    where: str = "",
) -> None:
    """Check that ``ids``/``lengths`` (``fast.encode_lines(lines, starts)``, computed
    here when None) hold the reference's ids for the units ``chosen`` marks (bool per
    line; all when None), each unit encoded alone by the reference; raise
    ``EncoderMismatch`` naming a unit that differs."""
    starts = np.asarray(starts, dtype=np.bool_)
    if ids is None or lengths is None:
        ids, lengths = fast.encode_lines(lines, starts)
    in_sample = (
        np.ones(len(lines), dtype=np.bool_) if chosen is None else np.asarray(chosen, np.bool_)
    )
    picked = np.flatnonzero(in_sample)
    if not picked.size:
        return
    units = units_of([lines[i] for i in picked.tolist()], starts[picked])
    reference_ids, reference_lengths = reference.encode_texts(units)
    check_equal(
        fast.id,
        units,
        ids[np.repeat(in_sample, lengths)],
        lengths[picked],
        reference_ids,
        reference_lengths,
        where,
    )


def sample_units(
    key: int, count: int, fraction: float = CHECK_FRACTION, first: bool = True
) -> np.ndarray:
    """(count,) bool: the units that ``check_sample`` checks, the same on every run: the
    first (unless ``first`` is False), and each other one where a hash of (``key``, its
    index) lands under ``fraction``: the finaliser of ``kernels.splitmix64``, vectorised
    in NumPy here so that it costs no Python work per unit and does not wait for numba
    to load. A ``fraction`` of 1 chooses every unit."""
    if fraction >= 1:
        return np.ones(count, dtype=np.bool_)
    with np.errstate(over="ignore"):
        z = np.arange(count, dtype=np.uint64) + np.uint64((key * 0x9E3779B97F4A7C15) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    chosen = z < np.uint64(int(fraction * 2**64))
    chosen[:1] |= first
    return chosen


def check_equal(
    encoder: EncoderId,
    texts: Sequence[str],
    fast_ids: np.ndarray,
    fast_lengths: np.ndarray,
    ids: np.ndarray,
    lengths: np.ndarray,
    where: str,
) -> None:
    """Raise ``EncoderMismatch`` naming the first of ``texts`` whose ids by ``encoder``
    (``fast_ids``, ``fast_lengths``) differ from the reference's (``ids``, ``lengths``)."""
    if np.array_equal(fast_lengths, lengths) and np.array_equal(fast_ids, ids):
        return
    fast_ends, ends = np.cumsum(fast_lengths), np.cumsum(lengths)
    for index, text in enumerate(texts):
        a = fast_ids[fast_ends[index] - fast_lengths[index] : fast_ends[index]]
        b = ids[ends[index] - lengths[index] : ends[index]]
        if not np.array_equal(a, b):
            raise EncoderMismatch.on(encoder, text, where)
    raise EncoderMismatch.on(encoder, "".join(texts), where)  # lengths differ, ids agree
