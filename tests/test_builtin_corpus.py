"""The built-in corpus: real files, built from this interpreter's standard library and
rbprep's dependencies numpy, numba and click."""

import shutil
import sys
import unicodedata
from pathlib import Path

import pytest

from rbprep.corpus.builtin import BuiltinStats, build_builtin_corpus, builtin_corpus_path

# The standard library gives 1.9 to 2.2 MB on CPython 3.10 to 3.13 (Debian's 3.11, without
# idlelib and tkinter, the least), numpy, numba and click about 2 MB more: a margin below
# that, far above what a broken walk would give.
MIN_CORPUS_BYTES = 3_000_000
MIN_DOCUMENTS = 300


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuiltinStats]:
    """A corpus made by build_builtin_corpus, once for the whole module."""
    out = tmp_path_factory.mktemp("built") / "corpus.txt"
    return out, build_builtin_corpus(out)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory, not yet created, where builtin_corpus_path has built the corpus."""
    directory = tmp_path_factory.mktemp("cache") / "not-yet-created"
    builtin_corpus_path(directory)
    return directory


@pytest.fixture
def text(built: tuple[Path, BuiltinStats]) -> str:
    path, _ = built
    return path.read_bytes().decode("utf-8")


def test_is_megabytes_of_hundreds_of_documents(built: tuple[Path, BuiltinStats]) -> None:
    path, stats = built
    assert stats.bytes == path.stat().st_size > MIN_CORPUS_BYTES
    assert stats.documents > MIN_DOCUMENTS


def test_stats_count_documents_and_lines(built: tuple[Path, BuiltinStats], text: str) -> None:
    _, stats = built
    documents = text.removesuffix("\n").split("\n\n")
    assert stats.documents == len(documents)
    assert stats.lines == sum(len(document.split("\n")) for document in documents)


def test_holds_docstrings_and_pydoc_topics(text: str) -> None:
    lines = text.split("\n")
    # The json module's first paragraph, wrapped over three source lines, is one line.
    assert (
        "JSON (JavaScript Object Notation) <https://json.org> is a subset of JavaScript syntax"
        " (ECMA-262 3rd edition) used as a lightweight data interchange format."
    ) in lines
    # Its indented doctest keeps one line per source line.
    assert ">>> import json" in lines
    # The pydoc topic "if", from the language reference.
    assert 'The "if" statement is used for conditional execution:' in lines


def test_leaves_out_tests_and_never_imports_modules(text: str) -> None:
    # test.support's module docstring.
    assert "Supporting definitions for the Python regression tests." not in text
    # Importing these would open a web browser and print a poem.
    assert "antigravity" not in sys.modules
    assert "this" not in sys.modules


def test_follows_bert_format(text: str) -> None:
    # One final newline; a blank line only ever as the single separator between documents.
    assert text.endswith("\n")
    assert not text.endswith("\n\n")
    assert not text.startswith("\n")
    assert "\n\n\n" not in text
    lines = text.removesuffix("\n").split("\n")
    assert text.splitlines() == lines
    for number, line in enumerate(lines, 1):
        assert line == line.strip(), f"line {number} is not stripped: {line!r}"
    controls = {char for char in set(text) - {"\n"} if unicodedata.category(char) == "Cc"}
    assert not controls


def test_no_document_repeats(text: str) -> None:
    documents = text.removesuffix("\n").split("\n\n")
    assert len(set(documents)) == len(documents)


def test_two_builds_are_byte_identical(built: tuple[Path, BuiltinStats], cache_dir: Path) -> None:
    path, _ = built
    assert builtin_corpus_path(cache_dir).read_bytes() == path.read_bytes()


def test_cache_is_reused_and_named_for_the_python_version(cache_dir: Path) -> None:
    cached = builtin_corpus_path(cache_dir)
    written_at = cached.stat().st_mtime_ns
    assert builtin_corpus_path(cache_dir) == cached
    assert cached.stat().st_mtime_ns == written_at
    version = ".".join(map(str, sys.version_info[:3]))
    assert version in cached.name
    # The atomic write leaves no temporary file behind.
    assert list(cache_dir.iterdir()) == [cached]


def test_cache_dir_comes_from_rbprep_cache_dir(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = builtin_corpus_path(cache_dir)
    written_at = cached.stat().st_mtime_ns
    monkeypatch.setenv("RBPREP_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert builtin_corpus_path() == cached
    assert cached.stat().st_mtime_ns == written_at


def test_cache_dir_falls_back_to_xdg_cache_home(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A copy of the cached file where the XDG cache should be, so that nothing is rebuilt.
    cached = builtin_corpus_path(cache_dir)
    expected = tmp_path / "rbprep" / cached.name
    expected.parent.mkdir()
    shutil.copyfile(cached, expected)
    monkeypatch.delenv("RBPREP_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert builtin_corpus_path() == expected
