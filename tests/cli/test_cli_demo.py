"""The ``wideflat`` command line: demo end to end, help, and bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from wideflat.cli import main
from wideflat.experiments.demo import DemoConfig, run_method


def test_demo_end_to_end_writes_json(tmp_path, capsys):
    out = tmp_path / "demo.json"
    assert main(["demo", "--epochs", "3", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for method in ("sgd", "esgd", "rsgd"):
        assert f"\n{method} " in printed
    results = json.loads(out.read_text())["results"]
    assert [r["method"] for r in results] == ["sgd", "esgd", "rsgd"]
    # equal budget of gradient evaluations (3 epochs of 1000 points in batches of 50)
    assert {r["grad_evals"] for r in results} == {60}
    for r in results:
        assert 0.0 <= r["test_error"] <= 1.0 and r["delta_error_se"] >= 0


def test_demo_training_actually_learns():
    result = run_method("sgd", DemoConfig(epochs=10), progress=False)
    assert result.train_error < 0.2  # chance is 0.75 with 4 classes


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--epochs", "0"], "must be >= 1"),
        (["demo", "--epochs", "ten"], "not an integer"),
        (["demo", "--methods", "adam"], "unknown method 'adam'"),
    ],
)
def test_bad_inputs_give_one_line_and_nonzero_exit(argv, message):
    proc = subprocess.run(
        [sys.executable, "-m", "wideflat.cli", *argv], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_help_explains_commands():
    proc = subprocess.run(
        [sys.executable, "-m", "wideflat.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "demo" in proc.stdout
