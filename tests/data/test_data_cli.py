from nlakit.cli import main


def test_offline_pipeline_on_the_toy_world(capsys, small_world, tmp_path):
    """The acceptance path: extract → teach --teacher toyworld → build, then `nlakit info`
    validates every table's sidecar against the toy tokenizer."""
    acts, tables = tmp_path / "acts", tmp_path / "tables"
    assert (
        main(
            [
                "extract",
                "--model",
                str(small_world / "model"),
                "--layer",
                "1",
                "--corpus",
                f"toyworld:{small_world}",
                "--out",
                str(acts),
                "--max-docs",
                "60",
                "--positions-per-doc",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "extracted 180 rows from 60 documents" in out and "suggested injection_scale" in out
    assert main(["teach", "--data", str(acts), "--teacher", "toyworld"]) == 0
    assert "180 rows (ok 180)" in capsys.readouterr().out
    assert main(["build", "--data", str(acts), "--out", str(tables)]) == 0
    out = capsys.readouterr().out
    assert "FVE baseline: variance" in out
    for stage in ("av_sft", "ar_sft", "rl", "eval"):
        assert (
            main(
                [
                    "info",
                    str(tables / f"{stage}.parquet"),
                    "--tokenizer",
                    str(small_world / "tokenizer"),
                ]
            )
            == 0
        )
        assert ": ok" in capsys.readouterr().out


def test_extract_requires_its_fields(capsys):
    # Checked once the recipe is read (a --config recipe may hold them): one line, exit 2.
    assert main(["extract", "--layer", "1"]) == 2
    err = capsys.readouterr().err
    assert "missing required --model, --corpus, --out" in err and "Traceback" not in err


def test_teach_on_an_incomplete_extraction_is_a_clear_error(capsys, tmp_path):
    assert main(["teach", "--data", str(tmp_path), "--teacher", "toyworld"]) == 2
    err = capsys.readouterr().err
    assert "nlakit extract" in err and "Traceback" not in err
