"""The tests' process runner leaves nothing behind when a command times out."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import _procs
import pytest

# A parent that starts a long-lived child (as torchrun starts its workers), prints the
# child's pid and waits for it.
PARENT = (
    "import subprocess, sys; "
    "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print(c.pid, flush=True); c.wait()"
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_a_timeout_kills_the_commands_children_too(tmp_path):
    log = tmp_path / "out.txt"
    with open(log, "w") as out, pytest.raises(subprocess.TimeoutExpired):
        _procs.run([sys.executable, "-c", PARENT], stdout=out, timeout=3)
    child = int(log.read_text().split()[0])
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def test_a_command_that_ends_returns_its_status_and_output():
    done = _procs.run([sys.executable, "-c", "print('hi'); raise SystemExit(3)"],
                      capture_output=True, text=True, timeout=30)  # fmt: skip
    assert (done.returncode, done.stdout) == (3, "hi\n")
