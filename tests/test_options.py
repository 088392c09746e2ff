"""Config fields as options (``rbprep.options``, ``rbprep.cli.config_options``): every
field of a command's config is one of its options, with the field's default and choices,
so the command line cannot drift from the configs; a new field is a new option."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass

import click
import pytest
from click.testing import CliRunner

from rbprep.cli import ConfigCommand, config_options, main
from rbprep.options import Option, build, comma_floats, field_options, opt, read_json
from rbprep.sizes import parse_size


def _configs():
    """(command, its config class, the constants its ``check`` validates choices against)."""
    from rbprep.bpe_trainers import TRAINER_CHOICES
    from rbprep.sharding.config import COMPRESSIONS, FORMATS, MASKINGS, MODES, ShardConfig
    from rbprep.vocab import KINDS, VocabConfig

    yield "train-vocab", VocabConfig, {"only": KINDS, "trainer": TRAINER_CHOICES}
    yield (
        "shard",
        ShardConfig,
        {"mode": MODES, "masking": MASKINGS, "compression": COMPRESSIONS, "format": FORMATS},
    )
    from rbprep.compare.comparison import CompareConfig
    from rbprep.encoding import ENCODER_CHOICES

    yield "compare-tokenizers", CompareConfig, {"encoder": ENCODER_CHOICES}
    pytest.importorskip("torch")
    from rbprep.train.loop import ATTENTIONS, RECIPES, TrainConfig
    from rbprep.train.model import PRESETS

    choices = {"model": tuple(PRESETS), "recipe": tuple(RECIPES), "attention": ATTENTIONS}
    yield "pretrain", TrainConfig, choices


@pytest.mark.parametrize("command", ["train-vocab", "shard", "compare-tokenizers", "pretrain"])
def test_every_config_field_is_an_option_with_its_default_and_choices(command):
    [(_, cls, constants)] = [c for c in _configs() if c[0] == command]
    params = {param.name: param for param in main.commands[command].params}
    for field in dataclasses.fields(cls):
        param = params[field.name]  # every field, under its own name
        spec = field.metadata["option"]
        assert isinstance(param, click.Option) and param.help.startswith(spec.help), field.name
        name = spec.name or "--" + field.name.replace("_", "-")
        assert param.opts == [name], field.name
        assert param.default == field.default, field.name
        assert param.is_flag == (field.type == "bool"), field.name
        if spec.choices is not None:
            assert tuple(param.type.choices) == spec.choices, field.name
        if field.name in constants:
            assert spec.choices == tuple(constants[field.name]), field.name
    assert set(constants) <= {f.name for f in dataclasses.fields(cls)}
    # Parsed with nothing given, the options make the config's defaults.
    required = {
        "pretrain": ["data", "--out", "o"],
        "shard": ["--out", "o", "--tokenizer", "t"],
        "compare-tokenizers": [],
    }.get(command, ["--out", "o"])
    parent = click.Context(main, info_name="rbprep", **main.context_settings)  # its -h
    ctx = main.commands[command].make_context(command, required, parent=parent)
    assert build(cls, ctx.params) == cls()


@dataclass(frozen=True)
class Toy:
    size: int = opt(3, help="How many.")
    budget: int | None = opt(
        None, type=parse_size, metavar="SIZE", show_default="all", help="Bytes at most."
    )
    style: str = opt("plain", choices=("plain", "fancy"), help="How it looks.")
    lower: bool = opt(True, name="--lowercase/--cased", help="Lowercase first.")
    loud: bool = opt(False, help="Shout.")
    pair: tuple[float, float] = opt((0.5, 0.25), help="Two numbers.")
    shares: tuple[float, ...] | None = opt(None, type=comma_floats, help="Shares.")
    secret: int = opt(7, hidden=True, help="Not in the help.")


@click.command(cls=ConfigCommand)
@click.option("--other", is_flag=True, help="Not a config field.")
@config_options(Toy, dest="toy")
def toy_command(other: bool, toy: Toy) -> None:
    click.echo(repr((other, toy)))


def test_a_new_field_with_opt_becomes_an_option():
    runner = CliRunner()
    assert runner.invoke(toy_command, []).output == f"{(False, Toy())!r}\n"
    args = ["--size", "5", "--budget", "2KB", "--style", "fancy", "--cased", "--loud"]
    args += ["--pair", "1", "2", "--shares", "3,1", "--secret", "9", "--other"]
    result = runner.invoke(toy_command, args)
    assert result.exit_code == 0, result.output
    expected = Toy(5, 2000, "fancy", False, True, (1.0, 2.0), (3.0, 1.0), 9)
    assert result.output == f"{(True, expected)!r}\n"

    help = runner.invoke(toy_command, ["--help"]).output
    for text in (
        "--size INTEGER",
        "How many.  [default: 3]",
        "--budget SIZE",
        "Bytes at most.  [default: all]",
        "--style [plain|fancy]",
        "--lowercase / --cased",
        "--loud",
        "--pair FLOAT...",
        "--shares TEXT",
        "--other",
    ):
        assert text in help, text
    assert "--secret" not in help and "--loud / --no-loud" not in help

    for bad, message in [
        (["--style", "plain2"], "'plain2' is not one of 'plain', 'fancy'"),
        (["--budget", "lots"], "'lots' is not a size"),
        (["--shares", "3,x"], "'3,x': give numbers"),
        (["--size", "many"], "'many' is not a valid integer"),
    ]:
        failed = runner.invoke(toy_command, bad)
        assert failed.exit_code == 2 and message in failed.output, failed.output


def test_a_config_field_must_say_how_it_is_an_option():
    @dataclass(frozen=True)
    class Plain:
        size: int = 3

    @dataclass(frozen=True)
    class Unparsed:
        names: tuple[str, ...] | None = opt(None, help="Names.")

    with pytest.raises(TypeError, match=r"Plain.size is not declared with rbprep.options.opt"):
        field_options(Plain)
    with pytest.raises(TypeError, match=r"Unparsed.names: give opt\(type=...\)"):
        field_options(Unparsed)
    assert field_options(Toy)[0].spec == Option(help="How many.")


def test_a_config_is_loaded_when_its_command_is_first_parsed(tmp_path):
    loads = []

    def load() -> type:
        loads.append(1)
        return Toy

    @click.command(cls=ConfigCommand)
    @config_options(load)
    def lazy(config: Toy) -> None:
        click.echo(config.size)

    assert loads == []
    assert CliRunner().invoke(lazy, ["--size", "4"]).output == "4\n"
    assert CliRunner().invoke(lazy, []).output == "3\n"
    assert loads == [1]

    (tmp_path / "good.json").write_text('{"layers": 2}')
    (tmp_path / "bad.json").write_text("{")
    assert read_json(str(tmp_path / "good.json")) == {"layers": 2}
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        read_json(str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match=r"missing\.json: No such file"):
        read_json(str(tmp_path / "missing.json"))


def test_the_configs_import_no_click_and_the_cli_no_config():
    code = (
        "import sys, rbprep.sharding.config, rbprep.vocab; a = 'click' in sys.modules; "
        "import rbprep.cli; "
        "print(a, sorted(m for m in ('rbprep.train.loop', 'torch') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False []", result.stderr
    code = "import sys, rbprep.cli; print([m for m in sys.modules if m.startswith('rbprep.')])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    loaded = result.stdout.strip()
    assert "rbprep.vocab" not in loaded and "rbprep.sharding" not in loaded, result.stderr
