"""The conventions sweep (wideflat.experiments.committee.conventions): every cell trained
under its convention, written as it finishes, not run again on a rerun."""

from __future__ import annotations

import json

from wideflat.experiments.committee import conventions as conv
from wideflat.experiments.committee.train import train_committee


def test_sweep_writes_cells_resumes_and_tabulates(tmp_path, monkeypatch):
    calls = []
    real = conv._run_cell

    def run_cell(c, a, *args):
        calls.append((conv.convention_name(c), a))
        return real(c, a, *args)

    monkeypatch.setattr(conv, "_run_cell", run_cell)
    picked = conv.CONVENTIONS[:2]
    kw = dict(restarts=2, max_epochs=2, data="teacher", jobs=1, algorithms=("sgd-fast",),
              log=lambda s: None)  # fmt: skip
    rows = conv.run_conventions(tmp_path, conventions=picked[:1], **kw)
    assert calls == [("sqrt-n/mean/epoch", "sgd-fast")] and len(rows) == 1
    rows = conv.run_conventions(tmp_path, conventions=picked, **kw)
    assert calls[1:] == [("sqrt-n/mean/step", "sgd-fast")] and len(rows) == 2
    on_disk = [json.loads(line) for line in (tmp_path / "cells.jsonl").read_text().splitlines()]
    assert [r["convention"] for r in on_disk] == ["sqrt-n/mean/epoch", "sqrt-n/mean/step"]
    assert on_disk[0]["stop_reason"] == ["max-epochs", "max-epochs"]
    table = (tmp_path / "table.md").read_text()
    assert "| sqrt-n/mean/step | 0/2 · – · err" in table and "(max-epochs 2)" in table
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["cells"][0]["fraction_stopped"] == 0.0
    # another --set is another sweep: its cells run again
    conv.run_conventions(tmp_path, conventions=picked[:1], overrides={"sgd-fast": {"lr": 1.0}},
                         **kw)  # fmt: skip
    assert calls[2:] == [("sqrt-n/mean/epoch", "sgd-fast")]


def test_a_cell_is_the_trainer_under_that_convention():
    from wideflat.data import teacher_committee

    c = {"unit_norm": "one", "loss_reduction": "sum", "schedule_clock": "step"}
    row = conv._run_cell(c, "sgd-fast", 2, 3, 0, "teacher", None, {"lr": 1e-3})
    d = teacher_committee(500, seed=0)
    ref = train_committee("sgd-fast", d.X_train, d.y_train, restarts=2, seed=0, max_epochs=3,
                          X_test=d.X_test, y_test=d.y_test, progress=False,
                          overrides={**c, "lr": 1e-3})  # fmt: skip
    assert row["train_error"] == ref.train_error.tolist()
    assert row["stop_reason"] == list(ref.stop_reason) and row["overrides"] == {"lr": 1e-3}
