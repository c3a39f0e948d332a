import re

import pytest
import yaml

from nlakit.card import CARD_NAME, CardFigures, front_matter, model_card, write_card
from nlakit.meta import ModelMeta, TokenMeta, with_role


def meta(role="av", base_model="Qwen/Qwen2.5-7B-Instruct", **kw) -> ModelMeta:
    m = ModelMeta(
        role="av",
        d_model=3584,
        tokens=TokenMeta("㈜", 5, 4, 6),
        av_template=None,
        ar_template=None,
        injection_scale=150.0,
        mse_scale="sqrt_d_model",
        layer_index=20,
        base_model=base_model,
        **kw,
    )
    return with_role(m, "ar") if role == "ar" else m


def split(card: str) -> tuple[dict, str]:
    """(front matter, body): the card must open with a `---` YAML block."""
    match = re.match(r"---\n(.*?)\n---\n(.*)", card, re.DOTALL)
    assert match, card[:200]
    return yaml.safe_load(match.group(1)), match.group(2)


FIGURES = CardFigures(
    fve=0.61234,
    n=128,
    baseline_variance=0.7335,
    baseline_n=5000,
    cos=0.8,
    measured="Measured at the end of RL (step 200).",
)


@pytest.mark.parametrize("role", ["av", "ar"])
def test_front_matter_parses_with_the_hub_keys(role):
    head, body = split(model_card(meta(role), FIGURES))
    assert head["library_name"] == "nlakit"
    assert head["base_model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert {"nlakit", "nla", "interpretability", "activation-decoding", role} <= set(head["tags"])
    assert ("vector → text" if role == "av" else "text → vector") in body


@pytest.mark.parametrize("base", [None, "/tmp/worlds/demo/model", "runs/x/target/model"])
def test_base_model_is_omitted_unless_it_is_a_hub_id(base):
    head, body = split(model_card(meta(base_model=base)))
    assert "base_model" not in head and head == front_matter(meta(base_model=base))
    assert (base or "not recorded") in body  # still named in the body


def test_the_checkpoint_facts_appear():
    _, body = split(model_card(meta("av")))
    assert "| layer K | 20: the output of block 20 (`hidden_states[21]`" in body
    assert "blocks.20.hook_resid_post" in body
    assert "| d_model | 3584 |" in body
    assert "| injection scale | 150 |" in body
    assert "| mse scale | 59.87 (√d_model) |" in body  # √3584, resolved
    assert "`㈜` (U+321C, token id 5)" in body
    assert 'nlakit.NLA.from_pretrained(av="OWNER/NAME-av", ar="OWNER/NAME-ar")' in body
    assert "nlakit explain --av" in body and "--model Qwen/Qwen2.5-7B-Instruct" in body


def test_an_ar_without_an_injection_scale_says_it_injects_nothing():
    m = meta("ar")
    m.injection_scale = None
    _, body = split(model_card(m))
    assert "| injection scale | none recorded (an AR injects nothing" in body
    assert "nlakit reconstruct --ar" in body and "value_head" in body


def test_measured_figures_appear_with_baseline_and_n():
    _, body = split(model_card(meta("ar"), FIGURES))
    assert "**FVE 0.6123** on n = 128 held-out activations" in body
    assert "baseline variance 0.7335 over n = 5000 reference rows" in body
    assert "mean cosine 0.8000" in body and "Measured at the end of RL (step 200)." in body
    assert "No FVE" not in body


@pytest.mark.parametrize("role", ["av", "ar"])
def test_no_figure_when_none_was_measured(role):
    _, body = split(model_card(meta(role)))
    quality = body.split("## Quality", 1)[1].split("## Use", 1)[0]
    assert "No FVE" in quality and "nlakit eval --run RUN" in quality
    assert not re.search(r"\d", quality)  # not one number


def test_an_av_sft_card_gives_its_cross_entropy_but_no_fve():
    figures = CardFigures(eval_loss=1.23456, n=64, measured="Measured at the end of AV SFT.")
    _, body = split(model_card(meta("av"), figures))
    assert "No FVE has been measured for this AV" in body
    assert "1.2346 nats per response token (n = 64 held-out explanations)" in body


def test_write_card_writes_readme_atomically(tmp_path):
    path = write_card(tmp_path, meta("av"), FIGURES)
    assert path == tmp_path / CARD_NAME
    assert path.read_text(encoding="utf-8") == model_card(meta("av"), FIGURES)
    assert [p.name for p in tmp_path.iterdir()] == [CARD_NAME]  # no temporary file left
