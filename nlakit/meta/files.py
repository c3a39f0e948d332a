"""Sidecar files: the dataset schema, YAML reading and writing, and path rules.

A dataset sidecar keeps `extraction` to the keys of the release's schema
(`base_model`, `d_model`, `layer_index`, `norm`, `corpus`, `corpus_slice`,
`positions_per_doc`) so that the official `deserialize_sidecar` reads it; what nlakit
adds (the scales, the hook, the split fractions, the shard list …) goes into a
top-level `nlakit:` section, which that reader ignores. Files written by older nlakit
versions (those keys under `extraction`) are read as well.
"""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path
from typing import Any

import yaml

from nlakit.atomic import write_text
from nlakit.errors import MetaError, NLAKitError, field_error
from nlakit.meta.schema import (
    DATASET_STAGES,
    NLAKIT_SECTION,
    SQRT_D,
    DatasetMeta,
    ExtractionMeta,
    Meta,
    ModelMeta,
    _as_int,
    _parse_templates,
    _parse_tokens,
    _require,
    hook_name,
    model_meta_from_dict,
    model_meta_to_dict,
    parse_scale,
    templates_dict,
    tokens_dict,
)
from nlakit.store.names import DATASET_SIDECAR_SUFFIX, SIDECAR_NAME
from nlakit.store.readers import read_yaml

# The keys of `extraction` in the release's dataset schema (NLAExtractionMeta).
OFFICIAL_EXTRACTION_KEYS = (
    "base_model",
    "d_model",
    "layer_index",
    "norm",
    "corpus",
    "corpus_slice",
    "positions_per_doc",
)
_DATASET_TOP_KEYS = {
    "kind",
    "schema_version",
    "dataset_id",
    "stage",
    "row_count",
    "extraction",
    "tokens",
    "prompt_templates",
    "parent_datasets",
    "base_model",
    "d_model",
    NLAKIT_SECTION,
}


def dataset_id(meta: DatasetMeta) -> str:
    """The release's id shape: `{stage}_{model}_L{layer}_{hash of model, layer, corpus,
    slice}`; stable for the same extraction."""
    ex = meta.extraction
    model = ex.base_model or "model"
    digest = hashlib.sha256(
        f"{model}|{ex.layer_index}|{ex.corpus}|{ex.corpus_slice}".encode()
    ).hexdigest()[:8]
    return f"{meta.stage}_{model.rstrip('/').split('/')[-1]}_L{ex.layer_index}_{digest}"


def _corpus_slice(raw: Any, source: str | None) -> dict[str, int] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"start", "length"}:
        raise field_error(
            MetaError, source, "extraction.corpus_slice", "a mapping {start, length}", repr(raw)
        )
    return {k: _as_int(raw[k], f"extraction.corpus_slice.{k}", source) for k in ("start", "length")}


def dataset_meta_from_dict(d: dict, source: str | None = None) -> DatasetMeta:
    """Parse a dataset sidecar (`kind: nla_dataset`), the release's or nlakit's."""
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
    own = d.get(NLAKIT_SECTION) or {}
    if not isinstance(own, dict):
        raise field_error(MetaError, source, NLAKIT_SECTION, "a mapping", repr(own))
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
    # nlakit's keys: in the `nlakit:` section, or under `extraction` (older nlakit files)
    mine = {**{k: v for k, v in ex.items() if k not in OFFICIAL_EXTRACTION_KEYS}, **own}
    where = NLAKIT_SECTION if NLAKIT_SECTION in d else "extraction"
    extraction = ExtractionMeta(
        base_model=ex.get("base_model", d.get("base_model")),
        d_model=_as_int(d_model, "extraction.d_model", source),
        layer_index=_as_int(layer, "extraction.layer_index", source),
        norm=norm,
        corpus=ex.get("corpus"),
        positions_per_doc=ex.get("positions_per_doc"),
        injection_scale=parse_scale(
            mine.get("injection_scale"), f"{where}.injection_scale", source
        ),
        mse_scale=parse_scale(mine.get("mse_scale", SQRT_D), f"{where}.mse_scale", source),
        corpus_slice=_corpus_slice(ex.get("corpus_slice"), source),
        extra={
            k: copy.deepcopy(v)
            for k, v in mine.items()
            if k not in ("injection_scale", "mse_scale", "hook")
        },
    )
    av_template, ar_template = _parse_templates(d.get("prompt_templates"))
    row_count = _as_int(_require(d, "row_count", source), "row_count", source)
    parents = d.get("parent_datasets") or []
    return DatasetMeta(
        stage=stage,
        row_count=row_count,
        extraction=extraction,
        tokens=_parse_tokens(d.get("tokens"), source, required=False),
        av_template=av_template,
        ar_template=ar_template,
        schema_version=1,
        dataset_id=d.get("dataset_id"),
        parent_datasets=[str(p) for p in parents],
        extra={k: copy.deepcopy(v) for k, v in d.items() if k not in _DATASET_TOP_KEYS},
        source=source,
    )


def dataset_meta_to_dict(meta: DatasetMeta) -> dict:
    """A dataset sidecar the release's `deserialize_sidecar` reads unchanged."""
    ex = meta.extraction
    extraction: dict[str, Any] = {
        "base_model": ex.base_model,
        "d_model": ex.d_model,
        "layer_index": ex.layer_index,
        "norm": ex.norm,
        "corpus": ex.corpus,
    }
    if ex.corpus_slice is not None:
        extraction["corpus_slice"] = dict(ex.corpus_slice)
    extraction["positions_per_doc"] = ex.positions_per_doc
    own: dict[str, Any] = {"hook": hook_name(ex.layer_index), "mse_scale": ex.mse_scale}
    if ex.injection_scale is not None:
        own["injection_scale"] = ex.injection_scale
    own.update(ex.extra)
    out: dict[str, Any] = {
        "kind": "nla_dataset",
        "schema_version": 1,
        "dataset_id": meta.dataset_id or dataset_id(meta),
        "stage": meta.stage,
        "row_count": meta.row_count,
        "extraction": extraction,
        "tokens": tokens_dict(meta.tokens),
        "prompt_templates": templates_dict(meta),
    }
    if meta.parent_datasets:
        out["parent_datasets"] = list(meta.parent_datasets)
    out.update(meta.extra)
    out[NLAKIT_SECTION] = own
    return out


# --------------------------------------------------------------------------- dispatch


def meta_from_dict(d: Any, source: str | None = None) -> Meta:
    if not isinstance(d, dict):
        raise MetaError(f"{source or 'sidecar'}: expected a YAML mapping, got {type(d).__name__}.")
    kind = d.get("kind")
    if kind == "nla_model":
        return model_meta_from_dict(d, source)
    if kind == "nla_dataset":
        return dataset_meta_from_dict(d, source)
    raise field_error(MetaError, source, "kind", "'nla_model' or 'nla_dataset'", repr(kind))


def meta_to_dict(meta: Meta) -> dict:
    """The YAML mapping, in the released schema (templates spelled `av`/`ar`)."""
    if isinstance(meta, ModelMeta):
        return model_meta_to_dict(meta)
    return dataset_meta_to_dict(meta)


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
        data = read_yaml(
            sc,
            what="an NLA sidecar (a YAML mapping with `kind: nla_model` or `nla_dataset`)",
            fix="Restore it from the checkpoint or dataset it came with.",
            expect=None,  # meta_from_dict names the wrong kind itself
        )
    except NLAKitError as exc:
        raise MetaError(str(exc)) from None
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
