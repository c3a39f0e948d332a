"""Config dataclasses as command-line options, through simple-parsing.

    p = sub.add_parser("rl", help="...")
    add_config(p, RLConfig)                    # --field-name per field, and --config RECIPE
    ...
    config = config_from_args(RLConfig, args)  # the recipe, then the options given; validated

Why simple-parsing (not tyro): it *is* an `argparse.ArgumentParser`, so nlakit's
verb tree, its hand-written options (`--run` repeated, positional run directories,
`-n`), the per-verb lazy imports and argparse's one-line usage errors stay as they
are; it reads a field's help from `field.metadata["help"]` (where `option` puts it:
no source comments parsed), and it takes `argparse.SUPPRESS` defaults, which yield
exactly the options given, so that a recipe can sit under them. tyro builds its own
parser tree, prints errors as multi-line boxes and takes booleans as `True`/`False`
or flag pairs only, each of which nlakit would have to bend back.

nlakit's settings on top: options are spelled `--field-name` only; a boolean takes a
value (`--freeze-ar false`; `--freeze-ar` alone is true) or its `--no-field-name`
form; an optional field takes `none`; nothing is required at parse time, because a
recipe may hold it (`config_from_args` says what is missing).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import typing
from typing import Any, TypeVar

import simple_parsing as sp
from simple_parsing.wrappers import DataclassWrapper, FieldWrapper

from nlakit.config import ConfigError, option_name, read_recipe, required_fields
from nlakit.config import check_recipe as _check_recipe

T = TypeVar("T")
RECIPE_HELP = "YAML recipe (a serialized config: field → value); options given here override it"


class Parser(sp.ArgumentParser):
    """nlakit's parser: `--field-name` spellings, and usage errors on one line."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("add_option_string_dash_variants", sp.DashVariant.DASH)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _none_or(kind: type):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else kind(text)

    parse.__name__ = kind.__name__
    return parse


class _Option(FieldWrapper):
    """One field as one option: nlakit's spelling, help and `none` parsing."""

    @property
    def required(self) -> bool:
        return False  # a recipe may hold it; `config_from_args` checks

    @required.setter
    def required(self, value: bool) -> None:
        pass

    @property
    def help(self) -> str:
        f = self.field
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        text = f.metadata.get("help", "")
        if default is dataclasses.MISSING:
            text += " (required)"
        elif default is not None:  # what None means, the help says
            text += f" (default: {str(default).lower() if isinstance(default, bool) else default})"
        return text.replace("%", "%%")

    @help.setter
    def help(self, value: str) -> None:
        pass

    def get_arg_options(self) -> dict[str, Any]:
        options = super().get_arg_options()
        if self.field.metadata.get("positional"):
            # argparse would check a positional's unset (SUPPRESS) default against its
            # choices; the config checks them instead.
            choices = options.pop("choices", None)
            options["metavar"] = "{" + ",".join(choices) + "}" if choices else self.name.upper()
        elif "choices" not in options:
            options["metavar"] = self.name.upper()
        if self.is_optional and "choices" not in options:
            kind = next(a for a in typing.get_args(self.type) if a is not type(None))
            if kind in (int, float, str):
                options["type"] = _none_or(kind)
        if options.get("action") is sp.helpers.custom_actions.BooleanOptionalAction:
            options["negative_prefix"] = "--no-"
            options["metavar"] = "true|false"
        return options


class _Options(DataclassWrapper):
    """The options of one config class, less the fields in `skip`."""

    def __init__(self, *args, skip: tuple[str, ...] = (), **kwargs) -> None:
        kwargs["field_wrapper_class"] = _Option
        super().__init__(*args, **kwargs)
        # required fields first (stable: otherwise in the order of the class)
        required = {f.name for f in required_fields(self.dataclass)}
        kept = [f for f in self.fields if f.name not in skip]
        self.fields = sorted(kept, key=lambda f: f.name not in required)
        self._children = [c for c in self._children if c.name not in skip]

    @property
    def title(self) -> str:
        return f"{self.dataclass.__name__} options"

    @property
    def description(self) -> str:
        return (self.dataclass.__doc__ or "").strip().split("\n\n")[0]


def add_config(
    parser: argparse.ArgumentParser, cls: type, dest: str = "config", skip: tuple[str, ...] = ()
) -> None:
    """Add one option per field of `cls` (but those in `skip`) and `--config RECIPE`."""
    if not any("--config" in a.option_strings for a in parser._actions):
        parser.add_argument("--config", dest="recipe", metavar="RECIPE", help=RECIPE_HELP)
    parser.add_arguments(
        cls,
        dest=dest,
        default=argparse.SUPPRESS,
        dataclass_wrapper_class=functools.partial(_Options, skip=skip),
    )


def given_options(args: argparse.Namespace, dest: str = "config") -> dict[str, Any]:
    """The fields given on the command line for the config at `dest`."""
    return dict(getattr(args, dest, None) or {})


def recipe_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The recipe of `--config` (checked against `cls`), or {}."""
    path = getattr(args, "recipe", None)
    return _check_recipe(cls, read_recipe(path), str(path)) if path else {}


def config_from_args(cls: type[T], args: argparse.Namespace, dest: str = "config", **fixed) -> T:
    """`cls` from the recipe, then the options given, then `fixed`; validated."""
    values = {**recipe_values(args, cls), **given_options(args, dest), **fixed}
    missing = [option_name(f) for f in required_fields(cls) if f.name not in values]
    if missing:
        raise ConfigError(
            f"missing required {', '.join(missing)}: give them on the command line "
            "or in a --config recipe"
        )
    return cls(**values)
