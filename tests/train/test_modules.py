import math

import pytest
import torch

from nlakit import sites
from nlakit.train import modules as M
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


def test_embedding_noise_perturbs_the_inputs_only_inside_the_block(tiny_dirs):
    from nlakit.models import ActivationReconstructor

    ar = ActivationReconstructor.from_pretrained(tiny_dirs["ar"]).eval()
    enc = ar.tokenize(["a short explanation", "another one"])
    with torch.no_grad():
        clean = ar(**enc)
        with M.embedding_noise(ar.backbone, 0.0, torch.Generator()):
            assert torch.equal(ar(**enc), clean)  # σ = 0: nothing
        with M.embedding_noise(ar.backbone, 0.5, torch.Generator().manual_seed(0)):
            noisy = ar(**enc)
        with M.embedding_noise(ar.backbone, 0.5, torch.Generator().manual_seed(0)):
            again = ar(**enc)
        assert not torch.allclose(noisy, clean) and torch.equal(noisy, again)
        assert torch.equal(ar(**enc), clean)  # the hook is gone

    emb = sites.embedding(ar.backbone)
    ids = enc["input_ids"].repeat(50, 1)
    with torch.no_grad(), M.embedding_noise(ar.backbone, 0.1, torch.Generator().manual_seed(0)):
        noisy = emb(ids)
    clean = emb(ids).detach()
    ratio = (noisy - clean).pow(2).mean().sqrt() / clean.pow(2).mean().sqrt()
    assert abs(float(ratio) - 0.1) < 0.005  # σ is a share of the embeddings' RMS
