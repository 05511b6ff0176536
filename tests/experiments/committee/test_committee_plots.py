"""Tests of Fig. 1 (wideflat.experiments.committee.plots): missing values are skipped, the
figure is written atomically without pyplot, and the old module path still works."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from wideflat._io import write_json_atomic
from wideflat.experiments.committee.plots import curve_stats, plot_fig1

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plot_survives_nan_and_empty_entries(tmp_path):
    nan = float("nan")
    restart = {
        "test_error": 0.2,
        "local_entropy": {"distance": [0.05, 0.1, 0.3], "phi_le": [-0.004, nan, None]},
        "local_energy": {"sigma": [0.0, 0.5], "mean": [0.0, nan], "sem": [0.0, None]},
    }
    broken = {"test_error": None, "local_entropy": None, "local_energy": {"sigma": []}}
    results = {
        "config": {"restarts": 2},
        "data": {"name": "synthetic"},
        "algorithms": {
            "sgd-fast": {"restarts": [restart, broken]},
            "esgd": {"restarts": []},
            "rsgd-slow": {},
            "sgd-slow": {"restarts": [{"test_error": nan}]},
        },
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))  # NaN written as the JSON extension literal
    out = plot_fig1(path, tmp_path / "fig1.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    write_json_atomic(path, results)  # NaN → null
    assert "NaN" not in path.read_text()
    assert plot_fig1(path, tmp_path / "fig2.png").read_bytes()[:8] == PNG_MAGIC
    assert plot_fig1({"algorithms": {}}, tmp_path / "empty.png").exists()


def test_curve_stats_skips_missing_values():
    mean, sem = curve_stats([[1.0, None, 2.0], [3.0, float("nan"), 4.0], [5.0]], 3)
    assert mean[0] == 2.0 and math.isnan(mean[1]) and mean[2] == 3.0
    assert math.isclose(sem[0], 1.0) and math.isnan(sem[1])


def test_plot_uses_neither_pyplot_nor_a_global_backend(tmp_path):
    code = (
        "import sys, matplotlib\n"
        "before = dict.__getitem__(matplotlib.rcParams, 'backend')\n"
        "from wideflat.experiments.committee.plots import plot_fig1\n"
        f"plot_fig1({{'algorithms': {{}}}}, {str(tmp_path / 'f.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "assert dict.__getitem__(matplotlib.rcParams, 'backend') == before\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "f.png").read_bytes()[:8] == PNG_MAGIC


def test_python_m_committee_plots_still_works(tmp_path):
    """The old entry point stays (until a ``wideflat plot`` command replaces it)."""
    src = tmp_path / "results.json"
    write_json_atomic(src, {"algorithms": {"esgd": {"restarts": []}}})
    cmd = [sys.executable, "-m", "wideflat.experiments.committee_plots"]
    done = subprocess.run([*cmd, str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "fig1.png").read_bytes()[:8] == PNG_MAGIC
    assert done.stdout.strip() == str(tmp_path / "fig1.png")
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout.startswith("usage:")
    done = subprocess.run([*cmd, str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert done.returncode == 2 and "committee_plots:" in done.stderr
