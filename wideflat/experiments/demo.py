"""``wideflat demo``: SGD, Entropy-SGD and Replicated-SGD on a teacher–student problem.

Everything is generated here, so it runs anywhere in a few seconds on 2 CPU cores. The
three methods get the same budget of minibatch gradient evaluations (eSGD spends L per
step, rSGD y per step); rSGD is evaluated at its center. Flatness is the local energy
δE_train(w, σ) at σ = 0.5 (multiplicative noise), averaged over draws, as in the paper.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .. import _rng
from ..data import DeviceLoader
from ..flatness import local_energy
from ..optim import EntropySGD, ExponentialGamma, ReplicatedSGD, auto_gamma0_rsgd
from . import methods

__all__ = ["METHODS", "DemoConfig", "DemoResult", "format_table", "reading", "run_method",
           "student", "summarize", "teacher_data"]  # fmt: skip

METHODS = ("sgd", "esgd", "rsgd")


@dataclass(frozen=True)
class DemoConfig:
    epochs: int = 30  # gradient budget, in epochs of the training set
    n_train: int = 1000
    n_test: int = 5000
    dim: int = 30  # input dimension
    classes: int = 4
    hidden: int = 128  # student width
    batch_size: int = 50
    label_noise: float = 0.1  # fraction of training labels replaced at random
    seed: int = 0


@dataclass(frozen=True)
class DemoResult:
    method: str
    steps: int
    grad_evals: int
    train_error: float
    test_error: float
    train_loss: float
    delta_error: float  # δE_train at σ = 0.5
    delta_error_se: float
    seconds: float


def teacher_data(cfg: DemoConfig):
    """Gaussian inputs labelled by a random two-layer teacher; noisy training labels."""
    g = torch.Generator().manual_seed(cfg.seed)
    w1 = torch.randn(cfg.dim, 2 * cfg.dim, generator=g) / cfg.dim**0.5
    w2 = torch.randn(2 * cfg.dim, cfg.classes, generator=g)
    x = torch.randn(cfg.n_train + cfg.n_test, cfg.dim, generator=g)
    y = (torch.tanh(x @ w1) @ w2).argmax(1)
    flip = torch.rand(cfg.n_train, generator=g) < cfg.label_noise
    y_train = y[: cfg.n_train].clone()
    y_train[flip] = torch.randint(0, cfg.classes, (int(flip.sum()),), generator=g)
    return (x[: cfg.n_train], y_train), (x[cfg.n_train :], y[cfg.n_train :])


def student(cfg: DemoConfig) -> nn.Module:
    return nn.Sequential(
        nn.Linear(cfg.dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, cfg.classes)
    )


@torch.no_grad()
def _evaluate(model: nn.Module, data) -> tuple[float, float]:
    x, t = data
    out = model(x)
    return float((out.argmax(1) != t).float().mean()), float(F.cross_entropy(out, t))


def run_method(method: str, cfg: DemoConfig, *, progress: bool = True) -> DemoResult:
    """Train one method on the demo problem and measure it."""
    if method not in METHODS:
        raise ValueError(f"Invalid method: {method!r} (expected one of {', '.join(METHODS)})")
    train, test = teacher_data(cfg)
    torch.manual_seed(cfg.seed)
    model = student(cfg)
    budget = cfg.epochs * cfg.n_train // cfg.batch_size  # minibatch gradients for everyone

    def loader(index: int):
        seed = _rng.derive_seed(cfg.seed, index) % 2**31
        return methods.forever(DeviceLoader(*train, cfg.batch_size, seed=seed, drop_last=True))

    if method == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        batches = loader(0)
        step = lambda: methods.sgd_step(opt, model, F.cross_entropy, batches)  # noqa: E731
        focusing = None
    elif method == "esgd":
        opt = EntropySGD(
            model.parameters(),
            lr=0.5,
            inner_lr=0.05,
            inner_steps=5,
            gamma=0.03,
            momentum=0.9,
            nesterov=True,
            seed=cfg.seed,
        )
        batches = loader(0)
        step = lambda: methods.esgd_step(opt, model, F.cross_entropy, batches)  # noqa: E731
        focusing = ExponentialGamma(opt, growth=10.0, steps=budget // 5)
    else:
        opt = ReplicatedSGD(
            model, lr=0.05, y=3, coupling_every=1, momentum=0.9, nesterov=True, seed=cfg.seed
        )
        streams = [loader(a) for a in range(opt.y)]
        x0, t0 = train
        gamma0 = auto_gamma0_rsgd(opt, lambda m: F.cross_entropy(m(x0), t0))
        step = lambda: methods.rsgd_step(opt, F.cross_entropy, streams)  # noqa: E731
        # The paper grows γ by 10⁴; here the lr stays constant, so stop where the elastic
        # step lr·γ reaches 0.5 (beyond 1 it would overshoot the center).
        growth = min(1e4, 0.5 / (opt.param_groups[0]["lr"] * gamma0))
        focusing = ExponentialGamma(opt, gamma0=gamma0, growth=growth, steps=budget // 3)
    per_step = methods.grad_evals_per_step(opt)
    steps = budget // per_step
    start = time.perf_counter()
    with tqdm(total=steps, desc=f"{method:>4}", disable=not progress, leave=False) as bar:
        for _ in range(steps):
            loss = step()
            if focusing is not None:
                focusing.step()
            bar.update()
            bar.set_postfix(loss=f"{float(loss):.3f}", refresh=False)
    seconds = time.perf_counter() - start
    final = opt.center() if isinstance(opt, ReplicatedSGD) else model
    final.eval()
    train_error, train_loss = _evaluate(final, train)
    test_error, _ = _evaluate(final, test)
    profile = local_energy(final, train, [0.5], samples=50, seed=cfg.seed, progress=False)
    return DemoResult(
        method=method,
        steps=steps,
        grad_evals=steps * per_step,
        train_error=train_error,
        test_error=test_error,
        train_loss=train_loss,
        delta_error=profile.delta_error[0],
        delta_error_se=profile.delta_error_se[0],
        seconds=seconds,
    )


def format_table(results: list[DemoResult]) -> str:
    head = (
        f"{'method':<6} {'steps':>6} {'grads':>6} {'train err':>9} {'test err':>9} "
        f"{'train loss':>10} {'dE(s=0.5)':>15} {'time s':>7}"
    )
    rows = [head, "-" * len(head)]
    for r in results:
        rows.append(
            f"{r.method:<6} {r.steps:>6} {r.grad_evals:>6} {r.train_error:>9.3f} "
            f"{r.test_error:>9.3f} {r.train_loss:>10.3f} "
            f"{r.delta_error:>8.3f} ± {r.delta_error_se:.3f} {r.seconds:>7.1f}"
        )
    return "\n".join(rows)


def _mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, (var / n) ** 0.5


def summarize(by_seed: dict[int, list[DemoResult]]) -> dict[str, dict]:
    """Per method over seeds: mean ± standard error of the errors and δE, and the paired
    differences to SGD (same seed: same data and initialization) with the number of seeds
    where the method is lower. ``by_seed`` maps each seed to its runs (one per method)."""
    table = {(seed, r.method): r for seed, runs in by_seed.items() for r in runs}
    seeds = list(by_seed)
    methods = list(dict.fromkeys(r.method for runs in by_seed.values() for r in runs))
    out: dict[str, dict] = {}
    for m in methods:
        runs = [table[(s, m)] for s in seeds]
        row: dict = {
            "seeds": len(runs),
            "train_error": _mean_se([r.train_error for r in runs]),
            "test_error": _mean_se([r.test_error for r in runs]),
            "delta_error": _mean_se([r.delta_error for r in runs]),
        }
        if m != "sgd" and "sgd" in methods:
            base = [table[(s, "sgd")] for s in seeds]
            d_test = [r.test_error - b.test_error for r, b in zip(runs, base, strict=True)]
            d_flat = [r.delta_error - b.delta_error for r, b in zip(runs, base, strict=True)]
            row["test_error_vs_sgd"] = _mean_se(d_test)
            row["delta_error_vs_sgd"] = _mean_se(d_flat)
            row["seeds_lower_test_error"] = sum(d < 0 for d in d_test)
            row["seeds_flatter"] = sum(d < 0 for d in d_flat)
        out[m] = row
    return out


def _pm(pair: tuple[float, float], digits: int = 3) -> str:
    mean, se = pair
    return f"{mean:.{digits}f} ± {se:.{digits}f}" if se == se else f"{mean:.{digits}f}"


def format_summary(summary: dict[str, dict]) -> str:
    """The table over seeds: mean ± standard error, and paired differences to SGD."""
    head = (f"{'method':<6} {'train err':>15} {'test err':>15} {'vs SGD (lower)':>21} "
            f"{'dE(s=0.5)':>15} {'vs SGD (flatter)':>22}")  # fmt: skip
    rows = [head, "-" * len(head)]
    for m, r in summary.items():
        n = r["seeds"]
        vs_test = vs_flat = "-"
        if "test_error_vs_sgd" in r:
            vs_test = f"{r['test_error_vs_sgd'][0]:+.3f} ({r['seeds_lower_test_error']}/{n})"
            vs_flat = f"{r['delta_error_vs_sgd'][0]:+.3f} ({r['seeds_flatter']}/{n})"
        rows.append(
            f"{m:<6} {_pm(r['train_error']):>15} {_pm(r['test_error']):>15} {vs_test:>21} "
            f"{_pm(r['delta_error']):>15} {vs_flat:>22}"
        )
    return "\n".join(rows)


def reading(summary: dict[str, dict]) -> list[str]:
    """How to read the table, with what it shows for each method, from the numbers."""
    n = next(iter(summary.values()))["seeds"]
    lines = [
        f"How to read: mean ± standard error over {n} seeds (same data and initialization per "
        "seed for every method). dE = training-error increase under multiplicative weight "
        "noise of 50 %: lower = flatter. 'vs SGD' = paired difference, and in how many seeds "
        "the method was lower. rSGD is measured at its center.",
    ]
    for m, r in summary.items():
        if "test_error_vs_sgd" not in r:
            continue
        d_test, se_test = r["test_error_vs_sgd"]
        d_flat, se_flat = r["delta_error_vs_sgd"]
        better = d_test < 0 and (se_test != se_test or d_test + 2 * se_test < 0)
        flatter = d_flat < 0 and (se_flat != se_flat or d_flat + 2 * se_flat < 0)
        if better and flatter:
            verdict = "flatter and lower test error than SGD (> 2 s.e.): the paper's effect"
        elif flatter:
            verdict = "flatter than SGD, but its test error is not lower by more than 2 s.e."
        elif better:
            verdict = "lower test error than SGD, but not flatter by more than 2 s.e."
        else:
            verdict = ("neither flatter nor better than SGD by more than 2 s.e.: the paper's "
                       "effect does not show for it in this setting")  # fmt: skip
        lines.append(f"  {m}: {verdict}.")
    return lines
