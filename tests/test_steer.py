"""AR steering: the hook adds exactly the vector and leaves no trace, the direction and
the norm it is scaled by, and `nlakit steer` end to end on a tiny model."""

from __future__ import annotations

import json

import torch

from nlakit import sites
from nlakit.cli import main
from nlakit.models import ActivationReconstructor
from nlakit.steer import (
    SteerConfig,
    activation_norm,
    added_at,
    random_direction,
    steer,
    steering_direction,
)


def test_added_at_shifts_block_k_and_is_removed(make_model):
    model = make_model("qwen3").eval()
    ids = torch.tensor([[1, 5, 9, 12]])
    before = sites.extract_layer(model, ids, None, 1)
    vector = torch.randn(sites.hidden_size(model))
    with added_at(model, 1, vector):
        during = sites.extract_layer(model, ids, None, 1)
    after = sites.extract_layer(model, ids, None, 1)
    assert torch.allclose(during, before + vector, atol=1e-5)
    assert torch.equal(after, before)


def test_directions_are_unit_and_the_norm_is_a_median(tiny_dirs):
    ar = ActivationReconstructor.from_pretrained(tiny_dirs["ar"]).eval()
    direction = steering_direction(ar, "a poem about the moon")
    assert abs(direction.norm().item() - 1) < 1e-5
    assert abs(random_direction(16, 0).norm().item() - 1) < 1e-5
    assert torch.equal(random_direction(16, 3), random_direction(16, 3))
    from nlakit.loading import load_causal_lm

    model, tokenizer = load_causal_lm(tiny_dirs["target"])
    norm = activation_norm(model, tokenizer, "the cat sat on the mat", 2)
    ids = tokenizer("the cat sat on the mat", return_tensors="pt")["input_ids"]
    norms = sites.extract_layer(model, ids, None, 2)[0].norm(dim=-1)
    assert abs(norm - norms[1:].median().item()) < 1e-4


def test_steer_generates_steered_and_control_continuations(tiny_dirs, tmp_path):
    out = tmp_path / "steer.jsonl"
    result = steer(
        SteerConfig(ar=str(tiny_dirs["ar"]), model=str(tiny_dirs["target"]), text="the moon",
                    prompt=["the", "a"], n=2, max_new_tokens=5, control=True, out=str(out))
    )  # fmt: skip
    assert result["layer"] == 2 and result["added_norm"] > 0
    assert [len(c) for c in result["steered"]] == [2, 2] and len(result["control"]) == 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 8 and {x["kind"] for x in lines} == {"steered", "control"}


def test_steer_cli(tiny_dirs, capsys):
    code = main(["steer", "--ar", str(tiny_dirs["ar"]), "--model", str(tiny_dirs["target"]),
                 "--text", "the moon", "--prompt", "the", "--n", "1", "--max-new-tokens", "3"])  # fmt: skip
    assert code == 0
    assert "steering toward 'the moon' at block 2" in capsys.readouterr().out
