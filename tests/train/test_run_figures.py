import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from nlakit.card import CARD_NAME, CardFigures
from nlakit.models import ActivationReconstructor, ActivationVerbalizer
from nlakit.train.modules import export_ar, export_av
from nlakit.train.run_figures import figures_from_records, run_figures, stage_of

BASELINE = {"variance": 0.7335, "n": 5000, "d_model": 2, "scale": None, "mu": [0.0, 0.0]}
RL_RECORDS = [
    {"step": 1, "fve": 0.1, "reward": -1.0},
    {"step": 50, "eval_fve": 0.2, "eval_n": 128, "eval_cos": 0.5},
    {"step": 100, "eval_fve": 0.31, "eval_n": 128, "eval_cos": 0.6},
]


def test_stage_from_the_config_snapshot():
    assert stage_of({"role": "ar", "data": "t"}) == "sft"
    assert stage_of({"av": "a", "ar": "b", "data": "t"}) == "rl"
    assert stage_of({"run": "x"}) is None


def test_rl_figures_are_the_last_held_out_round_trip():
    f = figures_from_records(RL_RECORDS, "rl", "av", BASELINE)
    assert (f.fve, f.n, f.cos) == (0.31, 128, 0.6)
    assert (f.baseline_variance, f.baseline_n) == (0.7335, 5000)
    assert "step 100" in f.measured and f.eval_loss is None


def test_ar_sft_figures_take_n_from_the_caller():
    records = [{"step": 8, "eval_loss": 0.9, "eval_cos": 0.55, "eval_fve": 0.12}]
    f = figures_from_records(records, "sft", "ar", BASELINE, eval_n=16)
    assert (f.fve, f.n, f.baseline_n, f.eval_loss) == (0.12, 16, 5000, None)


def test_av_sft_has_a_loss_and_no_fve():
    f = figures_from_records([{"step": 8, "eval_loss": 2.5}], "sft", "av", BASELINE, eval_n=16)
    assert (f.fve, f.baseline_variance, f.eval_loss, f.n) == (None, None, 2.5, 16)


@pytest.mark.parametrize(
    ("records", "stage"),
    [([], "rl"), ([{"step": 1, "loss": 1.0}], "sft"), (RL_RECORDS, None)],
)
def test_nothing_measured_gives_no_figures(records, stage):
    assert figures_from_records(records, stage, "ar", BASELINE) is None


def test_an_fve_without_its_baseline_carries_no_invented_variance():
    f = figures_from_records(RL_RECORDS, "rl", "ar", None)
    assert f.fve == 0.31 and f.baseline_variance is None and f.baseline_n is None


def write_run(root, config, records, eval_rows=40):
    tables = root / "tables"
    tables.mkdir(parents=True)
    (tables / "baseline.json").write_text(json.dumps(BASELINE))
    pq.write_table(pa.table({"x": list(range(eval_rows))}), tables / "eval.parquet")
    run = root / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({**config, "data": str(tables)}))
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_run_figures_reads_the_run_directory(tmp_path):
    records = [{"step": 8, "eval_loss": 0.9, "eval_cos": 0.5, "eval_fve": 0.2}]
    run = write_run(tmp_path, {"role": "ar", "eval_rows": 256}, records, eval_rows=40)
    f = run_figures(run, "ar")
    assert (f.fve, f.n, f.baseline_variance, f.baseline_n) == (0.2, 40, 0.7335, 5000)
    assert run_figures(tmp_path / "missing", "ar") is None


def card_of(path):
    text = (path / CARD_NAME).read_text(encoding="utf-8")
    head = yaml.safe_load(text.split("---\n")[1])
    return head, text


def test_exports_write_a_card_with_the_runs_figures(tmp_path, tiny_dirs):
    run = write_run(tmp_path, {"av": "a", "ar": "b", "eval_rows": 128}, RL_RECORDS)
    av = ActivationVerbalizer.from_pretrained(tiny_dirs["av"], device="cpu")
    ar = ActivationReconstructor.from_pretrained(tiny_dirs["ar"], device="cpu")
    head, text = card_of(export_av(av, run / "av"))
    assert head["library_name"] == "nlakit" and "av" in head["tags"]
    assert "**FVE 0.3100** on n = 128" in text and "baseline variance 0.7335" in text
    head, text = card_of(export_ar(ar, run / "ar", figures=CardFigures()))
    assert "ar" in head["tags"] and "No FVE was measured" in text  # explicit figures win
    ActivationReconstructor.from_pretrained(run / "ar", device="cpu")  # the card breaks nothing


def test_an_export_outside_a_run_says_nothing_was_measured(tmp_path, tiny_dirs):
    av = ActivationVerbalizer.from_pretrained(tiny_dirs["av"], device="cpu")
    _, text = card_of(export_av(av, tmp_path / "av"))
    assert "No FVE has been measured" in text and "nlakit eval" in text
