import pytest

from nlakit import sites
from nlakit.tiny import ARCHS, build_tokenizer, sample_corpus, tiny_config


def test_tokenizer_contract(tokenizer):
    assert tokenizer.encode("㊗", add_special_tokens=False) == [
        tokenizer.convert_tokens_to_ids("㊗")
    ]
    ids = tokenizer("hello world")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}],
        tokenize=True,
        add_generation_prompt=True,
        return_dict=True,
    )["input_ids"]
    assert chat.count(tokenizer.bos_token_id) == 1
    assert (
        tokenizer.decode(tokenizer.encode("The fox, 42!", add_special_tokens=False))
        == "The fox, 42!"
    )
    assert {tokenizer.eos_token, tokenizer.pad_token} == {"<|end|>", "<pad>"}


def test_tokenizer_is_deterministic():
    a = build_tokenizer(sample_corpus(100), vocab_size=300)
    b = build_tokenizer(sample_corpus(100), vocab_size=300)
    assert a.get_vocab() == b.get_vocab()


def test_tiny_models(make_model, arch):
    model = make_model(arch)
    assert sites.num_blocks(model) == 4 and sites.hidden_size(model) == 64


def test_unknown_arch():
    with pytest.raises(ValueError, match="arch must be one of"):
        tiny_config("bert", 100)
    assert set(ARCHS) == {"qwen3", "llama", "gemma3"}
