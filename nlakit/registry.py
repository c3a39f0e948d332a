"""The registry of released NLAs: short names for published AV/AR checkpoint pairs.

    nlakit list                                   name, base model, layer, d_model, ids, figures
    nla = nlakit.NLA.from_pretrained("qwen2.5-7b-L20")
    entry = lookup("qwen2.5-7b-L20")              # .av, .ar Hub ids, .base_model, .layer, ...

The table is `nlakit/registry.yaml` (package data). Each figure in it names its
source; a figure not published where nlakit can read it is null, shown as "—". A
name resolves only when no local path of that name exists: a local directory
always wins over a registry name.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from nlakit.errors import CheckpointError, NLAKitError, field_error
from nlakit.store.readers import read_yaml

REGISTRY_FILE = "registry.yaml"
MISSING = "—"  # how a figure nobody published is shown


@dataclass(frozen=True)
class RegisteredNLA:
    """One released NLA: the AV and AR Hub ids and what is known about the pair.

    `layer` is the block index K, `injection_scale` the L2 norm the AV injects at,
    `baseline_variance` Var(v_nrm) of the training set (the FVE baseline),
    `published_fve` the FVE its authors published (None when not published where
    nlakit can read it), `sources` where each figure comes from.
    """

    name: str
    base_model: str
    layer: int
    d_model: int
    av: str
    ar: str
    injection_scale: float
    baseline_variance: float | None = None
    published_fve: float | None = None
    sources: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- parsing

_FIGURES = ("injection_scale", "baseline_variance", "published_fve")


def _number(value: Any, where: str, name: str, positive: bool, optional: bool) -> float | None:
    if value is None and optional:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        expected = "a positive number" if positive else "a number"
        raise field_error(
            NLAKitError, where, name, expected + (" or null" if optional else ""), repr(value)
        )
    return float(value)


def _hub_id(value: Any, where: str, name: str, suffix: str) -> str:
    if not (isinstance(value, str) and value.count("/") == 1 and value.endswith(suffix)):
        raise field_error(NLAKitError, where, name, f"a Hub id owner/name ending {suffix}", value)
    return value


def _entry(d: Any, i: int, source: str) -> RegisteredNLA:
    where = f"{source} nlas[{i}]"
    if not isinstance(d, dict):
        raise field_error(NLAKitError, source, f"nlas[{i}]", "a mapping", type(d).__name__)
    missing = [k for k in ("name", "base_model", "layer", "d_model", "av", "ar") if k not in d]
    missing += [k for k in _FIGURES if k not in d]
    if missing:
        raise NLAKitError(f"{where}: missing fields {missing}; every entry needs all of them.")
    for key, least in (("layer", 0), ("d_model", 1)):
        value = d[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise field_error(NLAKitError, where, key, f"an integer ≥ {least}", repr(value))
    if not isinstance(d["name"], str) or not d["name"] or "/" in d["name"]:
        raise field_error(NLAKitError, where, "name", "a non-empty name without '/'", d["name"])
    sources = d.get("sources") or {}
    unsourced = [k for k in _FIGURES if d[k] is not None and k not in sources]
    if unsourced:
        raise NLAKitError(f"{where}: figures {unsourced} need a `sources:` entry each.")
    return RegisteredNLA(
        name=d["name"],
        base_model=str(d["base_model"]),
        layer=d["layer"],
        d_model=d["d_model"],
        av=_hub_id(d["av"], where, "av", "-av"),
        ar=_hub_id(d["ar"], where, "ar", "-ar"),
        injection_scale=_number(d["injection_scale"], where, "injection_scale", True, False),
        baseline_variance=_number(d["baseline_variance"], where, "baseline_variance", True, True),
        published_fve=_number(d["published_fve"], where, "published_fve", False, True),
        sources={str(k): str(v) for k, v in sources.items()},
    )


def parse_registry(data: Any, source: str = REGISTRY_FILE) -> dict[str, RegisteredNLA]:
    """Entries by name from the parsed YAML `{nlas: [...]}`, in file order."""
    if not isinstance(data, dict) or not isinstance(data.get("nlas"), list):
        raise field_error(NLAKitError, source, "nlas", "a list of entries", repr(data)[:80])
    entries: dict[str, RegisteredNLA] = {}
    for i, raw in enumerate(data["nlas"]):
        entry = _entry(raw, i, source)
        if entry.name in entries:
            raise NLAKitError(f"{source}: the name {entry.name!r} appears twice; names are keys.")
        entries[entry.name] = entry
    return entries


@functools.cache
def _packaged() -> dict[str, RegisteredNLA]:
    text = resources.files("nlakit").joinpath(REGISTRY_FILE).read_text(encoding="utf-8")
    return parse_registry(yaml.safe_load(text), f"nlakit/{REGISTRY_FILE}")


def load_registry(path: str | os.PathLike | None = None) -> dict[str, RegisteredNLA]:
    """The registry: the packaged `nlakit/registry.yaml`, or the YAML file at `path`."""
    if path is None:
        return dict(_packaged())
    data = read_yaml(
        path,
        what="a registry of NLAs (`nlas:` a list of entries)",
        fix="Fix the file, or leave the path out to use the packaged registry.",
        expect=None,  # parse_registry names what is wrong with the content
    )
    return parse_registry(data, str(path))


# --------------------------------------------------------------------------- lookup


def _unknown(name: str, names: list[str], lead: str) -> str:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"{lead}.{hint} Released NLAs: {', '.join(names)} (see `nlakit list`)."


def lookup(name: str, registry: dict[str, RegisteredNLA] | None = None) -> RegisteredNLA:
    """The entry called `name`; an NLAKitError listing the known names (and the closest) if none."""
    registry = load_registry() if registry is None else registry
    if name not in registry:
        raise NLAKitError(_unknown(name, list(registry), f"no released NLA is called {name!r}"))
    return registry[name]


def looks_like_name(path_or_name: str | os.PathLike) -> bool:
    """Whether `path_or_name` can only be a registry name: not an existing local path,
    and no path separator (so neither a directory nor an owner/name Hub id)."""
    text = os.fspath(path_or_name)
    return not Path(text).exists() and "/" not in text and os.sep not in text


def resolve(
    path_or_name: str | os.PathLike, registry: dict[str, RegisteredNLA] | None = None
) -> RegisteredNLA | None:
    """The registry entry `path_or_name` names, or None when it is a local path or a Hub id.

    A local path wins over a registry name of the same spelling. A bare word that is
    neither a local path nor a registry name is an error that lists the names.
    """
    if not looks_like_name(path_or_name):
        return None
    registry = load_registry() if registry is None else registry
    name = os.fspath(path_or_name)
    if name not in registry:
        lead = f"{name!r} is not a local directory, a Hub id (owner/name) or a released NLA"
        raise CheckpointError(_unknown(name, list(registry), lead))
    return registry[name]


def resolve_pair(
    av: str | os.PathLike | None,
    ar: str | os.PathLike | None,
    registry: dict[str, RegisteredNLA] | None = None,
) -> tuple[str | os.PathLike | None, str | os.PathLike | None]:
    """(av, ar) with registry names replaced by Hub ids; paths and Hub ids pass unchanged.

    A name as `av` gives its AV and, when `ar` is None, its AR; a name as `ar` gives its AR.
    """
    entry = None if av is None else resolve(av, registry)
    if entry is not None:
        av, ar = entry.av, entry.ar if ar is None else ar
    entry = None if ar is None else resolve(ar, registry)
    if entry is not None:
        ar = entry.ar
    return av, ar


# --------------------------------------------------------------------------- listing

COLUMNS = (
    ("name", "name"),
    ("base_model", "base model"),
    ("layer", "layer"),
    ("d_model", "d_model"),
    ("av", "AV"),
    ("ar", "AR"),
    ("injection_scale", "injection scale"),
    ("published_fve", "published FVE"),
)


def list_nlas(registry: dict[str, RegisteredNLA] | None = None) -> list[dict]:
    """One plain dict per released NLA (every field of `RegisteredNLA`), in registry order."""
    registry = load_registry() if registry is None else registry
    return [asdict(entry) for entry in registry.values()]


def _cell(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_nlas(rows: list[dict]) -> str:
    """The rows of `list_nlas` as an aligned text table; unpublished figures show "—"."""
    table = [[title for _, title in COLUMNS]]
    table += [[_cell(row.get(key)) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
