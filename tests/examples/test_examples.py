"""The scripts in ``examples/`` run as a researcher runs them, with ``--tiny`` (issue 14).

Each runs in a subprocess (``sys.executable``, one thread, a headless matplotlib) in a scratch
folder, where its files land; the tests check the exit status, the lines the script promises
and the files it writes. The resume examples are checked against an uninterrupted run, bit for
bit. The torchrun example is a multi-process test (``dist``), like tests/replicas.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import _procs
import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def run(cwd: Path, *args: str, timeout: float = 60) -> str:
    """Run ``python args...`` in ``cwd``; returns stdout, after checking exit status 0."""
    done = _procs.run([sys.executable, *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
    return done.stdout


def example(name: str) -> str:
    return str(EXAMPLES / name)


def test_every_example_has_a_docstring_and_a_tiny_flag():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == [
        "committee_from_python.py",
        "esgd_cifar_style.py",
        "flatness_of_a_checkpoint.py",
        "rsgd_plain.py",
        "rsgd_torchrun.py",
    ]
    for name in scripts:
        text = (EXAMPLES / name).read_text()
        assert text.startswith('"""') and "Run" in text and "--tiny" in text, name


def test_esgd_cifar_style(tmp_path):
    out = run(tmp_path, example("esgd_cifar_style.py"), "--tiny")
    assert "epoch 2: train loss" in out and "test error" in out
    assert "local energy dE_train(sigma) on 320 training images:" in out
    from wideflat.flatness import LocalEnergyProfile

    profile = LocalEnergyProfile.from_json(tmp_path / "esgd_local_energy.json")
    assert profile.sigmas == (0.0, 0.1, 0.2, 0.3, 0.5) and profile.delta_error[0] == 0.0
    assert f"sigma 0.50: {profile.delta_error[-1]:.4f}" in out


def test_rsgd_plain_resume_is_bit_identical(tmp_path):
    # 3 epochs (the --tiny default): the γ schedule resumed is used in epoch 3.
    whole = run(tmp_path, example("rsgd_plain.py"), "--tiny")
    cut = run(tmp_path, example("rsgd_plain.py"), "--tiny", "--interrupt-after", "1",
              "--checkpoint", "cut.pt")  # fmt: skip
    assert "interrupted after epoch 1" in cut and "final center" not in cut
    resumed = run(
        tmp_path, example("rsgd_plain.py"), "--tiny", "--resume", "--checkpoint", "cut.pt"
    )
    assert "resumed from cut.pt at epoch 1" in resumed and "epoch 1:" not in resumed
    final = [line for line in whole.splitlines() if line.startswith("final center:")]
    assert len(final) == 1 and resumed.splitlines()[-1] == final[0]
    a = torch.load(tmp_path / "rsgd_plain.pt", weights_only=True)
    b = torch.load(tmp_path / "cut.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    replicas_a = a["opt"]["replicated_sgd"]["replicas"]  # every replica, not only the model
    replicas_b = b["opt"]["replicated_sgd"]["replicas"]
    assert replicas_a.keys() == replicas_b.keys() and len(replicas_a) > len(a["model"])
    for key, value in [*a["model"].items(), *replicas_a.items()]:
        assert torch.equal(value, {**b["model"], **replicas_b}[key]), key


def test_flatness_of_a_checkpoint(tmp_path):
    out = run(tmp_path, example("flatness_of_a_checkpoint.py"), "--tiny")
    for measure in ("local energy dE_train(sigma=0.5)", "Hessian top eigenvalue", "Hessian trace",
                    "sharpness (rho=0.05)", "adaptive sharpness (rho=0.5)",
                    "PAC-Bayes sigma (1/sigma^2)", "interpolation barrier (loss)"):  # fmt: skip
        assert any(line.startswith(measure) for line in out.splitlines()), measure
    for png in ("flatness_local_energy.png", "flatness_interpolation.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_committee_from_python(tmp_path):
    out = run(tmp_path, example("committee_from_python.py"), "--tiny")
    results = json.loads((tmp_path / "committee-quick" / "results.json").read_text())
    assert results["complete"] and sorted(results["algorithms"]) == ["rsgd-fast", "sgd-fast"]
    errors = [r["test_error"] for r in results["algorithms"]["sgd-fast"]["restarts"]]
    assert f"sgd-fast: test error {sum(errors) / len(errors):.3f}" in out
    assert (tmp_path / "committee-quick" / "fig1.png").is_file()


@pytest.mark.dist
def test_rsgd_torchrun_restarts_and_resumes_bit_identically(tmp_path):
    def torchrun(folder: Path, *extra: str) -> str:
        folder.mkdir()
        return run(folder, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                   "--max-restarts=1", example("rsgd_torchrun.py"), "--tiny", *extra,
                   timeout=120)  # fmt: skip

    whole = torchrun(tmp_path / "whole")
    killed = torchrun(tmp_path / "killed", "--kill-at", "15")  # 12 steps an epoch, saved every 6
    assert "resumed" not in whole and "center of 2 replicas: test error" in whole
    assert "rank 1: crashing at step 15" in killed
    assert "rank 0: resumed from step 12" in killed and "rank 1: resumed from step 12" in killed
    assert killed.splitlines()[-1] == whole.splitlines()[-1]
    a = torch.load(tmp_path / "whole" / "rsgd_center.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "rsgd_center.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = sorted(p.name for p in (tmp_path / "killed" / "rsgd_torchrun" / "ckpt").iterdir())
    assert steps == ["step-000000018", "step-000000024"]
