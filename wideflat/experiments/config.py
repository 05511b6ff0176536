"""Typed, frozen configuration of one deep-network training run.

A :class:`TrainConfig` is everything that determines a run's trajectory (the device aside).
Presets (:mod:`~wideflat.experiments.presets`) build them; the CLI overrides single fields.
Each field declares its bound beside it (``metadata["check"]``) and one loop checks them all;
the two schedule strings are parsed once, on construction (:mod:`~.schedules`).

Units. Epochs are *data epochs*: one epoch is one pass of minibatch gradients over the
training set, counted over all replicas and all eSGD inner steps. Under ``budget="equal"``
a method that spends k minibatch gradients per optimizer step (L for eSGD, y for rSGD,
2 for SAM) therefore takes k times fewer steps per epoch, which is the paper's rescaling
of epochs and LR milestones by L and y (appendix C). Under ``budget="per-replica"`` (rSGD
only, Table 1's "rSGD × y" column) one epoch is one pass *per replica*.

Example:
    >>> cfg = TrainConfig(method="rsgd", epochs=10, gamma="exp:auto:x1e4")
    >>> cfg.gamma_spec
    GammaSpec(kind='exp', gamma0=None, rate=None, factor=10000.0, unit='step')
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .. import _validate as validate
from .schedules import FLOAT32_MAX, GammaSpec, LRSpec, parse_gamma, parse_lr_schedule

__all__ = [
    "BASE_OPTIMIZERS",
    "BUDGETS",
    "ENGINES",
    "FLOAT32_MAX",
    "METHODS",
    "RUN_KINDS",
    "SEED_MAX",
    "GammaSpec",
    "LRSpec",
    "TrainConfig",
    "config_hash",
    "lr_at",
    "method_grad_evals",
    "parse_gamma",
    "parse_lr_schedule",
    "resolve_kind",
]

METHODS = ("sgd", "esgd", "rsgd", "sam")
BUDGETS = ("equal", "per-replica")
ENGINES = ("loop", "vmap")
BASE_OPTIMIZERS = ("sgd", "rmsprop", "adam")
AUTOAUGMENT = ("", "cifar10", "imagenet", "svhn", "fast-imagenet")
SEED_MAX = 2**63 - 1  # torch.manual_seed takes a signed/unsigned 64-bit int; stay in both
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


def method_grad_evals(method: str, *, inner_steps: int, y: int) -> int:
    """Minibatch gradients one optimizer step of ``method`` costs (the one table).

    SGD 1; eSGD L = ``inner_steps`` (one per SGLD step); rSGD ``y`` (one per replica); SAM 2
    (the ascent gradient at w, the descent gradient at w + ε).

    Example:
        >>> [method_grad_evals(m, inner_steps=5, y=3) for m in ("sgd", "esgd", "rsgd", "sam")]
        [1, 5, 3, 2]
    """
    table = {"sgd": 1, "esgd": inner_steps, "rsgd": y, "sam": 2}
    if method not in table:
        raise ValueError(f"Invalid method: {method!r} (expected one of {', '.join(table)})")
    return table[method]


# --- field bounds: check(value, name, cfg) raises ValueError("Invalid NAME: ...") ----------

Check = Callable[[Any, str, Any], None]


def _bound(default: Any, check: Check) -> Any:
    """A dataclass field with its bound beside it."""
    return field(default=default, metadata={"check": check})


def _int(low: int, high: int | None = None) -> Check:
    def check(v: Any, name: str, cfg: Any) -> None:
        validate.integer(name, v, minimum=low, maximum=high, numpy=False)

    return check


def _real(low: float = 0.0, *, strict: bool = False, high: float | None = None) -> Check:
    """A finite number >= ``low`` (> with ``strict``), <= ``high``, and within float32."""

    def check(v: Any, name: str, cfg: Any) -> None:
        validate.number(name, v, minimum=low, maximum=high, finite=True)
        if strict and v <= low:
            raise ValueError(f"Invalid {name}: {v!r} (expected a number > {low})")
        if v > FLOAT32_MAX:
            raise ValueError(
                f"Invalid {name}: {v!r} (expected a number <= {FLOAT32_MAX:.4g}, the float32 "
                "maximum)"
            )

    return check


def _bool(v: Any, name: str, cfg: Any) -> None:
    if not isinstance(v, bool):
        raise ValueError(f"Invalid {name}: {v!r} (expected true or false)")


def _str(optional: bool = False) -> Check:
    def check(v: Any, name: str, cfg: Any) -> None:
        if not (isinstance(v, str) or (optional and v is None)):
            raise ValueError(f"Invalid {name}: {v!r} (expected a string{' or null' * optional})")

    return check


def _choice(options: tuple[str, ...]) -> Check:
    def check(v: Any, name: str, cfg: Any) -> None:
        validate.choice(name, v, options)

    return check


def _pairs(v: Any, name: str, cfg: Any) -> None:
    if not isinstance(v, tuple) or not all(
        isinstance(p, tuple | list) and len(p) == 2 and isinstance(p[0], str) for p in v
    ):
        raise ValueError(
            f"Invalid {name}: {v!r} (expected (NAME, VALUE) pairs; "
            'with --set, [["NAME", VALUE], ...] or {"NAME": VALUE}, e.g. [["hidden", [512]]])'
        )


def _each(item: Check, what: str) -> Check:
    """A tuple whose every element passes ``item`` (``what`` names the element bound)."""

    def check(v: Any, name: str, cfg: Any) -> None:
        if not isinstance(v, tuple):
            raise ValueError(f"Invalid {name}: {v!r} (expected a list)")
        for x in v:
            try:
                item(x, name, cfg)
            except ValueError:
                raise ValueError(f"Invalid {name}: {v!r} (each {what(cfg)})") from None

    return check


def _epoch_of_run(v: Any, name: str, cfg: Any) -> None:
    _int(0, cfg.epochs)(v, name, cfg)


# --- the config ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Validated on construction (``ValueError`` names the bad field).

    Example:
        >>> TrainConfig(method="esgd", inner_steps=5).grad_evals_per_step
        5
        >>> TrainConfig(method="rsgd", y=0)
        Traceback (most recent call last):
        ...
        ValueError: Invalid y: 0 (expected an integer >= 1)
    """

    name: str = _bound("custom", _str())  # preset name, for the record
    # data
    dataset: str = _bound("fashion-mnist", _str())  # a name of wideflat.data.list_datasets()
    data_root: str | None = _bound(None, _str(optional=True))  # None: the reader's search
    train_subset: int = _bound(0, _int(0))  # first n of a fixed (seed 0) permutation; 0 = all
    test_subset: int = _bound(0, _int(0))  # first n of the test set; 0 = all
    padding: int = _bound(0, _int(0))  # random-crop zero padding, pixels (0 = off)
    flip: bool = _bound(False, _bool)  # random horizontal flips
    cutout: int = _bound(0, _int(0))  # Cutout square side, pixels (0 = off)
    autoaugment: str = _bound("", _choice(AUTOAUGMENT))  # policy; torchvision for cifar10 etc.
    # model
    model: str = _bound("smallconvnet", _str())  # a name of wideflat.models.list_models()
    model_kwargs: tuple[tuple[str, Any], ...] = _bound((), _pairs)  # extra create_model keywords
    # method and budget
    method: str = _bound("sgd", _choice(METHODS))
    budget: str = _bound("equal", _choice(BUDGETS))  # per-replica: rSGD only
    epochs: int = _bound(10, _int(1))  # data epochs (see the module docstring)
    batch_size: int = _bound(128, _int(1))  # examples per minibatch (per replica)
    # base optimizer (SGD's own, eSGD's outer loop, each rSGD replica's, SAM's base)
    optimizer: str = _bound("sgd", _choice(BASE_OPTIMIZERS))
    lr: float = _bound(0.01, _real(strict=True))  # learning rate η at epoch 0 (after warm-up)
    momentum: float = _bound(0.9, _real())
    nesterov: bool = _bound(True, _bool)
    weight_decay: float = _bound(1e-4, _real())  # L2 coefficient
    lr_schedule: str = _bound("constant", _str())  # see wideflat.experiments.schedules
    warmup_epochs: float = _bound(0.0, _real())  # linear warm-up length, epochs
    warmup_lr: float = _bound(0.0, _real())  # learning rate at the start of the warm-up
    # "linear": ramp from warmup_lr to the schedule; "step": warmup_lr until warmup_epochs, then
    # the schedule (ResNet-110: "0.01, then 0.1 after one epoch", He et al.)
    warmup_kind: str = _bound("linear", _choice(("linear", "step")))
    # Entropy-SGD
    inner_lr: float = _bound(0.02, _real())  # SGLD learning rate η'
    inner_steps: int = _bound(5, _int(1))  # L, minibatch gradients per outer step
    noise: float = _bound(1e-4, _real())  # SGLD noise ε
    alpha: float = _bound(0.75, _real(high=1.0))  # running-mean weight α of the inner loop
    # "paper" (Algorithm 1 as printed) or "original" (the ucla-vision Entropy-SGD code: inner
    # momentum reset every outer step, coupling after the momentum, noise √(2η')ε)
    convention: str = _bound("paper", _choice(("paper", "original")))
    outer_gamma_scaled: bool = _bound(False, _bool)  # eSGD outer step η γ (w − μ), not η (w − μ)
    # Replicated-SGD
    y: int = _bound(3, _int(1))  # number of replicas
    coupling_every: int = _bound(10, _int(1))  # K, steps between couplings
    # from data epoch coupling_switch_epoch on, K = coupling_every_after (0 = never; the
    # paper's PyramidNet rows switch K 10 → 3 at epoch 220)
    coupling_every_after: int = _bound(0, _int(0))
    coupling_switch_epoch: float = _bound(0.0, _real())
    engine: str = _bound("loop", _choice(ENGINES))
    # focusing (eSGD, rSGD)
    gamma: str = _bound("exp:auto:x1e4", _str())  # see wideflat.experiments.schedules
    # SAM
    rho: float = _bound(0.05, _real())  # neighbourhood radius ρ (L2)
    # evaluation and flatness
    eval_every: int = _bound(1, _int(1))  # epochs between evaluations (the last one always)
    # rSGD: each replica's and the ensemble's errors at the evaluated epochs that are
    # multiples of this (the center is evaluated at every one; the last epoch and a stop by
    # stop_at_collapse always); on a deep network they cost (y + 1)x the center's evaluation
    replica_eval_every: int = _bound(1, _int(1))
    eval_batch: int = _bound(1000, _int(1))  # examples per evaluation forward pass
    train_eval_subset: int = _bound(2000, _int(0))  # examples for train error/loss (0 = all)
    energy_epochs: tuple[int, ...] = _bound(
        (), _each(_epoch_of_run, lambda cfg: f"an integer in [0, {cfg.epochs}]")
    )  # epochs after which to measure δE(σ)
    energy_sigmas: tuple[float, ...] = _bound(
        (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
        _each(_real(), lambda cfg: f"a finite number >= 0 and <= {FLOAT32_MAX:.4g} (float32)"),
    )  # σ grid
    energy_samples: int = _bound(20, _int(1))  # perturbations per σ
    energy_subset: int = _bound(2000, _int(1))  # training examples per evaluation of E_train
    # BatchNorm during δE: "eval" keeps the trained running statistics for every perturbed
    # network; "recompute" re-estimates them on the δE data for each one (twice the passes)
    energy_bn: str = _bound("eval", _choice(("eval", "recompute")))
    # also keep the measured weights (energy/NAME.pt beside each energy/NAME.json: the
    # evaluated model's state_dict, rSGD's center with its BatchNorm statistics), so that
    # other σ, other flatness measures or other data can be applied to them later
    # (wideflat.experiments.measured.load_measured)
    energy_save_weights: bool = _bound(False, _bool)
    # "fixed": δE on the first energy_subset clean training images; "paper": on the whole
    # training set with the training augmentation (one fixed augmented copy), as §6 measures
    flatness_protocol: str = _bound("fixed", _choice(("fixed", "paper")))
    # also measure δE when the train error first falls to each of these (matched-error
    # comparison between methods), and once the train loss is stationary (relative change
    # over the last two epochs below energy_at_stationary; 0 = off)
    energy_at_train_error: tuple[float, ...] = _bound(
        (), _each(_real(high=1.0), lambda cfg: "a fraction in [0, 1]")
    )
    energy_at_stationary: float = _bound(0.0, _real())
    # run
    # stop once the collapse quantity (rSGD: mean replica–center distance ½‖w_a − w̄‖²; eSGD:
    # d(w, μ) = ½‖w − μ‖²) is below this at the end of an epoch (0 = off; the paper: 1e-8)
    stop_at_collapse: float = _bound(0.0, _real())
    seed: int = _bound(0, _int(0, SEED_MAX))  # init, minibatch order, augmentation, noise
    amp: bool = _bound(True, _bool)  # bfloat16 autocast on CUDA (ignored elsewhere)
    deterministic: bool = _bound(False, _bool)  # torch.use_deterministic_algorithms(True)

    def __post_init__(self) -> None:
        for f in fields(self):  # each field's own bound, in declaration order
            f.metadata["check"](getattr(self, f.name), f.name, self)
        if self.budget == "per-replica" and self.method != "rsgd":
            raise ValueError(
                f"Invalid budget: 'per-replica' applies to rsgd only (method {self.method!r})"
            )
        if self.method == "esgd" and self.optimizer != "sgd":
            # The paper runs eSGD's outer and inner loops as Nesterov SGD in every experiment
            # (appendix C); other bases are not wired through the harness.
            raise ValueError(
                f"Invalid optimizer: {self.optimizer!r} with esgd (only 'sgd' is supported)"
            )
        if self.nesterov and self.momentum == 0 and self.optimizer == "sgd":
            raise ValueError("Invalid nesterov: True needs momentum > 0")
        # Parsed once, here; not dataclass fields, so not in to_dict() or the config hash.
        object.__setattr__(self, "_lr_spec", parse_lr_schedule(self.lr_schedule))
        object.__setattr__(self, "_gamma_spec", parse_gamma(self.gamma))

    @property
    def lr_spec(self) -> LRSpec:
        """``lr_schedule``, parsed."""
        return self._lr_spec  # type: ignore[attr-defined]

    @property
    def gamma_spec(self) -> GammaSpec:
        """``gamma``, parsed."""
        return self._gamma_spec  # type: ignore[attr-defined]

    @property
    def grad_evals_per_step(self) -> int:
        """Minibatch gradients one optimizer step costs: L (eSGD), y (rSGD), 2 (SAM), 1 (SGD)."""
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
        for key in ("energy_epochs", "energy_sigmas", "energy_at_train_error"):
            if key in data:
                data[key] = tuple(data[key])
        if "model_kwargs" in data:
            data["model_kwargs"] = tuple((k, v) for k, v in data["model_kwargs"])
        return cls(**data)


def lr_at(cfg: TrainConfig, epoch: float) -> float:
    """Learning rate at (fractional) data epoch ``epoch``: warm-up, then the schedule.

    The one definition of the run's LR; the training loop steps it as a torch LR scheduler
    (:class:`~wideflat.experiments.build.EpochLR`).

    Example:
        >>> cfg = TrainConfig(lr=0.1, lr_schedule="multistep:10,20", epochs=30)
        >>> [round(lr_at(cfg, e), 6) for e in (0, 9.9, 10, 25)]
        [0.1, 0.1, 0.01, 0.001]
    """
    lr = cfg.lr * cfg.lr_spec.factor_at(epoch, cfg.epochs)
    if epoch < cfg.warmup_epochs:
        if cfg.warmup_kind == "step":
            return cfg.warmup_lr
        lr = cfg.warmup_lr + (lr - cfg.warmup_lr) * epoch / cfg.warmup_epochs
    return lr


def config_hash(cfg: TrainConfig) -> str:
    """SHA-256 (16 hex digits) of the config: a checkpoint resumes only the same config.

    Example:
        >>> config_hash(TrainConfig()) == config_hash(TrainConfig(seed=0))
        True
        >>> config_hash(TrainConfig()) == config_hash(TrainConfig(seed=1))
        False
    """
    data = cfg.to_dict()
    for name, default in _ADDED_LATER.items():  # older checkpoints keep resuming
        if data.get(name) == default:
            del data[name]
    text = json.dumps(data, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Fields added after runs were first checkpointed: left out of the hash at their default, so
# a run started before they existed resumes under the same hash.
_ADDED_LATER: dict[str, Any] = {
    "stop_at_collapse": 0.0,
    "warmup_kind": "linear",
    "coupling_every_after": 0,
    "coupling_switch_epoch": 0.0,
    "flatness_protocol": "fixed",
    "energy_at_train_error": [],
    "energy_at_stationary": 0.0,
    "convention": "paper",
    "outer_gamma_scaled": False,
    "replica_eval_every": 1,
    "energy_bn": "eval",
    "energy_save_weights": False,
}
