"""The training loop and its run folder: kill/resume bit-identity, NaN policy, measurements,
provenance, engines."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _runs import assert_equal_payloads, final_state, metric_rows

from wideflat.experiments.checkpoint import load_checkpoint, save_checkpoint, verify_checkpoint
from wideflat.experiments.config import TrainConfig, lr_at
from wideflat.experiments.errors import NonFiniteRunError
from wideflat.experiments.presets import preset_config
from wideflat.experiments.rundir import read_metrics
from wideflat.experiments.training import train

DRIVER = str(Path(__file__).resolve().parents[1] / "_faults.py")


def tiny(data_root, kind="sgd", **kw):
    base = dict(
        data_root=data_root,
        model="mlp",
        train_subset=0,
        epochs=3,
        batch_size=32,
        lr=0.05,
        lr_schedule="multistep:2",
        eval_every=1,
        energy_epochs=(),
        train_eval_subset=64,
        eval_batch=64,
        gamma="exp:auto:x10",  # short runs: keep lr·K·γ < 1
    )
    base.update(kw)
    return preset_config("fashion-smallconvnet", kind, **base)


def _steps_per_epoch(run: Path) -> int:
    return json.loads((run / "run.json").read_text())["budget"]["steps_per_epoch"]


@pytest.mark.parametrize("kind", ["rsgd", "esgd"])
def test_fault_in_save_then_resume_is_bit_identical(tmp_path, fashion_root, kind, faults):
    cfg = tiny(fashion_root, kind, energy_epochs=(2,), energy_samples=2, energy_subset=32)
    train(cfg, tmp_path / "ref", progress=False)
    faults.save("after_tmp", step=2 * _steps_per_epoch(tmp_path / "ref"))
    with pytest.raises(faults.InjectedFault):
        train(cfg, tmp_path / "cut", progress=False)
    faults.clear()
    assert len(read_metrics(tmp_path / "cut" / "metrics.jsonl")) == 2  # written before the save
    train(cfg, tmp_path / "cut", resume="auto", progress=False)
    assert_equal_payloads(final_state(tmp_path / "ref"), final_state(tmp_path / "cut"))
    assert metric_rows(tmp_path / "ref") == metric_rows(tmp_path / "cut")
    assert [r["epoch"] for r in read_metrics(tmp_path / "cut" / "metrics.jsonl")] == [1, 2, 3]
    ref = json.loads((tmp_path / "ref" / "energy" / "epoch-0002.json").read_text())
    cut = json.loads((tmp_path / "cut" / "energy" / "epoch-0002.json").read_text())
    assert ref["delta_error"] == cut["delta_error"]


def test_killed_process_resumes_bit_identical(tmp_path, fashion_root):
    """A real process death (os._exit inside the save, like SIGKILL), resumed by the CLI."""
    args = [
        "train", "--method", "rsgdxy", "--model", "mlp", "--data-root", fashion_root,
        "--train-subset", "0", "--epochs", "3", "--batch-size", "32", "--lr", "0.05",
        "--set", "train_eval_subset=64", "--set", "eval_batch=64", "--energy-epochs",
        "--no-progress", "--y", "2", "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    wideflat = [sys.executable, "-m", "wideflat.cli"]
    ref = subprocess.run([*wideflat, *args, "--out", str(tmp_path / "ref")], env=env,
                         capture_output=True)  # fmt: skip
    assert ref.returncode == 0, ref.stderr.decode()
    step = str(2 * _steps_per_epoch(tmp_path / "ref"))
    kill = [sys.executable, DRIVER, "--save", "after_rename", "--exit", "--step", step, "--"]
    cut = subprocess.run([*kill, *args, "--out", str(tmp_path / "cut")], env=env,
                         capture_output=True)  # fmt: skip
    assert cut.returncode == 1, cut.stderr.decode()
    again = subprocess.run([*wideflat, *args, "--out", str(tmp_path / "cut"), "--resume", "auto"],
                           env=env, capture_output=True)  # fmt: skip
    assert again.returncode == 0, again.stderr.decode()
    assert "resuming" in again.stderr.decode() and "from epoch 1" in again.stderr.decode()
    assert_equal_payloads(final_state(tmp_path / "ref"), final_state(tmp_path / "cut"))
    assert metric_rows(tmp_path / "ref") == metric_rows(tmp_path / "cut")
    assert not list((tmp_path / "cut").rglob("*.tmp"))


@pytest.mark.parametrize(("kind", "replica"), [("rsgd", 1), ("sgd", 0), ("sam", 0), ("esgd", 0)])
def test_nonfinite_loss_stops_in_the_same_step_with_checkpoint_intact(
    tmp_path, fashion_root, faults, kind, replica
):
    cfg = tiny(fashion_root, kind, epochs=3)
    out = tmp_path / "run"
    train(cfg.replace(epochs=1), tmp_path / "probe", progress=False)
    steps = _steps_per_epoch(tmp_path / "probe")
    bad_step = steps + min(2, steps)  # in epoch 2 (eSGD: one outer step per epoch here)
    faults.loss(float("nan"), step=bad_step, replica=replica)
    with pytest.raises(NonFiniteRunError) as info:
        train(cfg, out, progress=False)
    assert str(info.value) == f"non-finite loss at epoch 2 step {bad_step} replica {replica}"
    assert info.value.exit_code == 3
    steps_dirs = sorted((out / "checkpoints").glob("step-*"))
    assert [d.name for d in steps_dirs] == [f"step-{steps:09d}"]
    verify_checkpoint(steps_dirs[-1])
    _, payload = load_checkpoint(out / "checkpoints")
    assert all(torch.isfinite(t).all() for t in payload["model"].values() if t.is_floating_point())
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


def _as_before_the_lr_scheduler(tree, lr: float) -> None:
    """Make an optimizer state look saved before the LR was a scheduler: every param group
    holds the lr of the last step taken and no ``initial_lr``."""
    if isinstance(tree, dict):
        for group in tree.get("param_groups", []):
            group["lr"] = lr
            group.pop("initial_lr", None)
        for value in tree.values():
            _as_before_the_lr_scheduler(value, lr)
    elif isinstance(tree, list | tuple):
        for value in tree:
            _as_before_the_lr_scheduler(value, lr)


@pytest.mark.parametrize("kind", ["rsgd", "sgd"])
def test_a_checkpoint_without_lr_scheduler_state_resumes_bit_identical(
    tmp_path, fashion_root, kind
):
    cfg = tiny(fashion_root, kind, lr_schedule="multistep:1.5,2.5", warmup_epochs=0.7,
               warmup_lr=0.01)  # fmt: skip
    train(cfg, tmp_path / "ref", progress=False)
    old = Path(shutil.copytree(tmp_path / "ref", tmp_path / "old"))
    newest, previous = sorted((old / "checkpoints").glob("step-*"), reverse=True)[:2]
    manifest = json.loads((previous / "MANIFEST.json").read_text())
    step, payload = load_checkpoint(old / "checkpoints", step=manifest["step"])
    shutil.rmtree(newest)
    del payload["lr"]
    _as_before_the_lr_scheduler(payload["optimizer"], lr_at(cfg, (step - 1) / (step // 2)))
    save_checkpoint(old / "checkpoints", step, payload, config_hash=manifest["config_hash"],
                    config=manifest["config"])  # fmt: skip
    lines = (old / "metrics.jsonl").read_text().splitlines(keepends=True)
    (old / "metrics.jsonl").write_text("".join(lines[:2]))
    train(cfg, old, resume="auto", progress=False)
    want, got = final_state(tmp_path / "ref"), final_state(old)
    assert_equal_payloads(want["model"], got["model"])
    assert metric_rows(tmp_path / "ref") == metric_rows(old)  # the logged lr included


def test_measurements_do_not_change_the_trajectory(tmp_path, fashion_root):
    cfg = tiny(fashion_root, "esgd", epochs=2)
    train(cfg, tmp_path / "plain", progress=False)
    measured = cfg.replace(energy_epochs=(0, 1, 2), energy_samples=2, energy_subset=32)
    train(measured, tmp_path / "measured", progress=False)
    a, b = final_state(tmp_path / "plain"), final_state(tmp_path / "measured")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k])
    assert sorted(p.name for p in (tmp_path / "measured" / "energy").iterdir()) == [
        "epoch-0000.json", "epoch-0001.json", "epoch-0002.json",
    ]  # fmt: skip


def test_run_folder_records_config_environment_and_strict_json(tmp_path, fashion_root):
    cfg = tiny(fashion_root, "rsgd", epochs=2, seed=3)
    summary = train(cfg, tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "finished" and record["seed"] == 3
    assert TrainConfig.from_dict(record["config"]) == cfg
    assert record["environment"]["torch"] == torch.__version__
    assert "commit" in record["environment"]
    assert record["budget"]["grad_evals_per_step"] == 3
    assert record["summary"]["test_error"] == summary.test_error
    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert not list((tmp_path / "run").rglob("*.tmp"))


def test_vmap_engine_trains_like_the_loop_engine(tmp_path, fashion_root):
    loop = train(tiny(fashion_root, "rsgd", epochs=2), tmp_path / "loop", progress=False)
    vmap = train(
        tiny(fashion_root, "rsgd", epochs=2, engine="vmap"), tmp_path / "vmap", progress=False
    )
    assert vmap.test_error == pytest.approx(loop.test_error, abs=1 / 64)
    assert vmap.train_loss == pytest.approx(loop.train_loss, rel=1e-4)


def test_a_gamma_schedule_that_overshoots_is_warned_about_with_the_number(tmp_path, fashion_root):
    notes = []
    cfg = tiny(fashion_root, "rsgd", epochs=1, lr=0.05, coupling_every=2, gamma="exp:1:x100")
    with pytest.warns(RuntimeWarning):  # the focusing scheduler's own warning, at runtime
        train(cfg, tmp_path / "run", progress=False, log=notes.append)
    # planned peak: lr · K · γ_final = 0.05 · 2 · 100 = 10, at the end of epoch 1
    assert any("coupling step of 10 >= 1 at epoch 1" in n for n in notes), notes
    notes.clear()
    train(tiny(fashion_root, "rsgd", epochs=1), tmp_path / "ok", progress=False, log=notes.append)
    assert not any("coupling step" in n for n in notes)


def test_run_json_records_the_data_folder_actually_read(tmp_path, fashion_root):
    train(tiny(fashion_root, "sgd", epochs=1), tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert Path(record["data_source"]).resolve() == Path(fashion_root).resolve()
