"""A family of small networks to correlate flatness with generalization (paper Fig. 7).

The paper's Fig. 7 takes a family of networks trained with different hyper-parameters (the
"predicting generalization in deep learning" competition's task-1 models) and shows that the
local energy δE_train(σ = 0.5) predicts each network's generalization gap. This module makes
such a family here: a grid of MLPs on a subset of Fashion-MNIST, varying learning rate, batch
size, weight decay, width, depth and dropout, in the spirit of that competition and of Jiang et
al. (2020), each trained by SGD with momentum until its training cross-entropy (full training
subset, eval mode) falls to ``target_loss`` (or ``max_epochs`` is reached, which is recorded).

Layout of a family folder (resumable: finished members are never retrained; a member killed
mid-training is retrained from scratch, members take seconds to minutes)::

    family.json               the FamilyConfig (a second run must use the same one)
    members/<id>/weights.pt   the network's state_dict
    members/<id>/member.json  hyper-parameters, model spec, data spec, training record;
                              written last, so a member folder without it is unfinished

:func:`load_member` rebuilds a member's network and :func:`member_data` its data, which is all
:mod:`~wideflat.experiments.correlate` needs.

    wideflat family --out runs/family --jobs 2
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import _rng
from .. import _validate as check
from .._io import environment, write_bytes_atomic, write_json_atomic
from ._jobs import run_jobs

__all__ = [
    "AXES",
    "DEFAULT_GRID",
    "FamilyConfig",
    "load_member",
    "member_data",
    "members",
    "train_family",
]

AXES = ("lr", "batch_size", "weight_decay", "width", "depth", "dropout")
# Two values per axis, 64 networks: lr and batch size set the SGD noise, weight decay and
# dropout regularize, width and depth set the capacity (the competition's axes, on MLPs).
# Chosen so that every member reaches the training-loss target: with lr 0.03 (batch 32,
# dropout) or weight decay 5e-4 the training CE levels off above 0.01 (measured, 600 epochs).
DEFAULT_GRID: dict[str, tuple[float, ...]] = {
    "lr": (0.01, 0.02),
    "batch_size": (32, 256),
    "weight_decay": (0.0, 1e-4),
    "width": (128, 512),
    "depth": (1, 2),
    "dropout": (0.0, 0.25),
}
_FORMAT = "wideflat.family"
_INT_AXES = ("batch_size", "width", "depth")


@dataclass(frozen=True)
class FamilyConfig:
    """What a family is: its grid and how each member is trained.

    Attributes:
        grid: ``((axis, (value, ...)), ...)`` over :data:`AXES`, every axis present.
        train_subset: training images (the first n of a fixed seed-0 permutation).
        target_loss: training cross-entropy at which a member stops.
        max_epochs: cap on epochs (a member that hits it is recorded as not stopped).
        momentum: SGD momentum (heavy ball), the same for every member.
        seed: initialization and minibatch-order seed (the same for every member, so that
            members differ only by their hyper-parameters).
        dataset: ``"fashion-mnist"``.
        data_root: folder of the dataset files (None: the reader's search).
    """

    grid: tuple[tuple[str, tuple[float, ...]], ...] = tuple(DEFAULT_GRID.items())
    train_subset: int = 4000
    target_loss: float = 0.01
    max_epochs: int = 600
    momentum: float = 0.9
    seed: int = 0
    dataset: str = "fashion-mnist"
    data_root: str | None = None

    def __post_init__(self) -> None:
        grid = dict(self.grid)
        if len(grid) != len(self.grid) or set(grid) != set(AXES):
            raise ValueError(
                f"Invalid grid: axes {sorted(grid)} (expected each of {', '.join(AXES)} once)"
            )
        for axis, values in self.grid:
            if not values:
                raise ValueError(f"Invalid grid: axis {axis} has no values")
            for v in values:
                if axis in _INT_AXES:
                    check.integer(axis, v, minimum=1)
                elif axis == "dropout":
                    check.number(axis, v, minimum=0.0, maximum=0.95, finite=True)
                elif axis == "lr":
                    check.number(axis, v, minimum=0.0, finite=True)
                    if v == 0:
                        raise ValueError("Invalid lr: 0 (a member would never train)")
                else:
                    check.number(axis, v, minimum=0.0, finite=True)
            if len(set(values)) != len(values):
                raise ValueError(f"Invalid grid: axis {axis} repeats a value ({list(values)})")
        check.integer("train_subset", self.train_subset, minimum=10)
        check.number("target_loss", self.target_loss, minimum=0.0, finite=True)
        check.integer("max_epochs", self.max_epochs, minimum=1)
        check.number("momentum", self.momentum, minimum=0.0, maximum=0.999, finite=True)
        check.integer("seed", self.seed, minimum=0)
        check.choice("dataset", self.dataset, ("fashion-mnist",))

    def identity(self) -> dict[str, Any]:
        """The fields that define the family (what ``family.json`` records)."""
        d = dataclasses.asdict(self)
        d.pop("data_root")  # where the files are does not change what is trained
        d["grid"] = {a: list(v) for a, v in self.grid}
        return d


def members(cfg: FamilyConfig) -> list[dict[str, Any]]:
    """The grid's hyper-parameter points, in a fixed order, each with its ``id``.

    Example:
        >>> grid = tuple((a, (1,) if a in ("batch_size", "width", "depth") else (0.1,))
        ...              for a in AXES)
        >>> [m["id"] for m in members(FamilyConfig(grid=grid))]
        ['lr0.1-bs1-wd0.1-w1-d1-p0.1']
    """
    grid = dict(cfg.grid)
    out = []
    for values in itertools.product(*(grid[a] for a in AXES)):
        pairs = zip(AXES, values, strict=True)
        hp: dict[str, Any] = {a: (int(v) if a in _INT_AXES else float(v)) for a, v in pairs}
        hp["id"] = (
            f"lr{hp['lr']:g}-bs{hp['batch_size']}-wd{hp['weight_decay']:g}-w{hp['width']}"
            f"-d{hp['depth']}-p{hp['dropout']:g}"
        )
        out.append(hp)
    return out


# --- data ------------------------------------------------------------------------------------

_DATA_CACHE: dict[tuple, dict[str, torch.Tensor]] = {}


def member_data(dataset: str, train_subset: int, data_root: str | None) -> dict[str, torch.Tensor]:
    """``{"x_train", "y_train", "x_test", "y_test"}``: standardized float images (N, 784).

    The training subset is the first ``train_subset`` images of a fixed (seed 0) permutation
    of the training split; pixels are scaled to [0, 1] and standardized with the subset's
    mean and standard deviation (the same transform for the test split). Cached per process.
    """
    key = (dataset, int(train_subset), data_root)
    if key in _DATA_CACHE:
        return _DATA_CACHE[key]
    from ..data import load_dataset

    train = load_dataset(dataset, split="train", root=data_root)
    test = load_dataset(dataset, split="test", root=data_root)
    if train_subset > len(train):
        raise ValueError(f"Invalid train_subset: {train_subset} > {len(train)} training images")
    keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:train_subset]
    x = train.images[keep].reshape(train_subset, -1).float() / 255.0
    mean, std = x.mean(), x.std()
    data = {
        "x_train": (x - mean) / std,
        "y_train": train.labels[keep].clone(),
        "x_test": (test.images.reshape(len(test), -1).float() / 255.0 - mean) / std,
        "y_test": test.labels.clone(),
        "source": str(train.source),
    }
    _DATA_CACHE[key] = data
    return data


# --- one member ------------------------------------------------------------------------------


def _model_spec(hp: Mapping[str, Any], in_features: int) -> dict[str, Any]:
    return {
        "name": "mlp",
        "kwargs": {
            "num_classes": 10,
            "in_channels": 1,
            "image_size": int(math.isqrt(in_features)),
            "hidden": [int(hp["width"])] * int(hp["depth"]),
            "dropout": float(hp["dropout"]),
        },
    }


def _build(spec: Mapping[str, Any]) -> nn.Module:
    from ..models import create_model

    kwargs = dict(spec["kwargs"])
    kwargs["hidden"] = tuple(kwargs["hidden"])
    return create_model(spec["name"], **kwargs)


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, error) of ``model`` in eval mode over ``(x, y)``."""
    was = model.training
    model.eval()
    loss, wrong = 0.0, 0
    for start in range(0, len(x), 2000):
        out = model(x[start : start + 2000])
        loss += float(F.cross_entropy(out, y[start : start + 2000], reduction="sum"))
        wrong += int((out.argmax(1) != y[start : start + 2000]).sum())
    model.train(was)
    return loss / len(x), wrong / len(x)


def train_member(cfg: FamilyConfig, hp: Mapping[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """Train one member: SGD with momentum until train CE ≤ ``target_loss`` (checked after
    each epoch, on the whole training subset in eval mode) or ``max_epochs``."""
    t0 = time.perf_counter()
    data = member_data(cfg.dataset, cfg.train_subset, cfg.data_root)
    x, y = data["x_train"], data["y_train"]
    spec = _model_spec(hp, x.shape[1])
    torch.manual_seed(cfg.seed)
    model = _build(spec)
    opt = torch.optim.SGD(
        model.parameters(), lr=hp["lr"], momentum=cfg.momentum, weight_decay=hp["weight_decay"]
    )
    gen = torch.Generator().manual_seed(_rng.derive_seed(cfg.seed, 1))
    dropout_gen_seed = _rng.derive_seed(cfg.seed, 2)
    torch.manual_seed(dropout_gen_seed)  # dropout masks: torch's global stream, seeded
    bs = int(hp["batch_size"])
    epochs, stop, history = 0, "max_epochs", []
    train_loss, train_err = _evaluate(model, x, y)
    while epochs < cfg.max_epochs:
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), bs):
            idx = order[start : start + bs]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        epochs += 1
        train_loss, train_err = _evaluate(model, x, y)
        history.append(train_loss)
        if not math.isfinite(train_loss):
            stop = "diverged"
            break
        if train_loss <= cfg.target_loss:
            stop = "target_loss"
            break
    test_loss, test_err = _evaluate(model, data["x_test"], data["y_test"])
    record = {
        "format": _FORMAT + ".member",
        "id": hp["id"],
        "hparams": {a: hp[a] for a in AXES},
        "model": spec,
        "data": {
            "dataset": cfg.dataset,
            "train_subset": cfg.train_subset,
            "source": data["source"],
        },
        "train": {
            "epochs": epochs,
            "stop_reason": stop,
            "stopped": stop == "target_loss",
            "train_loss": train_loss,
            "train_error": train_err,
            "test_loss": test_loss,
            "test_error": test_err,
            "gap_error": test_err - train_err,
            "gap_loss": test_loss - train_loss,
            "loss_history": history,
            "wall_time_s": time.perf_counter() - t0,
        },
    }
    return model, record


def _train_and_save(cfg: FamilyConfig, hp: Mapping[str, Any], folder: str) -> dict[str, Any]:
    """Worker task: train one member and save it (weights first, ``member.json`` last)."""
    model, record = train_member(cfg, hp)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    write_bytes_atomic(out / "weights.pt", buf.getvalue())
    write_json_atomic(out / "member.json", record)
    return record


def load_member(folder: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A finished member's network (eval mode, CPU) and its ``member.json`` record.

    Raises:
        ValueError: the folder is not a finished member (no ``member.json``), or its weights
            do not fit the recorded model.
    """
    folder = Path(folder)
    info_path = folder / "member.json"
    if not info_path.is_file():
        raise ValueError(f"Invalid member folder {folder}: no member.json (not finished?)")
    try:
        record = json.loads(info_path.read_text())
        spec = record["model"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"Invalid member file {info_path}: {exc}") from None
    model = _build(spec)
    try:
        state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (OSError, RuntimeError, EOFError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"Invalid weights {folder / 'weights.pt'}: {first}") from None
    return model.eval(), record


# --- the grid --------------------------------------------------------------------------------


def _check_family_file(out: Path, cfg: FamilyConfig) -> None:
    path = out / "family.json"
    wanted = {"format": _FORMAT, "config": cfg.identity()}
    if path.exists():
        try:
            found = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"Invalid family file {path}: {exc}") from None
        if found.get("config") != json.loads(json.dumps(wanted["config"])):
            raise ValueError(
                f"Invalid --out {out}: it holds a family with another configuration "
                f"({path}); use a new folder, or the same settings to resume it"
            )
        return
    write_json_atomic(path, {**wanted, "environment": environment()})


def train_family(
    cfg: FamilyConfig,
    out: str | Path,
    *,
    jobs: int = 1,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train every member of the grid not yet in ``out`` (resuming a family folder).

    Members are trained ``jobs`` at a time in worker processes (one thread each); each is
    saved as soon as it finishes, so a kill loses at most the members in flight.

    Returns:
        The records of all members, in grid order.
    """
    check.integer("jobs", jobs, minimum=1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_family_file(out, cfg)
    member_data(cfg.dataset, cfg.train_subset, cfg.data_root)  # fail early on missing data
    points = members(cfg)
    todo = [hp for hp in points if not (out / "members" / hp["id"] / "member.json").is_file()]
    if len(todo) < len(points):
        log(f"{len(points) - len(todo)} of {len(points)} members already trained in {out}")
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="family", unit="net")
    tasks = [(cfg, hp, str(out / "members" / hp["id"])) for hp in todo]
    try:
        run_jobs(_train_and_save, tasks, jobs, lambda rec: _report(bar, rec, log))
    finally:
        if bar is not None:
            bar.close()
    return [json.loads((out / "members" / hp["id"] / "member.json").read_text()) for hp in points]


def _report(bar, rec: Mapping[str, Any], log) -> None:
    t = rec["train"]
    line = (
        f"{rec['id']}: {t['stop_reason']} after {t['epochs']} epochs, train CE "
        f"{t['train_loss']:.4f}, test error {t['test_error']:.4f} ({t['wall_time_s']:.0f} s)"
    )
    if bar is not None:
        bar.update(1)
        bar.write(line)
    else:
        log(line)


def parse_grid(items: Sequence[str]) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """``["lr=0.01,0.1", ...]`` over :data:`DEFAULT_GRID` → a ``FamilyConfig.grid``.

    Example:
        >>> dict(parse_grid(["depth=1,2,3"]))["depth"]
        (1, 2, 3)
    """
    grid = dict(DEFAULT_GRID)
    for item in items:
        name, eq, raw = item.partition("=")
        if not eq or name not in AXES:
            raise ValueError(
                f"Invalid --grid {item!r} (expected AXIS=V1,V2,... with AXIS one of "
                f"{', '.join(AXES)})"
            )
        try:
            values = tuple(
                int(v) if name in _INT_AXES else float(v) for v in raw.split(",") if v.strip()
            )
        except ValueError:
            raise ValueError(f"Invalid --grid {item!r}: values must be numbers") from None
        grid[name] = values
    return tuple((a, tuple(grid[a])) for a in AXES)
