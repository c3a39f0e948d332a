import torch

from nlakit.batching import length_batches, pad_right


def test_pad_right():
    ids, mask = pad_right([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == mask.dtype == torch.long


def test_length_batches_respect_the_budget():
    lengths = [5, 50, 7, 48, 20, 3, 200]
    batches = length_batches(lengths, 100)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert [6] in batches  # too long for the budget: alone
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 100
    assert batches[0] == [6] and batches[1] == [1, 3]  # longest first, similar lengths together
