"""The ``wideflat`` command line: parsing only; the work lives in the library.

Exit status, the same for every command: 0 done; 1 the run failed on this machine (disk
full, an I/O error, out of memory); 2 bad input or a refusal (nothing was written or
changed); 3 a non-finite loss (``wideflat train``/``compare``); 130 interrupted. Every
failure is one line on stderr, ``wideflat COMMAND: what and where``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from . import __version__
from ._argtypes import positive_int, seed


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Option help ending in ``(default: …)`` wherever the option has a default value."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text, default = action.help or "", action.default
        unset = default is None or default is False or default == argparse.SUPPRESS
        if "%(default)" in text or unset or (isinstance(default, list) and not default):
            return text
        if isinstance(default, list | tuple):
            default = " ".join(map(str, default))
        return f"{text} (default: {str(default).replace('%', '%%')})"


def _demo(args: argparse.Namespace) -> int:
    from ._io import check_output_file, write_json_atomic
    from .experiments.demo import METHODS, DemoConfig, format_table, run_method

    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        print(
            f"wideflat demo: unknown method {unknown[0]!r} (choose from {', '.join(METHODS)})",
            file=sys.stderr,
        )
        return 2
    cfg = DemoConfig(epochs=args.epochs, seed=args.seed)
    out = check_output_file(args.out) if args.out else None  # before the training, not after
    print(
        f"wideflat demo: teacher-student classification, {cfg.n_train} training points "
        f"({cfg.label_noise:.0%} noisy labels), equal budget of {cfg.epochs} epochs of gradients"
    )
    results = [run_method(m, cfg, progress=not args.no_progress) for m in args.methods]
    print(format_table(results))
    print("rSGD is measured at its center; dE = local energy (train error increase) at sigma=0.5.")
    if out is not None:
        write_json_atomic(out, {"config": asdict(cfg), "results": [asdict(r) for r in results]})
        print(f"results written to {out}")
    return 0


def _add_demo(sub) -> None:
    demo = sub.add_parser(
        "demo",
        formatter_class=_HelpFormatter,
        help="train a small model with SGD, eSGD and rSGD on generated data and compare",
        description="Train a small MLP with SGD, Entropy-SGD and Replicated-SGD on a generated "
        "teacher-student problem at an equal gradient budget, then print train/test error, "
        "loss and local-energy flatness for each.",
    )
    demo.add_argument("--epochs", type=positive_int, default=30, help="gradient budget in epochs")
    demo.add_argument("--seed", type=seed, default=0, help="seed for data, init and minibatches")
    demo.add_argument("--methods", nargs="+", default=["sgd", "esgd", "rsgd"], help="subset to run")
    demo.add_argument("--out", help="also write the results as JSON to this file")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_demo, interrupted="interrupted")


def _committee(args: argparse.Namespace) -> int:
    import os

    from .experiments.committee_study import (
        CommitteeStudyConfig,
        check_study_folder,
        default_study_folder,
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
    out = Path(args.out) if args.out else default_study_folder(cfg)
    check_study_folder(out, overwrite=args.overwrite)
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
    results = run_committee_study(
        cfg, out, data_root=args.data_root, progress=not args.no_progress, overwrite=True
    )
    from .experiments.committee_plots import plot_fig1

    fig = plot_fig1(out / "results.json", out / "fig1.png")
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
        formatter_class=_HelpFormatter,
        help="the committee-machine study of the paper (Fig. 1): five algorithms, flatness",
        description="Train a committee machine (N=784, K=9) with SGD fast/slow, rSGD fast/slow "
        "and eSGD (appendix B.1), measure every solution's local entropy (BP) and local energy, "
        "write results.json and fig1.png, and print a summary table.",
    )
    com.add_argument(
        "--algorithms", nargs="+", default=None, help=f"subset of: {' '.join(ALGORITHMS)}"
    )
    com.add_argument(
        "--restarts",
        type=int,
        default=None,
        help="restarts (default: 50 as in the paper; quick: 2)",
    )
    com.add_argument("--data", default="fashion", help="fashion (Dress vs Coat) or teacher")
    com.add_argument("--data-root", default=None, help="Fashion-MNIST folder (default: search)")
    com.add_argument("--seed", type=seed, default=0, help="seed of data draw, training, flatness")
    com.add_argument(
        "--out",
        help="output folder (default: committee-results/DATA, or committee-results/DATA-quick "
        "with --quick)",
    )
    com.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of an earlier study in --out (refused otherwise)",
    )
    com.add_argument(
        "--quick", action="store_true", help="2 restarts, 40 epochs, coarse BP grid (minutes)"
    )
    com.add_argument(
        "--max-epochs", type=int, default=None, help="epoch cap (default: 1000; quick: 40)"
    )
    com.add_argument(
        "--draws",
        type=int,
        default=None,
        help="local-energy draws per sigma (default: 100; quick: 20)",
    )
    com.add_argument(
        "--unit-norm",
        default="one",
        help="step-size convention: 'one' (units of norm 1) or 'sqrt-n' (norm sqrt(N))",
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
        help="fashion: 250 Dress + 250 Coat training patterns, or a uniform draw",
    )
    com.add_argument("--no-progress", action="store_true", help="hide progress bars")
    com.set_defaults(func=_committee, interrupted="interrupted")


def _add_train(sub) -> None:
    """``wideflat train``: one run of a preset (paper §6); the work is in experiments.runner."""
    from .experiments.config import RUN_KINDS, add_run_arguments

    train = sub.add_parser(
        "train",
        formatter_class=_HelpFormatter,
        help="train one model with SGD, eSGD, rSGD or SAM from a preset (paper Table 1)",
        description="Train one run of a preset with checkpoints every epoch, metrics.jsonl, "
        "run.json and local-energy profiles. Options without a default shown keep the "
        "preset's value. Exit codes: 1 failed (disk full, I/O), 2 bad input or refused, "
        "3 non-finite loss.",
    )
    add_run_arguments(train)
    train.add_argument("--method", default="sgd", choices=list(RUN_KINDS), help="method")
    train.add_argument("--budget", choices=["equal", "per-replica"], help="rSGD data budget")
    train.add_argument("--seed", type=seed, default=0, help="seed of the run")
    train.add_argument("--resume", help="auto, or a run/checkpoint folder to continue from")

    def run(args: argparse.Namespace) -> int:
        from .experiments.runner import cli_train

        return cli_train(args)

    train.set_defaults(func=run, interrupted="interrupted; resume with --resume auto")


def _add_compare(sub) -> None:
    """``wideflat compare``: methods × seeds of a preset, then Table 1 and Figs. 2–5."""
    from .experiments.config import RUN_KINDS, add_run_arguments

    compare = sub.add_parser(
        "compare",
        formatter_class=_HelpFormatter,
        help="run several methods over seeds and tabulate test error mean ± std (Table 1)",
        description="Train every method × seed of a preset at equal budget (rsgdxy: rSGD at "
        "the per-replica budget) into OUT/<method>-s<seed>, then write OUT/summary.md, "
        "OUT/test_error.png and OUT/local_energy.png. Finished runs are kept, interrupted "
        "ones resumed, so re-running the command continues a study. Options without a default "
        "shown keep the preset's value.",
    )
    add_run_arguments(compare)
    compare.add_argument(
        "--methods",
        nargs="+",
        default=["sgd", "esgd", "rsgd", "rsgdxy"],
        choices=list(RUN_KINDS),
        help="run kinds",
    )
    compare.add_argument("--seeds", nargs="+", type=seed, default=[0, 1, 2], help="seeds")

    def run(args: argparse.Namespace) -> int:
        from .experiments.runner import cli_compare

        return cli_compare(args)

    compare.set_defaults(
        func=run, interrupted="interrupted; run the same command again to continue"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wideflat",
        description="Entropic training (Entropy-SGD, Replicated-SGD) and flatness measures.",
        epilog="Exit status: 0 done, 1 failed on this machine (disk full, I/O), 2 bad input "
        "or refused, 3 non-finite loss, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"wideflat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # One _add_<command>(sub) per command; the work lives in the library modules.
    _add_demo(sub)
    _add_committee(sub)
    _add_train(sub)
    _add_compare(sub)
    parser.error = _one_line_error("wideflat")
    for name, command in sub.choices.items():
        command.error = _one_line_error(f"wideflat {name}")
    return parser


def _one_line_error(prog: str):
    """argparse errors as one line naming the problem (no usage block), exit status 2."""

    def error(message: str) -> None:
        print(f"{prog}: {message}", file=sys.stderr)
        sys.exit(2)

    return error


def _exit_status(error: BaseException) -> int | None:
    """The exit status of an error the library raises on purpose; None for anything else
    (a bug, whose traceback is kept)."""
    import torch

    from .data import DatasetError
    from .experiments.checkpoint import CheckpointError, InjectedFault

    status = getattr(error, "exit_code", None)  # RunError 2, NonFiniteRunError 3
    if isinstance(status, int):
        return status
    if isinstance(error, ValueError | DatasetError):
        return 2
    failed = (CheckpointError, InjectedFault, OSError, MemoryError, torch.OutOfMemoryError)
    return 1 if isinstance(error, failed) else None


def _run(args: argparse.Namespace) -> int:
    """Run one command; its errors become one line on stderr and an exit status."""
    prog = f"wideflat {args.command}"
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{prog}: {args.interrupted}", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - re-raised below unless the library meant it
        status = _exit_status(e)
        if status is None:
            raise
        text = " ".join(str(e).split())
        if not text or isinstance(e, MemoryError):
            text = f"out of memory ({type(e).__name__}) {text}".strip()
        print(f"{prog}: {text}", file=sys.stderr)
        return status


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
