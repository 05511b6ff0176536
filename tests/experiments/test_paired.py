"""Differences to SGD paired by seed (wideflat.experiments.paired), checked against numbers
worked out by hand, and the tables compare and report write from them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from wideflat.experiments.paired import TITLE, format_paired_table, paired_rows
from wideflat.experiments.plots import RunRecord


def record(label, seed, test, *, triggered=None, energy=None, status="finished", flags=()):
    return RunRecord(Path(f"{label}-s{seed}"), label, seed, status, {"test_error": test},
                     triggered=triggered or {}, energy=energy or {}, flags=list(flags))  # fmt: skip


def profile(*delta):
    return {"sigmas": [0.0, 0.2][: len(delta)], "delta_error": list(delta)}


def test_differences_are_paired_by_seed_against_hand_computed_values():
    runs = [
        record("sgd", 0, 0.10, triggered={"train-error-0.05": profile(0, 0.30)}),
        record("sgd", 1, 0.12, triggered={"train-error-0.05": profile(0, 0.20)}),
        record("sgd", 2, 0.11),  # no δE: pairs only in test error
        record("esgd", 0, 0.09, triggered={"train-error-0.05": profile(0, 0.25)}),
        record("esgd", 1, 0.13, triggered={"train-error-0.05": profile(0, 0.10)}),
        record("esgd", 2, 0.10),
        record("esgd", 3, 0.05),  # no SGD with seed 3: in no pair
        record("rsgd", 0, 0.08, energy={20: profile(0, 0.5)}),  # SGD has no epoch 20
    ]
    rows = {(r["label"], r["quantity"]): r for r in paired_rows(runs)}
    assert set(rows) == {("esgd", "test error"), ("esgd", "δE(σ=0.2) at train-error-0.05"),
                         ("rsgd", "test error")}  # fmt: skip
    test = rows["esgd", "test error"]  # per seed -1, +1, -1 points
    assert test["n"] == 3 and test["seeds"] == [0, 1, 2]
    assert test["mean"] == pytest.approx(-1 / 3)
    # deviations -2/3, 4/3, -2/3: s² = (4/9 + 16/9 + 4/9) / 2 = 4/3, s.e. = √(4/3) / √3 = 2/3
    assert test["se"] == pytest.approx(2 / 3)
    de = rows["esgd", "δE(σ=0.2) at train-error-0.05"]  # per seed -5, -10 points
    assert (de["n"], de["mean"], de["seeds"]) == (2, pytest.approx(-7.5), [0, 1])
    assert de["se"] == pytest.approx(2.5)
    one = rows["rsgd", "test error"]
    assert one["n"] == 1 and one["mean"] == pytest.approx(-2.0) and math.isnan(one["se"])
    text = format_paired_table(list(rows.values()))
    assert "| eSGD | δE(σ=0.2) at train-error-0.05 | 2 | -7.50 ± 2.50 |" in text
    assert "| rSGD | test error | 1 | -2.00 |" in text  # no s.e. for one pair


def test_flagged_unfinished_and_reference_less_runs_make_no_pairs():
    runs = [
        record("sgd", 0, 0.10),
        record("sgd", 1, 0.12, flags=["test error at chance level"]),
        record("esgd", 0, 0.20, status="running"),
        record("esgd", 1, 0.09),
        record("sam", 0, 0.30, flags=["train error above 0.5"]),
    ]
    assert paired_rows(runs) == []
    assert paired_rows([record("esgd", 0, 0.1), record("rsgd", 0, 0.2)]) == []  # no SGD


def test_quantities_are_ordered_test_error_triggers_then_epochs():
    sgd = record("sgd", 0, 0.1, triggered={"train-error-0.01": profile(0, 0.1),
                                            "stationary": profile(0, 0.1)},
                 energy={5: profile(0, 0.1), 20: profile(0, 0.1)})  # fmt: skip
    other = record("esgd", 0, 0.1, triggered=sgd.triggered, energy=sgd.energy)
    names = [r["quantity"] for r in paired_rows([sgd, other])]
    assert names == ["test error", "δE(σ=0.2) at stationary", "δE(σ=0.2) at train-error-0.01",
                     "δE(σ=0.2) at epoch 5", "δE(σ=0.2) at epoch 20"]  # fmt: skip


def test_compare_writes_the_paired_table_and_report_shows_it(tmp_path, fashion_root):
    from test_flatness_protocol import tiny

    from wideflat.experiments.comparison import _tabulate
    from wideflat.experiments.report import build_report
    from wideflat.experiments.training import train

    for kind in ("sgd", "rsgd"):  # eSGD is still at chance after a tiny run: flagged
        for seed in (0, 1):
            cfg = tiny(fashion_root, kind, epochs=1, seed=seed, energy_at_train_error=(1.0,),
                       gamma="exp:0.01:x10")  # a fixed γ0: no overshoot warning  # fmt: skip
            train(cfg, tmp_path / f"{kind}-s{seed}", progress=False)
    _tabulate(tmp_path, "fashion-smallconvnet", [1], 10, lambda s: None)
    text = (tmp_path / "summary.md").read_text()
    assert text.startswith("fashion-smallconvnet: test error over seeds [0, 1]")  # found ones
    assert TITLE in text
    saved = json.loads((tmp_path / "paired.json").read_text())
    errors = {}
    for kind in ("sgd", "rsgd"):
        for seed in (0, 1):
            run = json.loads((tmp_path / f"{kind}-s{seed}" / "run.json").read_text())
            errors[kind, seed] = 100 * run["summary"]["test_error"]
    diffs = [errors["rsgd", s] - errors["sgd", s] for s in (0, 1)]
    test = next(r for r in saved if r["quantity"] == "test error")
    assert test["mean"] == pytest.approx(sum(diffs) / 2)
    assert test["se"] == pytest.approx(abs(diffs[0] - diffs[1]) / 2)
    assert any(r["quantity"] == "δE(σ=0.5) at train-error-1" for r in saved)
    page = build_report(tmp_path)
    assert "Paired with SGD (same seed" in page and "δE(σ=0.5) at train-error-1" in page
