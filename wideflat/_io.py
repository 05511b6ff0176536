"""File helpers shared by the harness: one atomic writer, JSON/JSONL, output checks, provenance.

Every result file (run.json, metrics.jsonl, checkpoint rank files and manifests, committee
results, demo JSON) is written by :func:`write_bytes_atomic`: a temporary file beside the
target (``NAME.tmp``), flushed and fsynced, renamed over the target with ``os.replace``,
then the folder fsynced, so a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "check_output_file",
    "environment",
    "fsync_dir",
    "git_commit",
    "json_ready",
    "read_jsonl",
    "tmp_path",
    "unwritable_reason",
    "write_bytes_atomic",
    "write_json_atomic",
]


def json_ready(v: Any) -> Any:
    """JSON-ready copy: NaN/Inf → None, tuples → lists, numpy scalars → Python."""
    if isinstance(v, dict):
        return {str(k): json_ready(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_ready(x) for x in v]
    if isinstance(v, np.ndarray):
        return json_ready(v.tolist())
    if isinstance(v, np.generic):
        return json_ready(v.item())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def tmp_path(path: str | os.PathLike) -> Path:
    """The temporary file :func:`write_bytes_atomic` writes before renaming: ``NAME.tmp``."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


def fsync_dir(path: str | os.PathLike) -> None:
    """Make renames and creations inside the folder ``path`` durable (POSIX only)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: tmp file → flush + fsync → ``os.replace`` →
    fsync the folder.

    A failure while writing the tmp file (disk full, ``KeyboardInterrupt``) removes it and
    re-raises; the target is untouched either way. A process killed after the tmp file is
    complete but before the rename leaves ``NAME.tmp`` behind (checkpoint saves prune them).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
        >>> write_bytes_atomic(p, b"abc"); p.read_bytes(), tmp_path(p).exists()
        (b'abc', False)
    """
    path = Path(path)
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON (NaN → null) to ``path`` with :func:`write_bytes_atomic`.

    An object that is not JSON-able raises ``TypeError`` before anything is written.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.json"
        >>> write_json_atomic(p, {"x": float("nan")}); p.read_text()
        '{\\n  "x": null\\n}'
    """
    text = json.dumps(json_ready(obj), indent=2, allow_nan=False)
    write_bytes_atomic(path, text.encode())


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The JSON objects of a JSON-lines file, one per line; other lines are skipped and an
    unreadable or missing file gives ``[]`` (for readers that must never fail, e.g. plots)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def unwritable_reason(folder: str | os.PathLike) -> str | None:
    """Why files cannot be created in ``folder`` (which need not exist yet), or None.

    The one writability check of the command line: the nearest existing ancestor must be a
    folder this process may write to and enter.

    Example:
        >>> import tempfile
        >>> print(unwritable_reason(tempfile.gettempdir()))
        None
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def check_output_file(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path` once it can be written as a file, else ValueError.

    Checked before a long computation whose result goes there: the folder must exist and be
    writable, and ``path`` must not be a folder.

    Example:
        >>> import tempfile
        >>> check_output_file(tempfile.gettempdir())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: output file ... is a folder (expected a file name)
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise ValueError(f"output file {path} is a folder (expected a file name)")
    if not folder.is_dir():
        raise ValueError(f"cannot write output file {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write output file {path}: folder {folder} is not writable")
    return path


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """``git describe --always --dirty`` of the wideflat source tree, or None when wideflat
    is not running from a git checkout of its own (an installed wheel, no git)."""
    package = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(package), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() / package.name != package:
        return None  # no git, or the package sits inside some other repository
    return git("describe", "--always", "--dirty")


def environment(device: Any = None) -> dict[str, Any]:
    """Provenance of a result: versions (wideflat with its git commit when available, torch,
    numpy, Python), platform, and with ``device`` given its name and torch's thread count."""
    import platform
    import sys

    import torch

    from . import __version__

    env: dict[str, Any] = {
        "wideflat": __version__,
        "commit": git_commit(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    if device is None:
        return env
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        cpu = platform.processor() or platform.machine()
        name = f"{device.type} ({cpu}, {torch.get_num_threads()} threads)"
    env.update(
        device=str(device),
        device_name=name,
        torch_threads=torch.get_num_threads(),
        cuda=torch.version.cuda,
    )
    return env
