"""``compare``: every run kind × seed of a preset, then Table 1 and Figs. 2–5 from the folders."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .._io import write_bytes_atomic, write_json_atomic
from ..data import dataset_info
from .build import check_names
from .config import config_hash
from .errors import NonFiniteRunError, RunError
from .presets import get_preset, preset_config
from .rundir import run_status
from .training import train

__all__ = ["compare"]


def compare(
    preset: str,
    kinds: list[str],
    seeds: list[int],
    out: str | os.PathLike,
    *,
    overrides: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    tensorboard: bool = False,
) -> str:
    """Train every run kind × seed of a preset into ``out/<kind>-s<seed>``, then tabulate.

    Finished runs (``run.json`` status ``finished``, same config) are kept; interrupted ones
    resume from their newest checkpoint; a run stopped by a non-finite loss is logged, left
    ``failed`` in its run.json and left out of the table (which counts finished runs).
    Writes ``out/summary.md`` and ``out/summary.json``
    (:func:`~wideflat.experiments.plots.summary_rows`), with SGD runs ``out/paired.json``
    (each method − SGD per seed, :func:`~wideflat.experiments.paired.paired_rows`, also
    in summary.md), ``out/test_error.png`` (Fig. 2) and
    ``out/local_energy.png`` (Figs. 3–5); a plotting failure is logged, not raised. A run at
    chance-level test error or above the preset's ``max_train_error`` is flagged († in the
    table with a footnote, grey and dashed in the figures;
    :func:`~wideflat.experiments.plots.run_flags`).

    With ``tensorboard`` every run also writes TensorBoard scalars (``tensorboard --logdir
    OUT`` shows the runs side by side; :mod:`~.tensorboard_log`).

    Returns:
        The Markdown table (test error mean ± std per method).
    """
    log = log or (lambda text: print(text, file=sys.stderr))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"output folder {out} exists and is not a folder")
    try:
        configs = [
            (kind, preset_config(preset, kind, seed=seed, **(overrides or {})))
            for seed in seeds  # seed-major: a study cut short has every method for some seeds
            for kind in kinds
        ]
    except ValueError as e:
        raise RunError(str(e)) from None
    for _, cfg in configs:
        check_names(cfg)
    if tensorboard:  # refused before any run is trained
        from .tensorboard_log import scalar_log

        scalar_log(out)
    for kind, cfg in configs:
        folder = out / f"{kind}-s{cfg.seed}"
        if run_status(folder) == ("finished", config_hash(cfg)):
            log(f"{folder}: finished, kept")
            continue
        try:
            train(cfg, folder, resume="auto", device=device, progress=progress, log=log,
                  tensorboard=tensorboard)  # fmt: skip
        except NonFiniteRunError as e:  # recorded as failed in its run.json; go on
            log(f"{folder}: {e}")
    classes = dataset_info(configs[0][1].dataset).num_classes if configs else None
    return _tabulate(out, preset, seeds, classes, log)


def _tabulate(
    out: Path, preset: str, seeds: list[int], classes: int | None, log: Callable[[str], None]
) -> str:
    """summary.md, summary.json and the two figures from the run folders in ``out``."""
    from . import plots  # matplotlib is loaded only here
    from .paired import TITLE, format_paired_table, paired_rows

    runs = [r for r in plots.collect_runs(out) if r.path.parent == out]
    if classes is not None:  # runs at chance or not fitting the train set are marked
        plots.flag_runs(
            runs, num_classes=classes, max_train_error=get_preset(preset).max_train_error
        )
    rows = plots.summary_rows(runs)
    table = plots.format_table(rows)
    found = sorted({r.seed for r in runs}) or seeds  # the folder may hold other calls' runs
    text = f"{preset}: test error over seeds {found}\n\n{table}\n"
    matched = plots.matched_rows(runs)
    if matched:  # flatness at matched training error (energy_at_train_error)
        text += f"\nFlatness at matched training error\n\n{plots.format_matched_table(matched)}\n"
        write_json_atomic(out / "matched.json", matched)
    paired = paired_rows(runs)
    if paired:  # each method against SGD with the same seed
        text += f"\n{TITLE}\n\n{format_paired_table(paired)}\n"
        write_json_atomic(out / "paired.json", paired)
    write_bytes_atomic(out / "summary.md", text.encode())
    write_json_atomic(out / "summary.json", rows)
    for name, fn in (
        ("test_error.png", plots.plot_test_error),
        ("local_energy.png", plots.plot_energy),
        ("collapse.png", plots.plot_collapse),
        ("local_energy_matched.png", plots.plot_energy_matched),
    ):
        try:
            fn(runs, out / name, title=preset)
        except Exception as e:  # noqa: BLE001 - a figure never fails the study
            log(f"plot {name} failed: {type(e).__name__}: {e}".splitlines()[0])
    return table
