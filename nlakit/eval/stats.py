"""Statistics of per-row errors: bootstrap confidence intervals, FVE summaries, the
paired FVE drop between two conditions, the shuffled-control pairing."""

from __future__ import annotations

import torch

from nlakit.metrics import FVEBaseline, fve, fve_per_row


def bootstrap_fve(
    errors: torch.Tensor,
    baseline: FVEBaseline,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap `(low, high)` of the FVE of per-row mse_nrm `errors [n]`,
    resampling rows with replacement `n_boot` times (the baseline is held fixed)."""
    errors = errors.float().cpu()
    n = errors.shape[0]
    if n == 0:
        raise ValueError("bootstrap of an empty set of errors")
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (n_boot, n), generator=generator)
    fves = 1 - errors[idx].mean(dim=1) / baseline.variance
    lo, hi = torch.quantile(fves, torch.tensor([alpha / 2, 1 - alpha / 2])).tolist()
    return float(lo), float(hi)


def fve_summary(
    errors: torch.Tensor, baseline: FVEBaseline, n_boot: int = 1000, seed: int = 0
) -> dict:
    """FVE, its 95% bootstrap CI, the median per-row FVE, and the n and baseline behind them."""
    lo, hi = bootstrap_fve(errors, baseline, n_boot=n_boot, seed=seed)
    return {
        "fve": fve(errors, baseline),
        "ci_low": lo,
        "ci_high": hi,
        "median_row_fve": float(fve_per_row(errors, baseline).median()),
        "mse_nrm": float(errors.float().mean()),
        "n": int(errors.shape[0]),
        "baseline_variance": baseline.variance,
        "baseline_n": baseline.n,
    }


def fve_drop(
    reference: torch.Tensor,
    errors: torch.Tensor,
    baseline: FVEBaseline,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """FVE(reference) − FVE(errors) for per-row mse_nrm `[n]` of the same rows, with a
    paired percentile bootstrap 95% CI (both resampled with the same row indices).

    The drop is mean(errors − reference) / baseline variance: positive = worse than
    the reference."""
    diff = errors.float().cpu() - reference.float().cpu()
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, diff.shape[0], (n_boot, diff.shape[0]), generator=generator)
    boots = diff[idx].mean(dim=1) / baseline.variance
    lo, hi = torch.quantile(boots, torch.tensor([0.025, 0.975])).tolist()
    return {"fve_drop": float(diff.mean() / baseline.variance), "ci_low": lo, "ci_high": hi}


def derangement(n: int, seed: int = 0) -> list[int]:
    """A permutation of range(n) with no fixed point (n ≥ 2): row i is paired with row
    perm[i] ≠ i — the "shuffled" control."""
    if n < 2:
        raise ValueError(f"a shuffled control needs at least 2 rows, got {n}")
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    return torch.roll(perm, 1)[torch.argsort(perm)].tolist()


def bootstrap_mean(
    values: torch.Tensor, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict:
    """Mean of per-row `values [n]` (an accuracy, a precision, a difference of paired
    rows) with its percentile bootstrap `1 - alpha` CI, resampling rows with replacement."""
    values = torch.as_tensor(values).float().cpu()
    n = values.shape[0]
    if n == 0:
        raise ValueError("bootstrap of an empty set of values")
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (n_boot, n), generator=generator)
    means = values[idx].mean(dim=1)
    lo, hi = torch.quantile(means, torch.tensor([alpha / 2, 1 - alpha / 2])).tolist()
    return {"mean": float(values.mean()), "ci_low": float(lo), "ci_high": float(hi), "n": n}
