import json

import pytest
import torch
from conftest import Words

from nlakit.errors import CheckpointError, NLAKitError
from nlakit.linear_ar import (
    RIDGE_GRID,
    LinearAR,
    choose_features,
    featurize,
    fit_linear_ar,
    is_linear_ar,
    ngrams,
    ridge_solutions,
)
from nlakit.meta import ModelMeta, TokenMeta
from nlakit.metrics import mse_nrm


def test_ngrams_features_and_frequencies_by_hand():
    assert ngrams([1, 2, 3], 2) == [(1,), (1, 2), (2,), (2, 3), (3,)]
    ids = [[1, 2, 1], [2, 1]]
    # counts: (1,) 3, (2,) 2, (2, 1) 2, (1, 2) 1
    assert choose_features(ids, 2, 3) == [(1,), (2,), (2, 1)]
    index = {(1,): 0, (2, 1): 1}
    x = featurize(ids, index, 2)  # text 0 has 5 n-grams, text 1 has 3
    assert torch.allclose(x, torch.tensor([[2 / 5, 1 / 5], [1 / 3, 1 / 3]]))


def test_ridge_recovers_a_linear_map_with_an_intercept():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, 6, generator=g)
    w, b = torch.randn(6, 3, generator=g), torch.randn(3, generator=g)
    y = x @ w + b
    (fit_w, fit_b), *_ = ridge_solutions([x[:200], x[200:]], [y[:200], y[200:]], grid=(1e-9,))[0]
    assert torch.allclose(fit_w, w, atol=1e-3) and torch.allclose(fit_b, b, atol=1e-3)


def _meta(d: int) -> ModelMeta:
    tokens = TokenMeta("㊗", 0, 1, 2, [1, 2])
    return ModelMeta(
        role="ar", d_model=d, tokens=tokens, av_template=None, ar_template="{explanation}"
    )


def test_the_fit_learns_which_word_moves_the_vector_where():
    g = torch.Generator().manual_seed(1)
    d, keys = 8, [f"key{i}" for i in range(4)]
    directions = torch.eye(d)[:4] * d**0.5
    rows = torch.randint(0, 4, (600,), generator=g)
    texts = [f"the text says {keys[int(r)]} here" for r in rows]
    vectors = directions[rows] + 0.05 * torch.randn(600, d, generator=g)
    ar, record = fit_linear_ar(
        Words(), _meta(d), texts[:500], vectors[:500], (texts[500:], vectors[500:])
    )
    error = mse_nrm(ar.reconstruct(texts[500:]), vectors[500:], ar.meta.mse_scale_value)
    assert float(error.mean()) < 0.05 and record["n_features"] <= 4096
    top = ar.top_ngrams(torch.eye(d)[:4], k=1)
    # axis i is moved by key i alone (the word, or a bigram holding it)
    assert all(key in t["positive"][0].split() for key, t in zip(keys, top, strict=True))
    assert ar.meta.extra["reconstructor"]["kind"] == "linear"


def test_linear_ar_fits_from_tables_and_round_trips(small_tables, tiny_dirs, tmp_path):
    from nlakit.store.tables import load_table
    from nlakit.train.sft import SFTConfig, sft

    out = tmp_path / "linear"
    result = sft(SFTConfig(role="ar", data=str(small_tables), out=str(out), reconstructor="linear",
                           max_features=512, progress=False))  # fmt: skip
    # the words carry more than the mean direction does (FVE's zero is not "nothing")
    from nlakit.metrics import FVEBaseline, fve

    train = load_table(small_tables / "ar_sft.parquet").vectors
    held = load_table(small_tables / "eval.parquet").vectors[:256]
    mean_only = mse_nrm(train.mean(0).expand_as(held), held)
    floor = fve(mean_only, FVEBaseline.load(small_tables / "baseline.json"))
    assert result["eval_fve"] > floor + 0.1  # measured: −0.072 against −0.267
    assert is_linear_ar(out / "ar") and not is_linear_ar(tiny_dirs["ar"])
    ar = LinearAR.from_pretrained(out / "ar")
    texts = load_table(small_tables / "eval.parquet", ("explanation",)).columns["explanation"][:16]
    fit = json.loads((out / "fit.json").read_text())
    assert fit["ridge"] in RIDGE_GRID and len(ar.features) <= 512
    top = fit["top_ngrams_by_direction"]
    assert len(top) == 5 and all(len(t["positive"]) == 8 for t in top)
    again = LinearAR.from_pretrained(out / "ar").reconstruct(texts)
    assert torch.equal(ar.reconstruct(texts), again)
    from nlakit import NLA  # the public loader takes either kind of AR

    nla = NLA.from_pretrained(ar=out / "ar")
    assert isinstance(nla.ar, LinearAR) and nla.layer == 1
    assert torch.equal(nla.reconstruct(texts), again)
    with pytest.raises(CheckpointError, match="not a linear AR"):
        LinearAR.from_pretrained(tiny_dirs["ar"])
    with pytest.raises(NLAKitError, match="--reconstructor: AR settings"):
        sft(
            SFTConfig(
                role="av", data=str(small_tables), out=str(tmp_path / "x"), reconstructor="linear"
            )
        )


def test_rl_scores_with_a_frozen_linear_ar(small_tables, trained_pair, tmp_path):
    from nlakit.linear_ar import load_reconstructor
    from nlakit.store.runs import read_metrics
    from nlakit.train.rl import RLConfig, rl
    from nlakit.train.sft import SFTConfig, sft

    sft(SFTConfig(role="ar", data=str(small_tables), out=str(tmp_path / "lin"), reconstructor="linear",
                  max_features=256, progress=False))  # fmt: skip
    linear = tmp_path / "lin" / "ar"
    fast = dict(data=str(small_tables), av=str(trained_pair[0]), ar=str(linear), batch_size=2,
                group_size=4, max_new_tokens=24, warmup=1, eval_every=0, save_every=0,
                eval_rows=8, progress=False)  # fmt: skip
    with pytest.raises(NLAKitError, match="linear AR is fitted in closed form"):
        rl(RLConfig(out=str(tmp_path / "x"), steps=1, freeze_ar=False, **fast))
    assert not (tmp_path / "x").exists()
    rl(RLConfig(out=str(tmp_path / "rl"), steps=2, **fast))
    assert [r["step"] for r in read_metrics(tmp_path / "rl")] == [1, 2]
    exported = load_reconstructor(tmp_path / "rl" / "ar")
    assert isinstance(exported, LinearAR)
    assert torch.equal(exported.weight, LinearAR.from_pretrained(linear).weight)  # frozen
