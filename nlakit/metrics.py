"""Reconstruction metrics: mse_nrm, cosine, FVE and its baseline.

Definitions (DESIGN §1), all computed in fp32:

    v_nrm       = scale * v / ||v||                 scale = √d unless the sidecar says otherwise
                                                    (scale None: v itself, raw MSE, as the release)
    mse_nrm     = mean_d (p_nrm - g_nrm)^2 = 2 (1 - cos(p, g)) when scale = √d,  in [0, 4]
    FVE         = 1 - mean_i mse_nrm_i / variance,  variance = mean_i ||g_nrm_i - mu||^2 / d
    mu          = mean of g_nrm over a reference set (the training split, ≤ 50k rows)

FVE 0 means "as good as predicting mu", 1 means perfect. Always report the
baseline variance and n beside an FVE: `FVEBaseline` carries both.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from nlakit.atomic import write_json
from nlakit.errors import NLAKitError
from nlakit.store.readers import read_json

MAX_BASELINE_ROWS = 50_000
SQRT_D = "sqrt_d_model"  # the default scale: √d of the vectors' width

Scale = float | str | None


def _scale_for(v: torch.Tensor, scale: Scale) -> float:
    return math.sqrt(v.shape[-1]) if scale == SQRT_D else float(scale)


def normalize(v: torch.Tensor, scale: Scale = SQRT_D) -> torch.Tensor:
    """`v` rescaled to L2 norm `scale` (√d by default) along the last dim, in fp32.
    `scale=None` leaves `v` as it is (the release's raw mode, `mse_scale: null`); a zero
    vector stays zero."""
    v = v.float()
    if scale is None:
        return v
    return v * (_scale_for(v, scale) / v.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def mse_nrm(pred: torch.Tensor, gold: torch.Tensor, scale: Scale = SQRT_D) -> torch.Tensor:
    """Per-row `[n]` mean squared error between the normalised vectors `[n, d]`."""
    return (normalize(pred, scale) - normalize(gold, scale)).pow(2).mean(dim=-1)


def cosine(pred: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Per-row `[n]` cosine similarity, in fp32."""
    return torch.nn.functional.cosine_similarity(pred.float(), gold.float(), dim=-1, eps=1e-12)


def mse_raw(pred: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Per-row `[n]` mean squared error in raw (un-normalised) activation space."""
    return (pred.float() - gold.float()).pow(2).mean(dim=-1)


def r2_centred(pred: torch.Tensor, gold: torch.Tensor) -> float:
    """Centred R² in raw space: 1 - Σ||p - g||² / Σ||g - mean(g)||² over the set."""
    gold = gold.float()
    residual = (pred.float() - gold).pow(2).sum()
    total = (gold - gold.mean(dim=0, keepdim=True)).pow(2).sum().clamp_min(1e-12)
    return float(1 - residual / total)


def norm_ratio(pred: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """Per-row `[n]` ratio ||p|| / ||g|| of raw norms (the AR is trained on direction only)."""
    return pred.float().norm(dim=-1) / gold.float().norm(dim=-1).clamp_min(1e-12)


@dataclass
class FVEBaseline:
    """The reference statistics an FVE is relative to.

    `mu` is the mean normalised gold vector `[d]`, `variance` the mean squared
    distance of normalised gold vectors to it (per dimension), `n` the number of
    reference rows, `scale` the normalisation norm (`"sqrt_d_model"` = √d, None = raw).
    """

    mu: torch.Tensor
    variance: float
    n: int
    scale: Scale = SQRT_D

    @classmethod
    def from_vectors(
        cls, vectors: torch.Tensor, scale: Scale = SQRT_D, max_rows: int = MAX_BASELINE_ROWS
    ) -> FVEBaseline:
        """Baseline from reference vectors `[n, d]` (the first `max_rows` rows)."""
        if vectors.ndim != 2 or vectors.shape[0] < 2:
            raise ValueError(
                f"an FVE baseline needs at least 2 reference vectors [n, d], got {list(vectors.shape)}"
            )
        g = normalize(vectors[:max_rows], scale)
        mu = g.mean(dim=0)
        variance = float((g - mu).pow(2).sum(dim=-1).mean() / g.shape[-1])
        return cls(mu=mu, variance=variance, n=int(g.shape[0]), scale=scale)

    @property
    def d_model(self) -> int:
        return int(self.mu.shape[0])

    def mean_prediction_mse(self, gold: torch.Tensor) -> torch.Tensor:
        """Per-row `[n]` error of predicting `mu` itself (in normalised space)."""
        return (normalize(gold, self.scale) - self.mu.to(gold.device)).pow(2).mean(dim=-1)

    def to_dict(self) -> dict:
        return {
            "variance": self.variance,
            "n": self.n,
            "d_model": self.d_model,
            "scale": self.scale,
            "mu": self.mu.float().cpu().tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> FVEBaseline:
        mu = torch.tensor(d["mu"], dtype=torch.float32)
        if d.get("d_model") not in (None, mu.shape[0]):
            raise ValueError(
                f"baseline d_model {d['d_model']} disagrees with len(mu) {mu.shape[0]}"
            )
        return cls(
            mu=mu, variance=float(d["variance"]), n=int(d["n"]), scale=d.get("scale", SQRT_D)
        )

    def save(self, path: str | os.PathLike) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> FVEBaseline:
        """The baseline `save` wrote (`baseline.json`); an NLAKitError naming the file
        when it is unreadable or incomplete."""
        what = "the FVE baseline (mu, variance, n)"
        fix = "Rebuild the tables with `nlakit build`, which writes it."
        data = read_json(path, what=what, fix=fix)
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise NLAKitError(
                f"{path}: not a complete baseline ({exc!r}); expected {what}. {fix}"
            ) from None


def fve(errors: torch.Tensor, baseline: FVEBaseline) -> float:
    """FVE of per-row mse_nrm `errors [n]` against `baseline`."""
    return float(1 - errors.float().mean() / baseline.variance)


def fve_per_row(errors: torch.Tensor, baseline: FVEBaseline) -> torch.Tensor:
    """Per-row `[n]` FVE, `1 - mse_nrm_i / variance` (its mean is the FVE)."""
    return 1 - errors.float() / baseline.variance
