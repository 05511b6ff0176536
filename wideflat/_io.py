"""Small file helpers: JSON results written atomically (NaN → null), output paths checked."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


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


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as JSON (NaN → null) to ``path`` via a temporary file and ``os.replace``.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.json"
        >>> write_json_atomic(p, {"x": float("nan")}); p.read_text()
        '{\\n  "x": null\\n}'
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(json_ready(obj), f, indent=2, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
