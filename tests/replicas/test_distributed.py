"""The distributed engine under torchrun (3 gloo processes on loopback).

Two launches in all: one runs the equivalence, NaN and uninterrupted-restart phases; the
second kills rank 1 at step 37 under ``--max-restarts=1`` and must finish bit-identical.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import _procs
import pytest
import torch
from _engine_problem import HYPER, SEED, Y, make_data, make_model, replica_state, train
from dist_worker import HYPER_CASES
from test_engines import assert_close_rel

from wideflat.optim import ReplicatedSGD, auto_gamma0_rsgd

pytestmark = [pytest.mark.dist, pytest.mark.slow]
WORKER = Path(__file__).with_name("dist_worker.py")


def torchrun(out: Path, *phases: str, max_restarts: int = 0, env: dict | None = None):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={Y}",
        f"--max-restarts={max_restarts}",
        str(WORKER),
        str(out),
        *phases,
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = _procs.run(cmd, capture_output=True, text=True, timeout=240, env=environment)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def first_launch(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    torchrun(
        out, "equivalence", "nan", "nan21", "mismatch", "hyper", "optresume", "gamma0", "restart"
    )
    return out


def test_distributed_equals_loop_engine(first_launch):
    loop = train("loop")
    center = loop.center().state_dict()
    for rank in range(Y):
        saved = torch.load(first_launch / f"rank-{rank}.pt", weights_only=True)
        ref = replica_state(loop, rank)
        for key, value in ref.items():
            assert_close_rel(saved["replica"][key], value, what=f"rank {rank} {key}")
        for key, value in center.items():
            assert_close_rel(saved["center"][key], value, what=f"center on rank {rank} {key}")


def test_nan_on_one_rank_stops_every_rank_in_the_same_step(first_launch):
    """Rank 1's loss is NaN at step 20 = a coupling step (K = 2): all stop there, together."""
    results = [json.loads((first_launch / f"nan-rank-{r}.json").read_text()) for r in range(Y)]
    assert [r["stopped_at"] for r in results] == [20] * Y
    assert all("replica(s) [1]" in r["message"] for r in results)
    assert "first seen on this rank at step 20" in results[1]["message"]


def test_nan_between_couplings_stops_every_rank_at_the_next_coupling(first_launch):
    """NaN at step 21 with K = 2: rank 1 stops updating, and all ranks stop at step 22."""
    results = [json.loads((first_launch / f"nan21-rank-{r}.json").read_text()) for r in range(Y)]
    assert [r["stopped_at"] for r in results] == [22] * Y
    assert all("replica(s) [1]" in r["message"] for r in results)


def test_ranks_with_different_settings_all_refuse_to_start(first_launch):
    messages = [
        json.loads((first_launch / f"mismatch-rank-{r}.json").read_text())["message"]
        for r in range(Y)
    ]
    assert all("ranks disagree" in m for m in messages), messages


def test_ranks_with_different_hyperparameters_all_refuse_to_start(first_launch):
    """reliability F3: another coupling_every (lr, γ, ...) on one rank hung until the
    process-group timeout; now every rank refuses at construction with the same message."""
    results = [json.loads((first_launch / f"hyper-rank-{r}.json").read_text()) for r in range(Y)]
    assert set(results[0]) == set(HYPER_CASES)
    for case in HYPER_CASES:
        messages = [r[case] for r in results]
        if case == "same":
            assert messages == [""] * Y
            continue
        assert len(set(messages)) == 1, (case, messages)
        assert "ranks disagree on the optimizer's settings" in messages[0], (case, messages)
        assert "rank(s) [2]" in messages[0], (case, messages)


def test_rank_restores_its_replica_from_the_optimizer_state_dict(first_launch):
    for rank in range(Y):
        result = json.loads((first_launch / f"optresume-rank-{rank}.json").read_text())
        assert result["identical"], rank
        assert f"holding replica(s) [{(rank + 1) % Y}]" in result["wrong_rank"], result


def test_auto_gamma0_rsgd_agrees_with_the_loop_engine(first_launch):
    """D4: auto_gamma0_rsgd takes the distributed engine too; every rank gets the loop γ0."""
    x, t = make_data()
    loop = ReplicatedSGD(make_model(), y=Y, engine="loop", seed=SEED, **HYPER)
    expected = auto_gamma0_rsgd(loop, lambda m: torch.nn.functional.cross_entropy(m(x), t))
    values = [
        json.loads((first_launch / f"gamma0-rank-{r}.json").read_text())["gamma0"] for r in range(Y)
    ]
    assert len(set(values)) == 1
    assert values[0] == pytest.approx(expected, rel=1e-6)


def test_killed_rank_resumes_bit_identical(first_launch, tmp_path):
    torchrun(tmp_path, "restart", max_restarts=1, env={"KILL_AT": "37"})
    for rank in range(Y):
        resumed = json.loads((tmp_path / f"resumed-rank-{rank}.json").read_text())
        assert resumed["start"] == 35  # the last checkpoint committed before the kill
        final = torch.load(tmp_path / f"final-rank-{rank}.pt", weights_only=True)
        reference = torch.load(first_launch / f"final-rank-{rank}.pt", weights_only=True)
        for key, value in reference.items():
            assert torch.equal(final[key], value), f"rank {rank} {key}"
