"""Shared fixtures: tiny corpora built on the fly, and one small trained vocabulary."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rbprep.corpus import ReadStats, open_corpus

SMALL_TEXT = """The quick brown fox jumps over the lazy dog.
A second line of the first document.

Second document, one line only.

Third document: naïve café, Zürich, emoji 🙂, 中文字符, العربية.
Its last line.
"""


def read_documents(paths, **options) -> tuple[list[list[str]], ReadStats]:
    """Read a corpus through the public reader; return its documents' units and stats."""
    corpus = open_corpus([str(p) for p in paths], **options)
    stats = ReadStats()
    documents = [document.units for document in corpus.documents(stats)]
    return documents, stats


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "small.txt"
    path.write_text(SMALL_TEXT, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _rbprep_warnings_propagate():
    """Let caplog see rbprep's warnings even after a CLI run turned propagation off."""
    logger = logging.getLogger("rbprep")
    logger.propagate = True
    yield
    logger.propagate = True


@pytest.fixture(scope="session")
def builtin_corpus(tmp_path_factory) -> Path:
    from rbprep.corpus.builtin import builtin_corpus_path

    return builtin_corpus_path(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def small_vocab(tmp_path_factory, builtin_corpus) -> Path:
    """Both tokenizers trained once on a 2 MB sample of the built-in corpus."""
    from rbprep.vocab import VocabConfig, train_vocab

    out = tmp_path_factory.mktemp("vocab")
    train_vocab(
        [builtin_corpus],
        out,
        VocabConfig(bpe_size=4000, wordpiece_size=3000, sample_bytes=2_000_000),
        force=True,
    )
    return out
