"""Encode a corpus's units to token ids, as every command does: one rule, two encoders.

- ``units``: the texts a document's lines are encoded as (``document_units``,
  ``units_of``), and how they are joined for the encoder (``join_lines``);
- ``backends``: the encoders behind ``Encoder.encode_lines``: the reference, Hugging Face
  ``tokenizers`` (``ReferenceEncoder``), the arbiter of what the ids are, and a fast one,
  ``tokie`` (``FastEncoder``), which returns the same ids several times faster;
- ``policy``: who encodes which text: tokie only what it is proven on, the rest the
  reference, whatever a sample draws;
- ``check``: the fast encoder's ids against the reference's (``check_sample``), and
  ``EncoderMismatch`` where they differ;
- ``fallback``: where the reference takes over: at load where the policy or a probe set
  of hard text rules the fast encoder out (``open_encoder``), during a run on a mismatch
  (``Fallback``).

A fast encoder decides only who encodes, never what the ids are. The names below are
those the commands, tests and benchmarks import from here.
"""

from rbprep.encoding.backends import (
    BATCH_CHARS,
    JOINED_BATCH,
    UNIT_BATCH,
    Encoder,
    EncoderId,
    FastEncoder,
    ReferenceEncoder,
    batch_bounds,
    installed_version,
    interleave,
    tokie_cache_file,
    utf8_lengths,
)
from rbprep.encoding.check import (
    CHECK_FRACTION,
    EncoderMismatch,
    check_encoded,
    check_equal,
    check_sample,
    check_texts,
    sample_units,
)
from rbprep.encoding.fallback import (
    ENCODER_CHOICES,
    Fallback,
    open_encoder,
    start_fast_encoder,
)
from rbprep.encoding.policy import (
    FAST_NAME,
    REFERENCE_NAME,
    TOKIE_TEXT_BYTES,
    cut_characters,
    holding,
    tokie_pieces,
    unproven_characters,
    unverified_kind,
)
from rbprep.encoding.units import (
    JOIN_CHARS,
    document_starts,
    document_units,
    join_lines,
    line_break_id,
    units_of,
)

__all__ = [
    "BATCH_CHARS",
    "CHECK_FRACTION",
    "ENCODER_CHOICES",
    "FAST_NAME",
    "JOINED_BATCH",
    "JOIN_CHARS",
    "REFERENCE_NAME",
    "TOKIE_TEXT_BYTES",
    "UNIT_BATCH",
    "Encoder",
    "EncoderId",
    "EncoderMismatch",
    "Fallback",
    "FastEncoder",
    "ReferenceEncoder",
    "batch_bounds",
    "check_encoded",
    "check_equal",
    "check_sample",
    "check_texts",
    "cut_characters",
    "document_starts",
    "document_units",
    "holding",
    "installed_version",
    "interleave",
    "join_lines",
    "line_break_id",
    "open_encoder",
    "sample_units",
    "start_fast_encoder",
    "tokie_cache_file",
    "tokie_pieces",
    "units_of",
    "unproven_characters",
    "unverified_kind",
    "utf8_lengths",
]
