"""Which flatness measure predicts generalization? Correlations over a family (paper Fig. 7).

For every finished member of a family (:mod:`~wideflat.experiments.family`), each chosen
measure is computed on the member's training data, then correlated over the family with the
generalization gap (test error − training error) and with the test error: Pearson r with its
p-value, Spearman ρ, Kendall τ, and the granulated Kendall coefficient Ψ over the family's
hyper-parameter axes (Jiang et al., 2020). Every measure is oriented so that a larger value
means *sharper* (e.g. the PAC-Bayes measure is 1/σ²), so a positive correlation is the
prediction "sharper generalizes worse".

Files in the output folder (resumable: a member's measures are kept once computed, and
recomputed only if the measurement settings change)::

    measures/<member id>.json   the measures of one member, with their settings
    correlation.json            per-member values, statistics, ranking, settings
    table.md                    the ranking table
    fig7.png                    δE_train(σ) against the gap, in the style of Fig. 7
    measures.png                every measure against the gap

    wideflat correlate runs/family --out docs/family
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .. import _validate as check
from .._io import environment, write_json_atomic
from .._stats import granulated_kendall, kendall, pearson, spearman
from ._jobs import run_jobs
from .family import AXES, load_member, member_data

__all__ = [
    "MEASURES",
    "CorrelateConfig",
    "correlate_family",
    "format_ranking",
]


@dataclass(frozen=True)
class CorrelateConfig:
    """How each measure is computed (the same for every member).

    Attributes:
        measures: names from :data:`MEASURES`.
        sigma: δE_train perturbation intensity (the paper's Fig. 7: 0.5, multiplicative).
        samples: δE draws (the paper's Fig. 7: 64).
        hessian_trace_samples: Hutchinson vectors for the Hessian trace.
        rho: radius of the worst-case sharpness ball (L2).
        adaptive_rho: radius of the adaptive (ASAM) ball, relative to the weights; 0.5 as in
            ASAM's CIFAR-10 runs (Kwon et al., 2021).
        pac_bayes_target: training-error increase that defines the PAC-Bayes σ.
        pac_bayes_samples: draws per σ in the PAC-Bayes search.
        subset: training examples the measures see (0 = the member's whole training set).
        seed: seed of every measurement.
    """

    measures: tuple[str, ...] = (
        "delta_energy",
        "delta_energy_loss",
        "hessian_top",
        "hessian_trace",
        "sharpness",
        "adaptive_sharpness",
        "pac_bayes",
        "weight_norm",
        "train_loss",
    )
    sigma: float = 0.5
    samples: int = 64
    hessian_trace_samples: int = 32
    rho: float = 0.05
    adaptive_rho: float = 0.5
    pac_bayes_target: float = 0.1
    pac_bayes_samples: int = 32
    subset: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.measures:
            raise ValueError("Invalid measures: none chosen")
        for name in self.measures:
            check.choice("measure", name, MEASURES)
        check.number("sigma", self.sigma, minimum=0.0, finite=True)
        check.integer("samples", self.samples, minimum=2)
        check.integer("hessian_trace_samples", self.hessian_trace_samples, minimum=2)
        check.number("rho", self.rho, minimum=0.0, finite=True)
        check.number("adaptive_rho", self.adaptive_rho, minimum=0.0, finite=True)
        check.number("pac_bayes_target", self.pac_bayes_target, minimum=0.0, maximum=1.0)
        check.integer("pac_bayes_samples", self.pac_bayes_samples, minimum=2)
        check.integer("subset", self.subset, minimum=0)
        check.integer("seed", self.seed, minimum=0)


# --- the measures: each (model, (X, y), record, cfg, memo) → {"value", "se"?, ...} -----------
# ``memo`` is shared by the measures of one network (δE and δL come from one measurement).


def _delta_energy(model, data, record, cfg, memo, *, loss: bool = False) -> dict[str, float]:
    from ..flatness import local_energy

    prof = memo.get("local_energy")
    if prof is None:
        prof = local_energy(model, data, [cfg.sigma], cfg.samples, seed=cfg.seed, progress=False)
        memo["local_energy"] = prof
    if loss:
        return {"value": prof.delta_loss[0], "se": prof.delta_loss_se[0]}
    return {"value": prof.delta_error[0], "se": prof.delta_error_se[0]}


def _hessian(model, data, record, cfg, memo, *, what: str) -> dict[str, float]:
    from ..flatness.curvature import hessian

    res = memo.get("hessian")
    if res is None or (what == "trace" and res.trace is None):
        res = hessian(
            model, data, top_k=1, trace=what == "trace" or "hessian_trace" in cfg.measures,
            trace_samples=cfg.hessian_trace_samples, seed=cfg.seed, progress=False,
        )  # fmt: skip
        memo["hessian"] = res
    if what == "trace":
        return {"value": res.trace, "se": res.trace_se}
    return {"value": float(res.eigenvalues[0])}


def _sharpness(model, data, record, cfg, memo, *, adaptive: bool) -> dict[str, float]:
    from ..flatness.worst_case import sharpness

    rho = cfg.adaptive_rho if adaptive else cfg.rho
    res = sharpness(model, data, rho, adaptive=adaptive, seed=cfg.seed, progress=False)
    return {"value": float(res.value)}


def _pac_bayes(model, data, record, cfg, memo) -> dict[str, float]:
    from ..flatness.pac_bayes import pac_bayes_sigma

    res = pac_bayes_sigma(
        model, data, target=cfg.pac_bayes_target, samples=cfg.pac_bayes_samples,
        seed=cfg.seed, progress=False,
    )  # fmt: skip
    return {"value": float(res.measure), "sigma": float(res.sigma), "status": res.status}


def _weight_norm(model, data, record, cfg, memo) -> dict[str, float]:
    with torch.no_grad():
        total = sum(float(p.double().pow(2).sum()) for p in model.parameters())
    return {"value": total}


def _train_loss(model, data, record, cfg, memo) -> dict[str, float]:
    return {"value": float(record["train"]["train_loss"])}


# name → (function, description). Larger values mean sharper for every one of them.
MEASURES: dict[str, tuple[Callable[..., dict[str, float]], str]] = {
    "delta_energy": (_delta_energy, "δE_train(σ): mean train-error increase, w + σ z ⊙ w"),
    "delta_energy_loss": (
        lambda *a: _delta_energy(*a, loss=True),
        "δL_train(σ): mean train-loss increase, w + σ z ⊙ w",
    ),
    "hessian_top": (lambda *a: _hessian(*a, what="top"), "λ_max of the training-loss Hessian"),
    "hessian_trace": (lambda *a: _hessian(*a, what="trace"), "Tr H (Hutchinson)"),
    "sharpness": (lambda *a: _sharpness(*a, adaptive=False), "worst-case ΔL in ‖ε‖ ≤ ρ"),
    "adaptive_sharpness": (
        lambda *a: _sharpness(*a, adaptive=True),
        "worst-case ΔL in ‖ε/|w|‖ ≤ ρ (ASAM)",
    ),
    "pac_bayes": (_pac_bayes, "1/σ², σ: largest magnitude-aware noise with ΔE ≤ target"),
    "weight_norm": (_weight_norm, "Σ ‖W‖² (baseline)"),
    "train_loss": (_train_loss, "training cross-entropy (baseline)"),
}


# --- per member --------------------------------------------------------------------------------


def _settings(cfg: CorrelateConfig, name: str) -> dict[str, Any]:
    """The settings a measure's value depends on (a change recomputes it)."""
    common = {"subset": cfg.subset, "seed": cfg.seed}
    specific = {
        "delta_energy": {"sigma": cfg.sigma, "samples": cfg.samples},
        "delta_energy_loss": {"sigma": cfg.sigma, "samples": cfg.samples},
        "hessian_trace": {"trace_samples": cfg.hessian_trace_samples},
        "sharpness": {"rho": cfg.rho},
        "adaptive_sharpness": {"rho": cfg.adaptive_rho},
        "pac_bayes": {"target": cfg.pac_bayes_target, "samples": cfg.pac_bayes_samples},
    }.get(name, {})
    return {**common, **specific}


def measure_member(
    member_folder: str, cfg: CorrelateConfig, cache_path: str, data_root: str | None
) -> dict[str, Any]:
    """Compute (or reuse) every measure of one member; save its cache file after each."""
    model, record = load_member(member_folder)
    cache_file = Path(cache_path)
    cached: dict[str, Any] = {}
    if cache_file.is_file():
        try:
            cached = json.loads(cache_file.read_text()).get("measures", {})
        except json.JSONDecodeError:
            cached = {}
    spec = record["data"]
    data = member_data(spec["dataset"], int(spec["train_subset"]), data_root)
    X, y = data["x_train"], data["y_train"]
    if cfg.subset and cfg.subset < len(X):
        keep = torch.randperm(len(X), generator=torch.Generator().manual_seed(cfg.seed))
        X, y = X[keep[: cfg.subset]], y[keep[: cfg.subset]]
    out, memo = {}, {}
    for name in cfg.measures:
        settings = _settings(cfg, name)
        hit = cached.get(name)
        if hit is not None and hit.get("settings") == settings:
            out[name] = hit
            continue
        t0 = time.perf_counter()
        value = MEASURES[name][0](model, (X, y), record, cfg, memo)
        out[name] = {**value, "settings": settings, "wall_time_s": time.perf_counter() - t0}
        cached[name] = out[name]
        write_json_atomic(cache_file, {"id": record["id"], "measures": cached})
    return {"id": record["id"], "measures": out}


# --- statistics --------------------------------------------------------------------------------


def _stats(values: Sequence[float], target: Sequence[float], hparams, axes) -> dict[str, Any]:
    r, p = pearson(values, target)
    rho, p_rho = spearman(values, target)
    tau, p_tau = kendall(values, target)
    return {
        "pearson_r": r,
        "pearson_p": p,
        "spearman_rho": rho,
        "spearman_p": p_rho,
        "kendall_tau": tau,
        "kendall_p": p_tau,
        "granulated_kendall": granulated_kendall(values, target, hparams, axes),
    }


def summarize(rows: list[dict[str, Any]], cfg: CorrelateConfig, axes: Sequence[str]) -> dict:
    """Correlations of every measure with the gap and with the test error, and a ranking."""
    hparams = [r["hparams"] for r in rows]
    varied = [a for a in axes if len({h[a] for h in hparams}) > 1]
    gap = [r["gap_error"] for r in rows]
    test = [r["test_error"] for r in rows]
    stats = {}
    for name in cfg.measures:
        values = [r["measures"][name]["value"] for r in rows]
        stats[name] = {
            "gap": _stats(values, gap, hparams, varied),
            "test_error": _stats(values, test, hparams, varied),
        }

    def key(name):
        tau = stats[name]["gap"]["kendall_tau"]
        return -tau if math.isfinite(tau) else math.inf

    return {"stats": stats, "ranking": sorted(cfg.measures, key=key), "axes": varied}


def format_ranking(result: Mapping[str, Any]) -> str:
    """The measures ranked by Kendall τ with the gap, as a Markdown table."""
    lines = [
        "| measure | Kendall τ (gap) | Ψ granulated | Spearman ρ | Pearson r (p) | "
        "Pearson r with test error |",
        "|---|---|---|---|---|---|",
    ]
    for name in result["ranking"]:
        g = result["stats"][name]["gap"]
        t = result["stats"][name]["test_error"]
        lines.append(
            f"| {name} | {g['kendall_tau']:+.3f} | {g['granulated_kendall']['mean']:+.3f} | "
            f"{g['spearman_rho']:+.3f} | {g['pearson_r']:+.3f} ({g['pearson_p']:.1e}) | "
            f"{t['pearson_r']:+.3f} |"
        )
    return "\n".join(lines)


# --- the whole family --------------------------------------------------------------------------


def correlate_family(
    family: str | Path,
    out: str | Path,
    cfg: CorrelateConfig,
    *,
    data_root: str | None = None,
    jobs: int = 1,
    include_unstopped: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure every finished member of ``family``, correlate, and write the results to ``out``.

    Members that did not reach the family's training-loss target are left out of the
    statistics (listed under ``excluded``) unless ``include_unstopped``: the comparison is
    meaningful only between networks trained to the same training loss (Jiang et al., 2020).

    Returns:
        The content of ``correlation.json``.
    """
    check.integer("jobs", jobs, minimum=1)
    t0 = time.perf_counter()
    family, out = Path(family), Path(out)
    folders = sorted(p for p in (family / "members").glob("*") if (p / "member.json").is_file())
    if not folders:
        raise ValueError(f"Invalid family {family}: no finished members (run wideflat family)")
    records = {p.name: json.loads((p / "member.json").read_text()) for p in folders}
    chosen = [p for p in folders if include_unstopped or records[p.name]["train"]["stopped"]]
    excluded = [p.name for p in folders if p not in chosen]
    if len(chosen) < 3:
        raise ValueError(
            f"Invalid family {family}: {len(chosen)} members reached the training target "
            "(need 3; --include-unstopped uses the others too)"
        )
    (out / "measures").mkdir(parents=True, exist_ok=True)
    tasks = [(str(p), cfg, str(out / "measures" / f"{p.name}.json"), data_root) for p in chosen]
    results = _run(tasks, jobs, progress, log)
    rows = []
    for p in chosen:
        rec = records[p.name]
        rows.append({
            "id": p.name,
            "hparams": rec["hparams"],
            "train_error": rec["train"]["train_error"],
            "train_loss": rec["train"]["train_loss"],
            "test_error": rec["train"]["test_error"],
            "gap_error": rec["train"]["gap_error"],
            "epochs": rec["train"]["epochs"],
            "measures": results[p.name],
        })  # fmt: skip
    summary = summarize(rows, cfg, AXES)
    result = {
        "format": "wideflat.correlation",
        "family": str(family),
        "config": asdict(cfg),
        "descriptions": {m: MEASURES[m][1] for m in cfg.measures},
        "n_members": len(rows),
        "excluded": excluded,
        **summary,
        "members": rows,
        "environment": environment(),
        "wall_clock_s": time.perf_counter() - t0,
    }
    write_json_atomic(out / "correlation.json", result)
    (out / "table.md").write_text(format_ranking(result) + "\n")
    from .correlate_plots import plot_fig7, plot_measures

    if "delta_energy" in cfg.measures:
        plot_fig7(result, out / "fig7.png")
    plot_measures(result, out / "measures.png")
    return result


def _run(tasks, jobs: int, progress: bool, log) -> dict[str, dict]:
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc="correlate", unit="net")
    done: dict[str, dict] = {}

    def record(res: dict) -> None:
        done[res["id"]] = res["measures"]
        if bar is not None:
            bar.update(1)

    try:
        run_jobs(measure_member, tasks, jobs, record)
    finally:
        if bar is not None:
            bar.close()
    return done
