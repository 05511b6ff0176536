"""The ``wideflat`` command line: parsing only; the work lives in the library."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from . import __version__


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {value}")
    return value


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
    demo.add_argument("--epochs", type=_positive_int, default=30, help="gradient budget in epochs")
    demo.add_argument("--seed", type=int, default=0, help="seed for data, init and minibatches")
    demo.add_argument("--methods", nargs="+", default=["sgd", "esgd", "rsgd"], help="subset to run")
    demo.add_argument("--out", help="also write the results as JSON to this file")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wideflat",
        description="Entropic training (Entropy-SGD, Replicated-SGD) and flatness measures.",
    )
    parser.add_argument("--version", action="version", version=f"wideflat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # One _add_<command>(sub) per command; the work lives in the library modules.
    _add_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
