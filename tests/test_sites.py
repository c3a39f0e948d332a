import math

import pytest
import torch
from conftest import DEVICE, DTYPE, close
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3TextConfig,
    GPT2Config,
    MistralConfig,
    Qwen2Config,
    SiglipVisionConfig,
)

from nlakit import sites
from nlakit.errors import ArchitectureError

SMALL = dict(
    vocab_size=300,
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=64,
)


def other_arch_models():
    yield AutoModelForCausalLM.from_config(
        GPT2Config(vocab_size=300, n_embd=32, n_layer=4, n_head=4)
    )
    yield AutoModelForCausalLM.from_config(MistralConfig(**SMALL))
    yield AutoModelForCausalLM.from_config(Qwen2Config(**SMALL))
    yield AutoModelForCausalLM.from_config(Gemma2Config(**SMALL, head_dim=8))


def gemma3_multimodal(vocab_size: int = 300):
    text = Gemma3TextConfig(**{**SMALL, "vocab_size": vocab_size}, head_dim=8, sliding_window=8)
    vision = SiglipVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
    )
    config = Gemma3Config(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        mm_tokens_per_image=4,
        image_token_index=vocab_size - 1,
        boi_token_index=vocab_size - 3,
        eoi_token_index=vocab_size - 2,
    )
    return Gemma3ForConditionalGeneration(config)


def ids_batch(vocab: int = 290, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (2, 12), generator=g).to(DEVICE)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_extract_layer_equals_hidden_states(make_model, arch, layer):
    model = make_model(arch)
    ids = ids_batch()
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding in row 1
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        got = sites.extract_layer(model, ids, mask, layer)
    assert got.shape == (2, 12, model.config.hidden_size)
    assert close(got, full[layer + 1], rtol=0, atol=1e-6)


def test_last_block_is_the_block_output_before_the_final_norm(make_model, arch):
    model = make_model(arch)
    ids = ids_batch()
    with torch.no_grad():
        last = model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        got = sites.extract_layer(model, ids, None, sites.num_blocks(model) - 1)
        assert close(sites.final_norm(model)(got), last)


def test_forward_stops_after_block_k(make_model, arch):
    model = make_model(arch)
    ran = []
    handles = [
        b.register_forward_hook(lambda m, a, o, i=i: ran.append(i))
        for i, b in enumerate(sites.blocks(model))
    ]
    handles.append(model.lm_head.register_forward_hook(lambda m, a, o: ran.append("lm_head")))
    with torch.no_grad():
        sites.extract_layer(model, ids_batch(), None, 1)
    for h in handles:
        h.remove()
    assert ran == [0, 1]
    # the temporary hook is gone: a normal forward runs every block again
    ran.clear()
    handles = [
        b.register_forward_hook(lambda m, a, o, i=i: ran.append(i))
        for i, b in enumerate(sites.blocks(model))
    ]
    with torch.no_grad():
        model(input_ids=ids_batch())
    assert ran == [0, 1, 2, 3]


@pytest.mark.parametrize("layer", [-1, 4, 100])
def test_layer_out_of_range(make_model, layer):
    with pytest.raises(ArchitectureError, match=r"0\.\.3"):
        sites.extract_layer(make_model("qwen3"), ids_batch(), None, layer)


def test_embedding_scale(make_model, arch):
    model = make_model(arch)
    expected = math.sqrt(model.config.hidden_size) if arch == "gemma3" else 1.0
    assert sites.embedding_scale(model) == pytest.approx(expected)


@pytest.mark.parametrize("model", list(other_arch_models()), ids=lambda m: m.config.model_type)
def test_other_architectures(model):
    model = model.eval().to(DEVICE, DTYPE)
    ids = ids_batch()
    with torch.no_grad():
        full = model(input_ids=ids, output_hidden_states=True).hidden_states
        for layer in (0, 2):
            assert close(sites.extract_layer(model, ids, None, layer), full[layer + 1])
    assert sites.num_blocks(model) == 4
    assert isinstance(sites.final_norm(model), torch.nn.Module)


def test_gemma3_multimodal_wrapper_uses_its_language_model():
    model = gemma3_multimodal().eval().to(DEVICE, DTYPE)
    assert sites.decoder(model) is model.model.language_model
    assert sites.embedding_scale(model) == pytest.approx(math.sqrt(32))
    ids = ids_batch()
    with torch.no_grad():
        full = model(input_ids=ids, output_hidden_states=True).hidden_states
        assert close(sites.extract_layer(model, ids, None, 1), full[2])


def test_unknown_architecture_is_a_clear_error():
    from transformers import BertConfig, BertModel

    model = BertModel(
        BertConfig(
            vocab_size=50,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
        )
    )
    with pytest.raises(ArchitectureError, match="not supported"):
        sites.blocks(model)


def test_unwraps_peft(make_model):
    peft = pytest.importorskip("peft")
    model = make_model("llama")
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    assert sites.num_blocks(wrapped) == 4
    assert sites.decoder(wrapped) is model.model
