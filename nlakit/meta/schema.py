"""Sidecar schema: the dataclasses, their YAML form, and reading/writing the files.

Model sidecars live at `DIR/nla_meta.yaml` (`kind: nla_model`), dataset sidecars
beside their table at `FILE.parquet.nla_meta.yaml` (`kind: nla_dataset`,
`schema_version: 1`). nlakit writes what the official NLA readers accept unchanged
and reads every spelling the release wrote (docs/formats.md, "Compatibility"):

- scales are written as numbers (the `"sqrt_d_model"` sentinel is read, never written
  into a model sidecar); `mse_scale: null` is raw MSE, absent is √d; an AV sidecar
  without `extraction.injection_scale` is an error (the release requires it);
- the layer is written as `extraction.layer_index`, top-level `extraction_layer_index`
  (released AVs) and, for ARs, `critic.extraction_layer_index`; all of these and the
  older `critic.num_hidden_layers` / `ar.num_hidden_layers` are read;
- dataset sidecars keep `extraction` to the official keys and put nlakit's own
  (scales, hook, splits, …) in a top-level `nlakit:` section the official reader
  ignores; templates are written `av`/`ar` (the released spelling), `actor`/`critic`
  are read.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

from nlakit.errors import MetaError, field_error

SQRT_D = "sqrt_d_model"
DATASET_STAGES = ("base", "av_sft", "ar_sft", "rl", "eval")
MODEL_SCHEMA_VERSION = 2  # the release's model sidecars
NLAKIT_SECTION = "nlakit"  # nlakit's own keys in a dataset sidecar
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
    """Token ids pinned when the sidecar was written; all asserted at load time.

    `critic_suffix_ids` follows the release's rule: the ids of the AR template's text
    after `{explanation}`, tokenized alone, without the first (which can merge with the
    explanation's last characters); every AR prompt must end in them."""

    injection_char: str
    injection_token_id: int
    injection_left_neighbor_id: int
    injection_right_neighbor_id: int
    critic_suffix_ids: list[int] | None = None


@dataclass
class ModelMeta:
    """Sidecar of an AV or AR checkpoint (`kind: nla_model`).

    Scales keep the value as recorded (a number, `"sqrt_d_model"`, or None = raw);
    use `injection_scale_value` / `mse_scale_value` for the resolved float. An AR needs
    no injection scale (None). `layer_index` is the block K the pair reads;
    `ar_num_hidden_layers` the AR depth K as its `critic:` (or older `ar:`) section
    records it.
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
        """Block index K, from the recorded layer or the AR depth."""
        return self.layer_index if self.layer_index is not None else self.ar_num_hidden_layers


@dataclass
class ExtractionMeta:
    """Where dataset activations came from. Vectors are stored raw (`norm: none`).

    `injection_scale` None means no scale is recorded (the release's datasets record
    none: it is a training choice); `corpus_slice` is `{start, length}` of the corpus
    records read."""

    base_model: str | None
    d_model: int
    layer_index: int
    norm: str = "none"
    corpus: str | None = None
    positions_per_doc: int | None = None
    injection_scale: Scale = None
    mse_scale: Scale = SQRT_D
    corpus_slice: dict[str, int] | None = None
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
    dataset_id: str | None = None
    parent_datasets: list[str] = field(default_factory=list)
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


def _recorded_layers(d: dict, extraction: dict) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every place a model sidecar may record the layer: (the layer K, the AR depth K)."""
    layer = {
        "extraction.layer_index": extraction.get("layer_index"),
        "extraction_layer_index": d.get("extraction_layer_index"),
    }
    depth = {}
    for section in ("critic", "ar"):
        part = d.get(section)
        if isinstance(part, dict):
            for key in ("extraction_layer_index", "num_hidden_layers"):
                depth[f"{section}.{key}"] = part.get(key)
    return (
        {k: v for k, v in layer.items() if v is not None},
        {k: v for k, v in depth.items() if v is not None},
    )


def _one_value(found: dict[str, Any], source: str | None, what: str) -> int | None:
    """The single integer the `found` keys agree on (None when none is recorded)."""
    for key, value in found.items():
        _as_int(value, key, source)
    values = set(found.values())
    if len(values) > 1:
        raise MetaError(
            f"{source or 'sidecar'}: the {what} is recorded differently in "
            f"{', '.join(f'`{k}` = {v}' for k, v in found.items())}. Keep one value "
            "(the block index K whose output the pair reads)."
        )
    return next(iter(values), None)


_MODEL_KEYS = {
    "kind",
    "schema_version",
    "role",
    "d_model",
    "extraction",
    "extraction_layer_index",
    "tokens",
    "prompt_templates",
    "ar",
    "critic",
    "base_model",
    "base_checkpoint",
}


def _model_injection_scale(extraction: dict, role: str, source: str | None) -> Scale:
    if "injection_scale" not in extraction:
        if role == "ar":
            return None  # an AR injects nothing
        raise field_error(
            MetaError,
            source,
            "extraction.injection_scale",
            "the L2 norm the AV was trained with (a number)",
            "nothing",
            "An AV cannot be used without it (the release's readers refuse it too). Add "
            "`injection_scale: <number>` under `extraction:`; `nlakit list` shows the "
            "released AVs' values.",
        )
    return parse_scale(extraction["injection_scale"], "extraction.injection_scale", source)


def model_meta_from_dict(d: dict, source: str | None = None) -> ModelMeta:
    """Parse a model sidecar; accepts every spelling the release and nlakit wrote."""
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
    layers, depths = _recorded_layers(d, extraction)
    layer_index = _one_value(layers, source, "layer")
    depth = _one_value(depths, source, "AR depth")
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
        injection_scale=_model_injection_scale(extraction, role, source),
        mse_scale=parse_scale(extraction.get("mse_scale", SQRT_D), "extraction.mse_scale", source),
        layer_index=layer_index,
        ar_num_hidden_layers=depth,
        base_model=d.get("base_checkpoint", d.get("base_model")),
        extra=extra,
        source=source,
    )


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


def templates_dict(meta: Meta) -> dict:
    return {k: v for k, v in (("av", meta.av_template), ("ar", meta.ar_template)) if v}


def model_meta_to_dict(meta: ModelMeta) -> dict:
    """A model sidecar as the release writes it: resolved numbers for the scales, the
    layer at `extraction_layer_index` (and `extraction.layer_index`), an AR's depth at
    `critic.extraction_layer_index` (and the older `critic.num_hidden_layers`)."""
    extra = dict(meta.extra)
    extraction: dict[str, Any] = dict(extra.pop("_extraction", {}))
    extraction.update(injection_scale=meta.injection_scale_value, mse_scale=meta.mse_scale_value)
    if meta.layer_index is not None:
        extraction.update(layer_index=meta.layer_index, hook=hook_name(meta.layer_index))
    out: dict[str, Any] = {
        "kind": "nla_model",
        "schema_version": MODEL_SCHEMA_VERSION,
        "role": meta.role,
    }
    if meta.base_model is not None:
        out["base_checkpoint"] = meta.base_model
    out.update(d_model=meta.d_model)
    if meta.layer is not None:
        out["extraction_layer_index"] = meta.layer
    out.update(
        extraction=extraction,
        tokens=tokens_dict(meta.tokens),
        prompt_templates=templates_dict(meta),
    )
    if meta.role == "ar" and meta.ar_num_hidden_layers is not None:
        depth = meta.ar_num_hidden_layers
        out["critic"] = {"extraction_layer_index": depth, "num_hidden_layers": depth}
    out.update(extra)
    return out


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
