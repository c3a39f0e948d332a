"""Config dataclasses as command lines and YAML recipes.

Every stage has one dataclass of documented fields with defaults. `add_config_args`
turns its fields into `--field-name` options (so any field can be overridden on the
command line), `config_from_args` builds the config back, and `to_dict` /
`from_dict` give the YAML recipe form (a recipe is just a serialised config).

    @dataclass
    class ProbeConfig:
        layer: int | None = None   # block index K (default: the world's)
        steps: int = 300           # optimiser steps per probe

The comment after a field is its help text.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from typing import Any, TypeVar

from nlakit.errors import NLAKitError

T = TypeVar("T")
_COMMENT = re.compile(r"^\s*(\w+)\s*:.*?#\s*(.+)$")


def field_help(cls: type) -> dict[str, str]:
    """Help text per field, read from the trailing comments in the class source."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {m.group(1): m.group(2).strip() for m in map(_COMMENT.match, source.splitlines()) if m}


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(scalar type, optional?) of a field annotation like `int | None`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return annotation, False


def _parser_for(kind: type, optional: bool):
    def parse(text: str):
        if optional and text.lower() in ("none", "null"):
            return None
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")
        return kind(text)

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


def add_config_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one `--field-name` option per field of dataclass `cls` (default: unset)."""
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    group = parser.add_argument_group(f"{cls.__name__} fields")
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        kind, optional = _base_type(hints[f.name])
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        text = helps.get(f.name, "")
        if not required:
            text = f"{text} (default: {f.default})".strip()
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            type=_parser_for(kind, optional),
            default=argparse.SUPPRESS,
            required=required,
            help=text,
        )


def config_from_args(cls: type[T], args: argparse.Namespace, base: T | None = None) -> T:
    """`base` (or the defaults) with every option given on the command line applied."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in vars(args).items() if k in names}
    return dataclasses.replace(base, **given) if base is not None else cls(**given)


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: dict, source: str = "config") -> T:
    """A config from a mapping (a YAML recipe); unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise NLAKitError(
            f"{source}: unknown field(s) {unknown} for {cls.__name__}; known: {sorted(names)}"
        )
    return cls(**data)
