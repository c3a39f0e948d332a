"""Held-out evaluation of an AV/AR pair during training: sample explanations of
held-out activations with the training sampler, reconstruct them with the AR, and
report FVE (against the frozen baseline), length, extraction and marker-leak rates."""

from __future__ import annotations

import torch

from nlakit.generation import SamplingConfig, marker_leak, sample_explanations
from nlakit.metrics import FVEBaseline, cosine, fve, mse_nrm


@torch.no_grad()
def evaluate_pair(
    av,
    ar,
    vectors: torch.Tensor,
    baseline: FVEBaseline | None,
    sampling: SamplingConfig,
    seed: int = 0,
    contexts: list[str] | None = None,
) -> tuple[dict, list]:
    """(metrics, samples) of the pair on `vectors [n, d]`; explanations without a closing
    tag are scored as empty, which is what a reader of the parsed output gets
    (`contexts`: the texts before the tokens, for a context AR)."""
    generator = torch.Generator(device=av.device).manual_seed(seed)
    was_training = av.training, ar.training
    av.eval()
    ar.eval()
    samples = sample_explanations(av, vectors, sampling, generator)
    texts = [s.explanation or "" for s in samples]
    pred = ar.reconstruct(texts, contexts=contexts)
    errors = mse_nrm(pred, vectors.float(), ar.meta.mse_scale_value)
    marker = av.meta.tokens.injection_char
    out = {
        "mse_nrm": float(errors.mean()),
        "cos": float(cosine(pred, vectors).mean()),
        "mean_tokens": sum(s.n_tokens for s in samples) / len(samples),
        "extraction_rate": sum(s.finished for s in samples) / len(samples),
        "marker_leak": sum(marker_leak(s.raw, marker) for s in samples) / len(samples),
        "n": len(samples),
    }
    if baseline is not None:
        out["fve"] = fve(errors, baseline)
    av.train(was_training[0])
    ar.train(was_training[1])
    return out, samples
