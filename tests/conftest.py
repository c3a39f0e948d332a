"""Shared fixtures: a tiny trained tokenizer and tiny random models of real architectures.

Set NLAKIT_TEST_DEVICE=cuda to run the suite on a GPU in bf16.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from transformers.utils import logging as hf_logging

from nlakit.tiny import build_tokenizer, sample_corpus, tiny_model

hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()

DEVICE = torch.device(os.environ.get("NLAKIT_TEST_DEVICE", "cpu"))
DTYPE = torch.bfloat16 if DEVICE.type == "cuda" else torch.float32
ARCHS = ("qwen3", "llama", "gemma3")


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-5) -> bool:
    """`allclose` with tolerances widened for bf16 runs."""
    if torch.bfloat16 == DTYPE:
        rtol, atol = max(rtol, 2e-2), max(atol, 2e-2)
    return torch.allclose(a.float().cpu(), b.float().cpu(), rtol=rtol, atol=atol)


@pytest.fixture(scope="session")
def device() -> torch.device:
    return DEVICE


@pytest.fixture(scope="session")
def dtype() -> torch.dtype:
    return DTYPE


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer(sample_corpus())


@pytest.fixture(scope="session")
def make_model(tokenizer):
    """`make_model(arch, **config)`: a tiny random causal LM on the test device."""

    def make(arch: str = "qwen3", seed: int = 0, **kwargs):
        return tiny_model(arch, tokenizer, seed=seed, **kwargs).to(DEVICE, DTYPE)

    return make


@pytest.fixture(params=ARCHS)
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """A written tiny target model and AV/AR pair (qwen3, layer 2), shared read-only."""
    from nlakit.tiny import write_tiny

    return write_tiny(tmp_path_factory.mktemp("tiny"), arch="qwen3", layer=2)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """A `--size small` toy world, built once per test session (about 10 s)."""
    from nlakit.toyworld.build import build_world, world_config

    out = tmp_path_factory.mktemp("worlds") / "small"
    build_world(out, world_config("small", seed=0), progress=False)
    return out


@pytest.fixture(scope="session")
def small_tables(small_world, tmp_path_factory):
    """Training tables from the small world (demo templates, two-feature oracle)."""
    from nlakit.data.extract import ExtractConfig, extract
    from nlakit.data.tables import BuildConfig, build_tables
    from nlakit.data.teach import TeachConfig, teach
    from nlakit.demo import DEMO_AR_TEMPLATE, DEMO_AV_TEMPLATE

    root = tmp_path_factory.mktemp("tables")
    extract(
        ExtractConfig(
            model=str(small_world / "model"),
            layer=1,
            corpus=f"toyworld:{small_world}",
            out=str(root / "data"),
            positions_per_doc=4,
            max_docs=160,
        ),
        progress=False,
    )
    teach(
        TeachConfig(data=str(root / "data"), teacher="toyworld", oracle_context=0.0), progress=False
    )
    build_tables(
        BuildConfig(
            data=str(root / "data"),
            out=str(root / "tables"),
            av_template=DEMO_AV_TEMPLATE,
            ar_template=DEMO_AR_TEMPLATE,
        )
    )
    return root / "tables"


@pytest.fixture(scope="session")
def trained_pair(small_tables, tmp_path_factory):
    """A briefly SFT-trained AV and AR on the small tables: (av_dir, ar_dir)."""
    from nlakit.train.sft import SFTConfig, sft

    root = tmp_path_factory.mktemp("pair")
    fast = dict(
        data=str(small_tables), batch_size=8, warmup=2, eval_every=0, save_every=0, progress=False
    )
    sft(SFTConfig(role="ar", out=str(root / "ar_sft"), steps=20, lr=1e-3, **fast))
    sft(SFTConfig(role="av", out=str(root / "av_sft"), steps=30, lr=6e-3, **fast))
    return root / "av_sft" / "av", root / "ar_sft" / "ar"


# Runs to analyse (tests/eval). `eval_run`: a small demo run (small toy world, briefly
# trained pair) evaluated on 48 rows — seconds to build; its AV is weak, so facts about
# the AV's quality are tested on `demo_eval_run` (slow tests), and fast tests use the
# teacher's explanations or mechanics. `demo_eval_run`: the full `nlakit demo` run,
# evaluated (slow: about 8 minutes, or quick when `NLAKIT_DEMO_RUN` names a finished
# demo run directory to copy).


@pytest.fixture(scope="session")
def eval_run(tmp_path_factory) -> Path:
    from nlakit.demo import DemoConfig, run_demo
    from nlakit.eval.evaluate import EvalConfig, evaluate

    run = tmp_path_factory.mktemp("evalrun") / "run"
    run_demo(DemoConfig(out=str(run), size="small", ar_steps=200, docs=300, n_eval=16))
    evaluate(EvalConfig(run=str(run), n=48, control_samples=16, bootstrap=200, device="cpu"))
    return run


@pytest.fixture(scope="session")
def demo_eval_run(tmp_path_factory) -> Path:
    from nlakit.demo import DemoConfig, run_demo
    from nlakit.eval.evaluate import EvalConfig, evaluate

    run = tmp_path_factory.mktemp("demorun") / "demo"
    source = os.environ.get("NLAKIT_DEMO_RUN")
    if source:
        shutil.copytree(source, run, ignore=shutil.ignore_patterns("eval", "step_*"))
    else:
        run_demo(DemoConfig(out=str(run)))
    evaluate(EvalConfig(run=str(run), device="cpu"))
    return run


class Words:
    """A word-level tokenizer (one token per word), so prefixes can be counted by hand."""

    def __init__(self):
        self.vocab: list[str] = []

    def __call__(self, text, add_special_tokens=False):
        ids = []
        for word in text.split():
            if word not in self.vocab:
                self.vocab.append(word)
            ids.append(self.vocab.index(word))
        return {"input_ids": ids}

    def decode(self, ids):
        return " ".join(self.vocab[i] for i in ids)


# --------------------------------------------------------------------------- a real browser

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or next((p for p in CHROMIUM_PATHS if Path(p).is_file()), None)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium driven by Playwright (`make browser` installs chromium;
    Playwright's own browser download is not used). Skips, saying why, without them.

    Module-scoped: Playwright's sync API keeps an asyncio loop running while it is
    open, which would break later tests that call `asyncio.run` (the LLM teachers)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(
            "the playwright package is missing: pip install 'nlakit[browser]' (`make test` "
            "installs it with the dev extra; `make browser` installs chromium)"
        )
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "no chromium executable on PATH or in /usr/bin: run `make browser` "
            "(apt-get install chromium, as root)"
        )
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()
