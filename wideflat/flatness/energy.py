"""Local-energy profiles δE_train(w, σ) of any ``nn.Module`` (paper Eq. 4).

The local energy of a weight configuration w at perturbation intensity σ is the mean increase of
the training error when w is perturbed by Gaussian noise,

    δE_train(w, σ) = E_z[E_train(w + σ z ⊙ w)] − E_train(w),      z ~ N(0, I)   (multiplicative)
    δE_train(w, σ) = E_z[E_train(w + σ z)]     − E_train(w),      z ~ N(0, I)   (additive)

and the loss-based variant replaces the error E by the loss L. A profile is this quantity over a
grid of σ, each point a Monte Carlo average over ``samples`` independent draws of z, reported
with its standard error.

References:
    Pittorino et al., "Entropic gradient descent algorithms and wide flat minima", ICLR 2021
    (Eq. 4, §6.2). Jiang et al., "Fantastic generalization measures and where to find them",
    ICLR 2020 (single-σ version).
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, IterableDataset, Subset
from tqdm.auto import tqdm

from wideflat._io import json_ready

__all__ = ["LocalEnergyProfile", "local_energy", "classification_error"]

_PERTURBATIONS = ("multiplicative", "additive")
_BN_POLICIES = ("eval", "recompute")
_PARAM_SETS = ("trainable", "all")
_FORMAT = "wideflat.local_energy_profile"
_FORMAT_VERSION = 1


def classification_error(output: Tensor, target: Tensor) -> Tensor:
    """Per-example 0/1 classification error, ``argmax(output, -1) != target``.

    Args:
        output: logits of shape ``(B, C)``.
        target: integer class labels of shape ``(B,)``.

    Returns:
        A float tensor of shape ``(B,)`` with 1.0 where the prediction is wrong.

    Example:
        >>> classification_error(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
        tensor([0., 1.])
    """
    return (output.argmax(dim=-1) != target).to(torch.float32)


# --------------------------------------------------------------------------------------------
# Result object
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalEnergyProfile:
    """A local-energy profile with its Monte Carlo uncertainty and provenance.

    All ``delta_*`` values are differences to the unperturbed model: for each σ,
    ``delta_error[i]`` = mean over draws of E(w_σ,s) − E(w) and ``delta_error_se[i]`` its
    standard error (sample std with ddof=1 over √samples; NaN when samples = 1; 0 at σ = 0,
    where every draw is w itself). Errors are fractions of misclassified examples (or the mean
    of ``error_fn``), losses are means of ``loss_fn`` over the evaluated examples.

    Attributes:
        sigmas: perturbation intensities σ, in the order given.
        delta_error: mean error difference per σ.
        delta_error_se: standard error of ``delta_error``.
        delta_loss: mean loss difference per σ.
        delta_loss_se: standard error of ``delta_loss``.
        error_draws: per σ, the per-draw error differences (``samples`` values each).
        loss_draws: per σ, the per-draw loss differences.
        base_error: E_train(w) of the unperturbed model under the same BN policy.
        base_loss: L_train(w) of the unperturbed model under the same BN policy.
        samples: number of draws of z per σ.
        n_examples: number of training examples each evaluation averages over.
        perturbation: ``"multiplicative"`` (w + σ z ⊙ w) or ``"additive"`` (w + σ z).
        bn: BatchNorm policy, ``"eval"`` or ``"recompute"``.
        seed: seed of the measurement generator.
        params: which parameters were perturbed, ``"trainable"`` or ``"all"``.
        n_parameters: number of perturbed scalar weights.
        engine: ``"vmap"``, ``"loop"`` or ``"vmap+loop"`` (vmap fell back part-way).
        chunk_size: perturbations per batched forward pass (vmap engine).
        model: class name of the measured model.
        device: device the evaluation ran on.
        torch_version: ``torch.__version__`` used.
        wideflat_version: ``wideflat.__version__`` used.
        wall_time_s: wall-clock time of the measurement, seconds.

    Example:
        >>> p = LocalEnergyProfile(sigmas=(0.0,), delta_error=(0.0,), delta_error_se=(0.0,),
        ...     delta_loss=(0.0,), delta_loss_se=(0.0,), error_draws=((0.0,),),
        ...     loss_draws=((0.0,),), base_error=0.1, base_loss=0.3, samples=1, n_examples=10)
        >>> LocalEnergyProfile.from_dict(p.to_dict()) == p
        True
    """

    sigmas: tuple[float, ...]
    delta_error: tuple[float, ...]
    delta_error_se: tuple[float, ...]
    delta_loss: tuple[float, ...]
    delta_loss_se: tuple[float, ...]
    error_draws: tuple[tuple[float, ...], ...]
    loss_draws: tuple[tuple[float, ...], ...]
    base_error: float
    base_loss: float
    samples: int
    n_examples: int
    perturbation: str = "multiplicative"
    bn: str = "eval"
    seed: int = 0
    params: str = "trainable"
    n_parameters: int = 0
    engine: str = "loop"
    chunk_size: int = 1
    model: str = ""
    device: str = "cpu"
    torch_version: str = ""
    wideflat_version: str = ""
    wall_time_s: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.sigmas)
        for name in ("delta_error", "delta_error_se", "delta_loss", "delta_loss_se"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"Invalid {name}: length {len(getattr(self, name))} != len(sigmas) = {n}"
                )
        for name in ("error_draws", "loss_draws"):
            draws = getattr(self, name)
            if len(draws) != n or any(len(d) != self.samples for d in draws):
                raise ValueError(
                    f"Invalid {name}: expected {n} rows of samples={self.samples} draws"
                )
        if self.perturbation not in _PERTURBATIONS:
            raise ValueError(f"Invalid perturbation: {self.perturbation!r}")
        if self.bn not in _BN_POLICIES:
            raise ValueError(f"Invalid bn policy: {self.bn!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN and ±inf are written as ``None``)."""
        out: dict[str, Any] = {"format": _FORMAT, "version": _FORMAT_VERSION}
        for f in fields(self):
            out[f.name] = json_ready(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalEnergyProfile:
        """Inverse of :meth:`to_dict` (``None`` numbers are read back as NaN)."""
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"Invalid profile dict: format is not {_FORMAT!r}")
        if data.get("version") != _FORMAT_VERSION:
            raise ValueError(f"Invalid profile dict: unsupported version {data.get('version')!r}")
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name in ("sigmas", "delta_error", "delta_error_se", "delta_loss", "delta_loss_se"):
                value = tuple(_none_to_nan(v) for v in value)
            elif f.name in ("error_draws", "loss_draws"):
                value = tuple(tuple(_none_to_nan(v) for v in row) for row in value)
            elif f.name in ("base_error", "base_loss", "wall_time_s"):
                value = _none_to_nan(value)
            kwargs[f.name] = value
        missing = [
            f.name
            for f in fields(cls)
            if f.name not in kwargs and f.default is MISSING and f.default_factory is MISSING
        ]
        if missing:
            raise ValueError(f"Invalid profile dict: missing keys {missing}")
        return cls(**kwargs)

    def to_json(self, path: str | Path) -> Path:
        """Write the profile to ``path`` as strict JSON (no NaN literals); returns the path."""
        path = Path(path)
        text = json.dumps(self.to_dict(), allow_nan=False, indent=1)
        path.write_text(text + "\n")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> LocalEnergyProfile:
        """Read a profile written by :meth:`to_json`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"Invalid profile file {str(path)!r}: {exc}") from exc
        return cls.from_dict(data)


def _none_to_nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def local_energy(
    model: nn.Module,
    data: DataLoader | tuple[Tensor, Tensor],
    sigmas: float | Sequence[float] | Tensor | np.ndarray,
    samples: int,
    *,
    perturbation: str = "multiplicative",
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    error_fn: Callable[[Tensor, Tensor], Tensor] = classification_error,
    bn: str = "eval",
    subset: int | Sequence[int] | None = None,
    batch_size: int = 1024,
    seed: int = 0,
    vmap: bool | str = "auto",
    chunk_size: int = 16,
    params: str = "trainable",
    device: str | torch.device | None = None,
    progress: bool = True,
) -> LocalEnergyProfile:
    r"""Measure the local-energy profile δE_train(w, σ) of a model on its training data.

    For each σ in ``sigmas`` and each of ``samples`` independent draws z ~ N(0, I) over the
    perturbed weights, the model is evaluated at

        w_σ,z = w + σ z ⊙ w   (``perturbation="multiplicative"``, paper Eq. 4), or
        w_σ,z = w + σ z       (``perturbation="additive"``),

    over the whole of ``data`` (or a fixed ``subset``), and the profile reports, per σ,

        δE(σ) = (1/S) Σ_s [E(w_σ,z_s) − E(w)],    se = std_s[E(w_σ,z_s) − E(w)] / √S,

    for the error E (mean of ``error_fn``) and likewise for the loss (mean of ``loss_fn``).
    The multiplicative form is invariant under rescaling of a scale-invariant model (§6.1).

    Policies and guarantees:
        * **Evaluation mode.** The model is evaluated with every module in ``eval()`` mode
          (Dropout off). With ``bn="eval"`` (default) BatchNorm uses its stored running
          statistics, unchanged by the perturbation. With ``bn="recompute"`` the running
          statistics of every BatchNorm layer are re-estimated for each perturbed model (and
          for the base model) by a pass over the same data in cumulative-average mode
          (``momentum=None``, as ``torch.optim.swa_utils.update_bn``), then used in eval mode.
        * **No side effects.** Runs under ``torch.no_grad``. The parameters and buffers are
          restored by copying back saved originals (never by subtracting the noise), so
          ``model.state_dict()`` is bitwise unchanged, as is each module's train/eval flag.
          The global RNG state (CPU, and CUDA on ``device``) is saved and restored, so that
          iterating a DataLoader here does not shift a training run's random stream.
        * **Randomness.** Noise comes from a dedicated ``torch.Generator`` on ``device``. Draw
          s at σ index i uses a seed derived from ``(seed, i, s)``, so the numbers do not depend
          on ``chunk_size`` or on the engine; they depend on the device type (CPU and CUDA
          generators differ). σ = 0 is exact: w_0,z = w bitwise, so its draws are 0 without
          evaluation. A random ``subset`` is also drawn from ``seed``.
        * **Engines.** ``vmap=True`` evaluates ``chunk_size`` perturbations of one σ in one
          batched forward pass (``torch.func.functional_call`` under ``torch.func.vmap``,
          the model itself is never modified); ``vmap=False`` copies each perturbation into the
          parameters in turn (plain loop). ``"auto"`` (default) uses the loop on CPU, where
          batching saves no arithmetic and measured slower (``benchmarks/flatness.py``, 1
          thread: vmap took 2.1-2.4x the loop's time on a LeNet, 1.2-1.3x on an MLP), and
          vmap on other devices, falling back to the loop, with a ``RuntimeWarning``, if the
          model cannot be vmapped.
          Both engines use the same perturbed weights bitwise; outputs agree to float rounding
          of the batched kernels.
          ``bn="recompute"`` always uses the loop.

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to outputs.
        data: a ``DataLoader`` yielding ``(x, y, ...)`` batches, or a tuple ``(X, y)`` of tensors
            with equal first dimension. A loader is iterated once per perturbation (once per
            chunk with vmap); it should be deterministic (no random augmentation).
        sigmas: one σ or a sequence of σ ≥ 0, finite.
        samples: draws of z per σ, ≥ 1 (the paper uses 100–1000).
        perturbation: ``"multiplicative"`` (default) or ``"additive"``.
        loss_fn: ``loss_fn(output, target)`` returning the batch mean (a 0-dim tensor, as
            ``F.cross_entropy``) or a per-example vector of shape ``(B,)``. Default
            cross-entropy.
        error_fn: ``error_fn(output, target)`` returning per-example errors of shape ``(B,)``
            (or their batch mean). Default :func:`classification_error`; for ±1 outputs use
            e.g. ``lambda out, y: (torch.sign(out.squeeze(-1)) != y).float()``.
        bn: BatchNorm policy, ``"eval"`` (default) or ``"recompute"`` (see above).
        subset: ``None`` (all of ``data``), an int n (n examples drawn without replacement
            from ``seed``, fixed for all σ and draws) or a sequence of example indices.
            Subsets of a loader need an indexable (map-style) dataset.
        batch_size: examples per forward pass for tensor data and for loader subsets (a loader
            without ``subset`` keeps its own batches).
        seed: seed (int ≥ 0) of the measurement generator.
        vmap: ``True``, ``False`` or ``"auto"`` (default).
        chunk_size: perturbations per batched forward pass (memory grows linearly with it).
        params: ``"trainable"`` (default: parameters with ``requires_grad``) or ``"all"``.
        device: where to evaluate; default the device of the model's first parameter. If it
            differs, a deep copy of the model is moved there (the original is not touched).
        progress: show a tqdm progress bar over perturbations.

    Returns:
        A :class:`LocalEnergyProfile`.

    Raises:
        ValueError: for σ < 0 or non-finite, ``samples`` < 1, empty data, ``X``/``y`` of
            different lengths, an unknown ``perturbation``/``bn``/``params``/``vmap`` value, a
            bad ``subset``/``batch_size``/``chunk_size``/``seed``, a model without parameters to
            perturb, or ``loss_fn``/``error_fn`` outputs of the wrong shape.

    Note:
        The loop engine writes perturbed weights into the parameters in place (and restores
        them). Do not call it between a forward pass and its ``backward()``: autograd would
        see the in-place change. The vmap engine does not modify the model.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
        >>> prof = local_energy(model, (X, y), [0.0, 0.5], samples=8, progress=False)
        >>> prof.delta_error[0], prof.delta_loss[0], prof.engine, len(prof.loss_draws[1])
        (0.0, 0.0, 'loop', 8)
        >>> import tempfile, os
        >>> path = prof.to_json(os.path.join(tempfile.mkdtemp(), "profile.json"))
        >>> LocalEnergyProfile.from_json(path) == prof
        True
    """
    t_start = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise ValueError(f"Invalid model: expected an nn.Module, got {type(model).__name__}")
    sigma_list = _validate_sigmas(sigmas)
    samples = _validate_int("samples", samples, minimum=1)
    batch_size = _validate_int("batch_size", batch_size, minimum=1)
    chunk_size = _validate_int("chunk_size", chunk_size, minimum=1)
    seed = _validate_int("seed", seed, minimum=0)
    _validate_choice("perturbation", perturbation, _PERTURBATIONS)
    _validate_choice("bn policy", bn, _BN_POLICIES)
    _validate_choice("params", params, _PARAM_SETS)
    if not (vmap is True or vmap is False or (isinstance(vmap, str) and vmap == "auto")):
        raise ValueError(f"Invalid vmap: {vmap!r} (expected True, False or 'auto')")
    if vmap is True and bn == "recompute":
        raise ValueError("Invalid vmap: True with bn='recompute' (recompute needs the loop engine)")
    if not callable(loss_fn):
        raise ValueError(f"Invalid loss_fn: {loss_fn!r} is not callable")
    if not callable(error_fn):
        raise ValueError(f"Invalid error_fn: {error_fn!r} is not callable")

    model_device = _model_device(model)
    device = model_device if device is None else torch.device(device)
    work = model if device == model_device else copy.deepcopy(model).to(device)

    named = [
        (name, p)
        for name, p in work.named_parameters()
        if p.is_floating_point() and (params == "all" or p.requires_grad)
    ]
    if not named:
        raise ValueError(
            f"Invalid model: no {'floating' if params == 'all' else 'trainable'} parameters "
            f"to perturb (params={params!r})"
        )
    n_parameters = sum(p.numel() for _, p in named)

    batches = _make_batches(data, subset, batch_size, seed, device)
    use_vmap = bn == "eval" and (vmap is True or (vmap == "auto" and _auto_prefers_vmap(device)))
    engine_used: set[str] = set()

    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    saved_params = {name: p.detach().clone() for name, p in named}
    saved_buffers = {name: b.detach().clone() for name, b in work.named_buffers()}
    saved_modes = [(m, m.training) for m in work.modules()]
    bns = [m for m in work.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved_momentum = [m.momentum for m in bns]
    n_nonzero = sum(1 for s in sigma_list if s != 0.0)
    bar = tqdm(total=n_nonzero * samples, desc="local energy", disable=not progress, leave=False)
    try:
        with torch.random.fork_rng(devices=cuda_devices), torch.no_grad():
            work.eval()
            gen = torch.Generator(device=device)
            stats_pass = _make_stats_pass(work, bns, batches) if bn == "recompute" else None
            if stats_pass is not None:
                stats_pass()
            base_loss, base_err, n_examples = _evaluate_plain(work, batches, loss_fn, error_fn)
            if n_examples == 0:
                raise ValueError("Invalid data: it yielded no examples")

            loss_draws: list[list[float]] = []
            err_draws: list[list[float]] = []
            for i, sigma in enumerate(sigma_list):
                if sigma == 0.0:  # w + 0·z⊙w == w bitwise: every draw is the base model
                    loss_draws.append([0.0] * samples)
                    err_draws.append([0.0] * samples)
                    continue
                row_loss: list[float] = []
                row_err: list[float] = []
                for start in range(0, samples, chunk_size):
                    draws = range(start, min(start + chunk_size, samples))
                    noise = [_draw_noise(named, gen, seed, i, s) for s in draws]
                    sums = None
                    if use_vmap:
                        try:
                            sums = _evaluate_vmap(
                                work,
                                saved_params,
                                noise,
                                sigma,
                                perturbation,
                                batches,
                                loss_fn,
                                error_fn,
                            )
                            engine_used.add("vmap")
                        except _VmapUnavailable as exc:
                            if vmap is True:
                                raise exc.__cause__ from None
                            warnings.warn(
                                f"local_energy: vmap engine unavailable for "
                                f"{type(model).__name__} ({exc}); using the loop engine",
                                RuntimeWarning,
                                stacklevel=2,
                            )
                            use_vmap = False
                    if sums is None:
                        sums = []
                        for z in noise:
                            for (name, p), zp in zip(named, z, strict=True):
                                p.copy_(_perturb(saved_params[name], zp, sigma, perturbation))
                            if stats_pass is not None:
                                stats_pass()
                            loss_s, err_s, _ = _evaluate_plain(work, batches, loss_fn, error_fn)
                            sums.append((loss_s, err_s))
                        engine_used.add("loop")
                    for loss_s, err_s in sums:
                        row_loss.append((loss_s - base_loss) / n_examples)
                        row_err.append((err_s - base_err) / n_examples)
                    bar.update(len(draws))
                loss_draws.append(row_loss)
                err_draws.append(row_err)
    finally:
        bar.close()
        with torch.no_grad():
            for name, p in named:
                p.copy_(saved_params[name])
            for name, b in work.named_buffers():
                if name in saved_buffers:
                    b.copy_(saved_buffers[name])
        for m, momentum in zip(bns, saved_momentum, strict=True):
            m.momentum = momentum
        for m, training in saved_modes:
            m.training = training

    err_mean, err_se = _mean_se(err_draws)
    loss_mean, loss_se = _mean_se(loss_draws)
    from wideflat import __version__ as wideflat_version

    return LocalEnergyProfile(
        sigmas=tuple(sigma_list),
        delta_error=err_mean,
        delta_error_se=err_se,
        delta_loss=loss_mean,
        delta_loss_se=loss_se,
        error_draws=tuple(tuple(r) for r in err_draws),
        loss_draws=tuple(tuple(r) for r in loss_draws),
        base_error=base_err / n_examples,
        base_loss=base_loss / n_examples,
        samples=samples,
        n_examples=n_examples,
        perturbation=perturbation,
        bn=bn,
        seed=seed,
        params=params,
        n_parameters=n_parameters,
        engine="+".join(e for e in ("vmap", "loop") if e in engine_used) or "none",
        chunk_size=chunk_size,
        model=type(model).__name__,
        device=str(device),
        torch_version=torch.__version__,
        wideflat_version=wideflat_version,
        wall_time_s=time.perf_counter() - t_start,
    )


# --------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------


class _VmapUnavailable(RuntimeError):
    """The batched forward pass failed; ``__cause__`` holds the original error."""


def _validate_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"Invalid {name}: {value!r} (expected an int >= {minimum})")
    if value < minimum:
        raise ValueError(f"Invalid {name}: {value} (expected >= {minimum})")
    return int(value)


def _validate_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"Invalid {name}: {value!r} (expected one of {list(choices)})")


def _validate_sigmas(sigmas: Any) -> list[float]:
    if isinstance(sigmas, bool):
        raise ValueError(f"Invalid sigmas: {sigmas!r}")
    if isinstance(sigmas, Tensor):
        values = sigmas.detach().cpu().reshape(-1).tolist()
    elif isinstance(sigmas, np.ndarray):
        values = sigmas.reshape(-1).tolist()
    elif isinstance(sigmas, (int, float, np.integer, np.floating)):
        values = [sigmas]
    elif isinstance(sigmas, Sequence) and not isinstance(sigmas, str):
        values = list(sigmas)
    else:
        raise ValueError(f"Invalid sigmas: {sigmas!r} (expected a number or a sequence)")
    if not values:
        raise ValueError("Invalid sigmas: empty sequence")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"Invalid sigma: {v!r} (expected a number)")
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"Invalid sigma: {v} (must be finite)")
        if v < 0:
            raise ValueError(f"Invalid sigma: {v} (must be >= 0)")
        out.append(v)
    return out


def _auto_prefers_vmap(device: torch.device) -> bool:
    """``vmap="auto"``: batch perturbations on accelerators only (slower on CPU, measured)."""
    return device.type != "cpu"


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _derive_seed(seed: int, *keys: int) -> int:
    """Child seed of ``(seed, *keys)``: distinct keys give independent streams."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def _draw_noise(
    named: list[tuple[str, Tensor]], gen: torch.Generator, seed: int, i: int, s: int
) -> list[Tensor]:
    """z for draw ``s`` at σ index ``i``: one standard normal tensor per perturbed parameter."""
    gen.manual_seed(_derive_seed(seed, 0, i, s))
    return [torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype) for _, p in named]


def _perturb(w: Tensor, z: Tensor, sigma: float, kind: str) -> Tensor:
    """w + σ z ⊙ w or w + σ z, as separate elementwise kernels (one rounding each, no fused
    multiply-add), so a stacked (vmap) and a single (loop) evaluation are bitwise equal."""
    step = torch.mul(z, w) if kind == "multiplicative" else z
    return torch.add(w, torch.mul(step, sigma))


def _reduce(value: Any, n: int, name: str) -> Tensor:
    """Sum over the batch of a batch-mean (0-dim) or per-example (n,) result, in float64."""
    if not isinstance(value, Tensor):
        raise ValueError(f"Invalid {name} output: {type(value).__name__} (expected a tensor)")
    if value.dim() == 0:
        return value.detach().double() * n
    if value.shape == (n,):
        return value.detach().double().sum()
    raise ValueError(f"Invalid {name} output shape: {tuple(value.shape)} (expected () or ({n},))")


class _Batches:
    """Re-iterable source of ``(x, y)`` batches on ``device``."""

    def __init__(
        self,
        tensors: tuple[Tensor, Tensor] | None,
        loader: DataLoader | None,
        batch_size: int,
        device: torch.device,
    ):
        self.tensors = tensors
        self.loader = loader
        self.batch_size = batch_size
        self.device = device

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.tensors is not None:
            X, y = self.tensors
            for start in range(0, X.shape[0], self.batch_size):
                yield X[start : start + self.batch_size], y[start : start + self.batch_size]
            return
        for batch in self.loader or ():
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError(
                    f"Invalid data: loader batches must be (x, y, ...), got {type(batch).__name__}"
                )
            yield batch[0].to(self.device), batch[1].to(self.device)


def _subset_indices(subset: Any, n: int, seed: int) -> Tensor | None:
    if subset is None:
        return None
    if isinstance(subset, (int, np.integer)) and not isinstance(subset, bool):
        if not 1 <= subset <= n:
            raise ValueError(f"Invalid subset: {subset} (expected 1 <= subset <= {n})")
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        idx = np.sort(rng.choice(n, size=int(subset), replace=False))
        return torch.from_numpy(idx).long()
    if isinstance(subset, (Tensor, np.ndarray)):
        subset = subset.tolist()
    if not isinstance(subset, Sequence) or isinstance(subset, str):
        raise ValueError(f"Invalid subset: {subset!r} (expected None, an int or indices)")
    idx = list(subset)
    if not idx:
        raise ValueError("Invalid subset: empty index list")
    for i in idx:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < n:
            raise ValueError(f"Invalid subset index: {i!r} (expected an int in [0, {n}))")
    if len(set(idx)) != len(idx):
        raise ValueError("Invalid subset: repeated indices")
    return torch.tensor(idx, dtype=torch.long)


def _make_batches(
    data: Any, subset: Any, batch_size: int, seed: int, device: torch.device
) -> _Batches:
    if isinstance(data, DataLoader):
        dataset = data.dataset
        if subset is not None:
            if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
                raise ValueError("Invalid subset: the loader's dataset is not indexable")
            if len(dataset) == 0:
                raise ValueError("Invalid data: the loader's dataset is empty")
            idx = _subset_indices(subset, len(dataset), seed)
            data = DataLoader(
                Subset(dataset, idx.tolist()),
                batch_size=batch_size,
                shuffle=False,
                collate_fn=data.collate_fn,
                num_workers=data.num_workers,
                pin_memory=data.pin_memory,
            )
        elif (
            hasattr(dataset, "__len__")
            and not isinstance(dataset, IterableDataset)
            and len(dataset) == 0
        ):
            raise ValueError("Invalid data: the loader's dataset is empty")
        return _Batches(None, data, batch_size, device)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(
            f"Invalid data: expected a DataLoader or a tuple (X, y), got {type(data).__name__}"
        )
    X, y = data
    if not isinstance(X, Tensor) or not isinstance(y, Tensor):
        raise ValueError(
            f"Invalid data: X and y must be tensors, got {type(X).__name__}, {type(y).__name__}"
        )
    if X.dim() == 0 or y.dim() == 0:
        raise ValueError("Invalid data: X and y must have a batch dimension")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"Invalid data: len(X) = {X.shape[0]} != len(y) = {y.shape[0]}")
    if X.shape[0] == 0:
        raise ValueError("Invalid data: X and y are empty (0 examples)")
    idx = _subset_indices(subset, X.shape[0], seed)
    if idx is not None:
        X, y = X[idx], y[idx]
    return _Batches((X.to(device), y.to(device)), None, batch_size, device)


def _make_stats_pass(
    model: nn.Module, bns: list[_BatchNorm], batches: _Batches
) -> Callable[[], None] | None:
    """A pass that re-estimates BN running stats at the current weights (cumulative average)."""
    if not bns:
        return None

    def run() -> None:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over the pass
            m.train()
        for x, _ in batches:
            model(x)
        for m in bns:
            m.eval()

    return run


def _evaluate_plain(
    model: nn.Module, batches: _Batches, loss_fn: Callable, error_fn: Callable
) -> tuple[float, float, int]:
    """Σ loss, Σ error and number of examples over ``batches`` (float64 sums)."""
    loss_sum: Tensor | float = 0.0
    err_sum: Tensor | float = 0.0
    n = 0
    for x, y in batches:
        out = model(x)
        b = y.shape[0]
        loss_sum = loss_sum + _reduce(loss_fn(out, y), b, "loss_fn")
        err_sum = err_sum + _reduce(error_fn(out, y), b, "error_fn")
        n += b
    return float(loss_sum), float(err_sum), n


def _evaluate_vmap(
    model: nn.Module,
    base: dict[str, Tensor],
    noise: list[list[Tensor]],
    sigma: float,
    kind: str,
    batches: _Batches,
    loss_fn: Callable,
    error_fn: Callable,
) -> list[tuple[float, float]]:
    """Σ loss and Σ error for each perturbation in ``noise``, all in one vmapped forward per
    batch: the perturbed weights are stacked along a new leading dim and vmapped over."""
    stacked = {
        name: _perturb(w.unsqueeze(0), torch.stack([z[k] for z in noise]), sigma, kind)
        for k, (name, w) in enumerate(base.items())
    }

    def forward(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return torch.func.functional_call(model, p, (x,))

    batched = torch.func.vmap(forward, in_dims=(0, None))
    n_pert = len(noise)
    loss_sums: list[Tensor | float] = [0.0] * n_pert
    err_sums: list[Tensor | float] = [0.0] * n_pert
    for x, y in batches:
        try:
            out = batched(stacked, x)
        except Exception as exc:  # any failure of the batched path: caller may fall back
            raise _VmapUnavailable(f"{type(exc).__name__}: {exc}") from exc
        b = y.shape[0]
        for c in range(n_pert):
            loss_sums[c] = loss_sums[c] + _reduce(loss_fn(out[c], y), b, "loss_fn")
            err_sums[c] = err_sums[c] + _reduce(error_fn(out[c], y), b, "error_fn")
    return [(float(lo), float(er)) for lo, er in zip(loss_sums, err_sums, strict=True)]


def _mean_se(rows: list[list[float]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    means, ses = [], []
    for row in rows:
        arr = np.asarray(row, dtype=np.float64)
        means.append(float(arr.mean()))
        ses.append(float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else math.nan)
    return tuple(means), tuple(ses)
