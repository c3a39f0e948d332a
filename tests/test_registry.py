import copy
from types import SimpleNamespace

import pytest
import yaml

from nlakit import NLA, registry
from nlakit.errors import CheckpointError, NLAKitError
from nlakit.registry import (
    RegisteredNLA,
    format_nlas,
    list_nlas,
    load_registry,
    lookup,
    parse_registry,
    resolve,
    resolve_pair,
)

NAMES = ["qwen2.5-7b-L20", "gemma3-12b-L32", "gemma3-27b-L41", "llama3.3-70b-L53"]


def test_the_packaged_registry_lists_the_release():
    entries = load_registry()
    assert list(entries) == NAMES
    qwen = entries["qwen2.5-7b-L20"]
    assert (qwen.base_model, qwen.layer, qwen.d_model) == ("Qwen/Qwen2.5-7B-Instruct", 20, 3584)
    assert (qwen.av, qwen.ar) == ("kitft/nla-qwen2.5-7b-L20-av", "kitft/nla-qwen2.5-7b-L20-ar")
    assert qwen.injection_scale == 150 and qwen.published_fve == 0.75
    llama = entries["llama3.3-70b-L53"]
    assert llama.av == "kitft/Llama-3.3-70B-NLA-L53-av" and llama.injection_scale == 30


@pytest.mark.parametrize("name", NAMES)
def test_every_entry_is_complete_and_consistent(name):
    e = load_registry()[name]
    assert e.base_model.count("/") == 1
    assert e.av.endswith("-av") and e.ar.endswith("-ar") and e.av[:-3] == e.ar[:-3]
    assert e.name.endswith(f"-L{e.layer}") and f"L{e.layer}-" in e.av
    assert 0 < e.layer < 128 and e.d_model > 1000 and e.d_model % 128 == 0
    assert e.injection_scale > 0 and 0 < e.baseline_variance < 4
    for figure in ("injection_scale", "baseline_variance", "published_fve"):
        assert e.sources.get(figure), f"{name}: {figure} has no source"
    # Only the Qwen FVE is published in the code release; the others are unknown, not 0.
    assert e.published_fve == (0.75 if name.startswith("qwen") else None)


def test_lookup_an_unknown_name_lists_the_names_and_the_closest():
    assert lookup("gemma3-27b-L41").layer == 41
    with pytest.raises(NLAKitError, match=r"Did you mean 'qwen2\.5-7b-L20'\?") as err:
        lookup("qwen2.5-7b-l20")
    assert all(name in str(err.value) for name in NAMES) and "nlakit list" in str(err.value)
    with pytest.raises(NLAKitError) as err:
        lookup("mistral")
    assert "Did you mean" not in str(err.value) and "no released NLA is called" in str(err.value)


def raw_registry() -> dict:
    text = (registry.resources.files("nlakit") / registry.REGISTRY_FILE).read_text()
    return yaml.safe_load(text)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda e: e.pop("layer"), r"missing fields \['layer'\]"),
        (lambda e: e.update(av="kitft/nla-qwen"), "ending -av"),
        (lambda e: e.update(layer=-1), "field `layer`: expected an integer ≥ 0"),
        (lambda e: e.update(injection_scale=0), "injection_scale`: expected a positive number"),
        (lambda e: e["sources"].pop("published_fve"), r"\['published_fve'\] need a `sources:`"),
    ],
)
def test_a_malformed_entry_names_the_file_and_field(edit, message):
    data = copy.deepcopy(raw_registry())
    edit(data["nlas"][0])
    with pytest.raises(NLAKitError, match=message) as err:
        parse_registry(data, "my.yaml")
    assert "my.yaml" in str(err.value)


def test_duplicate_names_are_refused():
    data = raw_registry()
    data["nlas"].append(data["nlas"][0])
    with pytest.raises(NLAKitError, match="appears twice"):
        parse_registry(data)


def test_resolve_names_paths_and_hub_ids(tmp_path, monkeypatch):
    assert resolve("qwen2.5-7b-L20").av == "kitft/nla-qwen2.5-7b-L20-av"
    assert resolve("kitft/nla-qwen2.5-7b-L20-av") is None  # a Hub id passes through
    assert resolve(tmp_path) is None
    with pytest.raises(CheckpointError, match="not a local directory, a Hub id") as err:
        resolve("qwen-7b")
    assert "Did you mean" in str(err.value)
    # A local directory spelled like a name wins over the name.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qwen2.5-7b-L20").mkdir()
    assert resolve("qwen2.5-7b-L20") is None


def test_resolve_pair():
    qwen = load_registry()["qwen2.5-7b-L20"]
    assert resolve_pair("qwen2.5-7b-L20", None) == (qwen.av, qwen.ar)
    assert resolve_pair("qwen2.5-7b-L20", "my/ar") == (qwen.av, "my/ar")
    assert resolve_pair(None, "gemma3-12b-L32") == (None, "kitft/nla-gemma3-12b-L32-ar")
    assert resolve_pair("a/b-av", None) == ("a/b-av", None)
    assert resolve_pair(None, None) == (None, None)


def test_from_pretrained_by_name_loads_the_released_ids(monkeypatch):
    loaded = []

    def fake(role):
        return classmethod(lambda cls, path, **kw: loaded.append((role, path)) or stand_in)

    stand_in = SimpleNamespace(meta=None)

    monkeypatch.setattr("nlakit.nla.ActivationVerbalizer.from_pretrained", fake("av"))
    monkeypatch.setattr("nlakit.nla.ActivationReconstructor.from_pretrained", fake("ar"))
    monkeypatch.setattr("nlakit.nla.check_pair", lambda av, ar: None)
    NLA.from_pretrained("gemma3-27b-L41", device="cpu")
    assert loaded == [("av", "kitft/nla-gemma3-27b-L41-av"), ("ar", "kitft/nla-gemma3-27b-L41-ar")]
    loaded.clear()
    NLA.from_pretrained(ar="llama3.3-70b-L53")
    assert loaded == [("ar", "kitft/Llama-3.3-70B-NLA-L53-ar")]


@pytest.fixture
def tiny_registry(monkeypatch, tiny_dirs):
    """The registry with one more entry whose ids are the local tiny pair."""
    entry = RegisteredNLA(
        name="tiny-L2",
        base_model=str(tiny_dirs["target"]),
        layer=2,
        d_model=64,
        av=str(tiny_dirs["av"]),
        ar=str(tiny_dirs["ar"]),
        injection_scale=8.0,
    )
    entries = {**load_registry(), "tiny-L2": entry}
    monkeypatch.setattr(registry, "_packaged", lambda: entries)
    return entry


def test_from_pretrained_by_name_loads_a_real_pair(tiny_registry):
    nla = NLA.from_pretrained("tiny-L2", device="cpu")
    assert nla.av is not None and nla.ar is not None and nla.layer == 2 and nla.d_model == 64


def test_list_rows_and_table():
    rows = list_nlas()
    assert [r["name"] for r in rows] == NAMES
    assert {"base_model", "layer", "d_model", "av", "ar", "injection_scale"} <= set(rows[0])
    table = format_nlas(rows)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["name", "base", "model"] and "published FVE" in lines[0]
    assert all(name in table for name in NAMES)
    assert lines[2].rstrip().endswith("0.75") and lines[3].rstrip().endswith("—")
