"""Recipe pieces of the paper's Table 1 rows (issue 13 item 4): step warm-up, the coupling
period switch, Nesterov in ResNet-110's eSGD, float32 in the reproduction presets."""

from __future__ import annotations

import pytest
import torch
from _runs import final_state

from wideflat.experiments.config import TrainConfig, lr_at
from wideflat.experiments.presets import list_presets, preset_config
from wideflat.experiments.training import train


def test_step_warm_up_holds_the_warm_up_lr_then_jumps():
    step = TrainConfig(lr=0.1, warmup_epochs=1.0, warmup_lr=0.01, warmup_kind="step", epochs=5)
    ramp = TrainConfig(lr=0.1, warmup_epochs=1.0, warmup_lr=0.01, epochs=5)
    assert [lr_at(step, e) for e in (0.0, 0.5, 0.999, 1.0, 3.0)] == [0.01, 0.01, 0.01, 0.1, 0.1]
    assert lr_at(ramp, 0.5) == pytest.approx(0.055)
    with pytest.raises(ValueError, match="warmup_kind"):
        TrainConfig(warmup_kind="cosine")


def test_resnet110_and_pyramidnet_rows_carry_the_papers_pieces():
    sgd = preset_config("cifar10-resnet110", "sgd")
    assert (sgd.warmup_kind, sgd.warmup_epochs, sgd.warmup_lr, sgd.lr) == ("step", 1.0, 0.01, 0.1)
    esgd = preset_config("cifar10-resnet110", "esgd")
    assert esgd.nesterov and esgd.warmup_epochs == 0
    assert preset_config("cifar10-resnet110", "rsgd").warmup_epochs == 0
    for ds in ("cifar10", "cifar100"):
        rsgd = preset_config(f"{ds}-pyramidnet272", "rsgd")
        assert (rsgd.coupling_every, rsgd.coupling_every_after) == (10, 3)
        assert rsgd.coupling_switch_epoch == 220
        short = preset_config(f"{ds}-pyramidnet272", "rsgd", epochs=30)
        assert short.coupling_switch_epoch == pytest.approx(22.0)  # scaled with the budget


def test_reproduction_presets_train_in_float32():
    for name in list_presets():
        if name != "fashion-smallconvnet":
            for kind in ("sgd", "esgd", "rsgd"):
                assert preset_config(name, kind).amp is False, (name, kind)


def tiny(data_root, **kw):
    base = dict(data_root=data_root, model="mlp", train_subset=0, epochs=2, batch_size=32,
                lr=0.05, lr_schedule="constant", eval_every=2, energy_epochs=(),
                train_eval_subset=64, eval_batch=64, gamma="exp:auto:x10")  # fmt: skip
    base.update(kw)
    return preset_config("fashion-smallconvnet", "rsgd", **base)


def test_a_switch_at_epoch_0_trains_exactly_like_the_new_period(tmp_path, fashion_root):
    switched = tiny(fashion_root, coupling_every=4, coupling_every_after=1)
    train(switched, tmp_path / "switched", progress=False)
    train(tiny(fashion_root, coupling_every=1), tmp_path / "plain", progress=False)
    a, b = final_state(tmp_path / "switched"), final_state(tmp_path / "plain")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["optimizer"]["param_groups"][0]["coupling_every"] == 1


def test_a_switch_later_changes_the_period_from_that_epoch(tmp_path, fashion_root):
    cfg = tiny(fashion_root, coupling_every=4, coupling_every_after=2, coupling_switch_epoch=1.0)
    train(cfg, tmp_path / "run", progress=False)
    assert final_state(tmp_path / "run")["optimizer"]["param_groups"][0]["coupling_every"] == 2
    train(tiny(fashion_root, coupling_every=4), tmp_path / "never", progress=False)
    never = final_state(tmp_path / "never")
    assert never["optimizer"]["param_groups"][0]["coupling_every"] == 4
    run = final_state(tmp_path / "run")
    assert any(not torch.equal(run["model"][k], never["model"][k]) for k in run["model"])
