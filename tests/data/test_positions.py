import collections

import pytest

from nlakit.data.positions import parse_fractions, sample_positions, split_for

IDS = list(range(100, 200))


def test_positions_are_keyed_by_seed_and_doc():
    a = sample_positions(IDS, {0}, 5, 10, seed=1, doc_id=7)
    assert a == sample_positions(IDS, {0}, 5, 10, seed=1, doc_id=7)
    assert a != sample_positions(IDS, {0}, 5, 10, seed=1, doc_id=8)
    assert a != sample_positions(IDS, {0}, 5, 10, seed=2, doc_id=7)
    assert a == sorted(a) and len(set(a)) == 5 and min(a) >= 10


def test_positions_skip_special_tokens_and_short_documents():
    ids = [1, 5, 1, 6, 7, 1, 8]
    assert sample_positions(ids, {1}, 10, 0, 0, 0) == [1, 3, 4, 6]
    assert sample_positions(ids, {1}, 10, 5, 0, 0) == [6]
    assert sample_positions(ids[:4], {1}, 3, 5, 0, 0) == []


def test_splits_are_stable_and_follow_the_fractions():
    fractions = parse_fractions(0.4, 0.3, 0.2, 0.1)
    splits = [split_for(i, 0, fractions) for i in range(5000)]
    assert splits == [split_for(i, 0, fractions) for i in range(5000)]
    counts = collections.Counter(splits)
    for name, fraction in fractions.items():
        assert abs(counts[name] / 5000 - fraction) < 0.03
    assert splits != [split_for(i, 1, fractions) for i in range(5000)]


def test_bad_fractions():
    with pytest.raises(ValueError):
        parse_fractions(0, 0, 0, 0)
    with pytest.raises(ValueError):
        parse_fractions(-1, 1, 1, 1)
