"""The built-in corpus: about 4 MB of real English that every machine with rbprep already has.

`rbprep demo` and the tests need real text without a download. The standard library carries
some: its modules' docstrings, and the pydoc topics (`pydoc_data.topics`, the language reference
text behind `help("if")`). rbprep's own dependencies numpy, numba and click, installed wherever
rbprep is, add their docstrings (numpy's are long, careful prose). Like the corpora rbprep is
meant for, it is technical English, prose mixed with code. The corpus is assembled from the
running interpreter's files on first use and cached, so nothing is shipped in the package.

The sources are parsed with `ast` and never imported: importing runs a module's code, and some
modules act on import (`antigravity` opens a web browser, `this` prints a poem).
`pydoc_data.topics` is the one import, a module that only defines a dict of strings.

The output depends only on those files, so one installation always gives the same bytes. The
cache file is named after the interpreter's and the packages' versions, so another installation
builds its own file.
"""

import ast
import importlib.util
import inspect
import os
import platform
import re
import sys
import sysconfig
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from pydoc_data.topics import topics as pydoc_topics

from rbprep.cache import default_cache_dir

BUILTIN_NAME = "builtin"
# Part of the cache file's name: raise it whenever a change here changes the output.
FORMAT_VERSION = 2
# Dependencies of rbprep (so always installed) whose docstrings join the standard library's.
PACKAGES = ("numpy", "numba", "click")
# Shorter documents are mostly a one-line summary ("Internal function.") with no prose.
MIN_DOCUMENT_CHARS = 200

# Test suites, third-party packages and bytecode caches are not part of the documented library.
_SKIPPED_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
)
_DOCUMENTED_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
# A def can only sit inside statements (or the handlers and cases of one), never inside an
# expression: walking only these keeps the walk shallow and fast.
_STATEMENT_NODES = (ast.stmt, ast.excepthandler, ast.match_case)

# Control characters (C0, DEL, C1), lone surrogates (not encodable as UTF-8) and the Unicode
# line and paragraph separators, which `str.splitlines()` would split a line on.
_UNWANTED_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# reST heading underlines and overlines, transitions and table borders: markup, not text.
_DECORATION = re.compile(r"[-=~^*+#_:| ]{2,}")
# Lines that open an item of their own: a bullet or enumerated list item, a reST field
# (":param name:"), a table row or a doctest prompt.
_ITEM_START = re.compile(
    r"(?:[-*+•]|\d+[.)]|[a-z][.)]|\((?:\d+|[a-z])\))\s|:\w[^:]*:(?:\s|$)|\||>>>"
)


@dataclass(frozen=True)
class BuiltinStats:
    """What `build_builtin_corpus` wrote.

    `lines` counts text lines, not the blank lines between documents; `bytes` is the file size.
    """

    documents: int
    lines: int
    bytes: int


def stdlib_dir() -> Path:
    """Return the directory of the running interpreter's standard library sources."""
    return Path(sysconfig.get_paths()["stdlib"])


def builtin_corpus_path(cache_dir: Path | None = None) -> Path:
    """Return the path of the built-in corpus file, building it on first use.

    The file lives in `cache_dir`, or in `default_cache_dir()` when it is None. Its name
    carries the Python implementation and version and the format version, for example
    `builtin-corpus-cpython-3.11.7-v1.txt`: a patch release can change a docstring too.
    """
    directory = default_cache_dir() if cache_dir is None else cache_dir
    from importlib import metadata

    versions = "-".join(f"{name}{metadata.version(name)}" for name in PACKAGES)
    name = (
        f"builtin-corpus-{sys.implementation.name}-{platform.python_version()}-{versions}"
        f"-v{FORMAT_VERSION}.txt"
    )
    path = directory / name
    if not path.exists():
        build_builtin_corpus(path)
    return path


def build_builtin_corpus(out: Path) -> BuiltinStats:
    """Write the built-in corpus to `out` in BERT's pretraining format.

    One document per standard-library module (its docstring, then its classes', functions'
    and methods' docstrings in source order), in sorted order of the module's path, then the
    same for each of `PACKAGES` in turn, then one per pydoc topic in sorted order of its key.
    Documents under `MIN_DOCUMENT_CHARS` are left out, and so is a repeat of an earlier
    document (the "else" topic is the "if" topic). The file appears atomically, so a
    concurrent build or reader never sees half of it.
    """
    candidates = [*_module_documents(stdlib_dir())]
    for package in PACKAGES:
        candidates += _module_documents(_package_dir(package))
    candidates += _topic_documents()
    # dict.fromkeys keeps the first of equal documents, in order.
    documents = list(
        dict.fromkeys(
            "\n".join(lines)
            for lines in candidates
            if sum(len(line) for line in lines) >= MIN_DOCUMENT_CHARS
        )
    )
    data = ("\n\n".join(documents) + "\n").encode("utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(out, data)
    return BuiltinStats(
        documents=len(documents),
        lines=sum(document.count("\n") + 1 for document in documents),
        bytes=len(data),
    )


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"rbprep's dependency {name} is not installed; reinstall rbprep")
    return Path(spec.origin).parent


def _module_documents(stdlib: Path) -> Iterator[list[str]]:
    for source in _module_sources(stdlib):
        try:
            tree = ast.parse(source.read_bytes())
        except (SyntaxError, ValueError):
            # Not Python this interpreter reads (Python 2, a NUL byte, a bad encoding).
            continue
        yield [line for docstring in _docstrings(tree) for line in _paragraph_lines(docstring)]


def _module_sources(stdlib: Path) -> list[Path]:
    sources = []
    for directory, subdirs, files in os.walk(stdlib):
        subdirs[:] = [name for name in subdirs if name not in _SKIPPED_DIRS]
        sources.extend(Path(directory, name) for name in files if name.endswith(".py"))
    # os.walk lists in file-system order; sorting makes the corpus the same on every machine.
    return sorted(sources, key=lambda source: source.relative_to(stdlib).as_posix())


def _docstrings(node: ast.AST) -> Iterator[str]:
    """Yield the cleaned docstrings of `node` and of the definitions inside it, in source order."""
    if isinstance(node, _DOCUMENTED_NODES):
        docstring = ast.get_docstring(node, clean=False)
        if docstring:
            yield inspect.cleandoc(docstring)
    for child in ast.iter_child_nodes(node):
        if isinstance(child, _STATEMENT_NODES):
            yield from _docstrings(child)


def _topic_documents() -> Iterator[list[str]]:
    for key in sorted(pydoc_topics):
        yield _paragraph_lines(inspect.cleandoc(pydoc_topics[key]))


def _paragraph_lines(text: str) -> list[str]:
    """Return `text` as corpus lines: one per prose paragraph, one per line of anything else.

    A paragraph's wrapped lines are joined with single spaces. Indented lines (code, quoted
    blocks, list continuations) stay one line each, and so does every line of a block from its
    first list item, table row or doctest prompt on, where the line breaks carry meaning.
    Decoration lines are dropped. Every line is stripped and free of control characters.
    """
    lines: list[str] = []
    paragraph: list[str] = []
    keep_line_breaks = False
    for raw_line in text.split("\n"):
        line = _UNWANTED_CHARS.sub(" ", raw_line).strip()
        if not line:
            keep_line_breaks = False  # a blank line ends the block
        elif _DECORATION.fullmatch(line):
            line = ""  # dropped, and like a blank line it ends the paragraph
        else:
            keep_line_breaks = keep_line_breaks or bool(_ITEM_START.match(line))
        if line and not keep_line_breaks and not raw_line[0].isspace():
            paragraph.append(line)
            continue
        # Anything but a prose line ends the paragraph: a blank or dropped line, or a line
        # that stays a line of its own.
        lines.extend(_joined(paragraph))
        paragraph.clear()
        if line:
            lines.append(line)
    lines.extend(_joined(paragraph))
    return lines


def _joined(paragraph: list[str]) -> list[str]:
    """Return the paragraph's lines as one line, runs of white space made single spaces."""
    return [" ".join(" ".join(paragraph).split())] if paragraph else []


def _write_atomically(path: Path, data: bytes) -> None:
    # A name of its own in the same directory: concurrent builders never write into one
    # temporary file, and os.replace is atomic only within one file system.
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        # Only left behind when writing failed; after os.replace the name no longer exists.
        temporary.unlink(missing_ok=True)
