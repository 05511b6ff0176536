"""Local-energy profiles δE_train(w, σ) of any ``nn.Module`` (paper Eq. 4).

The local energy of a weight configuration w at perturbation intensity σ is the mean increase of
the training error when w is perturbed by Gaussian noise,

    δE_train(w, σ) = E_z[E_train(w + σ z ⊙ w)] − E_train(w),      z ~ N(0, I)   (multiplicative)
    δE_train(w, σ) = E_z[E_train(w + σ z)]     − E_train(w),      z ~ N(0, I)   (additive)

and the loss-based variant replaces the error E by the loss L. A profile is this quantity over a
grid of σ, each point a Monte Carlo average over ``samples`` independent draws of z, reported
with its standard error.

The result type is :class:`~wideflat.flatness.LocalEnergyProfile` (``_profile.py``); the data
plumbing is ``_energy_data.py`` and the perturb-and-evaluate primitives ``_perturbations.py``.

References:
    Pittorino et al., "Entropic gradient descent algorithms and wide flat minima", ICLR 2021
    (Eq. 4, §6.2). Jiang et al., "Fantastic generalization measures and where to find them",
    ICLR 2020 (single-σ version).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from wideflat import _validate as check
from wideflat._bn import recompute_bn
from wideflat.flatness._energy_data import make_batches
from wideflat.flatness._model import (
    PARAM_SETS,
    BatchNormOnlyTrains,
    measuring,
    on_device,
    perturbed_parameters,
)
from wideflat.flatness._perturbations import (
    VmapUnavailable,
    draw_noise,
    evaluate_plain,
    evaluate_vmap,
    perturb,
)
from wideflat.flatness._profile import BN_POLICIES, PERTURBATIONS, LocalEnergyProfile, mean_se
from wideflat.flatness._record import versions_and_time

__all__ = ["LocalEnergyProfile", "classification_error", "local_energy"]


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
    sigma_list = _check_arguments(
        model, sigmas, samples, batch_size, chunk_size, seed, perturbation, bn, params, vmap,
        loss_fn, error_fn,
    )  # fmt: skip
    samples, batch_size, chunk_size, seed = map(int, (samples, batch_size, chunk_size, seed))
    work, device = on_device(model, device)
    named = perturbed_parameters(work, params)
    batches = make_batches(data, subset, batch_size, seed, device)
    use_vmap = bn == "eval" and (vmap is True or (vmap == "auto" and _auto_prefers_vmap(device)))
    n_nonzero = sum(1 for s in sigma_list if s != 0.0)
    bar = tqdm(total=n_nonzero * samples, desc="local energy", disable=not progress, leave=False)
    try:
        with measuring(work, named, device) as saved, torch.no_grad():
            run = _Evaluator(
                work, named, saved, batches, loss_fn, error_fn, perturbation,
                use_vmap=use_vmap, strict=vmap is True, recompute=bn == "recompute",
                name=type(model).__name__,
            )  # fmt: skip
            base = run.base()
            gen = torch.Generator(device=device)
            rows = []  # a loop, not a comprehension: the warning's stacklevel counts frames
            for i, sigma in enumerate(sigma_list):
                rows.append(_sigma_rows(run, gen, seed, i, sigma, samples, chunk_size, base, bar))
    finally:
        bar.close()
    return _profile(
        model, rows, base, sigma_list, samples, perturbation, bn, seed, params,
        sum(p.numel() for _, p in named), run.engines, chunk_size, device, t_start,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------


def _check_arguments(
    model, sigmas, samples, batch_size, chunk_size, seed, perturbation, bn, params, vmap,
    loss_fn, error_fn,
) -> list[float]:  # fmt: skip
    """Refuse a bad argument of :func:`local_energy` with a ``ValueError``; return the σ list."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"Invalid model: expected an nn.Module, got {type(model).__name__}")
    sigma_list = _validate_sigmas(sigmas)
    check.integer("samples", samples, minimum=1)
    check.integer("batch_size", batch_size, minimum=1)
    check.integer("chunk_size", chunk_size, minimum=1)
    check.integer("seed", seed, minimum=0)
    check.choice("perturbation", perturbation, PERTURBATIONS)
    check.choice("bn policy", bn, BN_POLICIES)
    check.choice("params", params, PARAM_SETS)
    if not (vmap is True or vmap is False or (isinstance(vmap, str) and vmap == "auto")):
        raise ValueError(f"Invalid vmap: {vmap!r} (expected True, False or 'auto')")
    if vmap is True and bn == "recompute":
        raise ValueError("Invalid vmap: True with bn='recompute' (recompute needs the loop engine)")
    if not callable(loss_fn):
        raise ValueError(f"Invalid loss_fn: {loss_fn!r} is not callable")
    if not callable(error_fn):
        raise ValueError(f"Invalid error_fn: {error_fn!r} is not callable")
    return sigma_list


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
    return [check.number("sigma", v, minimum=0.0, finite=True) for v in values]


class _Evaluator:
    """Σ loss and Σ error over the batches at the base or perturbed weights.

    The vmap engine evaluates a chunk of perturbations in one batched forward pass without
    touching the model; the loop engine copies each perturbation into the parameters (and, with
    BatchNorm recomputed, re-estimates the statistics first). A failed vmap pass falls back to
    the loop for the rest of the measurement (with a warning), unless vmap was asked for.
    """

    def __init__(
        self, model, named, saved, batches, loss_fn, error_fn, kind, *, use_vmap, strict,
        recompute, name,
    ):  # fmt: skip
        self.model, self.named, self.saved, self.batches = model, named, saved, batches
        self.loss_fn, self.error_fn, self.kind = loss_fn, error_fn, kind
        self.use_vmap, self.strict, self.name = use_vmap, strict, name
        tracked = any(isinstance(m, _BatchNorm) and m.track_running_stats for m in model.modules())
        self.recompute = recompute and tracked
        self.engines: set[str] = set()

    def base(self) -> tuple[float, float, int]:
        """Σ loss, Σ error and the number of examples at the unperturbed weights."""
        if self.recompute:
            recompute_bn(BatchNormOnlyTrains(self.model), self.batches)
        base = evaluate_plain(self.model, self.batches, self.loss_fn, self.error_fn)
        if base[2] == 0:
            raise ValueError("Invalid data: it yielded no examples")
        return base

    def sums(self, noise: list[list[Tensor]], sigma: float) -> list[tuple[float, float]]:
        """(Σ loss, Σ error) for each perturbation z in ``noise`` at intensity σ."""
        if self.use_vmap:
            try:
                out = evaluate_vmap(
                    self.model, self.saved, noise, sigma, self.kind, self.batches, self.loss_fn,
                    self.error_fn,
                )  # fmt: skip
                self.engines.add("vmap")
                return out
            except VmapUnavailable as exc:
                if self.strict:
                    raise exc.__cause__ from None
                warnings.warn(
                    f"local_energy: vmap engine unavailable for {self.name} ({exc}); using "
                    "the loop engine",
                    RuntimeWarning,
                    stacklevel=4,  # sums ← _sigma_rows ← local_energy ← its caller
                )
                self.use_vmap = False
        out = []
        for z in noise:
            for (name, p), zp in zip(self.named, z, strict=True):
                p.copy_(perturb(self.saved[name], zp, sigma, self.kind))
            if self.recompute:
                recompute_bn(BatchNormOnlyTrains(self.model), self.batches)
            loss_s, err_s, _ = evaluate_plain(self.model, self.batches, self.loss_fn, self.error_fn)
            out.append((loss_s, err_s))
        self.engines.add("loop")
        return out


def _sigma_rows(
    run: _Evaluator, gen, seed: int, i: int, sigma: float, samples: int, chunk_size: int,
    base: tuple[float, float, int], bar,
) -> tuple[list[float], list[float]]:  # fmt: skip
    """The per-draw loss and error differences to the base at σ (index i), chunk by chunk."""
    if sigma == 0.0:  # w + 0·z⊙w == w bitwise: every draw is the base model
        return [0.0] * samples, [0.0] * samples
    base_loss, base_err, n_examples = base
    row_loss: list[float] = []
    row_err: list[float] = []
    for start in range(0, samples, chunk_size):
        draws = range(start, min(start + chunk_size, samples))
        noise = [draw_noise(run.named, gen, seed, i, s) for s in draws]
        for loss_s, err_s in run.sums(noise, sigma):
            row_loss.append((loss_s - base_loss) / n_examples)
            row_err.append((err_s - base_err) / n_examples)
        bar.update(len(draws))
    return row_loss, row_err


def _profile(
    model, rows, base, sigma_list, samples, perturbation, bn, seed, params, n_parameters,
    engines, chunk_size, device, t_start,
) -> LocalEnergyProfile:  # fmt: skip
    """The :class:`LocalEnergyProfile` of the measured rows, with the provenance."""
    loss_draws = [r[0] for r in rows]
    err_draws = [r[1] for r in rows]
    err_mean, err_se = mean_se(err_draws)
    loss_mean, loss_se = mean_se(loss_draws)
    base_loss, base_err, n_examples = base
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
        engine="+".join(e for e in ("vmap", "loop") if e in engines) or "none",
        chunk_size=chunk_size,
        model=type(model).__name__,
        device=str(device),
        **versions_and_time(t_start),
    )


def _auto_prefers_vmap(device: torch.device) -> bool:
    """``vmap="auto"``: batch perturbations on accelerators only (slower on CPU, measured)."""
    return device.type != "cpu"
