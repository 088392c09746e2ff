"""The command line: help, version, summaries, and bad input without tracebacks."""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from rbprep.cli import main
from tests.conftest import SMALL_TEXT

SMALL_SIZES = ["--bpe-size", "400", "--wordpiece-size", "300", "--min-frequency", "1"]


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_version_and_python_dash_m():
    from rbprep import __version__

    assert run("--version").output.strip() == f"rbprep, version {__version__}"
    result = subprocess.run(
        [sys.executable, "-m", "rbprep", "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in result.stdout
    # The program (rbprep.cli.run) keeps Click's exit codes: 1 for a user error.
    failed = subprocess.run(
        [sys.executable, "-m", "rbprep", "inspect", "/nonexistent/data"],
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 1 and failed.stderr.count("\n") == 1, failed.stderr
    scripts = importlib.metadata.entry_points(group="console_scripts")
    assert scripts["rbprep"].value == "rbprep.cli:run"


@pytest.mark.parametrize("command", [[], ["train-vocab"], ["demo"]])
def test_every_command_has_help_with_an_example(command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output


def test_importing_the_cli_loads_no_heavy_dependency():
    code = (
        "import sys, rbprep, rbprep.cli; "
        "print(sorted(m for m in ('torch', 'dask', 'matplotlib', 'transformers') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_train_vocab_prints_a_summary(small_corpus, tmp_path):
    result = run("train-vocab", small_corpus, "--out", tmp_path / "v", *SMALL_SIZES, "--quiet")
    assert result.exit_code == 0, result.output
    assert "Trained on" in result.output and "3 documents" in result.output
    assert "bpe" in result.output and "wordpiece" in result.output
    assert (tmp_path / "v" / "bpe" / "tokenizer.json").exists()
    assert (tmp_path / "v" / "wordpiece" / "vocab.txt").exists()


def test_train_vocab_json(small_corpus, tmp_path):
    result = run(
        "train-vocab", small_corpus, "--out", tmp_path / "v", *SMALL_SIZES, "--json", "--quiet"
    )
    summary = json.loads(result.stdout)
    assert summary["documents_used"] == 3
    assert [t["kind"] for t in summary["tokenizers"]] == ["bpe", "wordpiece"]
    assert summary["config"]["bpe_size"] == 400
    assert summary == json.loads((tmp_path / "v" / "train-vocab.json").read_text())


def test_train_vocab_refuses_a_non_empty_out(small_corpus, tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "x").write_text("x")
    result = run("train-vocab", small_corpus, "--out", tmp_path / "v", *SMALL_SIZES)
    assert result.exit_code == 1
    assert "--force" in result.output


@pytest.fixture
def damaged_corpus(tmp_path):
    """One good file beside one of each kind of bad input."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text(SMALL_TEXT)
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02" * 100)
    data = gzip.compress(b"lots of text\n" * 10_000)
    (corpus / "truncated.txt.gz").write_bytes(data[: len(data) // 2])
    (corpus / "latin1.txt").write_bytes("café au lait\n".encode("latin-1"))
    (corpus / "records.jsonl").write_text('{"text": "fine"}\n{broken\n')
    (corpus / "notes.md").write_text("not a corpus format\n")
    (corpus / "empty.txt").write_text("")
    (corpus / "loop.txt").symlink_to(corpus / "loop.txt")
    return corpus


def test_damaged_input_is_skipped_counted_and_warned(damaged_corpus, tmp_path):
    result = run(
        "train-vocab", damaged_corpus, "--out", tmp_path / "v", *SMALL_SIZES, "--json", "-q"
    )
    assert result.exit_code == 0, result.output
    read = json.loads(result.stdout)["read"]
    assert read["skipped"] == {"binary": 1, "corrupt": 1, "unknown_format": 1, "unreadable": 1}
    assert (read["invalid_utf8"], read["malformed_records"], read["empty_files"]) == (1, 1, 1)
    names = ("binary.txt", "truncated.txt.gz", "notes.md", "loop.txt", "records.jsonl")
    for name in (*names, "latin1.txt"):
        assert result.stderr.count(name) == 1  # once, though both tokenizers read the corpus
    assert "Traceback" not in result.output


def test_strict_makes_damage_a_one_line_error(damaged_corpus, tmp_path):
    result = run("train-vocab", damaged_corpus, "--out", tmp_path / "v", "--strict")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert str(damaged_corpus) in lines[0] and "--strict" in lines[0]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.txt", "no such file or directory"),
        (lambda d: d, "holds no readable"),
    ],
)
def test_missing_path_and_empty_corpus_exit_1(tmp_path, make, message):
    (tmp_path / "empty").mkdir()
    result = run("train-vocab", make(tmp_path / "empty"), "--out", tmp_path / "v")
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output


def test_blank_only_corpus_exit_1(tmp_path):
    (tmp_path / "blank.txt").write_text("\n \n")
    result = run("train-vocab", tmp_path / "blank.txt", "--out", tmp_path / "v", "-q")
    assert result.exit_code == 1
    assert "holds no text" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--out", "x"],  # no corpus
        ["c.txt", "--out", "x", "--partition-size", "12XB"],
        ["c.txt", "--out", "x", "--only", "sentencepiece"],
    ],
)
def test_bad_usage_exit_2(args, tmp_path):
    os.chdir(tmp_path)
    (tmp_path / "c.txt").write_text("x\n")
    result = run("train-vocab", *args)
    assert result.exit_code == 2


def test_size_options_accept_units():
    from rbprep.sizes import parse_size

    assert parse_size("64MB") == 64_000_000
    assert parse_size("500KB") == 500_000
    assert parse_size("1.5GB") == 1_500_000_000
    assert parse_size("2GiB") == 2 * 2**30
    assert parse_size("1048576") == 1_048_576
    assert parse_size(" 10 kb ") == 10_000
    for bad in ("", "MB", "1.2.3MB", "-5", "12XB"):
        with pytest.raises(ValueError, match="not a size"):
            parse_size(bad)


def test_builtin_corpus_flag(tmp_path, monkeypatch, builtin_corpus):
    monkeypatch.setenv("RBPREP_CACHE_DIR", str(builtin_corpus.parent))
    result = run(
        "train-vocab",
        "--builtin-corpus",
        "--out",
        tmp_path / "v",
        "--only",
        "bpe",
        "--bpe-size",
        "500",
        "--sample-bytes",
        "200KB",
        "--json",
        "-q",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["sampled"] and 150_000 < summary["text_bytes_used"] < 250_000


def test_library_functions_carry_the_command_names():
    import rbprep
    import rbprep.dataset.inspection
    import rbprep.dataset.verification
    import rbprep.sharding
    import rbprep.vocab  # importing submodules must not hide the functions

    for name in ("train_vocab", "shard", "open_dataset", "inspect", "verify", "open_corpus"):
        assert callable(getattr(rbprep, name)), name


def test_every_summary_gives_the_same_input_size_and_says_which_size_it_is(
    small_corpus, small_vocab, tmp_path
):
    """train-vocab and compare once said 14.2 MB where shard and inspect said 15.0 MB of
    the same corpus: one counted the text in lines, the other the bytes read."""
    big = tmp_path / "big.txt"
    big.write_text((SMALL_TEXT.replace("\n", "  \n") + "\n") * 4000)  # MB, with whitespace
    outputs = [
        run("train-vocab", big, "--out", tmp_path / "v", *SMALL_SIZES, "-q").output,
        run("shard", big, "--tokenizer", small_vocab / "bpe", "--out", tmp_path / "d", "-q").output,
        run("inspect", tmp_path / "d", "--rows", "0").output,
        run("compare-tokenizers", big, "--tokenizers", small_vocab, "-q").output,
    ]
    from rbprep.sizes import format_size

    read = f"{format_size(big.stat().st_size)} read"
    assert all(read in output for output in outputs), outputs
    assert all(f"of text in lines, of {read}" in outputs[i] for i in (0, 3))


def test_check_fraction_defaults_to_the_librarys_on_both_commands():
    """The command line states the default itself (importing rbprep.encoding would load
    tokenizers for --help); it must stay the library's, wherever that changes."""
    from rbprep.compare import CompareConfig
    from rbprep.encoding.check import CHECK_FRACTION

    assert CompareConfig().check_fraction == CHECK_FRACTION
    for name in ("shard", "compare-tokenizers"):
        [param] = [p for p in main.commands[name].params if p.name == "check_fraction"]
        assert param.default == CHECK_FRACTION, name


def test_shared_options_mean_the_same_in_every_command():
    """--seed, --quiet and --json are declared once (cli.seed_option, quiet_option,
    json_option); where --json differs (a FILE in compare-tokenizers), it says so."""
    seen = {"--seed": 0, "--quiet": 0, "--json": 0}
    for name, command in main.commands.items():
        for param in command.params:
            option = next((o for o in param.opts if o in seen), None)
            if option is None:
                continue
            seen[option] += 1
            if option == "--seed":
                assert param.default == 0 and param.help.startswith("Seed of "), name
            elif option == "--quiet":
                assert param.is_flag and "-q" in param.opts, name
            elif name == "compare-tokenizers":
                assert "Unlike the other commands' --json flag it takes a FILE" in param.help
            else:
                assert param.is_flag and param.help.startswith("Print "), name
                assert "as JSON on stdout" in param.help, name
    assert seen["--seed"] >= 3 and seen["--quiet"] >= 5 and seen["--json"] >= 5
