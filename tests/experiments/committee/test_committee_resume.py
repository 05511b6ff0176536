"""A committee study cut short resumes without redoing finished restarts, and gives the
numbers of an uninterrupted run; worker processes give the same numbers as one process."""

from __future__ import annotations

import json
import math

import pytest
import torch

from wideflat._io import json_ready
from wideflat.experiments.committee import _parts
from wideflat.experiments.committee.study import quick_study_config, run_committee_study

ALGS = ("sgd-fast", "esgd")


def small_cfg(**changes):
    base = dict(data="teacher", algorithms=ALGS, restarts=3, max_epochs=3, draws=4,
                n_train=100, mc_restarts=1, mc_samples=50)  # fmt: skip
    base.update(changes)
    return quick_study_config(**base)


def numbers(res):
    """Every per-restart number of a results dict (no timings)."""
    out = {}
    for alg, block in res["algorithms"].items():
        for row in block["restarts"]:
            keep = {k: v for k, v in row.items() if not k.endswith("wall_s")}
            keep["local_entropy"] = {
                k: v for k, v in row["local_entropy"].items() if k != "elapsed_s"
            }
            out[(alg, row["restart"])] = json.loads(json.dumps(json_ready(keep)))
    return out


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(_parts, "CHUNK", 2)  # the chunks of the tests below
            out = tmp_path_factory.mktemp("full")
            run_committee_study(small_cfg(), out, progress=False, log=lambda s: None)
    finally:
        torch.set_num_threads(threads)
    return json.loads((out / "results.json").read_text())


class Crash(Exception):
    pass


def test_a_study_cut_short_resumes_without_redoing_finished_work(
    tmp_path, monkeypatch, uninterrupted
):
    monkeypatch.setattr(_parts, "CHUNK", 2)  # two training pieces per algorithm
    calls = {"train": [], "measure": []}
    real_train, real_measure = _parts.train_chunk, _parts.measure_one

    def train(cfg, alg, start, stop, root):
        calls["train"].append((alg, start))
        return real_train(cfg, alg, start, stop, root)

    def measure(cfg, alg, r, w, info, root):
        if (alg, r) == ("esgd", 1) and crash[0]:
            raise Crash("killed")
        calls["measure"].append((alg, r))
        return real_measure(cfg, alg, r, w, info, root)

    crash = [True]
    monkeypatch.setattr(_parts, "train_chunk", train)
    monkeypatch.setattr(_parts, "measure_one", measure)
    with pytest.raises(Crash):
        run_committee_study(small_cfg(), tmp_path, progress=False, log=lambda s: None)
    first = json.loads((tmp_path / "results.json").read_text())
    assert first["complete"] is False and list(first["algorithms"]) == ["sgd-fast"]
    done_before = set(calls["measure"])
    trained_before = set(calls["train"])
    assert ("esgd", 0) in trained_before

    crash[0] = False
    calls["train"].clear()
    calls["measure"].clear()
    with pytest.raises(ValueError, match="already holds a study.*--resume"):
        run_committee_study(small_cfg(), tmp_path, progress=False, log=lambda s: None)
    lines = []
    res = run_committee_study(small_cfg(), tmp_path, progress=False, log=lines.append, resume=True)
    assert res["complete"] and res["resumed"] and res["started"] == first["started"]
    assert not set(calls["measure"]) & done_before  # nothing measured twice
    assert not set(calls["train"]) & trained_before  # nothing trained twice
    assert ("esgd", 1) in calls["measure"]
    assert numbers(res) == numbers(uninterrupted)
    assert any("resuming" in line for line in lines)


def test_resume_refuses_a_different_configuration(tmp_path):
    cfg = small_cfg(algorithms=("sgd-fast",), restarts=1, mc_restarts=0)
    run_committee_study(cfg, tmp_path, progress=False, log=lambda s: None)
    other = small_cfg(algorithms=("sgd-fast",), restarts=1, mc_restarts=0, max_epochs=4)
    with pytest.raises(ValueError, match="differs in max_epochs"):
        run_committee_study(other, tmp_path, progress=False, log=lambda s: None, resume=True)
    # resuming a finished study redoes nothing and keeps the numbers
    again = run_committee_study(cfg, tmp_path, progress=False, log=lambda s: None, resume=True)
    assert again["complete"] and again["progress"]["total"] == 0


def test_worker_processes_give_the_numbers_of_one_process(tmp_path, monkeypatch, uninterrupted):
    monkeypatch.setattr(_parts, "CHUNK", 2)  # the pieces are cut here, run in the workers
    res = run_committee_study(small_cfg(), tmp_path, progress=False, log=lambda s: None, jobs=2)
    assert res["jobs"] == 2
    # same pieces, other processes: equal up to the last bits of BLAS sums (alignment-
    # dependent kernel paths); every count, error and stop reason is the same
    assert_close_tree(numbers(res), numbers(uninterrupted))


def assert_close_tree(a, b, path="."):
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            assert_close_tree(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close_tree(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-12), (path, a, b)
    else:
        assert a == b, (path, a, b)


def test_bp_mc_check_is_recorded_for_the_first_restarts(uninterrupted):
    for block in uninterrupted["algorithms"].values():
        rows = block["restarts"]
        assert rows[0]["bp_mc"] is not None and all(r["bp_mc"] is None for r in rows[1:])
        pts = rows[0]["bp_mc"]["points"]
        le = rows[0]["local_entropy"]
        assert [p["index"] for p in pts] == [j for j, g in enumerate(le["gamma"]) if g is not None]
        for p in pts:
            assert p["phi_bp"] == le["phi"][p["index"]]
        assert block["summary"]["bp_mc"]["restarts_checked"] == 1


def test_bp_mc_gap_flags_a_bp_value_off_by_more_than_the_mc_error():
    from wideflat.data import teacher_committee
    from wideflat.experiments.committee._measure import MC_FLAG_Z, bp_mc_gap
    from wideflat.flatness.monte_carlo import committee_gaussian_mc

    data = teacher_committee(8, 10, n_features=21, k=3, seed=2)
    w = torch.as_tensor(data.metadata["teacher"]).double()
    gammas = [40.0, 10.0]
    mc = committee_gaussian_mc(w, data.X_train.double(), data.y_train.double(), gammas,
                               samples=2000, seed=5)  # fmt: skip
    assert all(a > 0 for a in mc.accepted)
    # BP values: the first equal to the Monte Carlo estimate, the second 10 s.e. below it
    phi = [mc.phi[0], mc.phi[1] - 10 * mc.phi_se[1]]
    le = {"gamma": gammas, "phi": phi, "distance": [0.01, 0.05]}
    out = bp_mc_gap(w.float(), data, le, samples=2000, seed=5)  # same draws as above
    p0, p1 = out["points"]
    assert p0["gap"] == pytest.approx(0.0, abs=1e-15) and not p0["flagged"] and p0["resolved"]
    assert p1["z"] == pytest.approx(-10.0, rel=1e-9) and p1["flagged"] and abs(p1["z"]) > MC_FLAG_Z
    # a NaN BP point is skipped, keeping the grid index of the others
    le = {"gamma": [None, 10.0], "phi": [None, phi[1]], "distance": [0.01, 0.05]}
    (only,) = bp_mc_gap(w.float(), data, le, samples=500, seed=5)["points"]
    assert only["index"] == 1 and only["distance"] == 0.05


def test_a_crash_while_training_keeps_every_piece_finished_before_it(tmp_path, monkeypatch):
    monkeypatch.setattr(_parts, "CHUNK", 2)
    calls = []
    real_train = _parts.train_chunk
    crash = [True]

    def train(cfg, alg, start, stop, root):
        if (alg, start) == ("esgd", 2) and crash[0]:
            raise Crash("killed while training")
        calls.append((alg, start))
        return real_train(cfg, alg, start, stop, root)

    monkeypatch.setattr(_parts, "train_chunk", train)
    with pytest.raises(Crash):
        run_committee_study(small_cfg(), tmp_path, progress=False, log=lambda s: None)
    saved = sorted(p.name for p in (tmp_path / "parts" / "esgd").iterdir())
    assert saved == ["restart-0000.json", "restart-0001.json", "train-0000-0002.pt"]
    crash[0] = False
    calls.clear()
    res = run_committee_study(small_cfg(), tmp_path, progress=False, log=lambda s: None,
                              resume=True)  # fmt: skip
    assert calls == [("esgd", 2)] and res["complete"]
