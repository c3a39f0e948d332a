"""Stage configs: dataclasses of documented, bounded fields, and YAML recipes.

Every stage has one dataclass; each field says what it is and what values it takes,
next to the field:

    @dataclass
    class ProbeConfig(Config):
        layer: int | None = option(None, "block index K (default: the world's)", ge=0)
        steps: int = option(100, "L-BFGS iterations per probe", ge=1)

`option` puts the help text and the bounds in the field's metadata. `Config` checks
every bound (and that every float is finite) when a config is built, from Python, a
recipe or the command line alike, so a bad value is one `ConfigError` naming the
field before any model loads or any file is written.

A **recipe** is a serialized config: a YAML mapping of field → value (see `recipes/`;
a run's `config.json` is one too). `read_recipe` reads the file, `check_recipe`
checks every key and type against the config class (naming the file, the key,
expected vs actual), and `from_dict` builds the config. `nlakit/config_cli.py` turns
the same dataclasses into command-line options.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from nlakit.errors import NLAKitError

T = TypeVar("T")

# Names `nlakit.models.resolve_dtype` accepts (a test keeps the two lists equal).
DTYPES = ("bf16", "fp32", "fp16", "bfloat16", "float32", "float16")
DEVICE_HELP = "cuda, cuda:1, cpu (default: cuda if available)"
DTYPE_HELP = "model dtype (default: bf16 on GPU, fp32 on CPU)"


class ConfigError(NLAKitError, ValueError):
    """A config value or recipe is out of range, of the wrong type, or unknown."""


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    factory: Any = dataclasses.MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[str, ...] | None = None,
    positional: bool = False,
) -> Any:
    """A dataclass field with its help text and the values it accepts.

    `ge`/`gt`/`le`/`lt`: inclusive/exclusive bounds of a number (None passes when the
    field is optional); `choices`: the allowed strings; `positional`: on the command
    line, a positional argument instead of `--name`.
    """
    bounds = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt).items() if v is not None}
    metadata: dict[str, Any] = {"help": help, "bounds": bounds}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if positional:
        metadata["positional"] = True
    return dataclasses.field(default=default, default_factory=factory, metadata=metadata)


class Config:
    """Base of the stage configs: validates every field's bounds on construction."""

    def __post_init__(self) -> None:
        check_config(self)


# --------------------------------------------------------------------------- bounds


_RULES = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


def expected_values(f: dataclasses.Field) -> str:
    """The values field `f` accepts, in words (`≥ 0`, `one of 'av', 'ar'`)."""
    if "choices" in f.metadata:
        return "one of " + ", ".join(repr(c) for c in f.metadata["choices"])
    bounds = f.metadata.get("bounds", {})
    return " and ".join(f"{_RULES[k]} {v:g}" for k, v in bounds.items()) or "a finite number"


def value_problem(f: dataclasses.Field, value: Any) -> str | None:
    """Why `value` is not acceptable for field `f`, or None when it is."""
    if value is None or isinstance(value, bool):
        return None
    choices = f.metadata.get("choices")
    if choices is not None and isinstance(value, str) and value not in choices:
        return f"must be {expected_values(f)}, got {value!r}"
    if not isinstance(value, int | float):
        return None
    bounds = f.metadata.get("bounds", {})
    ok = math.isfinite(value) and all(
        {"ge": value >= b, "gt": value > b, "le": value <= b, "lt": value < b}[k]
        for k, b in bounds.items()
    )
    return None if ok else f"must be {expected_values(f)}, got {value!r}"


def option_name(f: dataclasses.Field) -> str:
    return f.name if f.metadata.get("positional") else "--" + f.name.replace("_", "-")


def device_problem(device: str | None) -> str | None:
    """Why `device` cannot be used here (unknown name, no CUDA), or None when it can."""
    if device is None:
        return None
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        return f"must be a device such as cuda, cuda:1 or cpu, got {device!r}"
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            return f"is {device!r} but this machine has no CUDA device; use --device cpu"
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            return f"is {device!r} but this machine has {torch.cuda.device_count()} CUDA device(s)"
    elif parsed.type not in ("cpu", "mps"):
        return f"must be cuda, cuda:N or cpu, got {device!r}"
    return None


def check_config(config: Any) -> None:
    """Raise one `ConfigError` naming every field whose value is out of range (and a
    `device` that this machine does not have)."""
    bad = [
        (f, problem)
        for f in dataclasses.fields(config)
        if (problem := value_problem(f, getattr(config, f.name))) is not None
        or (f.name == "device" and (problem := device_problem(getattr(config, f.name))))
    ]
    if bad:
        problems = "; ".join(f"{f.name} {problem}" for f, problem in bad)
        options = ", ".join(option_name(f) for f, _ in bad)
        raise ConfigError(f"{type(config).__name__}: {problems} ({options} on the command line).")


def required_fields(cls: type) -> list[dataclasses.Field]:
    return [
        f
        for f in dataclasses.fields(cls)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


# --------------------------------------------------------------------------- recipes


def read_recipe(path: str | os.PathLike) -> dict:
    """The YAML mapping in `path` (a recipe), or a `ConfigError` saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such recipe file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"{path}: not valid YAML{line}: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply to be a recipe") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; a recipe is a YAML file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a recipe is a mapping of field → value, got a {type(data).__name__}"
        )
    return data


def _scalar_type(annotation: Any) -> tuple[Any, bool]:
    """(type without None, optional?) of a field annotation like `int | None`."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else Any), True
    return annotation, False


def _type_words(kind: Any) -> str:
    if dataclasses.is_dataclass(kind):
        return f"a mapping of {kind.__name__} fields"
    if typing.get_origin(kind) is list:
        return "a list of strings"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        kind, str(kind)
    )


def _convert(kind: Any, value: Any) -> tuple[bool, Any]:
    """(ok, converted value) of a recipe `value` for a field of type `kind`."""
    if kind is Any:
        return True, value
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-4` (no dot) as a string
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return False, value
    if kind is str:
        return isinstance(value, str), value
    if typing.get_origin(kind) is list:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return ok, value
    if dataclasses.is_dataclass(kind):
        return isinstance(value, dict), value
    return True, value


def check_recipe(cls: type, data: dict, source: str) -> dict:
    """`data` checked against the fields of `cls`: every key known, every value of the
    field's type and within its bounds (numbers converted to float where the field is
    one). A nested config field takes a mapping, checked the same way."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    checked = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = (
                f"; did you mean `{close[0]}`?" if close else f"; known keys: {', '.join(fields)}"
            )
            raise ConfigError(
                f"{source}: unknown key `{key}` ({cls.__name__} has no such field{hint})"
            )
        kind, optional = _scalar_type(hints[key])
        ok, converted = (optional, None) if value is None else _convert(kind, value)
        if not ok:
            expected = _type_words(kind) + (" or null" if optional else "")
            raise ConfigError(
                f"{source}: key `{key}`: expected {expected}, got {type(value).__name__} {value!r}"
            )
        if dataclasses.is_dataclass(kind) and isinstance(converted, dict):
            converted = check_recipe(kind, converted, f"{source}: {key}")
        problem = value_problem(fields[key], converted)
        if problem is not None:
            raise ConfigError(f"{source}: key `{key}` {problem}")
        checked[key] = converted
    return checked


def from_dict(cls: type[T], data: dict, source: str = "config") -> T:
    """A config from a mapping (a recipe): keys and types checked, then bounds.

    A nested config field (a mapping in `data`) becomes its dataclass."""
    checked = check_recipe(cls, data, source)
    missing = [f.name for f in required_fields(cls) if f.name not in checked]
    if missing:
        raise ConfigError(f"{source}: {cls.__name__} needs {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    for key, value in checked.items():
        kind = _scalar_type(hints[key])[0]
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            checked[key] = from_dict(kind, value, f"{source}: {key}")
    return cls(**checked)
