"""Observable collapse (issue 13 item 1): the paper's stopping quantities, per-replica and
ensemble errors in metrics.jsonl, and --stop-at-collapse."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
import torch
from _runs import final_state, tiny_config

from wideflat.cli import build_parser
from wideflat.experiments.build import build
from wideflat.experiments.config import TrainConfig, config_hash
from wideflat.experiments.methods import evaluate_replicas
from wideflat.experiments.rundir import read_metrics
from wideflat.experiments.training import train


def _replica_states(payload: dict, y: int) -> list[dict]:
    model = payload["model"]
    return [
        {k.split(".", 2)[2]: v for k, v in model.items() if k.startswith(f"replicas.{a}.")}
        for a in range(y)
    ]


def test_rsgd_rows_carry_distances_and_replica_and_ensemble_errors(tmp_path, fashion_root):
    cfg = tiny_config(fashion_root, "rsgd")
    train(cfg, tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    last = rows[-1]
    # Recompute everything from the last checkpoint, independently of the harness's code.
    states = _replica_states(final_state(tmp_path / "run"), cfg.y)
    center = {k: sum(s[k].double() for s in states) / cfg.y for k in states[0]}
    d = [sum(0.5 * float((s[k].double() - center[k]).pow(2).sum()) for k in s) for s in states]
    assert last["replica_distance"] == pytest.approx(sum(d) / cfg.y, rel=1e-9)
    assert last["replica_distance_max"] == pytest.approx(max(d), rel=1e-9)
    run = build(cfg, torch.device("cpu"), fresh=True)
    x, t = run.data.test
    logits = []
    for state in states:
        net = copy.deepcopy(run.model)
        net.load_state_dict(state)
        with torch.no_grad():
            logits.append(net.eval()(x))
    errors = [float((out.argmax(1) != t).float().mean()) for out in logits]
    assert last["replica_test_errors"] == pytest.approx(errors, abs=1e-12)
    ensemble = float((sum(logits).argmax(1) != t).float().mean())
    assert last["ensemble_test_error"] == pytest.approx(ensemble, abs=1e-12)
    assert len(last["replica_train_errors"]) == cfg.y and 0 <= last["ensemble_train_error"] <= 1


def test_esgd_rows_carry_the_distance_to_the_running_mean(tmp_path, fashion_root):
    train(tiny_config(fashion_root, "esgd"), tmp_path / "run", progress=False)
    last = read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]
    payload = final_state(tmp_path / "run")
    weights = list(payload["model"].values())
    means = [s["mean"] for _, s in sorted(payload["optimizer"]["state"].items())]
    expected = sum(0.5 * float((w.double() - m.double()).pow(2).sum())
                   for w, m in zip(weights, means, strict=True))  # fmt: skip
    assert last["mean_distance"] == pytest.approx(expected, rel=1e-9) and expected > 0


def test_sgd_rows_have_no_collapse_quantities(tmp_path, fashion_root):
    train(tiny_config(fashion_root, "sgd", epochs=1), tmp_path / "run", progress=False)
    row = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]
    assert not {"replica_distance", "mean_distance", "replica_test_errors"} & set(row)


@pytest.mark.parametrize(
    "kind, quantity", [("rsgd", "replica_distance"), ("esgd", "mean_distance")]
)
def test_stop_at_collapse_ends_the_run_after_the_epoch_below_the_tolerance(
    tmp_path, fashion_root, kind, quantity
):
    probe = tmp_path / "probe"
    train(tiny_config(fashion_root, kind, epochs=3), probe, progress=False)
    values = [r[quantity] for r in read_metrics(probe / "metrics.jsonl")]
    tol = values[0] * 1.000001  # the first epoch is already below it
    notes = []
    summary = train(tiny_config(fashion_root, kind, epochs=3, stop_at_collapse=tol, eval_every=2),
                    tmp_path / "run", progress=False, log=notes.append)  # fmt: skip
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1] and "test_error" in rows[0]
    assert summary.epochs == 1 and quantity in summary.stop_reason
    assert any("stopping after epoch 1" in n for n in notes)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "finished" and record["summary"]["stop_reason"] == rows[0]["stop"]
    # Below the first value, the run goes on to its last epoch.
    full = train(tiny_config(fashion_root, kind, epochs=3, stop_at_collapse=min(values) / 2),
                 tmp_path / "full", progress=False)  # fmt: skip
    assert full.epochs == 3 and full.stop_reason == "epochs"


# Config fields added after runs were first checkpointed (issue 13), by hand: the hash of a
# config that leaves them at their defaults must be the hash from before they existed.
LATER = ("stop_at_collapse", "convention", "outer_gamma_scaled", "flatness_protocol",
         "energy_at_train_error", "energy_at_stationary", "warmup_kind", "coupling_every_after",
         "coupling_switch_epoch", "replica_eval_every", "energy_bn",
         "energy_save_weights")  # fmt: skip


def test_a_default_stop_at_collapse_leaves_the_config_hash_as_before():
    cfg = TrainConfig()
    old = {k: v for k, v in cfg.to_dict().items() if k not in LATER}
    before = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    assert config_hash(cfg) == before
    assert config_hash(TrainConfig(stop_at_collapse=1e-8)) != before
    with pytest.raises(ValueError, match="stop_at_collapse"):
        TrainConfig(stop_at_collapse=-1.0)


def test_the_flag_alone_means_the_papers_tolerance():
    parser = build_parser()
    args = parser.parse_args(["train", "--stop-at-collapse"])
    assert args.stop_at_collapse == 1e-8
    args = parser.parse_args(["train", "--stop-at-collapse", "1e-3"])
    assert args.stop_at_collapse == 1e-3


def test_evaluate_replicas_against_hand_made_logits():
    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, x):
            return self.logits[x.long().squeeze(-1)]

    a = Fixed(torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    b = Fixed(torch.tensor([[0.0, 1.0], [0.0, 3.0], [0.0, 2.0]]))
    x, t = torch.arange(3.0).unsqueeze(-1), torch.tensor([0, 1, 0])
    errors, ensemble = evaluate_replicas([a, b], x, t, batch=2, amp=False)
    # a: right, right, right; b: wrong, right, wrong; a + b: [2,1] right, [0,4] right, [1,2] wrong
    assert errors == [0.0, 2 / 3] and ensemble == pytest.approx(1 / 3)


def test_plot_collapse_draws_the_distances_on_a_log_scale_and_the_rsgd_errors(
    tmp_path, fashion_root, monkeypatch
):
    from wideflat.experiments import plots

    for kind in ("rsgd", "esgd", "sgd"):
        train(tiny_config(fashion_root, kind), tmp_path / "study" / kind, progress=False)
    runs = plots.collect_runs(tmp_path / "study")
    figures = []
    real = plots._figure
    monkeypatch.setattr(plots, "_figure", lambda size: figures.append(real(size)) or figures[-1])
    path = plots.plot_collapse(runs, tmp_path / "collapse.png", title="tiny")
    assert path.stat().st_size > 0
    left, right = figures[0].axes
    assert left.get_yscale() == "log"
    labels = [line.get_label() for line in left.get_lines()]
    assert any("d(w, μ)" in x for x in labels) and any("replica-center" in x for x in labels)
    assert len(right.get_lines()) == 3  # rSGD's center, replicas (mean), ensemble
    only_sgd = [r for r in runs if r.label == "sgd"]
    assert plots.plot_collapse(only_sgd, tmp_path / "none.png").stat().st_size > 0


def test_the_esgd_convention_reaches_the_optimizer_and_keeps_old_hashes(tmp_path, fashion_root):
    from wideflat.experiments.build import build

    cfg = tiny_config(fashion_root, "esgd", convention="original", outer_gamma_scaled=True)
    group = build(cfg, torch.device("cpu"), fresh=False).opt.param_groups[0]
    assert (group["convention"], group["outer_gamma_scaled"]) == ("original", True)
    base = tiny_config(fashion_root, "esgd")
    old = {k: v for k, v in base.to_dict().items() if k not in LATER}
    assert (
        config_hash(base)
        == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    )
    with pytest.raises(ValueError, match="convention"):
        tiny_config(fashion_root, "esgd", convention="ucla")


def test_metrics_csv_holds_the_same_rows_as_metrics_jsonl(tmp_path, fashion_root):
    import csv
    import math

    train(tiny_config(fashion_root, "rsgd", eval_every=2), tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    with (tmp_path / "run" / "metrics.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    for row, line in zip(rows, table, strict=True):
        for key, value in row.items():
            if key == "nonfinite":
                continue
            listed = isinstance(value, list)
            values = value if listed else [value]
            names = [f"{key}[{i}]" for i in range(len(values))] if listed else [key]
            for name, v in zip(names, values, strict=True):
                if isinstance(v, float) and math.isnan(v):
                    assert line[name] == ""
                else:
                    assert float(line[name]) == pytest.approx(float(v), rel=1e-12), name
        assert all(line[k] == "" for k in line if k.split("[")[0] not in row)  # epoch 1: no eval


def test_replica_eval_every_thins_the_replica_evaluations_but_not_the_centers(
    tmp_path, fashion_root
):
    cfg = tiny_config(fashion_root, "rsgd", epochs=4, replica_eval_every=3)
    train(cfg, tmp_path / "run", progress=False)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert all("test_error" in r and "train_error" in r for r in rows)
    keys = ("replica_train_errors", "replica_test_errors", "ensemble_train_error",
            "ensemble_test_error")  # fmt: skip
    assert [all(k in r for k in keys) for r in rows] == [False, False, True, True]  # 3, last
    every = tmp_path / "every"
    train(tiny_config(fashion_root, "rsgd", epochs=4), every, progress=False)
    full = read_metrics(every / "metrics.jsonl")
    assert all(all(k in r for k in keys) for r in full)
    for thin, whole in zip(rows, full, strict=True):  # evaluation leaves training alone
        assert thin["replica_distance"] == whole["replica_distance"]
        assert thin["test_error"] == whole["test_error"]
    stopped = tmp_path / "stopped"  # a run that stops by collapse has them at its last epoch
    train(tiny_config(fashion_root, "rsgd", epochs=4, replica_eval_every=3, stop_at_collapse=1e9),
          stopped, progress=False)  # fmt: skip
    last = read_metrics(stopped / "metrics.jsonl")
    assert len(last) == 1 and all(k in last[0] for k in keys)
