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

__all__ = ["METHODS", "DemoConfig", "DemoResult", "format_table", "run_method", "student",
           "teacher_data"]  # fmt: skip

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
