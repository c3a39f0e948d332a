"""`nlakit.eval.analyses`: the one list of analyses that the CLI, the report and the
analysis modules read."""

from __future__ import annotations

import dataclasses
import importlib

from nlakit.eval import report
from nlakit.eval.analyses import ANALYSES, REGISTRY, SECTIONS, SWEEPS, directory_of, load


def test_every_entry_points_at_a_real_module_config_and_function():
    for name, spec in REGISTRY.items():
        module = importlib.import_module(spec.module)
        assert callable(getattr(module, spec.entry)), name
        if spec.config is not None:
            config_cls, entry = load(spec)
            assert dataclasses.is_dataclass(config_cls) and callable(entry), name
            assert "run" in {f.name for f in dataclasses.fields(config_cls)}, name
        # the module writes where the registry says (its NAME comes from the registry)
        assert getattr(module, "NAME", spec.out_dir) == spec.out_dir == directory_of(spec.module)


def test_the_cli_views_keep_their_shape():
    assert list(ANALYSES) == [
        "tokens", "format", "ablation", "stego", "text-baseline", "prefix", "classify",
        "search", "steering", "suffix", "sources", "rubric", "diff", "audit", "truth",
    ]  # fmt: skip
    assert list(SWEEPS) == ["length", "ordering", "variants"]
    assert ANALYSES["tokens"][:4] == (
        "nlakit.eval.token_types", "TokenTypesConfig", "token_types", "token_types"
    )  # fmt: skip


def test_the_report_reads_its_sections_from_the_registry(tmp_path):
    assert next(iter(SECTIONS)) == "token_types" and "cross" in SECTIONS
    for name in ("zz_custom", "truth", "format"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text("{}")
    assert report.analysis_names(tmp_path) == ["format", "truth", "zz_custom"]
