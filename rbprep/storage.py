"""Where rbprep reads and writes: local paths, or URIs that pyarrow's file systems reach.

A location is a local path or a URI such as ``s3://bucket/corpus`` (also ``gs://``,
``abfs://``, ``hdfs://``; ``file://`` is a local path). Options for the file system go in
the URI's query, as pyarrow reads them (``s3://bucket/x?region=eu-west-1``,
``?endpoint_override=host:9000&scheme=http`` for an S3-compatible store); credentials
come from the environment, as each store's own tools expect. Every file below a URI is
named by a URI with the same query, so a worker process can reopen it from the name.

Writes are atomic: a local file is written under a temporary name, fsynced and renamed;
an object store (S3, GCS, Azure) shows an object only once its upload completes, so an
object is written in one upload under its own name; other remote file systems get a
temporary name and a move.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import io
import json
import os
import queue
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from rbprep.errors import RbprepError

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
_OBJECT_STORES = frozenset({"s3", "gcs", "abfs"})
# A lock on a remote --out is an object that its run rewrites every _LOCK_REFRESH
# seconds; one not rewritten for _LOCK_STALE seconds belongs to a run that died.
_LOCK_REFRESH = 30.0
_LOCK_STALE = 120.0


def is_uri(location: str | os.PathLike) -> bool:
    """True for a remote URI (``s3://...``); False for a local path or a ``file://`` URI."""
    text = os.fspath(location)
    return bool(_URI.match(text)) and not text.lower().startswith("file://")


def local_path(location: str | os.PathLike) -> str:
    """A local path for ``location`` (a path, or a ``file://`` URI)."""
    text = os.fspath(location)
    if text.lower().startswith("file://"):
        return unquote(urlsplit(text).path)
    return text


@functools.lru_cache(maxsize=64)
def _filesystem(origin: str, query: str) -> tuple[Any, str]:
    """(file system, the path of the URI's root on it) for ``scheme://netloc`` + query."""
    import pyarrow.fs as pafs

    filesystem, root = pafs.FileSystem.from_uri(f"{origin}/{query}")
    return filesystem, root.rstrip("/")


def check_output_directory(location: str | os.PathLike, option: str = "--out") -> None:
    """Refuse, in one line, an output directory whose path a file already holds."""
    if Location(location).kind() == "file":
        raise RbprepError(f"{location}: exists and is not a directory; choose another {option}")


class Location:
    """A file or folder: a local path, or a path on a pyarrow file system with its URI."""

    def __init__(self, location: str | os.PathLike):
        text = os.fspath(location)
        self.remote = is_uri(text)
        if not self.remote:
            self.filesystem, self._origin, self._root, self._query = None, "", "", ""
            self.path = os.path.abspath(local_path(text))
            return
        parts = urlsplit(text)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._query = f"?{parts.query}" if parts.query else ""
        try:
            self.filesystem, self._root = _filesystem(self._origin, self._query)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ValueError
            raise RbprepError(
                f"{text}: not a location pyarrow's file systems reach ({exc}); use a local "
                "path or a URI such as s3://bucket/path"
            ) from exc
        inner = unquote(parts.path).strip("/")
        if any(segment in (".", "..") for segment in inner.split("/")):
            raise RbprepError(f"{text}: a URI's path may not hold '.' or '..' segments")
        self.path = f"{self._root}/{inner}".rstrip("/") if inner else self._root

    def __str__(self) -> str:
        if not self.remote:
            return self.path
        inner = self.path[len(self._root) :].strip("/")
        return f"{self._origin}/{inner}{self._query}"

    def __repr__(self) -> str:
        return f"Location({str(self)!r})"

    def with_path(self, path: str) -> Location:
        other = Location.__new__(Location)
        other.__dict__.update(self.__dict__)
        other.path = path
        return other

    def child(self, name: str) -> Location:
        """The location ``name`` (``/``-separated) below this one."""
        if not self.remote:
            return Location(os.path.join(self.path, *name.split("/")))
        return self.with_path(f"{self.path}/{name.strip('/')}")

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1] if self.remote else os.path.basename(self.path)

    @property
    def stem(self) -> str:
        """The name without its last suffix."""
        name = self.name
        return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name

    @property
    def parent(self) -> Location:
        if not self.remote:
            return Location(os.path.dirname(self.path))
        return self.with_path(self.path.rsplit("/", 1)[0])

    # --- reading ----------------------------------------------------------------------

    def kind(self) -> str:
        """``"file"``, ``"directory"`` or ``"missing"``."""
        if not self.remote:
            if os.path.isdir(self.path):
                return "directory"
            return "file" if os.path.exists(self.path) else "missing"
        import pyarrow.fs as pafs

        kind = self.filesystem.get_file_info(self.path).type
        if kind == pafs.FileType.Directory:
            return "directory"
        return "file" if kind == pafs.FileType.File else "missing"

    def exists(self) -> bool:
        return self.kind() != "missing"

    def size(self) -> int:
        if not self.remote:
            return os.stat(self.path).st_size
        return self.filesystem.get_file_info(self.path).size

    def open(self) -> BinaryIO:
        """Open for reading: seekable, buffered (``readline`` works)."""
        if not self.remote:
            return open(self.path, "rb")
        return io.BufferedReader(self.filesystem.open_input_file(self.path), 1 << 20)

    def read_bytes(self) -> bytes:
        with self.open() as file:
            return file.read()

    def read_json(self) -> Any:
        return json.loads(self.read_bytes())

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with self.open() as file:
            while block := file.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()

    def arrow_file(self) -> Any:
        """An Arrow random-access file: memory-mapped when local."""
        import pyarrow as pa

        if not self.remote:
            return pa.memory_map(self.path)
        return self.filesystem.open_input_file(self.path)

    def entries(self) -> list[str]:
        """The names of the files and folders directly in this folder, sorted."""
        if not self.remote:
            return sorted(os.listdir(self.path)) if os.path.isdir(self.path) else []
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.path, allow_not_found=True)
        return sorted(info.base_name for info in self.filesystem.get_file_info(selector))

    def files(self, recursive: bool = False) -> list[Location]:
        """The files below this folder (none if it is missing), sorted by path."""
        if not self.remote:
            if not os.path.isdir(self.path):
                return []
            if not recursive:
                return [
                    Location(entry.path)
                    for entry in sorted(os.scandir(self.path), key=lambda e: e.name)
                    if entry.is_file()
                ]
            return sorted(
                (Location(os.path.join(d, f)) for d, _, fs in os.walk(self.path) for f in fs),
                key=lambda location: location.path,
            )
        import pyarrow.fs as pafs

        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=recursive)
        found = [
            self.with_path(info.path.rstrip("/"))
            for info in self.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File
        ]
        return sorted(found, key=lambda location: location.path)

    # --- writing ----------------------------------------------------------------------

    def make_directory(self) -> None:
        if self.remote:
            self.filesystem.create_dir(self.path, recursive=True)
        else:
            os.makedirs(self.path, exist_ok=True)

    def write_atomically(self, data: bytes | Any) -> None:
        """Write ``data`` (bytes or a pyarrow Buffer) so that the file is whole or absent."""
        if not self.remote:
            temporary = f"{self.path}.tmp"
            with open(temporary, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        elif self.filesystem.type_name in _OBJECT_STORES:
            with self.filesystem.open_output_stream(self.path) as stream:
                stream.write(data)
        else:
            temporary = f"{self.path}.tmp"
            with self.filesystem.open_output_stream(temporary) as stream:
                stream.write(data)
            self.filesystem.move(temporary, self.path)

    def write_chunks_atomically(self, chunks: Iterable[bytes]) -> int:
        """Write the concatenation of ``chunks`` as ``write_atomically`` does, one chunk
        in memory at a time; return the size written."""
        size = 0
        if not self.remote:
            temporary = f"{self.path}.tmp"
            with open(temporary, "wb") as file:
                for chunk in chunks:
                    size += file.write(chunk)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
            return size
        direct = self.filesystem.type_name in _OBJECT_STORES
        target = self.path if direct else f"{self.path}.tmp"
        with self.filesystem.open_output_stream(target) as stream:
            for chunk in chunks:
                stream.write(chunk)
                size += len(chunk)
        if not direct:
            self.filesystem.move(target, self.path)
        return size

    def write_json(self, data: Any) -> None:
        self.write_atomically(json_bytes(data))

    def delete(self) -> None:
        """Remove this file or folder (with what it holds); missing is fine."""
        kind = self.kind()
        if kind == "missing":
            return
        if not self.remote:
            if kind == "directory":
                shutil.rmtree(self.path)
            else:
                os.unlink(self.path)
        elif kind == "directory":
            self.filesystem.delete_dir(self.path)
        else:
            self.filesystem.delete_file(self.path)

    @contextlib.contextmanager
    def lock(self, refused: str) -> Iterator[None]:
        """Hold the lock file ``self`` for the block; raise ``RbprepError(refused)`` if a
        live run holds it. Local: an flock, released by the kernel when the process dies.
        Remote: an object naming its run, refreshed while the block runs; one left by a
        run that died is taken over once stale (a race of two runs starting within the
        same second is not excluded: object stores have no exclusive create here)."""
        if not self.remote:
            with open(self.path, "w") as file:
                try:
                    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError as exc:
                    raise RbprepError(refused) from exc
                yield
            return
        yield from self._remote_lock(refused)

    def _remote_lock(self, refused: str) -> Iterator[None]:
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "run": uuid.uuid4().hex}
        if self.exists():
            try:
                held = self.read_json()
            except (OSError, ValueError):
                held = {"time": 0}
            if time.time() - float(held.get("time", 0)) < _LOCK_STALE:
                raise RbprepError(refused)
        self.write_json({**owner, "time": time.time()})
        stop = threading.Event()

        def refresh() -> None:
            while not stop.wait(_LOCK_REFRESH):
                self.write_json({**owner, "time": time.time()})

        refresher = threading.Thread(target=refresh, daemon=True)
        refresher.start()
        try:
            yield
        finally:
            stop.set()
            refresher.join()
            self.delete()


def json_bytes(data: Any) -> bytes:
    """``data`` as rbprep writes JSON files: indented, with a final line end."""
    return (json.dumps(data, indent=2) + "\n").encode()


class WriteBehind:
    """Atomic writes (``Location.write_atomically``) done on a thread of their own, in
    the order given, while the caller goes on.

    A local write blocks its thread in fsync until the disk holds the data: 3 ms a file,
    0.33 thread-seconds of shard on 67 MB, with a core idle meanwhile. Each batch is
    written in its order, so a partition's marker, given after its shards, names only
    synced files.
    ``submit`` waits while ``backlog`` batches are queued, which bounds the memory held.
    A write that fails stops all later ones and is raised by the next ``submit`` or
    ``wait``. Use it as a context manager: leaving it waits for what is queued.
    """

    def __init__(self, backlog: int = 2) -> None:
        # Batches to write, an Event to set once those before it are written, or None: stop.
        self._queue: queue.Queue[list[tuple[Location, Any]] | threading.Event | None] = queue.Queue(
            backlog
        )
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, name="rbprep-write", daemon=True)
        self._thread.start()

    def submit(self, batch: Sequence[tuple[Location, bytes | Any]]) -> None:
        """Queue ``batch``'s (location, bytes or pyarrow Buffer) writes, in order."""
        self._raise_error()
        self._queue.put(list(batch))

    def wait(self) -> None:
        """Return once every batch queued so far is written; raise a write's failure."""
        written = threading.Event()
        self._queue.put(written)
        written.wait()
        self._raise_error()

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        self._queue.put(None)
        self._thread.join()
        if kind is None:
            self._raise_error()

    def _write(self) -> None:
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
                continue
            if self._error is not None:
                continue
            try:
                for location, data in item:
                    location.write_atomically(data)
            except BaseException as exc:  # raised in the caller's thread instead
                self._error = exc

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error
