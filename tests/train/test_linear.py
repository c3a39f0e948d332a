import torch

from nlakit.train.linear import principal_directions


def test_principal_directions_are_the_axes_of_largest_spread():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 3, generator=g) * torch.tensor([5.0, 2.0, 0.5])
    axes = principal_directions(x, 2)
    assert torch.allclose(axes.abs(), torch.eye(3)[:2], atol=0.05)
