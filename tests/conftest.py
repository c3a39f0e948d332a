"""Shared fixtures: a tiny trained tokenizer and tiny random models of real architectures.

Set NLAKIT_TEST_DEVICE=cuda to run the suite on a GPU in bf16.
"""

from __future__ import annotations

import os

import pytest
import torch
from transformers.utils import logging as hf_logging

from nlakit.tiny import build_tokenizer, sample_corpus, tiny_model

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()

DEVICE = torch.device(os.environ.get("NLAKIT_TEST_DEVICE", "cpu"))
DTYPE = torch.bfloat16 if DEVICE.type == "cuda" else torch.float32
ARCHS = ("qwen3", "llama", "gemma3")


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-5) -> bool:
    """`allclose` with tolerances widened for bf16 runs."""
    if torch.bfloat16 == DTYPE:
        rtol, atol = max(rtol, 2e-2), max(atol, 2e-2)
    return torch.allclose(a.float().cpu(), b.float().cpu(), rtol=rtol, atol=atol)


@pytest.fixture(scope="session")
def device() -> torch.device:
    return DEVICE


@pytest.fixture(scope="session")
def dtype() -> torch.dtype:
    return DTYPE


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer(sample_corpus())


@pytest.fixture(scope="session")
def make_model(tokenizer):
    """`make_model(arch, **config)`: a tiny random causal LM on the test device."""

    def make(arch: str = "qwen3", seed: int = 0, **kwargs):
        return tiny_model(arch, tokenizer, seed=seed, **kwargs).to(DEVICE, DTYPE)

    return make


@pytest.fixture(params=ARCHS)
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """A written tiny target model and AV/AR pair (qwen3, layer 2), shared read-only."""
    from nlakit.tiny import write_tiny

    return write_tiny(tmp_path_factory.mktemp("tiny"), arch="qwen3", layer=2)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """A `--size small` toy world, built once per test session (about 10 s)."""
    from nlakit.toyworld.build import build_world, world_config

    out = tmp_path_factory.mktemp("worlds") / "small"
    build_world(out, world_config("small", seed=0), progress=False)
    return out
