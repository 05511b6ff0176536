"""Tests of the committee study (``wideflat committee``, wideflat.experiments.committee.study).

The end-to-end test runs ``wideflat committee --quick --data teacher`` in a temporary folder
and checks the results file against the run's own per-restart numbers; bad inputs give one
line on stderr and a non-zero exit; BP failures and unmeasurable solutions are reported.
"""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
import torch

from wideflat._io import write_json_atomic
from wideflat.cli import main
from wideflat.experiments.committee.plots import plot_fig1
from wideflat.experiments.committee.study import (
    QUICK_ALGORITHMS,
    SCHEMA,
    CommitteeStudyConfig,
    quick_study_config,
    run_committee_study,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``wideflat committee --quick --data teacher`` once, in-process; (rc, out dir, stdout)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("committee") / "run"
    buf_out, buf_err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(buf_out), contextlib.redirect_stderr(buf_err):
            rc = main(
                ["committee", "--quick", "--data", "teacher", "--out", str(out), "--no-progress"]
            )
    finally:
        torch.set_num_threads(threads)
    return rc, out, buf_out.getvalue(), buf_err.getvalue()


def test_quick_end_to_end_writes_results_figure_and_table(quick_run):
    rc, out, stdout, stderr = quick_run
    assert rc == 0, stderr
    res = json.loads((out / "results.json").read_text())
    assert res["schema"] == SCHEMA and res["complete"] is True
    assert res["config"]["quick"] is True and res["config"]["data"] == "teacher"
    assert set(res["versions"]) >= {"wideflat", "torch", "numpy", "python"}
    assert res["wall_clock_s"] > 0 and res["seed"] == 0
    cfg = res["config"]
    assert list(res["algorithms"]) == list(QUICK_ALGORITHMS)
    for alg, block in res["algorithms"].items():
        assert cfg["hparams"][alg]["unit_norm"] == "one"
        rows = block["restarts"]
        assert len(rows) == cfg["restarts"]
        for r in rows:
            assert 0 <= r["train_error"] <= 1 and 0 <= r["test_error"] <= 1
            assert r["stop_reason"] in {"zero-errors", "loss", "distance", "max-epochs"}
            le, en = r["local_entropy"], r["local_energy"]
            assert le["distance"] == cfg["distances"]
            assert len(le["phi_le"]) == len(le["converged"]) == len(cfg["distances"])
            # every non-converged point is NaN (null) and has a failure line
            assert len(le["failures"]) == le["converged"].count(False)
            for ok, v in zip(le["converged"], le["phi_le"], strict=True):
                assert (v is None) == (not ok)
                assert v is None or v <= 1e-9
            assert le["lower_bound"] == (le["n_training_errors"] > 0)
            assert en["sigma"] == cfg["sigmas"] and len(en["mean"]) == len(en["sem"])
            assert en["mean"][0] == 0.0  # sigma = 0 leaves the network unchanged
        # the summary is the mean / sample std of the per-restart numbers
        s = block["summary"]
        tests = [r["test_error"] for r in rows]
        assert math.isclose(s["test_error"]["mean"], statistics.fmean(tests))
        assert math.isclose(s["test_error"]["std"], statistics.stdev(tests), abs_tol=1e-15)
        assert sum(s["stop_reasons"].values()) == len(rows)
        i = cfg["sigmas"].index(cfg["table_sigma"])
        de = [r["local_energy"]["mean"][i] for r in rows]
        assert math.isclose(s["delta_e"]["per_point"][i]["mean"], statistics.fmean(de))
    assert (out / "fig1.png").read_bytes()[:8] == PNG_MAGIC
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("algorithm"))
    assert "Phi_LE(d=0.1)" in lines[header] and "dE(s=0.5)" in lines[header]
    assert [line.split()[0] for line in lines[header + 2 : header + 5]] == list(QUICK_ALGORITHMS)
    assert "How to read this quick run" in stdout and "QUICK RUN" in stdout
    assert "BP against Monte Carlo" in stdout and "flagged" in stdout


def test_quick_run_shows_the_effect(quick_run):
    """Issue 11 item 7: at the quick budget both rSGD variants are flatter (Φ_LE, δE) and
    generalize better than SGD fast, by more than two standard errors of the difference."""
    rc, out, _, stderr = quick_run
    assert rc == 0, stderr
    res = json.loads((out / "results.json").read_text())
    cfg = res["config"]

    def at(alg, section, key, value, field):
        i = cfg[key].index(value)
        vals = [r[section][field][i] for r in res["algorithms"][alg]["restarts"]]
        return statistics.fmean(vals), statistics.stdev(vals) / math.sqrt(len(vals))

    def test_err(alg):
        vals = [r["test_error"] for r in res["algorithms"][alg]["restarts"]]
        return statistics.fmean(vals), statistics.stdev(vals) / math.sqrt(len(vals))

    def clearly(a, b):  # a < b by more than two standard errors of the difference
        return b[0] - a[0] > 2 * math.hypot(a[1], b[1])

    sgd = "sgd-fast"
    for alg in ("rsgd-fast", "rsgd-slow"):
        phi = at(alg, "local_entropy", "distances", cfg["table_distance"], "phi_le")
        phi_sgd = at(sgd, "local_entropy", "distances", cfg["table_distance"], "phi_le")
        assert clearly((-phi[0], phi[1]), (-phi_sgd[0], phi_sgd[1])), (alg, phi, phi_sgd)
        de = at(alg, "local_energy", "sigmas", cfg["table_sigma"], "mean")
        assert clearly(de, at(sgd, "local_energy", "sigmas", cfg["table_sigma"], "mean"))
        assert clearly(test_err(alg), test_err(sgd)), (alg, test_err(alg), test_err(sgd))
    assert not list(out.glob(".*tmp*")), "temporary files left behind"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--algorithms", "sgd-fast", "adam"], "'adam'"),
        (["--restarts", "0"], "restarts: 0"),
        (["--data", "mnist"], "'mnist'"),
        (["--set", "esgd.lr"], "esgd.lr"),
        (["--set", "esgd.nope=1"], "nope"),
        (["--max-epochs", "-3"], "max_epochs: -3"),
    ],
)
def test_bad_inputs_give_one_line_and_nonzero_exit(args, needle, tmp_path, capsys):
    try:
        rc = main(["committee", "--quick", "--out", str(tmp_path / "o"), *args])
    except SystemExit as exc:  # argparse's own checks (choices) exit with status 2
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1 and err.startswith("wideflat committee:"), err
    assert needle in err
    assert not (tmp_path / "o" / "results.json").exists()


def test_unwritable_out_is_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc = main(["committee", "--quick", "--data", "teacher", "--out", str(blocker / "sub")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "cannot write to --out" in err and str(blocker / "sub") in err


def test_bp_failures_are_reported_not_silent(tmp_path):
    lines: list[str] = []
    cfg = quick_study_config(
        data="teacher", algorithms=("sgd-fast",), restarts=1, max_epochs=2, bp_max_iter=1
    )
    res = run_committee_study(cfg, tmp_path, progress=False, log=lines.append)
    le = res["algorithms"]["sgd-fast"]["restarts"][0]["local_entropy"]
    assert le["converged"] == [False] * len(cfg.distances)
    assert all(math.isnan(v) for v in le["phi_le"])
    assert res["algorithms"]["sgd-fast"]["summary"]["bp_nonconverged_points"] == 3
    assert sum("did not converge" in line for line in lines) >= 3
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["algorithms"]["sgd-fast"]["restarts"][0]["local_entropy"]["phi_le"] == [
        None
    ] * len(cfg.distances)
    plot_fig1(tmp_path / "results.json", tmp_path / "fig1.png")  # an all-NaN curve is skipped


def test_write_json_atomic_leaves_no_temporary(tmp_path):
    p = tmp_path / "r.json"
    write_json_atomic(p, {"a": [1.0, float("inf")], "b": (np.float64(2.5),)})
    assert json.loads(p.read_text()) == {"a": [1.0, None], "b": [2.5]}
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]
    with pytest.raises(TypeError):
        write_json_atomic(p, {"x": object()})
    assert json.loads(p.read_text())["b"] == [2.5]  # the previous file survives a failed write
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"table_distance": 0.15}, "table_distance"),
        ({"sigmas": (0.5, 0.25)}, "sigmas"),
        ({"overrides": (("esgd", "lr", -1.0),)}, "lr"),
        ({"unit_norm": "two"}, "'two'"),
        ({"algorithms": ()}, "algorithms"),
    ],
)
def test_config_validation_names_the_bad_value(kwargs, needle):
    with pytest.raises(ValueError) as info:
        CommitteeStudyConfig(**kwargs)
    assert needle in str(info.value)


def test_quick_config_is_reduced():
    q, full = quick_study_config(), CommitteeStudyConfig()
    assert q.restarts < full.restarts and q.max_epochs < full.max_epochs
    assert len(q.distances) < len(full.distances) and q.quick and not full.quick


def test_unmeasurable_solutions_give_nan_and_a_reason():
    from wideflat.data import teacher_committee
    from wideflat.experiments.committee._measure import measure_restart as _measure_restart

    data = teacher_committee(60, 10, n_features=21, k=3, seed=1)
    cfg = quick_study_config(data="teacher")
    gen = torch.Generator().manual_seed(0)
    le, en = _measure_restart(torch.full((3, 21), float("nan")), data, cfg, gen)
    assert le["failures"] == ["weights are not finite: no flatness measured"]
    assert all(math.isnan(v) for v in le["phi_le"] + en["mean"])
    assert le["converged"] == [False] * len(cfg.distances)
    # a solution that misclassifies every pattern: no constraint left, flagged as a bound
    teacher = torch.as_tensor(data.metadata["teacher"]).float()
    le, en = _measure_restart(-teacher, data, cfg, gen)
    assert le["n_training_errors"] == 60 and le["lower_bound"] and le["n_patterns"] == 0
    le, en = _measure_restart(teacher, data, cfg, gen)
    assert le["n_training_errors"] == 0 and not le["lower_bound"]
    assert all(v < 0 for v in le["phi_le"]) and en["mean"][-1] > 0


def test_a_folder_with_results_is_refused_unless_overwrite(tmp_path):
    (tmp_path / "results.json").write_text('{"keep": 1}')
    cfg = quick_study_config(data="teacher", algorithms=("sgd-fast",), restarts=1, max_epochs=1)
    with pytest.raises(ValueError, match="already holds a study .*--overwrite"):
        run_committee_study(cfg, tmp_path, progress=False, log=lambda s: None)
    assert json.loads((tmp_path / "results.json").read_text()) == {"keep": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_cli_resume_continues_and_refuses_other_options(tmp_path, capsys):
    base = ["committee", "--quick", "--data", "teacher", "--algorithms", "sgd-fast",
            "--restarts", "1", "--max-epochs", "2", "--mc-restarts", "0", "--no-progress",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(base) == 0
    first = json.loads((tmp_path / "results.json").read_text())
    assert first["config"]["loss_reduction"] == "sum" and first["config"]["unit_norm"] == "one"
    capsys.readouterr()
    assert main([*base, "--resume"]) == 0
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["resumed"] and again["algorithms"] == first["algorithms"]
    capsys.readouterr()
    rc = main([*base, "--resume", "--schedule-clock", "step"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "differs in schedule_clock" in err
    rc = main([*base, "--jobs", "0", "--overwrite"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "Invalid jobs: 0" in err
