import torch

from nlakit.models import ActivationVerbalizer
from nlakit.store.tables import load_table
from nlakit.train import modules as M
from nlakit.train.data import (
    BatchSampler,
    _templated_response,
    pad_responses,
    response_ids,
    response_logprobs,
)


def make_av(small_tables, small_world):
    table = load_table(small_tables / "av_sft.parquet", ("response",))
    return M.start_av(str(small_world / "model"), table.meta, "cpu", None), table


def test_response_ids_match_the_chat_template_and_end_at_the_stop_token(small_tables, small_world):
    av, table = make_av(small_tables, small_world)
    responses = table.columns["response"][:20]
    ids = response_ids(av, responses)
    from nlakit.generation import stop_token_ids

    stops = set(stop_token_ids(av))
    for text, row in zip(responses, ids, strict=True):
        assert row == _templated_response(av, text, stops)
        assert row[-1] in stops and not stops & set(row[:-1])
        assert av.tokenizer.decode(row[:-1]) == text


def test_response_logprobs_equal_a_full_forward(small_tables, small_world):
    av, table = make_av(small_tables, small_world)
    targets = response_ids(av, table.columns["response"][:3])
    ids, mask = pad_responses(targets, av.tokenizer.pad_token_id)
    vectors = table.vectors[:3]
    got = response_logprobs(av, vectors, ids, mask)
    for row, target in enumerate(targets):
        full = torch.tensor([av.prompt_ids + target])
        logits = av(full, vectors[row : row + 1]).logits[0]
        logp = torch.log_softmax(logits, -1)[len(av.prompt_ids) - 1 : -1]
        want = logp.gather(1, torch.tensor(target)[:, None]).squeeze(1)
        assert torch.allclose(got[row, : len(target)], want, atol=1e-5)


def test_batch_sampler_is_deterministic_and_resumable():
    lengths = [i % 17 for i in range(100)]
    a = BatchSampler(lengths, 8, seed=3)
    first = [a.next() for _ in range(30)]  # crosses an epoch (12 batches each)
    assert all(len(b) == 8 for b in first)
    assert sorted(i for b in first[:12] for i in b) == sorted(set(i for b in first[:12] for i in b))
    b = BatchSampler(lengths, 8, seed=3)
    for _ in range(7):
        b.next()
    state = b.state()
    c = BatchSampler(lengths, 8, seed=3)
    c.load_state(state)
    assert [c.next() for _ in range(23)] == first[7:]
    assert first != [BatchSampler(lengths, 8, seed=4).next() for _ in range(30)]


def test_av_from_tables_uses_their_sidecar(small_tables, small_world):
    av, table = make_av(small_tables, small_world)
    assert isinstance(av, ActivationVerbalizer)
    assert av.meta.av_template == table.meta.av_template and av.meta.layer == table.meta.layer
