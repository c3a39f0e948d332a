"""`nlakit diff`: the difference vectors, the term table, and a run on tiny models."""

from __future__ import annotations

import pytest
import torch

from nlakit.diff import (
    difference_vectors,
    group_means,
    mean_difference,
    naming_rate,
    term_table,
    terms,
)


def test_raw_difference_is_tuned_minus_base():
    base, tuned = torch.randn(5, 8), torch.randn(5, 8)
    assert torch.allclose(difference_vectors(base, tuned, "raw"), tuned - base)


def test_anchored_difference_is_the_mean_plus_a_typical_deviation():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(50, 16, generator=gen) + 3.0
    tuned = base + torch.randn(50, 16, generator=gen)
    out = difference_vectors(base, tuned, "anchored")
    mu = base.mean(0)
    spread = (base - mu).norm(dim=-1).median()
    offsets = out - mu
    # every offset is as long as a typical deviation, and points along tuned - base
    assert torch.allclose(offsets.norm(dim=-1), torch.full((50,), float(spread)), atol=1e-4)
    cos = torch.nn.functional.cosine_similarity(offsets, tuned - base, dim=-1)
    assert torch.allclose(cos, torch.ones(50), atol=1e-5)


def test_anchored_difference_of_identical_models_is_the_mean():
    base = torch.randn(4, 6)
    out = difference_vectors(base, base.clone(), "anchored")
    assert torch.allclose(out, base.mean(0, keepdim=True).expand(4, 6))


def test_unknown_norm():
    with pytest.raises(ValueError, match="norm"):
        difference_vectors(torch.zeros(1, 2), torch.zeros(1, 2), "cosine")


def test_group_means_are_each_groups_mean_difference_and_its_opposite():
    torch.manual_seed(0)
    base = [torch.randn(3, 4), torch.randn(2, 4), torch.randn(5, 4)]
    tuned = [b + 1.0 for b in base]
    out = group_means(base, tuned, [[0, 2], [1]], "raw")
    assert out.shape == (4, 4)
    assert torch.allclose(out[0], torch.ones(4)) and torch.allclose(out[1], -torch.ones(4))
    anchored = group_means(base, tuned, [[0, 1, 2]], "anchored")
    expected = mean_difference(torch.cat(base), torch.cat(tuned), "anchored")
    assert torch.allclose(anchored[:1], expected)


def test_terms_are_words_and_two_word_phrases():
    found = terms("Recipe: how to make the soup. Next comes 12.")
    assert {"recipe", "soup", "make", "the soup", "recipe how"} <= found
    assert "the" not in found and "12" not in found  # stop words and numbers alone


def test_term_table_finds_what_rises():
    base = ["Chat: about cooking."] * 10
    tuned = ["Chat: about cooking."] * 4 + ["Recipe: lemon soup."] * 6
    rows = term_table({"base": base, "tuned": tuned, "diff": tuned}, min_count=2)
    top = rows[0]
    assert top["change"] == pytest.approx(0.6) or top["change"] == pytest.approx(-0.6)
    by_term = {r["term"]: r for r in rows}
    assert by_term["recipe"]["base"] == 0 and by_term["recipe"]["tuned"] == pytest.approx(0.6)
    assert by_term["cooking"]["change"] == pytest.approx(-0.6)
    assert by_term["recipe"]["change_ci_low"] > 0 > by_term["cooking"]["change_ci_high"]
    assert "lemon" in by_term and all(r["term"] != "soup." for r in rows)


def test_naming_rate_matches_whole_words():
    rate = naming_rate(["A Recipe for soup", "recipes", "no", "RECIPE."], ["recipe"])
    assert rate.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert naming_rate([], ["x"]).size == 0


def test_diff_end_to_end_on_a_tuned_toy_world(small_world, trained_pair, tmp_path):
    import csv
    import json

    from nlakit.cli import main
    from nlakit.toyworld.finetune import FinetuneConfig, finetune_world

    tuned = tmp_path / "tuned"
    fast = FinetuneConfig(n_docs=120, steps=3, batch_size=4, held_out=8, warmup=1)
    finetune_world(small_world, tuned, fast, progress=False)
    av, _ = trained_pair
    out = tmp_path / "diff"
    args = ["diff", "--av", str(av), "--base", str(small_world / "model"),
            "--tuned", str(tuned / "model"), "--data", f"toyworld:{small_world}",
            "--out", str(out), "--docs", "6", "--max-new-tokens", "24",
            "--mean-samples", "4", "--min-count", "1"]  # fmt: skip
    assert main(args) in (0, None)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 12 and summary["documents"] == 6 and summary["layer"] == 1
    assert summary["relative_change"] > 0 and summary["cos_base_tuned"] < 1
    rows = list(csv.DictReader((out / "explanations.csv").open()))
    assert len(rows) == 12 and {"base_explanation", "tuned_explanation", "diff_explanation"} <= set(
        rows[0]
    )
    means = list(csv.DictReader((out / "mean_difference.csv").open()))
    assert [m["direction"] for m in means] == ["toward"] * 4 + ["away"] * 4
    assert set(summary) >= {"mean_difference_terms", "mean_away_terms"}
    assert (out / "table.csv").is_file() and (out / "plot.png").is_file()


def test_diff_refuses_models_with_different_tokenizers(
    tiny_dirs, small_world, trained_pair, tmp_path
):
    from nlakit.diff import DiffConfig, diff
    from nlakit.errors import NLAKitError

    av, _ = trained_pair
    config = DiffConfig(av=str(av), base=str(small_world / "model"), tuned=str(tiny_dirs["target"]),
                        data=f"toyworld:{small_world}", out=str(tmp_path / "d"))  # fmt: skip
    with pytest.raises(NLAKitError, match="different tokenizers"):
        diff(config)
    assert not (tmp_path / "d").exists()
