"""Atomic, verified checkpoints for single- and multi-process runs.

A checkpoint is one folder per step, one file per rank, and a manifest that commits them::

    directory/
        step-000000035/
            rank-0.pt           torch.save of rank 0's payload
            rank-1.pt           ... one file per rank (replica) ...
            MANIFEST.json       written last: the commit marker

``MANIFEST.json`` holds ``format`` (``"wideflat-checkpoint"``), ``format_version``, ``step``,
``world_size``, ``config_hash``, optionally ``config`` (the configuration the hash stands
for, so that a mismatch names the fields that differ), ``files`` (per rank: ``rank``,
``name``, ``size`` in bytes, ``sha256``), ``wideflat_version``, ``torch_version`` and
``created`` (UTC, ISO 8601).

Save protocol (:func:`save_checkpoint`, called by every rank with the same arguments except
``payload`` and ``rank``):

1. The payload is serialised in memory and checked to load with
   ``torch.load(weights_only=True)``; a payload that would not is refused before anything
   is written.
2. Each rank writes ``rank-r.pt.tmp``, flushes and fsyncs it, ``os.replace``s it onto
   ``rank-r.pt`` and fsyncs the folder.
3. ``barrier()``: every rank's file is in place.
4. Rank 0 hashes every rank's file and writes ``MANIFEST.json`` the same atomic way. The
   step is committed once the manifest's rename is durable. Rank 0 then prunes: committed
   steps older than the newest ``keep``, step folders without a manifest (and stray
   ``*.tmp``) older than this step, and every step folder *newer* than this step (they belong
   to a timeline abandoned when the run resumed from an earlier checkpoint).
5. ``barrier()``: nobody starts the next save before the pruning is done.

A crash at any point leaves either the new step committed or the previous committed step
untouched: the new step has no manifest, or its manifest's hashes do not match the files
(re-saving a step that already had a manifest), and :func:`load_checkpoint` skips it.

Load (:func:`load_checkpoint`) picks the newest committed step whose files *all* verify
(size and SHA-256), so that every rank of a multi-process run picks the same step; it skips
and logs corrupt or incomplete ones. Byte flips inside a tensor are not detected by
``torch.load``; the SHA-256 check catches them.

Fault injection (tests and kill/restart harnesses): the environment variable
``WIDEFLAT_FAULT=save:<point>[:exit][@step=S][@rank=R][@restart=N]`` makes a save fail at
``<point>``, one of ``before_write`` (before the rank file is opened), ``mid_write`` (half
of the rank file written and flushed), ``after_tmp`` (``rank-r.pt.tmp`` complete, before the
rename) and ``after_rename`` (rank file in place, before the barrier and the manifest). It
raises :class:`InjectedFault`, or with ``:exit`` calls ``os._exit(1)`` like a killed process.
The optional filters restrict it to one step, one rank, or one value of
``TORCHELASTIC_RESTART_COUNT`` (unset counts as ``0``). Values not starting with ``save:``
are left to other hooks.

Example:
    >>> import tempfile, torch
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = save_checkpoint(d, 5, {"w": torch.arange(3.0), "epoch": 1}, config_hash="abc")
    ...     _ = save_checkpoint(d, 10, {"w": torch.ones(3), "epoch": 2}, config_hash="abc")
    ...     step, payload = load_checkpoint(d, config_hash="abc")
    ...     (step, payload["epoch"], latest_step(d))
    (10, 2, 10)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "ConfigMismatchError",
    "InjectedFault",
    "NoCheckpointError",
    "latest_step",
    "load_checkpoint",
    "save_checkpoint",
    "verify_checkpoint",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the layout or the manifest changes incompatibly
_FORMAT = "wideflat-checkpoint"
MANIFEST = "MANIFEST.json"
_STEP_RE = re.compile(r"^step-(\d{9})$")
_MAX_STEP = 999_999_999  # nine digits in the folder name
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's (zip) format starts with a local file header
_CHUNK = 1 << 20  # bytes per read/write call
_FAULT_ENV = "WIDEFLAT_FAULT"
_FAULT_POINTS = ("before_write", "mid_write", "after_tmp", "after_rename")

# Indirection so tests can hand the writer a file object that fails (e.g. ENOSPC).
_open = open


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


class InjectedFault(RuntimeError):
    """Raised by the ``WIDEFLAT_FAULT`` hook (without ``:exit``) at the requested point."""


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


def _fsync_dir(path: Path) -> None:
    """Make renames and creations inside ``path`` durable (POSIX only)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


# --------------------------------------------------------------------------- fault hook


class _Fault:
    """A parsed ``WIDEFLAT_FAULT=save:...`` request for this save (None when not requested)."""

    def __init__(self, point: str, exit_: bool):
        self.point, self.exit = point, exit_

    @classmethod
    def parse(cls, *, step: int, rank: int) -> _Fault | None:
        value = os.environ.get(_FAULT_ENV, "")
        if not value.startswith("save:"):
            return None  # unset, or another hook's
        head, *filters = value.split("@")
        _, point, *suffix = head.split(":")  # head starts with "save:"
        if point not in _FAULT_POINTS or suffix not in ([], ["exit"]):
            raise ValueError(
                f"Invalid {_FAULT_ENV}={value!r}: expected save:<point>[:exit][@step=S]"
                f"[@rank=R][@restart=N] with <point> one of {', '.join(_FAULT_POINTS)}"
            )
        actual = {
            "step": step,
            "rank": rank,
            "restart": int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0),
        }
        matches = True
        for item in filters:
            key, _, want = item.partition("=")
            if key not in actual or not want.isdigit():
                raise ValueError(f"Invalid {_FAULT_ENV}={value!r}: bad filter {item!r}")
            matches = matches and actual[key] == int(want)
        return cls(point, suffix == ["exit"]) if matches else None

    def __call__(self, point: str, path: Path) -> None:
        if point != self.point:
            return
        if self.exit:
            os._exit(1)
        raise InjectedFault(f"{_FAULT_ENV}: injected failure at save:{point} ({path})")


def _no_fault(point: str, path: Path) -> None:
    return None


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


def _atomic_write(path: Path, data: bytes, fault: Callable[[str, Path], None]) -> None:
    """tmp file → flush + fsync → ``os.replace`` → fsync the folder."""
    tmp = path.with_name(path.name + ".tmp")
    fault("before_write", path)
    view = memoryview(data)
    half = len(view) // 2
    try:
        with _open(tmp, "wb") as f:
            # The first half is flushed before the mid-write fault point, so a crash there
            # leaves a partial tmp file on disk.
            for lo, hi in ((0, half), (half, len(view))):
                for start in range(lo, hi, _CHUNK):
                    f.write(view[start : min(start + _CHUNK, hi)])
                if lo == 0:
                    f.flush()
                    fault("mid_write", path)
            f.flush()
            os.fsync(f.fileno())
    except InjectedFault:
        tmp.unlink(missing_ok=True)
        raise
    except OSError as e:  # ENOSPC, EIO...: drop the partial file, keep older checkpoints
        tmp.unlink(missing_ok=True)
        raise CheckpointError(tmp, f"write failed ({e}); older checkpoints are untouched") from e
    fault("after_tmp", path)  # outside the try: a crash here leaves the complete tmp file
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    fault("after_rename", path)


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


def save_checkpoint(
    directory: str | os.PathLike,
    step: int,
    payload: dict,
    *,
    rank: int = 0,
    world_size: int = 1,
    config_hash: str = "",
    config: Mapping[str, Any] | None = None,
    keep: int | None = 2,
    barrier: Callable[[], Any] | None = None,
) -> Path:
    """Write ``payload`` as rank ``rank``'s part of checkpoint ``step`` and commit it.

    Every rank calls this with the same ``directory``, ``step``, ``world_size``,
    ``config_hash``, ``keep`` and ``barrier`` (see the module docstring for the protocol).

    Args:
        directory: the run's checkpoint folder (created if missing).
        step: the training step, ``0 <= step <= 999_999_999``.
        payload: a dict of tensors, numbers, str, lists and dicts (anything
            ``torch.load(weights_only=True)`` accepts); model, optimizer, scheduler and RNG
            states go here.
        rank: this process's rank.
        world_size: the number of ranks (replicas) writing this step.
        config_hash: an identifier of the run's configuration, stored in the manifest and
            checked by ``load_checkpoint(config_hash=...)``.
        config: the configuration itself, JSON-able (optional; stored in the manifest so
            that a config hash mismatch can name the fields that differ).
        keep: how many committed steps to keep (this one included); None keeps all.
        barrier: a callable that blocks until every rank reaches it, e.g.
            ``torch.distributed.barrier``. None in single-process use; with
            ``world_size > 1`` and no barrier, one process must save ranks ``1..n-1``
            before rank 0 (rank 0 commits whatever rank files it finds).

    Returns:
        The step folder ``directory/step-{step:09d}``.

    Raises:
        TypeError: the payload is not a dict or would not load with ``weights_only=True``
            (raised before anything is written; in a multi-process run the other ranks then
            wait in ``barrier`` until its timeout, so give every rank payloads of one kind).
        ValueError: an invalid argument or ``WIDEFLAT_FAULT`` value.
        CheckpointError: a write failed (e.g. disk full), or rank 0 found a rank's file
            missing; older checkpoints are left intact.
        InjectedFault: the ``WIDEFLAT_FAULT`` hook fired.

    Example:
        >>> import tempfile, torch
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = save_checkpoint(d, 7, {"w": torch.zeros(2)})
        ...     sorted(p.name for p in path.iterdir())
        ['MANIFEST.json', 'rank-0.pt']
    """
    step = _check_int("step", step, 0, _MAX_STEP)
    world_size = _check_int("world_size", world_size, 1)
    rank = _check_int("rank", rank, 0, world_size - 1)
    if keep is not None:
        keep = _check_int("keep", keep, 1)
    if not isinstance(config_hash, str) or "\n" in config_hash:
        raise ValueError(f"Invalid config_hash: {config_hash!r} (expected a one-line str)")
    if barrier is not None and not callable(barrier):
        raise TypeError(f"Invalid barrier: {barrier!r} (expected a callable or None)")
    fault = _Fault.parse(step=step, rank=rank) or _no_fault
    data = _serialise(payload, rank)

    directory = Path(directory)
    step_dir = _step_dir(directory, step)
    if not step_dir.is_dir():
        step_dir.mkdir(parents=True, exist_ok=True)  # exist_ok: ranks race to create it
        _fsync_dir(directory)
    _atomic_write(step_dir / _rank_name(rank), data, fault)
    del data
    if barrier is not None:
        barrier()
    if rank == 0:
        files = []
        for r in range(world_size):
            path = step_dir / _rank_name(r)
            if not path.is_file():
                raise CheckpointError(path, f"missing at commit of step {step}; not committed")
            files.append(
                {
                    "rank": r,
                    "name": path.name,
                    "size": path.stat().st_size,
                    "sha256": _sha256(path),
                }
            )
        from .. import __version__  # here, not at import time: wideflat/__init__ may import us

        manifest = {
            "format": _FORMAT,
            "format_version": FORMAT_VERSION,
            "step": step,
            "world_size": world_size,
            "config_hash": config_hash,
            **({"config": dict(config)} if config is not None else {}),
            "files": files,
            "wideflat_version": __version__,
            "torch_version": torch.__version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        _atomic_write(step_dir / MANIFEST, text.encode(), _no_fault)
        _prune(directory, step, keep)
    if barrier is not None:
        barrier()
    return step_dir


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


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Check one step folder: its manifest, and every rank file's size and SHA-256.

    Args:
        path: a step folder, ``directory/step-{step:09d}``.

    Raises:
        CheckpointError: one line naming the file and what is wrong (missing manifest,
            truncated, empty, not a checkpoint, SHA-256 mismatch, newer format...).

    Example:
        >>> import tempfile, torch
        >>> with tempfile.TemporaryDirectory() as d:
        ...     step_dir = save_checkpoint(d, 1, {"w": torch.ones(4)})
        ...     verify_checkpoint(step_dir)  # fine: returns None
        ...     _ = (step_dir / "rank-0.pt").write_bytes(b"")
        ...     try:
        ...         verify_checkpoint(step_dir)
        ...     except CheckpointError as e:
        ...         print(e.reason.split(" (")[0])
        empty file
    """
    _verified_manifest(Path(path))


def latest_step(directory: str | os.PathLike, *, verify: bool = True) -> int | None:
    """The newest committed step in ``directory``, or None.

    Args:
        directory: the run's checkpoint folder (it need not exist).
        verify: if True, the newest step whose files all verify (corrupt ones are skipped
            and logged); if False, the newest step with a manifest, unchecked. ``verify=False``
            returning None means "no checkpoint", as opposed to "all corrupt".

    Raises:
        CheckpointError: the newest verified candidate is intact but unusable (a newer
            format version); corrupt ones do not raise.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     print(latest_step(d))
        ...     _ = save_checkpoint(d, 3, {"x": 1})
        ...     print(latest_step(d))
        None
        3
    """
    for step, step_dir in _committed(Path(directory)):
        if not verify:
            return step
        try:
            _verified_manifest(step_dir)
        except CheckpointError as e:
            if not e.corrupt:
                raise
            logger.warning("skipping corrupt checkpoint %s", e)
            continue
        return step
    return None


def load_checkpoint(
    directory: str | os.PathLike,
    *,
    rank: int = 0,
    world_size: int | None = None,
    config_hash: str | None = None,
    config: Mapping[str, Any] | None = None,
    step: int | None = None,
    map_location: Any = "cpu",
) -> tuple[int, dict]:
    """Load rank ``rank``'s payload from a verified checkpoint.

    Args:
        directory: the run's checkpoint folder.
        rank: whose file to load.
        world_size: if given, must equal the checkpoint's.
        config_hash: if given, must equal the checkpoint's.
        config: this run's configuration (optional): on a config hash mismatch, the fields
            that differ from the one stored by ``save_checkpoint(config=...)`` are named.
        step: a step to load; None picks the newest committed step whose files all verify,
            skipping (and logging at WARNING on ``wideflat.experiments.checkpoint``) corrupt
            or incomplete ones. Every rank therefore picks the same step.
        map_location: passed to ``torch.load``.

    Returns:
        ``(step, payload)``, the payload loaded with ``torch.load(weights_only=True)``.

    Raises:
        NoCheckpointError: ``step=None`` and the folder has no committed checkpoint.
        CheckpointError: ``step`` given and it fails verification; every committed step is
            corrupt; the newer format, world size, config hash or rank do not fit this run
            (a config hash mismatch raises its subclass :class:`ConfigMismatchError`).

    Example:
        >>> import tempfile, torch
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = save_checkpoint(d, 4, {"w": torch.full((2,), 7.0)}, config_hash="cfg-1")
        ...     try:
        ...         load_checkpoint(d, config_hash="cfg-2")
        ...     except CheckpointError as e:
        ...         print(e.reason)
        config hash mismatch (checkpoint 'cfg-1', this run 'cfg-2')
    """
    directory = Path(directory)
    rank = _check_int("rank", rank, 0)
    if world_size is not None:
        world_size = _check_int("world_size", world_size, 1)
    if step is not None:
        step = _check_int("step", step, 0, _MAX_STEP)
        step_dir = _step_dir(directory, step)
        manifest = _verified_manifest(step_dir)
    else:
        committed = _committed(directory)
        if not committed:
            incomplete = len(_list_steps(directory))
            note = f" ({incomplete} incomplete step folders)" if incomplete else ""
            raise NoCheckpointError(directory, f"no committed checkpoint{note}")
        skipped: list[CheckpointError] = []
        for _, step_dir in committed:
            try:
                manifest = _verified_manifest(step_dir)
                break
            except CheckpointError as e:
                if not e.corrupt:
                    raise
                logger.warning("skipping corrupt checkpoint %s", e)
                skipped.append(e)
        else:
            raise CheckpointError(
                directory,
                f"no verified checkpoint: all {len(skipped)} committed steps are corrupt "
                f"(newest: {skipped[0]})",
            )
        if skipped:
            logger.warning(
                "falling back to %s after skipping %d corrupt checkpoint(s)",
                step_dir,
                len(skipped),
            )
    mpath = step_dir / MANIFEST
    if world_size is not None and manifest["world_size"] != world_size:
        raise CheckpointError(
            mpath,
            f"world size mismatch (checkpoint {manifest['world_size']}, this run {world_size})",
            corrupt=False,
        )
    if config_hash is not None and manifest["config_hash"] != config_hash:
        differences = _differences(manifest.get("config"), config)
        shown = ", ".join(
            f"{k} (checkpoint {a!r}, this run {b!r})" for k, (a, b) in list(differences.items())[:5]
        )
        more = f" and {len(differences) - 5} more" if len(differences) > 5 else ""
        raise ConfigMismatchError(
            mpath,
            f"config hash mismatch (checkpoint {manifest['config_hash']!r}, "
            f"this run {config_hash!r})" + (f": {shown}{more} differ" if shown else ""),
            differences,
        )
    if rank >= manifest["world_size"]:
        raise CheckpointError(
            mpath, f"no rank {rank} (world size {manifest['world_size']})", corrupt=False
        )
    path = step_dir / _rank_name(rank)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # verified bytes that still do not load
        raise CheckpointError(path, f"torch.load failed ({type(e).__name__}: {e})") from e
    if not isinstance(payload, dict):
        raise CheckpointError(path, f"not a wideflat checkpoint (payload is a {type(payload)})")
    return manifest["step"], payload
