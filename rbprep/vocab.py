"""``train-vocab``: train RoBERTa's byte-level BPE and BERT's WordPiece on one corpus.

Both are trained from a stream of sentence units (bounded memory: the trainers keep word
counts, not text) with Hugging Face ``tokenizers``, the BPE by gigabpe where it gives the
same files (``rbprep.bpe_trainers``, ``--trainer``), and saved so that
``tokenizers.Tokenizer.from_file(DIR/x/tokenizer.json)`` and
``transformers.AutoTokenizer.from_pretrained(DIR/x)`` load them as they are.

Special-token ids (fixed, documented in the README):
BPE ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, ``<mask>`` 4;
WordPiece ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3, ``[MASK]`` 4.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import shutil
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer, WordPieceTrainer

from rbprep.bpe_trainers import (
    FAST_NAME,
    REFERENCE_NAME,
    TRAINER_CHOICES,
    choose_trainer,
    fast_trainer_version,
    new_bpe,
    train_bpe_fast,
)
from rbprep.corpus import Corpus, Document, ReadStats, open_corpus
from rbprep.corpus.sampling import Usage, sample_documents
from rbprep.encoding.backends import BATCH_CHARS, batch_bounds, installed_version
from rbprep.errors import RbprepError
from rbprep.options import opt
from rbprep.progress import ByteProgress
from rbprep.sizes import counted, format_size, parse_size
from rbprep.storage import check_output_directory
from rbprep.tokenizer_files import write_transformers_configs

logger = logging.getLogger("rbprep")

BPE_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
KINDS = ("bpe", "wordpiece")
_BATCH_UNITS = 1000


@dataclass(frozen=True)
class VocabConfig:
    """Parameters of ``train_vocab``; CLI options carry the same names."""

    only: str | None = opt(None, choices=KINDS, help="Train only one of the two.")
    bpe_size: int = opt(50_000, help="Byte-level BPE vocabulary.")
    wordpiece_size: int = opt(30_000, help="WordPiece vocabulary.")
    min_frequency: int = opt(2, help="Least count of a merge or word piece.")
    # WordPiece only: the BPE never normalises.
    cased: bool = opt(False, help="WordPiece keeps case and accents (BERT-cased).")
    sample_bytes: int | None = opt(
        None,
        type=parse_size,
        metavar="SIZE",
        help="Train on a deterministic sample of about this much text, drawn from all files.",
    )
    seed: int = opt(0, help="Seed of the sample.")
    trainer: str = opt(
        "auto",
        choices=TRAINER_CHOICES,
        help="Who trains the BPE: fast (gigabpe, the same files as tokenizers, several times "
        "faster; checked at load), reference (tokenizers), auto (fast where it loads and "
        "agrees).",
    )

    @property
    def kinds(self) -> tuple[str, ...]:
        return (self.only,) if self.only else KINDS


@dataclass
class TokenizerResult:
    kind: str
    path: str
    vocab_size_requested: int
    vocab_size: int
    seconds: float
    files: list[str]
    trainer: dict[str, str] = field(default_factory=dict)  # name and version
    trainer_note: str | None = None  # why auto did not take the fast trainer


@dataclass
class VocabSummary:
    """What ``train_vocab`` did; ``as_dict()`` is the ``--json`` output."""

    out: str
    corpus_files: int
    text_bytes_used: int
    documents_used: int
    units_used: int
    sampled: bool
    read: dict[str, Any]
    tokenizers: list[TokenizerResult] = field(default_factory=list)
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def report(self) -> str:
        """The one-screen human summary."""
        lines = [
            # The text in its lines (stripped, no line ends) and the input it came from:
            # shard and inspect give the input read, so the two figures sit side by side.
            f"Trained on {format_size(self.text_bytes_used)} of text in lines, of "
            f"{format_size(self.read['text_bytes'])} read: "
            f"{self.documents_used:,} documents, {self.units_used:,} lines, "
            f"{counted(self.corpus_files, 'file')}" + (" (sampled)" if self.sampled else ""),
        ]
        problems = ReadStats.from_dict(self.read).problems()
        if problems:
            lines.append(problems)
        for result in self.tokenizers:
            short = (
                ""
                if result.vocab_size >= result.vocab_size_requested
                else f" (asked for {result.vocab_size_requested:,})"
            )
            lines.append(
                f"  {result.kind:<10} {result.vocab_size:>7,} entries{short}  "
                f"{result.seconds:6.1f} s  -> {result.path}/ ({', '.join(result.files)})"
            )
            by = f"{result.trainer.get('name')} {result.trainer.get('version')}"
            note = f" ({result.trainer_note})" if result.trainer_note else ""
            lines.append(f"  {'':<10} trained by {by}{note}")
        lines.append(f"Done in {self.seconds:.1f} s.")
        return "\n".join(lines)


def train_vocab(
    corpus: Sequence[str | os.PathLike] | Corpus,
    out: str | os.PathLike,
    config: VocabConfig = VocabConfig(),
    *,
    force: bool = False,
    progress: bool = False,
) -> VocabSummary:
    """Train the tokenizers of ``config`` on ``corpus`` and save them under ``out``.

    ``corpus`` is a list of CORPUS paths or an opened ``Corpus``. Writes ``out/bpe`` and
    ``out/wordpiece`` (each loadable by ``tokenizers`` and ``transformers``) and
    ``out/train-vocab.json`` with this summary. Refuses a non-empty ``out`` unless
    ``force``, in which case the tokenizer directories it writes are replaced.
    """
    _check_config(config)
    if not isinstance(corpus, Corpus):
        corpus = open_corpus(corpus)
    check_output_directory(out)
    out_dir = Path(out)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise RbprepError(f"{out_dir}: directory is not empty; use --force to overwrite it")

    started = time.perf_counter()
    summary = None
    results = []
    for pass_number, kind in enumerate(config.kinds):
        stats = ReadStats()
        used = Usage()
        kind_started = time.perf_counter()
        chosen, note = "reference", None
        if kind == "bpe":
            chosen, note = choose_trainer(config.trainer)
            tokenizer, trainer = _new_bpe(config)
        else:
            with _warnings_only_if(False):  # the training pass below warns
                documents = sample_documents(
                    corpus, ReadStats(), config.sample_bytes, config.seed, Usage()
                )
                chars = continuation_chars((d for _, d in documents), config.cased)
            tokenizer, trainer = _new_wordpiece(config, chars)
        # Each pass reads the same text; its warnings are worth printing once.
        with (
            _warnings_only_if(pass_number == 0),
            ByteProgress(f"{kind}: reading", corpus.size, enabled=progress) as bar,
        ):
            documents = sample_documents(corpus, stats, config.sample_bytes, config.seed, used)
            if chosen == "fast":
                batches = _unit_batches(documents, stats, bar)
                tokenizer = train_bpe_fast(
                    batches, config.bpe_size, config.min_frequency, BPE_SPECIALS
                )
            else:
                tokenizer.train_from_iterator(_unit_batches(documents, stats, bar), trainer)
        if used.documents == 0:
            raise RbprepError(_empty_message(corpus, stats))
        if kind == "wordpiece":
            tokenizer = _canonical_wordpiece(tokenizer, config)
        _set_post_processor(tokenizer, kind)
        directory = out_dir / kind
        files = _save(tokenizer, kind, directory, config)
        reached = tokenizer.get_vocab_size(with_added_tokens=True)
        requested = config.bpe_size if kind == "bpe" else config.wordpiece_size
        if reached < requested:
            logger.warning(
                "%s: the corpus filled %d of the %d vocabulary entries asked for; "
                "give more text or a smaller size",
                kind,
                reached,
                requested,
            )
        version = fast_trainer_version() if chosen == "fast" else installed_version("tokenizers")
        results.append(
            TokenizerResult(
                kind,
                str(directory),
                requested,
                reached,
                round(time.perf_counter() - kind_started, 3),
                files,
                {
                    "name": FAST_NAME if chosen == "fast" else REFERENCE_NAME,
                    "version": version or "",
                },
                note,
            )
        )
        if summary is None:
            summary = VocabSummary(
                out=str(out_dir),
                corpus_files=len(corpus.files),
                text_bytes_used=used.text_bytes,
                documents_used=used.documents,
                units_used=used.units,
                sampled=used.sampled,
                read=stats.as_dict(),
            )
    assert summary is not None
    summary.tokenizers = results
    summary.seconds = round(time.perf_counter() - started, 3)
    summary.config = asdict(config)
    (out_dir / "train-vocab.json").write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    return summary


@contextlib.contextmanager
def _warnings_only_if(condition: bool) -> Iterator[None]:
    logger.disabled = not condition
    try:
        yield
    finally:
        logger.disabled = False


def _check_config(config: VocabConfig) -> None:
    if config.only not in (None, *KINDS):
        raise RbprepError(f"--only must be one of {', '.join(KINDS)}, not {config.only!r}")
    if config.bpe_size < 256 + len(BPE_SPECIALS):
        raise RbprepError(
            f"--bpe-size {config.bpe_size} is below the 256 bytes + 5 specials "
            "a byte-level BPE needs"
        )
    if config.wordpiece_size < len(WORDPIECE_SPECIALS) + 1:
        raise RbprepError(f"--wordpiece-size {config.wordpiece_size} is too small")
    if config.min_frequency < 1:
        raise RbprepError("--min-frequency must be at least 1")
    if config.sample_bytes is not None and config.sample_bytes <= 0:
        raise RbprepError("--sample-bytes must be positive")


def _empty_message(corpus: Corpus, stats: ReadStats) -> str:
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(stats.skipped.items()))
    detail = f" (skipped: {skipped})" if skipped else ""
    return f"the corpus holds no text: {counted(len(corpus.files), 'file')}, no document{detail}"


# --- the stream of text --------------------------------------------------------------


def _unit_batches(
    documents: Iterator[tuple[int, Document]], stats: ReadStats, bar: ByteProgress
) -> Iterator[list[str]]:
    """Batches of sentence units for the trainers (batches keep their threads busy)."""
    batch: list[str] = []
    chars = 0
    reported = stats.text_bytes
    for _, document in documents:
        bar.update(stats.text_bytes - reported)
        reported = stats.text_bytes
        batch.extend(document.units)
        chars += sum(map(len, document.units))
        # Bounded in characters too, a long document split over batches: the trainer
        # holds every word of a batch at once.
        if len(batch) >= _BATCH_UNITS or chars >= BATCH_CHARS:
            lengths = np.fromiter(map(len, batch), np.int64, len(batch))
            for start, end in itertools.pairwise(batch_bounds(lengths, _BATCH_UNITS)):
                yield batch[start:end]
            batch, chars = [], 0
    bar.update(stats.text_bytes - reported)
    if batch:
        yield batch


# --- the two tokenizers ---------------------------------------------------------------


def _new_bpe(config: VocabConfig) -> tuple[Tokenizer, BpeTrainer]:
    # Byte-level, no normaliser and no prefix space: decode(encode(x)) == x for any text.
    return new_bpe(config.bpe_size, config.min_frequency, BPE_SPECIALS)


def _new_wordpiece(
    config: VocabConfig, continuation_chars: Sequence[str]
) -> tuple[Tokenizer, WordPieceTrainer]:
    tokenizer = _wordpiece_tokenizer(config, models.WordPiece(unk_token="[UNK]"))
    # tokenizers' WordPiece trainer gives each "##c" piece the next id when it first
    # meets it in a hash map, in an order that changes from run to run; the ids then
    # break ties between merges, so the vocabulary itself changed between runs
    # (huggingface/tokenizers#1794). Declaring every "##c" up front, in code-point order,
    # fixes their ids; they become ordinary pieces again in _canonical_wordpiece.
    trainer = WordPieceTrainer(
        vocab_size=config.wordpiece_size,
        min_frequency=config.min_frequency,
        special_tokens=[*WORDPIECE_SPECIALS, *("##" + char for char in continuation_chars)],
        continuing_subword_prefix="##",
        show_progress=False,
    )
    return tokenizer, trainer


def _wordpiece_tokenizer(config: VocabConfig, model: models.WordPiece) -> Tokenizer:
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=True,
        strip_accents=None,  # as BERT: accents go with lowercasing
        lowercase=not config.cased,
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def continuation_chars(documents: Iterable[Document], cased: bool) -> list[str]:
    """The characters that can continue a word after BERT's normalisation, sorted.

    Over-approximates (a character that only ever starts a word is kept); leaves out
    what BertPreTokenizer always splits off: whitespace, punctuation, CJK characters.
    """
    seen: set[int] = set()
    batch: list[str] = []
    batch_chars = 0

    def flush() -> None:
        codes = np.frombuffer("".join(batch).encode("utf-32-le"), dtype=np.uint32)
        seen.update(np.flatnonzero(np.bincount(codes)).tolist())
        batch.clear()

    for document in documents:
        for unit in document.units:  # by unit: a long document is counted in parts
            batch.append(unit)
            batch_chars += len(unit)
            if batch_chars > BATCH_CHARS:
                flush()
                batch_chars = 0
    if batch:
        flush()
    normalizer = _wordpiece_tokenizer(VocabConfig(cased=cased), models.WordPiece()).normalizer
    chars: set[str] = set()
    for code in seen:
        normalized = normalizer.normalize_str(chr(code))
        if normalized != normalized.strip():
            continue  # a CJK character, padded with spaces to stand alone
        chars.update(
            char
            for char in normalized
            if not char.isspace()
            and not (char.isascii() and not char.isalnum())
            and not unicodedata.category(char).startswith("P")
        )
    return sorted(chars)


def _canonical_wordpiece(tokenizer: Tokenizer, config: VocabConfig) -> Tokenizer:
    """The trained WordPiece as a fresh tokenizer: specials, then pieces in code-point order.

    WordPiece encoding is a longest match over the vocabulary *set*, so numbering it
    canonically loses nothing; the "##c" pieces declared to the trainer become ordinary
    vocabulary again.
    """
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    pieces = sorted(
        (t for t in vocab if t not in WORDPIECE_SPECIALS), key=lambda t: (t.startswith("##"), t)
    )
    ordered = {token: index for index, token in enumerate([*WORDPIECE_SPECIALS, *pieces])}
    model = models.WordPiece(ordered, unk_token="[UNK]", continuing_subword_prefix="##")
    canonical = _wordpiece_tokenizer(config, model)
    canonical.add_special_tokens(list(WORDPIECE_SPECIALS))
    return canonical


def _set_post_processor(tokenizer: Tokenizer, kind: str) -> None:
    if kind == "bpe":
        tokenizer.post_processor = processors.RobertaProcessing(
            ("</s>", tokenizer.token_to_id("</s>")),
            ("<s>", tokenizer.token_to_id("<s>")),
            trim_offsets=True,
            add_prefix_space=False,
        )
    else:
        tokenizer.post_processor = processors.BertProcessing(
            ("[SEP]", tokenizer.token_to_id("[SEP]")),
            ("[CLS]", tokenizer.token_to_id("[CLS]")),
        )


_ROLE_ORDER = {  # cls, sep, pad, mask, unk
    "bpe": ("<s>", "</s>", "<pad>", "<mask>", "<unk>"),
    "wordpiece": ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"),
}


def _save(tokenizer: Tokenizer, kind: str, directory: Path, config: VocabConfig) -> list[str]:
    """Write the tokenizer files into ``directory`` (replaced whole, via a temp dir)."""
    staging = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    tokenizer.save(str(staging / "tokenizer.json"))
    tokenizer.model.save(str(staging))  # vocab.json + merges.txt, or vocab.txt
    specials = dict(zip(("cls", "sep", "pad", "mask", "unk"), _ROLE_ORDER[kind], strict=True))
    write_transformers_configs(staging, kind, specials, lowercase=not config.cased)
    files = sorted(p.name for p in staging.iterdir())
    if directory.exists():
        shutil.rmtree(directory)
    staging.rename(directory)
    return files
