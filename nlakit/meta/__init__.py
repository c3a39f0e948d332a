"""The sidecar contract: `nla_meta.yaml` for models and `{file}.nla_meta.yaml` for datasets.

A sidecar pins everything an NLA needs that is not in the weights: the marker
character and its token ids, the prompt templates, the scales, the layer. nlakit
reads and writes the schema of the released NLA checkpoints and datasets, so those
load unchanged, and it asserts every recorded id against the live tokenizer before
use (`validate`) — a drifted template otherwise injects at the wrong position
without any error.

    meta = read_meta("path/to/av")          # a model dir, a parquet file, or the yaml
    validate(meta, tokenizer)               # raises MetaError naming file/field/expected/actual
    meta = new_meta(tokenizer, layer=12, d_model=2048)   # for a fresh base model

`schema` holds the dataclasses and the model sidecar, `files` the dataset sidecar and
file I/O, `tokens` the prompt rendering and the checks against a tokenizer.
"""

from nlakit.meta.files import (
    OFFICIAL_EXTRACTION_KEYS,
    dataset_id,
    dataset_meta_from_dict,
    dataset_meta_to_dict,
    dump_meta,
    meta_from_dict,
    meta_to_dict,
    read_meta,
    sidecar_path,
    write_meta,
)
from nlakit.meta.schema import (
    DATASET_STAGES,
    DEFAULT_AR_TEMPLATE,
    DEFAULT_AV_TEMPLATE,
    INJECT_PLACEHOLDER,
    MARKER_RANGE,
    NLAKIT_SECTION,
    SQRT_D,
    DatasetMeta,
    ExtractionMeta,
    Meta,
    ModelMeta,
    Scale,
    TokenMeta,
    check_pair,
    hook_name,
    model_meta_from_dict,
    model_meta_to_dict,
    parse_scale,
    resolve_scale,
    tokens_dict,
    with_role,
)
from nlakit.meta.tokens import (
    ar_suffix_ids,
    ar_template_suffix,
    av_prompt_content,
    check,
    marker_neighbours,
    new_meta,
    pick_marker,
    render_ar_prompt_ids,
    render_av_prompt_ids,
    upgrade_suffix,
    validate,
)
from nlakit.store.names import DATASET_SIDECAR_SUFFIX, SIDECAR_NAME  # the sidecars' names

__all__ = [
    "DATASET_SIDECAR_SUFFIX",
    "DATASET_STAGES",
    "DEFAULT_AR_TEMPLATE",
    "DEFAULT_AV_TEMPLATE",
    "INJECT_PLACEHOLDER",
    "MARKER_RANGE",
    "NLAKIT_SECTION",
    "OFFICIAL_EXTRACTION_KEYS",
    "SIDECAR_NAME",
    "SQRT_D",
    "DatasetMeta",
    "ExtractionMeta",
    "Meta",
    "ModelMeta",
    "Scale",
    "TokenMeta",
    "ar_suffix_ids",
    "ar_template_suffix",
    "av_prompt_content",
    "check",
    "check_pair",
    "dataset_id",
    "dataset_meta_from_dict",
    "dataset_meta_to_dict",
    "dump_meta",
    "hook_name",
    "marker_neighbours",
    "meta_from_dict",
    "meta_to_dict",
    "model_meta_from_dict",
    "model_meta_to_dict",
    "new_meta",
    "parse_scale",
    "pick_marker",
    "read_meta",
    "render_ar_prompt_ids",
    "render_av_prompt_ids",
    "resolve_scale",
    "sidecar_path",
    "tokens_dict",
    "upgrade_suffix",
    "validate",
    "with_role",
    "write_meta",
]
