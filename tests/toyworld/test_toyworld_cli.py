from nlakit.cli import main


def test_build_prints_the_summary(capsys, small_world):
    assert main(["toyworld", "build", "--out", str(small_world), "--size", "small"]) == 0
    out = capsys.readouterr().out
    for part in ("cached", "360 documents", "vocabulary", "parameters", "unigram baseline"):
        assert part in out


def test_build_refuses_other_settings(capsys, small_world):
    code = main(["toyworld", "build", "--out", str(small_world), "--size", "small", "--steps", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "other settings" in err and "Traceback" not in err


def test_sample_prints_documents_with_explanations(capsys, small_world):
    assert main(["toyworld", "sample", "--world", str(small_world), "-n", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("oracle explanation:") == 3 and out.count("⟦") == 3


def test_missing_world(capsys, tmp_path):
    assert main(["toyworld", "sample", "--world", str(tmp_path)]) == 2
    assert "nlakit toyworld sample: error" in capsys.readouterr().err
