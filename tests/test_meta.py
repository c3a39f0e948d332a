import dataclasses
import math

import pytest
import yaml

from nlakit import meta as M
from nlakit.errors import MetaError
from nlakit.tiny import build_tokenizer, sample_corpus


@pytest.fixture
def av_meta(tokenizer):
    return M.new_meta(tokenizer, layer=2, d_model=64)


def released_dict(meta: M.ModelMeta, role: str = "critic") -> dict:
    """A sidecar the way older released files spell it: actor/critic keys, critic depth."""
    return {
        "kind": "nla_model",
        "role": role,
        "d_model": meta.d_model,
        "extraction": {"injection_scale": 150.0, "mse_scale": "sqrt_d_model"},
        "tokens": M.tokens_dict(meta.tokens),
        "prompt_templates": {"actor": meta.av_template, "critic": meta.ar_template},
        "critic": {"num_hidden_layers": 2},
        "created_by": "someone else",
    }


def test_new_meta_validates_against_its_tokenizer(tokenizer, av_meta):
    assert M.check(av_meta, tokenizer) == []
    assert av_meta.tokens.injection_char == "㊗"
    assert tokenizer.encode("㊗", add_special_tokens=False) == [av_meta.tokens.injection_token_id]
    assert av_meta.tokens.critic_suffix_ids == M.ar_suffix_ids(tokenizer, av_meta.ar_template)
    assert av_meta.layer == 2


def test_new_meta_picks_first_single_token_char_in_range():
    tok = build_tokenizer(sample_corpus(50), vocab_size=300, marker="\u3300")
    tok.add_tokens(["\u3250"])
    meta = M.new_meta(tok, layer=0, d_model=8)
    assert meta.tokens.injection_char == "\u3250"


def test_new_meta_without_single_token_char_says_what_to_do():
    tok = build_tokenizer(sample_corpus(50), vocab_size=300, marker="@@@")
    with pytest.raises(MetaError, match="add_tokens"):
        M.new_meta(tok, layer=0, d_model=8)


def test_model_meta_round_trip(tmp_path, av_meta):
    path = M.write_meta(av_meta, tmp_path)
    assert path == tmp_path / "nla_meta.yaml"
    back = M.read_meta(tmp_path)
    assert back == dataclasses.replace(av_meta, injection_scale=8.0, mse_scale=8.0)
    assert back.source == str(path)
    raw = yaml.safe_load(path.read_text())
    assert raw["extraction"]["hook"] == "blocks.2.hook_resid_post"
    assert raw["prompt_templates"]["av"] == av_meta.av_template


def test_reads_actor_critic_spellings_and_keeps_unknown_keys(tmp_path, av_meta):
    (tmp_path / "nla_meta.yaml").write_text(yaml.safe_dump(released_dict(av_meta)))
    meta = M.read_meta(tmp_path)
    assert meta.role == "ar"
    assert meta.av_template == av_meta.av_template
    assert meta.ar_template == av_meta.ar_template
    assert meta.ar_num_hidden_layers == 2 and meta.layer == 2
    assert meta.injection_scale_value == 150.0
    assert meta.mse_scale_value == pytest.approx(8.0)
    assert M.meta_to_dict(meta)["created_by"] == "someone else"


def test_reads_ar_depth_from_ar_section(av_meta):
    d = released_dict(av_meta, role="ar")
    d["ar"] = d.pop("critic")
    assert M.model_meta_from_dict(d).ar_num_hidden_layers == 2


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (150, 150.0),
        ("80000", 80000.0),
        ("sqrt_d_model", math.sqrt(64)),
        (None, None),
        ("raw", None),
    ],
)
def test_scale_resolution(raw, expected):
    scale = M.parse_scale(raw, "extraction.injection_scale", None)
    assert M.resolve_scale(scale, 64) == expected


def test_absent_mse_scale_means_sqrt_d_and_an_ar_needs_no_injection_scale(av_meta):
    d = released_dict(av_meta)
    d["extraction"] = {}
    meta = M.model_meta_from_dict(d)
    assert meta.mse_scale_value == 8.0 and meta.injection_scale_value is None


@pytest.mark.parametrize("raw", ["big", -1, 0, True, float("nan")])
def test_bad_scale_names_the_field(raw):
    with pytest.raises(MetaError, match=r"extraction\.mse_scale"):
        M.parse_scale(raw, "extraction.mse_scale", "x/nla_meta.yaml")


def test_missing_sidecar_names_the_path(tmp_path):
    with pytest.raises(MetaError, match=str(tmp_path)):
        M.read_meta(tmp_path)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(kind="other"), "kind"),
        (lambda d: d.update(role="judge"), "role"),
        (lambda d: d.pop("d_model"), "d_model"),
        (lambda d: d["tokens"].pop("injection_token_id"), "tokens.injection_token_id"),
        (
            lambda d: d["tokens"].update(injection_left_neighbor_id="x"),
            "injection_left_neighbor_id",
        ),
    ],
)
def test_malformed_model_sidecar(tmp_path, av_meta, change, field):
    d = released_dict(av_meta)
    change(d)
    (tmp_path / "nla_meta.yaml").write_text(yaml.safe_dump(d))
    with pytest.raises(MetaError) as info:
        M.read_meta(tmp_path)
    assert field in str(info.value) and str(tmp_path) in str(info.value)


def test_marker_not_single_token_is_reported(tokenizer, av_meta):
    av_meta.tokens.injection_char = "卍卍"
    problems = M.check(av_meta, tokenizer)
    assert any("injection_token_id" in p and "one token" in p for p in problems)


def test_template_drift_reports_expected_and_actual(tokenizer, av_meta):
    av_meta.av_template = av_meta.av_template.replace(
        "<concept>{injection_char}", "<concept> {injection_char}"
    )
    av_meta.source = "ckpt/nla_meta.yaml"
    with pytest.raises(MetaError) as info:
        M.validate(av_meta, tokenizer)
    message = str(info.value)
    assert "ckpt/nla_meta.yaml" in message and "neighbor" in message
    left, right = (
        av_meta.tokens.injection_left_neighbor_id,
        av_meta.tokens.injection_right_neighbor_id,
    )
    assert f"expected ({left}, {right})" in message


def test_marker_twice_in_template(tokenizer, av_meta):
    av_meta.av_template += " {injection_char}"
    assert any("exactly once" in p for p in M.check(av_meta, tokenizer))


def test_ar_suffix_drift(tokenizer, av_meta):
    av_meta.tokens.critic_suffix_ids = [7] * 8
    assert any("critic_suffix_ids" in p for p in M.check(av_meta, tokenizer))


def test_check_pair(av_meta):
    ar = M.with_role(av_meta, "ar")
    M.check_pair(av_meta, ar)
    ar.d_model = 128
    with pytest.raises(MetaError, match="d_model"):
        M.check_pair(av_meta, ar)
    ar.d_model, ar.ar_num_hidden_layers, ar.layer_index = 64, 3, 3
    with pytest.raises(MetaError, match="layer"):
        M.check_pair(av_meta, ar)


def dataset_meta(av_meta) -> M.DatasetMeta:
    return M.DatasetMeta(
        stage="av_sft",
        row_count=10,
        extraction=M.ExtractionMeta(
            base_model="tiny", d_model=64, layer_index=2, corpus="toyworld:x", positions_per_doc=4
        ),
        tokens=av_meta.tokens,
        av_template=av_meta.av_template,
        ar_template=av_meta.ar_template,
    )


def test_dataset_meta_round_trip(tmp_path, tokenizer, av_meta):
    table = tmp_path / "av_sft.parquet"
    meta = dataset_meta(av_meta)
    path = M.write_meta(meta, table)
    assert path.name == "av_sft.parquet.nla_meta.yaml"
    raw = yaml.safe_load(path.read_text())
    assert raw["kind"] == "nla_dataset" and raw["schema_version"] == 1 and raw["stage"] == "av_sft"
    back = M.read_meta(table)
    assert back.dataset_id == M.dataset_id(meta) == raw["dataset_id"]
    meta.dataset_id = back.dataset_id
    assert back == meta and back.d_model == 64 and back.layer == 2
    assert M.check(back, tokenizer) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(stage="pretrain"), "stage"),
        (lambda d: d.update(schema_version=9), "schema_version"),
        (lambda d: d["extraction"].update(norm="l2"), "extraction.norm"),
        (lambda d: d["extraction"].pop("layer_index"), "extraction.layer_index"),
        (lambda d: d.pop("row_count"), "row_count"),
    ],
)
def test_malformed_dataset_sidecar(av_meta, change, field):
    d = M.meta_to_dict(dataset_meta(av_meta))
    change(d)
    with pytest.raises(MetaError, match=field.replace(".", r"\.")):
        M.meta_from_dict(d, "t.parquet.nla_meta.yaml")


def test_invalid_yaml(tmp_path):
    (tmp_path / "nla_meta.yaml").write_text("kind: [unclosed")
    with pytest.raises(MetaError, match="not valid YAML"):
        M.read_meta(tmp_path)
