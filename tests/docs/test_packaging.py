"""Packaging promises the README makes (issue 9 E): the license file, the `[vision]` extra that
keeps the README's torch, and CI running the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> str:
    return (ROOT / "pyproject.toml").read_text()


def test_license_file_matches_the_declared_license():
    declared = re.search(r'^license = \{ text = "(\w+)" \}', _pyproject(), flags=re.M).group(1)
    assert declared == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")


def test_vision_extra_pins_the_torchvision_of_the_readme_torch():
    # torchvision 0.N is built against torch 2.(N - 15); an unpinned or mismatched torchvision
    # makes pip replace the README's CPU torch with another (CUDA) build.
    torch = re.findall(r"pip install torch==2\.(\d+)\.\d+", (ROOT / "README.md").read_text())
    assert torch and len(set(torch)) == 1
    (vision,) = re.findall(r'^vision = \["torchvision==0\.(\d+)\.\d+"\]$', _pyproject(), re.M)
    assert int(vision) == int(torch[0]) + 15


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^(pip install torch==\S+ && pip install -e \"\.\[dev\]\" && .*)$",
                        readme, flags=re.M).group(1)  # fmt: skip
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()
