"""The paper's flatness protocol and the matched-error trigger (issue 13 item 2)."""

from __future__ import annotations

import json

import pytest
import torch

from wideflat.cli import _overrides, build_parser
from wideflat.experiments.build import as_float, build
from wideflat.experiments.plots import collect_runs, plot_energy_matched
from wideflat.experiments.presets import preset_config
from wideflat.experiments.rundir import read_metrics
from wideflat.experiments.training import train
from wideflat.flatness import LocalEnergyProfile


def tiny(data_root, kind="sgd", **kw):
    base = dict(data_root=data_root, model="mlp", train_subset=0, epochs=3, batch_size=32,
                lr=0.05, lr_schedule="constant", eval_every=1, energy_epochs=(),
                train_eval_subset=64, eval_batch=64, energy_samples=3, energy_subset=64,
                energy_sigmas=(0.0, 0.5))  # fmt: skip
    base.update(kw)
    return preset_config("fashion-smallconvnet", kind, **base)


def test_matched_error_measures_at_the_first_epoch_at_or_below_each_threshold(
    tmp_path, fashion_root
):
    probe = tmp_path / "probe"
    train(tiny(fashion_root), probe, progress=False)
    errors = [r["train_error"] for r in read_metrics(probe / "metrics.jsonl")]
    thresholds = (1.0, errors[1])  # epoch 1; the first epoch reaching errors[1]
    train(tiny(fashion_root, energy_at_train_error=thresholds), tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    fired = {name: r["epoch"] for r in rows for name in r.get("energy_measured", [])}
    first = next(i + 1 for i, e in enumerate(errors) if e <= errors[1])
    assert fired == {"train-error-1": 1, f"train-error-{errors[1]:g}": first}
    for name in fired:
        prof = LocalEnergyProfile.from_json(tmp_path / "run" / "energy" / f"{name}.json")
        assert prof.samples == 3 and prof.n_examples == 64
    assert sorted(p.stem for p in (tmp_path / "run" / "energy").iterdir()) == sorted(fired)


@pytest.mark.parametrize("model, bn", [("mlp", "eval"), ("resnet20", "recompute")])
def test_the_triggered_profile_is_that_of_the_model_at_that_epoch(
    tmp_path, fashion_root, model, bn
):
    from wideflat.flatness import local_energy

    cfg = tiny(fashion_root, epochs=1, energy_at_train_error=(1.0,), model=model, energy_bn=bn)
    train(cfg, tmp_path / "run", progress=False)
    saved = LocalEnergyProfile.from_json(tmp_path / "run" / "energy" / "train-error-1.json")
    from _runs import final_state

    run = build(cfg, torch.device("cpu"), fresh=False)
    run.model.load_state_dict(final_state(tmp_path / "run")["model"])
    again = local_energy(run.model, run.data.energy, [0.0, 0.5], 3, seed=cfg.seed, bn=bn,
                         batch_size=cfg.eval_batch, progress=False)  # fmt: skip
    assert saved.bn == bn
    assert saved.delta_error == again.delta_error and saved.base_loss == again.base_loss
    if bn == "recompute":  # the BatchNorm policy reached the measurement: "eval" differs
        kept = local_energy(run.model, run.data.energy, [0.0, 0.5], 3, seed=cfg.seed,
                            batch_size=cfg.eval_batch, progress=False)  # fmt: skip
        assert kept.delta_loss != again.delta_loss


def test_a_stationary_loss_triggers_one_measurement(tmp_path, fashion_root):
    train(tiny(fashion_root, energy_at_stationary=1e9), tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r.get("energy_measured") for r in rows] == [None, None, ["stationary"]]
    train(tiny(fashion_root, energy_at_stationary=1e-12), tmp_path / "none", progress=False)
    assert not (tmp_path / "none" / "energy").exists()


def test_the_paper_protocol_measures_on_the_whole_augmented_training_set(fashion_root):
    plain = build(tiny(fashion_root), torch.device("cpu"))
    assert len(plain.data.energy[1]) == 64  # energy_subset
    paper = build(tiny(fashion_root, flatness_protocol="paper"), torch.device("cpu"))
    x, t = paper.data.energy
    assert len(t) == len(paper.data.t) and torch.equal(t, paper.data.t)
    # no augmentation in this preset: the copy is the normalised training set itself
    assert torch.equal(x, as_float(paper.data.x, paper.data.mean, paper.data.std))
    flipped = build(tiny(fashion_root, flatness_protocol="paper", flip=True), torch.device("cpu"))
    again = build(tiny(fashion_root, flatness_protocol="paper", flip=True), torch.device("cpu"))
    xf = flipped.data.energy[0]
    assert torch.equal(xf, again.data.energy[0])  # one fixed augmented copy
    mirrored = torch.flip(x, dims=[-1])
    same = (xf == x).flatten(1).all(1)
    flip = (xf == mirrored).flatten(1).all(1)
    assert bool((same | flip).all()) and 0 < int(flip.sum()) < len(x)  # some flipped, some not


def test_the_paper_protocol_flag_takes_100_draws_unless_given():
    parser = build_parser()
    args = parser.parse_args(["train", "--flatness-protocol", "paper"])
    assert _overrides(args)["energy_samples"] == 100
    args = parser.parse_args(["train", "--flatness-protocol", "paper", "--set", "energy_samples=7"])
    assert _overrides(args)["energy_samples"] == 7
    args = parser.parse_args(["train", "--energy-at-train-error", "0.05", "0.01"])
    assert _overrides(args)["energy_at_train_error"] == (0.05, 0.01)
    with pytest.raises(ValueError, match="energy_at_train_error"):
        preset_config("fashion-smallconvnet", "sgd", energy_at_train_error=(1.5,))


def test_plot_energy_matched_draws_a_panel_per_trigger(tmp_path, fashion_root):
    for kind in ("sgd", "esgd"):
        train(tiny(fashion_root, kind, epochs=1, energy_at_train_error=(1.0,)),
              tmp_path / "study" / kind, progress=False)  # fmt: skip
    runs = collect_runs(tmp_path / "study")
    assert all(set(r.triggered) == {"train-error-1"} and not r.energy for r in runs)
    path = plot_energy_matched(runs, tmp_path / "matched.png", title="tiny")
    assert path.stat().st_size > 0
    record = json.loads((tmp_path / "study" / "sgd" / "run.json").read_text())
    assert record["config"]["energy_at_train_error"] == [1.0]


def test_the_matched_error_table_reports_what_each_run_measured(tmp_path, fashion_root):
    from wideflat.experiments.comparison import _tabulate
    from wideflat.experiments.plots import format_matched_table, matched_rows

    for kind in ("sgd", "esgd"):
        train(tiny(fashion_root, kind, epochs=2, energy_at_train_error=(1.0,)),
              tmp_path / f"{kind}-s0", progress=False)  # fmt: skip
    rows = matched_rows(collect_runs(tmp_path))
    assert [(r["label"], r["trigger"], r["reached"], r["epoch"]) for r in rows] == [
        ("sgd", "train-error-1", 1, 1.0), ("esgd", "train-error-1", 1, 1.0)]  # fmt: skip
    for r in rows:
        prof = LocalEnergyProfile.from_json(tmp_path / f"{r['label']}-s0/energy/train-error-1.json")
        assert r["delta_error"] == pytest.approx([100 * d for d in prof.delta_error])
    assert "| train-error-1 | SGD | 1 of 1 | 1.0 |" in format_matched_table(rows)
    _tabulate(tmp_path, "fashion-smallconvnet", [0], 10, lambda s: None)
    assert "Flatness at matched training error" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "matched.json").is_file()


def test_thresholds_crossed_in_one_epoch_share_one_measurement(tmp_path, fashion_root, monkeypatch):
    from wideflat.experiments import training

    calls = []
    real = training._measure_energy
    monkeypatch.setattr(training, "_measure_energy", lambda run, path: calls.append(path.name)
                        or real(run, path))  # fmt: skip
    train(tiny(fashion_root, epochs=1, energy_at_train_error=(1.0, 0.999)), tmp_path / "run",
          progress=False)  # fmt: skip
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert rows[0]["energy_measured"] == ["train-error-1", "train-error-0.999"]
    assert calls == ["train-error-1.json"]
    energy = tmp_path / "run" / "energy"
    assert (energy / "train-error-1.json").read_bytes() == (
        energy / "train-error-0.999.json"
    ).read_bytes()
