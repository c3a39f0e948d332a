import pytest
import torch

from nlakit.errors import CheckpointError
from nlakit.train.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)


def parts(seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)  # frozen parameters are not saved
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5**s)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


def test_round_trip_restores_weights_optimizer_scheduler_and_rng(tmp_path):
    model, opt, sched = parts(0)
    gen = torch.Generator().manual_seed(9)
    path = save_checkpoint(
        tmp_path, 5, {"m": model}, {"m": opt}, {"m": sched}, {"cursor": 3}, {"sampling": gen}
    )
    assert path.name == "step_000005" and not list(tmp_path.glob(".*tmp"))
    expected_next = torch.rand(3, generator=gen)
    fresh, fresh_opt, fresh_sched = parts(1)
    gen2 = torch.Generator().manual_seed(0)
    state = load_checkpoint(
        path, {"m": fresh}, {"m": fresh_opt}, {"m": fresh_sched}, {"sampling": gen2}
    )
    assert state == {"step": 5, "cursor": 3}
    assert torch.equal(fresh[1].weight, model[1].weight)
    assert not torch.equal(fresh[0].weight, model[0].weight)  # frozen: rebuilt, not loaded
    assert fresh_sched.get_last_lr() == sched.get_last_lr()
    assert fresh_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert torch.equal(torch.rand(3, generator=gen2), expected_next)


def test_keep_prunes_old_checkpoints(tmp_path):
    model, opt, sched = parts(0)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"m": model}, {"m": opt}, {"m": sched}, {}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000002", "step_000003"]
    assert latest_checkpoint(tmp_path).name == "step_000003"


def test_a_checkpoint_from_other_settings_is_refused(tmp_path):
    model, opt, sched = parts(0)
    path = save_checkpoint(tmp_path, 1, {"m": model}, {"m": opt}, {"m": sched}, {})
    other = torch.nn.Linear(4, 2)
    with pytest.raises(CheckpointError, match="trainable parameters"):
        load_checkpoint(path, {"m": other}, {}, {})
