"""``shard``'s options that decide its output (``ShardConfig``), and their choices."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from rbprep.dataset.manifest import ShardParameters
from rbprep.errors import RbprepError
from rbprep.options import opt

MODES = ("full-sentences", "doc-sentences")
MASKINGS = ("static", "dynamic")  # masks stored (dup copies), or computed per epoch
DEFAULT_DUP = 10
COMPRESSIONS = ("none", "zstd", "lz4")
# What the run writes (``rbprep.sharding.sinks``): rbprep's Arrow shards, Megatron-Core's
# indexed .bin/.idx, MosaicML Streaming's MDS. Only Arrow stores masks: the trainers that
# read the others mask as they load.
FORMATS = ("arrow", "megatron", "mds")


@dataclass(frozen=True)
class ShardConfig:
    """Parameters of ``shard`` that decide its output; CLI options carry the same names."""

    seq_len: int = opt(512, help="Tokens per row, specials included (not for --format megatron).")
    # None: DEFAULT_DUP under static masking, none under dynamic masking (``copies``).
    dup: int | None = opt(
        None,
        show_default=str(DEFAULT_DUP),
        help="Masked copies stored of every row (static masking).",
    )
    masking: str = opt(
        "static",
        choices=MASKINGS,
        help="static: store --dup masked copies (epoch e reads copy e % dup). dynamic: store "
        "ids only; copy e is computed from the seed when a batch is made, a new mask every "
        "epoch (RoBERTa's), equal to copy e of a static dataset.",
    )
    mode: str = opt(
        "full-sentences",
        choices=MODES,
        help="Rows may cross documents (RoBERTa), or never do (not for --format megatron).",
    )
    mask_prob: float = opt(0.15, help="Share of tokens predicted.")
    random_prob: float = opt(0.1, help="Of those, given a random token.")
    keep_prob: float = opt(0.1, help="Of those, left unchanged.")
    whole_word: bool = opt(
        False, help="Mask all pieces of a word together (pieces marked Ġ, ▁ or ##)."
    )
    seed: int = opt(0, help="Seed of the masks and the split.")
    valid_fraction: float = opt(0.01, help="Share of documents held out in valid/ (0 for none).")
    compression: str = opt(
        "none", choices=COMPRESSIONS, help="Arrow buffer compression (--format arrow)."
    )
    format: str = opt(
        "arrow",
        choices=FORMATS,
        help="What to write: arrow (rbprep's shards, masks stored), megatron (Megatron-Core "
        ".bin/.idx per split, for --data-path), mds (MosaicML Streaming shards, for Composer).",
    )
    split_sentences: bool = opt(
        False,
        help="--format megatron: each line/unit its own sequence, grouped into documents "
        "(Megatron's --split-sentences layout, which its BERT dataset reads); default one "
        "sequence per document.",
    )

    @property
    def max_predictions(self) -> int:
        """The cap on masked positions per copy: ceil(mask_prob * (seq_len - 2))."""
        return int(np.ceil(self.mask_prob * (self.seq_len - 2) - 1e-9))

    @property
    def copies(self) -> int | None:
        """Masked copies stored per row: ``dup`` (10 by default) under static masking,
        None under dynamic masking (any copy is computed when a batch is made) and for
        the formats that store no masks."""
        if self.masking == "dynamic" or self.format != "arrow":
            return None
        return DEFAULT_DUP if self.dup is None else self.dup

    @property
    def rows(self) -> bool:
        """Whether the output holds packed rows (Megatron's holds documents)."""
        return self.format != "megatron"

    def parameters(self) -> ShardParameters:
        """The manifest's ``parameters``: the fields (``dup`` as stored copies, None
        under dynamic masking; ``masking`` "none" where no masks are stored) and
        ``max_predictions``."""
        masking = self.masking if self.format == "arrow" else "none"
        return ShardParameters(
            **{
                **asdict(self),
                "dup": self.copies,
                "masking": masking,
                "max_predictions": self.max_predictions,
            }
        )

    @classmethod
    def of(cls, parameters: ShardParameters) -> ShardConfig:
        """The config a dataset with these ``parameters`` was made with."""
        names = {field.name for field in fields(cls)}
        values = {k: v for k, v in asdict(parameters).items() if k in names}
        if values["masking"] == "none":
            values["masking"] = "static"
        return cls(**values)

    def check(self) -> None:
        if not 8 <= self.seq_len <= 65535:
            raise RbprepError(f"--seq-len must be in 8..65535, got {self.seq_len}")
        if self.masking not in MASKINGS:
            raise RbprepError(f"--masking must be one of {', '.join(MASKINGS)}")
        if self.format not in FORMATS:
            raise RbprepError(f"--format must be one of {', '.join(FORMATS)}")
        if self.format != "arrow" and (
            self.dup is not None or self.masking != "static" or self.whole_word
        ):
            raise RbprepError(
                f"--format {self.format} stores no masks (its trainers mask as they load): "
                "drop --dup, --masking and --whole-word, or use --format arrow"
            )
        if self.format == "megatron" and (self.seq_len, self.mode) != (512, "full-sentences"):
            raise RbprepError(
                "--format megatron writes documents, not rows: --seq-len and --mode do not "
                "apply (Megatron packs them itself, to its --seq-length)"
            )
        if self.split_sentences and self.format != "megatron":
            raise RbprepError("--split-sentences is a layout of --format megatron only")
        if self.masking == "dynamic" and self.dup is not None:
            raise RbprepError(
                f"--dup {self.dup} stores masked copies; --masking dynamic computes a new one "
                "for every epoch instead: give one or the other"
            )
        if self.copies is not None and not 1 <= self.copies <= 255:
            raise RbprepError(f"--dup must be in 1..255, got {self.copies}")
        if self.mode not in MODES:
            raise RbprepError(f"--mode must be one of {', '.join(MODES)}")
        if self.compression not in COMPRESSIONS:
            raise RbprepError(f"--compression must be one of {', '.join(COMPRESSIONS)}")
        if self.compression != "none" and self.format != "arrow":
            raise RbprepError("--compression applies to --format arrow only")
        if not 0 < self.mask_prob < 1:
            raise RbprepError("--mask-prob must be between 0 and 1")
        if self.random_prob < 0 or self.keep_prob < 0 or self.random_prob + self.keep_prob > 1:
            raise RbprepError("--random-prob and --keep-prob must be >= 0 and sum to at most 1")
        if not 0 <= self.valid_fraction < 1:
            raise RbprepError("--valid-fraction must be in [0, 1)")
        if not 0 <= self.seed < 2**64:
            raise RbprepError(f"--seed must be in 0..2**64-1, got {self.seed}")
