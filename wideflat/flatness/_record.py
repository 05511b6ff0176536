"""Strict-JSON round trip of the frozen result dataclasses every flatness measure returns.

:class:`JsonRecord` gives a result ``to_dict`` / ``from_dict`` / ``to_json`` / ``from_json``:
``{"format": ..., "version": ..., field: value, ...}`` with NaN and ±inf written as ``null``
(strict JSON), read back by the field's declared type: ``null`` in a field that holds floats
and not ``None`` becomes NaN, lists become tuples, integers in float fields become floats.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, ClassVar

from wideflat._io import json_ready

__all__ = ["JsonRecord", "versions_and_time"]


class JsonRecord:
    """Mixin for a frozen result dataclass: set ``FORMAT`` (and ``KIND``, the word error
    messages use, e.g. ``"profile"``)."""

    FORMAT: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    KIND: ClassVar[str] = "result"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN and ±inf are written as ``None``)."""
        out: dict[str, Any] = {"format": self.FORMAT, "version": self.VERSION}
        for f in fields(self):  # type: ignore[arg-type]
            out[f.name] = json_ready(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Inverse of :meth:`to_dict` (``None`` in a float field is read back as NaN)."""
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT:
            raise ValueError(f"Invalid {cls.KIND} dict: format is not {cls.FORMAT!r}")
        if data.get("version") != cls.VERSION:
            raise ValueError(
                f"Invalid {cls.KIND} dict: unsupported version {data.get('version')!r}"
            )
        kwargs: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                kind = str(f.type)
                kwargs[f.name] = _decode(data[f.name], "float" in kind and "None" not in kind)
        missing = [
            f.name
            for f in fields(cls)  # type: ignore[arg-type]
            if f.name not in kwargs and f.default is MISSING and f.default_factory is MISSING
        ]
        if missing:
            raise ValueError(f"Invalid {cls.KIND} dict: missing keys {missing}")
        return cls(**kwargs)

    def to_json(self, path: str | Path) -> Path:
        """Write the result to ``path`` as strict JSON (no NaN literals); returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), allow_nan=False, indent=1) + "\n")
        return path

    @classmethod
    def from_json(cls, path: str | Path):
        """Read a result written by :meth:`to_json`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"Invalid {cls.KIND} file {str(path)!r}: {exc}") from exc
        return cls.from_dict(data)


def _decode(value: Any, floats: bool) -> Any:
    if isinstance(value, list):
        return tuple(_decode(v, floats) for v in value)
    if value is None:
        return math.nan if floats else None
    if floats and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def versions_and_time(t_start: float) -> dict[str, Any]:
    """The provenance fields every result shares: torch and wideflat versions, and the wall
    time since ``t_start`` (a ``time.perf_counter()`` reading)."""
    import torch

    from wideflat import __version__

    return {
        "torch_version": torch.__version__,
        "wideflat_version": __version__,
        "wall_time_s": time.perf_counter() - t_start,
    }
