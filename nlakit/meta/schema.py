"""Sidecar schema: the dataclasses, their YAML form, and reading/writing the files.

Model sidecars live at `DIR/nla_meta.yaml` (`kind: nla_model`), dataset sidecars
beside their table at `FILE.parquet.nla_meta.yaml` (`kind: nla_dataset`,
`schema_version: 1`). Both key spellings of the released files are read
(`av`/`ar` and `actor`/`critic`); nlakit writes `av`/`ar`.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nlakit.atomic import write_text
from nlakit.errors import MetaError, field_error

SIDECAR_NAME = "nla_meta.yaml"
DATASET_SIDECAR_SUFFIX = ".nla_meta.yaml"
SQRT_D = "sqrt_d_model"
DATASET_STAGES = ("base", "av_sft", "ar_sft", "rl", "eval")
SUFFIX_LEN = 8
MARKER_RANGE = (0x3200, 0x33FF)
INJECT_PLACEHOLDER = "<INJECT>"

DEFAULT_AV_TEMPLATE = (
    "Below is one activation vector from a language model, shown as a single token.\n\n"
    "<concept>{injection_char}</concept>\n\n"
    "Explain what this activation represents."
)
DEFAULT_AR_TEMPLATE = (
    "Reconstruct the activation vector that this explanation describes.\n\n"
    "<explanation>\n{explanation}\n</explanation>\n\n<activation>"
)

Scale = float | str | None


def hook_name(layer: int) -> str:
    """TransformerLens name of the output of block `layer` (our activation site)."""
    return f"blocks.{layer}.hook_resid_post"


# --------------------------------------------------------------------------- dataclasses


@dataclass
class TokenMeta:
    """Token ids pinned when the sidecar was written; all asserted at load time."""

    injection_char: str
    injection_token_id: int
    injection_left_neighbor_id: int
    injection_right_neighbor_id: int
    critic_suffix_ids: list[int] | None = None


@dataclass
class ModelMeta:
    """Sidecar of an AV or AR checkpoint (`kind: nla_model`).

    Scales keep the value as recorded (a number, `"sqrt_d_model"`, or None = raw);
    use `injection_scale_value` / `mse_scale_value` for the resolved float.
    `ar_num_hidden_layers` is the AR's block index K as recorded in `ar:` (or the
    older `critic:`) section; `layer_index` is K when the file records it directly.
    """

    role: str
    d_model: int
    tokens: TokenMeta
    av_template: str | None
    ar_template: str | None
    injection_scale: Scale = SQRT_D
    mse_scale: Scale = SQRT_D
    layer_index: int | None = None
    ar_num_hidden_layers: int | None = None
    base_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)

    kind = "nla_model"

    @property
    def injection_scale_value(self) -> float | None:
        return resolve_scale(self.injection_scale, self.d_model)

    @property
    def mse_scale_value(self) -> float | None:
        return resolve_scale(self.mse_scale, self.d_model)

    @property
    def layer(self) -> int | None:
        """Block index K, from `extraction.layer_index` or the AR depth."""
        return self.layer_index if self.layer_index is not None else self.ar_num_hidden_layers


@dataclass
class ExtractionMeta:
    """Where dataset activations came from. Vectors are stored raw (`norm: none`)."""

    base_model: str | None
    d_model: int
    layer_index: int
    norm: str = "none"
    corpus: str | None = None
    positions_per_doc: int | None = None
    injection_scale: Scale = SQRT_D
    mse_scale: Scale = SQRT_D
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatasetMeta:
    """Sidecar of a parquet table (`kind: nla_dataset`, `schema_version: 1`)."""

    stage: str
    row_count: int
    extraction: ExtractionMeta
    tokens: TokenMeta | None = None
    av_template: str | None = None
    ar_template: str | None = None
    schema_version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)

    kind = "nla_dataset"

    @property
    def d_model(self) -> int:
        return self.extraction.d_model

    @property
    def layer(self) -> int:
        return self.extraction.layer_index


Meta = ModelMeta | DatasetMeta


# --------------------------------------------------------------------------- scales


def parse_scale(raw: Any, field_name: str, source: str | None) -> Scale:
    """Normalise a recorded scale: number, `"sqrt_d_model"`, or None (raw vectors)."""
    if raw is None or raw in ("raw", "none"):
        return None
    if raw == SQRT_D:
        return SQRT_D
    if isinstance(raw, bool):
        raise field_error(MetaError, source, field_name, f"a number, {SQRT_D!r} or null", raw)
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise field_error(
                MetaError, source, field_name, f"a number, {SQRT_D!r} or null", repr(raw)
            ) from None
    if not math.isfinite(value) or value <= 0:
        raise field_error(MetaError, source, field_name, "a positive finite number", value)
    return value


def resolve_scale(scale: Scale, d_model: int) -> float | None:
    """The L2 norm a scale asks for: `"sqrt_d_model"` → √d, a number → itself, None → raw."""
    if scale is None:
        return None
    if scale == SQRT_D:
        return math.sqrt(d_model)
    return float(scale)


# --------------------------------------------------------------------------- parsing


def _require(d: dict, key: str, source: str | None, section: str = "") -> Any:
    if key not in d or d[key] is None:
        name = f"{section}.{key}" if section else key
        raise field_error(
            MetaError, source, name, "a value", "nothing", "The sidecar is incomplete."
        )
    return d[key]


def _as_int(value: Any, name: str, source: str | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise field_error(MetaError, source, name, "an integer", repr(value))
    return value


def _parse_tokens(d: dict | None, source: str | None, required: bool) -> TokenMeta | None:
    if not d:
        if required:
            raise field_error(MetaError, source, "tokens", "a mapping of token ids", "nothing")
        return None
    char = _require(d, "injection_char", source, "tokens")
    if not isinstance(char, str) or len(char) == 0:
        raise field_error(MetaError, source, "tokens.injection_char", "a character", repr(char))
    ids = {
        key: _as_int(_require(d, key, source, "tokens"), f"tokens.{key}", source)
        for key in (
            "injection_token_id",
            "injection_left_neighbor_id",
            "injection_right_neighbor_id",
        )
    }
    suffix = d.get("critic_suffix_ids")
    if suffix is not None and (
        not isinstance(suffix, list) or not all(isinstance(i, int) for i in suffix)
    ):
        raise field_error(
            MetaError, source, "tokens.critic_suffix_ids", "a list of ints", repr(suffix)
        )
    return TokenMeta(injection_char=char, critic_suffix_ids=suffix, **ids)


def _parse_templates(d: dict | None) -> tuple[str | None, str | None]:
    d = d or {}
    return d.get("av") or d.get("actor"), d.get("ar") or d.get("critic")


_MODEL_KEYS = {
    "kind",
    "role",
    "d_model",
    "extraction",
    "tokens",
    "prompt_templates",
    "ar",
    "critic",
    "base_model",
}


def model_meta_from_dict(d: dict, source: str | None = None) -> ModelMeta:
    """Parse a model sidecar; accepts `av/ar` and `actor/critic` spellings."""
    role = d.get("role")
    role = {"actor": "av", "critic": "ar"}.get(role, role)
    if role not in ("av", "ar"):
        raise field_error(
            MetaError, source, "role", "'av' or 'ar' (or 'actor'/'critic')", repr(d.get("role"))
        )
    extraction = d.get("extraction") or {}
    d_model = d.get("d_model", extraction.get("d_model"))
    if d_model is None:
        raise field_error(MetaError, source, "d_model", "the model width", "nothing")
    d_model = _as_int(d_model, "d_model", source)
    av_template, ar_template = _parse_templates(d.get("prompt_templates"))
    depth_section = d.get("ar") or d.get("critic") or {}
    depth = depth_section.get("num_hidden_layers") if isinstance(depth_section, dict) else None
    layer_index = extraction.get("layer_index")
    extra = {k: copy.deepcopy(v) for k, v in d.items() if k not in _MODEL_KEYS}
    known_extraction = {"injection_scale", "mse_scale", "layer_index", "hook", "d_model"}
    extra_extraction = {k: v for k, v in extraction.items() if k not in known_extraction}
    if extra_extraction:
        extra["_extraction"] = extra_extraction
    return ModelMeta(
        role=role,
        d_model=d_model,
        tokens=_parse_tokens(d.get("tokens"), source, required=True),
        av_template=av_template,
        ar_template=ar_template,
        injection_scale=parse_scale(
            extraction.get("injection_scale", SQRT_D), "extraction.injection_scale", source
        ),
        mse_scale=parse_scale(extraction.get("mse_scale", SQRT_D), "extraction.mse_scale", source),
        layer_index=None
        if layer_index is None
        else _as_int(layer_index, "extraction.layer_index", source),
        ar_num_hidden_layers=None
        if depth is None
        else _as_int(depth, "ar.num_hidden_layers", source),
        base_model=d.get("base_model"),
        extra=extra,
        source=source,
    )


def dataset_meta_from_dict(d: dict, source: str | None = None) -> DatasetMeta:
    """Parse a dataset sidecar (`kind: nla_dataset`)."""
    version = d.get("schema_version", 1)
    if version not in (1, 2):
        raise field_error(
            MetaError,
            source,
            "schema_version",
            "1 (or 2)",
            repr(version),
            "This file was written by a newer tool; upgrade nlakit.",
        )
    stage = d.get("stage")
    if stage not in DATASET_STAGES:
        raise field_error(MetaError, source, "stage", f"one of {DATASET_STAGES}", repr(stage))
    ex = d.get("extraction") or {}
    d_model = ex.get("d_model", d.get("d_model"))
    if d_model is None:
        raise field_error(MetaError, source, "extraction.d_model", "the model width", "nothing")
    layer = _require(ex, "layer_index", source, "extraction")
    norm = ex.get("norm", "none")
    if norm != "none":
        raise field_error(
            MetaError,
            source,
            "extraction.norm",
            "'none' (raw vectors)",
            repr(norm),
            "nlakit stores raw activations and normalises at use time.",
        )
    known = {
        "base_model",
        "d_model",
        "layer_index",
        "hook",
        "norm",
        "corpus",
        "positions_per_doc",
        "injection_scale",
        "mse_scale",
    }
    extraction = ExtractionMeta(
        base_model=ex.get("base_model", d.get("base_model")),
        d_model=_as_int(d_model, "extraction.d_model", source),
        layer_index=_as_int(layer, "extraction.layer_index", source),
        norm=norm,
        corpus=ex.get("corpus"),
        positions_per_doc=ex.get("positions_per_doc"),
        injection_scale=parse_scale(
            ex.get("injection_scale", SQRT_D), "extraction.injection_scale", source
        ),
        mse_scale=parse_scale(ex.get("mse_scale", SQRT_D), "extraction.mse_scale", source),
        extra={k: copy.deepcopy(v) for k, v in ex.items() if k not in known},
    )
    av_template, ar_template = _parse_templates(d.get("prompt_templates"))
    top_known = {
        "kind",
        "schema_version",
        "stage",
        "row_count",
        "extraction",
        "tokens",
        "prompt_templates",
        "base_model",
        "d_model",
    }
    row_count = _as_int(_require(d, "row_count", source), "row_count", source)
    return DatasetMeta(
        stage=stage,
        row_count=row_count,
        extraction=extraction,
        tokens=_parse_tokens(d.get("tokens"), source, required=False),
        av_template=av_template,
        ar_template=ar_template,
        schema_version=1,
        extra={k: copy.deepcopy(v) for k, v in d.items() if k not in top_known},
        source=source,
    )


def meta_from_dict(d: Any, source: str | None = None) -> Meta:
    if not isinstance(d, dict):
        raise MetaError(f"{source or 'sidecar'}: expected a YAML mapping, got {type(d).__name__}.")
    kind = d.get("kind")
    if kind == "nla_model":
        return model_meta_from_dict(d, source)
    if kind == "nla_dataset":
        return dataset_meta_from_dict(d, source)
    raise field_error(MetaError, source, "kind", "'nla_model' or 'nla_dataset'", repr(kind))


# --------------------------------------------------------------------------- serialising


def tokens_dict(t: TokenMeta | None) -> dict | None:
    if t is None:
        return None
    return {
        "injection_char": t.injection_char,
        "injection_token_id": t.injection_token_id,
        "injection_left_neighbor_id": t.injection_left_neighbor_id,
        "injection_right_neighbor_id": t.injection_right_neighbor_id,
        "critic_suffix_ids": t.critic_suffix_ids,
    }


def meta_to_dict(meta: Meta) -> dict:
    """The YAML mapping, in the released schema (templates spelled `av`/`ar`)."""
    templates = {k: v for k, v in (("av", meta.av_template), ("ar", meta.ar_template)) if v}
    if isinstance(meta, ModelMeta):
        extra = dict(meta.extra)
        extraction: dict[str, Any] = dict(extra.pop("_extraction", {}))
        extraction.update(injection_scale=meta.injection_scale, mse_scale=meta.mse_scale)
        if meta.layer_index is not None:
            extraction.update(layer_index=meta.layer_index, hook=hook_name(meta.layer_index))
        out: dict[str, Any] = {"kind": "nla_model", "role": meta.role}
        if meta.base_model is not None:
            out["base_model"] = meta.base_model
        out.update(
            d_model=meta.d_model,
            extraction=extraction,
            tokens=tokens_dict(meta.tokens),
            prompt_templates=templates,
        )
        if meta.ar_num_hidden_layers is not None:
            out["ar"] = {"num_hidden_layers": meta.ar_num_hidden_layers}
        out.update(extra)
        return out
    ex = meta.extraction
    extraction = {
        "base_model": ex.base_model,
        "d_model": ex.d_model,
        "layer_index": ex.layer_index,
        "hook": hook_name(ex.layer_index),
        "norm": ex.norm,
        "corpus": ex.corpus,
        "positions_per_doc": ex.positions_per_doc,
        "injection_scale": ex.injection_scale,
        "mse_scale": ex.mse_scale,
        **ex.extra,
    }
    out = {
        "kind": "nla_dataset",
        "schema_version": 1,
        "stage": meta.stage,
        "row_count": meta.row_count,
        "extraction": extraction,
        "tokens": tokens_dict(meta.tokens),
        "prompt_templates": templates,
    }
    out.update(meta.extra)
    return out


# --------------------------------------------------------------------------- files


def sidecar_path(path: str | os.PathLike) -> Path:
    """`dir/nla_meta.yaml` for a directory, `file.parquet.nla_meta.yaml` for a file."""
    p = Path(path)
    if p.name == SIDECAR_NAME or p.name.endswith(DATASET_SIDECAR_SUFFIX):
        return p
    if p.is_dir() or (not p.exists() and p.suffix == ""):
        return p / SIDECAR_NAME
    return p.with_name(p.name + DATASET_SIDECAR_SUFFIX)


def read_meta(path: str | os.PathLike) -> Meta:
    """Read the sidecar of a model directory, a parquet file, or the YAML itself."""
    sc = sidecar_path(path)
    if not sc.is_file():
        raise MetaError(
            f"{sc}: no sidecar found. An NLA checkpoint or dataset carries `{SIDECAR_NAME}` "
            f"(model directories) or `<file>{DATASET_SIDECAR_SUFFIX}` (tables). Point at the "
            "directory or file that was written with it, or create one with `nlakit.meta.new_meta`."
        )
    try:
        data = yaml.safe_load(sc.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MetaError(f"{sc}: not valid YAML ({exc}).") from None
    return meta_from_dict(data, str(sc))


class _SidecarDumper(yaml.SafeDumper):
    """Writes multi-line strings (the templates) as readable `|` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value and value == value.strip(" ") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_SidecarDumper.add_representer(str, _represent_str)


def dump_meta(meta: Meta) -> str:
    """The sidecar as YAML text."""
    return yaml.dump(meta_to_dict(meta), Dumper=_SidecarDumper, sort_keys=False, allow_unicode=True)


def write_meta(meta: Meta, path: str | os.PathLike) -> Path:
    """Write the sidecar atomically (temp file + rename); returns its path."""
    return write_text(sidecar_path(path), dump_meta(meta))


# --------------------------------------------------------------------------- pairs


def check_pair(av: ModelMeta, ar: ModelMeta) -> None:
    """An AV and an AR belong together only if they share d_model and layer."""
    if av.d_model != ar.d_model:
        raise field_error(
            MetaError,
            ar.source,
            "d_model",
            f"{av.d_model} (the AV's, {av.source})",
            ar.d_model,
            "The AV and AR were trained on different models; pair the AR made with this AV.",
        )
    if av.layer is not None and ar.layer is not None and av.layer != ar.layer:
        raise field_error(
            MetaError,
            ar.source,
            "layer",
            f"{av.layer} (the AV's, {av.source})",
            ar.layer,
            "The AV and AR read different layers; pair the AR made with this AV.",
        )


def with_role(meta: ModelMeta, role: str) -> ModelMeta:
    """A copy of `meta` for the other half of the pair (AR sidecars record their depth)."""
    out = copy.deepcopy(meta)
    out.role = role
    out.ar_num_hidden_layers = meta.layer if role == "ar" else None
    out.source = None
    return out
