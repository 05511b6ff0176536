"""TensorBoard scalars (issue 14 item 6): `--tensorboard` writes every numeric column of
metrics.csv at step = epoch, read back with TensorBoard's own reader; a resumed run's event
files hold each epoch once; without the package the run is refused before anything is written."""

from __future__ import annotations

import math
import shutil
import sys

import pytest
from _runs import tiny_config

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from wideflat.experiments.errors import RunError  # noqa: E402
from wideflat.experiments.rundir import flat_row, read_metrics  # noqa: E402
from wideflat.experiments.training import train  # noqa: E402


def tiny(data_root, kind, **kw):
    return tiny_config(data_root, kind, **{"epochs": 3, "eval_every": 2, **kw})


def events(run) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def expected(run) -> dict[str, list[tuple[int, float]]]:
    """Every finite numeric column of metrics.jsonl (as metrics.csv spreads it), by epoch."""
    out: dict[str, list[tuple[int, float]]] = {}
    for row in read_metrics(run / "metrics.jsonl"):
        for key, value in flat_row(row).items():
            if key == "epoch" or isinstance(value, str | bool):
                continue
            if math.isfinite(value):
                out.setdefault(key, []).append((row["epoch"], float(value)))
    return out


def assert_same(got, want) -> None:
    assert set(got) == set(want)
    for tag, points in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
        # TensorBoard stores scalars as float32
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag


def test_tensorboard_holds_every_metrics_column_by_epoch(tmp_path, fashion_root):
    run = tmp_path / "run"
    train(tiny(fashion_root, "rsgd"), run, progress=False, tensorboard=True)
    got = events(run)
    assert {"train_loss", "test_error", "replica_distance", "replica_test_errors[2]"} <= set(got)
    assert [s for s, _ in got["test_error"]] == [2, 3]  # evaluated epochs only
    assert_same(got, expected(run))


def test_a_resumed_run_writes_each_epoch_once(tmp_path, fashion_root):
    run = tmp_path / "run"
    cfg = tiny(fashion_root, "esgd")
    train(cfg, run, progress=False, tensorboard=True)
    newest = sorted((run / "checkpoints").glob("step-*"))[-1]
    shutil.rmtree(newest)  # killed in the last epoch's save: that epoch is trained again
    train(cfg, run, resume="auto", progress=False, tensorboard=True)
    got = events(run)
    assert [s for s, _ in got["train_loss"]] == [1, 2, 3]
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert_same(got, expected(run))


def test_without_tensorboard_the_run_is_refused_before_anything_is_written(
    tmp_path, fashion_root, monkeypatch
):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard fails
    with pytest.raises(RunError, match=r"pip install 'wideflat\[tensorboard\]'"):
        train(tiny(fashion_root, "sgd"), tmp_path / "run", progress=False, tensorboard=True)
    assert not (tmp_path / "run").exists()


def test_cli_flag(tmp_path, fashion_root, capsys):
    from wideflat.cli import main

    out = tmp_path / "study"
    argv = ["compare", "--methods", "sgd", "--seeds", "0", "--model", "mlp", "--data-root",
            fashion_root, "--train-subset", "0", "--epochs", "1", "--batch-size", "32",
            "--energy-epochs", "--set", "train_eval_subset=64", "--no-progress", "--device",
            "cpu", "--tensorboard", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert_same(events(out / "sgd-s0"), expected(out / "sgd-s0"))
