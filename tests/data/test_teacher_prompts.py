"""The named, versioned teacher prompts: each one's text, the plain prompt pinned, unknown
names refused, and replies in every layout accepted by `parse_reply`."""

from __future__ import annotations

import hashlib

import pytest

from nlakit.data.teacher import parse_reply
from nlakit.data.teacher_prompts import (
    PROMPTS,
    TeachRequest,
    get_prompt,
    many_short_prompt,
    structured_prompt,
    teacher_prompt,
)
from nlakit.errors import NLAKitError
from nlakit.layouts import LAYOUTS, STRUCTURED_FIELDS, follows_many_short, follows_structured

REQUEST = TeachRequest("1:5", "The cat sat on the", " the")
# sha256 of the plain prompt for REQUEST as it was before prompts were named: every plain
# teacher cache entry is keyed by this text, so it must never change.
PLAIN_SHA256 = "d75e9cc44d3b1605cf9fb267e3242d8ce11bb007f51a9786dbbab69772f81251"

STRUCTURED_REPLY = (
    "<explanation>\n"
    "Genre: Children's story, calm in tone\n"
    "Topic: a cat, sitting somewhere\n"
    'Token: " the", an article opening a noun phrase\n'
    "Next: a noun for what the cat sat on\n"
    "</explanation>"
)
MANY_SHORT_REPLY = (
    "<explanation>\n"
    "Simple narrative sentence.\nCalm tone.\nAbout a cat.\nPast tense.\n"
    'Final token " the".\nAn article.\nNext comes a noun.\n'
    "</explanation>"
)


def test_a_prompt_for_every_layout_with_a_version_tag():
    assert tuple(PROMPTS) == LAYOUTS
    for name, prompt in PROMPTS.items():
        assert prompt.name == name and prompt.version >= 1
        assert prompt.tag == f"{name}@v{prompt.version}"
    assert PROMPTS["plain"].write is teacher_prompt


def test_the_plain_prompt_is_unchanged():
    text = PROMPTS["plain"].write(REQUEST)
    assert hashlib.sha256(text.encode()).hexdigest() == PLAIN_SHA256
    assert "Write 2 or 3 features" in text and "80 to 100 words" in text


@pytest.mark.parametrize("name", LAYOUTS)
def test_every_prompt_shows_the_text_the_token_and_the_tags(name):
    text = PROMPTS[name].write(REQUEST)
    assert text.startswith("A language model has just read the text below")
    assert "<text>\nThe cat sat on the\n</text>" in text
    assert 'The final token is " the"' in text
    assert "<explanation></explanation> tags, and write nothing before or after" in text
    newline = PROMPTS[name].write(TeachRequest("1:6", "Line one\n", "\n"))
    assert 'final token is "\\n"' in newline


def test_prompts_differ_only_after_the_shared_opening():
    texts = {name: PROMPTS[name].write(REQUEST) for name in LAYOUTS}
    assert len(set(texts.values())) == 3
    opening = texts["plain"][: texts["plain"].index("Write 2 or 3")]
    assert all(t.startswith(opening) for t in texts.values())


def test_structured_prompt_asks_for_every_field_in_order():
    lines = structured_prompt(REQUEST).splitlines()
    starts = [
        next(i for i, line in enumerate(lines) if line.startswith(f"{f}: "))
        for f in STRUCTURED_FIELDS
    ]
    assert starts == sorted(starts) and len(set(starts)) == len(STRUCTURED_FIELDS)
    context = lines[starts[STRUCTURED_FIELDS.index("Context")]]
    assert "leave this line out" in context  # the one optional field, as in the oracle
    assert "Write each label exactly as shown" in structured_prompt(REQUEST)


def test_many_short_prompt_asks_for_many_short_features():
    text = many_short_prompt(REQUEST)
    assert "Write 5 to 8 short features" in text
    assert "at most 10 words" in text
    assert "rather than a few described at length" in text


def test_unknown_prompt_is_refused_with_the_choices():
    assert get_prompt("structured") is PROMPTS["structured"]
    with pytest.raises(NLAKitError) as info:
        get_prompt("Structured")
    message = str(info.value)
    assert "'Structured'" in message and "plain, structured, many-short" in message


@pytest.mark.parametrize(
    ("reply", "follows"),
    [(STRUCTURED_REPLY, follows_structured), (MANY_SHORT_REPLY, follows_many_short)],
)
def test_parse_reply_accepts_every_layout(reply, follows):
    explanation, status = parse_reply(reply)
    assert status == "ok" and follows(explanation)


def test_parse_reply_still_needs_two_features_in_any_layout():
    assert parse_reply("<explanation>Genre: Story</explanation>") == (None, "too_few_features")
    assert parse_reply("<explanation>Cat story.</explanation>")[1] == "too_few_features"


@pytest.mark.slow  # the oracle's structured set, its tables and an AR of 1400 steps: about 5 minutes
def test_labelled_fields_help_the_ar_a_little(demo_eval_run, tmp_path):
    """docs/prompts.md: an AR trained on the oracle's structured explanations (the same
    facts, one labelled field per line) reads them slightly better than the demo's AR
    reads the plain ones: +0.009 [+0.006, +0.012] FVE on the 5120 eval rows, paired."""
    import shutil

    from nlakit.data.tables import BuildConfig, build_tables
    from nlakit.data.teach import TeachConfig, teach
    from nlakit.demo import DEMO_AR_TEMPLATE, DEMO_AV_TEMPLATE, ORACLE_CONTEXT
    from nlakit.eval.stats import fve_drop
    from nlakit.linear_ar import load_reconstructor
    from nlakit.metrics import FVEBaseline, mse_nrm
    from nlakit.store.tables import load_table
    from nlakit.train.sft import SFTConfig, sft

    data, tables = tmp_path / "data", tmp_path / "tables"
    shutil.copytree(demo_eval_run / "data", data)
    teach(TeachConfig(data=str(data), teacher="toyworld", oracle_context=ORACLE_CONTEXT,
                      prompt="structured"), progress=False)  # fmt: skip
    build_tables(BuildConfig(data=str(data), out=str(tables), teacher="toyworld_structured",
                             av_template=DEMO_AV_TEMPLATE, ar_template=DEMO_AR_TEMPLATE))  # fmt: skip
    sft(SFTConfig(role="ar", data=str(tables), out=str(tmp_path / "ar"), steps=1400,
                  batch_size=32, lr=1e-3, warmup=20, eval_every=0, save_every=0, seed=0,
                  progress=False))  # fmt: skip

    def errors(ar_dir, tables_dir):
        table = load_table(tables_dir / "eval.parquet", ("explanation",))
        ar = load_reconstructor(ar_dir, device="cpu")
        return mse_nrm(ar.reconstruct(table.columns["explanation"]), table.vectors,
                       ar.meta.mse_scale_value)  # fmt: skip

    plain = errors(demo_eval_run / "ar_sft" / "ar", demo_eval_run / "tables")
    structured = errors(tmp_path / "ar" / "ar", tables)
    assert plain.shape == structured.shape and len(plain) >= 5000
    gain = fve_drop(structured, plain, FVEBaseline.load(tables / "baseline.json"))
    assert gain["fve_drop"] > 0 and gain["ci_low"] > 0, gain
