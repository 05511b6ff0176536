"""The ``wideflat`` command line: parsing only; the work lives in the library."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from . import __version__
from ._argtypes import positive_int


def _demo(args: argparse.Namespace) -> int:
    from .experiments.demo import METHODS, DemoConfig, format_table, run_method

    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        print(
            f"wideflat demo: unknown method {unknown[0]!r} (choose from {', '.join(METHODS)})",
            file=sys.stderr,
        )
        return 2
    cfg = DemoConfig(epochs=args.epochs, seed=args.seed)
    print(
        f"wideflat demo: teacher-student classification, {cfg.n_train} training points "
        f"({cfg.label_noise:.0%} noisy labels), equal budget of {cfg.epochs} epochs of gradients"
    )
    results = [run_method(m, cfg, progress=not args.no_progress) for m in args.methods]
    print(format_table(results))
    print("rSGD is measured at its center; dE = local energy (train error increase) at sigma=0.5.")
    if args.out:
        path = Path(args.out)
        path.write_text(
            json.dumps({"config": asdict(cfg), "results": [asdict(r) for r in results]}, indent=2)
        )
        print(f"results written to {path}")
    return 0


def _add_demo(sub) -> None:
    demo = sub.add_parser(
        "demo",
        help="train a small model with SGD, eSGD and rSGD on generated data and compare",
        description="Train a small MLP with SGD, Entropy-SGD and Replicated-SGD on a generated "
        "teacher-student problem at an equal gradient budget, then print train/test error, "
        "loss and local-energy flatness for each.",
    )
    demo.add_argument("--epochs", type=positive_int, default=30, help="gradient budget in epochs")
    demo.add_argument("--seed", type=int, default=0, help="seed for data, init and minibatches")
    demo.add_argument("--methods", nargs="+", default=["sgd", "esgd", "rsgd"], help="subset to run")
    demo.add_argument("--out", help="also write the results as JSON to this file")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_demo)


def _committee(args: argparse.Namespace) -> int:
    import os

    from .experiments.committee_study import (
        CommitteeStudyConfig,
        format_study_table,
        quick_study_config,
        run_committee_study,
    )

    def fail(msg: str) -> int:
        print(f"wideflat committee: {msg}", file=sys.stderr)
        return 2

    overrides = []
    for item in args.set:
        alg, _, rest = item.partition(".")
        key, eq, text = rest.partition("=")
        if not (alg and key and eq and text):
            return fail(f"invalid --set {item!r} (expected ALG.FIELD=VALUE, e.g. esgd.lr=0.5)")
        try:
            value = int(text) if text.lstrip("-").isdigit() else float(text)
        except ValueError:
            return fail(f"invalid --set {item!r}: {text!r} is not a number")
        overrides.append((alg, key, value))
    given = {
        k: v
        for k, v in dict(
            algorithms=tuple(args.algorithms) if args.algorithms else None,
            restarts=args.restarts,
            max_epochs=args.max_epochs,
            draws=args.draws,
        ).items()
        if v is not None
    }
    common = dict(
        data=args.data,
        seed=args.seed,
        unit_norm=args.unit_norm,
        overrides=tuple(overrides),
        balanced=args.balanced,
        **given,
    )
    try:
        cfg = quick_study_config(**common) if args.quick else CommitteeStudyConfig(**common)
    except (ValueError, TypeError) as exc:
        return fail(str(exc))
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        return fail(f"cannot write to --out {str(out)!r}: {exc.strerror or exc}")
    print(
        f"wideflat committee: {', '.join(cfg.algorithms)} on {cfg.data} data, {cfg.restarts} "
        f"restarts, <= {cfg.max_epochs} epochs, unit_norm={cfg.unit_norm}"
        + (" (quick: a smoke test, not a result)" if cfg.quick else "")
    )
    try:
        results = run_committee_study(
            cfg, out, data_root=args.data_root, progress=not args.no_progress
        )
        from .experiments.committee_plots import plot_fig1

        fig = plot_fig1(out / "results.json", out / "fig1.png")
    except (ValueError, OSError) as exc:
        return fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    print(format_study_table(results))
    print(
        "Phi_LE and d per weight (n = N*K); Phi_LE is a lower bound where the solution has "
        "training errors (BP constrains only the patterns it classifies correctly)."
    )
    print(f"wall-clock {results['wall_clock_s']:.0f} s; wrote {out / 'results.json'} and {fig}")
    return 0


def _add_committee(sub) -> None:
    from .experiments.committee_train import ALGORITHMS

    com = sub.add_parser(
        "committee",
        help="the committee-machine study of the paper (Fig. 1): five algorithms, flatness",
        description="Train a committee machine (N=784, K=9) with SGD fast/slow, rSGD fast/slow "
        "and eSGD (appendix B.1), measure every solution's local entropy (BP) and local energy, "
        "write results.json and fig1.png, and print a summary table.",
    )
    com.add_argument(
        "--algorithms", nargs="+", default=None, help=f"subset of: {' '.join(ALGORITHMS)}"
    )
    com.add_argument("--restarts", type=int, default=None, help="restarts (paper: 50; quick: 2)")
    com.add_argument("--data", default="fashion", help="fashion (Dress vs Coat) or teacher")
    com.add_argument("--data-root", default=None, help="Fashion-MNIST folder (default: search)")
    com.add_argument("--seed", type=int, default=0, help="seed of data draw, training, flatness")
    com.add_argument("--out", default="committee-results", help="output folder")
    com.add_argument(
        "--quick", action="store_true", help="2 restarts, 40 epochs, coarse BP grid (minutes)"
    )
    com.add_argument("--max-epochs", type=int, default=None, help="epoch cap (default 1000)")
    com.add_argument("--draws", type=int, default=None, help="local-energy draws per sigma")
    com.add_argument(
        "--unit-norm",
        default="one",
        help="step-size convention: 'one' (units of norm 1; default) or 'sqrt-n' (norm sqrt(N))",
    )
    com.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ALG.FIELD=VALUE",
        help="override a paper hyper-parameter, e.g. --set esgd.lr=0.5 (repeatable)",
    )
    com.add_argument(
        "--balanced",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fashion: 250 Dress + 250 Coat training patterns (default) or a uniform draw",
    )
    com.add_argument("--no-progress", action="store_true", help="hide progress bars")
    com.set_defaults(func=_committee)


def _add_train(sub) -> None:
    """``wideflat train``: one run of a preset (paper §6); the work is in experiments.runner."""
    from .experiments.config import RUN_KINDS, add_run_arguments

    train = sub.add_parser(
        "train",
        help="train one model with SGD, eSGD, rSGD or SAM from a preset (paper Table 1)",
        description="Train one run of a preset with checkpoints every epoch, metrics.jsonl, "
        "run.json and local-energy profiles. Exit codes: 2 bad input, 3 non-finite loss.",
    )
    add_run_arguments(train)
    train.add_argument("--method", default="sgd", choices=list(RUN_KINDS), help="method")
    train.add_argument("--budget", choices=["equal", "per-replica"], help="rSGD data budget")
    train.add_argument("--seed", type=int, default=0, help="seed of the run")
    train.add_argument("--resume", help="auto, or a run/checkpoint folder to continue from")

    def run(args: argparse.Namespace) -> int:
        from .experiments.runner import cli_train

        return cli_train(args)

    train.set_defaults(func=run)


def _add_compare(sub) -> None:
    """``wideflat compare``: methods × seeds of a preset, then Table 1 and Figs. 2–5."""
    from .experiments.config import RUN_KINDS, add_run_arguments

    compare = sub.add_parser(
        "compare",
        help="run several methods over seeds and tabulate test error mean ± std (Table 1)",
        description="Train every method × seed of a preset at equal budget (rsgdxy: rSGD at "
        "the per-replica budget) into OUT/<method>-s<seed>, then write OUT/summary.md, "
        "OUT/test_error.png and OUT/local_energy.png. Finished runs are kept, interrupted "
        "ones resumed, so re-running the command continues a study.",
    )
    add_run_arguments(compare)
    compare.add_argument(
        "--methods",
        nargs="+",
        default=["sgd", "esgd", "rsgd", "rsgdxy"],
        choices=list(RUN_KINDS),
        help="run kinds",
    )
    compare.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds")

    def run(args: argparse.Namespace) -> int:
        from .experiments.runner import cli_compare

        return cli_compare(args)

    compare.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wideflat",
        description="Entropic training (Entropy-SGD, Replicated-SGD) and flatness measures.",
    )
    parser.add_argument("--version", action="version", version=f"wideflat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # One _add_<command>(sub) per command; the work lives in the library modules.
    _add_demo(sub)
    _add_committee(sub)
    _add_train(sub)
    _add_compare(sub)
    for name, command in sub.choices.items():
        command.error = _one_line_error(name)
    return parser


def _one_line_error(command: str):
    """argparse errors as one line naming the problem (no usage block), exit status 2."""

    def error(message: str) -> None:
        print(f"wideflat {command}: {message}", file=sys.stderr)
        sys.exit(2)

    return error


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
