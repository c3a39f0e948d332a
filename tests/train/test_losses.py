import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nlakit.train.losses import (
    clipped_surrogate,
    group_advantages,
    grpo_loss,
    kl_k3,
    masked_mean,
    moving_average,
    response_ce,
    token_logprobs,
)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 8))
def test_group_advantages_are_normalised_per_group(seed, group):
    g = torch.Generator().manual_seed(seed)
    reward = torch.randn(3 * group, generator=g) * 5 + 2
    adv = group_advantages(reward, group).view(3, group)
    assert torch.allclose(adv.mean(1), torch.zeros(3), atol=1e-4)
    assert torch.allclose(adv.std(1, unbiased=False), torch.ones(3), atol=1e-3)


def test_equal_rewards_give_zero_advantage():
    assert torch.equal(group_advantages(torch.full((4,), -1.3), 4), torch.zeros(4))


def test_mean_only_advantages_centre_without_rescaling():
    reward = torch.tensor([-1.0, -0.5, -0.9, -0.6, -2.0, -2.0, -2.0, -1.0])
    adv = group_advantages(reward, 4, norm="mean")
    assert adv.tolist() == pytest.approx([-0.25, 0.25, -0.15, 0.15, -0.25, -0.25, -0.25, 0.75])
    with pytest.raises(ValueError, match="advantage norm"):
        group_advantages(reward, 4, norm="rank")


def test_moving_average():
    assert moving_average(None, -1.0) == -1.0
    assert moving_average(-1.0, 0.0, decay=0.75) == pytest.approx(-0.75)


def test_kl_k3_is_zero_for_identical_policies_and_positive_otherwise():
    logp = torch.log(torch.tensor([[0.2, 0.5, 0.9]]))
    assert torch.equal(kl_k3(logp, logp), torch.zeros_like(logp))
    assert bool((kl_k3(logp, logp - 0.3) > 0).all())


def test_clipped_surrogate():
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.0, 1.5, 0.5]]))
    adv = torch.tensor([1.0])
    out = clipped_surrogate(logp, old, adv, eps=0.2)
    assert torch.allclose(out, -torch.tensor([[1.0, 1.2, 0.5]]))
    neg = clipped_surrogate(logp, old, -adv, eps=0.2)
    assert torch.allclose(neg, torch.tensor([[1.0, 1.5, 0.8]]))


def test_grpo_loss_gradient_is_the_policy_gradient_at_ratio_one():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.1]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([2.0, -1.0])
    loss, parts = grpo_loss(logp, logp.detach(), logp.detach(), adv, mask, 0.2, kl_coef=0.1)
    loss.backward()
    expected = -(adv[:, None] * mask) / mask.sum()
    assert torch.allclose(logp.grad, expected)
    assert parts["kl"] == 0.0 and parts["clip_frac"] == 0.0


def test_token_logprobs_and_response_ce():
    logits = torch.randn(2, 5, 11)
    targets = torch.randint(0, 11, (2, 5))
    mask = torch.ones(2, 5)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1))
    assert torch.allclose(response_ce(logits, targets, mask), expected, atol=1e-6)
    assert token_logprobs(logits, targets).shape == (2, 5)
    assert masked_mean(torch.ones(2, 2), torch.tensor([[1.0, 0], [0, 0]]), total=4) == 0.25


def test_truncated_is_weights():
    from nlakit.train.losses import truncated_is_weights

    trainer = torch.log(torch.tensor([[0.5, 0.2, 0.9]]))
    sampler = torch.log(torch.tensor([[0.5, 0.4, 0.1]]))
    w = truncated_is_weights(trainer.requires_grad_(), sampler, cap=2.0)
    assert torch.allclose(w, torch.tensor([[1.0, 0.5, 2.0]]))  # 9.0 capped at 2
    assert not w.requires_grad  # a weight, not a path for the gradient
