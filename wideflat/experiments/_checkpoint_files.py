"""The on-disk format of a checkpoint (``wideflat.experiments.checkpoint``): its errors,
folder and file names, payload serialisation, manifest validation and file verification."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .._io import tmp_path, write_bytes_atomic

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "CheckpointError",
    "ConfigMismatchError",
    "NoCheckpointError",
]

logger = logging.getLogger("wideflat.experiments.checkpoint")

FORMAT_VERSION = 1  # bump when the layout or the manifest changes incompatibly
_FORMAT = "wideflat-checkpoint"
MANIFEST = "MANIFEST.json"
_STEP_RE = re.compile(r"^step-(\d{9})$")
_MAX_STEP = 999_999_999  # nine digits in the folder name
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's (zip) format starts with a local file header
_CHUNK = 1 << 20  # bytes per read call when hashing


class CheckpointError(Exception):
    """A checkpoint cannot be written, found, verified or used.

    The message is one line, ``"<file>: <reason>"``.

    Attributes:
        path: the file or folder at fault.
        reason: what is wrong with it.
        corrupt: True when the checkpoint is damaged or incomplete (``load_checkpoint`` with
            ``step=None`` skips it and tries an older one); False when it is intact but
            unusable by this run (newer format, config hash or world size mismatch), which
            is raised at once.

    Example:
        >>> str(CheckpointError("ckpt/step-000000005/rank-0.pt", "truncated (10 of 99 bytes)"))
        'ckpt/step-000000005/rank-0.pt: truncated (10 of 99 bytes)'
    """

    def __init__(self, path: str | os.PathLike, reason: str, *, corrupt: bool = True):
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())  # keep the message on one line
        self.corrupt = corrupt
        super().__init__(f"{self.path}: {self.reason}")


class NoCheckpointError(CheckpointError):
    """The folder holds no committed checkpoint at all (``latest_step(d, verify=False)`` is None).

    Example:
        >>> import tempfile
        >>> from wideflat.experiments.checkpoint import load_checkpoint
        >>> with tempfile.TemporaryDirectory() as d:
        ...     try:
        ...         load_checkpoint(d)
        ...     except NoCheckpointError as e:
        ...         print(e.reason)
        no committed checkpoint
    """


class ConfigMismatchError(CheckpointError):
    """The checkpoint was saved by a run of another configuration (never ``corrupt``).

    The reason names the fields that differ when both configs are known (saved with
    ``config=`` and loaded with ``config=``).

    Attributes:
        differences: ``{field: (checkpoint value, this run's value)}``; empty when unknown.
    """

    def __init__(self, path: str | os.PathLike, reason: str, differences: dict[str, tuple]):
        self.differences = differences
        super().__init__(path, reason, corrupt=False)


for _error in (CheckpointError, NoCheckpointError, ConfigMismatchError):
    _error.__module__ = "wideflat.experiments.checkpoint"  # their public home


def _differences(saved: Any, current: Any) -> dict[str, tuple]:
    """``{key: (saved value, current value)}`` for the keys of two dicts whose values differ."""
    if not isinstance(saved, Mapping) or not isinstance(current, Mapping):
        return {}
    missing = object()
    return {
        k: (saved.get(k), current.get(k))
        for k in sorted(set(saved) | set(current))
        if saved.get(k, missing) != current.get(k, missing)
    }


# --------------------------------------------------------------------------- helpers


def _step_dir(directory: Path, step: int) -> Path:
    return directory / f"step-{step:09d}"


def _rank_name(rank: int) -> str:
    return f"rank-{rank}.pt"


def _list_steps(directory: Path) -> list[tuple[int, Path]]:
    """All ``step-*`` folders, newest first."""
    if not directory.is_dir():
        return []
    found = []
    for child in directory.iterdir():
        m = _STEP_RE.match(child.name)
        if m and child.is_dir():
            found.append((int(m.group(1)), child))
    return sorted(found, reverse=True)


def _committed(directory: Path) -> list[tuple[int, Path]]:
    return [(s, d) for s, d in _list_steps(directory) if (d / MANIFEST).is_file()]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Invalid {name}: {value!r} (expected an int)")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"Invalid {name}: {value} (expected {bound})")
    return value


# --------------------------------------------------------------------------- writing


def _serialise(payload: dict, rank: int) -> bytes:
    """``torch.save`` to bytes, refusing payloads that ``weights_only`` loading rejects."""
    if not isinstance(payload, dict):
        raise TypeError(f"Invalid payload: expected a dict, got {type(payload).__name__}")
    try:
        data = _round_trip(payload)
    except Exception as e:  # unpicklable, or not weights_only-loadable
        where = _find_unloadable(payload, "payload") or "payload"
        raise TypeError(
            f"Invalid payload for rank {rank}: {where} cannot be saved and loaded with "
            f"torch.load(weights_only=True) ({_unpickler_reason(e)}); store tensors, numbers, "
            "str, bytes, None, lists, tuples and dicts only"
        ) from None
    return data


def _round_trip(obj: Any) -> bytes:
    """``torch.save`` to bytes, then load them back with ``weights_only=True``."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    # map_location="meta" checks the pickle without copying the tensor data.
    torch.load(io.BytesIO(data), map_location="meta", weights_only=True)
    return data


def _unpickler_reason(e: Exception) -> str:
    m = re.search(r"WeightsUnpickler error: (.*?)(?: was not an allowed|\.?\n|$)", str(e))
    return m.group(1).strip() if m else f"{type(e).__name__}: {e}"


def _find_unloadable(obj: Any, where: str) -> str | None:
    """The first leaf of ``obj`` (as ``payload['a'][0]``) that fails a weights_only round trip."""
    if isinstance(obj, dict):
        items = [(f"{where}[{k!r}]", v) for k, v in obj.items()]
    elif isinstance(obj, list | tuple):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(obj)]
    else:
        try:
            _round_trip(obj)
        except Exception:
            return f"{where} ({type(obj).__module__}.{type(obj).__qualname__})"
        return None
    for sub, value in items:
        if (found := _find_unloadable(value, sub)) is not None:
            return found
    return None


def _write(path: Path, data: bytes) -> None:
    """:func:`wideflat._io.write_bytes_atomic`; a failed write (ENOSPC, EIO, ...) is a
    CheckpointError naming the temporary file, older checkpoints untouched."""
    try:
        write_bytes_atomic(path, data)
    except OSError as e:
        tmp = tmp_path(path)
        raise CheckpointError(tmp, f"write failed ({e}); older checkpoints are untouched") from e


def _remove_step(step_dir: Path) -> None:
    """Delete a step folder, uncommitting it first so a crash here leaves it incomplete."""
    try:
        (step_dir / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(step_dir)
    except OSError as e:  # pruning is housekeeping: the new step is already committed
        logger.warning("could not remove %s: %s", step_dir, e)


def _prune(directory: Path, step: int, keep: int | None) -> None:
    kept_committed = 0
    for s, d in _list_steps(directory):
        if s > step:
            logger.warning("removing %s: newer than the step just saved (%d)", d, step)
            _remove_step(d)
        elif s == step or (d / MANIFEST).is_file():
            kept_committed += 1
            if keep is not None and kept_committed > keep:
                _remove_step(d)
                continue
            for tmp in d.glob("*.tmp"):
                tmp.unlink(missing_ok=True)
        else:  # incomplete and older than the newest committed step
            _remove_step(d)
    for tmp in directory.glob("*.tmp"):
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- reading


def _read_manifest(step_dir: Path) -> dict:
    """Parse and validate ``MANIFEST.json`` (not the rank files)."""
    path = step_dir / MANIFEST
    if not step_dir.is_dir():
        raise CheckpointError(step_dir, "no such checkpoint folder")
    if not path.is_file():
        raise CheckpointError(path, "missing (incomplete checkpoint: the save never committed)")
    raw = path.read_bytes()
    if not raw:
        raise CheckpointError(path, "empty manifest")
    try:
        m = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            path, f"not a wideflat checkpoint (manifest is not JSON: {e})"
        ) from None
    if not isinstance(m, dict) or m.get("format") != _FORMAT:
        raise CheckpointError(
            path, "not a wideflat checkpoint (no 'format': 'wideflat-checkpoint')"
        )
    version = m.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(path, f"malformed manifest: format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            path,
            f"format version {version} is newer than this wideflat supports ({FORMAT_VERSION}); "
            "upgrade wideflat",
            corrupt=False,
        )
    step, world = m.get("step"), m.get("world_size")
    dir_match = _STEP_RE.match(step_dir.name)
    if not isinstance(step, int) or (dir_match and int(dir_match.group(1)) != step):
        raise CheckpointError(path, f"malformed manifest: step {step!r} in {step_dir.name}")
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise CheckpointError(path, f"malformed manifest: world_size {world!r}")
    if not isinstance(m.get("config_hash"), str):
        raise CheckpointError(path, "malformed manifest: config_hash is not a str")
    files = m.get("files")
    if not isinstance(files, list) or len(files) != world:
        raise CheckpointError(path, f"malformed manifest: 'files' does not list {world} ranks")
    for r, entry in enumerate(files):
        ok = (
            isinstance(entry, dict)
            and entry.get("rank") == r
            and entry.get("name") == _rank_name(r)  # also rules out paths outside step_dir
            and isinstance(entry.get("size"), int)
            and re.fullmatch(r"[0-9a-f]{64}", str(entry.get("sha256"))) is not None
        )
        if not ok:
            raise CheckpointError(path, f"malformed manifest: bad entry for rank {r}")
    return m


def _verify_file(path: Path, size: int, sha256: str) -> None:
    if not path.is_file():
        raise CheckpointError(path, "missing")
    actual = path.stat().st_size
    if actual == 0:
        raise CheckpointError(path, f"empty file (0 bytes, manifest says {size})")
    with open(path, "rb") as f:
        head = f.read(len(_ZIP_MAGIC))
    if head != _ZIP_MAGIC:
        raise CheckpointError(path, "not a wideflat checkpoint (no torch.save zip header)")
    if actual < size:
        raise CheckpointError(path, f"truncated ({actual} of {size} bytes)")
    if actual != size:
        raise CheckpointError(path, f"size mismatch ({actual} bytes, manifest says {size})")
    digest = _sha256(path)
    if digest != sha256:
        raise CheckpointError(
            path, f"SHA-256 mismatch (file {digest[:12]}..., manifest {sha256[:12]}...)"
        )


def _verified_manifest(step_dir: Path) -> dict:
    m = _read_manifest(step_dir)
    for entry in m["files"]:
        _verify_file(step_dir / entry["name"], entry["size"], entry["sha256"])
    return m
