import math

import pytest

from nlakit.train.modules import lr_factor, width_scaled_lr


def test_lr_factor_warms_up_linearly_then_decays_by_progress():
    assert [lr_factor(s, 4, 0.0) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(10, 4, 0.0) == 1.0
    assert lr_factor(10, 4, 0.5) == pytest.approx(0.5)
    assert lr_factor(10, 4, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(10, 4, 7.0) == pytest.approx(0.0, abs=1e-12)  # past the end: clamped
    assert lr_factor(10, 0, 0.25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_the_default_rl_rate_shrinks_with_width():
    assert width_scaled_lr(128) == pytest.approx(3e-4)
    assert width_scaled_lr(4096) == pytest.approx(9.375e-6)
