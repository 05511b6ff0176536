"""Weights kept at each δE measurement (energy_save_weights) and loaded back: the same
profile is measured again from them, bit for bit."""

from __future__ import annotations

import pytest
import torch
from _runs import final_state
from test_flatness_protocol import tiny

from wideflat.experiments.errors import RunError
from wideflat.experiments.measured import load_measured, measured_names
from wideflat.experiments.rundir import read_metrics
from wideflat.experiments.training import train
from wideflat.flatness import LocalEnergyProfile, local_energy


def again(cfg, model, data):
    return local_energy(model, data, list(cfg.energy_sigmas), cfg.energy_samples, seed=cfg.seed,
                        bn=cfg.energy_bn, batch_size=cfg.eval_batch, progress=False)  # fmt: skip


def test_kept_weights_give_back_each_measured_profile(tmp_path, fashion_root):
    cfg = tiny(fashion_root, epochs=2, energy_at_train_error=(1.0, 0.999),  # both at epoch 1
               energy_epochs=(2,), energy_save_weights=True)  # fmt: skip
    train(cfg, tmp_path / "run", progress=False)
    names = ["epoch-0002", "train-error-0.999", "train-error-1"]
    assert measured_names(tmp_path / "run") == names
    for name in names:
        model, data = load_measured(tmp_path / "run", name)
        saved = LocalEnergyProfile.from_json(tmp_path / "run" / "energy" / f"{name}.json")
        redo = again(cfg, model, data)
        assert redo.delta_error == saved.delta_error and redo.base_loss == saved.base_loss
    last, _ = load_measured(tmp_path / "run", "epoch-0002")  # the weights after epoch 2
    for key, value in last.state_dict().items():
        assert torch.equal(value, final_state(tmp_path / "run")["model"][key]), key
    first, _ = load_measured(tmp_path / "run", "train-error-1")  # epoch 1: other weights
    pairs = zip(first.state_dict().values(), last.state_dict().values(), strict=True)
    assert not all(torch.equal(a, b) for a, b in pairs)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert rows[0]["energy_measured"] == ["train-error-1", "train-error-0.999"]


def test_rsgd_keeps_its_center_with_the_batchnorm_statistics_it_was_measured_with(
    tmp_path, fashion_root
):
    cfg = tiny(fashion_root, "rsgd", epochs=1, model="resnet20", flatness_protocol="paper",
               energy_bn="eval", energy_epochs=(1,), energy_samples=2, gamma="exp:0.01:x10",
               energy_save_weights=True)  # fmt: skip
    train(cfg, tmp_path / "run", progress=False)
    model, data = load_measured(tmp_path / "run", "epoch-0001")
    saved = LocalEnergyProfile.from_json(tmp_path / "run" / "energy" / "epoch-0001.json")
    redo = again(cfg, model, data)  # bn="eval": the stored statistics matter
    assert redo.delta_error == saved.delta_error and redo.base_loss == saved.base_loss
    assert saved.n_examples == len(data[1])  # the whole (augmented) training set
    fresh = load_measured(tmp_path / "run", "epoch-0001")[0]  # BN statistics are loaded
    bn = [m for m in fresh.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    assert not torch.equal(bn.running_var, torch.ones_like(bn.running_var))


def test_without_the_option_nothing_is_kept_and_loading_says_so(tmp_path, fashion_root):
    train(tiny(fashion_root, epochs=1, energy_epochs=(1,)), tmp_path / "run", progress=False)
    assert sorted(p.name for p in (tmp_path / "run" / "energy").iterdir()) == ["epoch-0001.json"]
    assert measured_names(tmp_path / "run") == []
    with pytest.raises(RunError, match="no kept weights named 'epoch-0001'; kept: none"):
        load_measured(tmp_path / "run", "epoch-0001")
    with pytest.raises(RunError, match="not a run folder"):
        load_measured(tmp_path / "nothing", "epoch-0001")
