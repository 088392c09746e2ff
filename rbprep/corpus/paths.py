"""Turn CORPUS arguments (files, directories, globs) into a sorted list of input files."""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from rbprep.errors import RbprepError
from rbprep.storage import Location, is_uri, local_path

TEXT_FORMATS = (".txt", ".jsonl", ".parquet")
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class InputFile:
    """One corpus file: its path, text format and compression (``None`` if plain)."""

    path: str
    format: str  # "txt" | "jsonl" | "parquet"
    compression: str | None  # "gzip" | "bz2" | "xz" | "zstd" | None


@dataclass(frozen=True)
class SkippedInput:
    """A path that contributes no text, with the reason counted in summaries."""

    path: str
    reason: str  # "unknown_format" | "unreadable" | "binary" | "corrupt"
    detail: str


def classify(path: str) -> InputFile | None:
    """Return the format and compression that ``path``'s suffixes name, or ``None``."""
    name = os.path.basename(urlsplit(path).path if is_uri(path) else path).lower()
    compression = None
    for suffix, kind in COMPRESSIONS.items():
        if name.endswith(suffix):
            compression = kind
            name = name[: -len(suffix)]
            break
    for suffix in TEXT_FORMATS:
        # Parquet compresses internally; a compressed parquet file is not a format we read.
        if name.endswith(suffix) and not (suffix == ".parquet" and compression):
            return InputFile(path, suffix[1:], compression)
    return None


def resolve_corpus(args: Sequence[str | os.PathLike]) -> tuple[list[InputFile], list[SkippedInput]]:
    """Expand CORPUS arguments into input files in sorted path order.

    Each argument is a file, a directory (walked recursively, following directory
    symlinks but never into a directory twice) or a glob pattern. Paths are made
    absolute without resolving symlinks, deduplicated and sorted, so a corpus always
    means the same document order. Files that cannot be read as a corpus are returned
    as skipped inputs; an argument that names nothing raises ``RbprepError``.

    An argument may also be a URI that pyarrow's file systems reach (``s3://bucket/dir``,
    see ``rbprep.storage``): a file, a folder (every file below it) or a pattern whose
    ``*``, ``?`` and ``[...]`` match within one path segment; its files are named by URIs.
    """
    found: dict[str, None] = {}
    skipped: list[SkippedInput] = []
    for arg in args:
        text = os.fspath(arg)
        if is_uri(text):
            for location in _remote_files(text):
                found[str(location)] = None
            continue
        text = local_path(text)
        if os.path.lexists(text):
            matches = [text]
        elif _GLOB_CHARS & set(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise RbprepError(f"{text}: the pattern matches no file; check the pattern")
        else:
            raise RbprepError(f"{text}: no such file or directory; check the path")
        for match in matches:
            for path in _expand(os.path.abspath(match), skipped):
                found[path] = None

    files: list[InputFile] = []
    for path in sorted(found):
        input_file = classify(path)
        if input_file is None:
            skipped.append(
                SkippedInput(
                    path, "unknown_format", "not .txt, .jsonl or .parquet (+ .gz/.bz2/.xz/.zst)"
                )
            )
        else:
            files.append(input_file)
    skipped.sort(key=lambda s: s.path)
    return files, skipped


def _remote_files(uri: str) -> list[Location]:
    location = Location(uri)
    kind = location.kind()
    if kind == "file":
        return [location]
    if kind == "directory":
        return location.files(recursive=True)
    if not _GLOB_CHARS & set(location.path):
        raise RbprepError(f"{uri}: no such file or folder; check the URI")
    segments = location.path.split("/")
    fixed = next(i for i, segment in enumerate(segments) if _GLOB_CHARS & set(segment))
    folder = location.with_path("/".join(segments[:fixed]))
    matches = [
        match
        for match in folder.files(recursive=True)
        if len(parts := match.path.split("/")) == len(segments)
        and all(map(fnmatch.fnmatchcase, parts, segments))
    ]
    if not matches:
        raise RbprepError(f"{uri}: the pattern matches no file; check the pattern")
    return matches


def _expand(path: str, skipped: list[SkippedInput]) -> Iterable[str]:
    """Yield the regular files at or below ``path``; record what cannot be read."""
    try:
        info = os.stat(path)
    except OSError as exc:
        skipped.append(SkippedInput(path, "unreadable", _describe_os_error(exc)))
        return
    if stat.S_ISDIR(info.st_mode):
        yield from _walk(path, skipped)
    elif stat.S_ISREG(info.st_mode):
        yield path
    else:
        skipped.append(SkippedInput(path, "unreadable", "not a regular file"))


def _walk(top: str, skipped: list[SkippedInput]) -> Iterable[str]:
    visited: set[tuple[int, int]] = set()

    def on_error(exc: OSError) -> None:
        skipped.append(SkippedInput(exc.filename or top, "unreadable", _describe_os_error(exc)))

    for dirpath, dirnames, filenames in os.walk(top, onerror=on_error, followlinks=True):
        info = os.stat(dirpath)
        key = (info.st_dev, info.st_ino)
        if key in visited:
            # A directory symlink loop (or a second link to a walked directory):
            # its files are already in the corpus once.
            dirnames.clear()
            continue
        visited.add(key)
        dirnames.sort()
        for name in sorted(filenames):
            yield from _expand(os.path.join(dirpath, name), skipped)


def _describe_os_error(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    return exc.strerror or str(exc)
