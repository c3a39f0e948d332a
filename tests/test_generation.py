import pytest
import torch
from conftest import DEVICE, Words, close

from nlakit.engines import draw
from nlakit.generation import (
    WHOLE,
    SamplingConfig,
    next_tokens,
    parse_explanation,
    prefix_text,
    prefix_texts,
    sample_explanations,
    stop_token_ids,
    wrap_explanation,
)
from nlakit.models import ActivationVerbalizer


@pytest.fixture
def av(tokenizer, make_model):
    return ActivationVerbalizer.from_base(make_model("qwen3", seed=2), tokenizer, 2)


def vectors(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 64, generator=torch.Generator().manual_seed(seed))


def force_token_after(av, token_id: int, step: int):
    """Make the model emit `token_id` from decoding step `step` on (a test-only hook)."""
    calls = []

    def hook(_module, _args, logits):
        calls.append(1)
        if len(calls) > step:
            logits = logits.clone()
            logits[..., token_id] += 1e4
        return logits

    return av.model.lm_head.register_forward_hook(hook)


def test_parse_and_wrap():
    assert parse_explanation(wrap_explanation("Recipe: soup.")) == "Recipe: soup."
    assert parse_explanation("<explanation>\nunfinished") is None
    assert parse_explanation("junk <explanation> a </explanation> more") == "a"


def test_batched_equals_one_at_a_time_when_greedy(av):
    config = SamplingConfig(temperature=0, max_new_tokens=12)
    batched = sample_explanations(av, vectors(5), config)
    for row in range(5):
        alone = sample_explanations(av, vectors(5)[row : row + 1], config)[0]
        assert alone.token_ids == batched[row].token_ids
        assert close(alone.logprobs, batched[row].logprobs, atol=1e-4)


def test_rows_stop_at_their_first_eos(av, tokenizer):
    eos = tokenizer.eos_token_id
    handle = force_token_after(av, eos, step=3)
    try:
        samples = sample_explanations(av, vectors(4), SamplingConfig(max_new_tokens=20))
    finally:
        handle.remove()
    for s in samples:
        assert s.n_tokens == 4 and s.token_ids[-1] == eos and eos not in s.token_ids[:-1]
        assert not s.hit_cap and s.explanation is None and not s.finished
        assert s.logprobs.shape == (4,)
        assert "<|end|>" not in s.raw


def test_finished_sample_is_parsed(av, tokenizer):
    # Teacher-force a complete response by pushing the model through its tokens.
    target = tokenizer.encode(wrap_explanation("A poem about rain."), add_special_tokens=False)
    target.append(tokenizer.eos_token_id)
    calls = []

    def hook(_module, _args, logits):
        logits = logits.clone()
        logits[..., target[min(len(calls), len(target) - 1)]] += 1e4
        calls.append(1)
        return logits

    handle = av.model.lm_head.register_forward_hook(hook)
    try:
        (sample,) = sample_explanations(av, vectors(1), SamplingConfig(max_new_tokens=50))
    finally:
        handle.remove()
    assert sample.token_ids == target
    assert sample.explanation == "A poem about rain." and sample.finished


def test_cap_is_reported(av):
    samples = sample_explanations(av, vectors(3), SamplingConfig(max_new_tokens=5))
    assert all(s.hit_cap and s.n_tokens == 5 and not s.finished for s in samples)


def test_logprobs_are_the_models_log_probs_of_the_sampled_tokens(av):
    (sample,) = sample_explanations(
        av,
        vectors(1, seed=7),
        SamplingConfig(max_new_tokens=10),
        generator=torch.Generator(DEVICE).manual_seed(0),
    )
    ids = torch.tensor([av.prompt_ids + sample.token_ids], device=DEVICE)
    with torch.no_grad():
        logits = av(ids, vectors(1, seed=7)).logits[0].float()
    n = len(av.prompt_ids)
    logp = torch.log_softmax(logits[n - 1 : -1], dim=-1)
    want = logp.gather(1, torch.tensor(sample.token_ids, device=DEVICE)[:, None]).squeeze(1)
    assert close(sample.logprobs, want, atol=1e-4)


def test_seeded_sampling_is_reproducible_and_rows_differ(av):
    def run(seed):
        g = torch.Generator(DEVICE).manual_seed(seed)
        return [
            s.token_ids
            for s in sample_explanations(av, vectors(4), SamplingConfig(max_new_tokens=8), g)
        ]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_top_k_one_is_greedy():
    logits = torch.randn(6, 50)
    g = torch.Generator().manual_seed(0)
    sampled = next_tokens(logits, SamplingConfig(temperature=1.0, top_k=1), g)
    assert torch.equal(sampled, logits.argmax(-1))
    top_p_tiny = next_tokens(logits, SamplingConfig(temperature=0.7, top_p=1e-6), g)
    assert torch.equal(top_p_tiny, logits.argmax(-1))


def test_training_defaults_sample_from_raw_logits():
    config = SamplingConfig()
    assert (config.temperature, config.top_p, config.top_k) == (1.0, 1.0, 0)
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([next_tokens(logits, config, g) for _ in range(4000)])
    freq = torch.bincount(draws.flatten(), minlength=3).float() / 4000
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.03)


def test_draw_follows_the_probabilities_and_never_takes_a_masked_token():
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([draw(probs, g) for _ in range(6000)])
    freq = torch.bincount(draws[:, 0], minlength=6).float() / 6000
    assert torch.allclose(freq, probs[0], atol=0.02)
    assert (freq[[0, 2, 5]] == 0).all()
    assert (draws[:, 1] == 5).all()


def test_draw_at_the_top_of_the_unit_interval_takes_the_last_token_with_mass(monkeypatch):
    probs = torch.tensor([[0.25, 0.75, 0.0, 0.0]])
    monkeypatch.setattr(
        torch, "rand", lambda shape, **kw: torch.full(shape, 1.0, dtype=kw["dtype"])
    )
    assert draw(probs, None).tolist() == [1]


def test_draw_is_reproducible_with_a_seeded_generator():
    probs = torch.softmax(torch.randn(8, 100), -1)
    a = draw(probs, torch.Generator().manual_seed(3))
    b = draw(probs, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs", [dict(temperature=-1), dict(top_p=0), dict(top_k=-1), dict(max_new_tokens=0)]
)
def test_bad_sampling_config(kwargs):
    with pytest.raises(ValueError):
        SamplingConfig(**kwargs)


def test_stop_ids_include_generation_config_eos(av, tokenizer):
    av.model.generation_config.eos_token_id = [tokenizer.eos_token_id, 3]
    assert stop_token_ids(av) == sorted({tokenizer.eos_token_id, 3})


def test_marker_modes_for_the_controls(av):
    from nlakit import sites
    from nlakit.generation import marker_embeds
    from nlakit.injection import marker_positions

    ids = av.prompt_batch(3)
    v = vectors(3)
    at = marker_positions(ids, av.meta.tokens)
    own = sites.embedding(av.model)(ids)
    injected = marker_embeds(av, ids, v, "vector")
    assert close(injected, av.inputs_embeds(ids, v))
    assert close(marker_embeds(av, ids, v, "own"), own)
    zero = marker_embeds(av, ids, v, "zero")
    rows = torch.arange(3)
    assert bool((zero[rows, at] == 0).all())
    keep = torch.ones(ids.shape, dtype=torch.bool)
    keep[rows, at] = False
    assert close(zero[keep], own[keep])
    with pytest.raises(ValueError, match="marker must be one of"):
        marker_embeds(av, ids, v, "nothing")


def test_without_injection_the_vectors_do_not_matter(av):
    config = SamplingConfig(temperature=0, max_new_tokens=6)
    a = sample_explanations(av, vectors(2, seed=1), config, marker="own")
    b = sample_explanations(av, vectors(2, seed=2), config, marker="own")
    c = sample_explanations(av, vectors(2, seed=1), config)
    assert [s.token_ids for s in a] == [s.token_ids for s in b]
    assert all(close(x.logprobs, y.logprobs) for x, y in zip(a, b, strict=True))
    assert not close(a[0].logprobs, c[0].logprobs)  # an injected vector changes the model


def test_prefix_text_cuts_at_token_boundaries():
    words = Words()
    text = "Genre: poem. Topic: the sea. Final token: wave"
    assert prefix_text(words, text, 2) == "Genre: poem."
    assert prefix_text(words, text, 4) == "Genre: poem. Topic: the"
    assert prefix_text(words, text, 8) == text  # all 8 words
    assert prefix_text(words, text, 50) == text
    assert prefix_text(words, text, WHOLE) == text
    assert prefix_texts(words, [text, "a b c"], [1, 2]) == ["Genre:", "a b"]


def test_prefix_text_with_a_real_tokenizer_is_a_prefix(tokenizer):
    text = "Recipe: a stew of parsnips. The last token is a number."
    n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    cuts = [prefix_text(tokenizer, text, k) for k in range(1, n)]
    assert all(text.startswith(c.strip()) for c in cuts)
    assert [len(c) for c in cuts] == sorted(len(c) for c in cuts)
