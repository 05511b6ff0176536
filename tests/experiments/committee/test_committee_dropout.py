"""The Fig. 6 dropout study (wideflat.experiments.committee.dropout)."""

from __future__ import annotations

import json
import math

import pytest

from wideflat._stats import pearson
from wideflat.experiments.committee import dropout
from wideflat.experiments.committee.study import quick_study_config


def test_dropout_study_runs_one_resumable_study_per_rate(tmp_path):
    base = quick_study_config(data="teacher", restarts=3, max_epochs=3, draws=4, n_train=100,
                              mc_restarts=0)  # fmt: skip
    summary = dropout.run_dropout_study(tmp_path, [0.0, 0.4], base, progress=False)
    for p in ("p0", "p0.4"):
        res = json.loads((tmp_path / p / "results.json").read_text())
        assert res["complete"] and list(res["algorithms"]) == ["sgd-fast"]
    hp = json.loads((tmp_path / "p0.4" / "results.json").read_text())["config"]["hparams"]
    assert hp["sgd-fast"]["dropout"] == 0.4
    on_disk = json.loads((tmp_path / "dropout.json").read_text())
    assert [r["dropout"] for r in on_disk["rates"]] == [0.0, 0.4]
    assert (tmp_path / "fig6.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 0.4 |" in (tmp_path / "table.md").read_text()
    # the network-level correlation is Pearson over every restart's (δE, test error)
    de, test = [], []
    for p in ("p0", "p0.4"):
        res = json.loads((tmp_path / p / "results.json").read_text())
        i = res["config"]["sigmas"].index(res["config"]["table_sigma"])
        for r in res["algorithms"]["sgd-fast"]["restarts"]:
            de.append(r["local_energy"]["mean"][i])
            test.append(r["test_error"])
    c = summary["correlation"]["networks"]["delta_e_vs_test_error"]
    r, pval = pearson(de, test)
    assert c["n"] == 6 and (math.isnan(r) or c["r"] == pytest.approx(r))
    # a second call resumes every rate: nothing is trained again
    again = dropout.run_dropout_study(tmp_path, [0.0, 0.4], base, progress=False)
    assert again["rates"] == json.loads(json.dumps(summary["rates"]))


def test_bad_rates_are_refused(tmp_path):
    base = quick_study_config(data="teacher")
    for rates in ([], [0.1, 0.1], [1.0], [-0.2]):
        with pytest.raises(ValueError, match="Invalid rates"):
            dropout.run_dropout_study(tmp_path, rates, base, progress=False)


def test_module_commands_report_bad_input_in_one_line(tmp_path, capsys, monkeypatch):
    from wideflat.experiments.committee import conventions

    monkeypatch.setattr("sys.argv", ["x", "--out", str(tmp_path), "--rates", "1.5"])
    assert dropout._cli() == 2
    err = capsys.readouterr().err.strip()
    assert err == "dropout: Invalid rates: [1.5] (distinct values in [0, 1) needed)"
    monkeypatch.setattr("sys.argv", ["x", "--out", str(tmp_path), "--set", "esgd.nope=1",
                                     "--data", "teacher"])  # fmt: skip
    assert conventions._cli() == 2
    assert "nope" in capsys.readouterr().err
