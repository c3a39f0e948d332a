"""What nlakit writes, the release's readers accept; what the release wrote, nlakit reads.

One test (or group) per mismatch found by running the official NLA code against
nlakit. Fixtures in the release's layout are written here from its documented schema
(docs/design.md §0 and `nla_meta.yaml` in docs/inference.md of the release).
"""

import shutil

import pytest
import torch
import yaml

from nlakit import NLA
from nlakit import meta as M
from nlakit.errors import MetaError, NLAKitError
from nlakit.metrics import FVEBaseline, mse_nrm
from nlakit.models import ActivationReconstructor, rows_without_suffix
from nlakit.tiny import build_tokenizer, sample_corpus

# The release's NLAExtractionMeta: exactly these keys, all required.
RELEASE_EXTRACTION_KEYS = {
    "base_model",
    "d_model",
    "layer_index",
    "norm",
    "corpus",
    "corpus_slice",
    "positions_per_doc",
}
RELEASE_DATASET_TOP_KEYS = {
    "dataset_id",
    "stage",
    "row_count",
    "extraction",
    "kind",
    "schema_version",
    "keep_debug_metadata",
    "tokens",
    "prompt_templates",
    "api_summaries",
    "parent_datasets",
    "created_at",
    "created_by",
    "git_commit",
}


def sidecar(path) -> dict:
    return yaml.safe_load((path / "nla_meta.yaml").read_text())


@pytest.fixture
def pair(tiny_dirs, tmp_path):
    """A private copy of the tiny AV/AR pair (tests rewrite its sidecars)."""
    out = {}
    for half in ("av", "ar"):
        out[half] = tmp_path / half
        shutil.copytree(tiny_dirs[half], out[half])
    return out


# --------------------------------------------------------------------------- 1. scales


def test_model_sidecars_record_scales_as_numbers(pair):
    """The official readers call float() on both scales; the sentinel broke them."""
    for half in ("av", "ar"):
        extraction = sidecar(pair[half])["extraction"]
        assert float(extraction["injection_scale"]) == 8.0
        assert float(extraction["mse_scale"]) == 8.0  # √64, resolved


def test_the_sentinel_is_still_read(pair):
    d = sidecar(pair["av"])
    d["extraction"]["injection_scale"] = "sqrt_d_model"
    assert M.model_meta_from_dict(d).injection_scale_value == 8.0


# --------------------------------------------------------------------------- 2. AR depth


def test_ar_sidecar_records_the_depth_where_the_release_reads_it(pair):
    critic = sidecar(pair["ar"])["critic"]
    assert critic == {"extraction_layer_index": 2, "num_hidden_layers": 2}


def test_an_official_ar_keeps_its_depth_through_a_save(pair, tmp_path):
    d = sidecar(pair["ar"])
    for key in ("ar", "extraction_layer_index"):
        d.pop(key, None)
    d["extraction"].pop("layer_index")
    d["critic"] = {"extraction_layer_index": 2}
    (pair["ar"] / "nla_meta.yaml").write_text(yaml.safe_dump(d))
    ar = ActivationReconstructor.from_pretrained(pair["ar"], device="cpu", dtype="fp32")
    assert ar.layer == 2
    ar.save_pretrained(tmp_path / "again")
    assert sidecar(tmp_path / "again")["critic"]["extraction_layer_index"] == 2


def test_disagreeing_layer_records_are_an_error(pair):
    d = sidecar(pair["ar"])
    d["extraction_layer_index"] = 1  # extraction.layer_index says 2
    with pytest.raises(MetaError, match="extraction_layer_index"):
        M.model_meta_from_dict(d, "x/nla_meta.yaml")


# --------------------------------------------------------------------------- 3. AV layer


def released_av_sidecar(d: dict) -> dict:
    """An AV sidecar as the release's staging wrote it: role av, the layer only at the top."""
    d = dict(d, role="av", extraction_layer_index=2)
    d["extraction"] = {"injection_scale": 8.0, "mse_scale": 8.0}
    d["prompt_templates"] = {"av": d["prompt_templates"]["av"], "ar": d["prompt_templates"]["ar"]}
    d.pop("critic", None)
    return d


def test_released_av_sidecar_layer_is_read_and_explains_text(pair, tiny_dirs):
    d = released_av_sidecar(sidecar(pair["av"]))
    (pair["av"] / "nla_meta.yaml").write_text(yaml.safe_dump(d))
    nla = NLA.from_pretrained(av=pair["av"], device="cpu", dtype="fp32")
    assert nla.layer == 2
    rows = nla.explain_text(tiny_dirs["target"], "the cat sat", max_new_tokens=4, seed=0)
    assert rows and all(r.explanation is not None for r in rows)


def test_released_av_layer_takes_part_in_the_pair_check(pair):
    d = released_av_sidecar(sidecar(pair["av"]))
    d["extraction_layer_index"] = 1
    av = M.model_meta_from_dict(d, "av/nla_meta.yaml")
    ar = M.read_meta(pair["ar"])
    with pytest.raises(MetaError, match="layer"):
        M.check_pair(av, ar)


# --------------------------------------------------------------------------- 4. suffix ids


@pytest.fixture(scope="module")
def merging_tokenizer():
    """A tokenizer that knows `</text>` and `<summary>`, so the suffix is a few tokens."""
    corpus = sample_corpus(200) + ["<text>a b</text> <summary>"] * 200
    return build_tokenizer(corpus, vocab_size=400)


RELEASE_STYLE_AR_TEMPLATE = "Summarise the vector.\n<text>{explanation}</text> <summary>"


def test_suffix_ids_follow_the_release_rule(merging_tokenizer):
    tok = merging_tokenizer
    suffix_ids = tok("</text> <summary>", add_special_tokens=False)["input_ids"]
    assert len(suffix_ids) < 8  # the case where "the last 8 ids" reached into <text>
    ids = M.ar_suffix_ids(tok, RELEASE_STYLE_AR_TEMPLATE)
    assert ids == suffix_ids[1:]
    for text in ("A noun.", "the verb", "x"):
        prompt = M.render_ar_prompt_ids(tok, RELEASE_STYLE_AR_TEMPLATE, text)
        assert prompt[-len(ids) :] == ids


def test_new_sidecars_record_the_rule(merging_tokenizer):
    meta = M.new_meta(merging_tokenizer, 1, 8, ar_template=RELEASE_STYLE_AR_TEMPLATE)
    assert meta.tokens.critic_suffix_ids == M.ar_suffix_ids(
        merging_tokenizer, RELEASE_STYLE_AR_TEMPLATE
    )
    assert M.check(meta, merging_tokenizer) == []


def test_a_too_short_suffix_is_refused(merging_tokenizer):
    with pytest.raises(MetaError, match="at least 2 tokens"):
        M.ar_suffix_ids(merging_tokenizer, "Summarise.\n{explanation}")


def test_the_whole_suffix_is_checked_not_the_last_id():
    ids = torch.tensor([[5, 1, 2, 3], [5, 9, 2, 3], [0, 1, 2, 3]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]])
    assert rows_without_suffix(ids, mask, [1, 2, 3]) == [1]
    assert rows_without_suffix(ids, mask, [3]) == []


def test_old_nlakit_suffix_ids_are_upgraded_on_load(pair):
    d = sidecar(pair["ar"])
    tok = ActivationReconstructor.from_pretrained(pair["ar"], device="cpu").tokenizer
    legacy = M.render_ar_prompt_ids(tok, d["prompt_templates"]["ar"], "")[-8:]
    d["tokens"]["critic_suffix_ids"] = legacy
    (pair["ar"] / "nla_meta.yaml").write_text(yaml.safe_dump(d))
    ar = ActivationReconstructor.from_pretrained(pair["ar"], device="cpu", dtype="fp32")
    assert ar.meta.tokens.critic_suffix_ids == M.ar_suffix_ids(tok, d["prompt_templates"]["ar"])
    assert ar.meta.tokens.critic_suffix_ids != legacy


# --------------------------------------------------------------------------- 5. null and absent


def test_null_mse_scale_is_raw_mse():
    pred, gold = torch.randn(4, 16), torch.randn(4, 16) * 30
    raw = (pred - gold).pow(2).mean(dim=-1)
    assert torch.allclose(mse_nrm(pred, gold, None), raw)
    assert not torch.allclose(mse_nrm(pred, gold), raw)  # the default is √d
    base = FVEBaseline.from_vectors(gold, scale=None)
    assert base.variance == pytest.approx(float((gold - gold.mean(0)).pow(2).mean()), rel=1e-5)


def test_null_mse_scale_survives_a_round_trip(pair):
    d = sidecar(pair["ar"])
    d["extraction"]["mse_scale"] = None
    meta = M.model_meta_from_dict(d)
    assert meta.mse_scale_value is None
    assert M.meta_to_dict(meta)["extraction"]["mse_scale"] is None


def test_an_av_without_injection_scale_is_a_clear_error(pair):
    d = sidecar(pair["av"])
    d["extraction"].pop("injection_scale")
    (pair["av"] / "nla_meta.yaml").write_text(yaml.safe_dump(d))
    with pytest.raises(MetaError, match=r"extraction\.injection_scale.*nlakit list"):
        NLA.from_pretrained(av=pair["av"], device="cpu")


# --------------------------------------------------------------------------- 6. datasets


def dataset(**extraction) -> M.DatasetMeta:
    return M.DatasetMeta(
        stage="base",
        row_count=4,
        extraction=M.ExtractionMeta(
            base_model="org/model",
            d_model=8,
            layer_index=1,
            corpus="org/corpus",
            positions_per_doc=2,
            injection_scale=3.0,
            corpus_slice={"start": 0, "length": 2},
            extra={"splits": {"av_sft": 0.5, "eval": 0.5}},
            **extraction,
        ),
    )


def test_dataset_sidecars_fit_the_release_schema():
    d = M.meta_to_dict(dataset())
    assert set(d["extraction"]) == RELEASE_EXTRACTION_KEYS
    assert set(d) - {"nlakit"} <= RELEASE_DATASET_TOP_KEYS
    assert d["dataset_id"].startswith("base_model_L1_")
    assert d["nlakit"]["injection_scale"] == 3.0 and d["nlakit"]["splits"]["eval"] == 0.5
    assert M.meta_from_dict(d).extraction.extra["splits"] == {"av_sft": 0.5, "eval": 0.5}


def test_a_release_dataset_sidecar_reads_without_loss():
    d = {
        "dataset_id": "base_Qwen2.5-7B-Instruct_L20_1234abcd",
        "stage": "base",
        "row_count": 10,
        "extraction": {
            "base_model": "Qwen/Qwen2.5-7B-Instruct",
            "d_model": 8,
            "layer_index": 20,
            "norm": "none",
            "corpus": "HuggingFaceFW/fineweb",
            "corpus_slice": {"start": 100, "length": 50},
            "positions_per_doc": 4,
        },
        "kind": "nla_dataset",
        "schema_version": 1,
        "keep_debug_metadata": True,
        "created_by": "nla.datagen.stage0_extract",
        "git_commit": "abc1234",
    }
    meta = M.meta_from_dict(d)
    assert meta.extraction.injection_scale is None  # not recorded: a training choice
    assert meta.extraction.corpus_slice == {"start": 100, "length": 50}
    again = M.meta_to_dict(meta)
    assert {k: again[k] for k in d} == d


def test_an_older_nlakit_dataset_sidecar_still_reads():
    d = M.meta_to_dict(dataset())
    own = d.pop("nlakit")
    d["extraction"].update(own)
    meta = M.meta_from_dict(d)
    assert meta.extraction.injection_scale == 3.0
    assert "hook" not in meta.extraction.extra


def test_build_without_a_recorded_scale_says_what_to_pass(small_tables, tmp_path):
    from nlakit.data.tables import BuildConfig, build_tables

    data = tmp_path / "data"
    shutil.copytree(small_tables.parent / "data", data)
    d = yaml.safe_load((data / "nla_meta.yaml").read_text())
    d["nlakit"].pop("injection_scale")
    (data / "nla_meta.yaml").write_text(yaml.safe_dump(d))
    with pytest.raises(NLAKitError, match="--injection-scale"):
        build_tables(BuildConfig(data=str(data), out=str(tmp_path / "tables")))
    assert not (tmp_path / "tables").exists()
