"""Atomic, verified checkpoints for single- and multi-process runs.

A checkpoint is one folder per step (``step-000000035/``), one ``torch.save`` file per rank
(``rank-r.pt``) and ``MANIFEST.json``, written last, which commits them with each file's size
and SHA-256. :func:`save_checkpoint` writes every file atomically and prunes old and incomplete
steps; :func:`load_checkpoint` picks the newest step whose files all verify, skipping damaged
ones. A crash at any point leaves the new step uncommitted or the previous one untouched. The
protocol, step by step: docs/architecture.md ("Checkpoints"). The file format lives in
:mod:`~wideflat.experiments._checkpoint_files`.

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
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .._io import fsync_dir

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "ConfigMismatchError",
    "NoCheckpointError",
    "latest_step",
    "load_checkpoint",
    "save_checkpoint",
    "verify_checkpoint",
]

from ._checkpoint_files import (
    _FORMAT,
    _MAX_STEP,
    FORMAT_VERSION,
    MANIFEST,
    CheckpointError,
    ConfigMismatchError,
    NoCheckpointError,
    _check_int,
    _committed,
    _differences,
    _list_steps,
    _prune,
    _rank_name,
    _serialise,
    _sha256,
    _step_dir,
    _verified_manifest,
    _write,
    logger,
)


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
        ValueError: an invalid argument.
        CheckpointError: a write failed (e.g. disk full), or rank 0 found a rank's file
            missing; older checkpoints are left intact.

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
    data = _serialise(payload, rank)

    directory = Path(directory)
    step_dir = _step_dir(directory, step)
    if not step_dir.is_dir():
        step_dir.mkdir(parents=True, exist_ok=True)  # exist_ok: ranks race to create it
        fsync_dir(directory)
    _write(step_dir / _rank_name(rank), data)
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
        _write(step_dir / MANIFEST, text.encode())
        _prune(directory, step, keep)
    if barrier is not None:
        barrier()
    return step_dir


# --------------------------------------------------------------------------- reading


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


class _RemovedInjectedFault(RuntimeError):
    """No longer raised: fault injection moved into the tests (they patch the writer)."""


def __getattr__(name: str) -> Any:
    if name == "InjectedFault":  # kept one release so that `except InjectedFault` still parses
        import warnings

        warnings.warn(
            "wideflat.experiments.checkpoint.InjectedFault is deprecated and never raised: "
            "the fault-injection environment hook was removed (tests patch the writer)",
            DeprecationWarning,
            stacklevel=2,
        )
        return _RemovedInjectedFault
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
