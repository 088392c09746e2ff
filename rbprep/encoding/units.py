"""The unit rules: the texts a document's lines are encoded as, and how they are joined.

A document is read as sentence units (lines). ``document_units`` (``units_of`` for many
documents) gives the texts that are encoded: a document's later units carry a leading
space, so they read as they would in running text ("Ġword"), at no token's cost. Where
the tokenizer allows it (``line_break_id``), a document's units are encoded joined by
line breaks (``join_lines``), and the ids cut apart at the breaks
(``backends.Encoder.cut_joined``): the same ids, fewer inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from rbprep.corpus.formats import TextLines

# Characters per text when a document's lines are encoded joined (see line_break_id):
# long enough to spare the tokenizer's cost per input, short enough to spread over threads.
JOIN_CHARS = 4_096


def document_units(lines: Sequence[str]) -> list[str]:
    """The texts encoded for a document of these lines: the first as it is, each later
    one with a leading space (it continues the running text)."""
    if not lines:
        return []
    return [lines[0], *(" " + line for line in lines[1:])]


def units_of(lines: Sequence[str], starts: np.ndarray) -> list[str]:
    """``document_units`` of many documents' lines at once: ``starts`` (lines,) bool marks
    the first line of each (a line it does not mark continues the one before)."""
    return [
        line if start else " " + line for line, start in zip(lines, starts.tolist(), strict=True)
    ]


def document_starts(sizes: Sequence[int], later: Sequence[bool] = ()) -> np.ndarray:
    """(lines,) bool: where each of the documents of ``sizes`` lines, laid one after
    another, starts; ``later`` (documents,) marks those that continue the one before
    (a later part of a long document), whose first line starts nothing."""
    sizes = np.asarray(sizes, dtype=np.int64)
    starts = np.zeros(int(sizes.sum()), dtype=np.bool_)
    opens = sizes > 0
    if len(later):
        opens &= ~np.asarray(later, dtype=np.bool_)
    starts[(np.cumsum(sizes) - sizes)[opens]] = True
    return starts


def line_break_id(tokenizer: Tokenizer, config: dict[str, Any]) -> int | None:
    r"""The id of a lone ``"\n"`` if lines joined by ``"\n"`` encode to each line's own
    tokens with that id between them, else None.

    Lines here are stripped (no whitespace at either end, no line break inside) and each
    after the first starts with one space, as ``document_units`` gives them. Then it
    holds for a byte-level BPE with no normaliser and no ordinary added tokens: each
    alternative of its pre-tokenizer's regex matches letters, digits, other non-space
    characters or whitespace, so no piece spans a line's last character and the break;
    at the break, ``\s+(?!\S)`` takes the ``"\n"`` alone (one byte, one token) and
    leaves the space to the next line, as if it started the text. Encoding whole
    documents this way saves the tokenizer's cost per input, a quarter of its time on
    short lines. ``kernels.cut_at_breaks`` still checks the count of breaks per text.
    """
    pre_tokenizer = config.get("pre_tokenizer") or {}
    if (
        config.get("normalizer") is not None
        or config["model"]["type"] != "BPE"
        or pre_tokenizer.get("type") != "ByteLevel"
        or not pre_tokenizer.get("use_regex", True)
        or not all(token.special for token in tokenizer.get_added_tokens_decoder().values())
    ):
        return None
    ids = tokenizer.encode("\n", add_special_tokens=False).ids
    return ids[0] if len(ids) == 1 else None


def join_lines(lines: Sequence[str], starts: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Runs of one document's units (``units_of(lines, starts)``) joined by ``"\\n"``,
    about ``JOIN_CHARS`` each, and the number of units in each.

    A run is one call to ``str.join`` over its lines with ``"\\n "`` (a later unit's
    leading space comes with the break before it); where runs start is found for all
    lines at once, so no Python step is taken per line. Lines a reader kept in one
    buffer (``TextLines``) are gathered by a kernel instead, and decoded once a run.
    """
    if not len(lines):
        return [], np.zeros(0, dtype=np.int64)
    if isinstance(lines, TextLines):  # a reader's buffer: a kernel gathers the runs
        return lines.joined(starts, JOIN_CHARS)
    sizes = np.fromiter(map(len, lines), np.int64, len(lines)) + 2  # a line, " " and "\n"
    begins = np.cumsum(sizes) - sizes  # (lines,) characters before each line
    first = starts.copy()
    first[0] = True  # the first line starts a run, whether or not it starts a document
    document_begin = begins[np.flatnonzero(first)][np.cumsum(first) - 1]
    run = (begins - document_begin) // JOIN_CHARS  # (lines,) run within its document
    first[1:] |= run[1:] != run[:-1]
    bounds = [*np.flatnonzero(first).tolist(), len(lines)]
    texts = [
        "\n ".join(lines[a:b]) if start else " " + "\n ".join(lines[a:b])
        for a, b, start in zip(bounds[:-1], bounds[1:], starts[bounds[:-1]].tolist(), strict=True)
    ]
    return texts, np.diff(bounds)
