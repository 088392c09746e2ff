"""The README stays true: its command reference is ``--help`` verbatim, and its Python
snippets run. ``make readme`` rewrites the reference after a help text changes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from rbprep.cli import main
from tests.formats_support import import_streaming

README = Path(__file__).resolve().parent.parent / "README.md"
HELP_BLOCK = re.compile(r"(<!-- help: (?P<command>[\w -]*) -->\n```text\n)(.*?)(```\n)", re.S)


def _help(command: str) -> str:
    args = [*command.split(), "--help"] if command else ["--help"]
    result = CliRunner().invoke(main, args, terminal_width=88)
    assert result.exit_code == 0
    return result.output.replace("Usage: main", "Usage: rbprep")


def test_command_reference_is_current_help():
    text = README.read_text()
    updated = HELP_BLOCK.sub(lambda m: m.group(1) + _help(m.group("command")) + m.group(4), text)
    if os.environ.get("RBPREP_UPDATE_README"):
        README.write_text(updated)
        text = updated
    commands = {m.group("command") for m in HELP_BLOCK.finditer(text)}
    assert commands >= {"", "train-vocab", "demo"}
    assert updated == text, "README command reference is stale: run `make readme`"


def test_python_snippets_run(tmp_path, monkeypatch, builtin_corpus):
    # The trainers' snippets import their readers (streaming with the tests' torchvision
    # stub where torchvision is absent: tests/formats_support.py).
    pytest.importorskip("megatron.core")
    pytest.importorskip("accelerate")
    import_streaming()
    monkeypatch.setenv("RBPREP_CACHE_DIR", str(builtin_corpus.parent))
    monkeypatch.chdir(tmp_path)
    snippets = re.findall(r"```python\n(.*?)```\n", README.read_text(), re.S)
    assert snippets
    namespace: dict = {}  # the snippets build on each other, as in a session
    for snippet in snippets:
        exec(compile(snippet, str(README), "exec"), namespace)


@pytest.mark.parametrize("target", ["install", "test", "demo"])
def test_makefile_has_the_targets_the_readme_names(target):
    makefile = (README.parent / "Makefile").read_text()
    assert re.search(rf"^{target}:", makefile, re.M)
    assert f"make {target}" in README.read_text()
