"""Putting an activation into the AV: pure functions that build `inputs_embeds`.

The AV prompt contains a marker character inside `<concept>…</concept>`. The
marker is found by its token id **and** its two neighbours' ids (from the sidecar),
exactly once per row; its input embedding is **replaced** by the activation
rescaled, in fp32, to L2 norm `injection_scale`. Everything else is the model's own
embedding, built by the model's own embedding module (so Gemma's √d factor is
applied as in its forward pass).

No hooks and no module-level state: the result is an ordinary tensor passed as
`inputs_embeds`, so it behaves the same under batching, left or right padding,
gradient checkpointing and generation.

The optional second mode (`added_at_block`) adds the vector, norm-matched to the
residual stream, at the output of an early block, through a hook that exists only
inside a `with` block.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from nlakit import sites
from nlakit.errors import InjectionError
from nlakit.meta import Meta, ModelMeta, TokenMeta, resolve_scale


def check_vectors(vectors: torch.Tensor, d_model: int, *, what: str = "vectors") -> torch.Tensor:
    """Validate `[batch, d_model]` activation vectors: right width, finite (zero rows warn)."""
    if not isinstance(vectors, torch.Tensor):
        vectors = torch.as_tensor(vectors)
    if vectors.ndim == 1:
        vectors = vectors.unsqueeze(0)
    if vectors.ndim != 2 or vectors.shape[1] != d_model:
        raise InjectionError(
            f"{what}: expected shape [n, {d_model}] (d_model from the sidecar), got "
            f"{list(vectors.shape)}. Were these extracted from a different model?"
        )
    finite = torch.isfinite(vectors).all(dim=1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten().tolist()
        raise InjectionError(
            f"{what}: rows {bad[:10]} contain NaN or inf. Extract in bf16/fp32 (fp16 overflows "
            "on large residual norms) and drop those rows."
        )
    zero = vectors.float().norm(dim=1) == 0
    if bool(zero.any()):
        # As the release does: a zero vector has no direction, rescaling leaves it zero,
        # and it is injected (or scored) as the zero vector rather than refused.
        warnings.warn(
            f"{what}: rows {zero.nonzero().flatten().tolist()[:10]} are all zeros; they are "
            "injected and scored as the zero vector (no direction), as the official NLA code "
            "does.",
            stacklevel=2,
        )
    return vectors


def rescale(vectors: torch.Tensor, scale: float | None) -> torch.Tensor:
    """Vectors rescaled to L2 norm `scale` along the last dim, in fp32 (None: unchanged)."""
    v = vectors.float()
    if scale is None:
        return v
    return v * (scale / v.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def marker_mask(input_ids: torch.Tensor, tokens: TokenMeta) -> torch.Tensor:
    """Boolean `[batch, seq]`: true where the marker sits between its recorded neighbours."""
    is_marker = input_ids == tokens.injection_token_id
    left_ok = torch.zeros_like(is_marker)
    right_ok = torch.zeros_like(is_marker)
    left_ok[:, 1:] = input_ids[:, :-1] == tokens.injection_left_neighbor_id
    right_ok[:, :-1] = input_ids[:, 1:] == tokens.injection_right_neighbor_id
    return is_marker & left_ok & right_ok


def marker_positions(input_ids: torch.Tensor, tokens: TokenMeta) -> torch.Tensor:
    """Index `[batch]` of the one verified marker in each row; errors unless exactly one."""
    mask = marker_mask(input_ids, tokens)
    counts = mask.sum(dim=1)
    if not bool((counts == 1).all()):
        bad = (counts != 1).nonzero().flatten().tolist()
        found = counts[bad[:10]].tolist()
        raise InjectionError(
            f"rows {bad[:10]} contain {found} verified markers, expected exactly 1 per row. "
            f"The marker {tokens.injection_char!r} (id {tokens.injection_token_id}) must appear "
            f"once, between ids {tokens.injection_left_neighbor_id} and "
            f"{tokens.injection_right_neighbor_id}; render prompts with the AV's own template "
            "and tokenizer."
        )
    return mask.int().argmax(dim=1)


def _tokens(meta: Meta) -> TokenMeta:
    if meta.tokens is None:
        raise InjectionError(f"{meta.source or 'sidecar'}: no `tokens` section; cannot inject.")
    return meta.tokens


def inject_activations(
    input_ids: torch.Tensor,
    embeds: torch.Tensor,
    vectors: torch.Tensor,
    meta: Meta,
) -> torch.Tensor:
    """`embeds [batch, seq, d]` with row i's verified marker replaced by `vectors[i]`.

    A pure function: `vectors [batch, d_model]` are raw; each is rescaled in fp32
    to the sidecar's `injection_scale` and cast to the embedding dtype. Nothing is
    modified in place. A single row holding several prompts back to back (a packed
    row, `[1, seq]`) takes one vector per marker, in order.
    """
    vectors = check_vectors(vectors, meta.d_model)
    n = vectors.shape[0]
    if input_ids.shape[0] == 1 and n > 1:
        rows, cols = packed_marker_positions(input_ids, _tokens(meta), n)
    elif n != input_ids.shape[0]:
        raise InjectionError(f"got {n} vectors for {input_ids.shape[0]} prompts; pass one per row.")
    else:
        rows, cols = torch.arange(n), marker_positions(input_ids, _tokens(meta))
    scaled = rescale(vectors.to(embeds.device), _injection_scale(meta)).to(embeds.dtype)
    at = (rows.to(embeds.device), cols.to(embeds.device))
    return embeds.index_put(at, scaled)


def packed_marker_positions(
    input_ids: torch.Tensor, tokens: TokenMeta, expected: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, columns) of the `expected` verified markers of a packed row `[1, seq]`."""
    cols = marker_mask(input_ids, tokens)[0].nonzero().flatten()
    if cols.numel() != expected:
        raise InjectionError(
            f"a packed row holds {cols.numel()} verified markers for {expected} vectors; "
            "pack whole AV prompts, one per vector."
        )
    return torch.zeros_like(cols), cols


def build_inputs_embeds(
    model: nn.Module,
    input_ids: torch.Tensor,
    vectors: torch.Tensor,
    meta: Meta,
) -> torch.Tensor:
    """`inputs_embeds [batch, seq, d_model]` for `model`: its own embeddings (built by its
    embedding module, as its forward would) with each row's marker replaced by its vector."""
    return inject_activations(input_ids, sites.embedding(model)(input_ids), vectors, meta)


def _injection_scale(meta: Meta) -> float | None:
    if isinstance(meta, ModelMeta):
        return meta.injection_scale_value
    return resolve_scale(meta.extraction.injection_scale, meta.d_model)


def add_norm_matched(
    hidden: torch.Tensor, positions: torch.Tensor, vectors: torch.Tensor, strength: float = 1.0
) -> torch.Tensor:
    """`hidden [batch, seq, d]` plus, at each row's position, the vector's direction
    scaled to `strength` times the residual norm there (computed in fp32)."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    at = hidden[rows, positions].float()
    direction = rescale(vectors.to(hidden.device), 1.0)
    delta = direction * at.norm(dim=-1, keepdim=True) * strength
    mask = torch.zeros(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
    mask[rows, positions] = True
    added = hidden + delta.to(hidden.dtype).unsqueeze(1)
    return torch.where(mask.unsqueeze(-1), added, hidden)


@contextmanager
def added_at_block(
    model: nn.Module,
    input_ids: torch.Tensor,
    vectors: torch.Tensor,
    meta: Meta,
    block: int = 1,
    strength: float = 1.0,
) -> Iterator[None]:
    """Inside the `with`, forwards of `model` on `input_ids` get each row's vector
    added (norm-matched) at its marker, at the output of `block`.

    Only a forward over the full prompt (sequence length equal to `input_ids`) is
    changed; single-token decoding steps pass through untouched. The hook and the
    tensors it closes over exist only for the duration of the block.
    """
    vectors = check_vectors(vectors, meta.d_model)
    if vectors.shape[0] != input_ids.shape[0]:
        raise InjectionError(
            f"got {vectors.shape[0]} vectors for {input_ids.shape[0]} prompts; pass one per row."
        )
    sites.check_layer(model, block)
    positions = marker_positions(input_ids, _tokens(meta))
    seq_len = input_ids.shape[1]

    def hook(_module, _args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if hidden.shape[1] != seq_len:
            return None
        new = add_norm_matched(hidden, positions.to(hidden.device), vectors, strength)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = sites.blocks(model)[block].register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
