"""The committee-machine study of the paper (§5, Fig. 1, appendix B.1), end to end.

:func:`run_committee_study` trains every chosen algorithm (all restarts batched, see
:func:`~wideflat.experiments.committee.train.train_committee`), then measures each restart's
solution:

* train / test error (and the class-balanced test error, the mean of the two per-class error
  rates), epochs, stop reason;
* the normalized local entropy ``Φ_LE(d)`` by BP
  (:func:`~wideflat.flatness.committee_local_entropy`) on a grid of distances; a reference
  with training errors is measured with ``training_errors="drop"`` (only the patterns it
  classifies correctly are constrained), which gives a *lower bound* and is flagged; BP points
  that do not converge are NaN and listed (never silent);
* the local energy ``δE_train(σ) = E_z[E_train(w + σ z ⊙ w)] − E_train(w)``
  (:func:`~wideflat.flatness.committee_local_energy`), mean ± standard error over ``draws``
  draws of ``z``.

It writes ``results.json`` (atomically, after every algorithm, so a long study that is cut
short keeps what it finished) and returns the study as a dict with the same content.

Units: ``d`` and ``Φ_LE`` are **per weight** (``n = N K`` weights, natural log; each hidden
unit rescaled to ``‖w_k‖² = N``; ``d = ‖w' − w‖² / (2n)``), the units of
:mod:`wideflat.flatness.committee_bp`. Errors are fractions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from wideflat._io import environment, json_ready, write_json_atomic

from . import _parts
from ._schedule import Runner
from .presets import ALGORITHMS, CommitteeHyperParams, committee_preset, upgrade_overrides

__all__ = [
    "SCHEMA",
    "CommitteeStudyConfig",
    "check_study_folder",
    "default_study_folder",
    "format_bp_mc_table",
    "format_study_table",
    "QUICK_ALGORITHMS",
    "QUICK_READING",
    "quick_study_config",
    "run_committee_study",
]

SCHEMA = "wideflat.committee_study/1"


@dataclass(frozen=True)
class CommitteeStudyConfig:
    """Resolved configuration of one committee study.

    Attributes:
        algorithms: Algorithms to run, a subset of :data:`ALGORITHMS` (paper order kept).
        restarts: Independent networks per algorithm (the paper: 50).
        data: ``"fashion"`` (Dress vs Coat, appendix B.1) or ``"teacher"`` (synthetic).
        seed: Base seed of data draw, training restarts and flatness draws.
        max_epochs: Epoch cap of every restart (reported as stop reason ``"max-epochs"``).
        unit_norm: Step-size convention of the trainer, ``"one"`` (units of norm 1: the
            loss step is ``N`` times larger than with ``"sqrt-n"``) or ``"sqrt-n"``.
        loss_reduction: ``"mean"`` or ``"sum"`` of the minibatch loss (see
            :class:`~wideflat.experiments.committee.presets.CommitteeHyperParams`).
        schedule_clock: ``"epoch"`` or ``"step"``: what ``t`` counts in ``β(t), ω(t), γ(t)``.
        overrides: ``((algorithm, field, value), ...)`` hyper-parameters replacing the
            paper's presets (e.g. ``(("esgd", "lr", 0.5),)``). A renamed field given by its
            old name (:data:`~wideflat.experiments.committee.presets.RENAMED_FIELDS`) is
            stored under its new name, with a ``DeprecationWarning``.
        balanced: Fashion only: draw 250 Dress + 250 Coat training patterns instead of a
            uniform draw (which is ~9 % Dress after the median filter).
        n_train: Training patterns.
        distances: Per-weight distances ``d`` of the ``Φ_LE`` curve.
        sigmas: Perturbation intensities ``σ`` of the ``δE_train`` profile.
        draws: Draws of ``z`` per ``σ`` (the paper: 100–1000).
        bp_max_iter: BP iteration cap per solve.
        table_distance: ``d`` reported in the summary table (must be in ``distances``).
        table_sigma: ``σ`` reported in the summary table (must be in ``sigmas``).
        mc_restarts: The first this many restarts of every algorithm also get the
            BP–Monte Carlo check of ``φ(γ)`` at every BP point (``bp_mc`` in their row).
        mc_samples: Monte Carlo samples per point of that check.
        quick: Whether this is the reduced ``--quick`` configuration.
    """

    algorithms: tuple[str, ...] = ALGORITHMS
    restarts: int = 50
    data: str = "fashion"
    seed: int = 0
    max_epochs: int = 6000
    unit_norm: str = "one"
    loss_reduction: str = "sum"
    schedule_clock: str = "epoch"
    overrides: tuple[tuple[str, str, Any], ...] = ()
    balanced: bool = True
    n_train: int = 500
    distances: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3)
    sigmas: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
    draws: int = 100
    bp_max_iter: int = 2000
    table_distance: float = 0.1
    table_sigma: float = 0.5
    mc_restarts: int = 5
    mc_samples: int = 4000
    quick: bool = False

    def __post_init__(self) -> None:
        if not self.algorithms:
            raise ValueError(f"Invalid algorithms: empty (choose from {', '.join(ALGORITHMS)})")
        for a in self.algorithms:
            if a not in ALGORITHMS:
                raise ValueError(f"Unknown algorithm {a!r} (choose from {', '.join(ALGORITHMS)})")
        if len(set(self.algorithms)) != len(self.algorithms):
            raise ValueError(f"Invalid algorithms: duplicates in {list(self.algorithms)}")
        for name in ("restarts", "max_epochs", "n_train", "draws", "bp_max_iter", "mc_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Invalid {name}: {v!r} (must be an int >= 1)")
        v = self.mc_restarts
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"Invalid mc_restarts: {v!r} (must be an int >= 0)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"Invalid seed: {self.seed!r} (must be an int >= 0)")
        if self.data not in ("fashion", "teacher"):
            raise ValueError(f"Invalid data: {self.data!r} (use 'fashion' or 'teacher')")
        if self.unit_norm not in ("one", "sqrt-n"):
            raise ValueError(f"Invalid unit_norm: {self.unit_norm!r} (use 'one' or 'sqrt-n')")
        self._check_grids()
        for alg, _, _ in self.overrides:
            if alg not in ALGORITHMS:
                raise ValueError(
                    f"Unknown algorithm {alg!r} in an override "
                    f"(choose from {', '.join(ALGORITHMS)})"
                )
        object.__setattr__(self, "overrides", _upgrade(self.overrides))
        # validates field names and values now, not after training (also for an override
        # of an algorithm this study does not run: a typo is refused either way)
        for alg in dict.fromkeys([*self.algorithms, *(a for a, _, _ in self.overrides)]):
            self.hparams(alg)

    def _check_grids(self) -> None:
        for name, lo in (("distances", 0.0), ("sigmas", -1.0)):
            vals = getattr(self, name)
            if not vals or any(not math.isfinite(v) or v <= lo for v in vals):
                raise ValueError(f"Invalid {name}: {list(vals)} (finite values > {lo:g} needed)")
            if list(vals) != sorted(set(vals)):
                raise ValueError(f"Invalid {name}: {list(vals)} (must be strictly increasing)")
        if min(self.sigmas) < 0:
            raise ValueError(f"Invalid sigmas: {list(self.sigmas)} (must be >= 0)")
        if self.table_distance not in self.distances:
            raise ValueError(f"Invalid table_distance: {self.table_distance} not in distances")
        if self.table_sigma not in self.sigmas:
            raise ValueError(f"Invalid table_sigma: {self.table_sigma} not in sigmas")

    def hparams(self, algorithm: str) -> CommitteeHyperParams:
        """The resolved :class:`~wideflat.experiments.committee.presets.CommitteeHyperParams`."""
        return committee_preset(algorithm, self.overrides_for(algorithm))

    def overrides_for(self, algorithm: str) -> dict[str, Any]:
        """The three conventions plus this algorithm's overrides (later ones win)."""
        out: dict[str, Any] = {
            "unit_norm": self.unit_norm,
            "loss_reduction": self.loss_reduction,
            "schedule_clock": self.schedule_clock,
        }
        out.update({f: v for a, f, v in self.overrides if a == algorithm})
        return out

    def to_dict(self) -> dict[str, Any]:
        """Every field, plus each algorithm's resolved hyper-parameters, as JSON-ready values."""
        d = dataclasses.asdict(self)
        d["overrides"] = [list(o) for o in self.overrides]
        d["hparams"] = {a: dataclasses.asdict(self.hparams(a)) for a in self.algorithms}
        return d


def _upgrade(overrides) -> tuple[tuple[str, str, Any], ...]:
    """``overrides`` with renamed fields under their new names (``DeprecationWarning``)."""
    out = []
    for alg, field, value in overrides:
        ((field, value),) = upgrade_overrides({field: value}, stacklevel=5).items()
        out.append((alg, field, value))
    return tuple(out)


QUICK_ALGORITHMS: tuple[str, ...] = ("sgd-fast", "rsgd-fast", "rsgd-slow")


def quick_study_config(**changes: Any) -> CommitteeStudyConfig:
    """The ``--quick`` configuration: SGD fast and rSGD fast/slow, 6 restarts, 150 epochs, a
    3-point BP grid, 20 draws (about a minute on 2 cores).

    At this budget, on Dress-vs-Coat and on teacher data alike, both rSGD variants end at
    far flatter solutions (Φ_LE, δE) with lower test error than SGD fast, by many standard
    errors (docs/results.md, "The quick run"). eSGD is left out: with the paper's outer step
    η = 1e-3 it needs thousands of epochs. What the quick run does not show is *why*: rSGD's
    advantage here includes its own η, β, ω schedules and the averaging of 10 replicas, which
    the controls of the full study separate from the coupling.

    Example:
        >>> quick_study_config(data="teacher").restarts
        6
    """
    base = dict(
        algorithms=QUICK_ALGORITHMS,
        restarts=6,
        max_epochs=150,
        distances=(0.05, 0.1, 0.3),
        sigmas=(0.0, 0.25, 0.5, 1.0),
        draws=20,
        bp_max_iter=500,
        mc_restarts=1,
        mc_samples=500,
        quick=True,
    )
    base.update(changes)
    return CommitteeStudyConfig(**base)


QUICK_READING = """\
How to read this quick run (a demonstration at a small budget, not the paper's study):
  * Phi_LE(d): local entropy of the solution's neighbourhood at distance d (BP); closer to 0
    (higher) = flatter. dE(s): training-error increase under multiplicative noise s; lower =
    flatter. Compare the rows' means against their spread (mean ± std over restarts).
  * Shown: the rSGD solutions are flatter by both measures and have lower test error than
    SGD fast. Not shown: which part of rSGD does it. Its own eta/beta/omega schedules and the
    averaging of 10 replicas contribute; the full study's controls (docs/results.md) run rSGD
    with the coupling off (--set rsgd-slow.gamma0=0) to separate them."""


def default_study_folder(cfg: CommitteeStudyConfig) -> Path:
    """``committee-results/<data>`` (``-quick`` appended for a quick study): studies of
    other data, or quick ones, do not share a folder.

    Example:
        >>> str(default_study_folder(quick_study_config(data="teacher")))
        'committee-results/teacher-quick'
    """
    return Path("committee-results") / (cfg.data + ("-quick" if cfg.quick else ""))


def check_study_folder(out_dir: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Refuse (``ValueError``, one line) a folder that already holds a study's results,
    unless ``overwrite``; nothing is written either way."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} exists and is not a folder")
    if not overwrite and (out / "results.json").exists():
        raise ValueError(
            f"{out} already holds a study (results.json); pass --resume to continue it, "
            "--overwrite to replace it, or choose another --out"
        )


# --------------------------------------------------------------------------- the study


def run_committee_study(
    cfg: CommitteeStudyConfig,
    out_dir: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    jobs: int = 1,
) -> dict[str, Any]:
    """Run the study of ``cfg`` and write ``out_dir/results.json``; returns the same dict.

    ``results.json`` (schema :data:`SCHEMA`) holds ``config`` (resolved, with every
    algorithm's hyper-parameters), ``data``, ``versions``, ``seed``, ``threads``, ``jobs``,
    ``started``/``finished``, ``wall_clock_s``, ``complete`` (false while running),
    ``progress`` (pieces done), ``units``, and ``algorithms[name]`` (written as soon as all
    of an algorithm's restarts are measured) with ``restarts`` (one dict per restart:
    ``train_error``, ``test_error``, ``test_error_balanced``, ``train_loss``, ``epochs``,
    ``steps``, ``stop_reason``, ``local_entropy`` (``distance``, ``phi_le``, ``gamma``,
    ``phi``, ``converged``, ``failures``, ``lower_bound``, ...), ``local_energy`` (``sigma``,
    ``mean``, ``sem``), ``bp_mc`` (the BP–Monte Carlo check, first ``cfg.mc_restarts``
    restarts)), ``summary`` (mean ± std over restarts) and stage wall times. NaN is written
    as ``null``.

    Every finished piece of work (a chunk of trained restarts, a measured restart) is saved
    at once under ``out_dir/parts`` (:mod:`~wideflat.experiments.committee._parts`); with
    ``resume`` a study cut short continues from them, without redoing finished restarts, and
    gives the numbers an uninterrupted run gives.

    Args:
        cfg: The study configuration.
        out_dir: Output folder (created if missing). One that already holds a
            ``results.json`` is refused (``ValueError``) unless ``overwrite`` or ``resume``.
        data_root: Fashion-MNIST folder (default: the reader's search order).
        progress: Show a progress bar over the pieces of work, with an ETA.
        log: Receives one line per notable event (BP failures, algorithm done); default:
            stderr.
        overwrite: Replace the results of an earlier study in ``out_dir`` (and its parts).
        resume: Continue the study in ``out_dir`` (its configuration must equal ``cfg``;
            the differing fields are named otherwise). Without a study there, start one.
        jobs: Worker processes (each with one torch thread); 1 runs everything here.

    Returns:
        The results dict (NaN kept as ``float('nan')``).

    Example:
        >>> import tempfile
        >>> cfg = quick_study_config(data="teacher", algorithms=("sgd-fast",), restarts=1,
        ...                          max_epochs=2, draws=2, n_train=100, mc_restarts=0)
        >>> res = run_committee_study(cfg, tempfile.mkdtemp(), progress=False, log=lambda s: None)
        >>> res["complete"], len(res["algorithms"]["sgd-fast"]["restarts"])
        (True, 1)
    """
    if log is None:

        def log(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"Invalid jobs: {jobs!r} (must be an int >= 1)")
    out = Path(out_dir)
    path = out / "results.json"
    parts = _parts.Parts(out)
    previous = _previous_study(path, cfg) if resume else None
    if previous is None:
        check_study_folder(out, overwrite=overwrite or resume)
        parts.clear()
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    data = _parts.load_study_data(cfg, data_root)
    results = _new_results(cfg, data)
    results["jobs"] = jobs
    if previous is not None:
        results["started"] = previous["started"]
        results["resumed"] = [*previous.get("resumed", []), _now()]
        log(f"resuming the study in {out}")
    write_json_atomic(path, results)
    Runner(cfg, parts, results, path, data_root, jobs, progress, log, t_start).run()
    results["wall_clock_s"] = time.perf_counter() - t_start
    results["finished"] = _now()
    results["complete"] = True
    write_json_atomic(path, results)
    return results


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _previous_study(path: Path, cfg: CommitteeStudyConfig) -> dict[str, Any] | None:
    """The ``results.json`` a resumed study continues (``None``: there is none); refused
    (``ValueError`` naming the fields) when its configuration is not ``cfg``'s."""
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot resume from {path}: unreadable ({exc})") from None
    if old.get("schema") != SCHEMA:
        raise ValueError(f"cannot resume from {path}: not a {SCHEMA} results file")
    new = json.loads(json.dumps(json_ready(cfg.to_dict())))
    differ = sorted(k for k in set(new) | set(old.get("config", {}))
                    if new.get(k) != old["config"].get(k))  # fmt: skip
    if len(differ) > 1 and "hparams" in differ:  # derived from the others: name the cause
        differ.remove("hparams")
    if differ:
        raise ValueError(
            f"cannot resume the study in {path.parent}: its configuration differs in "
            f"{', '.join(differ)} (use the same options, or --overwrite to start again)"
        )
    return old


def _new_results(cfg: CommitteeStudyConfig, data) -> dict[str, Any]:
    """The results dict before any algorithm has run."""
    return {
        "schema": SCHEMA,
        "config": cfg.to_dict(),
        "data": _data_info(data),
        "versions": environment(),
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "seed": cfg.seed,
        "started": _now(),
        "finished": None,
        "wall_clock_s": None,
        "complete": False,
        "units": {
            "distance": "per weight: d = |w'-w|^2 / (2 N K), hidden units rescaled to |w_k|^2 = N",
            "phi_le": "per weight (divide by N K), natural log; x K for the 1/N normalization",
            "delta_e": "training-error fraction increase; sem = std over draws / sqrt(draws)",
            "errors": "fractions; test_error_balanced = mean of the two per-class error rates",
            "bp_mc": "phi(gamma) per weight, BP vs Monte Carlo; z = gap / MC standard error",
        },
        "algorithms": {},
    }


def _data_info(data) -> dict[str, Any]:
    def frac(y):
        return float((y > 0).double().mean())

    keep = {k: v for k, v in data.metadata.items() if isinstance(v, str | int | float | bool)}
    return {
        "name": data.name,
        "n_train": int(data.X_train.shape[0]),
        "n_test": int(data.X_test.shape[0]),
        "n_features": int(data.X_train.shape[1]),
        "positive_fraction_train": frac(data.y_train),
        "positive_fraction_test": frac(data.y_test),
        "metadata": keep,
    }


# --------------------------------------------------------------------------- the table


def _at(summary_block: Mapping[str, Any], key: str, value: float) -> dict[str, Any]:
    grid = summary_block.get(key) or []
    pts = summary_block.get("per_point") or []
    for g, p in zip(grid, pts, strict=False):
        if g is not None and math.isclose(float(g), value) and p:
            return p
    return {"mean": math.nan, "std": math.nan, "n": 0}


def _pm(stat: Mapping[str, Any], fmt: str) -> str:
    m, s = stat.get("mean"), stat.get("std")
    if m is None or s is None or not (math.isfinite(m) and math.isfinite(s)):
        return "n/a"
    return f"{m:{fmt}} ± {s:{fmt}}"


def format_study_table(results: Mapping[str, Any]) -> str:
    """The summary table of a study (one row per algorithm, mean ± std over restarts).

    Example:
        >>> print(format_study_table({"config": {"table_distance": 0.1, "table_sigma": 0.5},
        ...                           "algorithms": {}}).splitlines()[0].split()[0])
        algorithm
    """
    cfg = results.get("config", {})
    d0, s0 = float(cfg.get("table_distance", 0.1)), float(cfg.get("table_sigma", 0.5))
    head = (
        f"{'algorithm':<10} {'n':>3} {'train err':>16} {'test err':>16} {'bal. test err':>16} "
        f"{f'Phi_LE(d={d0:g})':>22} {f'dE(s={s0:g})':>16} {'epochs':>14}  stop reasons"
    )
    lines = [head, "-" * len(head)]
    for alg, block in results.get("algorithms", {}).items():
        s = block.get("summary", {})
        phi = _at(s.get("phi_le", {}), "distance", d0)
        de = _at(s.get("delta_e", {}), "sigma", s0)
        stops = ", ".join(f"{k} {v}" for k, v in sorted(s.get("stop_reasons", {}).items()))
        extra = []
        if s.get("bp_lower_bound_restarts"):
            extra.append(f"Phi lower bound for {s['bp_lower_bound_restarts']}")
        if s.get("bp_nonconverged_points"):
            extra.append(f"{s['bp_nonconverged_points']} BP points NaN")
        lines.append(
            f"{alg:<10} {s.get('n', 0):>3} {_pm(s.get('train_error', {}), '.4f'):>16} "
            f"{_pm(s.get('test_error', {}), '.4f'):>16} "
            f"{_pm(s.get('test_error_balanced', {}), '.4f'):>16} "
            f"{_pm(phi, '.5f'):>22} {_pm(de, '.4f'):>16} "
            f"{_pm(s.get('epochs', {}), '.0f'):>14}  {stops}"
            + (f" [{'; '.join(extra)}]" if extra else "")
        )
    return "\n".join(lines)


def format_bp_mc_table(results: Mapping[str, Any]) -> str:
    """BP against Monte Carlo per algorithm and distance: checked / resolved / flagged points
    and the mean gap ``φ_BP − φ_MC`` (per weight) over the checked restarts.

    A point is *flagged* when BP is off by more than two Monte Carlo standard errors;
    *unresolved* when no Monte Carlo sample was accepted and BP is below the 95 % bound.

    Example:
        >>> print(format_bp_mc_table({"config": {"distances": [0.1]}, "algorithms": {}}))
        algorithm  d        checked  resolved  flagged  mean gap (phi_BP - phi_MC)
    """
    grid = (results.get("config") or {}).get("distances", [])
    lines = [f"{'algorithm':<10} {'d':<8} {'checked':>7} {'resolved':>9} {'flagged':>8}  "
             "mean gap (phi_BP - phi_MC)"]  # fmt: skip
    for alg, block in results.get("algorithms", {}).items():
        mc = (block.get("summary") or {}).get("bp_mc") or {}
        for p in mc.get("per_point", []):
            d = grid[p["index"]] if p["index"] < len(grid) else math.nan
            gap = p["gap"]
            text = "n/a" if not gap.get("n") else f"{gap['mean']:+.2e} (n={gap['n']})"
            lines.append(f"{alg:<10} {d:<8g} {p['checked']:>7} {p['resolved']:>9} "
                         f"{p['flagged']:>8}  {text}")  # fmt: skip
    return "\n".join(lines)
