"""TESTING T2 #14/#17: a run SIGKILLed at random moments, resumed with --resume auto each time,
ends bit-identical to an uninterrupted run, with metrics.jsonl intact (no duplicate, missing or
torn rows). Kills land anywhere: in training, in evaluation, inside a checkpoint save."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from _runs import assert_equal_payloads, final_state, metric_rows

from wideflat.experiments.rundir import read_metrics


def _args(data_root: str, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "wideflat.cli", "train", "--method", "rsgd", "--model", "mlp",
        "--data-root", data_root, "--train-subset", "0", "--epochs", "6", "--batch-size", "16",
        "--lr", "0.05", "--set", "train_eval_subset=64", "--set", "eval_batch=64",
        "--energy-epochs", "--no-progress", "--y", "3", "--device", "cpu", "--out", str(out),
    ]  # fmt: skip


def test_random_sigkills_then_resume_are_bit_identical(tmp_path, write_fashion):
    data_root = str(write_fashion(tmp_path / "fashion", n_train=512))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = subprocess.run(_args(data_root, tmp_path / "ref"), env=env, capture_output=True)
    assert ref.returncode == 0, ref.stderr.decode()
    epoch_s = sorted(r["epoch_seconds"] for r in read_metrics(tmp_path / "ref" / "metrics.jsonl"))
    epoch_s = epoch_s[len(epoch_s) // 2]  # median time of one epoch (training + evaluation)
    run = tmp_path / "run"
    metrics = run / "metrics.jsonl"
    rng = random.Random(14)
    progress = []
    for target in range(1, 6):  # kill once the run has logged `target` epochs, + a random delay
        cmd = _args(data_root, run) + (["--resume", "auto"] if run.exists() else [])
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= target:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.9) * epoch_s)  # lands in training, evaluation or a save
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            progress.append(len(metrics.read_text().splitlines()))
        proc.communicate(timeout=120)
        assert proc.returncode in (0, -signal.SIGKILL), (target, proc.stderr)
    assert len(progress) >= 3 and sum(p < 6 for p in progress) >= 3, progress  # mid-run kills
    final = subprocess.run(
        _args(data_root, run) + ["--resume", "auto"], env=env, capture_output=True
    )
    assert final.returncode == 0, final.stderr.decode()
    assert_equal_payloads(final_state(tmp_path / "ref"), final_state(run))
    rows = read_metrics(run / "metrics.jsonl")
    epochs = [r["epoch"] for r in rows]
    assert (
        epochs
        == sorted(set(epochs))
        == [r["epoch"] for r in read_metrics(tmp_path / "ref" / "metrics.jsonl")]
    )
    assert metric_rows(tmp_path / "ref") == metric_rows(run)
    for line in (run / "metrics.jsonl").read_text().splitlines():
        json.loads(line)  # every line parses (no torn row)
