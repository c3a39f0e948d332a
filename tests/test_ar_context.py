import pytest
import torch
import yaml
from conftest import DEVICE, DTYPE, close

from nlakit import meta as M
from nlakit import sites
from nlakit.ar_context import (
    CONTEXT_OPENING,
    ContextSpec,
    ar_inputs,
    context_spec,
    context_tails,
    context_template,
    needs_context,
    with_context,
)
from nlakit.errors import NLAKitError
from nlakit.models import ActivationReconstructor
from nlakit.nla import NLA

TEXTS = ["Poem: the moon over", "Recipe: whisk the eggs and"]
CONTEXTS = ["one two three four five six seven eight nine ten", "a b"]


def context_ar(make_model, tokenizer, tokens=4, text_only=False):
    meta = M.with_role(M.new_meta(tokenizer, layer=1, d_model=64), "ar")
    with_context(meta, ContextSpec(tokens, text_only))
    return ActivationReconstructor.from_base(make_model("qwen3"), tokenizer, 1, meta)


def test_context_template_opens_with_the_context_and_keeps_the_ending():
    template = "{explanation}\n<activation>"
    made = context_template(template)
    assert made == CONTEXT_OPENING + template and made.endswith(template)
    assert context_template(made) == made  # idempotent
    assert M.ar_template_suffix(made) == "\n<activation>"


def test_context_tails_keep_the_last_tokens(tokenizer):
    tails = context_tails(tokenizer, CONTEXTS, 3)
    ids = tokenizer(CONTEXTS[0], add_special_tokens=False)["input_ids"]
    assert tails[0] == tokenizer.decode(ids[-3:]) and tails[0] != CONTEXTS[0]
    assert tails[0].strip().endswith("ten")
    assert tails[1] == CONTEXTS[1]  # shorter than the budget: whole


def test_a_plain_ar_ignores_contexts_and_a_context_ar_needs_them(tokenizer):
    meta = M.with_role(M.new_meta(tokenizer, layer=1, d_model=64), "ar")
    plain = ar_inputs(meta, tokenizer, TEXTS, None)
    assert plain == ar_inputs(meta, tokenizer, TEXTS, CONTEXTS)
    with_context(meta, ContextSpec(50))
    assert context_spec(meta) == ContextSpec(50)
    read = ar_inputs(meta, tokenizer, TEXTS, CONTEXTS)
    assert read[0].startswith("<text>\n" + CONTEXTS[0]) and TEXTS[0] in read[0]
    with pytest.raises(NLAKitError, match="a context AR, 50 tokens of `detokenized_text_trunc"):
        ar_inputs(meta, tokenizer, TEXTS, None)
    with pytest.raises(NLAKitError, match="got 1"):
        ar_inputs(meta, tokenizer, TEXTS, CONTEXTS[:1])


def test_text_only_reads_the_context_without_the_explanation(tokenizer):
    meta = M.with_role(M.new_meta(tokenizer, layer=1, d_model=64), "ar")
    with_context(meta, ContextSpec(50, text_only=True))
    read = ar_inputs(meta, tokenizer, TEXTS, CONTEXTS)
    assert read == ar_inputs(meta, tokenizer, ["other words", ""], CONTEXTS)
    assert all(t not in r for t, r in zip(TEXTS, read, strict=True))


def test_with_context_refuses_an_empty_budget(tokenizer):
    meta = M.with_role(M.new_meta(tokenizer, layer=1, d_model=64), "ar")
    with pytest.raises(NLAKitError, match="≥ 1 token"):
        with_context(meta, ContextSpec(0))


def test_a_malformed_context_record_is_named(tokenizer):
    meta = M.with_role(M.new_meta(tokenizer, layer=1, d_model=64), "ar")
    meta.extra["context"] = {"budget": 3}
    with pytest.raises(NLAKitError, match="field `context`"):
        context_spec(meta)


def test_context_ar_prompt_ids_hold_the_context_tail_then_the_explanation(tokenizer, make_model):
    ar = context_ar(make_model, tokenizer, tokens=4)
    assert needs_context(ar)
    enc = ar.tokenize(TEXTS, CONTEXTS)
    row = enc["input_ids"][0][enc["attention_mask"][0].bool()].tolist()
    tail = context_tails(tokenizer, CONTEXTS[:1], 4)[0]
    text = ar.meta.ar_template.format(explanation=TEXTS[0], context=tail)
    assert row == M.render_ar_prompt_ids(tokenizer, "{explanation}", text)
    assert row[-len(ar.meta.tokens.critic_suffix_ids) :] == ar.meta.tokens.critic_suffix_ids
    with torch.no_grad():  # the context changes the prediction
        other = ar.reconstruct(TEXTS, contexts=["x y", "z"])
        assert not close(ar.reconstruct(TEXTS, contexts=CONTEXTS), other)
    with pytest.raises(NLAKitError, match="context AR"):
        ar.reconstruct(TEXTS)


def test_context_ar_round_trips_through_nla_from_pretrained(tmp_path, tokenizer, make_model):
    ar = context_ar(make_model, tokenizer, tokens=4, text_only=True)
    ar.save_pretrained(tmp_path)
    side = yaml.safe_load((tmp_path / "nla_meta.yaml").read_text())
    assert side["context"] == {
        "tokens": 4,
        "text_only": True,
        "column": "detokenized_text_truncated",
    }
    assert side["prompt_templates"]["ar"].startswith("<text>\n{context}")
    back = NLA.from_pretrained(ar=tmp_path, device=DEVICE, dtype=DTYPE).ar
    assert context_spec(back.meta) == ContextSpec(4, True)
    assert close(
        back.reconstruct(TEXTS, contexts=CONTEXTS), ar.reconstruct(TEXTS, contexts=CONTEXTS)
    )
    assert sites.num_blocks(back.backbone) == 2
