"""The comparison as text: side-by-side tables for the terminal, and Markdown.

Both are written from the JSON dictionary alone (``Comparison.as_dict()``), so what a
person reads and what a script reads cannot disagree.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from rbprep.compare.pieces import display_width
from rbprep.corpus.formats import ReadStats
from rbprep.sizes import counted, format_size


def _count(value: Any) -> str:
    return f"{value:,}"


def _pct(value: Any) -> str:
    return f"{value:.2%}"


def _num(digits: int) -> Callable[[Any], str]:
    return lambda value: f"{value:.{digits}f}"


def _ratio(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


# (key, label, format) of each row of the overall table, in the order shown.
ROWS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("vocab_size", "vocabulary", _count),
    ("vocab_used", "  used on this text", _pct),
    ("tokens", "tokens", _count),
    ("bytes_per_token", "bytes per token", _num(2)),
    ("chars_per_token", "characters per token", _num(2)),
    ("fertility", "fertility (tokens per word)", _num(3)),
    ("continued_words", "words split in 2+ tokens", _pct),
    ("unk_rate", "[UNK] tokens", _pct),
    ("unk_word_rate", "words with an [UNK]", _pct),
    ("roundtrip_exact", "round trip exact", _pct),
    ("roundtrip_normalized", "round trip normalised", _pct),
    ("rows", "rows of SEQ_LEN", _count),
    ("padding", "  padding", _pct),
    ("encode_mb_s", "encode MB/s", _num(2)),
    ("renyi_efficiency", "Rényi efficiency (α=ALPHA)", _num(3)),
]

# Per-file groups, by priority; the terminal shows those that fit its width.
FILE_GROUPS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("fertility", "fertility", _num(2)),
    ("unk_word_rate", "words with [UNK]", _pct),
    ("rows", "rows", _count),
    ("bytes_per_token", "bytes per token", _num(2)),
    ("roundtrip_exact", "round trip exact", _pct),
]

# The Markdown shows these too.
MORE_FILE_GROUPS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("tokens", "tokens", _count),
    ("unk_rate", "[UNK] tokens", _pct),
    ("continued_words", "words split in 2+ tokens", _pct),
    ("roundtrip_normalized", "round trip normalised", _pct),
    ("vocab_used", "vocabulary used", _pct),
    ("renyi_efficiency", "Rényi efficiency", _num(3)),
]

RATIOS: list[tuple[str, str]] = [
    ("tokens", "tokens a/b"),
    ("rows", "rows a/b"),
    ("fertility", "fertility a/b"),
    ("vocab_size", "vocab a/b"),
]


def _label(label: str, data: dict[str, Any]) -> str:
    parameters = data["parameters"]
    return label.replace("SEQ_LEN", str(parameters["seq_len"])).replace(
        "ALPHA", f"{parameters['renyi_alpha']:g}"
    )


def file_labels(files: Sequence[str]) -> dict[str, str]:
    """Short names for the corpus files: their paths below the directory they share."""
    if not files:
        return {}
    if len(files) == 1:
        return {files[0]: os.path.basename(files[0])}
    common = os.path.commonpath([os.path.dirname(f) for f in files])
    return {f: os.path.relpath(f, common) for f in files}


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * max(width - display_width(text), 0)
    return gap + text if right else text + gap


def _table(header: list[list[str]], rows: list[list[str]], gap: int = 2) -> list[str]:
    """Aligned text columns: the first left-aligned, the others right-aligned."""
    everything = [*header, *rows]
    widths = [max(display_width(row[i]) for row in everything) for i in range(len(everything[0]))]
    lines = []
    for row in everything:
        cells = [_pad(cell, widths[i], right=i > 0) for i, cell in enumerate(row)]
        lines.append((" " * gap).join(cells).rstrip())
    return lines


def _summary_line(data: dict[str, Any]) -> str:
    corpus = data["corpus"]
    names = [t["name"] for t in data["tokenizers"]]
    words = data["tokenizers"][0]["overall"]["words"]
    files = len(corpus["files"])
    return (
        f"Compared {len(names)} tokenizer{'s' if len(names) != 1 else ''} on "
        f"{format_size(corpus['text_bytes'])} of text in lines"
        + (f", of {format_size(corpus['read']['text_bytes'])} read" if "read" in corpus else "")
        + (
            f" (sampled, --sample-bytes {format_size(data['parameters']['sample_bytes'])})"
            if corpus["sampled"]
            else ""
        )
        + f": {counted(corpus['documents'], 'document')}, {counted(corpus['units'], 'line')}, "
        f"{counted(words, 'word')}, {counted(files, 'file')}."
        + (f"\n{problems}" if (problems := _input_problems(data)) else "")
    )


def _input_problems(data: dict[str, Any]) -> str | None:
    """The summaries' one ``Input problems`` line, from what reading counted."""
    read = data["corpus"].get("read")
    return ReadStats.from_dict(read).problems() if read else None


def _overall_rows(data: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    tokenizers = data["tokenizers"]
    header = [
        ["", *(t["name"] for t in tokenizers)],
        ["model", *(t["model"] for t in tokenizers)],
    ]
    rows = [
        [_label(label, data), *(fmt(t["overall"][key]) for t in tokenizers)]
        for key, label, fmt in ROWS
    ]
    return header, rows


def _file_rows(
    data: dict[str, Any], groups: list[tuple[str, str, Callable[[Any], str]]]
) -> tuple[list[list[str]], list[list[str]]]:
    tokenizers = data["tokenizers"]
    names = [t["name"] for t in tokenizers]
    labels = file_labels(data["corpus"]["files"])
    top = ["file"]
    second = [""]
    for _key, label, _fmt in groups:
        top.extend([label, *[""] * (len(names) - 1)])
        second.extend(names)
    rows = []
    for file, label in labels.items():
        row = [label]
        for key, _, fmt in groups:
            row.extend(fmt(t["per_file"][file][key]) for t in tokenizers)
        rows.append(row)
    return [top, second], rows


def _pair_rows(data: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    header = [
        ["a vs b", "shared pieces", "of a", "of b", "Jaccard", *(label for _, label in RATIOS)]
    ]
    rows = []
    for pair in data["pairs"]:
        overlap = pair["vocab_overlap"]
        rows.append(
            [
                f"{pair['a']} vs {pair['b']}",
                f"{overlap['shared']:,}",
                _pct(overlap["share_of_a"]),
                _pct(overlap["share_of_b"]),
                f"{overlap['jaccard']:.3f}",
                *(_ratio(pair["ratios"][key]) for key, _ in RATIOS),
            ]
        )
    return header, rows


def _aligned_sample(sample: dict[str, Any], width: int) -> list[str]:
    """A sentence and each tokenizer's pieces, word under word, wrapped at ``width``."""
    names = list(sample["tokens"])
    label_width = max(display_width(n) for n in ["text", *names]) + 4  # "  name  "
    columns = []
    for index, word in enumerate(sample["words"]):
        cells = [word] + [
            "|".join(sample["tokens"][name][index]) or "-"
            if index < len(sample["tokens"][name])
            else "-"
            for name in names
        ]
        columns.append((cells, max(display_width(c) for c in cells)))
    lines: list[str] = []
    chunk: list[tuple[list[str], int]] = []
    used = label_width
    for column in [*columns, None]:
        if column is None or (chunk and used + column[1] + 2 > width):
            for row, name in enumerate(["text", *names]):
                cells = [_pad(cells[row], w, right=False) for cells, w in chunk]
                lines.append(
                    ("  " + _pad(name, label_width - 2, False) + "  ".join(cells)).rstrip()
                )
            if column is not None:
                lines.append("")
            chunk, used = [], label_width
        if column is not None:
            chunk.append(column)
            used += column[1] + 2
    return lines


def _token_lists(
    data: dict[str, Any], key: str, fmt: Callable[[dict[str, Any]], str], width: int
) -> list[str]:
    names = [t["name"] for t in data["tokenizers"]]
    label_width = max(display_width(n) for n in names) + 4
    lines = []
    for tokenizer in data["tokenizers"]:
        line = "  " + _pad(tokenizer["name"], label_width - 2, False)
        items = [fmt(item) for item in tokenizer[key]]
        shown = []
        for item in items:
            if display_width(line + "  ".join([*shown, item])) > width:
                break
            shown.append(item)
        lines.append(line + "  ".join(shown))
    return lines


def text_report(data: dict[str, Any], width: int = 100) -> str:
    """The terminal report: overall table, per-file table, pairs, samples, top tokens."""
    lines = [_summary_line(data), ""]
    lines.extend(_table(*_overall_rows(data)))
    lines.append(_encoders_line(data))
    groups: list[tuple[str, str, Callable[[Any], str]]] = []
    for group in FILE_GROUPS:
        header, rows = _file_rows(data, [*groups, group])
        if groups and max(display_width(line) for line in _table(header, rows)) > width:
            break
        groups.append(group)
    files = data["corpus"]["files"]
    if len(files) > 1:
        header, rows = _file_rows(data, groups)
        lines += ["", "Per file:"]
        lines.extend(_table(header, rows[:40]))
        if len(rows) > 40:
            lines.append(f"  ... {len(rows) - 40} more files in --json / --markdown")
    if data["pairs"]:
        lines += [
            "",
            "Pairs: vocabulary overlap (pieces without Ġ/▁/##, specials left out) and ratios:",
        ]
        lines.extend(_table(*_pair_rows(data)))
    if data["samples"]:
        lines += ["", "Samples, each word's pieces split by |:"]
        labels = file_labels(files)
        for sample in data["samples"]:
            lines.append(f"{labels.get(sample['file'], sample['file'])}:")
            lines.extend(_aligned_sample(sample, width))
    lines += ["", "Most frequent tokens (share of tokens):"]
    lines.extend(
        _token_lists(data, "top_tokens", lambda t: f"{t['token']} {t['share']:.1%}", width)
    )
    lines += ["Longest tokens used (bytes):"]
    lines.extend(
        _token_lists(data, "longest_tokens", lambda t: f"{t['token']} ({t['bytes']})", width)
    )
    return "\n".join(lines)


def _encoder_label(tokenizer: dict[str, Any]) -> str:
    encoder = tokenizer.get("encoder")  # absent from reports written before --encoder
    return f"{encoder['name']} {encoder['version']}" if encoder else "tokenizers"


def _encoders_line(data: dict[str, Any]) -> str:
    """Which library encoded each tokenizer's ids (the ids are the same either way)."""
    by_encoder: dict[str, list[str]] = {}
    for t in data["tokenizers"]:
        by_encoder.setdefault(_encoder_label(t), []).append(t["name"])
    line = "Encoded by " + "; ".join(
        f"{label}: {', '.join(names)}" for label, names in by_encoder.items()
    )
    if any(t.get("encoder_note") for t in data["tokenizers"]):
        line += " (--json: encoder_note says why a tokenizer is not on the fast encoder)"
    return line + "."


# --- Markdown ------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")


def _md_code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text.replace('|', '&#124;')}{pad}{fence}"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", *["---:"] * (len(header) - 1)]) + "|",
    ]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def markdown_report(data: dict[str, Any], plots: Sequence[str] = ()) -> str:
    """The whole report as Markdown (GitHub tables); ``plots`` are image paths to embed."""
    tokenizers = data["tokenizers"]
    names = [t["name"] for t in tokenizers]
    lines = ["# Tokenizer comparison", "", _summary_line(data), ""]
    lines += ["| tokenizer | model | path | shardable | encoded by |", "|---|---|---|---|---|"]
    for t in tokenizers:
        lines.append(
            f"| {_md_escape(t['name'])} | {t['model']} | {_md_code(t['path'])} | "
            f"{'yes' if t['shardable'] else 'no'} | {_md_escape(_encoder_label(t))} |"
        )
    lines += ["", "## Overall", ""]
    header, rows = _overall_rows(data)
    lines += _md_table(
        ["metric", *map(_md_escape, names)], [[label.strip(), *cells] for label, *cells in rows]
    )
    lines += [
        "",
        "Definitions and formulas: rbprep's docs/compare.md. Rates are shares of tokens, "
        "words or documents; rows and padding are what `rbprep shard` would produce "
        "(FULL-SENTENCES packing).",
    ]
    if data["pairs"]:
        lines += ["", "## Pairs", ""]
        header, rows = _pair_rows(data)
        lines += _md_table(header[0], rows)
    files = data["corpus"]["files"]
    labels = file_labels(files)
    lines += ["", "## Per file", ""]
    for key, label, fmt in [*FILE_GROUPS, *MORE_FILE_GROUPS]:
        lines += [f"### {label}", ""]
        lines += _md_table(
            ["file", *map(_md_escape, names)],
            [
                [_md_escape(labels[f]), *(fmt(t["per_file"][f][key]) for t in tokenizers)]
                for f in files
            ],
        )
        lines.append("")
    if data["samples"]:
        lines += ["## Samples", "", "Each word's pieces, split by `|`, word under word:", ""]
        for sample in data["samples"]:
            lines += [f"{_md_escape(labels.get(sample['file'], sample['file']))}:", "", "```text"]
            lines += _aligned_sample(sample, 100)
            lines += ["```", ""]
    lines += ["## Tokens per word", ""]
    caps = list(tokenizers[0]["tokens_per_word"])
    lines += _md_table(
        ["tokens", *map(_md_escape, names)],
        [[cap, *(_share_of(t["tokens_per_word"], cap) for t in tokenizers)] for cap in caps],
    )
    lines += ["", "## Most frequent tokens", ""]
    depth = max((len(t["top_tokens"]) for t in tokenizers), default=0)
    lines += _md_table(
        ["#", *map(_md_escape, names)],
        [
            [
                str(i + 1),
                *(
                    f"{_md_code(t['top_tokens'][i]['token'])} {t['top_tokens'][i]['share']:.2%}"
                    if i < len(t["top_tokens"])
                    else ""
                    for t in tokenizers
                ),
            ]
            for i in range(depth)
        ],
    )
    lines += ["", "## Longest tokens used", ""]
    depth = max((len(t["longest_tokens"]) for t in tokenizers), default=0)
    lines += _md_table(
        ["#", *map(_md_escape, names)],
        [
            [str(i + 1), *(_md_longest(t["longest_tokens"], i) for t in tokenizers)]
            for i in range(depth)
        ],
    )
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{os.path.basename(p)}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _md_longest(items: list[dict[str, Any]], i: int) -> str:
    if i >= len(items):
        return ""
    item = items[i]
    return f"{_md_code(item['token'])} ({item['bytes']} B, {item['count']:,}x)"


def _share_of(histogram: dict[str, int], key: str) -> str:
    total = sum(histogram.values())
    return _pct(histogram[key] / total) if total else "-"
