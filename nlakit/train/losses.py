"""The math of training, as small pure functions (each unit-tested).

Shapes: `[batch, seq]` for per-token quantities, `[batch]` per sequence, `[n, d]`
for vectors. Masks are 1 on tokens that count (the response), 0 elsewhere.
"""

from __future__ import annotations

import torch

from nlakit.metrics import mse_nrm


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Log-probability `[batch, seq]` of each target under logits `[batch, seq, vocab]`
    (position t's logits predict target t), computed in fp32."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def masked_mean(
    values: torch.Tensor, mask: torch.Tensor, total: float | None = None
) -> torch.Tensor:
    """Σ values·mask / Σ mask (or / `total`, a token count shared across ranks)."""
    denominator = mask.sum() if total is None else torch.as_tensor(total, dtype=values.dtype)
    return (values * mask).sum() / denominator.clamp_min(1)


def response_ce(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, total: float | None = None
) -> torch.Tensor:
    """Cross-entropy on the response tokens only (the AV's SFT loss)."""
    return masked_mean(-token_logprobs(logits, targets), mask, total)


def ar_loss(pred: torch.Tensor, gold: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Mean mse_nrm between predicted and gold vectors (the AR's loss)."""
    return mse_nrm(pred, gold, scale).mean()


ADVANTAGE_NORMS = ("std", "mean")


def group_advantages(
    reward: torch.Tensor, group_size: int, norm: str = "std", eps: float = 1e-6
) -> torch.Tensor:
    """GRPO advantages `[n]` of consecutive groups of `group_size` samples of the same
    activation: the reward minus its group mean, divided by the group's std
    (`norm="std"`, GRPO) or not (`norm="mean"`: the mean-only baseline of Dr. GRPO,
    which keeps a group whose samples barely differ from being blown up to unit
    scale)."""
    if norm not in ADVANTAGE_NORMS:
        raise ValueError(f"advantage norm must be one of {ADVANTAGE_NORMS}, got {norm!r}")
    grouped = reward.view(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if norm == "mean":
        return centred.view(-1)
    std = grouped.std(dim=1, keepdim=True, unbiased=False)
    return (centred / (std + eps)).view(-1)


def moving_average(previous: float | None, value: float, decay: float = 0.9) -> float:
    """Exponential moving average (`value` itself when there is no previous one)."""
    return value if previous is None else decay * previous + (1 - decay) * value


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy ‖ reference): e^(r−p) − (r−p) − 1 ≥ 0."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def clipped_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, advantage: torch.Tensor, eps: float
) -> torch.Tensor:
    """Per-token PPO/GRPO objective to *minimise*: −min(ρA, clip(ρ, 1±ε)A),
    with ρ = exp(logp − old_logp) and the sequence's advantage `[batch]` broadcast."""
    ratio = torch.exp(logp - old_logp)
    adv = advantage.unsqueeze(-1)
    return -torch.minimum(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)


def truncated_is_weights(
    trainer_logp: torch.Tensor, sampler_logp: torch.Tensor, cap: float
) -> torch.Tensor:
    """Per-token weights min(π_trainer / π_sampler, cap) for samples drawn by another
    engine (vLLM) whose log-probs differ slightly from the trainer's: the policy gradient
    of the trainer's policy, truncated so that rare mismatches cannot blow it up."""
    return torch.exp(trainer_logp.detach() - sampler_logp).clamp(max=cap)


def grpo_loss(
    logp,
    old_logp,
    ref_logp,
    advantage,
    mask,
    clip_eps: float,
    kl_coef: float,
    total: float | None = None,
    is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """The AV's RL loss (token mean over the batch) and its parts for logging;
    `is_weights` (per token) reweight the surrogate for off-engine samples."""
    surrogate = clipped_surrogate(logp, old_logp, advantage, clip_eps)
    if is_weights is not None:
        surrogate = surrogate * is_weights
    kl = kl_k3(logp, ref_logp)
    loss = masked_mean(surrogate + kl_coef * kl, mask, total)
    with torch.no_grad():
        ratio = torch.exp(logp - old_logp)
        clipped = ((ratio - 1).abs() > clip_eps).float()
        parts = {"kl": float(masked_mean(kl, mask)), "clip_frac": float(masked_mean(clipped, mask))}
    return loss, parts
