"""Runs that did not train (chance-level test error, high training error) are flagged, never
tabulated or drawn as results (review F3)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from wideflat.experiments import comparison, plots
from wideflat.experiments.config import config_hash
from wideflat.experiments.rundir import run_label


@pytest.mark.parametrize(
    ("classes", "test_error", "train_error", "flagged"),
    [
        (10, 0.20, 0.10, False),
        (10, 0.90, 0.05, True),  # chance level 1 - 1/10
        (10, 0.86, 0.05, True),  # within 5 % of chance: 0.95 · 0.9 = 0.855
        (10, 0.85, 0.05, False),
        (100, 0.95, 0.05, True),
        (100, 0.93, 0.05, False),
        (10, 0.20, 0.51, True),  # training error above max_train_error
        (10, math.nan, 0.10, True),  # no test error at all
    ],
)
def test_run_flags(classes, test_error, train_error, flagged):
    summary = {"test_error": test_error, "train_error": train_error}
    flags = plots.run_flags(summary, num_classes=classes, max_train_error=0.5)
    assert bool(flags) is flagged


def _record(path: Path, label: str, test_error: float, train_error: float, delta: float):
    path.mkdir(parents=True, exist_ok=True)
    summary = {"test_error": test_error, "train_error": train_error, "train_loss": 0.5}
    record = {"label": label, "seed": 0, "status": "finished", "summary": summary}
    (path / "run.json").write_text(json.dumps(record))
    rows = [{"epoch": e, "test_error": test_error} for e in (1, 2)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / "energy").mkdir(exist_ok=True)
    profile = {"sigmas": [0.0, 0.1, 0.2], "delta_error": [0.0, delta, 2 * delta]}
    (path / "energy" / "epoch-0002.json").write_text(json.dumps(profile))
    return record


def test_compare_flags_a_run_at_chance_in_the_summary(tmp_path, monkeypatch):
    seen = {}

    def fake_train(cfg, folder, **_):
        kind = run_label(cfg)
        seen[kind] = cfg
        bad = kind == "rsgd"  # the review's diverged rSGD: 90 % error, lowest δE
        record = _record(Path(folder), kind, 0.9 if bad else 0.2, 0.89 if bad else 0.1, 0.01)
        record["config_hash"] = config_hash(cfg)
        (Path(folder) / "run.json").write_text(json.dumps(record))

    monkeypatch.setattr(comparison, "train", fake_train)
    out = tmp_path / "study"
    table = comparison.compare(
        "fashion-smallconvnet",
        ["sgd", "rsgd"],
        [0],
        out,
        overrides={"epochs": 2},
        progress=False,
        log=lambda _: None,
    )
    assert seen["rsgd"].lr_schedule == "multistep:1.2,1.6"
    text = (out / "summary.md").read_text()
    assert table in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line[:2] == "| "}
    assert "†" in rows["rSGD"] and "†" not in rows["SGD"]
    notes = [line for line in text.splitlines() if line.startswith("†")]
    assert len(notes) == 1 and "rsgd-s0" in notes[0] and "chance" in notes[0]
    assert "train error" in notes[0] and "not a result" in notes[0]
    summary = {r["label"]: r for r in json.loads((out / "summary.json").read_text())}
    assert summary["rsgd"]["flagged"] == 1 and summary["sgd"]["flagged"] == 0
    for name in ("test_error.png", "local_energy.png"):
        assert (out / name).stat().st_size > 0


def _runs(tmp_path):
    _record(tmp_path / "sgd-s0", "sgd", 0.2, 0.1, 0.05)
    _record(tmp_path / "rsgd-s0", "rsgd", 0.9, 0.89, 0.01)
    runs = plots.collect_runs(tmp_path)
    return plots.flag_runs(runs, num_classes=10, max_train_error=0.5)


def _legend(ax) -> dict[str, object]:
    handles, labels = ax.get_legend_handles_labels()
    return dict(zip(labels, handles, strict=True))


def test_flagged_runs_are_drawn_grey_dashed_and_labelled(tmp_path):
    runs = _runs(tmp_path)
    for draw in (plots._draw_test_error, lambda ax, rs: plots._draw_energy(ax, rs, 2)):
        ax = Figure().subplots()
        draw(ax, runs)
        plots._legend(ax, runs)
        legend = _legend(ax)
        flagged = [k for k in legend if k.startswith("rSGD")]
        clean = [k for k in legend if k.startswith("SGD")]
        assert len(flagged) == 1 and "†" in flagged[0]
        assert len(clean) == 1 and "†" not in clean[0]
        assert "not a result" in ax.get_legend().get_title().get_text()
        line = legend[flagged[0]]
        assert line.get_color() == plots.FLAGGED_COLOR and line.get_linestyle() == "--"
        assert legend[clean[0]].get_color() != plots.FLAGGED_COLOR


def test_energy_legend_gives_the_final_errors_and_no_flag_note_when_all_is_well(tmp_path):
    runs = _runs(tmp_path)
    ax = Figure().subplots()
    plots._draw_energy(ax, runs, 2)
    plots._legend(ax, runs)
    assert any("train 10.0 %, test 20.0 %" in k for k in _legend(ax))
    clean = [r for r in runs if r.label == "sgd"]
    ax = Figure().subplots()
    plots._draw_energy(ax, clean, 2)
    plots._legend(ax, clean)
    assert ax.get_legend().get_title().get_text() == ""
