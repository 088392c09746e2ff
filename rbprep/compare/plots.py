"""PNG plots of a comparison, drawn with matplotlib (the ``plots`` extra).

matplotlib is imported here only, when plots are asked for, and through its
object-oriented API (``Figure``), so no global pyplot state or GUI backend is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rbprep.compare.report import file_labels
from rbprep.errors import RbprepError

PLOTS = ("tokens_per_word.png", "fertility_by_file.png", "unk_by_file.png", "token_bytes.png")


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise RbprepError(
            "--plots needs matplotlib: pip install 'rbprep[plots]' (or pip install matplotlib)"
        ) from exc
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _grouped_bars(ax: Any, labels: list[str], series: dict[str, list[float]]) -> None:
    """Horizontal bars, one group per label, one bar per tokenizer."""
    n = len(series)
    height = 0.8 / max(n, 1)
    y = np.arange(len(labels))
    for k, (name, values) in enumerate(series.items()):
        ax.barh(y + (k - (n - 1) / 2) * height, values, height, label=name)
    # Shares and rates are never negative: start at 0, also when every value is 0
    # (matplotlib would centre an all-zero axis on 0).
    largest = max((max(values, default=0) for values in series.values()), default=0)
    ax.set_xlim(0, largest * 1.05 or 1)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.legend(fontsize="small")
    ax.grid(axis="x", alpha=0.3)


def write_plots(data: dict[str, Any], directory: Path) -> list[Path]:
    """Write the comparison's plots (``PLOTS``) into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizers = data["tokenizers"]
    files = data["corpus"]["files"]
    labels = list(file_labels(files).values())
    written = []

    # Tokens per word: the share of words split into k tokens.
    figure = _figure(8, 4.5)
    ax = figure.add_subplot()
    keys = list(tokenizers[0]["tokens_per_word"])
    x = np.arange(len(keys))
    width = 0.8 / len(tokenizers)
    for k, tokenizer in enumerate(tokenizers):
        counts = np.array([tokenizer["tokens_per_word"][key] for key in keys], dtype=float)
        shares = counts / counts.sum() if counts.sum() else counts
        ax.bar(x + (k - (len(tokenizers) - 1) / 2) * width, shares, width, label=tokenizer["name"])
    ax.set_xticks(x, keys)
    ax.set_xlabel("tokens per whitespace word")
    ax.set_ylabel("share of words")
    ax.set_title("How words are split")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    written.append(_save(figure, directory / PLOTS[0]))

    # Per-file fertility and [UNK] words.
    height = 1.2 + 0.3 * len(files) * max(1, len(tokenizers) / 2)
    for name, key, title, scale in (
        (PLOTS[1], "fertility", "Fertility (tokens per word) by file", 1.0),
        (PLOTS[2], "unk_word_rate", "Words with an [UNK] token by file (%)", 100.0),
    ):
        figure = _figure(8, height)
        ax = figure.add_subplot()
        series = {t["name"]: [t["per_file"][f][key] * scale for f in files] for t in tokenizers}
        _grouped_bars(ax, labels, series)
        ax.set_title(title)
        written.append(_save(figure, directory / name))

    # Token lengths: over the text (occurrences) and over the vocabulary.
    figure = _figure(10, 4.5)
    for column, (key, title) in enumerate(
        (
            ("occurrences", "Token length in the text"),
            ("vocabulary", "Token length in the vocabulary"),
        )
    ):
        ax = figure.add_subplot(1, 2, column + 1)
        for tokenizer in tokenizers:
            histogram = tokenizer["token_bytes"][key]
            counts = np.array(list(histogram.values()), dtype=float)
            shares = counts / counts.sum() if counts.sum() else counts
            ax.plot(range(1, len(counts) + 1), shares, marker="o", ms=3, label=tokenizer["name"])
        ax.set_xticks(range(1, len(histogram) + 1, 2), list(histogram)[::2], fontsize="small")
        ax.set_xlabel("bytes (without Ġ / ▁ / ##)")
        ax.set_ylabel("share")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    written.append(_save(figure, directory / PLOTS[3]))
    return written


def _save(figure: Any, path: Path) -> Path:
    figure.savefig(path, format="png")
    return path
