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
    argv = ["demo", "--epochs", "3", "--seeds", "1", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for method in ("sgd", "esgd", "rsgd"):
        assert f"\n{method} " in printed
    assert "How to read" in printed
    results = json.loads(out.read_text())["results"]
    assert [r["method"] for r in results] == ["sgd", "esgd", "rsgd"]
    # equal budget of gradient evaluations (3 epochs of 1000 points in batches of 50)
    assert {r["grad_evals"] for r in results} == {60}
    for r in results:
        assert 0.0 <= r["test_error"] <= 1.0 and r["delta_error_se"] >= 0


def test_demo_over_seeds_prints_standard_errors_and_a_verdict_per_method(tmp_path, capsys):
    out = tmp_path / "demo.json"
    argv = ["demo", "--epochs", "3", "--seeds", "3", "--seed", "4", "--no-progress", "--out",
            str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "mean ± standard error over 3 seeds" in printed and " ± " in printed
    assert "  esgd: " in printed and "  rsgd: " in printed
    saved = json.loads(out.read_text())
    assert saved["seeds"] == [4, 5, 6] and len(saved["results"]) == 9
    # the summary is that of the per-seed results it was computed from
    sgd = [r["test_error"] for r in saved["results"] if r["method"] == "sgd"]
    rsgd = [r["test_error"] for r in saved["results"] if r["method"] == "rsgd"]
    diffs = [a - b for a, b in zip(rsgd, sgd, strict=True)]
    mean = sum(diffs) / 3
    se = (sum((d - mean) ** 2 for d in diffs) / 2 / 3) ** 0.5
    assert saved["summary"]["rsgd"]["test_error_vs_sgd"] == pytest.approx([mean, se])
    assert saved["summary"]["rsgd"]["seeds_lower_test_error"] == sum(d < 0 for d in diffs)


def test_reading_states_the_verdict_from_the_numbers():
    from wideflat.experiments.demo import reading

    def row(d_test, d_flat):
        return {"seeds": 4, "test_error_vs_sgd": d_test, "delta_error_vs_sgd": d_flat}

    lines = reading({
        "sgd": {"seeds": 4},
        "a": row((-0.05, 0.01), (-0.05, 0.01)),  # both beyond 2 s.e.
        "b": row((-0.05, 0.03), (-0.05, 0.01)),  # flatter only
        "c": row((-0.05, 0.01), (0.01, 0.01)),  # better only
        "d": row((0.01, 0.01), (0.0, 0.01)),  # neither
    })  # fmt: skip
    text = "\n".join(lines)
    assert "a: flatter and lower test error" in text and "the paper's effect." in text
    assert "b: flatter than SGD, but" in text and "c: lower test error than SGD, but" in text
    assert "d: neither" in text and "does not show" in text


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
