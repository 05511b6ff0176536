"""The ``wideflat family`` and ``wideflat correlate`` commands (flags and handlers).

Kept beside :mod:`wideflat.cli`, which registers them and owns the shared error guard.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_correlate", "add_family"]


def add_family(sub, command, positive_int, seed) -> None:
    from .experiments.family import AXES, DEFAULT_GRID, FamilyConfig

    fam = command(
        sub,
        "family",
        "train a grid of small networks on Fashion-MNIST (the model family for correlate)",
        "Train a family of MLPs on a Fashion-MNIST subset over a grid of learning rate, batch "
        "size, weight decay, width, depth and dropout, each until its training cross-entropy "
        "reaches the target (the kind of family the paper's Fig. 7 correlates flatness over). "
        "Each network is saved as it finishes; rerun the same command to resume. Default grid: "
        + "; ".join(f"{a} {','.join(f'{v:g}' for v in DEFAULT_GRID[a])}" for a in AXES),
        _run_family,
        "interrupted; rerun the same command to resume (finished networks are kept)",
    )
    fam.add_argument("--out", default="runs/family", help="family folder")
    fam.add_argument(
        "--grid", action="append", default=[], metavar="AXIS=V1,V2",
        help=f"replace an axis's values (repeatable); axes: {', '.join(AXES)}",
    )  # fmt: skip
    d = FamilyConfig()
    fam.add_argument(
        "--train-subset", type=positive_int, default=d.train_subset, help="training images"
    )
    fam.add_argument("--target-loss", type=float, default=d.target_loss, help="train CE to stop at")
    fam.add_argument(
        "--max-epochs", type=positive_int, default=d.max_epochs, help="epoch cap per network"
    )
    fam.add_argument("--seed", type=seed, default=d.seed, help="init and minibatch-order seed")
    fam.add_argument("--data-root", help="Fashion-MNIST folder (default: search)")
    fam.add_argument("--jobs", type=positive_int, default=1, help="networks trained at once")
    fam.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _run_family(args: argparse.Namespace) -> int:
    from ._io import unwritable_reason
    from .experiments.family import FamilyConfig, parse_grid, train_family

    cfg = FamilyConfig(
        grid=parse_grid(args.grid), train_subset=args.train_subset, target_loss=args.target_loss,
        max_epochs=args.max_epochs, seed=args.seed, data_root=args.data_root,
    )  # fmt: skip
    out = Path(args.out)
    if (reason := unwritable_reason(out)) is not None:
        raise ValueError(f"cannot write to --out {str(out)!r}: {reason}")
    n = 1
    for _, values in cfg.grid:
        n *= len(values)
    print(f"wideflat family: {n} networks in {out}, {cfg.train_subset} training images, "
          f"until train CE <= {cfg.target_loss:g} (cap {cfg.max_epochs} epochs)")  # fmt: skip
    records = train_family(cfg, out, jobs=args.jobs, progress=not args.no_progress)
    stopped = sum(r["train"]["stopped"] for r in records)
    print(f"{stopped} of {len(records)} networks reached the target; next: "
          f"wideflat correlate {out}")  # fmt: skip
    return 0


def add_correlate(sub, command, positive_int, seed) -> None:
    from .experiments.correlate import MEASURES, CorrelateConfig

    d = CorrelateConfig()
    cor = command(
        sub,
        "correlate",
        "which flatness measure predicts generalization over a family (Fig. 7)",
        "Compute flatness measures for every network of a family (wideflat family), then their "
        "correlation with the generalization gap and the test error: Pearson r (p), Spearman, "
        "Kendall tau and the granulated Kendall coefficient over the hyper-parameter axes. "
        "Writes correlation.json (raw per-network values), table.md, fig7.png (dE_train vs "
        "gap) and measures.png. Every measure is oriented so that larger = sharper. Measures: "
        + "; ".join(f"{k}: {v[1]}" for k, v in MEASURES.items()),
        _run_correlate,
        "interrupted; rerun the same command to resume (measured networks are kept)",
    )
    cor.add_argument("family", help="family folder (from wideflat family)")
    cor.add_argument("--out", help="output folder (default: FAMILY/correlation)")
    cor.add_argument("--measures", nargs="+", default=list(d.measures), help="measures to compute")
    cor.add_argument("--sigma", type=float, default=d.sigma, help="dE_train sigma")
    cor.add_argument("--samples", type=positive_int, default=d.samples, help="dE_train draws")
    cor.add_argument("--rho", type=float, default=d.rho, help="sharpness ball radius")
    cor.add_argument(
        "--adaptive-rho", type=float, default=d.adaptive_rho, help="adaptive sharpness radius"
    )
    cor.add_argument(
        "--subset", type=int, default=d.subset, help="training examples measured (0 = all)"
    )
    cor.add_argument("--seed", type=seed, default=d.seed, help="measurement seed")
    cor.add_argument("--data-root", help="Fashion-MNIST folder (default: search)")
    cor.add_argument("--jobs", type=positive_int, default=1, help="networks measured at once")
    cor.add_argument(
        "--include-unstopped", action="store_true",
        help="also use networks that did not reach the training-loss target",
    )  # fmt: skip
    cor.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _run_correlate(args: argparse.Namespace) -> int:
    from ._io import unwritable_reason
    from .experiments.correlate import CorrelateConfig, correlate_family, format_ranking

    cfg = CorrelateConfig(
        measures=tuple(args.measures), sigma=args.sigma, samples=args.samples, rho=args.rho,
        adaptive_rho=args.adaptive_rho, subset=args.subset, seed=args.seed,
    )  # fmt: skip
    family = Path(args.family)
    if not (family / "members").is_dir():
        raise ValueError(f"Invalid family folder {str(family)!r}: no members/ (wideflat family)")
    out = Path(args.out) if args.out else family / "correlation"
    if (reason := unwritable_reason(out)) is not None:
        raise ValueError(f"cannot write to --out {str(out)!r}: {reason}")
    result = correlate_family(
        family, out, cfg, data_root=args.data_root, jobs=args.jobs,
        include_unstopped=args.include_unstopped, progress=not args.no_progress,
    )  # fmt: skip
    print(f"{result['n_members']} networks ({len(result['excluded'])} left out: not at the "
          f"training target); measures ranked by Kendall tau with the generalization gap "
          f"(larger measure = sharper, positive = sharper generalizes worse):")  # fmt: skip
    print(format_ranking(result))
    print(f"wrote {out / 'correlation.json'}, {out / 'table.md'}, {out / 'fig7.png'}")
    return 0
