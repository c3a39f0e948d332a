import dataclasses
import shutil

import pytest
import torch
import yaml
from conftest import DEVICE, DTYPE, close
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from nlakit import meta as M
from nlakit import sites
from nlakit.errors import CheckpointError, MetaError, NLAKitError
from nlakit.generation import SamplingConfig, sample_explanations
from nlakit.models import (
    VALUE_HEAD_FILE,
    ActivationReconstructor,
    ActivationVerbalizer,
    ar_layer,
    last_token_index,
    truncated_config,
)
from nlakit.nla import NLA

EXPLANATIONS = ["A recipe.", "The final token is a number in a list of ingredients.", ""]


# --------------------------------------------------------------------------- a released-layout pair


def write_released_pair(root, tokenizer, model, layer: int):
    """Write an AV and an AR the way the released tooling lays them out (not with nlakit's
    writers): older key spellings, a pre-truncated causal-LM AR, a trained (non-identity)
    value head."""
    meta = M.new_meta(tokenizer, layer=layer, d_model=model.config.hidden_size)
    tokens = M.tokens_dict(meta.tokens)
    templates = {"actor": meta.av_template, "critic": meta.ar_template}

    av_dir = root / "av"
    model.save_pretrained(av_dir)
    tokenizer.save_pretrained(av_dir)
    av_side = {
        "kind": "nla_model",
        "role": "actor",
        "d_model": 64,
        "extraction": {"injection_scale": 12.5, "mse_scale": "sqrt_d_model"},
        "tokens": tokens,
        "prompt_templates": templates,
    }
    (av_dir / "nla_meta.yaml").write_text(yaml.safe_dump(av_side, allow_unicode=True))

    ar_dir = root / "ar"
    config = truncated_config(model.config, layer + 1)
    ar_model = AutoModelForCausalLM.from_config(config)
    ar_model.load_state_dict(model.state_dict(), strict=False)
    ar_model.save_pretrained(ar_dir)
    tokenizer.save_pretrained(ar_dir)
    head = torch.randn(64, 64, generator=torch.Generator().manual_seed(5)) / 8
    save_file({"weight": head.contiguous()}, str(ar_dir / VALUE_HEAD_FILE))
    ar_side = {
        "kind": "nla_model",
        "role": "critic",
        "d_model": 64,
        "extraction": {"injection_scale": None, "mse_scale": "sqrt_d_model"},
        "tokens": tokens,
        "prompt_templates": templates,
        "critic": {"num_hidden_layers": layer},
    }
    (ar_dir / "nla_meta.yaml").write_text(yaml.safe_dump(ar_side, allow_unicode=True))
    return av_dir, ar_dir, head


@pytest.fixture(scope="module")
def released(tmp_path_factory, tokenizer):
    from nlakit.tiny import tiny_model

    model = tiny_model("qwen3", tokenizer, seed=3)
    root = tmp_path_factory.mktemp("released")
    av_dir, ar_dir, head = write_released_pair(root, tokenizer, model, layer=2)
    return {"av": av_dir, "ar": ar_dir, "head": head, "model": model}


def reference_reconstruct(ar_dir, head, tokenizer, template, texts):
    """The released reference: full causal-LM load, strip norm and head, one text at a time."""
    model = AutoModelForCausalLM.from_pretrained(ar_dir).eval()
    model.model.norm = torch.nn.Identity()
    out = []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(
                template.format(explanation=text), return_tensors="pt", add_special_tokens=True
            )["input_ids"]
            out.append(model.model(ids).last_hidden_state[0, -1] @ head.T)
    return torch.stack(out)


def test_released_ar_matches_reference(released, tokenizer):
    nla = NLA.from_pretrained(ar=released["ar"], device=DEVICE, dtype=DTYPE)
    assert nla.ar.layer == 2 and sites.num_blocks(nla.ar.backbone) == 3
    assert nla.ar.meta.layer == 2
    want = reference_reconstruct(
        released["ar"], released["head"], tokenizer, nla.ar.meta.ar_template, EXPLANATIONS
    )
    assert close(nla.reconstruct(EXPLANATIONS), want, atol=1e-4)


def test_released_av_matches_hf_generate(released, tokenizer):
    av = ActivationVerbalizer.from_pretrained(released["av"], device=DEVICE, dtype=DTYPE)
    assert av.meta.injection_scale_value == 12.5
    vectors = torch.randn(3, 64, generator=torch.Generator().manual_seed(1))
    ours = sample_explanations(av, vectors, SamplingConfig(temperature=0, max_new_tokens=8))
    # reference: embed, overwrite the marker row with the rescaled vector, HF generate
    ids = torch.tensor([av.prompt_ids], device=DEVICE)
    pos = av.prompt_ids.index(av.meta.tokens.injection_token_id)
    for row, sample in enumerate(ours):
        embeds = av.model.get_input_embeddings()(ids).clone()
        v = vectors[row].float()
        embeds[0, pos] = (v * 12.5 / v.norm()).to(DTYPE)
        out = av.model.generate(
            inputs_embeds=embeds,
            max_new_tokens=8,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        assert out[0].tolist()[: sample.n_tokens] == sample.token_ids


# --------------------------------------------------------------------------- AR


@pytest.mark.parametrize("layer", [0, 2])
def test_ar_from_base_reads_block_k_at_the_last_real_token(tokenizer, make_model, arch, layer):
    model = make_model(arch)
    ar = ActivationReconstructor.from_base(model, tokenizer, layer)
    assert sites.num_blocks(ar.backbone) == layer + 1 and sites.num_blocks(model) == 4
    assert isinstance(sites.final_norm(ar.backbone), torch.nn.Identity)
    assert not isinstance(sites.final_norm(model), torch.nn.Identity)  # base untouched
    assert torch.equal(ar.value_head.weight, torch.eye(64, device=DEVICE, dtype=DTYPE))
    enc = ar.tokenize(EXPLANATIONS)
    assert int(enc["attention_mask"].sum(1).min()) < enc["input_ids"].shape[1]  # really padded
    with torch.no_grad():
        pred = ar(**enc)
        for row, text in enumerate(EXPLANATIONS):
            ids = torch.tensor(
                [M.render_ar_prompt_ids(tokenizer, ar.meta.ar_template, text)], device=DEVICE
            )
            alone = sites.extract_layer(model, ids, None, layer)[0, -1]
            assert close(pred[row], alone, atol=1e-4)


def test_ar_prompt_starts_with_one_bos(tokenizer, make_model):
    ar = ActivationReconstructor.from_base(make_model("qwen3"), tokenizer, 1)
    ids = ar.tokenize(["x"])["input_ids"][0].tolist()
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1


def test_ar_save_load_round_trip_in_released_layout(tmp_path, tokenizer, make_model, arch):
    ar = ActivationReconstructor.from_base(make_model(arch), tokenizer, 1)
    with torch.no_grad():
        ar.value_head.weight.mul_(0.5)
    ar.save_pretrained(tmp_path)
    assert (tmp_path / VALUE_HEAD_FILE).is_file()
    causal, info = AutoModelForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert causal.config.num_hidden_layers == 2
    assert not info["missing_keys"] and not info["unexpected_keys"]
    side = yaml.safe_load((tmp_path / "nla_meta.yaml").read_text())
    assert side["role"] == "ar" and side["critic"]["extraction_layer_index"] == 1
    back = ActivationReconstructor.from_pretrained(tmp_path, device=DEVICE, dtype=DTYPE)
    assert back.layer == 1
    assert close(back.reconstruct(EXPLANATIONS), ar.reconstruct(EXPLANATIONS))


def test_ar_from_full_depth_checkpoint_loads_only_blocks_up_to_k(tmp_path, tokenizer, tiny_dirs):
    ar_dir = tmp_path / "full"
    shutil.copytree(tiny_dirs["target"], ar_dir)
    meta = M.with_role(M.read_meta(tiny_dirs["av"]), "ar")
    meta.layer_index, meta.ar_num_hidden_layers = 1, 1
    M.write_meta(meta, ar_dir)
    save_file({"weight": torch.eye(64)}, str(ar_dir / VALUE_HEAD_FILE))
    ar = ActivationReconstructor.from_pretrained(ar_dir, device=DEVICE, dtype=DTYPE)
    assert sites.num_blocks(ar.backbone) == 2 and ar.backbone.config.num_hidden_layers == 2
    n_params = sum(p.numel() for p in ar.backbone.parameters())
    full = AutoModelForCausalLM.from_pretrained(tiny_dirs["target"]).to(DEVICE, DTYPE)
    assert n_params < sum(p.numel() for p in full.model.parameters())
    enc = ar.tokenize(["hello"])
    with torch.no_grad():
        want = sites.extract_layer(full, enc["input_ids"], None, 1)[0, -1]
        assert close(ar(**enc)[0], want, atol=1e-4)


def test_ar_from_gemma3_multimodal_checkpoint(tmp_path, tokenizer):
    from test_sites import gemma3_multimodal

    mm = gemma3_multimodal(vocab_size=len(tokenizer) + 3).eval()
    mm_dir = tmp_path / "mm"
    mm.save_pretrained(mm_dir)
    tokenizer.save_pretrained(mm_dir)
    meta = M.new_meta(tokenizer, layer=1, d_model=32, role="ar")
    M.write_meta(meta, mm_dir)
    save_file({"weight": torch.eye(32)}, str(mm_dir / VALUE_HEAD_FILE))
    ar = ActivationReconstructor.from_pretrained(mm_dir, device="cpu", dtype=torch.float32)
    assert sites.num_blocks(ar.backbone) == 2
    enc = ar.tokenize(["a poem"])
    with torch.no_grad():
        want = sites.extract_layer(mm, enc["input_ids"], None, 1)[0, -1]
        assert close(ar(**enc)[0], want, atol=1e-5)


def test_ar_without_value_head_is_an_error(tmp_path, tiny_dirs):
    shutil.copytree(tiny_dirs["ar"], tmp_path / "ar")
    (tmp_path / "ar" / VALUE_HEAD_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"value_head\.safetensors"):
        ActivationReconstructor.from_pretrained(tmp_path / "ar")


def test_wrong_role_is_an_error(tiny_dirs):
    with pytest.raises(MetaError, match=r"role.*verbalizer"):
        ActivationReconstructor.from_pretrained(tiny_dirs["av"])
    with pytest.raises(MetaError, match=r"role.*reconstructor"):
        ActivationVerbalizer.from_pretrained(tiny_dirs["ar"])


def test_missing_sidecar_and_missing_config(tmp_path, tiny_dirs):
    shutil.copytree(tiny_dirs["av"], tmp_path / "av")
    (tmp_path / "av" / "nla_meta.yaml").unlink()
    with pytest.raises(MetaError, match="no sidecar"):
        ActivationVerbalizer.from_pretrained(tmp_path / "av")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        ActivationVerbalizer.from_pretrained(tmp_path / "empty")


def test_hub_id_that_cannot_be_fetched_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="Hugging Face Hub"):
        ActivationVerbalizer.from_pretrained("nlakit-test/does-not-exist")


@pytest.mark.parametrize(
    ("recorded", "n_config", "expected"),
    [(2, 3, 2), (3, 3, 2), (None, 3, 2), (1, 8, 1)],
)
def test_ar_layer_conventions(tokenizer, recorded, n_config, expected):
    meta = M.new_meta(tokenizer, 0, 64, role="ar")
    meta.ar_num_hidden_layers, meta.layer_index = recorded, None
    assert ar_layer(meta, n_config) == expected


def test_ar_layer_out_of_range(tokenizer):
    meta = M.new_meta(tokenizer, 0, 64, role="ar")
    meta.ar_num_hidden_layers = 9
    with pytest.raises(MetaError, match=r"ar\.num_hidden_layers"):
        ar_layer(meta, 4)


def test_last_token_index_left_and_right_padding():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert last_token_index(mask).tolist() == [2, 4, 4]


# --------------------------------------------------------------------------- AV


def test_av_prompt_has_one_bos_and_the_marker(tokenizer, make_model, arch):
    av = ActivationVerbalizer.from_base(make_model(arch), tokenizer, 2)
    assert (
        av.prompt_ids.count(tokenizer.bos_token_id) == 1
        and av.prompt_ids[0] == tokenizer.bos_token_id
    )
    assert av.prompt_ids.count(av.meta.tokens.injection_token_id) == 1
    assert av.meta.role == "av" and av.meta.layer == 2


def test_av_save_load_round_trip(tmp_path, tokenizer, make_model):
    av = ActivationVerbalizer.from_base(make_model("llama"), tokenizer, 1)
    av.save_pretrained(tmp_path)
    back = ActivationVerbalizer.from_pretrained(tmp_path, device=DEVICE, dtype=DTYPE)
    resolved = dataclasses.replace(
        av.meta,
        injection_scale=av.meta.injection_scale_value,
        mse_scale=av.meta.mse_scale_value,
    )
    assert back.meta == resolved and back.prompt_ids == av.prompt_ids
    ids = av.prompt_batch(2)
    vectors = torch.randn(2, 64, device=DEVICE)
    with torch.no_grad():
        assert close(back(ids, vectors).logits, av(ids, vectors).logits)


def test_sidecar_d_model_must_match_the_model(tokenizer, make_model):
    meta = M.new_meta(tokenizer, 1, 128)
    with pytest.raises(MetaError, match="d_model"):
        ActivationVerbalizer(make_model("qwen3"), tokenizer, meta)


def test_pair_that_disagrees_is_refused(tokenizer, make_model):
    model = make_model("qwen3")
    av = ActivationVerbalizer.from_base(model, tokenizer, 1)
    ar = ActivationReconstructor.from_base(model, tokenizer, 2)
    with pytest.raises(MetaError, match="layer"):
        NLA(av, ar)
    wide = make_model("qwen3", hidden_size=32)
    ar_wide = ActivationReconstructor.from_base(wide, tokenizer, 1)
    with pytest.raises(MetaError, match="d_model"):
        NLA(av, ar_wide)


def test_reconstruct_keeps_input_order_when_batching_by_length(tokenizer, make_model):
    ar = ActivationReconstructor.from_base(make_model("qwen3"), tokenizer, 1)
    texts = ["a much longer explanation about a recipe " * 3, "short", "", "medium length text"]
    together = ar.reconstruct(texts, batch_size=2)
    for i, text in enumerate(texts):
        assert close(together[i], ar.reconstruct([text])[0], atol=1e-4)


def test_from_base_with_a_sidecar_for_another_layer(tokenizer, make_model):
    model = make_model("qwen3")
    meta = M.new_meta(tokenizer, layer=1, d_model=64)
    with pytest.raises(MetaError, match="layer_index"):
        ActivationReconstructor.from_base(model, tokenizer, 2, meta=meta)
    assert ActivationVerbalizer.from_base(model, tokenizer, 1, meta=meta).meta.layer == 1


# --------------------------------------------------------------------------- a smaller AR


def test_a_smaller_ar_keeps_the_layer_and_records_its_depth(tmp_path, tokenizer, make_model):
    model = make_model("qwen3")
    ar = ActivationReconstructor.from_base(model, tokenizer, 2, blocks=1)
    assert sites.num_blocks(ar.backbone) == 1 and ar.blocks == 1 and ar.layer == 2
    enc = ar.tokenize(EXPLANATIONS[:1])
    with torch.no_grad():  # it reads the output of its last block (block 0)
        alone = sites.extract_layer(model, enc["input_ids"], None, 0)[0, -1]
        assert close(ar(**enc)[0], alone, atol=1e-4)
    ar.save_pretrained(tmp_path)
    side = yaml.safe_load((tmp_path / "nla_meta.yaml").read_text())
    # the release's reader: config.json holds critic.extraction_layer_index + 1 blocks
    assert side["critic"]["extraction_layer_index"] == 0 and side["extraction_layer_index"] == 2
    assert AutoModelForCausalLM.from_pretrained(tmp_path).config.num_hidden_layers == 1
    back = NLA.from_pretrained(ar=tmp_path, device=DEVICE, dtype=DTYPE).ar
    assert back.blocks == 1 and back.layer == 2 and back.meta.layer == 2
    assert close(back.reconstruct(EXPLANATIONS), ar.reconstruct(EXPLANATIONS))
    M.check_pair(ActivationVerbalizer.from_base(model, tokenizer, 2).meta, back.meta)


def test_a_smaller_ar_has_at_least_one_and_at_most_k_plus_one_blocks(tokenizer, make_model):
    for blocks in (0, 4):
        with pytest.raises(NLAKitError, match=r"has 1 … 3 blocks"):
            ActivationReconstructor.from_base(make_model("qwen3"), tokenizer, 2, blocks=blocks)
