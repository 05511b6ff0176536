"""The ``wideflat`` command line: every flag and handler; the work lives in the library.

Each command is ``_add_<command>(sub)`` (its flags) plus ``_run_<command>(args)`` (a short
handler calling the library). One ``--set [ALG.]FIELD=VALUE`` grammar (:func:`parse_set`)
serves train, compare and committee. One guard (:func:`_guard`) turns errors into exit
status, the same for every command: 0 done; 1 the run failed on this machine (disk full, an
I/O error, out of memory); 2 bad input or a refusal (nothing was written or changed); 3 a
non-finite loss (``wideflat train``/``compare``); 130 interrupted. Every failure is one line
on stderr, ``wideflat COMMAND: what and where``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import __version__

__all__ = ["build_parser", "main", "parse_set"]


# --- value types: errors name the bad text -------------------------------------------------


def _int_at_least(low: int):
    """An argparse ``type`` accepting integers >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}: {value}")
        return value

    parse.__name__ = f"int>={low}"
    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def seed(text: str) -> int:
    """An argparse ``type`` for a seed: an integer in ``0..SEED_MAX`` (the config's bound).

    Example:
        >>> seed("7")
        7
    """
    from .experiments.config import SEED_MAX

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"seed {value} out of range (expected 0..{SEED_MAX})")
    return value


def parse_set(text: str, *, algorithm: bool = False) -> tuple[str | None, str, Any]:
    """One ``--set`` item, ``[ALG.]FIELD=VALUE`` → ``(ALG or None, FIELD, value)``.

    VALUE is read as JSON (numbers, ``true``, lists, ``{"k": v}``, quoted strings), else
    taken as a bare string (``multistep:5,8``); JSON lists become tuples. ``algorithm``: the
    ``ALG.`` prefix is required (committee), else refused (train, compare).

    Example:
        >>> parse_set("lr_schedule=multistep:5,8"), parse_set("esgd.lr=0.5", algorithm=True)
        ((None, 'lr_schedule', 'multistep:5,8'), ('esgd', 'lr', 0.5))
    """
    name, eq, raw = text.partition("=")
    alg, dot, field = name.rpartition(".")
    if not eq or not field or bool(dot) != algorithm or (algorithm and not alg):
        expected = "ALG.FIELD=VALUE, e.g. esgd.lr=0.5" if algorithm else "FIELD=VALUE"
        raise ValueError(f"Invalid --set {text!r} (expected {expected})")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string such as multistep:5,8
    if isinstance(value, list):
        value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return alg or None, field, value


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


def _command(sub, name: str, summary: str, description: str, run, interrupted: str):
    """A sub-command: ``run(args)`` handles it; ``interrupted`` is its Ctrl-C line."""
    parser = sub.add_parser(
        name, formatter_class=_HelpFormatter, help=summary, description=description
    )
    parser.set_defaults(func=run, interrupted=interrupted)
    return parser


# --- wideflat train / compare ------------------------------------------------------------

# Config fields with a flag of their own (--name-with-dashes): (field, type, help, extra).
_RUN_FLAGS = [
    ("epochs", positive_int, "data epochs (the budget)", {}),
    ("y", int, "rSGD replicas (>= 1)", {}),
    ("engine", None, "rSGD replica engine, one of: {engines}", {}),
    ("gamma", None, "γ schedule: exp:G0:G1[@step|@epoch|@sgld] (unit of t; default step), "
     "exp:G0:xF, cosine:GMAX, const:G0", {}),
    ("lr", float, "learning rate", {}),
    ("lr_schedule", None, "constant, cosine, multistep:E1,E2[:F], exponential:E:F", {}),
    ("batch_size", positive_int, "examples per minibatch", {}),
    ("model", None, "model name (wideflat.models.list_models())", {}),
    ("dataset", None, "dataset name (wideflat.data.list_datasets())", {}),
    ("data_root", None, "folder holding the dataset files", {}),
    ("train_subset", non_negative_int, "training images used (0 = all)", {}),
    ("test_subset", non_negative_int, "test images used (0 = all)", {}),
    ("energy_epochs", non_negative_int, "epochs to measure δE", {"nargs": "*"}),
    ("deterministic", None, "torch.use_deterministic_algorithms(True)",
     {"action": argparse.BooleanOptionalAction}),
    ("flatness_protocol", None, "fixed: dE on --set energy_subset clean training images; paper: "
     "on the whole training set with its augmentation, 100 draws unless energy_samples is set",
     {"choices": ["fixed", "paper"]}),
    ("energy_at_train_error", float, "also measure dE when the train error first falls to each "
     "of these fractions (matched-error comparison)", {"nargs": "+", "metavar": "ERR"}),
    ("stop_at_collapse", float, "stop after the epoch whose collapse quantity (rSGD: mean "
     "replica-center distance, eSGD: d(w, mu)) is below TOL; alone: the paper's 1e-8",
     {"nargs": "?", "const": 1e-8, "metavar": "TOL"}),
]  # fmt: skip
# Fields a command sets with its own options, never with --set.
_COMMAND_FIELDS = {
    "method": "--method (train) or --methods (compare)",
    "budget": "--budget (train) or the rsgdxy kind (compare)",
    "seed": "--seed (train) or --seeds (compare)",
}


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """The preset, output and config-override flags shared by train and compare."""
    from .experiments.config import ENGINES
    from .experiments.presets import list_presets

    p = parser
    p.add_argument(
        "--preset", default="fashion-smallconvnet", help=f"recipe: {', '.join(list_presets())}"
    )
    p.add_argument(
        "--out",
        help="run folder (train; default runs/PRESET/METHOD-sSEED) or study folder (compare; "
        "default runs/PRESET)",
    )
    for field, kind, text, extra in _RUN_FLAGS:
        kw: dict[str, Any] = {"help": text.format(engines=", ".join(ENGINES)), **extra}
        if kind is not None:
            kw["type"] = kind
        if field == "engine":
            kw["choices"] = ENGINES
        p.add_argument("--" + field.replace("_", "-"), default=None, **kw)
    p.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="any config field"
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write the metrics as TensorBoard scalars to each run folder's tensorboard/ "
        "(needs: pip install 'wideflat[tensorboard]')",
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config overrides from ``--set`` and the field flags.

    Raises:
        ValueError: a bad ``--set``, a field given twice (by two ``--set``, or by ``--set``
            and its own flag), or a ``--set`` of a field the command chooses (method,
            budget, seed).
    """
    from .experiments.config import TrainConfig

    known = set(TrainConfig.__dataclass_fields__)
    out: dict[str, Any] = {}
    for text in args.set:
        _, name, value = parse_set(text)
        if name not in known:
            raise ValueError(f"Invalid --set: unknown config field {name!r}")
        if name in _COMMAND_FIELDS:
            raise ValueError(f"Invalid --set {text!r}: {name} is chosen by {_COMMAND_FIELDS[name]}")
        if name in out:
            raise ValueError(f"Invalid --set {text!r}: {name} is set twice")
        if name == "model_kwargs" and isinstance(value, dict):  # {"NAME": VALUE} → pairs
            value = tuple(value.items())
        out[name] = value
    for name, *_ in _RUN_FLAGS:
        value = getattr(args, name, None)
        if value is None:
            continue
        if name in out:
            flag = "--" + name.replace("_", "-")
            raise ValueError(
                f"Invalid --set {name}={out[name]!r}: {name} is also given by {flag} (give it once)"
            )
        out[name] = tuple(value) if isinstance(value, list) else value
    if out.get("flatness_protocol") == "paper" and "energy_samples" not in out:
        out["energy_samples"] = PAPER_ENERGY_SAMPLES
    return out


# The paper measures δE_train with 100-1000 draws per σ (§6); its protocol here takes the low end.
PAPER_ENERGY_SAMPLES = 100


def _add_train(sub) -> None:
    from .experiments.config import BUDGETS, RUN_KINDS

    train = _command(
        sub,
        "train",
        "train one model with SGD, eSGD, rSGD or SAM from a preset (paper Table 1)",
        "Train one run of a preset with checkpoints every epoch, metrics.jsonl, run.json and "
        "local-energy profiles. Options without a default shown keep the preset's value. Exit "
        "codes: 1 failed (disk full, I/O), 2 bad input or refused, 3 non-finite loss.",
        _run_train,
        "interrupted; resume with --resume auto",
    )
    _add_run_options(train)
    train.add_argument("--method", default="sgd", choices=list(RUN_KINDS), help="method")
    train.add_argument("--budget", choices=list(BUDGETS), help="rSGD data budget")
    train.add_argument("--seed", type=seed, default=0, help="seed of the run")
    train.add_argument("--resume", help="auto, or a run/checkpoint folder to continue from")


def _run_train(args: argparse.Namespace) -> int:
    from .experiments import preset_config, train

    overrides = _overrides(args)
    if args.budget is not None:
        if args.method == "rsgdxy":
            raise ValueError("Invalid budget: rsgdxy already means per-replica")
        overrides["budget"] = args.budget
    cfg = preset_config(args.preset, args.method, seed=args.seed, **overrides)
    out = args.out or str(Path("runs") / args.preset / f"{args.method}-s{args.seed}")
    s = train(cfg, out, resume=args.resume, device=args.device, progress=not args.no_progress,
              tensorboard=args.tensorboard)  # fmt: skip
    print(
        f"{s.label} seed {s.seed}: test error {100 * s.test_error:.2f}% after {s.epochs} "
        f"epochs ({s.steps} steps, {s.train_seconds:.0f} s, {s.images_per_s:.0f} images/s); "
        f"run folder {s.out}"
    )
    return 0


def _add_compare(sub) -> None:
    from .experiments.config import RUN_KINDS

    compare = _command(
        sub,
        "compare",
        "run several methods over seeds and tabulate test error mean ± std (Table 1)",
        "Train every method × seed of a preset at equal budget (rsgdxy: rSGD at the "
        "per-replica budget) into OUT/<method>-s<seed>, then write OUT/summary.md, "
        "OUT/test_error.png and OUT/local_energy.png. Finished runs are kept, interrupted ones "
        "resumed, so re-running the command continues a study. Options without a default "
        "shown keep the preset's value.",
        _run_compare,
        "interrupted; run the same command again to continue",
    )
    _add_run_options(compare)
    compare.add_argument("--methods", nargs="+", default=["sgd", "esgd", "rsgd", "rsgdxy"],
                         choices=list(RUN_KINDS), help="run kinds")  # fmt: skip
    compare.add_argument("--seeds", nargs="+", type=seed, default=[0, 1, 2], help="seeds")


def _run_compare(args: argparse.Namespace) -> int:
    from .experiments import compare

    out = args.out or str(Path("runs") / args.preset)
    table = compare(args.preset, args.methods, args.seeds, out, overrides=_overrides(args),
                    device=args.device, progress=not args.no_progress,
                    tensorboard=args.tensorboard)  # fmt: skip
    print(table)
    print(f"table, plots and run folders in {out}")
    return 0


# --- wideflat demo ------------------------------------------------------------------------


def _add_demo(sub) -> None:
    demo = _command(
        sub,
        "demo",
        "train a small model with SGD, eSGD and rSGD on generated data and compare",
        "Train a small MLP with SGD, Entropy-SGD and Replicated-SGD on a generated "
        "teacher-student problem at an equal gradient budget, then print train/test error, "
        "loss and local-energy flatness for each.",
        _run_demo,
        "interrupted",
    )
    demo.add_argument("--epochs", type=positive_int, default=30, help="gradient budget in epochs")
    demo.add_argument("--seed", type=seed, default=0, help="first seed (data, init, minibatches)")
    demo.add_argument(
        "--seeds", type=positive_int, default=5, help="seeds run (SEED, SEED+1, ...): mean ± s.e."
    )
    demo.add_argument("--methods", nargs="+", default=["sgd", "esgd", "rsgd"], help="subset to run")
    demo.add_argument("--out", help="also write the results as JSON to this file")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _run_demo(args: argparse.Namespace) -> int:
    from ._io import check_output_file, write_json_atomic
    from .experiments.demo import (
        METHODS,
        DemoConfig,
        format_summary,
        format_table,
        reading,
        run_method,
        summarize,
    )  # fmt: skip

    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r} (choose from {', '.join(METHODS)})")
    seeds = [args.seed + i for i in range(args.seeds)]
    configs = {s: DemoConfig(epochs=args.epochs, seed=s) for s in seeds}  # checks every seed
    cfg = configs[seeds[0]]
    out = check_output_file(args.out) if args.out else None  # before the training, not after
    print(
        f"wideflat demo: teacher-student classification, {cfg.n_train} training points "
        f"({cfg.label_noise:.0%} noisy labels), equal budget of {cfg.epochs} epochs of gradients, "
        f"{len(seeds)} seed(s)"
    )
    by_seed = {
        s: [run_method(m, configs[s], progress=not args.no_progress) for m in args.methods]
        for s in seeds
    }
    summary = summarize(by_seed)
    if len(seeds) == 1:
        print(format_table(by_seed[seeds[0]]))
    else:
        print(format_summary(summary))
    print("\n".join(reading(summary)))
    if out is not None:
        results = [asdict(r) for s in seeds for r in by_seed[s]]
        write_json_atomic(out, {"config": asdict(cfg), "seeds": seeds, "results": results,
                                "summary": summary})  # fmt: skip
        print(f"results written to {out}")
    return 0


# --- wideflat committee -------------------------------------------------------------------


def _add_committee(sub) -> None:
    from .experiments.committee import ALGORITHMS

    com = _command(
        sub,
        "committee",
        "the committee-machine study of the paper (Fig. 1): five algorithms, flatness",
        "Train a committee machine (N=784, K=9) with SGD fast/slow, rSGD fast/slow and eSGD "
        "(appendix B.1), measure every solution's local entropy (BP) and local energy, write "
        "results.json and fig1.png, and print a summary table.",
        _run_committee,
        "interrupted",
    )
    flags = [
        ("--algorithms", dict(nargs="+", help=f"subset of: {' '.join(ALGORITHMS)}")),
        ("--restarts", dict(type=int, help="restarts (default: 50 as in the paper; quick: 6)")),
        ("--data", dict(choices=["fashion", "teacher", "auto"],
                        help="fashion (Dress vs Coat), teacher (synthetic, no files) or auto "
                             "(fashion when found, else teacher; fashion with --data-root); "
                             "default: fashion, quick: auto")),
        ("--data-root", dict(help="Fashion-MNIST folder (default: search)")),
        ("--seed", dict(type=seed, default=0, help="seed of data draw, training, flatness")),
        ("--out", dict(help="output folder (default: committee-results/DATA, or "
                            "committee-results/DATA-quick with --quick)")),
        ("--overwrite", dict(action="store_true", help="replace the results of an earlier "
                                                       "study in --out (refused otherwise)")),
        ("--quick", dict(action="store_true",
                         help="SGD fast vs rSGD fast/slow, 6 restarts, 150 epochs, coarse "
                              "grids: the effect in about a minute")),
        ("--max-epochs", dict(type=int, help="epoch cap (default: 6000; quick: 150)")),
        ("--draws", dict(type=int, help="local-energy draws per sigma (default: 100; quick: 20)")),
        ("--unit-norm", dict(default="one", choices=["one", "sqrt-n"],
                             help="step-size convention: units of norm 1 or of norm sqrt(N)")),
        ("--loss-reduction", dict(default="sum", choices=["mean", "sum"],
                                  help="minibatch loss: sum or mean over its patterns")),
        ("--schedule-clock", dict(default="epoch", choices=["epoch", "step"],
                                  help="what t counts in beta(t), omega(t), gamma(t)")),
        ("--mc-restarts", dict(type=int, help="restarts per algorithm that also get the "
                                              "BP-Monte Carlo check (default: 5; quick: 1)")),
        ("--jobs", dict(type=int, default=1, help="worker processes (one torch thread each)")),
        ("--resume", dict(action="store_true", help="continue the study in --out where it "
                                                    "stopped (same options)")),
        ("--set", dict(action="append", default=[], metavar="ALG.FIELD=VALUE",
                       help="override a paper hyper-parameter, e.g. --set esgd.lr=0.5 "
                            "(repeatable)")),
        ("--balanced", dict(action=argparse.BooleanOptionalAction, default=True,
                            help="fashion: 250 Dress + 250 Coat training patterns, or a "
                                 "uniform draw")),
        ("--no-progress", dict(action="store_true", help="hide progress bars")),
    ]  # fmt: skip
    for flag, kwargs in flags:
        com.add_argument(flag, **kwargs)


def _committee_overrides(items: list[str]) -> tuple[tuple[str, str, float], ...]:
    """``--set ALG.FIELD=NUMBER`` items as the study's ``(alg, field, value)`` overrides."""
    out = []
    for item in items:
        alg, field, value = parse_set(item, algorithm=True)
        if isinstance(value, str):  # Python number syntax JSON lacks (.5, 007, inf)
            text = value
            try:
                value = int(text) if text.lstrip("-").isdigit() else float(text)
            except ValueError:
                raise ValueError(f"Invalid --set {item!r}: {text!r} is not a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"Invalid --set {item!r}: {value!r} is not a number")
        out.append((alg, field, value))
    return tuple(out)


def _run_committee(args: argparse.Namespace) -> int:
    from ._io import unwritable_reason
    from .experiments import committee as study
    from .experiments.committee.plots import plot_fig1

    data = args.data or ("auto" if args.quick else "fashion")
    if data == "auto" and args.data_root:  # a folder given is the only one read, never skipped
        data = "fashion"
    if data == "auto":
        from .data.fashion_mnist import locate_fashion_mnist

        found = locate_fashion_mnist(args.data_root, split="test") is not None
        data = "fashion" if found else "teacher"
        print(f"--data auto: {'Fashion-MNIST found' if found else 'no Fashion-MNIST found'}, "
              f"using {data} data")  # fmt: skip
    given = dict(algorithms=tuple(args.algorithms) if args.algorithms else None,
                 restarts=args.restarts, max_epochs=args.max_epochs, draws=args.draws,
                 mc_restarts=args.mc_restarts)  # fmt: skip
    kwargs = {k: v for k, v in given.items() if v is not None}
    try:
        cfg = (study.quick_study_config if args.quick else study.CommitteeStudyConfig)(
            data=data, seed=args.seed, unit_norm=args.unit_norm, balanced=args.balanced,
            loss_reduction=args.loss_reduction, schedule_clock=args.schedule_clock,
            overrides=_committee_overrides(args.set), **kwargs,
        )  # fmt: skip
    except TypeError as e:
        raise ValueError(str(e)) from None
    out = Path(args.out) if args.out else study.default_study_folder(cfg)
    if not args.resume:
        study.check_study_folder(out, overwrite=args.overwrite)
    if (reason := unwritable_reason(out)) is not None:
        raise ValueError(f"cannot write to --out {str(out)!r}: {reason}")
    quick = " (QUICK RUN: a demonstration at a small budget)" if cfg.quick else ""
    print(f"wideflat committee: {', '.join(cfg.algorithms)} on {cfg.data} data, {cfg.restarts} "
          f"restarts, <= {cfg.max_epochs} epochs, conventions {cfg.unit_norm}/"
          f"{cfg.loss_reduction}/{cfg.schedule_clock}{quick}")  # fmt: skip
    results = study.run_committee_study(
        cfg, out, data_root=args.data_root, progress=not args.no_progress,
        overwrite=args.overwrite, resume=args.resume, jobs=args.jobs,
    )  # fmt: skip
    fig = plot_fig1(out / "results.json", out / "fig1.png")
    print(study.format_study_table(results))
    print(
        "Phi_LE and d per weight (n = N*K); Phi_LE is a lower bound where the solution has "
        "training errors (BP constrains only the patterns it classifies correctly)."
    )
    if cfg.mc_restarts:
        print("BP against Monte Carlo (first restarts; flagged: off by > 2 MC standard errors):")
        print(study.format_bp_mc_table(results))
    if cfg.quick:
        print(study.QUICK_READING)
    print(f"wall-clock {results['wall_clock_s']:.0f} s; wrote {out / 'results.json'} and {fig}")
    return 0


# --- wideflat report ----------------------------------------------------------------------


def _add_report(sub) -> None:
    report = _command(
        sub,
        "report",
        "write one self-contained HTML page for a run, compare study, committee study or "
        "correlate result",
        "Read a result folder (a run: run.json; a compare study: */run.json; a committee "
        "study: results.json; a correlate result: correlation.json) and write one HTML page "
        "with its tables, figures (embedded; the page opens offline and can be sent as one "
        "file), config and provenance. Nothing is trained or measured; a study still running "
        "can be reported.",
        _run_report,
        "interrupted; nothing was written",
    )
    report.add_argument("folder", metavar="RUN_OR_STUDY", help="the result folder")
    report.add_argument("--out", help="the page to write (default: RUN_OR_STUDY/report.html)")


def _run_report(args: argparse.Namespace) -> int:
    from ._io import unwritable_reason
    from .experiments.report import report_kind, write_report

    kind = report_kind(args.folder)  # checked before anything is drawn
    out = Path(args.out) if args.out else Path(args.folder) / "report.html"
    if out.is_dir() or (reason := unwritable_reason(out.parent)) is not None:
        raise ValueError(f"cannot write {str(out)!r}: {'a folder' if out.is_dir() else reason}")
    page = write_report(args.folder, out)
    print(f"wrote {page} ({kind})")
    return 0


# --- the parser and the guard -------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wideflat",
        description="Entropic training (Entropy-SGD, Replicated-SGD) and flatness measures.",
        epilog="Exit status: 0 done, 1 failed on this machine (disk full, I/O), 2 bad input "
        "or refused, 3 non-finite loss, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"wideflat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_demo, _add_committee, _add_train, _add_compare, _add_report):
        add(sub)
    from ._cli_family import add_correlate, add_family

    for add in (add_family, add_correlate):
        add(sub, _command, positive_int, seed)
    parser.error = _one_line_error("wideflat")
    for name, command in sub.choices.items():
        command.error = _one_line_error(f"wideflat {name}")
    return parser


def run_module_command(main, prog: str) -> int:
    """Run a ``python -m`` study command's ``main`` with bad input reported in one line (exit 2)
    and Ctrl-C as exit 130, not a traceback."""
    try:
        return main()
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command to continue", file=sys.stderr)
        return 130


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
    from .experiments.checkpoint import CheckpointError

    status = getattr(error, "exit_code", None)  # RunError 2, NonFiniteRunError 3
    if isinstance(status, int):
        return status
    if isinstance(error, ValueError | DatasetError):
        return 2
    failed = (CheckpointError, OSError, MemoryError, torch.OutOfMemoryError)
    return 1 if isinstance(error, failed) else None


def _guard(args: argparse.Namespace) -> int:
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
    return _guard(args)


if __name__ == "__main__":
    sys.exit(main())
