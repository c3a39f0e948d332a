import pytest
import torch
from conftest import DEVICE, DTYPE, close

from nlakit import NLA
from nlakit.errors import InjectionError, NLAKitError
from nlakit.metrics import cosine, mse_nrm
from nlakit.models import load_causal_lm as load_target


@pytest.fixture(scope="module")
def nla(tiny_dirs):
    return NLA.from_pretrained(av=tiny_dirs["av"], ar=tiny_dirs["ar"], device=DEVICE, dtype=DTYPE)


def test_explain_returns_one_explanation_per_row(nla):
    out = nla.explain(torch.randn(5, 64), max_new_tokens=6, seed=0)
    assert len(out) == 5
    for e in out:
        assert e.n_tokens == len(e.token_ids) <= 6 and isinstance(e.raw, str)
        assert isinstance(e.text, str) and e.finished is False
    assert nla.explain(torch.randn(64), max_new_tokens=2)[0].n_tokens <= 2


def test_reconstruct_and_score(nla):
    texts = ["A recipe for soup.", "Code: a return statement.", "rain"]
    pred = nla.reconstruct(texts)
    assert pred.shape == (3, 64) and pred.dtype == torch.float32
    gold = torch.randn(3, 64)
    scores = nla.score(gold, texts)
    assert close(scores.mse_nrm, mse_nrm(pred, gold), atol=1e-5)
    assert close(scores.cos, cosine(pred, gold), atol=1e-5)


def test_explain_text_covers_every_non_special_token(nla, tiny_dirs):
    model, tok = load_target(tiny_dirs["target"], device=DEVICE, dtype=DTYPE)
    text = "The quick brown fox"
    rows = nla.explain_text(model, text, tokenizer=tok, max_new_tokens=4)
    ids = tok(text)["input_ids"]
    assert [r.position for r in rows] == list(range(1, len(ids)))  # position 0 is BOS
    assert "".join(r.token for r in rows) == text
    assert all(r.mse_nrm is not None and -1 <= r.cos <= 1 for r in rows)
    picked = nla.explain_text(str(tiny_dirs["target"]), text, positions=[-1, 2], max_new_tokens=2)
    assert [r.position for r in picked] == [len(ids) - 1, 2]


def test_explain_text_vectors_are_layer_k_activations(nla, tiny_dirs):

    model, tok = load_target(tiny_dirs["target"], device=DEVICE, dtype=DTYPE)
    ids = tok("The fox", return_tensors="pt")["input_ids"].to(DEVICE)
    seen = []
    original = nla.explain
    nla.explain = lambda vectors, **kw: seen.append(vectors) or original(vectors, **kw)
    try:
        nla.explain_text(model, "The fox", tokenizer=tok, positions=[1], max_new_tokens=1)
    finally:
        nla.explain = original
    with torch.no_grad():
        want = model(ids, output_hidden_states=True).hidden_states[nla.layer + 1][0, 1]
    assert close(seen[0][0], want)


def test_bad_inputs(nla, tiny_dirs):
    with pytest.raises(InjectionError, match=r"\[n, 64\]"):
        nla.explain(torch.randn(2, 32))
    with pytest.raises(InjectionError, match="NaN"):
        nla.score(torch.full((1, 64), float("nan")), ["x"])
    with pytest.raises(NLAKitError, match="2 vectors but 1 texts"):
        nla.score(torch.randn(2, 64), ["x"])
    with pytest.raises(NLAKitError, match="outside"):
        nla.explain_text(str(tiny_dirs["target"]), "hi", positions=[50])


def test_half_an_nla(tiny_dirs):
    ar_only = NLA.from_pretrained(ar=tiny_dirs["ar"], device=DEVICE, dtype=DTYPE)
    assert ar_only.layer == 2
    with pytest.raises(NLAKitError, match="needs the AV"):
        ar_only.explain(torch.randn(1, 64))
    av_only = NLA.from_pretrained(av=tiny_dirs["av"], device=DEVICE, dtype=DTYPE)
    assert av_only.layer == 2
    with pytest.raises(NLAKitError, match="needs the AR"):
        av_only.reconstruct(["x"])
    with pytest.raises(NLAKitError):
        NLA()
