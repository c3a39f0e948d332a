import pytest
import torch
from conftest import Words

from nlakit.generation import WHOLE
from nlakit.separators import SEPARATOR as S
from nlakit.separators import strip_separators
from nlakit.train.losses import group_advantages
from nlakit.train.rewards import (
    FAILED_REWARD,
    Shaping,
    draw_prefix_lengths,
    matryoshka_mse,
    reader_mse,
    rewards,
    shaped_rewards,
)


def test_length_penalty_separates_samples_that_differ_only_in_length():
    mse = torch.tensor([0.5, 0.5, 0.9, 0.9])
    lengths = torch.tensor([20, 40, 30, 30])
    finished = torch.ones(4, dtype=torch.bool)
    adv = group_advantages(rewards(mse, lengths, finished, length_penalty=0.01), group_size=2)
    assert adv[0] > 0 > adv[1]  # same reconstruction, the shorter one is preferred
    assert adv[2] == adv[3] == 0
    no_penalty = group_advantages(rewards(mse, lengths, finished, 0.0), 2)
    assert torch.equal(no_penalty[:2], torch.zeros(2))


def test_a_constant_length_penalty_cancels_out():
    # Why lengths must be per sample: the same length for a whole group does nothing.
    mse = torch.tensor([0.2, 0.8, 0.5, 0.4])
    finished = torch.ones(4, dtype=torch.bool)
    with_penalty = group_advantages(rewards(mse, torch.full((4,), 50), finished, 0.05), 4)
    without = group_advantages(rewards(mse, torch.full((4,), 50), finished, 0.0), 4)
    assert torch.allclose(with_penalty, without, atol=1e-5)


def test_failed_samples_get_the_orthogonal_reward():
    r = rewards(torch.tensor([0.1, 0.1]), torch.tensor([5, 5]), torch.tensor([True, False]), 0.0)
    assert r.tolist() == [pytest.approx(-0.1), FAILED_REWARD]


def test_matryoshka_mse_is_the_weighted_mean_over_prefixes():
    errors = torch.tensor([[1.0, 0.5, 0.2], [2.0, 2.0, 2.0]])
    assert matryoshka_mse(errors, torch.tensor([1.0, 1.0, 2.0])).tolist() == pytest.approx(
        [(1.0 + 0.5 + 0.4) / 4, 2.0]
    )
    assert matryoshka_mse(errors, torch.tensor([0.0, 0.0, 3.0])).tolist() == pytest.approx(
        [0.2, 2.0]
    )


def test_prefix_lengths_are_drawn_uniformly_in_range():
    g = torch.Generator().manual_seed(0)
    ks = draw_prefix_lengths(20_000, 4, 7, g)
    assert set(ks.tolist()) == {4, 5, 6, 7}
    assert torch.allclose(
        torch.bincount(ks)[4:].float() / 20_000, torch.full((4,), 0.25), atol=0.02
    )


def fake_score(texts):
    """mse_nrm of a text: 1 less 0.1 per word (a hand-checkable AR)."""
    return torch.tensor([1.0 - 0.1 * len(t.split()) for t in texts])


TEXTS = ["a b c d e f", "a b c", "x y z w"]
N_TOKENS = torch.tensor([10, 6, 8])
DONE = torch.tensor([True, True, False])


def test_plain_shaping_is_the_plain_reward():
    reward, whole = shaped_rewards(Shaping(), TEXTS, N_TOKENS, DONE, fake_score, Words())
    assert whole.tolist() == pytest.approx([0.4, 0.7, 0.6])
    assert reward.tolist() == pytest.approx([-0.4, -0.7, FAILED_REWARD])


def test_matryoshka_scores_each_prefix_and_the_whole():
    shaping = Shaping("matryoshka", lengths=(2, 4, WHOLE), weights=(1.0, 1.0, 2.0))
    reward, whole = shaped_rewards(shaping, TEXTS, N_TOKENS, DONE, fake_score, Words())
    # text 0: prefixes of 2 and 4 words, then all 6 → mse 0.8, 0.6, 0.4
    # text 1: 2 words, then all 3 (shorter than 4), then all 3 → 0.8, 0.7, 0.7
    expected = [-(0.8 + 0.6 + 2 * 0.4) / 4, -(0.8 + 0.7 + 2 * 0.7) / 4, FAILED_REWARD]
    assert reward.tolist() == pytest.approx(expected)
    assert whole.tolist() == pytest.approx([0.4, 0.7, 0.6])  # logged: the whole texts'


def test_matryoshka_keeps_the_length_penalty():
    shaping = Shaping("matryoshka", lengths=(2, WHOLE), length_penalty=0.01)
    reward, _ = shaped_rewards(shaping, TEXTS[:2], N_TOKENS[:2], DONE[:2], fake_score, Words())
    assert reward.tolist() == pytest.approx([-(0.8 + 0.4) / 2 - 0.1, -(0.8 + 0.7) / 2 - 0.06])


def test_random_k_scores_one_drawn_prefix_per_sample():
    shaping = Shaping("random-k", k_min=1, k_max=5)
    g = torch.Generator().manual_seed(7)
    ks = draw_prefix_lengths(3, 1, 5, torch.Generator().manual_seed(7)).tolist()
    reward, whole = shaped_rewards(shaping, TEXTS, N_TOKENS, DONE, fake_score, Words(), g)
    words = [min(k, len(t.split())) for k, t in zip(ks, TEXTS, strict=True)]
    assert reward[:2].tolist() == pytest.approx([-(1 - 0.1 * w) for w in words[:2]])
    assert reward[2] == FAILED_REWARD
    assert whole.tolist() == pytest.approx([0.4, 0.7, 0.6])


def test_a_shaping_that_rewards_early_information_prefers_it():
    # two explanations with the same words: the one that says the informative word
    # first wins under matryoshka, ties under plain
    def score(texts):
        return torch.tensor([0.2 if "KEY" in t else 1.0 for t in texts])

    texts = ["KEY a b c d e", "a b c d e KEY"]
    n, done = torch.tensor([6, 6]), torch.tensor([True, True])
    plain, _ = shaped_rewards(Shaping(), texts, n, done, score, Words())
    ordered, _ = shaped_rewards(
        Shaping("matryoshka", lengths=(2, WHOLE)), texts, n, done, score, Words()
    )
    assert group_advantages(plain, 2).tolist() == [0.0, 0.0]
    adv = group_advantages(ordered, 2)
    assert adv[0] > 0 > adv[1]


def test_reader_mse_pays_each_segment_at_the_error_before_it():
    assert reader_mse([1.0, 0.8, 0.5], [3, 4, 1]) == pytest.approx((3 + 3.2 + 0.5) / 8)
    assert reader_mse([1.0], [6]) == 1.0  # no separator: the empty text's error
    with pytest.raises(ValueError):
        reader_mse([1.0, 0.5], [3])


def stripped_score(texts, rows=None):
    """`fake_score` of the words the AR reads (separators stripped)."""
    return fake_score([strip_separators(t) for t in texts])


def test_separators_reward_averages_the_whole_and_the_readers_error():
    shaping = Shaping("separators", separator=S)
    texts = [f"a b {S} c d e {S} f", "a b c d e f"]
    n, done = torch.tensor([8, 6]), torch.tensor([True, True])
    reward, whole = shaped_rewards(shaping, texts, n, done, stripped_score, Words())
    # text 0: segments of 3, 4, 1 tokens read at the errors of "", "a b", "a b c d e"
    first = 0.5 * (0.4 + (3 * 1.0 + 4 * 0.8 + 1 * 0.5) / 8)
    second = 0.5 * (0.4 + 1.0)  # no separator: the whole and the empty text
    assert reward.tolist() == pytest.approx([-first, -second])
    assert whole.tolist() == pytest.approx([0.4, 0.4])


def test_separators_reward_scores_each_prefix_against_its_own_sample():
    seen = []

    def score(texts, rows=None):
        rows = list(range(len(texts))) if rows is None else rows
        seen.extend((t, r) for t, r in zip(texts, rows, strict=True))
        return torch.zeros(len(texts))

    texts = [f"s0 a. {S} b.", f"s1 c. {S} d. {S} e."]
    shaping = Shaping("separators", separator=S, length_penalty=0.01)
    reward, _ = shaped_rewards(
        shaping, texts, torch.tensor([5, 7]), torch.ones(2, dtype=torch.bool), score, Words()
    )
    assert all(t == "" or t.startswith(f"s{r}") for t, r in seen)
    assert sorted(r for t, r in seen if t == "") == [0, 1]  # one empty text per sample
    assert reward.tolist() == pytest.approx([-0.05, -0.07])  # only the length penalty


def test_separators_pay_for_the_informative_part_first():
    def score(texts, rows=None):
        return torch.tensor([0.2 if "KEY" in t else 1.0 for t in texts])

    texts = [f"KEY a b c {S} d e", f"a b c d {S} e KEY", "KEY a b c d e"]
    n, done = torch.tensor([7, 7, 6]), torch.ones(3, dtype=torch.bool)
    reward, _ = shaped_rewards(Shaping("separators", separator=S), texts, n, done, score, Words())
    # a separator after the key pays; one before it is worth as much as none
    assert reward[0] > reward[2]
    assert reward[1] == pytest.approx(float(reward[2]))
    plain, _ = shaped_rewards(Shaping(), texts, n, done, score, Words())
    assert plain[0] == plain[1] == plain[2]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(method="sorted"),
        dict(lengths=()),
        dict(lengths=(-1,)),
        dict(weights=(1.0,)),  # 3 lengths, 1 weight
        dict(weights=(0.0, 0.0, 0.0)),
        dict(k_min=0),
        dict(k_min=9, k_max=8),
        dict(method="separators"),  # without the AV's separator
    ],
)
def test_bad_shapings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Shaping(**kwargs)
