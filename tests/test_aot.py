"""The kernels compiled ahead of time (rbprep.aot): built, found, refused when stale or
given other types, and the fallback to numba's JIT where they cannot be built.
test_kernels.py runs its comparisons with tests/naive.py on both backends."""

from __future__ import annotations

import contextlib
import importlib.machinery
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rbprep import aot, kernels

BACKENDS = ("compiled", "jit")
ROOT = Path(__file__).resolve().parents[1]


def compiled_module():
    """This process's compiled kernels; a failure where they should exist (CI builds them
    in ``make install``, and ``compiled_kernels`` builds them where missing)."""
    module = aot.compiled_kernels()
    if module is None:
        if os.environ.get("RBPREP_KERNELS") == "jit":
            pytest.skip("RBPREP_KERNELS=jit chooses numba's JIT")
        pytest.fail(f"no compiled kernels: see {aot.module_dir() / aot.FAILED}")
    return module


@contextlib.contextmanager
def kernels_of(backend: str) -> Iterator[None]:
    """Run ``kernels.pack_rows`` and ``kernels.mask_rows`` on ``backend`` meanwhile."""
    chosen = compiled_module() if backend == "compiled" else None
    aot.compiled_kernels()  # this process's own answer, put back afterwards
    saved = list(aot._loaded)
    aot._loaded[:] = [chosen]
    try:
        yield
    finally:
        aot._loaded[:] = saved


def test_arguments_of_other_types_are_refused_not_run():
    """The compiled code trusts its arguments' types (another dtype crashes it): every call
    is checked first."""
    ids = np.arange(10, dtype=np.uint32)
    args = [ids, np.array([4, 6]), np.array([True, False]), 8, True, np.uint32(0), np.uint32(2)]
    aot.check_arguments("pack_rows", args)
    for index, wrong in [
        (0, ids.astype(np.int64)),
        (0, ids[::2]),
        (0, ids.reshape(2, 5)),
        (1, [4, 6]),
        (5, 0),
        (3, 8.0),
    ]:
        with pytest.raises(TypeError, match=f"argument {index}"):
            aot.check_arguments("pack_rows", [*args[:index], wrong, *args[index + 1 :]])
    with pytest.raises(TypeError, match="takes 7"):
        aot.check_arguments("pack_rows", args[:6])


def test_as_arguments_gives_each_array_the_declared_dtype_and_passes_what_is():
    """Arrays of other dtypes, lists and strided views become the C-contiguous dtype
    ``ARGUMENTS`` declares, so ``check_arguments`` accepts them; an array already right is
    passed through uncopied, and scalars are left alone."""
    ids = np.arange(10, dtype=np.uint32)
    given = [ids, [4, 6], np.array([1, 0, 1, 0])[::2], 8, True, np.uint32(0), np.uint32(2)]
    made = aot.as_arguments("pack_rows", given)
    aot.check_arguments("pack_rows", made)
    assert made[0] is ids
    np.testing.assert_array_equal(made[1], [4, 6])
    np.testing.assert_array_equal(made[2], [True, True])
    assert made[3:] == tuple(given[3:])
    with pytest.raises(TypeError, match="takes 7"):
        aot.as_arguments("pack_rows", given[:6])


def test_the_public_kernels_give_the_compiled_code_only_its_types():
    """pack_rows and mask_rows turn what callers pass (lists, other integer dtypes, Python
    scalars) into exactly the compiled signature's types, and give the JIT's results."""
    for backend in BACKENDS:
        with kernels_of(backend):
            offsets, tokens = kernels.pack_rows(
                np.arange(10, 20, dtype=np.int64), [4, 6], [1, 0], 8, 1, 0, 2
            )
            special = np.zeros(30, bool)
            special[:5] = True
            masks = kernels.mask_rows(
                offsets,
                tokens,
                special,
                np.arange(5, 30),
                special,
                1,
                0,
                3,
                0,
                2,
                0.5,
                0.2,
                0.2,
                4,
                1,
            )
        if backend == "compiled":
            compiled = (offsets, tokens, *masks)
        else:
            for got, expected in zip(compiled, (offsets, tokens, *masks), strict=True):
                assert got.dtype == expected.dtype
                np.testing.assert_array_equal(got, expected)


def test_a_change_to_the_kernels_is_a_new_module():
    here = ROOT / "rbprep"
    sources = [(here / "kernels.py").read_bytes(), (here / "aot.py").read_bytes()]
    assert aot.module_key(sources) == aot.module_key()
    assert aot.module_key([sources[0] + b"\n", sources[1]]) != aot.module_key()
    assert aot.module_key([sources[0], sources[1] + b"#"]) != aot.module_key()
    assert aot.module_key(sources[::-1]) != aot.module_key()


def run_python(script: str, cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "RBPREP_CACHE_DIR": str(cache), **env}
    environment.pop("RBPREP_KERNELS", None)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )


PACK_AND_REPORT = """
import json, sys
import numpy as np
from rbprep import aot, kernels
offsets, tokens = kernels.pack_rows(np.arange(10, 20), [4, 6], [True, True], 8, True, 0, 2)
print(json.dumps([offsets.tolist(), tokens.tolist(), aot.compiled_kernels() is not None,
                  "numba" in sys.modules]))
"""


def test_kernels_that_cannot_be_built_run_on_the_jit_and_are_not_tried_again(tmp_path):
    """No C compiler: the build fails once, says why in FAILED, and every process then runs
    the JIT, with the same results, without trying again."""
    expected = [[0, 6, 14], [0, 10, 11, 12, 13, 2, 0, 14, 15, 16, 17, 18, 19, 2]]
    said = []
    for _ in range(2):
        out = run_python(PACK_AND_REPORT, tmp_path, CC="/nonexistent/cc")
        assert json.loads(out.stdout) == [*expected, False, True]
        said.append(out.stderr)
    # The process that tried says so (the pause, then why); the next one says nothing.
    assert "compiling rbprep's kernels" in said[0] and "could not be built" in said[0]
    assert said[1] == ""
    (failed,) = (tmp_path / "kernels").glob(f"*/{aot.FAILED}")
    assert "compile" in failed.read_text()
    assert not list((tmp_path / "kernels").glob("*/*.so"))


def test_a_damaged_module_runs_the_jit(tmp_path):
    """A module file that does not load (cut short, say) is not used: the JIT runs."""
    directory = tmp_path / "kernels" / aot.module_key()
    directory.mkdir(parents=True)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (directory / f"{aot.MODULE_NAME}{suffix}").write_bytes(b"\x7fELF and then nothing")
    out = run_python(PACK_AND_REPORT, tmp_path)
    assert json.loads(out.stdout)[2:] == [False, True]


def test_an_unwritable_cache_runs_the_jit(tmp_path):
    (tmp_path / "cache").write_text("a file, where the cache directory would be")
    out = run_python(PACK_AND_REPORT, tmp_path / "cache")
    assert json.loads(out.stdout)[2:] == [False, True]


@pytest.mark.slow
def test_the_first_shard_builds_the_kernels_and_no_run_then_loads_numba(
    tmp_path, small_corpus, small_vocab
):
    """A fresh cache: the first run builds the compiled kernels in a child process (this
    one never imports numba), the next finds them; both write the same shards as the JIT."""
    script = f"""
import json, sys
from rbprep.sharding import ShardConfig, shard
out = sys.argv[1]
summary = shard(
    [{str(small_corpus)!r}], {str(small_vocab / "bpe")!r}, out, ShardConfig(), force=True
)
print(json.dumps(["numba" in sys.modules, summary.extra["kernels"]]))
"""
    outputs = []
    for name, env in [("first", {}), ("second", {}), ("jit", {"RBPREP_KERNELS": "jit"})]:
        out = tmp_path / name
        environment = {**os.environ, "RBPREP_CACHE_DIR": str(tmp_path / "cache"), **env}
        if not env:
            environment.pop("RBPREP_KERNELS", None)
        done = subprocess.run(
            [sys.executable, "-c", script, str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=environment,
            check=True,
        )
        jit = name == "jit"
        assert json.loads(done.stdout) == [jit, "jit" if jit else "compiled"]
        outputs.append({p.relative_to(out): p.read_bytes() for p in out.glob("*/*.arrow")})
    assert len(list((tmp_path / "cache" / "kernels").glob("*/*.so"))) == 1
    assert outputs[0] and outputs[0] == outputs[1] == outputs[2]


@pytest.mark.slow
def test_processes_starting_together_build_the_kernels_once(tmp_path):
    """Three processes on a fresh cache (a process pool or Dask workers starting): one
    builds, the others wait for its module; all run compiled kernels."""
    environment = {**os.environ, "RBPREP_CACHE_DIR": str(tmp_path)}
    environment.pop("RBPREP_KERNELS", None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PACK_AND_REPORT],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [process.communicate(timeout=600) for process in processes]
    assert all(process.returncode == 0 for process in processes)
    for stdout, _ in results:
        assert json.loads(stdout)[2:] == [True, False]  # compiled, numba never imported
    assert sum("compiling rbprep's kernels" in stderr for _, stderr in results) == 1
    assert len(list((tmp_path / "kernels").glob("*/*.so"))) == 1
