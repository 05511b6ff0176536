"""The deep-network training run: one method, one seed, one folder (paper §6).

:func:`train` reads a :class:`~wideflat.experiments.config.TrainConfig`, trains with the
per-method loop shape of :mod:`wideflat.experiments.methods`, and writes a run folder::

    out/
        run.json            resolved config, config hash, seed, the data folder read
                            ("data_source"), versions, platform, device, status (running |
                            finished | failed | interrupted, with "error") and the summary
        metrics.jsonl       one strict-JSON row per evaluated epoch (NaN written as null,
                            the field named in "nonfinite")
        energy/epoch-0005.json   local-energy profiles δE(σ) (LocalEnergyProfile.to_json)
        checkpoints/step-…/      atomic, SHA-256-verified checkpoint after every epoch
                                 (the last two kept; wideflat.experiments.checkpoint)

Budget (see :mod:`~wideflat.experiments.config`): an epoch is a pass of minibatch gradients
over the training set; a method costing k gradients per step (L for eSGD, y for rSGD, 2 for
SAM) takes ``batches_per_epoch // k`` steps per epoch, so epochs, LR milestones and the γ
schedule rescale together. ``budget="per-replica"`` (rSGD × y) takes ``batches_per_epoch``.

rSGD is evaluated at its center w̄, with BatchNorm statistics recomputed on the training set
(no augmentation) when the model has BatchNorm. eSGD and SAM are evaluated at w.

Resume: a checkpoint holds the model (all replicas), optimizer, γ scheduler, data-stream and
RNG states; training resumed from it on the same device is bit-identical to an uninterrupted
run, and ``metrics.jsonl`` is cut back to the checkpoint's epoch (a damaged or missing row
up to that epoch is refused, not dropped). Without a committed checkpoint, ``resume="auto"``
starts from scratch only when that discards nothing a run writes after its first checkpoint
(a finished run.json, rows past epoch 1, later step folders are refused).

Failures raise :class:`RunError` (one line; ``exit_code`` 2) before anything in ``out`` is
touched, or :class:`NonFiniteRunError` (exit code 3) when a loss turns NaN/inf: the step is
not applied, nothing newer than the last checkpoint is saved, and run.json says ``failed``.
Any other error once training has begun (a full disk: ``CheckpointError``, ``OSError``)
also leaves run.json ``failed`` with its message, then propagates; Ctrl-C leaves
``interrupted``.

Fault hook (tests): ``WIDEFLAT_FAULT=loss:nan@step=S[@replica=R]`` (or ``loss:inf``) makes
the loss of step S (of replica R, default 0) non-finite.

Example:
    >>> import tempfile
    >>> from wideflat.experiments.config import TrainConfig
    >>> with tempfile.TemporaryDirectory() as d:  # doctest: +SKIP
    ...     summary = train(TrainConfig(epochs=1, train_subset=512), d, progress=False)
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import json
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from tqdm.auto import tqdm

from .. import __version__
from .._io import write_json_atomic
from ..data import Augment, DatasetError, channel_stats, dataset_info, list_datasets, load_dataset
from ..data import normalize as _normalize
from ..data.streams import replica_streams
from ..flatness.energy import local_energy
from ..models import create_model, list_models
from ..optim import (
    SAM,
    ConstantGamma,
    CosineGamma,
    EntropySGD,
    ExponentialGamma,
    NonFiniteLossError,
    ReplicatedSGD,
    auto_gamma0_esgd,
    auto_gamma0_rsgd,
)
from ..replicas import recompute_bn
from . import methods
from .checkpoint import (
    CheckpointError,
    ConfigMismatchError,
    NoCheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from .config import TrainConfig, config_hash, parse_gamma, parse_lr_schedule

__all__ = [
    "NonFiniteRunError",
    "RunError",
    "RunSummary",
    "cli_compare",
    "cli_train",
    "compare",
    "lr_at",
    "read_metrics",
    "run_label",
    "steps_per_epoch",
    "throughput",
    "train",
]

_PAYLOAD_FORMAT = 1
_PAYLOAD_KEYS = (  # what _Run.payload writes
    "format",
    "epoch",
    "step",
    "train_seconds",
    "model",
    "optimizer",
    "gamma",
    "streams",
    "rng",
)
_BASES = {"sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam}


class RunError(Exception):
    """A run cannot start or continue; ``str(e)`` is one line, ``exit_code`` is 2."""

    exit_code = 2


class NonFiniteRunError(RunError):
    """A loss became NaN/inf: ``non-finite loss at epoch e step s replica r`` (exit code 3)."""

    exit_code = 3

    def __init__(self, epoch: int, step: int, replica: int):
        self.epoch, self.step, self.replica = epoch, step, replica
        super().__init__(f"non-finite loss at epoch {epoch} step {step} replica {replica}")


@dataclass(frozen=True)
class RunSummary:
    """The end of a run, as stored in run.json under ``"summary"``."""

    out: str
    label: str  # sgd | esgd | rsgd | rsgdxy | sam
    seed: int
    epochs: int  # data epochs trained
    steps: int  # optimizer steps
    grad_evals: int  # minibatch gradients, all replicas and inner steps
    test_error: float  # fraction, at the evaluated model (rSGD: the center)
    train_error: float  # fraction, on the train-eval subset
    train_loss: float  # mean minibatch loss over the last epoch
    train_seconds: float  # wall clock of the training steps only (no evaluation)
    images_per_s: float  # gradient images per second over epochs 2.. (epoch 1 if only one)


def run_label(cfg: TrainConfig) -> str:
    """The run kind: the method, or ``rsgdxy`` for rSGD at the per-replica budget."""
    return "rsgdxy" if cfg.budget == "per-replica" else cfg.method


def steps_per_epoch(cfg: TrainConfig, batches_per_epoch: int) -> int:
    """Optimizer steps in one data epoch under the config's budget.

    Example:
        >>> steps_per_epoch(TrainConfig(method="rsgd", y=3), 78)
        26
        >>> steps_per_epoch(TrainConfig(method="rsgd", y=3, budget="per-replica"), 78)
        78
    """
    return max(1, batches_per_epoch // cfg.budget_divisor)


def lr_at(cfg: TrainConfig, epoch: float) -> float:
    """Learning rate at (fractional) data epoch ``epoch``: warm-up, then the schedule.

    Example:
        >>> cfg = TrainConfig(lr=0.1, lr_schedule="multistep:10,20", epochs=30)
        >>> [round(lr_at(cfg, e), 6) for e in (0, 9.9, 10, 25)]
        [0.1, 0.1, 0.01, 0.001]
    """
    spec = parse_lr_schedule(cfg.lr_schedule)
    if spec.kind == "multistep":
        factor = spec.factor ** sum(epoch >= m for m in spec.milestones)
    elif spec.kind == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * min(epoch / cfg.epochs, 1.0)))
    elif spec.kind == "exponential":
        factor = spec.factor ** math.floor(epoch / spec.every)
    else:
        factor = 1.0
    lr = cfg.lr * factor
    if epoch < cfg.warmup_epochs:
        lr = cfg.warmup_lr + (lr - cfg.warmup_lr) * epoch / cfg.warmup_epochs
    return lr


# --- small pieces -------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _row_json(row: dict) -> str:
    bad = sorted(k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v))
    out = {k: _clean(v) for k, v in row.items()}
    out["nonfinite"] = bad
    return json.dumps(out, allow_nan=False)


def _parse_row(line: str) -> dict | None:
    """One ``metrics.jsonl`` row (null → NaN), or None if the line is not one."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    epoch = row.get("epoch") if isinstance(row, dict) else None
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        return None
    return {k: (math.nan if v is None else v) for k, v in row.items()}


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The rows of a ``metrics.jsonl`` (null → NaN); unparsable lines are skipped.

    (A resumed run does not skip them: see :func:`train`.)
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").splitlines()
    return [row for row in map(_parse_row, lines) if row is not None]


def _parse_loss_fault() -> tuple[float, int, int] | None:
    spec = os.environ.get("WIDEFLAT_FAULT", "")
    if not spec.startswith("loss:"):
        return None
    m = re.fullmatch(r"loss:(nan|inf)@step=(\d+)(?:@replica=(\d+))?", spec)
    if not m:
        raise RunError(f"invalid WIDEFLAT_FAULT: {spec!r} (expected loss:nan@step=S[@replica=R])")
    return float(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


class _LossProbe:
    """The training loss: cross-entropy, plus fault injection and the first non-finite replica.

    ``per_replica``: the closure is called once per replica in order (rSGD loop engine), so
    the call count within a step is the replica index.
    """

    def __init__(self, per_replica: bool, check: bool = True):
        self.per_replica = per_replica
        self.check = check
        self.fault = _parse_loss_fault()
        self.step = 0
        self.calls = 0
        self.bad: int | None = None

    def begin(self, step: int) -> None:
        self.step, self.calls, self.bad = step, 0, None

    def __call__(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(out.float(), t)
        replica = self.calls if self.per_replica else 0
        self.calls += 1
        if self.fault is not None and self.fault[1:] == (self.step, replica):
            loss = loss * self.fault[0]
        if self.check and self.bad is None and not bool(torch.isfinite(loss)):
            self.bad = replica
        return loss


@contextlib.contextmanager
def _frozen_bn(model: nn.Module):
    """BatchNorm running statistics unchanged inside (momentum 0), e.g. SAM's second pass."""
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [m.momentum for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in zip(layers, saved, strict=True):
            m.momentum = mom


def _has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) for m in model.modules())


def _as_float(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    x = images.to(torch.float32) / 255.0 if images.dtype == torch.uint8 else images.float()
    if x.ndim == 3:
        x = x.unsqueeze(1)
    return _normalize(x, mean, std)


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, t: torch.Tensor, batch: int, amp: bool):
    """(error, loss) over (x, t) in eval mode; the mode is restored."""
    was = model.training
    model.eval()
    wrong, total_loss = 0.0, 0.0
    for i in range(0, len(t), batch):
        with _autocast(x.device, amp):
            out = model(x[i : i + batch]).float()
        wrong += float((out.argmax(1) != t[i : i + batch]).sum())
        total_loss += float(F.cross_entropy(out, t[i : i + batch], reduction="sum"))
    model.train(was)
    n = max(len(t), 1)
    return wrong / n, total_loss / n


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"{device.type} ({cpu}, {torch.get_num_threads()} threads)"


def _environment(device: torch.device) -> dict:
    return {
        "wideflat": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": str(device),
        "device_name": _device_name(device),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
    }


# --- validation and data ----------------------------------------------------------------------


def _check_names(cfg: TrainConfig) -> None:
    if cfg.dataset not in list_datasets():
        raise RunError(f"unknown dataset {cfg.dataset!r} (known: {', '.join(list_datasets())})")
    if cfg.data_root is not None and not Path(cfg.data_root).is_dir():
        raise RunError(f"data folder not found: {cfg.data_root}")
    if cfg.model not in list_models():
        raise RunError(f"unknown model {cfg.model!r} (known: {', '.join(list_models())})")


def _load_data(cfg: TrainConfig, device: torch.device):
    try:
        train = load_dataset(cfg.dataset, cfg.data_root, split="train")
        test = load_dataset(cfg.dataset, cfg.data_root, split="test")
    except (DatasetError, OSError, ValueError) as e:
        raise RunError(f"cannot load dataset {cfg.dataset!r}: {e}".replace("\n", " ")) from None
    x, t = train.images, train.labels
    if cfg.train_subset:
        if cfg.train_subset > len(t):
            raise RunError(f"train_subset {cfg.train_subset} > {len(t)} training images")
        keep = torch.randperm(len(t), generator=torch.Generator().manual_seed(0))
        x, t = x[keep[: cfg.train_subset]], t[keep[: cfg.train_subset]]
    if len(t) < cfg.batch_size:
        raise RunError(f"batch_size {cfg.batch_size} > {len(t)} training images")
    xt, tt = test.images, test.labels
    if cfg.test_subset:
        xt, tt = xt[: cfg.test_subset], tt[: cfg.test_subset]
    mean, std = channel_stats(x)
    train_eval = x[: cfg.train_eval_subset] if cfg.train_eval_subset else x
    data = {
        "source": getattr(train, "source", None),  # the folder read, recorded in run.json
        "x": x.to(device),
        "t": t.to(device),
        "mean": mean,
        "std": std,
        "train_eval": (
            _as_float(train_eval.to(device), mean, std),
            t[: len(train_eval)].to(device),
        ),
        "test": (_as_float(xt.to(device), mean, std), tt.to(device)),
        "energy": (
            _as_float(x[: cfg.energy_subset].to(device), mean, std),
            t[: cfg.energy_subset].to(device),
        ),
    }
    return data


def _build_model(cfg: TrainConfig, data: dict, device: torch.device) -> nn.Module:
    info = dataset_info(cfg.dataset)
    x = data["x"]
    in_channels = 1 if x.ndim == 3 else int(x.shape[1])
    torch.manual_seed(cfg.seed)
    try:
        model = create_model(
            cfg.model,
            num_classes=info.num_classes,
            in_channels=in_channels,
            image_size=int(x.shape[-1]),
            **dict(cfg.model_kwargs),
        )
    except (ValueError, TypeError, ImportError, RuntimeError, MemoryError) as e:
        # RuntimeError/MemoryError: the allocator refused a model too large for this machine.
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        kwargs = f" with model_kwargs {dict(cfg.model_kwargs)}" if cfg.model_kwargs else ""
        raise RunError(f"cannot build model {cfg.model!r}{kwargs}: {reason}") from None
    return model.to(device)


def _base_kwargs(cfg: TrainConfig) -> dict:
    if cfg.optimizer == "sgd":
        return dict(momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":  # Tan & Le's (TensorFlow's) decay 0.9 and ε 1e-3
        return dict(alpha=0.9, eps=1e-3, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return dict(weight_decay=cfg.weight_decay)


def _build_optimizer(cfg: TrainConfig, model: nn.Module):
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


def _gamma_scheduler(cfg, opt, total_steps: int, gamma0: float):
    spec = parse_gamma(cfg.gamma)
    if spec.kind == "const":
        return ConstantGamma(opt, gamma0)
    if spec.kind == "cosine":
        return CosineGamma(opt, spec.gamma0, total_steps)
    if spec.rate is not None:
        return ExponentialGamma(opt, gamma0, spec.rate)
    return ExponentialGamma(opt, gamma0, growth=spec.factor, steps=total_steps)


# --- the run --------------------------------------------------------------------------------


class _ReplicaList:
    """Replicas of any engine as auto_gamma0_rsgd iterates them (the vmap container's
    indexing raises ValueError, not IndexError, past the end, so it cannot be iterated)."""

    def __init__(self, replicas):
        self._container = replicas  # not ``.replicas``: auto_gamma0_rsgd would unwrap it

    def __iter__(self):
        return (self._container[a] for a in range(self._container.y))

    def distances(self) -> torch.Tensor:
        return self._container.distances()


class _Run:
    """Everything one training run holds; :func:`train` drives it."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.data = _load_data(cfg, device)
        self.model = _build_model(cfg, self.data, device)
        try:
            self.opt = _build_optimizer(cfg, self.model)
        except ValueError as e:
            raise RunError(str(e)) from None
        try:
            transform = Augment(
                padding=cfg.padding,
                flip=cfg.flip,
                autoaugment=cfg.autoaugment,
                cutout=cfg.cutout,
                mean=tuple(self.data["mean"].tolist()),
                std=tuple(self.data["std"].tolist()),
            )
        except ImportError as e:  # AutoAugment without torchvision
            raise RunError(str(e)) from None
        streams = cfg.y if cfg.method == "rsgd" else 1
        self.streams = replica_streams(
            self.data["x"],
            self.data["t"],
            cfg.batch_size,
            replicas=streams,
            seed=cfg.seed,
            device=device,
            transform=transform,
        )
        self.batches_per_epoch = len(self.streams[0].loader)
        self.epoch_steps = steps_per_epoch(cfg, self.batches_per_epoch)
        self.total_steps = cfg.epochs * self.epoch_steps
        rsgd_loop = cfg.method == "rsgd" and cfg.engine == "loop"
        self.probe = _LossProbe(per_replica=rsgd_loop, check=cfg.engine == "loop")
        self.sched = None

    def start_gamma(self, fresh: bool) -> None:
        """Build the γ scheduler; a fresh run computes an automatic γ0 (a resume loads it)."""
        cfg = self.cfg
        if cfg.method not in ("esgd", "rsgd"):
            return
        spec = parse_gamma(cfg.gamma)
        gamma0 = spec.gamma0 if spec.gamma0 is not None else 0.0
        if fresh and spec.gamma0 is None and spec.kind != "cosine":
            x, t = self.data["train_eval"]
            x, t = x[: cfg.eval_batch], t[: cfg.eval_batch]
            try:
                if cfg.method == "rsgd":
                    gamma0 = auto_gamma0_rsgd(
                        _ReplicaList(self.opt.replicas), lambda m: F.cross_entropy(m(x), t)
                    )
                else:
                    stream = self.streams[0]

                    def closure():
                        xb, tb = next(stream)
                        loss = F.cross_entropy(self.model(xb), tb)
                        loss.backward()
                        return loss

                    gamma0 = auto_gamma0_esgd(self.opt, closure)
            except ValueError as e:
                raise RunError(f"automatic gamma0 failed: {e}") from None
        self.sched = _gamma_scheduler(cfg, self.opt, self.total_steps, gamma0)

    @property
    def trained(self) -> nn.Module:
        """The module whose state is the trajectory (the replicas for rSGD)."""
        return self.opt.replicas if isinstance(self.opt, ReplicatedSGD) else self.model

    def set_lr(self, step_index: int) -> float:
        lr = lr_at(self.cfg, step_index / self.epoch_steps)
        for group in self.opt.param_groups:
            group["lr"] = lr
        return lr

    def one_step(self):
        cfg, opt, model = self.cfg, self.opt, self.model
        if cfg.method == "esgd":
            return methods.esgd_step(opt, model, self.probe, self.streams[0])
        if cfg.method == "rsgd":
            if cfg.engine == "vmap":
                return opt.step_batches([next(s) for s in self.streams], self.probe)
            return methods.rsgd_step(opt, self.probe, self.streams)
        x, t = next(self.streams[0])
        if cfg.method == "sam":
            passes = [0]

            def closure():
                with _frozen_bn(model) if passes[0] else contextlib.nullcontext():
                    passes[0] += 1
                    loss = self.probe(model(x), t)
                    loss.backward()
                    return loss

            return opt.step(closure).detach()
        # SGD: methods.sgd_step, with the finiteness check before the update.
        opt.zero_grad(set_to_none=True)
        loss = self.probe(model(x), t)
        if self.probe.bad is not None:
            raise NonFiniteLossError(f"non-finite loss {float(loss.detach())}")
        loss.backward()
        opt.step()
        return loss.detach()

    def eval_model(self) -> nn.Module:
        if not isinstance(self.opt, ReplicatedSGD):
            return self.model
        center = self.opt.center()
        if _has_bn(center):
            x = self.data["x"]
            batch = self.cfg.eval_batch
            mean, std = self.data["mean"], self.data["std"]
            recompute_bn(
                center, (_as_float(x[i : i + batch], mean, std) for i in range(0, len(x), batch))
            )
        return center

    def payload(self, epoch: int, step: int, train_seconds: float) -> dict:
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
            "gamma": self.sched.state_dict() if self.sched is not None else {},
            "streams": [s.state_dict() for s in self.streams],
            "rng": rng,
        }

    def load(self, payload: dict, where: Path) -> tuple[int, int, float]:
        """Restore from a :meth:`payload`; a part that does not fit raises RunError naming
        ``where`` (the checkpoint file) and the part. Returns (epoch, step, train_seconds)."""
        missing = sorted(set(_PAYLOAD_KEYS) - set(payload))
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
            if self.sched is not None:
                self.sched.load_state_dict(payload["gamma"])

        def streams() -> None:
            for s, st in zip(self.streams, payload["streams"], strict=True):
                s.load_state_dict(st)

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


def _peak_coupling_step(run: _Run) -> tuple[float, float] | None:
    """Largest elastic step over the planned schedule and its epoch, or None (no coupling).

    The step is lr·K·γ for rSGD (η'·γ for eSGD, whose inner lr is constant); beyond 1 the
    coupling overshoots the center. Evaluated on 200 points of the LR and γ schedules.
    """
    if run.sched is None:
        return None
    cfg, probe = run.cfg, copy.copy(run.sched)
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


def _resolve_resume(out: Path, resume: str | None) -> tuple[Path | None, int | None]:
    """(checkpoint folder, step or None) to resume from, or (None, None) for a fresh start."""
    if resume is None:
        return None, None
    if resume == "auto":
        return out / "checkpoints", None
    path = Path(resume)
    if not path.exists():
        raise RunError(f"resume checkpoint not found: {path}")
    if (path / "checkpoints").is_dir():
        return path / "checkpoints", None
    m = re.fullmatch(r"step-(\d+)", path.name)
    if m and (path / "MANIFEST.json").exists():
        return path.parent, int(m.group(1))
    return path, None


def _load_resume(
    cfg: TrainConfig, chash: str, out: Path, resume: str | None
) -> tuple[Path, dict] | None:
    """(checkpoint file, payload) to resume from, or None for a fresh start."""
    ckpt_dir, ckpt_step = _resolve_resume(out, resume)
    if ckpt_dir is None:
        return None
    try:
        step, payload = load_checkpoint(
            ckpt_dir, config_hash=chash, step=ckpt_step, config=cfg.to_dict()
        )
    except NoCheckpointError:
        if resume != "auto":
            raise RunError(f"no committed checkpoint in {ckpt_dir}") from None
        return None
    except ConfigMismatchError as e:
        fix = (
            f"run with the settings of that run, or start a new one with another --out (or "
            f"delete {out} to start over)"
            if resume == "auto"
            else "resume a checkpoint of this config, or start fresh without --resume"
        )
        raise RunError(f"{e}; {fix}") from None
    except CheckpointError as e:
        raise RunError(str(e)) from None
    return ckpt_dir / f"step-{step:09d}" / "rank-0.pt", payload


def _check_fresh_start(out: Path, first_step: int, log: Callable[[str], None]) -> None:
    """``--resume auto`` found no committed checkpoint in ``out``: refuse (RunError, nothing
    changed) to start it from scratch when that would discard more than a run writes before
    its first checkpoint (at most the row of epoch 1: the next row follows that checkpoint):
    a finished run.json, a second metrics row, or step folders past the first save (whose
    rank files may still be intact)."""
    ckpt_dir = out / "checkpoints"
    try:
        status = json.loads((out / "run.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        status = None
    metrics = out / "metrics.jsonl"
    lines = metrics.read_text(errors="replace").splitlines() if metrics.is_file() else []
    rows = sum(1 for line in lines if line.strip())
    steps = [
        p
        for p in ckpt_dir.glob("step-*")
        if (m := re.fullmatch(r"step-(\d+)", p.name)) and int(m.group(1)) > first_step
    ]
    found = [
        text
        for text, present in (
            ("run.json says finished", status == "finished"),
            (f"metrics.jsonl has {rows} rows", rows > 1),
            (f"{len(steps)} step folders without a manifest", steps),
        )
        if present
    ]
    if found:
        raise RunError(
            f"{out} holds a run ({'; '.join(found)}) but no committed checkpoint in "
            f"{ckpt_dir}; nothing was changed: delete {out} to start over, or choose "
            "another --out"
        )
    if (out / "run.json").exists() or (out / "metrics.jsonl").exists():
        log(f"no committed checkpoint in {ckpt_dir}: starting from scratch")


def _resume_rows(path: Path, start_epoch: int, log: Callable[[str], None]) -> list[dict]:
    """The rows of ``metrics.jsonl`` a run resumed at ``start_epoch`` keeps: one per epoch
    1..start_epoch. Lines past them (a row cut short by a kill) are dropped, damaged ones
    other than the last line with a note; a damaged or missing row among them raises
    RunError naming the file and line (nothing changed)."""
    rows: list[dict] = []
    damaged: list[int] = []
    lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
    for number, line in enumerate(lines, 1):
        row = _parse_row(line)
        if row is None and line.strip():
            damaged.append(number)
        elif row is not None and row["epoch"] <= start_epoch:
            rows.append(row)
    missing = sorted(set(range(1, start_epoch + 1)) - {r["epoch"] for r in rows})
    if missing:
        what = f"line {damaged[0]} is damaged" if damaged else "a row is missing"
        raise RunError(
            f"{path}: {what}, and the row of epoch {missing[0]} is not there (the checkpoint "
            f"is at epoch {start_epoch}); nothing was changed: repair the line, or delete "
            f"{path.parent} to start over"
        )
    noted = [n for n in damaged if n < len(lines)]
    if noted:
        log(f"{path}: dropping damaged line(s) {', '.join(map(str, noted))}, not rows kept")
    return rows


def _record_stop(out: Path, record: dict, error: BaseException) -> None:
    """Mark run.json ``failed`` (``interrupted`` for Ctrl-C) with the error's one line."""
    record["status"] = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
    record["error"] = " ".join(str(error).split()) or type(error).__name__
    with contextlib.suppress(OSError):  # e.g. the disk is full: the error itself is raised
        write_json_atomic(out / "run.json", record)


def _prepare_out(out: Path, resume: str | None) -> None:
    if out.exists() and not out.is_dir():
        raise RunError(f"output folder {out} exists and is not a folder")
    held = ("run.json", "metrics.jsonl", "checkpoints")
    if resume is None and any((out / name).exists() for name in held):
        raise RunError(
            f"output folder {out} already holds a run; pass --resume auto to continue it "
            "or choose another --out"
        )
    parent = out if out.exists() else out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunError(f"output folder {out} is not writable")


def train(
    cfg: TrainConfig,
    out: str | os.PathLike,
    *,
    resume: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> RunSummary:
    """Train one run of ``cfg`` into the folder ``out`` (see the module docstring).

    Args:
        cfg: the resolved config.
        out: the run folder (created; a fresh run refuses a folder that holds a run).
        resume: None (fresh), ``"auto"`` (the newest verified checkpoint in
            ``out/checkpoints``, else fresh unless that would discard a run: see the
            module docstring) or a path: a run folder, its ``checkpoints`` folder or one
            ``step-…`` folder (must exist and match the config).
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        progress: show a tqdm bar.
        log: where one-line notes go (default: stderr).

    Returns:
        The :class:`RunSummary` (also in ``run.json``).

    Raises:
        RunError: bad names, data, output folder, checkpoint or metrics file, with one line
            naming it; nothing in ``out`` has been written.
        NonFiniteRunError: a NaN/inf loss; the last checkpoint is intact.
        CheckpointError, OSError: a write failed (e.g. disk full) after training began;
            run.json says ``failed``, older checkpoints are intact.
    """
    log = log or (lambda text: print(text, file=sys.stderr))
    out = Path(out)
    _check_names(cfg)
    try:
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        raise RunError(f"unusable device {str(device)!r}: {e}".splitlines()[0]) from None
    _prepare_out(out, resume)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    chash = config_hash(cfg)
    loaded = _load_resume(cfg, chash, out, resume)
    run = _Run(cfg, device)
    run.start_gamma(fresh=loaded is None)
    peak = _peak_coupling_step(run)
    if peak is not None and peak[0] >= 1:
        log(
            f"warning: the gamma schedule reaches a coupling step of {peak[0]:.3g} >= 1 at "
            f"epoch {peak[1]:.3g} (lr*K*gamma for rSGD, inner_lr*gamma for eSGD); the elastic "
            "term then overshoots and training may diverge"
        )
    start_epoch, step, train_seconds = 0, 0, 0.0
    if loaded is not None:
        start_epoch, step, train_seconds = run.load(loaded[1], loaded[0])
    elif resume == "auto":
        _check_fresh_start(out, run.epoch_steps, log)
    metrics_path = out / "metrics.jsonl"
    rows = _resume_rows(metrics_path, start_epoch, log)
    if loaded is not None:
        log(f"resuming {out} from epoch {start_epoch} (step {step})")
    # From here on the folder is ours.
    out.mkdir(parents=True, exist_ok=True)
    tmp = metrics_path.with_name("metrics.jsonl.tmp")
    tmp.write_text("".join(_row_json(r) + "\n" for r in rows))
    os.replace(tmp, metrics_path)
    label = run_label(cfg)
    record = {
        "label": label,
        "config": cfg.to_dict(),
        "config_hash": chash,
        "seed": cfg.seed,
        "data_source": run.data.get("source"),  # the folder the dataset was read from
        "environment": _environment(device),
        "budget": {
            "batches_per_epoch": run.batches_per_epoch,
            "steps_per_epoch": run.epoch_steps,
            "grad_evals_per_step": cfg.grad_evals_per_step,
            "total_steps": run.total_steps,
        },
        "status": "running",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
    }
    write_json_atomic(out / "run.json", record)
    bar = tqdm(
        total=run.total_steps,
        initial=step,
        desc=f"{label} s{cfg.seed}",
        disable=not progress,
        leave=False,
    )
    try:
        if start_epoch == 0 and 0 in cfg.energy_epochs:
            _measure_energy(run, out, 0)
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            run.trained.train()
            losses = []
            began = time.perf_counter()
            for _ in range(run.epoch_steps):
                lr = run.set_lr(step)
                step += 1
                run.probe.begin(step)
                try:
                    with _autocast(device, cfg.amp):
                        loss = run.one_step()
                except NonFiniteLossError as e:
                    replica = run.probe.bad
                    if replica is None:
                        found = re.search(r"replica\(s\) \[(\d+)", str(e))
                        replica = int(found.group(1)) if found else 0
                    raise NonFiniteRunError(epoch, step, replica) from None
                if run.sched is not None:
                    run.sched.step()
                losses.append(loss)
                bar.update()
            train_loss = float(torch.stack(losses).float().mean())
            if not math.isfinite(train_loss):
                raise NonFiniteRunError(epoch, step, 0)
            seconds = time.perf_counter() - began
            train_seconds += seconds
            row = {
                "epoch": epoch,
                "step": step,
                "grad_evals": step * cfg.grad_evals_per_step,
                "lr": lr,
                "train_loss": train_loss,
                "epoch_seconds": seconds,
                "train_seconds": train_seconds,
                "images_per_s": run.epoch_steps
                * cfg.grad_evals_per_step
                * cfg.batch_size
                / seconds,
            }
            if "gamma" in run.opt.param_groups[0]:
                row["gamma"] = float(run.opt.param_groups[0]["gamma"])
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                began = time.perf_counter()
                model = run.eval_model()
                row["train_error"], row["train_eval_loss"] = _evaluate(
                    model, *run.data["train_eval"], cfg.eval_batch, cfg.amp
                )
                row["test_error"], row["test_loss"] = _evaluate(
                    model, *run.data["test"], cfg.eval_batch, cfg.amp
                )
                row["eval_seconds"] = time.perf_counter() - began
                bar.set_postfix(loss=f"{train_loss:.3f}", test=f"{row['test_error']:.4f}")
            with metrics_path.open("a") as f:
                f.write(_row_json(row) + "\n")
            if epoch in cfg.energy_epochs:
                _measure_energy(run, out, epoch)
            save_checkpoint(
                out / "checkpoints",
                step,
                run.payload(epoch, step, train_seconds),
                config_hash=chash,
                config=record["config"],
            )
    except (Exception, KeyboardInterrupt) as e:
        bar.close()
        _record_stop(out, record, e)
        raise
    bar.close()
    summary = _summary(out, cfg, label, step, train_seconds)
    record["status"] = "finished"
    record["summary"] = {k: _clean(v) for k, v in asdict(summary).items()}
    record["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    write_json_atomic(out / "run.json", record)
    return summary


def _measure_energy(run: _Run, out: Path, epoch: int) -> None:
    cfg = run.cfg
    model = run.eval_model()
    profile = local_energy(
        model,
        run.data["energy"],
        list(cfg.energy_sigmas),
        cfg.energy_samples,
        seed=cfg.seed,
        batch_size=cfg.eval_batch,
        progress=False,
    )
    (out / "energy").mkdir(exist_ok=True)
    profile.to_json(out / "energy" / f"epoch-{epoch:04d}.json")


def _summary(out: Path, cfg: TrainConfig, label: str, step: int, seconds: float) -> RunSummary:
    rows = read_metrics(out / "metrics.jsonl")
    evaluated = [r for r in rows if "test_error" in r]
    last = evaluated[-1] if evaluated else {}
    speeds = [r["images_per_s"] for r in rows if r.get("epoch", 0) > 1] or [
        r["images_per_s"] for r in rows
    ]
    return RunSummary(
        out=str(out),
        label=label,
        seed=cfg.seed,
        epochs=cfg.epochs,
        steps=step,
        grad_evals=step * cfg.grad_evals_per_step,
        test_error=float(last.get("test_error", math.nan)),
        train_error=float(last.get("train_error", math.nan)),
        train_loss=float(rows[-1]["train_loss"]) if rows else math.nan,
        train_seconds=seconds,
        images_per_s=float(np.median(speeds)) if speeds else math.nan,
    )


def compare(
    preset: str,
    kinds: list[str],
    seeds: list[int],
    out: str | os.PathLike,
    *,
    overrides: dict[str, Any] | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> str:
    """Train every run kind × seed of a preset into ``out/<kind>-s<seed>``, then tabulate.

    Finished runs (``run.json`` status ``finished``, same config) are kept; interrupted ones
    resume from their newest checkpoint; a run stopped by a non-finite loss is logged, left
    ``failed`` in its run.json and left out of the table (which counts finished runs).
    Writes ``out/summary.md`` and ``out/summary.json``
    (:func:`~wideflat.experiments.plots.summary_rows`), ``out/test_error.png`` (Fig. 2) and
    ``out/local_energy.png`` (Figs. 3–5); a plotting failure is logged, not raised. A run at
    chance-level test error or above the preset's ``max_train_error`` is flagged († in the
    table with a footnote, grey and dashed in the figures;
    :func:`~wideflat.experiments.plots.run_flags`).

    Returns:
        The Markdown table (test error mean ± std per method).
    """
    from . import plots
    from .presets import get_preset, preset_config

    log = log or (lambda text: print(text, file=sys.stderr))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"output folder {out} exists and is not a folder")
    try:
        configs = [
            (kind, preset_config(preset, kind, seed=seed, **(overrides or {})))
            for seed in seeds  # seed-major: a study cut short has every method for some seeds
            for kind in kinds
        ]
    except ValueError as e:
        raise RunError(str(e)) from None
    for _, cfg in configs:
        _check_names(cfg)
    for kind, cfg in configs:
        folder = out / f"{kind}-s{cfg.seed}"
        try:
            record = json.loads((folder / "run.json").read_text())
        except (OSError, json.JSONDecodeError):
            record = {}
        if record.get("status") == "finished" and record.get("config_hash") == config_hash(cfg):
            log(f"{folder}: finished, kept")
            continue
        try:
            train(cfg, folder, resume="auto", device=device, progress=progress, log=log)
        except NonFiniteRunError as e:  # recorded as failed in its run.json; go on
            log(f"{folder}: {e}")
    runs = [r for r in plots.collect_runs(out) if r.path.parent == out]
    if configs:  # runs at chance or not fitting the train set are marked, not results
        plots.flag_runs(
            runs,
            num_classes=dataset_info(configs[0][1].dataset).num_classes,
            max_train_error=get_preset(preset).max_train_error,
        )
    rows = plots.summary_rows(runs)
    table = plots.format_table(rows)
    (out / "summary.md").write_text(f"{preset}: test error over seeds {seeds}\n\n{table}\n")
    write_json_atomic(out / "summary.json", [{k: _clean(v) for k, v in r.items()} for r in rows])
    for name, fn in (
        ("test_error.png", plots.plot_test_error),
        ("local_energy.png", plots.plot_energy),
    ):
        try:
            fn(runs, out / name, title=preset)
        except Exception as e:  # noqa: BLE001 - a figure never fails the study
            log(f"plot {name} failed: {type(e).__name__}: {e}".splitlines()[0])
    return table


def throughput(
    configs: dict[str, TrainConfig],
    *,
    steps: int = 10,
    rounds: int = 5,
    warmup: int = 3,
    device: str | torch.device | None = None,
) -> dict[str, dict[str, float]]:
    """Training throughput of several configs, measured interleaved in one process.

    Each config gets the run's own data, model, optimizer and step function (exactly the
    loop :func:`train` times, evaluation excluded). After ``warmup`` untimed steps each,
    the configs take turns: every round times ``steps`` optimizer steps of each, so a change
    in machine load hits all of them alike. Images/s counts minibatch gradients × batch size
    (all replicas and eSGD inner steps), i.e. training data consumed per second.

    Args:
        configs: name → config (e.g. one per method of a preset).
        steps: optimizer steps per config per round.
        rounds: timed rounds.
        warmup: untimed steps per config first.
        device: as for :func:`train`.

    Returns:
        name → ``{"images_per_s": median, "min": ..., "max": ..., "step_ms": median ms}``.

    Example:
        >>> from wideflat.experiments.presets import preset_config
        >>> cfgs = {k: preset_config("fashion-smallconvnet", k) for k in ("sgd", "rsgd")}
        >>> table = throughput(cfgs, steps=2, rounds=1)  # doctest: +SKIP
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    runs = {}
    for name, cfg in configs.items():
        _check_names(cfg)
        run = _Run(cfg, device)
        run.start_gamma(fresh=True)
        runs[name] = run
    position = dict.fromkeys(runs, 0)

    def advance(name: str, n: int) -> None:
        run = runs[name]
        for _ in range(n):
            run.set_lr(position[name] % run.total_steps)
            position[name] += 1
            run.probe.begin(position[name])
            with _autocast(device, run.cfg.amp):
                run.one_step()
            if run.sched is not None:
                run.sched.step()

    for name in runs:
        advance(name, warmup)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name in runs:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            began = time.perf_counter()
            advance(name, steps)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            samples[name].append(time.perf_counter() - began)
    result = {}
    for name, run in runs.items():
        images = steps * run.cfg.grad_evals_per_step * run.cfg.batch_size
        rates = [images / t for t in samples[name]]
        result[name] = {
            "images_per_s": float(np.median(rates)),
            "min": float(min(rates)),
            "max": float(max(rates)),
            "step_ms": float(np.median(samples[name])) * 1000 / steps,
        }
    return result


def cli_train(args) -> int:
    """``wideflat train``: returns 0; errors propagate to the CLI's guard (``wideflat.cli``),
    which prints them in one line with their exit status."""
    from .config import overrides_from_args
    from .presets import preset_config

    overrides = overrides_from_args(args)
    kind = args.method
    if args.budget is not None:
        if kind == "rsgdxy":
            raise ValueError("Invalid budget: rsgdxy already means per-replica")
        overrides["budget"] = args.budget
    cfg = preset_config(args.preset, kind, seed=args.seed, **overrides)
    out = args.out or str(Path("runs") / args.preset / f"{kind}-s{args.seed}")
    summary = train(cfg, out, resume=args.resume, device=args.device, progress=not args.no_progress)
    print(
        f"{summary.label} seed {summary.seed}: test error {100 * summary.test_error:.2f}% "
        f"after {summary.epochs} epochs ({summary.steps} steps, {summary.train_seconds:.0f} s, "
        f"{summary.images_per_s:.0f} images/s); run folder {summary.out}"
    )
    return 0


def cli_compare(args) -> int:
    """``wideflat compare``: the study; prints the table. Errors as :func:`cli_train`."""
    from .config import overrides_from_args

    overrides = overrides_from_args(args)
    out = args.out or str(Path("runs") / args.preset)
    table = compare(
        args.preset,
        args.methods,
        args.seeds,
        out,
        overrides=overrides,
        device=args.device,
        progress=not args.no_progress,
    )
    print(table)
    print(f"table, plots and run folders in {out}")
    return 0
