"""Loading and checking checkpoints: devices, dtypes, local directories or Hub ids,
tokenizers, causal LMs (optionally in 4 bits), and the sidecar checks shared by the AV
and the AR (`nlakit.models`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nlakit import sites
from nlakit.errors import CheckpointError, MetaError, NLAKitError, field_error, require
from nlakit.meta import ModelMeta, new_meta, read_meta, upgrade_suffix, validate, with_role
from nlakit.store.names import MODEL_CONFIG, SIDECAR_NAME

# transformers' Auto classes and huggingface_hub are imported where a model is loaded
# or saved: they add seconds to `import nlakit.models`, which many modules need for its
# types and helpers alone (the analyses that read tables, the sidecar tools).
_DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


# --------------------------------------------------------------------------- loading helpers


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`None` means CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        return device
    from nlakit.config import device_problem

    problem = device_problem(device)
    if problem is not None:
        raise NLAKitError(f"--device {problem}.")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """`None` means bf16 on GPU and fp32 on CPU."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def local_dir(path_or_id: str | os.PathLike) -> Path:
    """A local directory for `path_or_id`: itself, or a Hub snapshot of that repo id.
    Checks that it holds a `config.json`."""
    path = Path(path_or_id)
    if path.is_dir():
        if not (path / MODEL_CONFIG).is_file():
            raise CheckpointError(
                f"{path}: no {MODEL_CONFIG}; this is not a Hugging Face model directory."
            )
        return path
    if path.exists() or str(path_or_id).count("/") != 1:
        raise CheckpointError(
            f"{path_or_id}: not a checkpoint directory (and not a Hub id of the form owner/name)."
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(path_or_id)))
    except Exception as exc:  # offline, gated, or missing repo: say which
        raise CheckpointError(
            f"{path_or_id}: not a local directory, and fetching it from the Hugging Face Hub "
            f"failed ({type(exc).__name__}: {exc}). Check the id, your network and HF_TOKEN, or "
            "download the checkpoint and pass its directory."
        ) from None


def load_tokenizer(path: str | os.PathLike, trust_remote_code: bool = False):
    """The tokenizer saved with a checkpoint; pads with EOS when it has no pad token."""
    from transformers import AutoTokenizer

    if not Path(path).is_dir() and str(path).count("/") != 1:
        raise CheckpointError(
            f"{path}: no such tokenizer directory (and not a Hub id of the form owner/name)."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: no tokenizer could be loaded from it ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]}); pass a model directory or Hub id that has one."
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def read_model_meta(path: Path, role: str) -> ModelMeta:
    meta = read_meta(path)
    if not isinstance(meta, ModelMeta):
        raise field_error(MetaError, meta.source, "kind", "nla_model", "nla_dataset")
    check_role(meta, role)
    return meta


ROLE_NAMES = {"av": "verbalizer (AV)", "ar": "reconstructor (AR)"}


def check_role(meta: ModelMeta, role: str) -> None:
    """A sidecar of the `role` expected (`av` or `ar`); a mix-up names both options."""
    if meta.role != role:
        raise field_error(
            MetaError,
            meta.source,
            "role",
            f"{role!r} (a {ROLE_NAMES[role]}, for --{role})",
            repr(meta.role),
            f"This directory holds the {ROLE_NAMES[meta.role]}: pass it as --{meta.role}.",
        )


def check_contract(model: nn.Module, tokenizer: Any, meta: ModelMeta, template: str) -> None:
    """The sidecar fits the model's width and the tokenizer, and has the needed template."""
    d = sites.hidden_size(model)
    if d != meta.d_model:
        raise field_error(
            MetaError,
            meta.source,
            "d_model",
            f"{d} (the model's hidden size)",
            meta.d_model,
            "The sidecar belongs to another model.",
        )
    upgrade_suffix(meta, tokenizer)
    validate(meta, tokenizer)
    if getattr(meta, f"{template}_template") is None:
        raise field_error(
            MetaError, meta.source, f"prompt_templates.{template}", "a template", "nothing"
        )


def base_meta(
    model: nn.Module, tokenizer: Any, layer: int, meta: ModelMeta | None, role: str
) -> ModelMeta:
    """The sidecar for a model made from a base model at block `layer`: a fresh one
    unless given, and then it must agree on the layer."""
    sites.check_layer(model, layer)
    if meta is None:
        name = getattr(sites.unwrap(model), "name_or_path", None)
        meta = new_meta(tokenizer, layer, sites.hidden_size(model), base_model=name or None)
    elif meta.layer not in (None, layer):
        raise field_error(
            MetaError,
            meta.source,
            "extraction.layer_index",
            layer,
            meta.layer,
            "The sidecar was made for another layer.",
        )
    meta = with_role(meta, role)
    meta.layer_index = layer
    if role == "ar":
        meta.ar_num_hidden_layers = layer
    return meta


def four_bit(dtype: torch.dtype):
    """QLoRA's quantization of a frozen base: NF4 weights, double-quantized constants,
    matmuls in `dtype` (a `transformers` `BitsAndBytesConfig`; needs bitsandbytes)."""
    from transformers import BitsAndBytesConfig

    require("bitsandbytes", "qlora", "4-bit loading (--load-in-4bit)")
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
    )


def load_causal_lm(
    path_or_id: str | os.PathLike,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    load_in_4bit: bool = False,
):
    """A causal LM and its tokenizer (local directory or Hub id), in eval mode;
    `load_in_4bit`: its linear layers quantized to NF4 (`four_bit`)."""
    from transformers import AutoModelForCausalLM

    path = local_dir(path_or_id)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    model = AutoModelForCausalLM.from_pretrained(
        str(path),
        dtype=torch_dtype,
        device_map=str(dev),
        trust_remote_code=trust_remote_code,
        quantization_config=four_bit(torch_dtype) if load_in_4bit else None,
    )
    return model.eval(), load_tokenizer(path, trust_remote_code)


def check_role_at(path: str | os.PathLike, role: str) -> None:
    """When `path` is a local directory with a sidecar, it must be of `role` (checked
    before any weights load; a base model or a Hub id passes, and is read later)."""
    if (Path(path) / SIDECAR_NAME).is_file():
        read_model_meta(Path(path), role)
