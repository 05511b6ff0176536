"""Short runs give the recorded fingerprints (issue 10 item 7): moving code must not change
what `wideflat train`, `demo` and `committee --quick` compute. A deliberate change regenerates
``hashes.json`` (``python tests/golden/golden_runs.py --write`` under the environment below) and
says why in the commit and the README."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# Baseline kernels on any x86-64 CPU: ATen's and oneDNN's dispatch and MKL's code path pinned.
PINNED = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MPLBACKEND": "Agg",
}


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 fingerprints")
def test_short_runs_give_the_recorded_fingerprints():
    done = subprocess.run([sys.executable, str(HERE / "golden_runs.py")],
                          env={**os.environ, **PINNED}, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    expected = json.loads((HERE / "hashes.json").read_text())
    assert got == expected
