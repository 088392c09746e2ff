"""rbprep's numba kernels compiled ahead of time, so that a run need not load numba.

Importing numba and loading ``rbprep.kernels`` from numba's cache costs every process
0.35-0.45 s of CPU, holding the GIL, and ~90 MB (LLVM): a quarter of ``shard`` on 15 MB
of text (README, "Performance"). ``numba.pycc`` compiles the same Python functions
(``kernels._pack_rows``, ``kernels._mask_rows`` and the other kernels ``SIGNATURES`` names,
with their callees) into an extension module that needs only numpy and imports in a
millisecond. Its code releases the GIL, as the JIT's ``nogil=True`` kernels do, and gives
the same results (``tests/test_aot.py`` and ``tests/test_kernels.py`` run both).

The module is built once per kernel source, numpy, Python and machine (``module_key``)
into ``default_cache_dir()/kernels/KEY/``: by ``make install``, by ``python -m
rbprep.aot``, or else by the first process that needs the kernels and finds none (about
ten seconds, in a child process, one process at a time). Where it cannot be built (no C
compiler, a numba without pycc) the reason is kept in ``KEY/FAILED`` and the kernels run
on numba's JIT, as they did before: the same code, slower to start. ``RBPREP_KERNELS=jit``
always chooses the JIT; ``python -m rbprep.aot`` builds again whatever is there.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from rbprep.cache import default_cache_dir

logger = logging.getLogger("rbprep")

MODULE_NAME = "_rbprep_kernels"
FAILED = "FAILED"
BUILD_TIMEOUT_S = 600
# What each compiled kernel takes and returns, in numba's signature syntax; ``ARGUMENTS``
# (below) says the same for the check that every call passes exactly these types: the
# compiled code trusts them, where numba's JIT dispatcher would compile for others.
SIGNATURES = {
    "pack_rows": "Tuple((i8[::1], u4[::1]))(u4[::1], i8[::1], b1[::1], i8, b1, u4, u4)",
    "mask_rows": (
        "Tuple((u2[::1], u2[:, :, ::1], u4[::1], i8[::1], i8[::1]))"
        "(i8[::1], u4[::1], b1[::1], u4[::1], b1[::1], u8, u8, u8[::1], u8[::1], i8, f8, f8,"
        " f8, i8, b1, u8)"
    ),
    "cut_at_breaks": "Tuple((i8[::1], u4[::1], b1))(u4[::1], i8[::1], i8[::1], u4)",
    "text_byte_counts": "Tuple((i8[::1], b1))(u4[::1], i8[::1], i8[::1])",
    "text_lines": "Tuple((i8[::1], i8[::1], i8[::1], b1[::1], b1))(u1[::1], i8)",
    "join_lines": (
        "Tuple((u1[::1], i8[::1], i8[::1]))(u1[::1], i8[::1], i8[::1], i8[::1], b1[::1], i8)"
    ),
    # The reader's checks at open, for ids of uint16 and of uint32 (the vocabulary's).
    "shard_invariants_u2": (
        "UniTuple(i8, 2)(i4[::1], u2[::1], i4[::1], u2[::1], u2[::1], i4[::1], u2[::1], i8, i8, i8)"
    ),
    "shard_invariants_u4": (
        "UniTuple(i8, 2)(i4[::1], u4[::1], i4[::1], u2[::1], u2[::1], i4[::1], u4[::1], i8, i8, i8)"
    ),
    "scan_words": "Tuple((b1[::1], i4[::1], i4[::1], i4[::1], i8[::1]))(u4[::1], i8[::1], b1[::1])",
    "place_pre_tokens": (
        "Tuple((i8[::1], i8[::1], i8))"
        "(u4[::1], u1[::1], b1[::1], i4[::1], i8[::1], i8[::1], i8[::1], i8[::1], b1[::1])"
    ),
    "place_by_bytes": (
        "Tuple((i8[::1], b1))(i8[::1], i8[::1], i8[::1], i8[::1], i4[::1], i4[::1], i4[::1])"
    ),
    # The round trip's table, of code points (WordPiece) and of bytes (byte-level).
    "spelled_u4": "b1[::1](i8[::1], i8[::1], u4[::1], i8[::1], u8[::1], i8, u4[::1], i8[::1])",
    "spelled_u1": "b1[::1](i8[::1], i8[::1], u1[::1], i8[::1], u8[::1], i8, u1[::1], i8[::1])",
}
# Exports of one kernel under several signatures: export name -> the kernel's name.
VARIANTS = {
    "shard_invariants_u2": "shard_invariants",
    "shard_invariants_u4": "shard_invariants",
    "spelled_u4": "spelled",
    "spelled_u1": "spelled",
}
_ARRAY = {
    "i8": np.int64,
    "i4": np.int32,
    "u4": np.uint32,
    "u2": np.uint16,
    "b1": np.bool_,
    "u8": np.uint64,
    "u1": np.uint8,
}
_SCALAR: dict[str, tuple[type, ...]] = {
    "i8": (int, np.integer),
    "b1": (bool, np.bool_),
    "u4": (np.uint32,),
    "u8": (np.uint64,),
    "f8": (float,),
}
ARGUMENTS = {  # kernel -> its arguments' types: "a:" a C-contiguous 1-D array, else a scalar
    "pack_rows": ("a:u4", "a:i8", "a:b1", "i8", "b1", "u4", "u4"),
    "mask_rows": (
        *("a:i8", "a:u4", "a:b1", "a:u4", "a:b1", "u8", "u8", "a:u8", "a:u8"),
        *("i8", "f8", "f8", "f8", "i8", "b1", "u8"),
    ),
    "cut_at_breaks": ("a:u4", "a:i8", "a:i8", "u4"),
    "text_byte_counts": ("a:u4", "a:i8", "a:i8"),
    "text_lines": ("a:u1", "i8"),
    "join_lines": ("a:u1", "a:i8", "a:i8", "a:i8", "a:b1", "i8"),
    "shard_invariants_u2": (
        *("a:i4", "a:u2", "a:i4", "a:u2", "a:u2", "a:i4", "a:u2", "i8", "i8", "i8"),
    ),
    "shard_invariants_u4": (
        *("a:i4", "a:u4", "a:i4", "a:u2", "a:u2", "a:i4", "a:u4", "i8", "i8", "i8"),
    ),
    "scan_words": ("a:u4", "a:i8", "a:b1"),
    "place_pre_tokens": ("a:u4", "a:u1", "a:b1", "a:i4", "a:i8", "a:i8", "a:i8", "a:i8", "a:b1"),
    "place_by_bytes": ("a:i8",) * 4 + ("a:i4",) * 3,
    "spelled_u4": ("a:i8", "a:i8", "a:u4", "a:i8", "a:u8", "i8", "a:u4", "a:i8"),
    "spelled_u1": ("a:i8", "a:i8", "a:u1", "a:i8", "a:u8", "i8", "a:u1", "a:i8"),
}

_loaded: list[ModuleType | None] = []  # this process's answer of ``compiled_kernels``, once
_loading = threading.Lock()


def module_key(sources: Sequence[bytes] | None = None) -> str:
    """The name of the compiled module's directory: a hash of what it is built from (the
    kernels' source and this file's), the numpy it is built against, the Python ABI and
    the machine. A change to any of them is a new module; an old one is never used."""
    if sources is None:
        here = Path(__file__).parent
        sources = [(here / "kernels.py").read_bytes(), (here / "aot.py").read_bytes()]
    digest = hashlib.sha256()
    for part in (
        *sources,
        np.__version__.encode(),
        importlib.machinery.EXTENSION_SUFFIXES[0].encode(),
        os.uname().machine.encode() if hasattr(os, "uname") else sys.platform.encode(),
    ):
        digest.update(len(part).to_bytes(8, "little") + part)
    return digest.hexdigest()[:24]


def module_dir(key: str | None = None) -> Path:
    """Where the compiled module for ``key`` (``module_key()``) lives."""
    return default_cache_dir() / "kernels" / (key or module_key())


def compiled_kernels() -> ModuleType | None:
    """The compiled kernels, built first where they are missing; None where the JIT is
    chosen (``RBPREP_KERNELS=jit``) or they cannot be built (the reason is logged once
    and kept in ``FAILED``). The answer is the same for the rest of the process."""
    if _loaded:
        return _loaded[0]
    with _loading:
        if not _loaded:
            _loaded.append(None if os.environ.get("RBPREP_KERNELS") == "jit" else _find())
        return _loaded[0]


def kernels_in_use() -> str | None:
    """``"compiled"`` or ``"jit"``: what ran this process's kernels; None where it ran
    none (its tasks ran in other processes). Never builds anything."""
    if not _loaded:
        return None
    return "jit" if _loaded[0] is None else "compiled"


def _find() -> ModuleType | None:
    try:
        directory = module_dir()
        module = _import(directory)
        built_here = False
        if module is None and not (directory / FAILED).exists():
            with _build_lock(directory):
                module = _import(directory)  # built meanwhile by another process
                if module is None and not (directory / FAILED).exists():
                    _build_in_child(directory)
                    built_here = True
                    module = _import(directory)
        if module is None and (directory / FAILED).exists():
            # Said as a warning by the process that tried, and quietly after that.
            logger.log(
                logging.WARNING if built_here else logging.INFO,
                "rbprep's compiled kernels could not be built (%s); numba's JIT runs them, "
                "0.4 s more per process; `python -m rbprep.aot` tries again",
                (directory / FAILED).read_text(errors="replace").strip(),
            )
        return module
    except (OSError, ImportError) as exc:  # an unwritable cache, a damaged module: the JIT
        logger.info("rbprep's compiled kernels are not usable (%s); numba's JIT runs them", exc)
        return None


def _import(directory: Path) -> ModuleType | None:
    path = directory / (MODULE_NAME + importlib.machinery.EXTENSION_SUFFIXES[0])
    if not path.is_file():
        return None
    loader = importlib.machinery.ExtensionFileLoader(MODULE_NAME, str(path))
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@contextlib.contextmanager
def _build_lock(directory: Path) -> Iterator[None]:
    """Held while one process builds: others wait for its module rather than build too."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f"{directory.name}.lock", "a+b") as lock:
        try:
            import fcntl
        except ImportError:  # Windows: builds may run twice; each rename is atomic
            yield
            return
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_in_child(directory: Path) -> None:
    """Build into ``directory`` in a child process (the build patches numba and prints
    the compiler's output); where it fails, write its reason to ``directory/FAILED``."""
    import subprocess

    logger.warning(  # a pause the user should not have to guess at
        "compiling rbprep's kernels, once for this rbprep and numpy: about ten seconds (%s)",
        directory,
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "rbprep.aot", "--into", str(directory)],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            env={**os.environ, "RBPREP_KERNELS": "jit", "PYTHONPATH": _python_path()},
        )
        failure = None if done.returncode == 0 else (done.stderr or done.stdout).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        failure = str(exc)
    if failure is not None and not (directory / FAILED).exists():  # the child died first
        directory.mkdir(parents=True, exist_ok=True)
        (directory / FAILED).write_text((failure.splitlines() or ["no output"])[-1] + "\n")


def _python_path() -> str:
    """PYTHONPATH for the child: this rbprep first, wherever it was imported from."""
    here = str(Path(__file__).resolve().parent.parent)
    return os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])


def build(directory: Path) -> Path:
    """Compile the kernels into ``directory`` (replacing what is there); return the path
    of the module. Needs numba's ``pycc`` and a C compiler."""
    import shutil
    import tempfile

    import numba.pycc.compiler as pycc_compiler
    from numba.core.compiler import Flags
    from numba.pycc import CC

    from rbprep import kernels

    class ReleasingGil(Flags):  # pycc has no nogil option; its wrappers take these flags
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.release_gil = True

    kernels.use_jit()  # the kernels as numba functions, for pycc to compile
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        compiler = CC(MODULE_NAME)
        compiler.output_dir = str(staging)
        compiler.verbose = False
        for name, signature in SIGNATURES.items():
            function = getattr(kernels, f"_{VARIANTS.get(name, name)}").py_func
            compiler.export(name, signature)(function)
        original = pycc_compiler.Flags
        pycc_compiler.Flags = ReleasingGil
        try:
            compiler.compile()
        finally:
            pycc_compiler.Flags = original
        built = staging / (MODULE_NAME + importlib.machinery.EXTENSION_SUFFIXES[0])
        if not built.is_file():
            raise RuntimeError(f"numba.pycc wrote no {built.name}")
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(staging, directory)  # whole, or not at all
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory / built.name


def as_arguments(name: str, args: Sequence[Any]) -> tuple[Any, ...]:
    """``args`` with each array made the C-contiguous dtype the compiled ``name`` takes
    (``ARGUMENTS``), copying only where it is not already; scalars pass as they are."""
    expected = ARGUMENTS[name]
    if len(args) != len(expected):
        raise TypeError(f"{name} takes {len(expected)} arguments, got {len(args)}")
    return tuple(
        np.ascontiguousarray(value, _ARRAY[kind[2:]]) if kind.startswith("a:") else value
        for kind, value in zip(expected, args, strict=True)
    )


def check_arguments(name: str, args: Sequence[Any]) -> None:
    """Raise TypeError unless ``args`` are exactly the types the compiled ``name`` takes
    (``ARGUMENTS``): the compiled code does not check them, and other types crash it."""
    expected = ARGUMENTS[name]
    if len(args) != len(expected):
        raise TypeError(f"{name} takes {len(expected)} arguments, got {len(args)}")
    for index, (kind, value) in enumerate(zip(expected, args, strict=True)):
        if kind.startswith("a:"):
            ok = (
                isinstance(value, np.ndarray)
                and value.dtype == _ARRAY[kind[2:]]
                and value.ndim == 1
                and value.flags.c_contiguous
            )
        else:
            ok = isinstance(value, _SCALAR[kind])
        if not ok:
            raise TypeError(f"{name}: argument {index} is not {kind}: {type(value).__name__}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rbprep.aot [--into DIR]``: build the compiled kernels (again); where
    that fails, say why on one line and keep it in ``DIR/FAILED``."""
    args = list(sys.argv[1:] if argv is None else argv)
    child = args[:1] == ["--into"] and len(args) == 2  # _build_in_child's: it holds the lock
    directory = Path(args[1]) if child else module_dir()
    try:
        with contextlib.nullcontext() if child else _build_lock(directory):
            path = build(directory)
    except Exception as exc:  # any failure leaves the JIT in use; say why
        reason = (
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )
        directory.mkdir(parents=True, exist_ok=True)
        (directory / FAILED).write_text(reason + "\n")
        print(f"rbprep: the kernels could not be compiled ({reason}); numba's JIT runs them")
        return 1
    print(f"rbprep: compiled kernels in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
