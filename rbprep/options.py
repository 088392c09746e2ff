"""Config fields that are command-line options: each field's help, choices and parsing,
written once, next to the field.

A config dataclass declares its fields with ``opt`` instead of ``dataclasses.field``::

    @dataclass(frozen=True)
    class ShardConfig:
        mode: str = opt("full-sentences", choices=MODES, help="Rows may cross ...")

and its command takes them all with ``rbprep.cli.config_options(ShardConfig)``: one
``--mode`` option per field (the field's name, ``_`` spelt ``-``), with the field's
default, choices and help, and the config built from the parsed values. A new option is
one new field.

This module is plain Python (no click, nothing heavy), so that the config modules, which
the library imports, can use it; ``rbprep.cli`` turns what it says into Click options.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Option:
    """How a config field appears on the command line (its ``metadata["option"]``).

    - ``help``: the help text;
    - ``choices``: the values it takes (a tuple, or a dict's keys);
    - ``type``: parses the option's text into the field's value (``parse_size``,
      ``comma_floats``, ``read_json``; raises ValueError with a message for the user);
      default: the field's type (int, float, str; bool is a flag; ``tuple[float, float]``
      takes two values);
    - ``metavar``: the value's name in the help (default: the type's, e.g. INTEGER);
    - ``name``: the option's name where it is not ``--field-name``; ``--on/--off``
      makes a bool field a pair of flags;
    - ``show_default``: the default to show where the field's is computed later (None
      in the field, e.g. ``"10"``); otherwise the field's default is shown;
    - ``hidden``: an option left out of ``--help``.
    """

    help: str
    choices: tuple[str, ...] | None = None
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    name: str | None = None
    show_default: str | None = None
    hidden: bool = False


def opt(
    default: T,
    *,
    help: str,
    choices: Iterable[str] | None = None,
    type: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    name: str | None = None,
    show_default: str | None = None,
    hidden: bool = False,
) -> T:
    """A dataclass field with ``default`` that is also a command-line option (``Option``)."""
    spec = Option(
        help=help,
        choices=None if choices is None else tuple(choices),
        type=type,
        metavar=metavar,
        name=name,
        show_default=show_default,
        hidden=hidden,
    )
    return dataclasses.field(default=default, metadata={"option": spec})  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class FieldOption:
    """A config field as the command line sees it: ``Option`` and what its type implies."""

    field: str  # the field's name: the parsed value's key
    decls: tuple[str, ...]  # e.g. ("--seq-len",), ("--config",), ("--cased/--uncased",)
    default: Any
    spec: Option
    type: Any  # int, float, str, bool (a flag) or spec.type
    nargs: int = 1

    @property
    def is_flag(self) -> bool:
        return self.type is bool


def field_options(cls: type) -> list[FieldOption]:
    """Every field of the config dataclass ``cls`` as an option, in field order.

    Raises TypeError for a field declared without ``opt`` or whose type needs a
    ``type=`` to be parsed from text: every field of a config is an option."""
    hints = typing.get_type_hints(cls)
    result = []
    for field in dataclasses.fields(cls):
        spec = field.metadata.get("option")
        if not isinstance(spec, Option):
            raise TypeError(f"{cls.__name__}.{field.name} is not declared with rbprep.options.opt")
        if field.default is dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{field.name}: an option needs a default")
        value_type, nargs = _value_type(hints[field.name])
        if spec.type is not None:
            value_type, nargs = spec.type, 1
        elif spec.choices is not None:
            value_type = str
        elif value_type not in (int, float, str, bool):
            raise TypeError(f"{cls.__name__}.{field.name}: give opt(type=...) to parse its text")
        name = spec.name or "--" + field.name.replace("_", "-")
        if value_type is bool and "/" not in name and field.default:
            name = f"{name}/--no-{name[2:]}"  # a flag on by default must be able to go off
        result.append(FieldOption(field.name, (name,), field.default, spec, value_type, nargs))
    return result


def _value_type(hint: Any) -> tuple[Any, int]:
    """The type an option's text parses to, and how many values it takes:
    ``int | None`` -> (int, 1), ``tuple[float, float]`` -> (float, 2)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(rest) == 1:
            hint = rest[0]
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and args and Ellipsis not in args and len(set(args)) == 1:
        return args[0], len(args)
    return hint, 1


def build(cls: type[T], values: Mapping[str, Any]) -> T:
    """The config ``cls`` with its fields taken from ``values`` (a command's parsed
    options; other keys are ignored)."""
    return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})  # type: ignore[call-arg]


# Parsers for ``Option.type``, for fields whose value text does not spell directly.


def comma_floats(text: str) -> tuple[float, ...]:
    """``"3,1"`` -> ``(3.0, 1.0)``."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r}: give numbers, e.g. 3,1") from None


def read_json(path: str) -> Any:
    """The JSON document in the file at ``path``."""
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
