import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from nlakit import NLA
from nlakit.errors import NLAKitError
from nlakit.generation import SamplingConfig, sample_explanations
from nlakit.models import ActivationVerbalizer
from nlakit.store.runs import read_metrics
from nlakit.store.tables import load_table
from nlakit.train.sft import SFTConfig, sft

FAST = dict(batch_size=4, warmup=1, eval_every=0, save_every=0, eval_rows=16, progress=False)


def run(small_tables, out, role, **kw):
    config = SFTConfig(role=role, data=str(small_tables), out=str(out), **{**FAST, **kw})
    return sft(config)


@pytest.fixture(scope="module")
def pair(small_tables, tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    ar = run(small_tables, root / "ar_sft", "ar", steps=8, lr=1e-3)
    av = run(small_tables, root / "av_sft", "av", steps=8, lr=3e-3)
    return root, ar, av


def test_exports_round_trip_through_nla_from_pretrained(pair, small_tables):
    root, ar_eval, av_eval = pair
    nla = NLA.from_pretrained(av=root / "av_sft" / "av", ar=root / "ar_sft" / "ar", device="cpu")
    assert nla.layer == 1 and nla.ar.meta.ar_template == "{explanation}\n<activation>"
    vectors = torch.randn(2, 64)
    assert len(nla.explain(vectors, max_new_tokens=4)) == 2
    assert nla.reconstruct(["x", "y"]).shape == (2, 64)
    assert set(ar_eval) == {"eval_loss", "eval_cos", "eval_fve"} and "eval_loss" in av_eval


def test_exports_carry_a_model_card_with_the_runs_figures(pair):
    root, ar_eval, _ = pair
    ar_card = (root / "ar_sft" / "ar" / "README.md").read_text(encoding="utf-8")
    assert f"**FVE {ar_eval['eval_fve']:.4f}** on n = 16 held-out activations" in ar_card
    assert "baseline variance" in ar_card and "library_name: nlakit" in ar_card
    av_card = (root / "av_sft" / "av" / "README.md").read_text(encoding="utf-8")
    assert "No FVE has been measured for this AV" in av_card and "FVE 0" not in av_card
    assert "nats per response token (n = 16 held-out explanations)" in av_card


def test_metrics_are_logged_every_step(pair):
    root, _, _ = pair
    records = read_metrics(root / "av_sft")
    assert [r["step"] for r in records] == list(range(1, 9))
    assert {"loss", "lr", "grad_norm", "skipped_steps", "step_seconds"} <= set(records[0])
    assert "eval_loss" in records[-1]
    assert records[-1]["loss"] < records[0]["loss"]


def test_resume_after_a_crash_continues_exactly(small_tables, tmp_path, monkeypatch):
    from nlakit.train import checkpoint

    whole = tmp_path / "whole"
    run(small_tables, whole, "ar", steps=6, lr=1e-3)
    crashed = tmp_path / "crashed"
    save = checkpoint.save_checkpoint

    def save_then_die(run_dir, step, *args, **kwargs):
        path = save(run_dir, step, *args, **kwargs)
        if step == 3:
            raise KeyboardInterrupt  # killed right after the step-3 checkpoint
        return path

    monkeypatch.setattr(checkpoint, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(small_tables, crashed, "ar", steps=6, lr=1e-3, save_every=3)
    monkeypatch.setattr(checkpoint, "save_checkpoint", save)
    with pytest.raises(NLAKitError, match="--resume"):
        run(small_tables, crashed, "ar", steps=6, lr=1e-3, save_every=3)
    run(small_tables, crashed, "ar", steps=6, lr=1e-3, save_every=3, resume=True)
    a, b = read_metrics(whole), read_metrics(crashed)
    assert [r["step"] for r in b] == list(range(1, 7))
    for x, y in zip(a, b, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)


def test_lora_trains_only_adapters_and_exports_merged(small_tables, tmp_path):
    pytest.importorskip("peft")
    run(small_tables, tmp_path / "lora", "av", steps=3, lr=1e-2, lora_rank=4, rslora=True)
    step = next((tmp_path / "lora").glob("step_*"))
    from safetensors.torch import load_file

    saved = load_file(str(step / "av.safetensors"))
    assert saved and all("lora_" in name for name in saved)
    model, info = AutoModelForCausalLM.from_pretrained(
        tmp_path / "lora" / "av", output_loading_info=True
    )
    assert not info["missing_keys"] and not any("lora" in k for k in model.state_dict())
    run(small_tables, tmp_path / "lora_ar", "ar", steps=2, lr=1e-2, lora_rank=4)
    saved = load_file(str(next((tmp_path / "lora_ar").glob("step_*")) / "ar.safetensors"))
    assert "value_head.weight" in saved and all(
        "lora_" in n or n.startswith("value_head") for n in saved
    )


def test_bad_role_and_missing_tables(tmp_path):
    with pytest.raises(NLAKitError, match="role"):
        sft(SFTConfig(role="critic", data=str(tmp_path), out=str(tmp_path / "o")))
    with pytest.raises(NLAKitError, match="nlakit build"):
        sft(SFTConfig(role="av", data=str(tmp_path), out=str(tmp_path / "o")))


def test_cli(capsys, small_tables, tmp_path):
    from nlakit.cli import main

    code = main(
        [
            "sft",
            "ar",
            "--data",
            str(small_tables),
            "--out",
            str(tmp_path / "r"),
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--progress",
            "false",
        ]
    )
    assert code == 0 and "AR SFT done" in capsys.readouterr().out
    assert json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 2


def test_packed_av_sft_trains_as_padded(small_tables, tmp_path):
    """`--packing on` runs the same optimisation as padded batches (same losses, same
    weights, to float rounding)."""
    from safetensors.torch import load_file

    kw = dict(steps=3, lr=1e-3)
    run(small_tables, tmp_path / "padded", "av", packing="off", **kw)
    run(small_tables, tmp_path / "packed", "av", packing="on", **kw)
    padded, packed = (read_metrics(tmp_path / k) for k in ("padded", "packed"))
    assert [r["loss"] for r in packed] == pytest.approx([r["loss"] for r in padded], rel=1e-5)
    a = load_file(str(next((tmp_path / "padded" / "av").glob("*.safetensors"))))
    b = load_file(str(next((tmp_path / "packed" / "av").glob("*.safetensors"))))
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5), name


def test_packing_auto_follows_the_attention_kernel(small_tables, small_world):
    from nlakit.store.tables import load_table
    from nlakit.train import modules as M

    table = load_table(small_tables / "av_sft.parquet", ("response",))
    av = M.start("av", str(small_world / "model"), table.meta, "cpu", None, M.LoraSettings())
    assert not M.packing_on("auto", av)  # sdpa: a packed row is one long masked sequence
    assert M.packing_on("on", av) and not M.packing_on("off", av)
    av.model.config._attn_implementation = "flash_attention_2"
    assert M.packing_on("auto", av)
    eager = M.start(
        "av", str(small_world / "model"), table.meta, "cpu", None, M.LoraSettings(), "eager"
    )
    assert eager.model.config._attn_implementation == "eager"


def test_qlora_trains_adapters_over_a_4bit_base_and_exports_full_precision(
    small_tables, small_world, tmp_path
):
    """`--load-in-4bit`: the base's linear layers are NF4 (bitsandbytes) under the
    adapters; the export is the full-precision base with the trained adapters merged."""
    pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (nlakit[qlora])")
    from bitsandbytes.nn import Linear4bit
    from safetensors.torch import load_file

    from nlakit.store.tables import load_table
    from nlakit.train import modules as M

    table = load_table(small_tables / "av_sft.parquet", ("response",))
    lora = M.LoraSettings(rank=4)
    quantized = M.start("av", str(small_world / "model"), table.meta, "cpu", None, lora, None, True)
    linears = [m for m in quantized.model.modules() if isinstance(m, Linear4bit)]
    assert linears and all(not p.requires_grad for m in linears for p in m.parameters())
    run(small_tables, tmp_path / "q", "av", steps=3, lr=1e-2, lora_rank=4, load_in_4bit=True)
    records = read_metrics(tmp_path / "q")
    assert len(records) == 3 and all(r["skipped_steps"] == 0 for r in records)
    exported = load_file(str(next((tmp_path / "q" / "av").glob("*.safetensors"))))
    base = load_file(str(next((small_world / "model").glob("*.safetensors"))))
    assert all(t.dtype == torch.float32 for t in exported.values())
    name = "model.layers.0.self_attn.q_proj.weight"
    assert exported[name].shape == base[name].shape
    # exactly the full-precision base plus the trained adapters (B A · α/r), not a
    # dequantized 4-bit base
    adapters = load_file(str(tmp_path / "q" / "step_000003" / "av.safetensors"))
    prefix = "model.base_model.model." + name.removesuffix(".weight")
    a, b = adapters[f"{prefix}.lora_A.default.weight"], adapters[f"{prefix}.lora_B.default.weight"]
    delta = b @ a * (16.0 / 4)
    assert delta.abs().max() > 0
    assert torch.allclose(exported[name], base[name] + delta, atol=1e-6)
    av = NLA.from_pretrained(av=tmp_path / "q" / "av", device="cpu").av
    assert not any(isinstance(m, Linear4bit) for m in av.model.modules())


def test_an_av_trained_with_the_separator_writes_and_keeps_it(small_tables, tmp_path):
    from nlakit.data.tables import separator_tables
    from nlakit.separators import SEPARATOR, separator_of

    tables = separator_tables(small_tables, tmp_path / "tables")
    responses = load_table(tables / "av_sft.parquet", ("response",)).columns["response"]
    assert all(SEPARATOR in r for r in responses)
    fast = dict(batch_size=8, warmup=2, eval_every=0, save_every=0, progress=False)
    with pytest.raises(NLAKitError, match="separator"):  # the plain tables have none
        sft(SFTConfig(role="av", data=str(small_tables), out=str(tmp_path / "x"), steps=1,
                      separator=True, **fast))  # fmt: skip
    assert not (tmp_path / "x").exists()
    sft(SFTConfig(role="av", data=str(tables), out=str(tmp_path / "av_sft"), steps=40, lr=6e-3,
                  separator=True, **fast))  # fmt: skip
    av = ActivationVerbalizer.from_pretrained(tmp_path / "av_sft" / "av")
    assert separator_of(av.meta) == SEPARATOR
    sep = av.tokenizer.convert_tokens_to_ids(SEPARATOR)
    vectors = load_table(tables / "eval.parquet").vectors[:8]
    samples = sample_explanations(
        av, vectors, SamplingConfig(max_new_tokens=48), torch.Generator().manual_seed(0)
    )
    assert sum(sep in s.token_ids for s in samples) >= 4  # it learned to place them


def test_ar_prefix_augmentation_trains_on_cut_explanations(small_tables, tmp_path, monkeypatch):
    from nlakit.models import ActivationReconstructor

    seen = []
    tokenize = ActivationReconstructor.tokenize
    monkeypatch.setattr(
        ActivationReconstructor,
        "tokenize",
        lambda self, texts, contexts=None: seen.extend(texts) or tokenize(self, texts, contexts),
    )
    fast = dict(batch_size=16, warmup=0, eval_every=0, save_every=0, progress=False)
    sft(SFTConfig(role="ar", data=str(small_tables), out=str(tmp_path / "ar"), steps=3,
                  prefix_augment=0.5, **fast))  # fmt: skip
    full = set(load_table(small_tables / "ar_sft.parquet", ("explanation",)).columns["explanation"])
    cut = [t for t in seen[:48] if t not in full]
    assert 10 <= len(cut) <= 38 and all(any(f.startswith(t) for f in full) for t in cut)
    with pytest.raises(NLAKitError, match="AR settings"):
        sft(SFTConfig(role="av", data=str(small_tables), out=str(tmp_path / "av"), steps=1,
                      prefix_augment=0.5, **fast))  # fmt: skip


def test_a_regularised_ar_trains_with_token_dropout_and_input_noise(small_tables, tmp_path):
    fast = dict(batch_size=16, warmup=0, eval_every=0, save_every=0, progress=False)
    plain = sft(
        SFTConfig(role="ar", data=str(small_tables), out=str(tmp_path / "a"), steps=4, **fast)
    )
    regular = sft(SFTConfig(role="ar", data=str(small_tables), out=str(tmp_path / "b"), steps=4,
                            token_dropout=0.2, input_noise=0.1, **fast))  # fmt: skip
    assert plain["eval_loss"] != regular["eval_loss"]  # the same rows, other inputs
    logged = json.loads((tmp_path / "b" / "config.json").read_text())
    assert logged["token_dropout"] == 0.2 and logged["input_noise"] == 0.1
    with pytest.raises(NLAKitError, match="--token-dropout, --input-noise: AR settings"):
        sft(SFTConfig(role="av", data=str(small_tables), out=str(tmp_path / "c"), steps=1,
                      token_dropout=0.2, input_noise=0.1, **fast))  # fmt: skip
    assert not (tmp_path / "c").exists()


def test_a_smaller_ar_and_a_context_ar_train_from_the_target_model(small_tables, tmp_path):
    from nlakit.ar_context import ContextSpec, context_spec
    from nlakit.models import ActivationReconstructor

    run(small_tables, tmp_path / "small", "ar", steps=2, ar_blocks=1)
    small = ActivationReconstructor.from_pretrained(tmp_path / "small" / "ar", device="cpu")
    assert small.blocks == 1 and small.layer == 1  # the tables read block 1
    out = run(small_tables, tmp_path / "ctx", "ar", steps=2, context=16)
    assert "eval_fve" in out  # evaluated with the held-out rows' contexts
    ctx = ActivationReconstructor.from_pretrained(tmp_path / "ctx" / "ar", device="cpu")
    assert context_spec(ctx.meta) == ContextSpec(16)
    run(small_tables, tmp_path / "text", "ar", steps=2, context=16, text_only=True)
    text = ActivationReconstructor.from_pretrained(tmp_path / "text" / "ar", device="cpu")
    assert context_spec(text.meta).text_only
    with pytest.raises(NLAKitError, match="reads 16 tokens of context"):  # another context
        run(small_tables, tmp_path / "more", "ar", steps=1, model=str(tmp_path / "ctx" / "ar"),
            context=8)  # fmt: skip
    assert not (tmp_path / "more" / "ar").exists()
    run(small_tables, tmp_path / "on", "ar", steps=1, model=str(tmp_path / "ctx" / "ar"))
    # a plain AR checkpoint made smaller and given a context slot, then trained on
    run(small_tables, tmp_path / "plain", "ar", steps=1)
    plain = str(tmp_path / "plain" / "ar")
    run(small_tables, tmp_path / "cut", "ar", steps=1, model=plain, ar_blocks=1, context=16)
    cut = ActivationReconstructor.from_pretrained(tmp_path / "cut" / "ar", device="cpu")
    assert cut.blocks == 1 and cut.layer == 1 and context_spec(cut.meta) == ContextSpec(16)


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            dict(role="ar", ar_blocks=3),
            r"--ar-blocks 3: the tables read block 1, so an AR has 1 … 2",
        ),
        (dict(role="ar", text_only=True), "give --context N too"),
        (dict(role="ar", context=8, reconstructor="linear"), "shape a transformer AR"),
        (dict(role="av", context=8), "--context: AR settings"),
    ],
)
def test_ar_shapes_are_refused_before_anything_is_written(
    small_tables, tmp_path, settings, message
):
    with pytest.raises(NLAKitError, match=message):
        run(small_tables, tmp_path / "x", steps=1, **settings)
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_av_sft_evaluates_on_cuda(small_tables, tmp_path):
    """The held-out AV loss moves the response mask to the model's device (it raised a
    device mismatch at the end of every AV SFT on CUDA)."""
    result = run(small_tables, tmp_path / "av", "av", steps=2, lr=1e-3, device="cuda")
    assert 0 < result["eval_loss"] < float("inf")
