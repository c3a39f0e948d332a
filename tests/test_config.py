"""Config dataclasses: help and bounds next to every field, recipes checked against them."""

import dataclasses
import importlib
import json
import math
import pkgutil
from pathlib import Path

import pytest

import nlakit
from nlakit.config import DTYPES, Config, ConfigError, check_recipe, from_dict, read_recipe
from nlakit.data.extract import ExtractConfig
from nlakit.data.tables import BuildConfig
from nlakit.eval.evaluate import EvalConfig
from nlakit.eval.sweep import LengthSweepConfig
from nlakit.generation import SamplingConfig
from nlakit.toyworld.build import WorldConfig, world_config
from nlakit.train.config import TrainingConfig
from nlakit.train.rl import RLConfig
from nlakit.train.sft import SFTConfig
from nlakit.viewer.view import ViewConfig

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
RL = dict(data="t", av="a", ar="r", out="o")


def all_config_classes() -> list[type]:
    """Every dataclass named `*Config` in the package."""
    found = {}
    for info in pkgutil.walk_packages(nlakit.__path__, "nlakit."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and dataclasses.is_dataclass(obj)
                and obj.__name__.endswith("Config")
                and obj.__module__.startswith("nlakit")
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def test_every_config_is_checked_and_every_field_has_help():
    classes = all_config_classes()
    assert {RLConfig, SFTConfig, SamplingConfig, WorldConfig} <= set(classes)
    for cls in classes:
        assert issubclass(cls, Config), cls
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help", "").strip(), f"{cls.__name__}.{f.name} has no help"


@pytest.mark.parametrize(
    ("cls", "base", "field", "value"),
    [
        (RLConfig, RL, "kl_coef", -1.0),
        (RLConfig, RL, "clip_eps", -0.2),
        (RLConfig, RL, "length_penalty", -0.5),
        (RLConfig, RL, "group_size", 1),
        (RLConfig, RL, "lr", math.nan),
        (RLConfig, RL, "max_seconds", math.inf),
        (RLConfig, RL, "temperature", 0.0),
        (RLConfig, RL, "advantage_norm", "median"),
        (SFTConfig, dict(role="av", data="t", out="o"), "lora_rank", -4),
        (SFTConfig, dict(data="t", out="o"), "role", "critic"),
        (SFTConfig, dict(role="av", data="t", out="o"), "dtype", "fp8"),
        (EvalConfig, dict(run="r"), "n", -1),
        (LengthSweepConfig, dict(run="r"), "steps", 0),
        (LengthSweepConfig, dict(run="r"), "lambdas", "0 -0.1"),
        (SamplingConfig, {}, "temperature", -1.0),
        (SamplingConfig, {}, "temperature", math.nan),
        (SamplingConfig, {}, "top_p", 1.5),
        (SamplingConfig, {}, "max_new_tokens", 0),
        (WorldConfig, {}, "n_docs", 0),
        (ViewConfig, {}, "port", 70000),
        (ExtractConfig, dict(model="m", layer=0, corpus="c", out="o"), "layer", -1),
    ],
)
def test_out_of_range_values_are_refused_naming_the_field(cls, base, field, value):
    with pytest.raises(ConfigError, match=field) as info:
        cls(**{**base, field: value})
    assert "\n" not in str(info.value)


def test_meaningful_zeros_are_accepted():
    config = RLConfig(**RL, lr=0.0, kl_coef=0.0, max_seconds=0.0, eval_every=0, save_every=0)
    assert config.lr == 0 and config.kl_coef == 0
    assert EvalConfig(run="r", n=0).n == 0
    assert SamplingConfig(temperature=0).temperature == 0  # greedy
    assert ViewConfig(port=0).port == 0  # any free port


def test_training_fields_are_defined_once():
    shared = {f.name for f in dataclasses.fields(TrainingConfig)}
    for cls in (SFTConfig, RLConfig):
        fields = cls.__dataclass_fields__
        for name in shared:  # inherited, not restated
            assert fields[name] is TrainingConfig.__dataclass_fields__[name], (cls, name)
    # A name both declare outside the base has different defaults in each.
    sft, rl = SFTConfig.__dataclass_fields__, RLConfig.__dataclass_fields__
    for name in (set(sft) & set(rl)) - shared:
        assert sft[name].default != rl[name].default, name
    assert len(set(sft) & set(rl)) >= 23


def test_dtype_names_match_the_loader():
    from nlakit.loading import _DTYPES

    assert set(DTYPES) == set(_DTYPES)


def recipe_class(path: Path) -> type:
    for suffix, cls in (
        ("-rl", RLConfig),
        ("-sft-av", SFTConfig),
        ("-sft-ar", SFTConfig),
        ("-extract", ExtractConfig),
        ("-build", BuildConfig),
    ):
        if path.stem.endswith(suffix):
            return cls
    raise AssertionError(f"{path.name}: which config is this recipe for?")


def test_every_shipped_recipe_is_valid():
    paths = sorted(RECIPES.glob("*.yaml"))
    names = {p.name for p in paths}
    assert {"demo-rl.yaml", "demo-sft-av.yaml", "demo-sft-ar.yaml"} <= names
    assert any(n.startswith("qwen2.5-7b-L20") for n in names)
    for path in paths:
        values = check_recipe(recipe_class(path), read_recipe(path), str(path))
        assert values, path
    qwen_build = read_recipe(RECIPES / "qwen2.5-7b-L20-build.yaml")
    assert float(qwen_build["injection_scale"]) == 150
    rl = from_dict(RLConfig, read_recipe(RECIPES / "demo-rl.yaml"))
    assert rl.data == "runs/demo/tables" and rl.av == "runs/demo/av_sft/av"


def test_from_dict_round_trips_a_config_and_a_run_snapshot(tmp_path):
    config = RLConfig(**RL, steps=7, lr=1e-5, freeze_ar=False)
    assert from_dict(RLConfig, dataclasses.asdict(config)) == config
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(config)))
    assert from_dict(RLConfig, read_recipe(tmp_path / "config.json")) == config
    world = world_config("small", seed=3)
    assert from_dict(WorldConfig, dataclasses.asdict(world)) == world


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "kl_coeff: 0.1\n",
            "unknown key `kl_coeff` (RLConfig has no such field; did you mean `kl_coef`?)",
        ),
        ("steps: ten\n", "key `steps`: expected an integer, got str 'ten'"),
        ("steps: 2.5\n", "key `steps`: expected an integer, got float 2.5"),
        ("freeze_ar: 'no'\n", "key `freeze_ar`: expected true or false, got str 'no'"),
        ("device: 3\n", "key `device`: expected a string or null, got int 3"),
        ("av: null\n", "key `av`: expected a string, got NoneType None"),
        ("clip_eps: -0.2\n", "key `clip_eps` must be > 0, got -0.2"),
        ("steps: [1\n", "not valid YAML (line 2)"),
        ("- a\n", "a recipe is a mapping of field → value, got a list"),
    ],
)
def test_recipe_errors_name_the_file_the_key_and_expected_vs_actual(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        check_recipe(RLConfig, read_recipe(path), str(path))
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_recipe_numbers_yaml_reads_as_strings_are_numbers(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("lr: 1e-4\nkl_coef: 0\n")  # YAML 1.1: `1e-4` is a string, `0` an int
    assert check_recipe(RLConfig, read_recipe(path), str(path)) == {"lr": 1e-4, "kl_coef": 0.0}


def test_nested_recipe_and_missing_file(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text("size: small\nlm:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=r"lm: unknown key `stepz`.*did you mean `steps`"):
        check_recipe(WorldConfig, read_recipe(path), str(path))
    with pytest.raises(ConfigError, match="no such recipe file"):
        read_recipe(tmp_path / "missing.yaml")
