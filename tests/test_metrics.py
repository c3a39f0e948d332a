import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nlakit.metrics import (
    FVEBaseline,
    cosine,
    fve,
    fve_per_row,
    mse_nrm,
    mse_raw,
    norm_ratio,
    normalize,
    r2_centred,
)

seeds = st.integers(0, 2**31 - 1)
dims = st.integers(2, 96)


def random_pair(seed: int, n: int, d: int, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * scale, torch.randn(n, d, generator=g) * scale


@settings(max_examples=60, deadline=None)
@given(seeds, dims, st.floats(1e-3, 1e4))
def test_mse_nrm_is_two_one_minus_cos(seed, d, scale):
    p, g = random_pair(seed, 5, d, scale)
    assert torch.allclose(mse_nrm(p, g), 2 * (1 - cosine(p, g)), atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(seeds, dims)
def test_mse_nrm_range_and_scale_invariance(seed, d):
    p, g = random_pair(seed, 6, d)
    err = mse_nrm(p, g)
    assert bool(((err >= 0) & (err <= 4 + 1e-5)).all())
    assert torch.allclose(mse_nrm(3.7 * p, 0.01 * g), err, atol=1e-5)
    assert torch.allclose(mse_nrm(g, g), torch.zeros(6), atol=1e-5)
    assert torch.allclose(mse_nrm(-g, g), torch.full((6,), 4.0), atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(seeds, dims, st.integers(2, 40))
def test_predicting_mu_gives_fve_zero(seed, d, n):
    gold, _ = random_pair(seed, n, d)
    gold = gold + 2.0  # a non-zero mean direction, as real activations have
    base = FVEBaseline.from_vectors(gold)
    assert fve(base.mean_prediction_mse(gold), base) == pytest.approx(0.0, abs=1e-5)
    assert fve(mse_nrm(gold, gold), base) == pytest.approx(1.0, abs=1e-5)


def test_baseline_statistics():
    gold = torch.randn(1000, 16) + 5.0
    base = FVEBaseline.from_vectors(gold)
    g = normalize(gold)
    assert torch.allclose(base.mu, g.mean(0))
    assert base.variance == pytest.approx(
        float(((g - g.mean(0)) ** 2).sum(1).mean() / 16), rel=1e-5
    )
    assert base.n == 1000 and base.d_model == 16
    assert FVEBaseline.from_vectors(gold, max_rows=100).n == 100


def test_baseline_json_round_trip(tmp_path):
    base = FVEBaseline.from_vectors(torch.randn(20, 8))
    back = FVEBaseline.load(base.save(tmp_path / "baseline.json"))
    assert back.variance == pytest.approx(base.variance) and back.n == 20
    assert torch.allclose(back.mu, base.mu)


def test_baseline_needs_two_rows():
    with pytest.raises(ValueError, match="at least 2"):
        FVEBaseline.from_vectors(torch.randn(1, 8))


def test_normalize_norm_and_custom_scale():
    v = torch.randn(3, 64) * 100
    assert torch.allclose(normalize(v).norm(dim=-1), torch.full((3,), 8.0))
    assert torch.allclose(normalize(v, 150.0).norm(dim=-1), torch.full((3,), 150.0))


def test_fve_per_row_mean_is_fve():
    gold, pred = random_pair(3, 50, 32)
    base = FVEBaseline.from_vectors(gold)
    err = mse_nrm(pred, gold)
    assert float(fve_per_row(err, base).mean()) == pytest.approx(fve(err, base), abs=1e-6)


def test_raw_space_metrics():
    gold, noise = random_pair(4, 30, 16)
    assert r2_centred(gold, gold) == pytest.approx(1.0)
    assert r2_centred(gold.mean(0).expand_as(gold), gold) == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(mse_raw(gold + 1, gold), torch.ones(30))
    assert torch.allclose(norm_ratio(2 * gold, gold), torch.full((30,), 2.0))
    assert math.isfinite(r2_centred(noise, gold))
