"""TensorBoard scalars of a run (``wideflat train/compare --tensorboard``).

The rows of ``metrics.jsonl`` become event files in ``out/tensorboard/``: one scalar per
numeric column of ``metrics.csv`` (:func:`~.rundir.flat_row`: ``test_error``,
``replica_train_errors[0]``, ...) at step = epoch; text cells and non-finite values are left
out. The event files are a view of ``metrics.jsonl``: when a run starts or resumes, the old
event files are deleted and the kept rows written again (so rows a resumed run cut do not
linger), then each epoch's row is added and flushed as it is written. Needs the optional
``tensorboard`` package (``pip install 'wideflat[tensorboard]'``); ``tensorboard --logdir
runs/`` then shows every run of a study side by side.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path

from .._optional import import_optional
from .errors import RunError
from .rundir import flat_row

__all__ = ["ScalarLog", "scalar_log", "scalars"]


def scalar_log(folder: str | Path) -> ScalarLog:
    """The :class:`ScalarLog` of run folder ``folder``; :class:`~.errors.RunError` (one line
    naming the extra to install) when ``tensorboard`` is missing."""
    try:
        return ScalarLog(folder)
    except ImportError as e:
        raise RunError(str(e)) from None


def scalars(row: dict) -> dict[str, float]:
    """The TensorBoard scalars of one metrics row: its finite numeric columns but ``epoch``.

    Example:
        >>> scalars({"epoch": 3, "test_error": 0.12, "errs": [0.1, float("nan")],
        ...          "stop": "collapse", "energy_measured": ["stationary"]})
        {'test_error': 0.12, 'errs[0]': 0.1}
    """
    out = {}
    for key, value in flat_row(row).items():
        numeric = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if key != "epoch" and numeric and math.isfinite(value):
            out[key] = float(value)
    return out


class ScalarLog:
    """The event files of one run folder: :meth:`begin` with the kept rows, :meth:`add` each
    new row, :meth:`close` at the end.

    Raises:
        ImportError: at construction, one line naming the extra, when ``tensorboard`` is not
            installed.
    """

    def __init__(self, folder: str | Path):
        import_optional("tensorboard", "--tensorboard")
        self.path = Path(folder) / "tensorboard"
        self._writer = None

    def begin(self, rows: list[dict]) -> None:
        """Delete the folder's old event files and write ``rows`` afresh."""
        from torch.utils.tensorboard import SummaryWriter

        self.close()
        for old in self.path.glob("events.out.tfevents.*"):
            old.unlink()
        self._writer = SummaryWriter(log_dir=str(self.path))
        for row in rows:
            self.add(row)

    def add(self, row: dict) -> None:
        """One epoch's row, flushed to disk."""
        if self._writer is None:
            raise RuntimeError("ScalarLog.add before begin")
        for tag, value in scalars(row).items():
            self._writer.add_scalar(tag, value, global_step=int(row["epoch"]))
        self._writer.flush()

    def close(self) -> None:
        """Close the event file (a later :meth:`begin` starts afresh)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
