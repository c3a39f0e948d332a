"""The experiment scripts under docs/experiments import what they use from nlakit, so
a renamed function fails here, not in a reader's hands."""

import importlib.util
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parents[1] / "docs" / "experiments").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_experiment_script_imports(script):
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.main) and module.__doc__


def test_there_are_experiment_scripts():
    assert SCRIPTS
