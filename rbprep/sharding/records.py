"""A partition's record: what its task wrote and counted, typed.

The task returns it, the run keeps it in ``.parts/NNNNN.json`` (the marker that says the
partition is done, written after its files) and builds the manifest from all of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rbprep.encoding import CHECK_FRACTION, REFERENCE_NAME


@dataclass(frozen=True)
class PartFile:
    """One file a partition's task wrote for a split: its name under the output, its
    size and sha256 (a resumed run keeps the partition only if all of them match)."""

    file: str
    bytes: int
    sha256: str


@dataclass
class SplitPart:
    """One split of a partition: its counts and the files its sink wrote (none where the
    split got no document)."""

    documents: int
    units: int
    content_tokens: int
    rows: int  # packed rows; Megatron's sequences
    tokens: int  # stored tokens, specials included
    masked_positions: int
    length_histogram: dict[str, int]
    files: list[PartFile] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SplitPart:
        # A marker from before other formats names its one shard in file/bytes/sha256.
        files = data.get("files")
        if files is None:
            files = [data] if "file" in data else []
        return cls(
            documents=data["documents"],
            units=data["units"],
            content_tokens=data["content_tokens"],
            rows=data["rows"],
            tokens=data["tokens"],
            masked_positions=data.get("masked_positions", 0),
            length_histogram=dict(data["length_histogram"]),
            files=[PartFile(f["file"], f["bytes"], f["sha256"]) for f in files],
        )


@dataclass
class PartitionRecord:
    """A partition's task's result. ``seconds`` (per stage) is the task's timing: kept
    out of the marker, so a partition done by an earlier run has none."""

    partition: int
    read: dict[str, Any]  # ReadStats.as_dict()
    encoder: str  # the encoder's name: "tokenizers" or a fast one
    check_fraction: float | None  # the share of units re-encoded by the reference
    splits: dict[str, SplitPart]
    seconds: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        """The marker's content (no timings: the same partition gives the same bytes)."""
        return {
            "partition": self.partition,
            "read": self.read,
            "encoder": self.encoder,
            "check_fraction": self.check_fraction,
            "splits": {split: part.to_json() for split, part in self.splits.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PartitionRecord:
        """A marker read back; KeyError or TypeError where it is not one."""
        return cls(
            partition=int(data["partition"]),
            read=dict(data["read"]),
            encoder=data.get("encoder", REFERENCE_NAME),  # before fast encoders
            # Before the share was recorded, a fast encoder's was checked at 2%, the
            # only share there was.
            check_fraction=data.get(
                "check_fraction",
                None if data.get("encoder", REFERENCE_NAME) == REFERENCE_NAME else CHECK_FRACTION,
            ),
            splits={split: SplitPart.from_json(part) for split, part in data["splits"].items()},
        )

    def files(self) -> list[PartFile]:
        return [file for part in self.splits.values() for file in part.files]
