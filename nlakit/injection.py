"""Putting an activation into the AV: pure functions that build `inputs_embeds`.

The AV prompt contains a marker character inside `<concept>…</concept>`. The
marker is found by its token id **and** its two neighbours' ids (from the sidecar),
exactly once per row; its input embedding is **replaced** by the activation
rescaled, in fp32, to L2 norm `injection_scale`. Everything else is the model's own
embedding, built by the model's own embedding module (so Gemma's √d factor is
applied as in its forward pass).

An AV with a multi-token layout (`nlakit.injection_layout`: k markers, `repeat` or
`split`) has a run of exactly k markers there instead, the first after the left
neighbour and the last before the right one; each position gets its own vector
(`marker_vectors`). The functions take the layout as an argument (default: one
marker), so the single-marker path is unchanged.

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
from nlakit.injection_layout import SINGLE, InjectionLayout, split_parts
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


def run_starts(input_ids: torch.Tensor, tokens: TokenMeta, k: int = 1) -> torch.Tensor:
    """Boolean `[batch, seq]`: true where a run of exactly `k` markers starts right after
    the recorded left neighbour and ends right before the recorded right neighbour."""
    batch, seq = input_ids.shape
    starts = torch.zeros((batch, seq), dtype=torch.bool, device=input_ids.device)
    if seq < k + 2:
        return starts
    # a run starting at p (1 ≤ p ≤ seq - k - 1): left at p - 1, markers p … p + k - 1, right at p + k
    ok = (input_ids[:, : seq - k - 1] == tokens.injection_left_neighbor_id) & (
        input_ids[:, k + 1 :] == tokens.injection_right_neighbor_id
    )
    for i in range(k):
        ok &= input_ids[:, 1 + i : seq - k + i] == tokens.injection_token_id
    starts[:, 1 : seq - k] = ok
    return starts


def marker_mask(input_ids: torch.Tensor, tokens: TokenMeta, k: int = 1) -> torch.Tensor:
    """Boolean `[batch, seq]`: true at every marker of a verified run of `k` (one marker
    between its recorded neighbours for `k` = 1)."""
    starts = run_starts(input_ids, tokens, k)
    mask = starts.clone()
    for i in range(1, k):
        mask[:, i:] |= starts[:, :-i]
    return mask


def marker_run_positions(input_ids: torch.Tensor, tokens: TokenMeta, k: int = 1) -> torch.Tensor:
    """Index `[batch, k]` of the verified run of `k` markers in each row; errors unless
    every row holds exactly one."""
    starts = run_starts(input_ids, tokens, k)
    counts = starts.sum(dim=1)
    if not bool((counts == 1).all()):
        bad = (counts != 1).nonzero().flatten().tolist()
        found = counts[bad[:10]].tolist()
        what = (
            "verified markers, expected exactly 1"
            if k == 1
            else f"verified runs of {k} markers, expected exactly 1"
        )
        raise InjectionError(
            f"rows {bad[:10]} contain {found} {what} per row. "
            f"The marker {tokens.injection_char!r} (id {tokens.injection_token_id}) must appear "
            f"{'once' if k == 1 else f'{k} times in a row'}, between ids "
            f"{tokens.injection_left_neighbor_id} and {tokens.injection_right_neighbor_id}; "
            "render prompts with the AV's own template and tokenizer (`ActivationVerbalizer."
            "prompt_ids`)."
        )
    first = starts.int().argmax(dim=1)
    return first.unsqueeze(1) + torch.arange(k, device=input_ids.device)


def marker_positions(input_ids: torch.Tensor, tokens: TokenMeta) -> torch.Tensor:
    """Index `[batch]` of the one verified marker in each row; errors unless exactly one."""
    return marker_run_positions(input_ids, tokens, 1)[:, 0]


def _tokens(meta: Meta) -> TokenMeta:
    if meta.tokens is None:
        raise InjectionError(f"{meta.source or 'sidecar'}: no `tokens` section; cannot inject.")
    return meta.tokens


def marker_vectors(
    vectors: torch.Tensor, scale: float | None, layout: InjectionLayout = SINGLE
) -> torch.Tensor:
    """`[n, k, d]` fp32: what each of a row's k marker positions receives, from raw
    `vectors [n, d]`: the vector rescaled to `scale` at every position (`repeat`, and
    one marker), or its k projections onto the layout's subspaces, each rescaled
    (`split`). `scale` None injects raw (unscaled)."""
    if layout.split:
        if layout.basis is None:
            raise InjectionError("split injection without its basis; use `with_basis(d_model)`.")
        return rescale(split_parts(vectors.float(), layout.basis, layout.tokens), scale)
    return rescale(vectors, scale).unsqueeze(1).expand(-1, layout.tokens, -1)


def inject_activations(
    input_ids: torch.Tensor,
    embeds: torch.Tensor,
    vectors: torch.Tensor,
    meta: Meta,
    layout: InjectionLayout = SINGLE,
) -> torch.Tensor:
    """`embeds [batch, seq, d]` with row i's verified marker replaced by `vectors[i]`.

    A pure function: `vectors [batch, d_model]` are raw; each is rescaled in fp32
    to the sidecar's `injection_scale` and cast to the embedding dtype. Nothing is
    modified in place. A single row holding several prompts back to back (a packed
    row, `[1, seq]`) takes one vector per marker, in order. With a multi-token
    `layout`, each row's run of k markers takes `marker_vectors` (packed rows too:
    one run per vector).
    """
    vectors = check_vectors(vectors, meta.d_model)
    n, k = vectors.shape[0], layout.tokens
    if input_ids.shape[0] == 1 and n > 1:
        rows, cols = packed_marker_positions(input_ids, _tokens(meta), n, k)
    elif n != input_ids.shape[0]:
        raise InjectionError(f"got {n} vectors for {input_ids.shape[0]} prompts; pass one per row.")
    else:
        cols = marker_run_positions(input_ids, _tokens(meta), k)
        rows = torch.arange(n, device=cols.device).unsqueeze(1).expand(-1, k)
    values = marker_vectors(vectors.to(embeds.device), _injection_scale(meta), layout)
    at = (rows.to(embeds.device), cols.to(embeds.device))
    return embeds.index_put(at, values.to(embeds.dtype))


def packed_marker_positions(
    input_ids: torch.Tensor, tokens: TokenMeta, expected: int, k: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, columns), each `[expected, k]`, of the `expected` verified marker runs of
    a packed row `[1, seq]`."""
    starts = run_starts(input_ids, tokens, k)[0].nonzero().flatten()
    if starts.numel() != expected:
        what = "verified markers" if k == 1 else f"verified runs of {k} markers"
        raise InjectionError(
            f"a packed row holds {starts.numel()} {what} for {expected} vectors; "
            "pack whole AV prompts, one per vector."
        )
    cols = starts.unsqueeze(1) + torch.arange(k, device=starts.device)
    return torch.zeros_like(cols), cols


def build_inputs_embeds(
    model: nn.Module,
    input_ids: torch.Tensor,
    vectors: torch.Tensor,
    meta: Meta,
    layout: InjectionLayout = SINGLE,
) -> torch.Tensor:
    """`inputs_embeds [batch, seq, d_model]` for `model`: its own embeddings (built by its
    embedding module, as its forward would) with each row's marker (or run of markers,
    for a multi-token `layout`) replaced by its vector."""
    embeds = sites.embedding(model)(input_ids)
    return inject_activations(input_ids, embeds, vectors, meta, layout)


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
