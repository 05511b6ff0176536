"""Run a command whose process tree must not outlive the test.

``subprocess.run(..., timeout=T)`` kills only the process it started: torchrun's workers, a
CLI's data-loader workers or a browser's renderers keep running after a timeout (one
``train.py`` worker ran at 100 % CPU for three hours that way). :func:`run` starts the
command in a session of its own and, when the time is up, kills the whole group before
raising ``subprocess.TimeoutExpired`` as ``subprocess.run`` does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def run(cmd, *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, timeout=timeout, **kwargs)``, killing the process group on
    timeout (and on any other exit from the wait, e.g. Ctrl-C)."""
    if kwargs.pop("capture_output", False):
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with subprocess.Popen(cmd, start_new_session=True, **kwargs) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            _kill_group(proc)
            proc.communicate()
            raise
        _kill_group(proc)  # a child the command left behind (daemonized, orphaned) goes too
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
