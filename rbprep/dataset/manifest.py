"""``manifest.json`` typed: what a dataset is, as ``shard`` writes it and every reader
(``open_dataset``, ``verify``, ``inspect``, the trainer) reads it.

``Manifest.from_json`` checks the format and its version and fills in what datasets
written before a field existed lack (``masking``: static; the corpus's ``text_field``
and ``bytes``; ``encoder``); ``to_json`` writes the layout docs/format.md describes, key
for key, so the same dataset always gives the same bytes.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from rbprep.dataset.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST,
    OTHER_FORMAT_VERSION,
    SPLITS,
    STATIC_FORMAT_VERSION,
    as_location,
)
from rbprep.dataset.masking import MaskParameters
from rbprep.errors import RbprepError
from rbprep.storage import Location


@dataclass(frozen=True)
class ShardParameters:
    """The parameters ``shard`` ran with (``ShardConfig`` resolved): ``dup`` is the
    stored copies, None under dynamic masking."""

    seq_len: int
    dup: int | None
    masking: str
    mode: str
    mask_prob: float
    random_prob: float
    keep_prob: float
    whole_word: bool
    seed: int
    valid_fraction: float
    compression: str
    max_predictions: int
    format: str = "arrow"  # absent from datasets written before other formats
    split_sentences: bool = False

    @property
    def masks(self) -> MaskParameters:
        """What decides the masks besides the rows."""
        return MaskParameters(
            seed=self.seed,
            mask_prob=self.mask_prob,
            random_prob=self.random_prob,
            keep_prob=self.keep_prob,
            max_predictions=self.max_predictions,
            whole_word=self.whole_word,
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardParameters:
        masking = data.get("masking", "static" if data["dup"] is not None else "dynamic")
        return cls(**{**_known(cls, data), "masking": masking})


@dataclass(frozen=True)
class TokenizerRecord:
    """The tokenizer's file (a copy in the dataset), its sha256, size and specials' ids
    (found by role), and the piece prefixes whole-word masking reads."""

    file: str
    sha256: str
    vocab_size: int
    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int
    unk_id: int | None
    special_ids: list[int]
    word_prefix: str | None
    continuation_prefix: str | None


@dataclass(frozen=True)
class EncoderRecord:
    """Who encoded the text: "tokenizers" (the reference) or a fast encoder, and the share
    of units the reference re-encoded to check the fast one (None: not checked so, as
    for the reference itself or a dataset written before the share was recorded)."""

    name: str
    version: str
    check_fraction: float | None = None

    def describe(self) -> str:
        """ "tokie 0.1.4, 2% of each partition's lines checked against tokenizers", or the
        name and version alone where no share was recorded."""
        if self.check_fraction is None:
            return f"{self.name} {self.version}"
        return (
            f"{self.name} {self.version}, {100 * self.check_fraction:.3g}% of each "
            "partition's lines checked against tokenizers"
        )


@dataclass(frozen=True)
class CorpusRecord:
    """The corpus as shard planned it (``verify --retokenize`` opens it again)."""

    files: list[str]
    partition_size: int
    partitions: int
    text_field: str | None = None  # absent from datasets written before it
    bytes: int | None = None  # likewise


@dataclass(frozen=True)
class ShardRecord:
    """One shard file: its partition, rows, tokens, size and sha256."""

    file: str
    partition: int
    rows: int
    tokens: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class FileRecord:
    """A file of a split that is not one partition's (Megatron's joined ``.bin`` and
    ``.idx``, MDS's ``index.json``): its size and sha256."""

    file: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class SplitRecord:
    """A split's counts, its shards in partition order (Arrow and MDS: one per partition
    with rows; Megatron: none) and its other files. ``rows`` are Megatron's sequences."""

    documents: int
    units: int
    content_tokens: int
    rows: int
    tokens: int
    masked_positions: int
    bytes: int
    length_histogram: dict[str, int]
    shards: list[ShardRecord]
    files: list[FileRecord] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SplitRecord:
        shards = [ShardRecord(**_known(ShardRecord, shard)) for shard in data["shards"]]
        files = [FileRecord(**_known(FileRecord, file)) for file in data.get("files", [])]
        return cls(**{**_known(cls, data), "shards": shards, "files": files})

    def to_json(self) -> dict[str, Any]:
        """The split as the manifest holds it (``files`` only where there are some, so
        an Arrow dataset's manifest is what it was before other formats)."""
        data = asdict(self)
        if not self.files:
            del data["files"]
        return data


@dataclass(frozen=True)
class Totals:
    """Both splits together; ``read`` is the corpus reader's counts (ReadStats)."""

    documents: int
    units: int
    content_tokens: int
    rows: int
    tokens: int
    slots: int
    padding_tokens: int
    padding_share: float
    bytes: int
    bytes_per_token: float
    read: dict[str, Any]


@dataclass(frozen=True)
class Manifest:
    """A dataset's ``manifest.json``."""

    rbprep_version: str
    parameters: ShardParameters
    tokenizer: TokenizerRecord
    encoder: EncoderRecord | None  # None: written before the encoder was recorded
    corpus: CorpusRecord
    splits: dict[str, SplitRecord]
    totals: Totals

    @property
    def masking(self) -> str:
        """ "static" (``dup`` copies stored) or "dynamic" (masks computed per epoch)."""
        return self.parameters.masking

    @property
    def output(self) -> str:
        """What the dataset's files are: "arrow" (rbprep's), "megatron" or "mds"."""
        return self.parameters.format

    @property
    def format_version(self) -> int:
        """3 for Megatron and MDS files (which rbprep's reader does not read), 2 for a
        dynamic Arrow dataset (no masks stored), 1 for a static one, which every rbprep
        version reads."""
        if self.output != "arrow":
            return OTHER_FORMAT_VERSION
        return FORMAT_VERSION if self.masking == "dynamic" else STATIC_FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON data, in the documented key order."""
        data: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "rbprep_version": self.rbprep_version,
            "masking": self.masking,
            "parameters": asdict(self.parameters),
            "tokenizer": asdict(self.tokenizer),
        }
        if self.encoder is not None:
            data["encoder"] = {k: v for k, v in asdict(self.encoder).items() if v is not None}
        data["corpus"] = {
            "files": self.corpus.files,
            "text_field": self.corpus.text_field,
            "bytes": self.corpus.bytes,
            "partition_size": self.corpus.partition_size,
            "partitions": self.corpus.partitions,
        }
        data["splits"] = {split: record.to_json() for split, record in self.splits.items()}
        data["totals"] = asdict(self.totals)
        return data

    @classmethod
    def from_json(cls, data: Any, where: Location | str = MANIFEST) -> Manifest:
        """The manifest in ``data`` (parsed JSON), checked: an ``RbprepError`` naming
        ``where`` for another format, another version or a missing field."""
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise RbprepError(f"{where}: not an rbprep dataset manifest")
        known = (STATIC_FORMAT_VERSION, FORMAT_VERSION, OTHER_FORMAT_VERSION)
        if data.get("format_version") not in known:
            raise RbprepError(
                f"{where}: format version {data.get('format_version')}, this rbprep reads "
                f"{', '.join(map(str, known))}; reshard with this version"
            )
        try:
            encoder = data.get("encoder")
            return cls(
                rbprep_version=data["rbprep_version"],
                parameters=ShardParameters.from_json(data["parameters"]),
                tokenizer=TokenizerRecord(**_known(TokenizerRecord, data["tokenizer"])),
                encoder=EncoderRecord(**_known(EncoderRecord, encoder)) if encoder else None,
                corpus=CorpusRecord(**_known(CorpusRecord, data["corpus"])),
                splits={split: SplitRecord.from_json(data["splits"][split]) for split in SPLITS},
                totals=Totals(**_known(Totals, data["totals"])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RbprepError(
                f"{where}: damaged manifest ({type(exc).__name__}: {exc}); shard again"
            ) from exc

    @classmethod
    def read(cls, root: Location | str | os.PathLike) -> Manifest:
        """The manifest of the dataset at ``root`` (a local path or a URI), checked."""
        root = as_location(root)
        path = root.child(MANIFEST)
        try:
            data = path.read_json()
        except FileNotFoundError as exc:
            raise RbprepError(
                f"{path}: no manifest; {root} is not a finished `rbprep shard` output "
                "(rerun shard, with --resume if it was interrupted)"
            ) from exc
        except ValueError as exc:
            raise RbprepError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_json(data, path)


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that are fields of the dataclass ``cls`` (a newer
    manifest's extra keys are left out; a missing required one fails in ``cls``)."""
    names = {field.name for field in fields(cls)}
    return {key: value for key, value in data.items() if key in names}
