"""A γ schedule's time unit is part of its spec (issue 13 item 3): exp:G0:G1@step|@epoch|@sgld."""

from __future__ import annotations

import json

import pytest

from wideflat.experiments.errors import RunError
from wideflat.experiments.presets import preset_config
from wideflat.experiments.rundir import read_metrics
from wideflat.experiments.schedules import parse_gamma
from wideflat.experiments.training import train


def tiny(data_root, kind, **kw):
    base = dict(data_root=data_root, model="mlp", train_subset=0, epochs=3, batch_size=32,
                lr=0.01, lr_schedule="constant", eval_every=3, energy_epochs=(),
                train_eval_subset=64, eval_batch=64)  # fmt: skip
    base.update(kw)
    return preset_config("fashion-smallconvnet", kind, **base)


@pytest.mark.parametrize(
    "text, unit", [("exp:0.1:0.5", "step"), ("exp:0.1:0.5@step", "step"),
                   ("exp:0.1:0.5@epoch", "epoch"), ("exp:auto:0.5@sgld", "sgld")],
)  # fmt: skip
def test_the_unit_is_parsed_and_defaults_to_the_optimizer_step(text, unit):
    spec = parse_gamma(text)
    assert spec.unit == unit and spec.rate == 0.5


@pytest.mark.parametrize(
    "text, why", [("exp:0.1:0.5@hour", "unknown time unit"), ("exp:0.1:x10@epoch", "rate"),
                  ("const:0.1@epoch", "rate"), ("cosine:1@step", "rate")],
)  # fmt: skip
def test_a_unit_where_it_means_nothing_is_refused(text, why):
    with pytest.raises(ValueError, match=why):
        parse_gamma(text)


def _gammas(run) -> list[float]:
    return [r["gamma"] for r in read_metrics(run / "metrics.jsonl")]


def _steps_per_epoch(run) -> int:
    return json.loads((run / "run.json").read_text())["budget"]["steps_per_epoch"]


def test_per_epoch_growth_multiplies_gamma_by_1_plus_gamma1_each_epoch(tmp_path, fashion_root):
    train(tiny(fashion_root, "rsgd", gamma="exp:0.001:1.0@epoch"), tmp_path / "r", progress=False)
    # γ0 (1 + γ1)^e at the end of epoch e, whatever the number of steps per epoch
    assert _gammas(tmp_path / "r") == pytest.approx([0.002, 0.004, 0.008], rel=1e-9)


def test_per_step_growth_counts_optimizer_steps(tmp_path, fashion_root):
    train(tiny(fashion_root, "rsgd", gamma="exp:0.001:0.01@step"), tmp_path / "r", progress=False)
    s = _steps_per_epoch(tmp_path / "r")
    assert _gammas(tmp_path / "r") == pytest.approx([0.001 * 1.01 ** (s * e) for e in (1, 2, 3)])


def test_per_sgld_step_growth_counts_esgds_inner_steps(tmp_path, fashion_root):
    cfg = tiny(fashion_root, "esgd", gamma="exp:0.001:0.01@sgld", inner_steps=3)
    train(cfg, tmp_path / "e", progress=False)
    s = _steps_per_epoch(tmp_path / "e")
    expected = [0.001 * 1.01 ** (3 * s * e) for e in (1, 2, 3)]
    assert _gammas(tmp_path / "e") == pytest.approx(expected, rel=1e-9)


def test_sgld_units_are_refused_for_rsgd(tmp_path, fashion_root):
    with pytest.raises(RunError, match="@sgld"):
        train(tiny(fashion_root, "rsgd", gamma="exp:0.001:0.01@sgld"), tmp_path / "r",
              progress=False)  # fmt: skip
