"""``inspect``: a dataset's numbers, and sample rows decoded as the model will see them."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rbprep.corpus import ReadStats
from rbprep.dataset.format import SPLITS, as_location
from rbprep.dataset.manifest import Manifest
from rbprep.dataset.reader import (
    IGNORE_INDEX,
    MASKED,
    OTHER_READERS,
    RANDOM,
    open_dataset,
    read_manifest,
)
from rbprep.errors import RbprepError
from rbprep.sizes import counted, format_size
from rbprep.storage import Location

LEGEND = "[<mask>|word]: masked word   [~new|word]: random replacement   [=word]: kept"


@dataclass
class Inspection:
    """The manifest's summary and ``rows`` decoded with copy ``copy``'s masks marked."""

    root: str
    split: str
    copy: int
    summary: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def report(self) -> str:
        s = self.summary
        lines = [
            f"{self.root}: rbprep {s['rbprep_version']}, "
            + (
                f"format {s['format_version']}"
                if s["format"] == "arrow"
                else f"--format {s['format']} ({OTHER_READERS[s['format']].split(': ', 1)[1]})"
            ),
            f"  parameters: {s['parameters_line']}",
            f"  tokenizer:  vocabulary {s['vocab_size']:,}, sha256 {s['tokenizer_sha256'][:12]}",
            f"  encoder:    {s['encoder_line']}",
            f"  corpus:     {s['documents']:,} documents, {s['units']:,} lines, "
            f"{format_size(s['text_bytes'])} read, {counted(s['partitions'], 'partition')}",
        ]
        for split in SPLITS:
            info = s["splits"][split]
            lines.append(
                f"  {split:<6}      {info['rows']:,} rows, {info['tokens']:,} tokens, "
                f"{counted(info['shards'], 'shard')}, {format_size(info['bytes'])}"
            )
        lines.append(
            f"  padding:    {s['padding_share']:.1%}; on disk {s['bytes_per_token']:.2f} B/token"
        )
        problems = (s["input_problems"] or "none").removeprefix("Input problems ")
        lines.append(f"  input:      problems {problems}")
        lines.append("  row lengths (train):")
        peak = max(s["length_histogram"].values(), default=0) or 1
        for bucket, count in s["length_histogram"].items():
            lines.append(f"    {bucket:>9} {count:>9,} {'#' * round(40 * count / peak)}")
        if self.samples and s["format"] != "arrow":
            kind = "sequences" if s["format"] == "megatron" else "rows"
            lines.append(f"\nSample {kind} of {self.split}, as stored (no masks):")
        elif self.samples:
            lines.append(f"\nSample rows of {self.split}, copy {self.copy} ({LEGEND}):")
        for sample in self.samples:
            masked = f", {sample['masked']} chosen for prediction" if s["format"] == "arrow" else ""
            lines.append(f"\n-- row {sample['row']}: {sample['length']} tokens{masked}")
            lines.append(sample["text"])
        return "\n".join(lines)


def inspect(
    root: str | os.PathLike,
    *,
    split: str = "train",
    rows: int = 2,
    copy: int = 0,
    checksums: bool = True,
) -> Inspection:
    """Summarise the dataset at ``root`` and decode ``rows`` evenly spaced sample rows.

    The split's shards are checked as ``open_dataset`` checks them (``checksums``)."""
    root = as_location(root)
    manifest = read_manifest(root)
    totals = manifest.totals
    parameters = asdict(manifest.parameters)
    summary = {
        "format": manifest.output,
        "format_version": manifest.format_version,
        "rbprep_version": manifest.rbprep_version,
        "parameters": parameters,
        "parameters_line": ", ".join(
            f"{key}={parameters[key]}"
            for key in ("seq_len", "dup", "mode", "mask_prob", "whole_word", "seed")
            if parameters[key] is not None
        )
        + (", masking=dynamic" if manifest.masking == "dynamic" else ""),
        "vocab_size": manifest.tokenizer.vocab_size,
        "tokenizer_sha256": manifest.tokenizer.sha256,
        "encoder": None if manifest.encoder is None else asdict(manifest.encoder),
        "encoder_line": "not recorded (written before rbprep recorded it)"
        if manifest.encoder is None
        else manifest.encoder.describe(),
        "documents": totals.documents,
        "units": totals.units,
        "text_bytes": totals.read["text_bytes"],
        "partitions": manifest.corpus.partitions,
        "padding_share": totals.padding_share,
        "bytes_per_token": totals.bytes_per_token,
        "input_problems": ReadStats.from_dict(totals.read).problems(),
        "length_histogram": manifest.splits["train"].length_histogram,
        "splits": {
            split_name: {
                "rows": info.rows,
                "tokens": info.tokens,
                "shards": len(info.shards),
                "bytes": info.bytes,
            }
            for split_name, info in manifest.splits.items()
        },
    }
    result = Inspection(str(root), split, copy, summary)
    if manifest.output != "arrow":  # no masks: the rows (or sequences) decoded as stored
        result.samples = _other_samples(root, manifest, split, rows)
        return result
    dataset = open_dataset(root, split, checksums=checksums)
    if not len(dataset) or rows <= 0:
        return result
    if dataset.dup is not None and not 0 <= copy < dataset.dup:
        raise RbprepError(f"--copy must be in 0..{dataset.dup - 1}")
    if copy < 0:
        raise RbprepError(f"--copy must be at least 0, got {copy}")
    indices = np.unique(np.linspace(0, len(dataset) - 1, min(rows, len(dataset))).astype(int))
    original = dataset.batch(indices, copy=None)
    masked = dataset.batch(indices, copy=copy, groups=True)
    for n, index in enumerate(indices):
        length = int(original["attention_mask"][n].sum())
        result.samples.append(
            {
                "row": int(index),
                "length": length,
                "masked": int((masked["labels"][n] != IGNORE_INDEX).sum()),
                "text": _marked_text(
                    dataset.tokenizer,
                    original["input_ids"][n, :length],
                    masked["input_ids"][n, :length],
                    masked["mask_groups"][n, :length],
                ),
            }
        )
    return result


def _other_samples(root: Location, manifest: Manifest, split: str, rows: int) -> list[dict]:
    """``rows`` evenly spaced rows of an MDS split, or sequences of a Megatron one,
    decoded (their files read with rbprep's own readers of those layouts)."""
    from tokenizers import Tokenizer

    from rbprep.dataset import mds, megatron
    from rbprep.dataset.format import id_dtype

    record = manifest.splits[split]
    if rows <= 0 or not record.rows:
        return []
    indices = np.unique(np.linspace(0, record.rows - 1, min(rows, record.rows)).astype(int))
    found: list[tuple[int, np.ndarray]] = []
    if manifest.output == "mds":
        firsts = np.cumsum([0] + [shard.rows for shard in record.shards])
        for shard_index in np.unique(np.searchsorted(firsts, indices, side="right") - 1):
            shard = record.shards[shard_index]
            data = root.child(shard.file).read_bytes()
            offsets, tokens = mds.read_shard(data, id_dtype(manifest.tokenizer.vocab_size))
            first, end = firsts[shard_index], firsts[shard_index + 1]
            for index in indices[(indices >= first) & (indices < end)]:
                row = index - first
                found.append((int(index), tokens[offsets[row] : offsets[row + 1]]))
    else:
        dtype, lengths, _ = megatron.read_index(root.child(f"{split}.idx").read_bytes())
        pointers = megatron.sequence_pointers(dtype, lengths)
        with root.child(f"{split}.bin").open() as data:
            for index in indices:
                data.seek(int(pointers[index]))
                raw = data.read(int(lengths[index]) * dtype.itemsize)
                found.append((int(index), np.frombuffer(raw, dtype)))
    tokenizer = Tokenizer.from_str(root.child(manifest.tokenizer.file).read_bytes().decode())
    return [
        {
            "row": index,
            "length": len(ids),
            "masked": 0,
            "text": tokenizer.decode(ids.tolist(), skip_special_tokens=False),
        }
        for index, ids in found
    ]


def _marked_text(
    tokenizer: Any, original: np.ndarray, masked: np.ndarray, groups: np.ndarray
) -> str:
    """Decode a row; positions chosen for prediction are shown in brackets, with the
    spacing the decoder gives them in the row (so "[<mask>|of]" stands between words as
    "of" would, and a masked piece inside a word stays attached to it)."""

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=False)

    def space_between(before: int | None, token: int) -> str:
        # A space the decoder writes between two tokens but with neither alone
        # (WordPiece, Metaspace); a byte-level token carries its own ("Ġword").
        if before is None:
            return ""
        return " " if decode([before, token]) == f"{decode([before])} {decode([token])}" else ""

    pieces: list[str] = []
    run: list[int] = []
    before: int | None = None  # the token before the current one
    for position, token in enumerate(original.tolist()):
        if not groups[position]:
            if not run:
                pieces.append(space_between(before, token))
            run.append(token)
            before = token
            continue
        if run:
            pieces.append(decode(run))
            run = []
        decoded = decode([token])
        # A piece that starts a word decodes with its space ("Ġword"); keep it outside the
        # brackets, so a masked piece inside a word stays attached to it.
        space = " " if decoded[:1].isspace() else space_between(before, token)
        word = decoded.strip()
        if groups[position] == MASKED:
            pieces.append(f"{space}[<mask>|{word}]")
        elif groups[position] == RANDOM:  # the draw may be the original token itself
            replacement = decode([int(masked[position])]).strip()
            pieces.append(f"{space}[~{replacement}|{word}]")
        else:
            pieces.append(f"{space}[={word}]")
        before = token
    if run:
        pieces.append(decode(run))
    return "".join(pieces)
