import copy
import itertools
import re

import pytest
import torch
import yaml
from safetensors.torch import save_file

from nlakit import NLA
from nlakit.config import ConfigError
from nlakit.errors import CheckpointError, InjectionError, MetaError, NLAKitError
from nlakit.generation import marker_embeds
from nlakit.injection import marker_mask, marker_run_positions
from nlakit.injection_layout import (
    GENERATOR,
    META_KEY,
    SINGLE,
    InjectionLayout,
    check_checkpoint_layout,
    layout_of,
    parse_layout,
    random_orthogonal,
    split_parts,
    subspace_blocks,
    with_layout,
)
from nlakit.meta import dump_meta, new_meta, read_meta
from nlakit.models import ActivationVerbalizer
from nlakit.store.names import INJECTION_BASIS_FILE, SIDECAR_NAME
from nlakit.tiny import tiny_model
from nlakit.train.sft import SFTConfig, sft

# --------------------------------------------------------------------------- the math


def test_random_orthogonal_is_orthogonal_fixed_by_its_seed_and_differs_across_seeds():
    q = random_orthogonal(48, seed=3)
    assert q.dtype == torch.float64 and q.shape == (48, 48)
    assert torch.allclose(q.T @ q, torch.eye(48, dtype=torch.float64), atol=1e-12)
    assert torch.equal(random_orthogonal(48, seed=3), q)
    assert (random_orthogonal(48, seed=4) - q).abs().max() > 0.1


@pytest.mark.parametrize(("d", "k"), [(64, 1), (64, 4), (10, 3), (7, 7)])
def test_subspace_blocks_cover_the_width_in_near_equal_consecutive_blocks(d, k):
    blocks = subspace_blocks(d, k)
    assert len(blocks) == k and blocks[0][0] == 0 and blocks[-1][1] == d
    assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
    sizes = [b - a for a, b in blocks]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_subspace_blocks_put_the_larger_blocks_first():
    assert subspace_blocks(10, 3) == [(0, 4), (4, 7), (7, 10)]


def test_subspace_blocks_refuse_more_blocks_than_dimensions():
    with pytest.raises(InjectionError, match="into 9 subspaces"):
        subspace_blocks(8, 9)


@pytest.mark.parametrize("k", [1, 2, 3, 8])
def test_split_parts_sum_back_to_the_vector_exactly(k):
    q = random_orthogonal(64, seed=0)
    v = torch.randn(5, 64, dtype=torch.float64) * 30
    parts = split_parts(v, q, k)
    assert parts.shape == (5, k, 64)
    assert torch.allclose(parts.sum(dim=1), v, atol=1e-10)
    # in fp32 (as injected) to fp32 rounding
    assert torch.allclose(split_parts(v.float(), q.float(), k).sum(1), v.float(), atol=1e-4)


def test_each_split_part_is_the_projection_onto_its_own_block():
    q = random_orthogonal(12, seed=5)
    v = torch.randn(2, 12, dtype=torch.float64)
    parts = split_parts(v, q, 3)
    for j, (a, b) in enumerate(subspace_blocks(12, 3)):
        block = q[:, a:b]
        assert torch.allclose(parts[:, j], v @ block @ block.T, atol=1e-12)
        others = torch.cat([q[:, :a], q[:, b:]], dim=1)
        assert torch.allclose(
            parts[:, j] @ others, torch.zeros(2, 12 - (b - a), dtype=torch.float64), atol=1e-12
        )
    # energy is conserved: the squared norms of the parts add up to the vector's
    assert torch.allclose(parts.norm(dim=-1).pow(2).sum(1), v.norm(dim=-1).pow(2))


def test_expand_prompt_repeats_the_one_marker():
    assert InjectionLayout(3).expand_prompt([1, 2, 9, 4], 9) == [1, 2, 9, 9, 9, 4]
    assert SINGLE.expand_prompt([1, 9, 4], 9) == [1, 9, 4]
    with pytest.raises(InjectionError, match="2 times"):
        InjectionLayout(3).expand_prompt([9, 9], 9)


def test_bad_layouts_are_refused():
    with pytest.raises(InjectionError, match="≥ 1"):
        InjectionLayout(0)
    with pytest.raises(InjectionError, match="one of"):
        InjectionLayout(2, "shuffle")
    with pytest.raises(InjectionError, match="d_model ≥ 8"):
        InjectionLayout(8, "split").with_basis(4)


# --------------------------------------------------------------------------- the sidecar


@pytest.fixture(scope="module")
def meta(tokenizer):
    return new_meta(tokenizer, layer=2, d_model=64)


def test_one_marker_writes_the_released_sidecar_byte_for_byte(meta):
    meta = copy.deepcopy(meta)
    plain = dump_meta(meta)
    assert f"\n{META_KEY}:" not in plain
    for layout in (SINGLE, InjectionLayout(1, "split", seed=7)):
        assert dump_meta(with_layout(meta, layout)) == plain
    # a multi-token record, then back to one marker: the record is gone again
    assert f"\n{META_KEY}:\n  tokens: 2\n" in dump_meta(with_layout(meta, InjectionLayout(2)))
    assert dump_meta(with_layout(meta, SINGLE)) == plain


def test_records_of_repeat_and_split(meta):
    assert InjectionLayout(4).record() == {"tokens": 4, "mode": "repeat"}
    assert InjectionLayout(4, "split", seed=2).record() == {
        "tokens": 4,
        "mode": "split",
        "seed": 2,
        "generator": GENERATOR,
        "basis": INJECTION_BASIS_FILE,
    }
    assert SINGLE.record() is None


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"tokens": 0, "mode": "repeat"}, "injection.tokens"),
        ({"tokens": "4", "mode": "repeat"}, "injection.tokens"),
        ({"tokens": 4, "mode": "scatter"}, "injection.mode"),
        ({"tokens": 4, "mode": "split", "seed": 0, "generator": "other"}, "injection.generator"),
        ({"tokens": 4, "mode": "split"}, "injection.seed"),
        ([4], "injection"),
    ],
)
def test_malformed_records_name_the_field(meta, record, field):
    bad = copy.deepcopy(meta)
    bad.extra[META_KEY] = record
    bad.source = "av/nla_meta.yaml"
    with pytest.raises(MetaError, match=re.escape(f"av/nla_meta.yaml: field `{field}`")):
        parse_layout(bad)


def test_a_basis_file_name_outside_the_directory_is_refused(meta, tmp_path):
    bad = copy.deepcopy(meta)
    bad.extra[META_KEY] = {**InjectionLayout(2, "split").record(), "basis": "../x.safetensors"}
    bad.source = str(tmp_path / SIDECAR_NAME)
    with pytest.raises(MetaError, match=r"injection\.basis"):
        layout_of(bad)


def test_a_checkpoint_keeps_its_layout(meta):
    has = InjectionLayout(4, "split", seed=1)
    check_checkpoint_layout("av", has, SINGLE)  # no flags: the checkpoint's
    check_checkpoint_layout("av", has, InjectionLayout(4, "split", seed=9))  # seed: the AV's
    with pytest.raises(InjectionError, match="trained with 4 markers, split"):
        check_checkpoint_layout("av", has, InjectionLayout(2, "split"))
    with pytest.raises(InjectionError, match="--injection-mode repeat"):
        check_checkpoint_layout("av", has, InjectionLayout(4, "repeat"))


# --------------------------------------------------------------------------- the AV


def make_av(tokenizer, meta, layout: InjectionLayout) -> ActivationVerbalizer:
    return ActivationVerbalizer.from_base(
        tiny_model("qwen3", tokenizer), tokenizer, 2, with_layout(copy.deepcopy(meta), layout)
    )


@pytest.mark.parametrize("layout", [InjectionLayout(4, "split", seed=3), InjectionLayout(3)])
def test_a_multi_token_av_round_trips_through_both_loaders(tokenizer, meta, layout, tmp_path):
    av = make_av(tokenizer, meta, layout)
    marker = meta.tokens.injection_token_id
    assert av.prompt_ids.count(marker) == layout.tokens
    av.save_pretrained(tmp_path / "av")
    written = yaml.safe_load((tmp_path / "av" / SIDECAR_NAME).read_text(encoding="utf-8"))
    assert written[META_KEY] == layout.record()
    assert (tmp_path / "av" / INJECTION_BASIS_FILE).is_file() == layout.split
    vectors = torch.randn(3, 64)
    with torch.no_grad():
        want = av(av.prompt_batch(3), vectors).logits
    for loaded in (
        ActivationVerbalizer.from_pretrained(tmp_path / "av", device="cpu"),
        NLA.from_pretrained(av=tmp_path / "av", device="cpu").av,
    ):
        assert loaded.layout == layout and loaded.prompt_ids == av.prompt_ids
        if layout.split:
            assert torch.equal(loaded.layout.basis, av.layout.basis)
        with torch.no_grad():
            assert torch.allclose(loaded(loaded.prompt_batch(3), vectors).logits, want, atol=1e-5)
    nla = NLA.from_pretrained(av=tmp_path / "av", device="cpu")
    assert len(nla.explain(vectors, max_new_tokens=3, seed=0)) == 3


def test_a_missing_basis_file_is_rebuilt_from_the_seed_with_a_warning(tokenizer, meta, tmp_path):
    av = make_av(tokenizer, meta, InjectionLayout(4, "split", seed=3))
    av.save_pretrained(tmp_path / "av")
    (tmp_path / "av" / INJECTION_BASIS_FILE).unlink()
    with pytest.warns(UserWarning, match="rebuilt from the sidecar's seed 3"):
        loaded = ActivationVerbalizer.from_pretrained(tmp_path / "av", device="cpu")
    assert torch.allclose(loaded.layout.basis, av.layout.basis, atol=1e-6)


@pytest.mark.parametrize(
    ("basis", "match"),
    [(torch.eye(32), r"shape \[64, 64\]"), (torch.eye(64) * 2, "not orthogonal")],
)
def test_a_wrong_basis_file_is_refused(tokenizer, meta, tmp_path, basis, match):
    av = make_av(tokenizer, meta, InjectionLayout(2, "split"))
    av.save_pretrained(tmp_path / "av")
    save_file({"basis": basis}, str(tmp_path / "av" / INJECTION_BASIS_FILE))
    with pytest.raises(CheckpointError, match=match):
        ActivationVerbalizer.from_pretrained(tmp_path / "av", device="cpu")


def test_an_av_given_another_layout_than_its_sidecar_records_is_refused(tokenizer, meta):
    av = make_av(tokenizer, meta, InjectionLayout(2))
    with pytest.raises(MetaError, match="records the injection layout"):
        ActivationVerbalizer(av.model, tokenizer, av.meta, InjectionLayout(3))
    same = ActivationVerbalizer(av.model, tokenizer, av.meta, av.layout)
    assert same.prompt_ids == av.prompt_ids


def test_a_released_single_marker_av_reads_as_one_marker(tiny_dirs):
    av = ActivationVerbalizer.from_pretrained(tiny_dirs["av"], device="cpu")
    assert av.layout == SINGLE and META_KEY not in read_meta(tiny_dirs["av"]).extra


def test_the_controls_blank_every_marker_of_the_run(tokenizer, meta):
    av = make_av(tokenizer, meta, InjectionLayout(3, "split"))
    ids = av.prompt_batch(2)
    zero = marker_embeds(av, ids, torch.randn(2, 64), "zero")
    at = marker_run_positions(ids, meta.tokens, 3)
    assert bool((zero[torch.arange(2)[:, None], at] == 0).all())
    own = marker_embeds(av, ids, torch.randn(2, 64), "own")
    keep = ~marker_mask(ids, meta.tokens, 3)
    assert torch.equal(zero[keep], own[keep])


# --------------------------------------------------------------------------- training


FAST = dict(batch_size=4, warmup=1, eval_every=0, save_every=0, eval_rows=8, progress=False)


@pytest.mark.parametrize(
    ("settings", "error", "match"),
    [
        (dict(role="ar", injection_tokens=2), NLAKitError, "drop them for `nlakit sft ar`"),
        (dict(role="ar", injection_mode="split"), NLAKitError, "--injection-tokens/--injection"),
        (dict(role="av", injection_tokens=0), ConfigError, "injection_tokens"),
        (dict(role="av", injection_tokens=2, injection_mode="shuffle"), ConfigError, "repeat"),
    ],
)
def test_bad_injection_flags_are_refused_before_anything_is_written(
    small_tables, tmp_path, settings, error, match
):
    with pytest.raises(error, match=match):
        sft(SFTConfig(data=str(small_tables), out=str(tmp_path / "x"), steps=1,
                      **{**FAST, **settings}))  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_cli_options(small_tables, tmp_path):
    from nlakit.cli import main

    code = main(["sft", "ar", "--data", str(small_tables), "--out", str(tmp_path / "x"),
                 "--injection-tokens", "2"])  # fmt: skip
    assert code != 0 and not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def split_av(small_tables, tmp_path_factory):
    """A briefly SFT-trained AV reading its activation split over 3 markers."""
    out = tmp_path_factory.mktemp("split") / "av_sft"
    sft(SFTConfig(role="av", data=str(small_tables), out=str(out), steps=3, lr=3e-3, seed=5,
                  injection_tokens=3, injection_mode="split", **FAST))  # fmt: skip
    return out / "av"


def test_sft_writes_the_layout_and_the_basis_and_training_continues_with_them(
    split_av, small_tables, tmp_path
):
    meta = read_meta(split_av)
    assert meta.extra[META_KEY] == InjectionLayout(3, "split", seed=5).record()
    av = ActivationVerbalizer.from_pretrained(split_av, device="cpu")
    assert torch.allclose(av.layout.basis, random_orthogonal(av.meta.d_model, 5).float())
    assert "3 markers, split" in (split_av / "README.md").read_text(encoding="utf-8")
    # SFT continued from the checkpoint keeps its layout without flags, refuses another
    sft(SFTConfig(role="av", data=str(small_tables), out=str(tmp_path / "more"), steps=1,
                  model=str(split_av), **FAST))  # fmt: skip
    assert read_meta(tmp_path / "more" / "av").extra[META_KEY] == meta.extra[META_KEY]
    with pytest.raises(InjectionError, match="trained with 3 markers"):
        sft(SFTConfig(role="av", data=str(small_tables), out=str(tmp_path / "other"), steps=1,
                      model=str(split_av), injection_tokens=2, **FAST))  # fmt: skip


def test_rl_reads_the_layout_from_the_av_sidecar(split_av, small_tables, trained_pair, tmp_path):
    from nlakit.train.rl import RLConfig, rl

    _, ar = trained_pair
    rl(RLConfig(data=str(small_tables), av=str(split_av), ar=str(ar), out=str(tmp_path / "rl"),
                steps=1, batch_size=2, group_size=2, max_new_tokens=8, warmup=1, eval_every=0,
                save_every=0, eval_rows=4, progress=False))  # fmt: skip
    exported = tmp_path / "rl" / "av"
    assert read_meta(exported).extra[META_KEY] == read_meta(split_av).extra[META_KEY]
    # Same tensors and metadata (safetensors writes metadata keys in no fixed order).
    from safetensors import safe_open

    def content(path):
        with safe_open(str(path / INJECTION_BASIS_FILE), "pt") as f:
            return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118

    (meta_a, tensors_a), (meta_b, tensors_b) = content(exported), content(split_av)
    assert meta_a == meta_b and tensors_a.keys() == tensors_b.keys()
    assert all(torch.equal(tensors_a[k], tensors_b[k]) for k in tensors_a)


# --------------------------------------------------------------------------- the headline


@pytest.mark.slow
def test_repeating_the_activation_over_eight_markers_reads_it_better(demo_eval_run, tmp_path):
    """The toy world's headline (docs/variants.md, "Multi-token injection"): an AV trained
    at the demo's AV settings with the activation repeated at 8 markers explains held-out
    activations that the demo's SFT AR reconstructs better than from the demo's own
    single-marker AV (same tables, steps, rate and seed). Measured gains in FVE, paired
    over n = 512 rows: +0.157 [+0.107, +0.206] trained on a CPU as here; +0.161 [+0.110,
    +0.208] and +0.127 [+0.078, +0.174] with seeds 0 and 1 trained on a GPU (each against
    the one-marker AV of its seed). A broken layout (markers not filled, a split basis
    not reproduced) reads the vector worse than one marker and fails this."""
    from nlakit.demo import DemoConfig
    from nlakit.eval.stats import fve_drop
    from nlakit.generation import SamplingConfig, sample_explanations
    from nlakit.metrics import FVEBaseline, mse_nrm
    from nlakit.models import ActivationReconstructor
    from nlakit.store.tables import load_table

    run, demo = demo_eval_run, DemoConfig()
    sft(SFTConfig(role="av", data=str(run / "tables"), out=str(tmp_path / "repeat8"),
                  model=str(run / "world" / "model"), steps=demo.av_steps, batch_size=demo.av_batch, lr=demo.av_lr, warmup=20,
                  eval_every=0, save_every=0, seed=demo.seed, progress=False, device="cpu",
                  injection_tokens=8, injection_mode="repeat"))  # fmt: skip
    vectors = load_table(run / "tables" / "eval.parquet").vectors[:512]
    baseline = FVEBaseline.load(run / "tables" / "baseline.json")
    ar = ActivationReconstructor.from_pretrained(run / "ar_sft" / "ar", device="cpu").eval()
    sampling = SamplingConfig(max_new_tokens=demo.max_new_tokens)
    errors = {}
    for name, path in (("one", run / "av_sft" / "av"), ("eight", tmp_path / "repeat8" / "av")):
        av = ActivationVerbalizer.from_pretrained(path, device="cpu").eval()
        samples = sample_explanations(av, vectors, sampling, torch.Generator().manual_seed(0))
        texts = [s.explanation or "" for s in samples]
        errors[name] = mse_nrm(ar.reconstruct(texts), vectors, ar.meta.mse_scale_value)
    assert av.layout == InjectionLayout(8)
    assert av.prompt_ids.count(av.meta.tokens.injection_token_id) == 8
    gain = fve_drop(errors["eight"], errors["one"], baseline)  # FVE(eight) - FVE(one), paired
    assert gain["fve_drop"] > 0.05, gain
