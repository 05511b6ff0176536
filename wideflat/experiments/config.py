"""Typed, frozen configuration of one deep-network training run, and its schedule strings.

A :class:`TrainConfig` is everything that determines a run's trajectory (the device aside).
Presets (:mod:`wideflat.experiments.presets`) build them; the CLI overrides single fields.

Units. Epochs are *data epochs*: one epoch is one pass of minibatch gradients over the
training set, counted over all replicas and all eSGD inner steps. Under ``budget="equal"``
a method that spends k minibatch gradients per optimizer step (L for eSGD, y for rSGD,
2 for SAM) therefore takes k times fewer steps per epoch, which is the paper's rescaling
of epochs and LR milestones by L and y (appendix C). Under ``budget="per-replica"`` (rSGD
only, Table 1's "rSGD × y" column) one epoch is one pass *per replica*.

Schedule strings:

* learning rate (``lr_schedule``, a factor on ``lr`` as a function of the epoch):
  ``constant``; ``multistep:150,225[:0.1]`` (× factor at each milestone epoch);
  ``cosine`` (one cosine cycle to 0 over the run); ``exponential:2:0.97`` (× 0.97 every
  2 epochs, stepwise). ``warmup_epochs`` > 0 ramps linearly from ``warmup_lr`` to the
  schedule's value first.
* coupling γ (``gamma``, stepped once per optimizer step): ``exp:G0:G1`` (γ_t = γ0 (1 + γ1)^t,
  the paper's γ0, γ1), ``exp:G0:xF`` (γ grows by the factor F over the run), ``cosine:GMAX``
  (0 → GMAX over the run), ``const:G0``. ``G0`` may be ``auto``: the paper's automatic γ0
  (rSGD: Σ L / Σ d before training; eSGD: L(w)/d(w', w) after one inner loop).

Example:
    >>> cfg = TrainConfig(method="rsgd", epochs=10, gamma="exp:auto:x1e4")
    >>> parse_gamma(cfg.gamma)
    GammaSpec(kind='exp', gamma0=None, rate=None, factor=10000.0)
    >>> parse_lr_schedule("multistep:150,225")
    LRSpec(kind='multistep', milestones=(150.0, 225.0), factor=0.1, every=0.0)
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .._argtypes import SEED_MAX

__all__ = [
    "BASE_OPTIMIZERS",
    "BUDGETS",
    "ENGINES",
    "METHODS",
    "RUN_KINDS",
    "GammaSpec",
    "LRSpec",
    "TrainConfig",
    "add_run_arguments",
    "config_hash",
    "overrides_from_args",
    "parse_gamma",
    "parse_lr_schedule",
    "resolve_kind",
]

METHODS = ("sgd", "esgd", "rsgd", "sam")
BUDGETS = ("equal", "per-replica")
ENGINES = ("loop", "vmap")
BASE_OPTIMIZERS = ("sgd", "rmsprop", "adam")
# torch.finfo(torch.float32).max: real-valued settings end up in float32 tensors, where a
# larger finite value overflows to inf at the first step.
FLOAT32_MAX = 3.4028234663852886e38
# Names used by `compare`: a method at a budget. "rsgdxy" is Table 1's "rSGD × y" column.
RUN_KINDS = {
    "sgd": ("sgd", "equal"),
    "esgd": ("esgd", "equal"),
    "rsgd": ("rsgd", "equal"),
    "rsgdxy": ("rsgd", "per-replica"),
    "sam": ("sam", "equal"),
}


def resolve_kind(name: str) -> tuple[str, str]:
    """``(method, budget)`` for a run kind of :data:`RUN_KINDS`.

    Example:
        >>> resolve_kind("rsgdxy")
        ('rsgd', 'per-replica')
    """
    if name not in RUN_KINDS:
        raise ValueError(f"Invalid method: {name!r} (expected one of {', '.join(RUN_KINDS)})")
    return RUN_KINDS[name]


@dataclass(frozen=True)
class LRSpec:
    """A parsed learning-rate schedule (see the module docstring)."""

    kind: str  # constant | multistep | cosine | exponential
    milestones: tuple[float, ...] = ()  # epochs
    factor: float = 0.1  # multiplier at each milestone / each decay period
    every: float = 0.0  # epochs between exponential decays


@dataclass(frozen=True)
class GammaSpec:
    """A parsed coupling (γ) schedule; ``gamma0=None`` means automatic."""

    kind: str  # exp | cosine | const
    gamma0: float | None = None  # γ0 (exp, const) or γ_max (cosine)
    rate: float | None = None  # γ1, growth per optimizer step (exp)
    factor: float | None = None  # total growth over the run (exp, instead of rate)


def _number(text: str, what: str, whole: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"Invalid {what}: {whole!r} ({text!r} is not a number)") from None
    if not math.isfinite(value):
        raise ValueError(f"Invalid {what}: {whole!r} ({text!r} is not finite)")
    if abs(value) > FLOAT32_MAX:
        raise ValueError(
            f"Invalid {what}: {whole!r} ({text!r} exceeds the float32 maximum {FLOAT32_MAX:.4g})"
        )
    return value


def parse_lr_schedule(text: str) -> LRSpec:
    """Parse an LR schedule string; raises ``ValueError`` naming the string."""
    what = "lr schedule"
    parts = str(text).strip().split(":")
    kind = parts[0]
    if kind in ("constant", "cosine") and len(parts) == 1:
        return LRSpec(kind)
    if kind == "multistep" and len(parts) in (2, 3):
        milestones = tuple(_number(m, what, text) for m in parts[1].split(",") if m)
        if (
            not milestones
            or any(m <= 0 for m in milestones)
            or list(milestones) != sorted(milestones)
        ):
            raise ValueError(f"Invalid {what}: {text!r} (milestones must be increasing, > 0)")
        factor = _number(parts[2], what, text) if len(parts) == 3 else 0.1
        if factor <= 0:
            raise ValueError(f"Invalid {what}: {text!r} (factor must be > 0)")
        return LRSpec(kind, milestones, factor)
    if kind == "exponential" and len(parts) == 3:
        every, factor = _number(parts[1], what, text), _number(parts[2], what, text)
        if every <= 0 or factor <= 0:
            raise ValueError(f"Invalid {what}: {text!r} (period and factor must be > 0)")
        return LRSpec(kind, (), factor, every)
    raise ValueError(
        f"Invalid {what}: {text!r} (expected constant, cosine, multistep:E1,E2[:F] "
        "or exponential:EVERY:F)"
    )


def parse_gamma(text: str) -> GammaSpec:
    """Parse a γ schedule string; raises ``ValueError`` naming the string."""
    what = "gamma schedule"
    parts = str(text).strip().split(":")
    kind = parts[0]

    def g0(token: str) -> float | None:
        if token == "auto" and kind != "cosine":
            return None
        value = _number(token, what, text)
        if value < 0:
            raise ValueError(f"Invalid {what}: {text!r} (gamma must be >= 0)")
        return value

    if kind == "const" and len(parts) == 2:
        return GammaSpec(kind, g0(parts[1]))
    if kind == "cosine" and len(parts) == 2:
        return GammaSpec(kind, g0(parts[1]))
    if kind == "exp" and len(parts) == 3:
        if parts[2].startswith("x"):
            factor = _number(parts[2][1:], what, text)
            if factor <= 0:
                raise ValueError(f"Invalid {what}: {text!r} (growth factor must be > 0)")
            return GammaSpec(kind, g0(parts[1]), factor=factor)
        rate = _number(parts[2], what, text)
        if rate <= -1:
            raise ValueError(f"Invalid {what}: {text!r} (gamma1 must be > -1)")
        return GammaSpec(kind, g0(parts[1]), rate=rate)
    raise ValueError(
        f"Invalid {what}: {text!r} (expected exp:G0:G1, exp:G0:xFACTOR, cosine:GMAX or "
        "const:G0, with G0 a number or auto)"
    )


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Validated on construction (``ValueError`` names the bad field).

    Example:
        >>> TrainConfig(method="esgd", inner_steps=5).grad_evals_per_step
        5
        >>> TrainConfig(method="rsgd", y=0)
        Traceback (most recent call last):
        ...
        ValueError: Invalid y: 0 (expected an int >= 1)
    """

    name: str = "custom"  # preset name, for the record
    # data
    dataset: str = "fashion-mnist"  # a name of wideflat.data.list_datasets()
    data_root: str | None = None  # folder with the dataset files (None: the reader's search)
    train_subset: int = 0  # first n of a fixed (seed 0) permutation of the train set; 0 = all
    test_subset: int = 0  # first n of the test set; 0 = all
    padding: int = 0  # random-crop zero padding, pixels (0 = off)
    flip: bool = False  # random horizontal flips
    cutout: int = 0  # Cutout square side, pixels (0 = off)
    autoaugment: str = ""  # AutoAugment policy "cifar10"|"imagenet"|"svhn" (torchvision); "" = off
    # model
    model: str = "smallconvnet"  # a name of wideflat.models.list_models()
    model_kwargs: tuple[tuple[str, Any], ...] = ()  # extra create_model keywords
    # method and budget
    method: str = "sgd"  # sgd | esgd | rsgd | sam
    budget: str = "equal"  # equal | per-replica (rSGD only)
    epochs: int = 10  # data epochs (see the module docstring)
    batch_size: int = 128  # examples per minibatch (per replica)
    # base optimizer (SGD's own, eSGD's outer loop, each rSGD replica's, SAM's base)
    optimizer: str = "sgd"  # sgd | rmsprop | adam
    lr: float = 0.01  # learning rate η at epoch 0 (after warm-up)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4  # L2 coefficient
    lr_schedule: str = "constant"  # see parse_lr_schedule
    warmup_epochs: float = 0.0  # linear warm-up length, epochs
    warmup_lr: float = 0.0  # learning rate at the start of the warm-up
    # Entropy-SGD
    inner_lr: float = 0.02  # SGLD learning rate η'
    inner_steps: int = 5  # L, minibatch gradients per outer step
    noise: float = 1e-4  # SGLD noise ε
    alpha: float = 0.75  # running-mean weight α of the inner loop
    # Replicated-SGD
    y: int = 3  # number of replicas
    coupling_every: int = 10  # K, steps between couplings
    engine: str = "loop"  # loop | vmap
    # focusing (eSGD, rSGD)
    gamma: str = "exp:auto:x1e4"  # see parse_gamma
    # SAM
    rho: float = 0.05  # neighbourhood radius ρ (L2)
    # evaluation and flatness
    eval_every: int = 1  # epochs between test/train evaluations (the last epoch always)
    eval_batch: int = 1000  # examples per evaluation forward pass
    train_eval_subset: int = 2000  # training examples for train error/loss (0 = all)
    energy_epochs: tuple[int, ...] = ()  # epochs after which to measure δE(σ)
    energy_sigmas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)  # σ grid
    energy_samples: int = 20  # perturbations per σ
    energy_subset: int = 2000  # training examples per evaluation of E_train
    # run
    seed: int = 0  # model init, minibatch order, augmentation, replicas, noise
    amp: bool = True  # bfloat16 autocast on CUDA (ignored elsewhere)
    deterministic: bool = False  # torch.use_deterministic_algorithms(True)

    def __post_init__(self) -> None:
        def choice(field: str, options) -> None:
            value = getattr(self, field)
            if value not in options:
                raise ValueError(
                    f"Invalid {field}: {value!r} (expected one of {', '.join(options)})"
                )

        def integer(field: str, low: int) -> None:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Invalid {field}: {value!r} (expected an int >= {low})")

        def real(field: str, low: float, *, strict: bool = False) -> None:
            value = getattr(self, field)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and math.isfinite(value) and (value > low if strict else value >= low)
            if not ok or value > FLOAT32_MAX:
                sign = ">" if strict else ">="
                raise ValueError(
                    f"Invalid {field}: {value!r} (expected a number {sign} {low} and "
                    f"<= {FLOAT32_MAX:.4g}, the float32 maximum)"
                )

        def boolean(field: str) -> None:
            value = getattr(self, field)
            if not isinstance(value, bool):
                raise ValueError(f"Invalid {field}: {value!r} (expected true or false)")

        def text(field: str, *, optional: bool = False) -> None:
            value = getattr(self, field)
            if not (isinstance(value, str) or (optional and value is None)):
                none = " or null" if optional else ""
                raise ValueError(f"Invalid {field}: {value!r} (expected a string{none})")

        def sequence(field: str) -> tuple:
            value = getattr(self, field)
            if not isinstance(value, tuple):
                raise ValueError(f"Invalid {field}: {value!r} (expected a list)")
            return value

        for f in ("flip", "nesterov", "amp", "deterministic"):
            boolean(f)
        for f in ("name", "dataset", "model", "lr_schedule", "gamma"):
            text(f)
        text("data_root", optional=True)
        pairs = self.model_kwargs
        if not isinstance(pairs, tuple) or not all(
            isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], str) for p in pairs
        ):
            raise ValueError(
                f"Invalid model_kwargs: {self.model_kwargs!r} (expected (NAME, VALUE) pairs; "
                'with --set, [["NAME", VALUE], ...] or {"NAME": VALUE}, e.g. [["hidden", [512]]])'
            )
        choice("method", METHODS)
        choice("budget", BUDGETS)
        choice("engine", ENGINES)
        choice("optimizer", BASE_OPTIMIZERS)
        if self.budget == "per-replica" and self.method != "rsgd":
            raise ValueError(
                f"Invalid budget: 'per-replica' applies to rsgd only (method {self.method!r})"
            )
        for f in ("epochs", "batch_size", "inner_steps", "y", "coupling_every", "eval_batch"):
            integer(f, 1)
        for f in ("eval_every",):
            integer(f, 1)
        for f in ("train_subset", "test_subset", "padding", "cutout", "train_eval_subset"):
            integer(f, 0)
        if self.autoaugment not in ("", "cifar10", "imagenet", "svhn"):
            raise ValueError(
                f"Invalid autoaugment: {self.autoaugment!r} "
                "(expected cifar10, imagenet, svhn or '')"
            )
        integer("energy_samples", 1)
        integer("energy_subset", 1)
        integer("seed", 0)
        if self.seed > SEED_MAX:
            raise ValueError(f"Invalid seed: {self.seed!r} (expected an int in 0..{SEED_MAX})")
        real("lr", 0.0, strict=True)
        for f in ("momentum", "weight_decay", "warmup_epochs", "warmup_lr", "inner_lr"):
            real(f, 0.0)
        for f in ("noise", "alpha", "rho"):
            real(f, 0.0)
        if self.alpha > 1:
            raise ValueError(f"Invalid alpha: {self.alpha!r} (expected a number in [0, 1])")
        if self.method == "esgd" and self.optimizer != "sgd":
            # The paper runs eSGD's outer and inner loops as Nesterov SGD in every experiment
            # (appendix C); other bases are not wired through the runner.
            raise ValueError(
                f"Invalid optimizer: {self.optimizer!r} with esgd (only 'sgd' is supported)"
            )
        if self.nesterov and self.momentum == 0 and self.optimizer == "sgd":
            raise ValueError("Invalid nesterov: True needs momentum > 0")
        parse_lr_schedule(self.lr_schedule)
        parse_gamma(self.gamma)
        for e in sequence("energy_epochs"):
            if isinstance(e, bool) or not isinstance(e, int) or not 0 <= e <= self.epochs:
                raise ValueError(
                    f"Invalid energy_epochs: {self.energy_epochs!r} (each an int in "
                    f"0..{self.epochs})"
                )
        for s in sequence("energy_sigmas"):
            number = isinstance(s, (int, float)) and not isinstance(s, bool)
            if not (number and math.isfinite(s) and 0 <= s <= FLOAT32_MAX):
                raise ValueError(
                    f"Invalid energy_sigmas: {self.energy_sigmas!r} (each a number >= 0 and "
                    f"<= {FLOAT32_MAX:.4g}, the float32 maximum)"
                )

    @property
    def grad_evals_per_step(self) -> int:
        """Minibatch gradients one optimizer step costs: L (eSGD), y (rSGD), 2 (SAM), 1 (SGD)."""
        from .methods import method_grad_evals  # the one table (methods imports torch)

        return method_grad_evals(self.method, inner_steps=self.inner_steps, y=self.y)

    @property
    def budget_divisor(self) -> int:
        """By how much the method's steps per epoch are divided: the paper's rescaling."""
        if self.budget == "per-replica":
            return 1
        return self.grad_evals_per_step

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` (validated); unknown names raise ``ValueError``."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"Invalid config field: {unknown[0]!r}")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Invalid config field: {unknown[0]!r}")
        data = dict(data)
        for key in ("energy_epochs", "energy_sigmas"):
            if key in data:
                data[key] = tuple(data[key])
        if "model_kwargs" in data:
            data["model_kwargs"] = tuple((k, v) for k, v in data["model_kwargs"])
        return cls(**data)


def config_hash(cfg: TrainConfig) -> str:
    """SHA-256 (16 hex digits) of the config: a checkpoint resumes only the same config.

    Example:
        >>> config_hash(TrainConfig()) == config_hash(TrainConfig(seed=0))
        True
        >>> config_hash(TrainConfig()) == config_hash(TrainConfig(seed=1))
        False
    """
    text = json.dumps(cfg.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _field_value(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise ValueError(f"Invalid --set: {text!r} (expected FIELD=VALUE)")
    known = {f.name for f in fields(TrainConfig)}
    if name not in known:
        raise ValueError(f"Invalid --set: unknown config field {name!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string such as multistep:5,8
    if name == "model_kwargs" and isinstance(value, dict):
        value = list(value.items())
    if name == "model_kwargs" and isinstance(value, list):  # [[NAME, VALUE], ...] → pairs
        value = [tuple(p) if isinstance(p, list) else p for p in value]
    if isinstance(value, list):
        value = tuple(value)
    return name, value


# Fields a command sets with its own options, never with --set.
_COMMAND_FIELDS = {
    "method": "--method (train) or --methods (compare)",
    "budget": "--budget (train) or the rsgdxy kind (compare)",
    "seed": "--seed (train) or --seeds (compare)",
}
# Fields with a flag of their own in add_run_arguments (flag: --name-with-dashes).
_FLAG_FIELDS = (
    "epochs",
    "y",
    "engine",
    "gamma",
    "lr",
    "lr_schedule",
    "batch_size",
    "model",
    "dataset",
    "data_root",
    "train_subset",
    "test_subset",
    "energy_epochs",
    "deterministic",
)


def add_run_arguments(parser) -> None:
    """The config-override flags shared by ``wideflat train`` and ``wideflat compare``."""
    import argparse

    from .._argtypes import non_negative_int as non_negative
    from .._argtypes import positive_int as positive
    from .presets import list_presets

    p = parser
    p.add_argument(
        "--preset", default="fashion-smallconvnet", help=f"recipe: {', '.join(list_presets())}"
    )
    p.add_argument(
        "--out",
        help="run folder (train; default runs/PRESET/METHOD-sSEED) or study folder (compare; "
        "default runs/PRESET)",
    )
    p.add_argument("--epochs", type=positive, help="data epochs (the budget)")
    p.add_argument("--y", type=int, help="rSGD replicas (>= 1)")
    p.add_argument(
        "--engine", choices=ENGINES, help=f"rSGD replica engine, one of: {', '.join(ENGINES)}"
    )
    p.add_argument("--gamma", help="γ schedule: exp:G0:G1, exp:G0:xF, cosine:GMAX, const:G0")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--lr-schedule", help="constant, cosine, multistep:E1,E2[:F], exponential:E:F")
    p.add_argument("--batch-size", type=positive, help="examples per minibatch")
    p.add_argument("--model", help="model name (wideflat.models.list_models())")
    p.add_argument("--dataset", help="dataset name (wideflat.data.list_datasets())")
    p.add_argument("--data-root", help="folder holding the dataset files")
    p.add_argument("--train-subset", type=non_negative, help="training images used (0 = all)")
    p.add_argument("--test-subset", type=non_negative, help="test images used (0 = all)")
    p.add_argument("--energy-epochs", type=non_negative, nargs="*", help="epochs to measure δE")
    p.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="any config field"
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.use_deterministic_algorithms(True)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def overrides_from_args(args) -> dict[str, Any]:
    """Config overrides from :func:`add_run_arguments` flags.

    Raises:
        ValueError: a bad ``--set``, a field given twice (by two ``--set``, or by ``--set``
            and its own flag), or a ``--set`` of a field the command chooses (method,
            budget, seed).
    """
    out: dict[str, Any] = {}
    for text in args.set:
        name, value = _field_value(text)
        if name in _COMMAND_FIELDS:
            raise ValueError(f"Invalid --set {text!r}: {name} is chosen by {_COMMAND_FIELDS[name]}")
        if name in out:
            raise ValueError(f"Invalid --set {text!r}: {name} is set twice")
        out[name] = value
    for name in _FLAG_FIELDS:
        value = getattr(args, name, None)
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if name in out:
            raise ValueError(
                f"Invalid --set {name}={out[name]!r}: {name} is also given by {flag} (give it once)"
            )
        out[name] = tuple(value) if isinstance(value, list) else value
    return out
