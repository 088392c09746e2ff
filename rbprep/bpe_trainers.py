"""Who trains ``train-vocab``'s byte-level BPE: ``tokenizers``' BpeTrainer (the reference,
which decides what the right merges are) or gigabpe (a Rust trainer with the same
algorithm, tie-breaks and pre-tokenizer, several times faster in less memory), used
only where it gives the reference's files byte for byte.

gigabpe reads files, not an iterator: the units go to a temporary file in rbprep's cache
directory, one per line, removed after. Its vocabulary holds only the bytes it saw (a
line feed among them), where the reference's holds all 256: asked for the same number of
merges, it gives the same merges, and the vocabulary is then the reference's order
(specials, the 256-character byte-level alphabet sorted, each merge's token in turn).

Identity is checked, never assumed: the differential tests (``tests/test_vocab.py``)
compare the saved files of both on hypothesis, multilingual and hostile text; and at run
time ``fast_trainer_problem`` trains both on a small fixed text once per process, so a
changed wheel is caught before it trains anything.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tokenizers.trainers import BpeTrainer

from rbprep.cache import default_cache_dir
from rbprep.errors import RbprepError

TRAINER_CHOICES = ("auto", "fast", "reference")
REFERENCE_NAME = "tokenizers"
FAST_NAME = "gigabpe"

# The probe: text whose merges the two trainers must agree on at load (a few runs of
# every kind of character, and ties between pairs of the same count).
_PROBE_LINES = [
    "the quick brown fox jumps over the lazy dog, again and again: 3.14 and 2.71",
    "naïve café Zürich Größe İstanbul ǅ ﬁ — «quotes» and ‘others’",
    "日本語のテキストと中文文本 한국어 텍스트 ภาษาไทย Привет мир Γειά σου",
    "x" * 300,
    "abab abab abab baba baba cdcd cdcd",
    "\x01\x1b[0m\x7f tab\tand  double  spaces \u2028 \u3000 😀👍🏽",
] * 3


def new_bpe(size: int, min_frequency: int, specials: Sequence[str]) -> tuple[Tokenizer, BpeTrainer]:
    """The reference: an untrained byte-level BPE (no normaliser, no prefix space) and
    the BpeTrainer with ``train-vocab``'s settings (the whole byte alphabet up front)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=size,
        min_frequency=min_frequency,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    return tokenizer, trainer


def fast_trainer_version() -> str | None:
    """The installed gigabpe's version, or None where it is not installed."""
    try:
        from importlib import metadata

        import gigabpe  # noqa: F401
    except ImportError:
        return None
    return metadata.version("gigabpe")


@functools.cache
def fast_trainer_problem() -> str | None:
    """Why the fast trainer may not train here (not installed, or it disagrees with the
    reference on the probe text), or None: checked once per process."""
    if fast_trainer_version() is None:
        return f"{FAST_NAME} is not installed (pip install 'gigabpe==0.1.0', CPython 3.11)"
    specials = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
    for size, min_frequency in ((400, 2), (700, 1)):
        reference, trainer = new_bpe(size, min_frequency, specials)
        reference.train_from_iterator([_PROBE_LINES], trainer)
        try:
            fast = train_bpe_fast([_PROBE_LINES], size, min_frequency, specials)
        except Exception as exc:  # a broken wheel raises whatever it raises
            return f"{FAST_NAME} {fast_trainer_version()} fails on the probe text ({exc})"
        if fast.to_str() != reference.to_str():
            return (
                f"{FAST_NAME} {fast_trainer_version()} trains other merges than "
                f"{REFERENCE_NAME} on the probe text"
            )
    return None


def choose_trainer(choice: str) -> tuple[str, str | None]:
    """The trainer ``choice`` names (``fast`` or ``reference``), and why it is not the
    fast one where ``auto`` chose (None otherwise); ``fast`` where it may not train is a
    one-line error."""
    if choice not in TRAINER_CHOICES:
        raise RbprepError(f"--trainer must be one of {', '.join(TRAINER_CHOICES)}, got {choice!r}")
    if choice == "reference":
        return "reference", None
    problem = fast_trainer_problem()
    if problem is None:
        return "fast", None
    if choice == "fast":
        raise RbprepError(f"--trainer fast: {problem}; use --trainer auto or reference")
    return "reference", problem


def train_bpe_fast(
    batches: Iterable[list[str]], size: int, min_frequency: int, specials: Sequence[str]
) -> Tokenizer:
    """The byte-level BPE the reference would train on the units of ``batches`` (lists of
    lines with no line break), trained by gigabpe: the units are written to a temporary
    file, one per line, and the merges it gives are put in the reference's tokenizer."""
    import gigabpe

    directory = default_cache_dir() / "train-vocab"
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix="units-", suffix=".txt", dir=directory)
    seen = np.zeros(256, dtype=np.bool_)  # the bytes of the file: gigabpe's alphabet
    try:
        with os.fdopen(handle, "wb") as file:
            for batch in batches:
                if not batch:
                    continue
                data = ("\n".join(batch) + "\n").encode("utf-8", "surrogatepass")
                seen[np.frombuffer(data, dtype=np.uint8)] = True
                file.write(data)
        merges_wanted = max(0, size - len(specials) - 256)
        if not seen.any() or merges_wanted == 0:
            merges: list[tuple[str, str]] = []
        else:
            asked = len(specials) + int(seen.sum()) + merges_wanted
            _, merges = gigabpe.train_bpe(
                [name],
                asked,
                special_tokens=list(specials),
                min_frequency=min_frequency,
                pretokenizer="bytelevel",
                threads=gigabpe_threads(),
            )
    finally:
        with contextlib.suppress(OSError):
            Path(name).unlink()
    return _reference_form([tuple(pair) for pair in merges], specials)


def gigabpe_threads() -> int:
    """Threads for gigabpe: half the cores this process may use, at least one. Each
    thread counts words of its own, and gigabpe's merges run on one: on 2 cores, 202 MB
    of distinct text, one thread took the same time as two (5.66 against 5.82 s, median
    of 5 interleaved) at a peak of 180 MB against 210 MB (README, "train-vocab")."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // 2)


def _reference_form(merges: list[tuple[str, str]], specials: Sequence[str]) -> Tokenizer:
    """The tokenizer the reference trainer makes with these merges: specials, the byte
    alphabet sorted, then each merge's token, in that order of ids."""
    tokens = [*specials, *sorted(pre_tokenizers.ByteLevel.alphabet())]
    tokens += [left + right for left, right in merges]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise RbprepError(f"{FAST_NAME} gave a merge whose token is already in the vocabulary")
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(list(specials))
    return tokenizer
