import torch

from nlakit.models import ActivationVerbalizer
from nlakit.store.tables import load_table
from nlakit.train import modules as M
from nlakit.train.data import (
    BatchSampler,
    _templated_response,
    drop_tokens,
    pack_rows,
    pad_responses,
    response_ids,
    response_logprobs,
    truncate_explanations,
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


def test_pack_rows_puts_rows_back_to_back_and_points_at_each_response_token():
    pack = pack_rows([7, 8, 9], [[1, 2], [3]])
    assert pack.input_ids.tolist() == [[7, 8, 9, 1, 2, 7, 8, 9, 3]]
    assert pack.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3]]
    assert pack.predict_at.tolist() == [2, 3, 7]  # the position before each response token
    assert pack.targets.tolist() == [[1, 2, 3]]
    assert (pack.row.tolist(), pack.col.tolist()) == ([0, 0, 1], [0, 1, 0])


def test_packed_logprobs_and_gradients_equal_padded(arch, tokenizer, make_model):
    """Each architecture keeps a packed row's prompts apart (position ids restart), so
    log-probs and gradients are those of the padded batch."""
    av = ActivationVerbalizer.from_base(make_model(arch, seed=3), tokenizer, 1)
    generator = torch.Generator().manual_seed(0)
    lengths = [5, 11, 2, 8]
    rows = [torch.randint(10, 200, (k,), generator=generator).tolist() for k in lengths]
    ids, mask = pad_responses(rows, av.tokenizer.pad_token_id)
    vectors = torch.randn(len(rows), av.meta.d_model, generator=generator)

    def run(packed: bool):
        av.zero_grad()
        logp = response_logprobs(av, vectors, ids, mask, packed=packed)
        (logp * mask).sum().backward()
        grads = [p.grad.clone() for p in av.parameters() if p.grad is not None]
        return logp.detach() * mask, grads

    (padded, padded_grads), (packed, packed_grads) = run(False), run(True)
    assert torch.allclose(packed, padded, atol=1e-5)
    assert len(packed_grads) == len(padded_grads)
    for a, b in zip(packed_grads, padded_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_truncation_cuts_a_share_of_explanations_to_a_random_prefix():
    from conftest import Words

    from nlakit.separators import SEPARATOR

    texts = [f"w{i} a b c.{SEPARATOR} d e f g h i" for i in range(2000)]
    out = truncate_explanations(Words(), texts, 0.5, torch.Generator().manual_seed(0))
    assert all(SEPARATOR not in t for t in out)
    whole = [t for t in out if len(t.split()) == 10]
    cut = [len(t.split()) for t in out if len(t.split()) < 10]
    assert abs(len(cut) / 2000 - 0.45) < 0.04  # half drawn, k = 10 of those keeps it whole
    assert set(cut) == set(range(1, 10))
    assert all(t.startswith(f"w{i} ") or t == f"w{i}" for i, t in enumerate(out))
    assert len(whole) + len(cut) == 2000
    assert truncate_explanations(Words(), texts[:5], 0.0, torch.Generator()) == [
        t.replace(SEPARATOR, "") for t in texts[:5]
    ]


def test_token_dropout_deletes_a_share_of_tokens_and_keeps_the_order():
    from conftest import Words

    from nlakit.separators import SEPARATOR

    words = [f"w{i}" for i in range(20)]
    texts = [" ".join(words).replace("w9", f"w9{SEPARATOR}")] * 500
    out = drop_tokens(Words(), texts, 0.25, torch.Generator().manual_seed(0))
    kept = [t.split() for t in out]
    share = sum(len(k) for k in kept) / (20 * 500)
    assert abs(share - 0.75) < 0.02
    assert all(k == sorted(k, key=lambda w: int(w[1:])) for k in kept)  # order kept
    assert all(SEPARATOR not in t for t in out)
    assert drop_tokens(Words(), ["a b"], 0.999, torch.Generator().manual_seed(1))[0] in ("a", "b")
    assert drop_tokens(Words(), ["a b c"], 0.0, torch.Generator()) == ["a b c"]
