import pytest
import torch

from nlakit.eval.stats import bootstrap_fve, derangement, fve_drop, fve_summary
from nlakit.metrics import FVEBaseline, fve


def _baseline(d: int = 8) -> FVEBaseline:
    return FVEBaseline.from_vectors(torch.randn(200, d, generator=torch.Generator().manual_seed(0)))


def test_bootstrap_interval_brackets_the_fve_and_narrows_with_n():
    baseline = _baseline()
    g = torch.Generator().manual_seed(1)
    small = torch.rand(50, generator=g)
    large = torch.rand(5000, generator=g)
    lo, hi = bootstrap_fve(small, baseline)
    assert lo <= fve(small, baseline) <= hi
    lo2, hi2 = bootstrap_fve(large, baseline)
    assert hi2 - lo2 < (hi - lo) / 4


def test_bootstrap_of_constant_errors_is_a_point():
    baseline = _baseline()
    errors = torch.full((30,), 0.5)
    lo, hi = bootstrap_fve(errors, baseline)
    assert lo == pytest.approx(hi) == pytest.approx(1 - 0.5 / baseline.variance)


def test_fve_summary_reports_n_and_baseline():
    baseline = _baseline()
    s = fve_summary(torch.tensor([0.1, 0.2, 0.9]), baseline, n_boot=50)
    assert s["n"] == 3 and s["baseline_variance"] == baseline.variance
    assert s["baseline_n"] == 200
    assert s["median_row_fve"] == pytest.approx(1 - 0.2 / baseline.variance)


@pytest.mark.parametrize("n", [2, 3, 7, 100])
def test_derangement_moves_every_row(n):
    perm = derangement(n, seed=n)
    assert sorted(perm) == list(range(n))
    assert all(p != i for i, p in enumerate(perm))


def test_derangement_needs_two_rows():
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1)


def test_fve_drop_is_paired():
    baseline = FVEBaseline(torch.zeros(4), variance=2.0, n=10)
    reference = torch.tensor([0.1, 0.5, 1.5, 0.2, 0.9, 1.1])
    worse = reference + 0.4
    drop = fve_drop(reference, worse, baseline, n_boot=200)
    # Every row is worse by 0.4: the drop is 0.4 / 2 and the paired CI has no width.
    assert drop["fve_drop"] == pytest.approx(0.2)
    assert drop["ci_low"] == pytest.approx(0.2) and drop["ci_high"] == pytest.approx(0.2)
    assert fve_drop(reference, reference, baseline)["fve_drop"] == 0.0
    noisy = reference + torch.tensor([0.5, -0.1, 0.3, 0.0, 0.4, -0.2])
    drop = fve_drop(reference, noisy, baseline, n_boot=500)
    assert drop["ci_low"] < drop["fve_drop"] < drop["ci_high"]
