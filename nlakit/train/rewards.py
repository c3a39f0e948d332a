"""RL rewards: what a sampled explanation earns, and the shapings that ask for order.

The plain reward is `-mse_nrm - λ·n_tokens`: how well the AR rebuilds the activation
from the whole explanation, less a price per token. It says nothing about *which*
tokens carry the information. The shapings score prefixes of each explanation too, so
that the information the AR needs first has to come first:

    plain        -mse(whole)
    matryoshka   -Σ_j w_j · mse(first k_j tokens), the whole explanation one of the k_j
                 (the SAE analogue: every prefix must stand on its own)
    random-k     -mse(first K tokens), K drawn per sample from uniform{k_min … k_max}
                 (one prefix per sample: the cheap, unbiased estimate of an average over K)
    separators   -½·(mse(whole) + Σ_j (t_j / L)·mse(text before segment j)): the AV
                 places separators (nlakit/separators.py); a reader who stops at a
                 uniformly random token knows the text up to the last separator before
                 it, so each segment j of t_j tokens (of L) is paid at the error of the
                 nested prefix that precedes it (the empty text for the first); averaged
                 with the whole, so that the last segment counts too

Separators are the EOS trade-off once per nested prefix: one costs a token (λ, with a
length penalty) and pays for every token after it, by as much as the text before it
reconstructs better than the text before the previous one. An explanation without
separators earns `-½·(mse(whole) + mse(empty))`: the plain reward plus a constant of its
activation's group, so GRPO's advantages are those of the plain reward (halved). The
literal reading, a sum over separators of `-mse(text up to it)`, pays for dropping
separators (each adds a negative term); weighting by the tokens each prefix serves does
not.

A prefix is cut at token boundaries of the explanation's text (the part between the
tags; `nlakit.generation.prefix_text`), so the AR reads it exactly as it would a short
explanation. An explanation without its closing tag, or cut at the length cap, earns
`FAILED_REWARD` whatever the shaping.

Every function here is pure; `train/rl.py` calls `shaped_rewards` with a scorer
(`texts -> mse_nrm [n]`, the live AR against each sample's vector).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nlakit.generation import WHOLE, prefix_texts
from nlakit.separators import nested_prefixes, segment_lengths

FAILED_REWARD = -2.0  # the reward of an orthogonal reconstruction: mse_nrm = 2
SHAPINGS = ("plain", "matryoshka", "random-k", "separators")


def rewards(
    mse: torch.Tensor, n_tokens: torch.Tensor, finished: torch.Tensor, length_penalty: float
) -> torch.Tensor:
    """`-mse_nrm - λ·n_tokens` per sample `[n]`; `FAILED_REWARD` where the sample has no
    complete explanation (missing closing tag, or cut at the length cap)."""
    value = -mse - length_penalty * n_tokens.to(mse.dtype)
    return torch.where(finished, value, torch.full_like(value, FAILED_REWARD))


def matryoshka_mse(errors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`[n]` weighted mean over prefix lengths of `errors [n, m]` (one column per
    length), with `weights [m]` ≥ 0 normalised to sum to 1."""
    w = weights.to(errors.dtype)
    return errors @ (w / w.sum())


def draw_prefix_lengths(
    n: int, k_min: int, k_max: int, generator: torch.Generator | None
) -> torch.Tensor:
    """`[n]` prefix lengths, each uniform on {k_min, …, k_max}."""
    return torch.randint(k_min, k_max + 1, (n,), generator=generator)


def reader_mse(errors: list[float], lengths: list[int]) -> float:
    """The mean error of a reader who stops at a uniformly random token and knows the
    text up to the last separator before it: `Σ_j lengths[j]·errors[j] / Σ lengths`, where
    `errors[j]` is that of the text before segment j (`errors[0]`: the empty text) and
    `lengths[j]` segment j's tokens."""
    if len(errors) != len(lengths) or not lengths:
        raise ValueError(f"need one error per segment, got {len(errors)} and {len(lengths)}")
    total = sum(lengths)
    if total <= 0:
        return errors[0]
    return sum(t * e for t, e in zip(lengths, errors, strict=True)) / total


@dataclass(frozen=True)
class Shaping:
    """Which reward RL pays (the module docstring) and its parameters."""

    method: str = "plain"
    lengths: tuple[int, ...] = (8, 16, WHOLE)  # matryoshka's k_j (WHOLE: all of it)
    weights: tuple[float, ...] | None = None  # matryoshka's w_j (None: equal)
    k_min: int = 4  # random-k's K range
    k_max: int = 64
    length_penalty: float = 0.0
    separator: str | None = None  # separators: the AV's separator text

    def __post_init__(self) -> None:
        if self.method not in SHAPINGS:
            raise ValueError(f"reward shaping must be one of {SHAPINGS}, got {self.method!r}")
        if self.method == "separators" and not self.separator:
            raise ValueError("the separators reward needs the AV's separator text")
        if not self.lengths or any(k < 0 for k in self.lengths):
            raise ValueError(f"prefix lengths must be ≥ 1 (0: whole), got {self.lengths}")
        if self.weights is not None and (
            len(self.weights) != len(self.lengths)
            or any(w < 0 for w in self.weights)
            or sum(self.weights) <= 0
        ):
            raise ValueError(
                f"prefix weights must be {len(self.lengths)} numbers ≥ 0 with a positive "
                f"sum (one per prefix length), got {self.weights}"
            )
        if not 1 <= self.k_min <= self.k_max:
            raise ValueError(f"need 1 ≤ k_min ≤ k_max, got {self.k_min}, {self.k_max}")


def shaped_rewards(
    shaping: Shaping,
    texts: list[str],
    n_tokens: torch.Tensor,
    finished: torch.Tensor,
    score: Callable[..., torch.Tensor],
    tokenizer,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(reward `[n]`, mse_nrm `[n]` of the whole explanations) of `texts` under `shaping`;
    `score(texts)` is the AR's mse_nrm `[n]` of n texts against the n samples' vectors,
    `score(texts, rows)` of any texts, text i against sample `rows[i]`'s vector."""
    whole = score(texts)
    if shaping.method == "plain":
        mse = whole
    elif shaping.method == "matryoshka":
        columns = [
            whole if k == WHOLE else score(prefix_texts(tokenizer, texts, [k] * len(texts)))
            for k in shaping.lengths
        ]
        weights = torch.tensor(shaping.weights or [1.0] * len(columns))
        mse = matryoshka_mse(torch.stack(columns, 1), weights)
    elif shaping.method == "random-k":
        ks = draw_prefix_lengths(len(texts), shaping.k_min, shaping.k_max, generator)
        mse = score(prefix_texts(tokenizer, texts, ks.tolist()))
    else:  # separators
        mse = whole.clone()
        prefixes = [["", *nested_prefixes(t, shaping.separator)] for t in texts]
        rows = [i for i, p in enumerate(prefixes) for _ in p]
        errors = score([p for ps in prefixes for p in ps], rows).tolist()
        for i, (text, ps) in enumerate(zip(texts, prefixes, strict=True)):
            own, errors = errors[: len(ps)], errors[len(ps) :]
            lengths = segment_lengths(tokenizer, text, shaping.separator)
            mse[i] = 0.5 * (whole[i] + reader_mse(own, lengths))
    return rewards(mse, n_tokens, finished, shaping.length_penalty), whole
