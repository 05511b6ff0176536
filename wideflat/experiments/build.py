"""Everything one run needs, built once from a :class:`~.config.TrainConfig`: :func:`build`.

Data (on the device, normalised evaluation sets), model, optimizer, the γ scheduler (with
the automatic γ0 of a fresh run), the learning rate as a torch LR scheduler (:class:`EpochLR`),
one minibatch stream per replica, the loss, and ``step()``, one optimizer step of the method
(:func:`~.methods.make_step`). The returned :class:`Run` also saves and restores its state
for checkpoints (:meth:`Run.state_dict`). Problems with names, data or model raise
:class:`~.errors.RunError` before anything is trained.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from .. import _rng
from .._bn import has_bn, recompute_bn
from ..data import Augment, DatasetError, channel_stats, dataset_info, list_datasets, load_dataset
from ..data import normalize as _normalize
from ..data.streams import BatchStream, replica_streams
from ..models import create_model, list_models
from ..optim import (
    SAM,
    ConstantGamma,
    CosineGamma,
    EntropySGD,
    ExponentialGamma,
    GammaScheduler,
    ReplicatedSGD,
    auto_gamma0_esgd,
    auto_gamma0_rsgd,
)
from .config import TrainConfig, lr_at
from .errors import RunError
from .methods import LossProbe, make_step

__all__ = [
    "PAYLOAD_KEYS",
    "Data",
    "EpochLR",
    "Run",
    "as_float",
    "build",
    "build_gamma_scheduler",
    "build_optimizer",
    "check_names",
    "load_data",
    "peak_coupling_step",
    "resolve_device",
    "steps_per_epoch",
]

_BASES = {"sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam}
_PAYLOAD_FORMAT = 1
# What Run.state_dict writes; "lr" (the LR scheduler) came later and is optional on load.
PAYLOAD_KEYS = ("format", "epoch", "step", "train_seconds", "model", "optimizer", "gamma",
                "streams", "rng")  # fmt: skip


def steps_per_epoch(cfg: TrainConfig, batches_per_epoch: int) -> int:
    """Optimizer steps in one data epoch under the config's budget.

    Example:
        >>> steps_per_epoch(TrainConfig(method="rsgd", y=3), 78)
        26
        >>> steps_per_epoch(TrainConfig(method="rsgd", y=3, budget="per-replica"), 78)
        78
    """
    return max(1, batches_per_epoch // cfg.budget_divisor)


def check_names(cfg: TrainConfig) -> None:
    """RunError for an unknown dataset or model name, or a missing data folder."""
    if cfg.dataset not in list_datasets():
        raise RunError(f"unknown dataset {cfg.dataset!r} (known: {', '.join(list_datasets())})")
    if cfg.data_root is not None and not Path(cfg.data_root).is_dir():
        raise RunError(f"data folder not found: {cfg.data_root}")
    if cfg.model not in list_models():
        raise RunError(f"unknown model {cfg.model!r} (known: {', '.join(list_models())})")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device (default: CUDA when available), checked by allocating on it."""
    try:
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        raise RunError(f"unusable device {str(device)!r}: {e}".splitlines()[0]) from None
    return device


# --- data and model ---------------------------------------------------------------------


@dataclass(frozen=True)
class Data:
    """A run's data on its device: raw training images (the streams augment them), and
    normalised float evaluation sets."""

    source: str | None  # the folder read, recorded in run.json
    x: torch.Tensor  # training images as stored (uint8)
    t: torch.Tensor
    mean: torch.Tensor  # per-channel statistics of the training images
    std: torch.Tensor
    train_eval: tuple[torch.Tensor, torch.Tensor]  # for train error/loss
    test: tuple[torch.Tensor, torch.Tensor]
    energy: tuple[torch.Tensor, torch.Tensor]  # for local energy δE


def as_float(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Images (uint8 or float, N×H×W or N×C×H×W) as normalised float N×C×H×W."""
    x = images.to(torch.float32) / 255.0 if images.dtype == torch.uint8 else images.float()
    if x.ndim == 3:
        x = x.unsqueeze(1)
    return _normalize(x, mean, std)


def load_data(cfg: TrainConfig, device: torch.device) -> Data:
    """The dataset's splits cut to the config's subsets, on ``device``."""
    try:
        train_set = load_dataset(cfg.dataset, cfg.data_root, split="train")
        test_set = load_dataset(cfg.dataset, cfg.data_root, split="test")
    except (DatasetError, OSError, ValueError) as e:
        raise RunError(f"cannot load dataset {cfg.dataset!r}: {e}".replace("\n", " ")) from None
    x, t = train_set.images, train_set.labels
    if cfg.train_subset:
        if cfg.train_subset > len(t):
            raise RunError(f"train_subset {cfg.train_subset} > {len(t)} training images")
        keep = torch.randperm(len(t), generator=torch.Generator().manual_seed(0))
        x, t = x[keep[: cfg.train_subset]], t[keep[: cfg.train_subset]]
    if len(t) < cfg.batch_size:
        raise RunError(f"batch_size {cfg.batch_size} > {len(t)} training images")
    xt, tt = test_set.images, test_set.labels
    if cfg.test_subset:
        xt, tt = xt[: cfg.test_subset], tt[: cfg.test_subset]
    mean, std = channel_stats(x)
    train_eval = x[: cfg.train_eval_subset] if cfg.train_eval_subset else x

    def normalised(images: torch.Tensor, labels: torch.Tensor):
        return as_float(images.to(device), mean, std), labels.to(device)

    return Data(
        source=getattr(train_set, "source", None),
        x=x.to(device),
        t=t.to(device),
        mean=mean,
        std=std,
        train_eval=normalised(train_eval, t[: len(train_eval)]),
        test=normalised(xt, tt),
        energy=normalised(x[: cfg.energy_subset], t[: cfg.energy_subset]),
    )


def train_transform(cfg: TrainConfig, data: Data) -> Augment:
    """The training augmentation of ``cfg`` (crops, flips, AutoAugment, Cutout, then the
    normalisation by the training set's statistics)."""
    return Augment(
        padding=cfg.padding,
        flip=cfg.flip,
        autoaugment=cfg.autoaugment,
        cutout=cfg.cutout,
        mean=tuple(data.mean.tolist()),
        std=tuple(data.std.tolist()),
    )


@torch.no_grad()
def augmented_copy(cfg: TrainConfig, data: Data, transform: Augment):
    """The whole training set passed once through the training augmentation, with a
    generator of its own (seeded from the run's seed), normalised: the data δE sees under
    ``flatness_protocol="paper"`` (the paper measures on the training set it trains on)."""
    gen = torch.Generator(device=data.x.device).manual_seed(_rng.derive_seed(cfg.seed, 0xE))
    pieces = []
    for i in range(0, len(data.x), cfg.eval_batch):
        x = data.x[i : i + cfg.eval_batch]
        x = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.float()
        pieces.append(transform(x.unsqueeze(1) if x.ndim == 3 else x, gen))  # as the streams do
    return torch.cat(pieces), data.t


def build_model(cfg: TrainConfig, data: Data, device: torch.device) -> nn.Module:
    """The model, initialised from ``torch.manual_seed(cfg.seed)``, on ``device``."""
    in_channels = 1 if data.x.ndim == 3 else int(data.x.shape[1])
    torch.manual_seed(cfg.seed)
    try:
        model = create_model(
            cfg.model,
            num_classes=dataset_info(cfg.dataset).num_classes,
            in_channels=in_channels,
            image_size=int(data.x.shape[-1]),
            **dict(cfg.model_kwargs),
        )
    except (ValueError, TypeError, ImportError, RuntimeError, MemoryError) as e:
        # RuntimeError/MemoryError: the allocator refused a model too large for this machine.
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        kwargs = f" with model_kwargs {dict(cfg.model_kwargs)}" if cfg.model_kwargs else ""
        raise RunError(f"cannot build model {cfg.model!r}{kwargs}: {reason}") from None
    return model.to(device)


# --- optimizer and schedules ------------------------------------------------------------


def _base_kwargs(cfg: TrainConfig) -> dict:
    if cfg.optimizer == "sgd":
        return dict(momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":  # Tan & Le's (TensorFlow's) decay 0.9 and ε 1e-3
        return dict(alpha=0.9, eps=1e-3, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return dict(weight_decay=cfg.weight_decay)


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The method's optimizer around the config's base optimizer (lr ``cfg.lr``, γ 0)."""
    base = _BASES[cfg.optimizer]
    kw = _base_kwargs(cfg)
    if cfg.method == "sgd":
        return base(model.parameters(), lr=cfg.lr, **kw)
    if cfg.method == "sam":
        return SAM(model.parameters(), base, rho=cfg.rho, lr=cfg.lr, **kw)
    if cfg.method == "esgd":  # SGD outer and inner loops (TrainConfig enforces it)
        return EntropySGD(
            model.parameters(),
            lr=cfg.lr,
            inner_lr=cfg.inner_lr,
            inner_steps=cfg.inner_steps,
            gamma=0.0,
            alpha=cfg.alpha,
            noise=cfg.noise,
            seed=cfg.seed,
            convention=cfg.convention,
            outer_gamma_scaled=cfg.outer_gamma_scaled,
            **kw,
        )
    return ReplicatedSGD(
        model,
        lr=cfg.lr,
        y=cfg.y,
        engine=cfg.engine,
        coupling_every=cfg.coupling_every,
        base=base,
        base_kwargs=kw,
        seed=cfg.seed,
    )


class EpochLR(LRScheduler):
    """The run's learning rate as a torch LR scheduler, stepped once per optimizer step.

    After ``t`` steps every group's lr is ``lr_at_epoch(t / steps_per_epoch)`` (here
    :func:`~.config.lr_at`), an absolute value rather than a factor on a base lr (as in
    ``LambdaLR``): warm-up is not a product with the base lr, and this keeps every value bit
    for bit that of the function. It checkpoints like the γ scheduler (``state_dict``, built
    before loading).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        lr_at_epoch: Callable[[float], float],
        steps_per_epoch: int,
        last_epoch: int = -1,
    ):
        self.lr_at_epoch = lr_at_epoch
        self.steps_per_epoch = steps_per_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lr = self.lr_at_epoch(self.last_epoch / self.steps_per_epoch)
        return [lr for _ in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().state_dict().items() if k != "lr_at_epoch"}

    def seek(self, steps: int) -> None:
        """Position the schedule after ``steps`` optimizer steps and write that lr into the
        groups (for a checkpoint saved before the LR was a scheduler)."""
        self.last_epoch = steps
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def build_gamma_scheduler(
    cfg: TrainConfig,
    opt: torch.optim.Optimizer,
    total_steps: int,
    gamma0: float,
    steps_per_epoch: int = 1,
) -> GammaScheduler:
    """The γ scheduler of ``cfg.gamma_spec`` over ``total_steps`` optimizer steps (a rate
    given per epoch or per SGLD step is converted to one per optimizer step)."""
    spec = cfg.gamma_spec
    if spec.unit == "sgld" and cfg.method != "esgd":
        raise RunError(f"Invalid gamma: {cfg.gamma!r} (@sgld counts eSGD's inner steps)")
    if spec.kind == "const":
        return ConstantGamma(opt, gamma0)
    if spec.kind == "cosine":
        return CosineGamma(opt, spec.gamma0, total_steps)
    if spec.rate is not None:
        rate = spec.rate_per_step(steps_per_epoch=steps_per_epoch, inner_steps=cfg.inner_steps)
        return ExponentialGamma(opt, gamma0, rate)
    return ExponentialGamma(opt, gamma0, growth=spec.factor, steps=total_steps)


def _auto_gamma0(cfg: TrainConfig, opt, model: nn.Module, data: Data, stream) -> float:
    """The paper's automatic γ0 (rSGD on a fixed training batch; eSGD after one inner loop
    on the stream's next minibatches)."""
    x, t = data.train_eval
    x, t = x[: cfg.eval_batch], t[: cfg.eval_batch]
    try:
        if cfg.method == "rsgd":
            return auto_gamma0_rsgd(opt, lambda m: F.cross_entropy(m(x), t))

        def closure():
            xb, tb = next(stream)
            loss = F.cross_entropy(model(xb), tb)
            loss.backward()
            return loss

        return auto_gamma0_esgd(opt, closure)
    except ValueError as e:
        raise RunError(f"automatic gamma0 failed: {e}") from None


# --- the run ------------------------------------------------------------------------------


@dataclass
class Run:
    """Everything one training run holds; :func:`~.training.train` drives it."""

    cfg: TrainConfig
    device: torch.device
    data: Data
    model: nn.Module
    opt: torch.optim.Optimizer
    streams: list[BatchStream]  # one per replica (rSGD), else one
    probe: LossProbe  # the training loss
    step: Callable[[], torch.Tensor]  # one optimizer step on the next minibatch(es)
    gamma_sched: GammaScheduler | None  # eSGD and rSGD
    lr_sched: EpochLR
    batches_per_epoch: int
    epoch_steps: int  # optimizer steps per data epoch
    total_steps: int

    @property
    def trained(self) -> nn.Module:
        """The module whose state is the trajectory (all replicas for rSGD)."""
        return self.opt.replicas if isinstance(self.opt, ReplicatedSGD) else self.model

    def eval_model(self) -> nn.Module:
        """The model to evaluate: w, or rSGD's center w̄ with BatchNorm statistics
        recomputed on the training images (no augmentation)."""
        if not isinstance(self.opt, ReplicatedSGD):
            return self.model
        center = self.opt.center()
        if has_bn(center):
            x, batch, mean, std = self.data.x, self.cfg.eval_batch, self.data.mean, self.data.std
            recompute_bn(center, (as_float(x[i : i + batch], mean, std)
                                  for i in range(0, len(x), batch)))  # fmt: skip
        return center

    def state_dict(self, epoch: int, step: int, train_seconds: float) -> dict:
        """The checkpoint payload: model (all replicas), optimizer, schedulers, streams, RNG."""
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": _PAYLOAD_FORMAT,
            "epoch": epoch,
            "step": step,
            "train_seconds": train_seconds,
            "model": self.trained.state_dict(),
            "optimizer": self.opt.state_dict(),
            "gamma": self.gamma_sched.state_dict() if self.gamma_sched is not None else {},
            "lr": self.lr_sched.state_dict(),
            "streams": [s.state_dict() for s in self.streams],
            "rng": rng,
        }

    def load_state_dict(self, payload: dict, where: Path) -> tuple[int, int, float]:
        """Restore a :meth:`state_dict`; a part that does not fit raises RunError naming
        ``where`` (the checkpoint file) and the part. Returns (epoch, step, train_seconds)."""
        missing = sorted(set(PAYLOAD_KEYS) - set(payload))
        if missing:
            raise RunError(
                f"{where}: checkpoint payload lacks {', '.join(map(repr, missing))} "
                "(not a checkpoint of wideflat train)"
            )
        if payload["format"] != _PAYLOAD_FORMAT:
            raise RunError(
                f"{where}: checkpoint payload format {payload['format']!r} not supported"
            )

        def gamma() -> None:
            if self.gamma_sched is not None:
                self.gamma_sched.load_state_dict(payload["gamma"])

        def lr() -> None:
            if "lr" in payload:  # older checkpoints have none: the step alone places it
                self.lr_sched.load_state_dict(payload["lr"])
            self.lr_sched.seek(int(payload["step"]))

        def streams() -> None:
            for s, state in zip(self.streams, payload["streams"], strict=True):
                s.load_state_dict(state)

        def rng() -> None:
            torch.set_rng_state(payload["rng"]["cpu"])
            if "cuda" in payload["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(payload["rng"]["cuda"], self.device)

        def counters() -> tuple[int, int, float]:
            return int(payload["epoch"]), int(payload["step"]), float(payload["train_seconds"])

        parts = {
            "model": lambda: self.trained.load_state_dict(payload["model"]),
            "optimizer": lambda: self.opt.load_state_dict(payload["optimizer"]),
            "gamma": gamma,
            "lr": lr,
            "streams": streams,
            "rng": rng,
            "epoch/step": counters,
        }
        for name, restore in parts.items():
            try:
                restored = restore()
            except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
                reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
                raise RunError(
                    f"{where}: checkpoint {name} state does not fit this run ({reason})"
                ) from None
        return restored


def build(cfg: TrainConfig, device: torch.device, *, fresh: bool = True) -> Run:
    """Build a run of ``cfg`` on ``device``. ``fresh``: compute an automatic γ0 (a resumed
    run loads its γ scheduler instead). Schedulers are built before any state is loaded."""
    check_names(cfg)
    data = load_data(cfg, device)
    model = build_model(cfg, data, device)
    try:
        opt = build_optimizer(cfg, model)
        transform = train_transform(cfg, data)
    except (ValueError, ImportError) as e:  # ImportError: AutoAugment without torchvision
        raise RunError(str(e)) from None
    if cfg.flatness_protocol == "paper":
        data = replace(data, energy=augmented_copy(cfg, data, transform))
    streams = replica_streams(
        data.x,
        data.t,
        cfg.batch_size,
        replicas=cfg.y if cfg.method == "rsgd" else 1,
        seed=cfg.seed,
        device=device,
        transform=transform,
    )
    batches_per_epoch = len(streams[0].loader)
    epoch_steps = steps_per_epoch(cfg, batches_per_epoch)
    total_steps = cfg.epochs * epoch_steps
    probe = LossProbe(
        per_replica=cfg.method == "rsgd" and cfg.engine == "loop", check=cfg.engine == "loop"
    )
    gamma_sched = None
    if cfg.method in ("esgd", "rsgd"):
        spec = cfg.gamma_spec
        gamma0 = spec.gamma0 if spec.gamma0 is not None else 0.0
        if fresh and spec.gamma0 is None and spec.kind != "cosine":
            gamma0 = _auto_gamma0(cfg, opt, model, data, streams[0])
        gamma_sched = build_gamma_scheduler(cfg, opt, total_steps, gamma0, epoch_steps)
    lr_sched = EpochLR(opt, lambda epoch: lr_at(cfg, epoch), epoch_steps)
    return Run(
        cfg=cfg,
        device=device,
        data=data,
        model=model,
        opt=opt,
        streams=streams,
        probe=probe,
        step=make_step(cfg.method, cfg.engine, opt, model, probe, streams),
        gamma_sched=gamma_sched,
        lr_sched=lr_sched,
        batches_per_epoch=batches_per_epoch,
        epoch_steps=epoch_steps,
        total_steps=total_steps,
    )


def peak_coupling_step(run: Run) -> tuple[float, float] | None:
    """Largest elastic step over the planned schedules and its epoch, or None (no coupling).

    The step is lr·K·γ for rSGD (η'·γ for eSGD, whose inner lr is constant); beyond 1 the
    coupling overshoots the center. Evaluated on 200 points of the LR and γ schedules.
    """
    if run.gamma_sched is None:
        return None
    cfg, probe = run.cfg, copy.copy(run.gamma_sched)
    worst = (0.0, 0.0)
    for i in range(201):
        t = round(i * run.total_steps / 200)
        probe.last_epoch = t
        gamma = max(probe.get_gamma())
        if cfg.method == "esgd":
            size = cfg.inner_lr * gamma
        else:
            size = lr_at(cfg, t / run.epoch_steps) * cfg.coupling_every * gamma
        if size > worst[0]:
            worst = (size, t / run.epoch_steps)
    return worst
