"""Where the reference takes the fast encoder's place: the one place that falls back.

When a tokenizer is loaded, ``open_encoder`` gives the encoder a choice
(``ENCODER_CHOICES``) names: the fast one where the policy allows it and it agrees with
the reference on a probe set of hard text, else the reference, and why. During a run, a
check that finds the two differing (``EncoderMismatch``) goes to ``Fallback.to_reference``:
the run warns, goes on with the reference, and redoes what the fast encoder gave. shard
and compare-tokenizers both fall back through it.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer

from rbprep.encoding.backends import Encoder, FastEncoder, ReferenceEncoder
from rbprep.encoding.check import EncoderMismatch, check_sample, check_texts
from rbprep.encoding.policy import FAST_NAME, fast_refused
from rbprep.errors import RbprepError

ENCODER_CHOICES = ("auto", "fast", "reference")

# Text that encoders get wrong first: control characters, invisible and combining
# characters, every Unicode space, astral characters, scripts without spaces, long runs.
_PROBE_TEXTS = (
    "",
    " ",
    "plain English, with punctuation: (it's 3.14!) -- and 'quotes'.",
    "".join(chr(c) for c in range(0x20)) + "x",
    "".join(chr(c) for c in range(0x7F, 0xA0)) + "y",
    "a\x00b\x7fc\x85d\x9fe\ufffdf\ufeffg\u200bh\u200di\u2060j",
    "e\u0301 n\u0303 a\u030a\u0308 \u0915\u094d\u0937 \u05e9\u05c1\u05b8",
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000 x  y   z",
    "😀👍🏽👨\u200d👩\u200d👧 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈 \U0001f9ea\U000e0041 \U0010fffd",
    "日本語のテキストと中文文本，以及한국어 텍스트。ภาษาไทยไม่มีช่องว่าง",
    "Größe, naïve café, İstanbul, ǅ, ﬁ ligature, Ⅻ, ①, ＦＵＬＬＷＩＤＴＨ，",
    "Привет, мир! Γειά σου κόσμε. مرحبا بالعالم. שלום עולם. नमस्ते दुनिया",
    "x" * 3_000,
    # A pre-token tokie cuts in pieces of its own (TOKIE_TEXT_BYTES): it goes to the reference.
    "antidisestablishmentarianism" * 400,
    "supercalifragilisticexpialidocious" * 40,
    "https://example.com/path?query=1&b=%20#frag user@example.com 0x7fffffff 1e-9",
    "def f(x):\n    return {'a': [1, 2, 3]}  # code\n\n\n",
    "   leading and trailing spaces   ",
    "\u0301\u0301\u0301",
    "\x00\x01\x02",
    # Found by the differential tests: tokie 0.1.4's WordPiece differs on these.
    "0\U0001e944 \ufada \U0001da8c",
)

logger = logging.getLogger("rbprep")


def start_fast_encoder(
    config: dict[str, Any], choice: str, source_sha256: str | None = None
) -> Future[FastEncoder] | None:
    """tokie loading the tokenizer ``config`` describes on a thread of its own, where
    ``open_encoder(..., choice, loading=...)`` would load it (else None), while the
    caller loads the reference. ``source_sha256`` as ``FastEncoder`` takes it."""
    if choice == "reference" or fast_refused(config, choice):
        return None
    loading: Future[FastEncoder] = Future()

    def load() -> None:
        try:
            loading.set_result(FastEncoder(config, None, source_sha256))
        except Exception as exc:  # open_encoder says why
            loading.set_exception(exc)

    threading.Thread(target=load, name="rbprep-fast-encoder", daemon=True).start()
    return loading


def open_encoder(
    reference: Tokenizer,
    config: dict[str, Any],
    line_break_id: int | None,
    choice: str = "auto",
    where: str = "tokenizer",
    loading: Future[FastEncoder] | None = None,
    source_sha256: str | None = None,
) -> tuple[Encoder, str | None]:
    """The encoder ``choice`` names for this tokenizer, and why it is not the fast one
    (None when it is, or when the reference was asked for).

    ``reference`` is ``tokenizer_info.encoding_tokenizer``'s tokenizer, ``config`` the
    parsed tokenizer.json. ``auto`` takes the fast encoder where it loads the tokenizer,
    agrees with the reference on the probe set, and the tokenizer is of a kind the
    differential tests cover (``unverified_kind``), else the reference; ``fast`` takes
    it on any kind it loads and agrees on (an ``RbprepError`` where it does not);
    ``reference`` is tokenizers. ``loading``: ``start_fast_encoder``'s, for this config.
    """
    if choice not in ENCODER_CHOICES:
        raise RbprepError(f"--encoder must be one of {', '.join(ENCODER_CHOICES)}, got {choice!r}")
    slow = ReferenceEncoder(reference, line_break_id)
    if choice == "reference":
        return slow, None
    unverified = fast_refused(config, choice)
    if unverified and choice == "fast":
        raise RbprepError(f"{where}: {unverified}; use --encoder auto or reference")
    if unverified:
        return slow, f"{where}: {unverified}"
    try:
        fast = (
            FastEncoder(config, line_break_id, source_sha256)
            if loading is None
            else loading.result()
        )
        fast.line_break_id = line_break_id
        fast.fallback = slow
        probe_texts = [*_PROBE_TEXTS, *_special_spellings(reference)]
        check_texts(fast, slow, probe_texts, where)
        check_sample(fast, slow, *_probe_document(), where=where)
    except EncoderMismatch as mismatch:
        reason = str(mismatch)
    except Exception as exc:  # tokie raises plain exceptions for what it cannot load
        reason = f"{where}: {FAST_NAME} cannot load it ({str(exc)[:200]})"
    else:
        return fast, None
    if choice == "fast":
        raise RbprepError(f"{reason}; use --encoder auto or reference")
    return slow, reason


def _special_spellings(tokenizer: Tokenizer) -> list[str]:
    """Text that spells each added token, alone and inside words."""
    contents = [token.content for token in tokenizer.get_added_tokens_decoder().values()]
    return [*contents, " ".join(contents), "x".join(contents) + "x", "".join(contents)]


def _probe_document() -> tuple[list[str], list[bool]]:
    """The probe texts as two documents of lines, as a partition's are encoded."""
    lines = [text.strip() for text in _PROBE_TEXTS if text.strip() and "\n" not in text]
    return lines, [index in (0, 7) for index in range(len(lines))]


@dataclass
class Fallback:
    """One tokenizer's encoder during a run: the ``encoder`` to open it with
    (``ENCODER_CHOICES``, as ``open_encoder`` takes it) and why that is not the fast one
    (``note``, None where it is or where the reference was asked for).

    shard and compare-tokenizers hand a mismatch here (``to_reference``) and then redo
    what the fast encoder gave: shard the partitions it wrote, compare the comparison."""

    encoder: str
    note: str | None = None

    def to_reference(self, mismatch: EncoderMismatch, redo: str) -> None:
        """Go on with the reference after ``mismatch`` (the fast encoder's ids differ from
        it): warn, saying what the caller redoes with it (``redo``), keep the mismatch as
        the note, and choose the reference. A mismatch while the reference is chosen is
        raised: there is nothing left to fall back to."""
        if self.encoder == "reference":
            raise mismatch
        logger.warning("%s; %s", mismatch, redo)
        self.encoder, self.note = "reference", str(mismatch)
