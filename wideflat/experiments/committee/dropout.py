"""Fig. 6 / appendix B.3: flatness and generalization of SGD fast trained with dropout.

The paper's evidence that flatness tracks generalization without entropic training: the
committee machine trained by SGD fast at several dropout rates (hidden-unit dropout, see
:class:`~wideflat.experiments.committee.presets.CommitteeHyperParams`), each solution
measured as in Fig. 1. :func:`run_dropout_study` runs one resumable committee study per rate
(``OUT/p0.2/results.json``, ...), then writes ``OUT/dropout.json`` (per rate: errors, Φ_LE,
δE; the Pearson correlations of flatness with test error, with p-values, over all networks
and over the per-rate means), ``OUT/table.md`` and ``OUT/fig6.png``.

Command (the section in ``docs/results.md``)::

    python -m wideflat.experiments.committee.dropout --out docs/committee/dropout \\
        --rates 0 0.1 0.2 0.3 0.5 --restarts 50 --max-epochs 1000 --jobs 2
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from wideflat._io import write_json_atomic
from wideflat._stats import pearson

from .study import CommitteeStudyConfig, run_committee_study

__all__ = ["run_dropout_study", "summarize_dropout"]


def _rate_name(p: float) -> str:
    return f"p{p:g}"


def run_dropout_study(
    out_dir: str | Path,
    rates: Sequence[float],
    base: CommitteeStudyConfig,
    *,
    jobs: int = 1,
    data_root: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One committee study of ``sgd-fast`` per dropout rate (resumed where one exists).

    Args:
        out_dir: Output folder; rate ``p`` goes to ``out_dir/p{p}``.
        rates: Dropout rates in ``[0, 1)``, distinct.
        base: Study configuration for every rate (its ``algorithms`` are replaced by
            ``("sgd-fast",)``; its overrides are kept, plus ``dropout``).
        jobs, data_root, progress, log: As for
            :func:`~wideflat.experiments.committee.study.run_committee_study`.

    Returns:
        The content of ``dropout.json`` (see :func:`summarize_dropout`).
    """
    rates = [float(p) for p in rates]
    if not rates or len(set(rates)) != len(rates) or any(not 0 <= p < 1 for p in rates):
        raise ValueError(f"Invalid rates: {rates} (distinct values in [0, 1) needed)")
    out = Path(out_dir)
    studies = {}
    for p in rates:
        overrides = tuple(o for o in base.overrides if o[:2] != ("sgd-fast", "dropout"))
        cfg = CommitteeStudyConfig(
            **{
                **{f: getattr(base, f) for f in base.__dataclass_fields__},
                "algorithms": ("sgd-fast",),
                "overrides": (*overrides, ("sgd-fast", "dropout", p)),
            }
        )
        if log is not None:
            log(f"dropout p = {p:g}")
        studies[p] = run_committee_study(
            cfg, out / _rate_name(p), data_root=data_root, progress=progress, log=log,
            resume=True, jobs=jobs,
        )  # fmt: skip
    summary = summarize_dropout(studies)
    write_json_atomic(out / "dropout.json", summary)
    (out / "table.md").write_text(format_dropout_table(summary) + "\n")
    from .plots import plot_fig1

    merged = {"config": {"restarts": base.restarts},
              "algorithms": {f"dropout {p:g}": s["algorithms"]["sgd-fast"]
                             for p, s in studies.items()}}  # fmt: skip
    title = f"Fig. 6: SGD fast with dropout, {base.data}, {base.restarts} restarts per rate"
    plot_fig1(merged, out / "fig6.png", title=title)
    return summary


def _at(grid: Sequence[float], value: float) -> int:
    for i, g in enumerate(grid):
        if math.isclose(float(g), value):
            return i
    raise ValueError(f"{value} is not on the grid {list(grid)}")


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def summarize_dropout(studies: Mapping[float, Mapping[str, Any]]) -> dict[str, Any]:
    """Per-rate numbers and the correlations of flatness with test error.

    Flatness is taken at the studies' table points (``table_distance`` for Φ_LE,
    ``table_sigma`` for δE). Correlations (Pearson ``r`` with its two-sided p-value):
    ``networks`` over every restart of every rate (Φ_LE only where it is exact, i.e. the
    network has no training error; ``n`` says how many), and ``rate_means`` over the per-rate
    means.
    """
    per_rate, nets = [], {"phi": [], "de": [], "test": [], "test_exact": []}
    for p, res in sorted(studies.items()):
        cfg = res["config"]
        block = res["algorithms"]["sgd-fast"]
        i_d = _at(cfg["distances"], cfg["table_distance"])
        i_s = _at(cfg["sigmas"], cfg["table_sigma"])
        s = block["summary"]
        for r in block["restarts"]:
            de = _num(r["local_energy"]["mean"][i_s])
            nets["de"].append(de)
            nets["test"].append(_num(r["test_error"]))
            if not r["local_entropy"]["lower_bound"]:
                nets["phi"].append(_num(r["local_entropy"]["phi_le"][i_d]))
                nets["test_exact"].append(_num(r["test_error"]))
        per_rate.append({
            "dropout": p,
            "restarts": s["n"],
            "train_error": s["train_error"],
            "test_error": s["test_error"],
            "test_error_balanced": s["test_error_balanced"],
            "phi_le": s["phi_le"]["per_point"][i_d],
            "delta_e": s["delta_e"]["per_point"][i_s],
            "stop_reasons": s["stop_reasons"],
            "lower_bound_restarts": s["bp_lower_bound_restarts"],
            "distance": cfg["table_distance"],
            "sigma": cfg["table_sigma"],
        })  # fmt: skip

    def corr(x, y):
        r, pval = pearson(x, y)
        n = sum(math.isfinite(a) and math.isfinite(b) for a, b in zip(x, y, strict=True))
        return {"r": r, "p": pval, "n": n}

    means = {k: [row[k]["mean"] for row in per_rate] for k in ("phi_le", "delta_e", "test_error")}
    return {
        "rates": per_rate,
        "correlation": {
            "networks": {
                "delta_e_vs_test_error": corr(nets["de"], nets["test"]),
                "phi_le_vs_test_error": corr(nets["phi"], nets["test_exact"]),
            },
            "rate_means": {
                "delta_e_vs_test_error": corr(means["delta_e"], means["test_error"]),
                "phi_le_vs_test_error": corr(means["phi_le"], means["test_error"]),
            },
        },
    }


def format_dropout_table(summary: Mapping[str, Any]) -> str:
    """Markdown: one row per rate (mean ± std over restarts), then the correlations."""

    def pm(stat, fmt):
        m, sd = stat.get("mean"), stat.get("std")
        if m is None or sd is None or not (math.isfinite(m) and math.isfinite(sd)):
            return "n/a"
        return f"{m:{fmt}} ± {sd:{fmt}}"

    rows = summary["rates"]
    d, s = (rows[0]["distance"], rows[0]["sigma"]) if rows else (0.1, 0.5)
    lines = [
        f"| dropout | train error | test error | Φ_LE(d = {d:g}) | δE_train(σ = {s:g}) | "
        "stop reasons | Φ_LE lower bounds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        stops = ", ".join(f"{k} {v}" for k, v in sorted(r["stop_reasons"].items()))
        lines.append(
            f"| {r['dropout']:g} | {pm(r['train_error'], '.4f')} | {pm(r['test_error'], '.4f')} "
            f"| {pm(r['phi_le'], '.5f')} | {pm(r['delta_e'], '.4f')} | {stops} | "
            f"{r['lower_bound_restarts']}/{r['restarts']} |"
        )
    lines.append("")
    for scope, corrs in summary["correlation"].items():
        for name, c in corrs.items():
            lines.append(f"* {scope}, {name.replace('_', ' ')}: r = {c['r']:.3f} "
                         f"(p = {c['p']:.2g}, n = {c['n']})")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from wideflat.cli import _committee_overrides

    p = argparse.ArgumentParser(
        prog="python -m wideflat.experiments.committee.dropout",
        description="Fig. 6: SGD fast with hidden-unit dropout at several rates; flatness, "
        "test error and their correlation. Resumable: rerun the same command after a kill.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True)
    p.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5])
    p.add_argument("--restarts", type=int, default=50)
    p.add_argument("--max-epochs", type=int, default=1000)
    p.add_argument("--data", default="fashion", choices=["fashion", "teacher"])
    p.add_argument("--data-root")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--unit-norm", default="one", choices=["one", "sqrt-n"])
    p.add_argument("--loss-reduction", default="sum", choices=["mean", "sum"])
    p.add_argument("--schedule-clock", default="epoch", choices=["epoch", "step"])
    p.add_argument("--mc-restarts", type=int, default=0)
    p.add_argument("--draws", type=int, default=100)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--set", action="append", default=[], metavar="sgd-fast.FIELD=VALUE")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    base = CommitteeStudyConfig(
        algorithms=("sgd-fast",), restarts=args.restarts, data=args.data, seed=args.seed,
        max_epochs=args.max_epochs, unit_norm=args.unit_norm,
        loss_reduction=args.loss_reduction, schedule_clock=args.schedule_clock,
        mc_restarts=args.mc_restarts, draws=args.draws,
        overrides=_committee_overrides(args.set),
    )  # fmt: skip
    summary = run_dropout_study(
        args.out, args.rates, base, jobs=args.jobs, data_root=args.data_root,
        progress=not args.no_progress, log=lambda s: print(s, file=sys.stderr, flush=True),
    )  # fmt: skip
    print(format_dropout_table(summary))
    print(f"wrote {Path(args.out) / 'dropout.json'}, table.md and fig6.png")
    return 0


def _cli() -> int:
    from wideflat.cli import run_module_command

    return run_module_command(main, "dropout")


if __name__ == "__main__":
    sys.exit(_cli())
