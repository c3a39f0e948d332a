"""Where things live inside a Hugging Face decoder, and the layer convention.

The activation of a token at layer K is the **output of block K** (0-based): in
Hugging Face terms `hidden_states[K + 1]` of a forward with
`output_hidden_states=True`, in TransformerLens terms `blocks.K.hook_resid_post`.
(For the last block, K = L - 1, Hugging Face's `hidden_states[L]` is taken *after*
the final norm; `extract_layer` always returns the block output itself.)

`extract_layer` stops the forward pass right after block K: the blocks above K and
the LM head (often the largest single matrix) are never run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import torch
from torch import nn

from nlakit.errors import ArchitectureError


@dataclass(frozen=True)
class Layout:
    """Attribute names, relative to the text decoder module, of its three parts."""

    blocks: str
    embed: str
    norm: str


_LLAMA_LIKE = Layout("layers", "embed_tokens", "norm")
LAYOUTS: dict[str, Layout] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "qwen3_moe": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "gpt2": Layout("h", "wte", "ln_f"),
}
_CONTAINERS = ("model", "transformer", "language_model")


def unwrap(model: nn.Module) -> nn.Module:
    """The underlying transformers model of a peft or DDP wrapper."""
    while True:
        if hasattr(model, "get_base_model") and callable(model.get_base_model):
            model = model.get_base_model()
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def text_config(model_or_config):
    """The text (decoder) config of a model or config, multimodal wrappers included."""
    config = getattr(model_or_config, "config", model_or_config)
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def layout_of(model: nn.Module) -> Layout:
    model_type = getattr(text_config(unwrap(model)), "model_type", None)
    if model_type not in LAYOUTS:
        raise ArchitectureError(
            f"model_type {model_type!r} is not supported; supported: {sorted(LAYOUTS)}. "
            "Add its layout (blocks, embedding, final norm attribute names) to nlakit.sites.LAYOUTS."
        )
    return LAYOUTS[model_type]


def decoder(model: nn.Module) -> nn.Module:
    """The text decoder module: it owns the embedding, the blocks and the final norm.

    Works for `*ForCausalLM`, base models, Gemma 3's multimodal wrapper
    (`model.language_model`), peft and DDP wrappers.
    """
    layout = layout_of(model)
    module = unwrap(model)
    for _ in range(4):
        if isinstance(getattr(module, layout.blocks, None), nn.ModuleList):
            return module
        child = next((getattr(module, n) for n in _CONTAINERS if hasattr(module, n)), None)
        if not isinstance(child, nn.Module):
            break
        module = child
    raise ArchitectureError(
        f"could not find the decoder blocks (`{layout.blocks}`) inside {type(model).__name__}."
    )


def blocks(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks, in order."""
    return getattr(decoder(model), layout_of(model).blocks)


def num_blocks(model: nn.Module) -> int:
    return len(blocks(model))


def embedding(model: nn.Module) -> nn.Module:
    """The token embedding module (for Gemma it multiplies by √d itself)."""
    return getattr(decoder(model), layout_of(model).embed)


def embedding_scale(model: nn.Module) -> float:
    """The factor the embedding module applies after the lookup (√d for Gemma, else 1)."""
    scale = getattr(embedding(model), "scalar_embed_scale", None)
    if scale is None:
        buf = getattr(embedding(model), "embed_scale", None)
        scale = float(buf) if buf is not None else 1.0
    return float(scale)


def final_norm(model: nn.Module) -> nn.Module:
    return getattr(decoder(model), layout_of(model).norm)


def replace_final_norm(model: nn.Module, module: nn.Module) -> nn.Module:
    """Swap the final norm (the AR uses identity); returns the old one."""
    dec, name = decoder(model), layout_of(model).norm
    old = getattr(dec, name)
    setattr(dec, name, module)
    return old


def hidden_size(model: nn.Module) -> int:
    return int(text_config(unwrap(model)).hidden_size)


def check_layer(model: nn.Module, layer: int) -> None:
    n = num_blocks(model)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n:
        raise ArchitectureError(
            f"layer {layer!r} is out of range: this model has {n} blocks, so the layer index "
            f"(0-based block K) must be in 0..{n - 1}."
        )


class _StopForward(Exception):
    """Raised by the block-K hook to end the forward pass early."""


@contextmanager
def stop_after(model: nn.Module, layer: int) -> Iterator[dict]:
    """Within the block, a forward of `model` ends after block `layer`.

    Yields a dict whose `"hidden"` entry holds the block output once the forward
    has run. The hook is created here and removed on exit, so no state outlives
    the call.
    """
    check_layer(model, layer)
    captured: dict = {}

    def hook(_module, _args, output):
        captured["hidden"] = output[0] if isinstance(output, tuple) else output
        raise _StopForward

    handle = blocks(model)[layer].register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def extract_layer(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    layer: int,
) -> torch.Tensor:
    """Block-`layer` outputs `[batch, seq, d_model]`, running only blocks 0..layer.

    Equals `hidden_states[layer + 1]` of a full forward (for layer < L - 1).
    Runs the decoder only (no LM head) and without a KV cache.
    """
    dec = decoder(model)
    with stop_after(model, layer) as captured, suppress(_StopForward):
        dec(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    if "hidden" not in captured:
        raise ArchitectureError(
            f"block {layer} of {type(model).__name__} never ran; cannot extract its output."
        )
    return captured["hidden"]
