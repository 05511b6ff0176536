"""The deep-network training run: one method, one seed, one run folder (paper §6).

:func:`train` checks the folder, builds everything once (:func:`~.build.build`), resumes if
asked, then loops: for each epoch, ``run.step()`` per optimizer step with the γ and LR
schedulers stepped after it; then a metrics row, evaluation, δE profiles and a checkpoint.

Budget: an epoch is a pass of minibatch gradients over the training set; a method costing k
gradients per step (L for eSGD, y for rSGD, 2 for SAM) takes ``batches_per_epoch // k``
steps per epoch, so epochs, LR milestones and the γ schedule rescale together. rSGD is
evaluated at its center w̄ (BatchNorm statistics recomputed); eSGD and SAM at w.

Resume: a checkpoint holds the model (all replicas), optimizer, γ and LR schedulers,
data-stream and RNG states; training resumed from it on the same device is bit-identical to
an uninterrupted run, and ``metrics.jsonl`` is cut back to the checkpoint's epoch.

Example:
    >>> import tempfile
    >>> from wideflat.experiments.config import TrainConfig
    >>> with tempfile.TemporaryDirectory() as d:  # doctest: +SKIP
    ...     summary = train(TrainConfig(epochs=1, train_subset=512), d, progress=False)
"""

from __future__ import annotations

import io
import math
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .._io import environment, write_bytes_atomic
from ..flatness import local_energy
from ..optim import EntropySGD, NonFiniteLossError, ReplicatedSGD
from .build import Run, build, check_names, peak_coupling_step, resolve_device
from .checkpoint import save_checkpoint
from .config import TrainConfig, config_hash
from .errors import NonFiniteRunError
from .methods import LossProbe, autocast, evaluate, evaluate_replicas
from .rundir import RunFolder, RunSummary, check_fresh_start, load_resume, resume_rows, run_label

__all__ = ["train"]


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def train(
    cfg: TrainConfig,
    out: str | os.PathLike,
    *,
    resume: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    tensorboard: bool = False,
) -> RunSummary:
    """Train one run of ``cfg`` into the run folder ``out`` (:mod:`~.rundir`).

    Args:
        cfg: the resolved config.
        out: the run folder (created; a fresh run refuses a folder that holds a run).
        resume: None (fresh), ``"auto"`` (the newest verified checkpoint in
            ``out/checkpoints``, else fresh unless that would discard a run) or a path: a
            run folder, its ``checkpoints`` folder or one ``step-…`` folder (must exist and
            match the config).
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        progress: show a tqdm bar.
        log: where one-line notes go (default: stderr).
        tensorboard: also write the metrics as TensorBoard scalars to ``out/tensorboard``
            (needs the ``tensorboard`` package; :mod:`~.tensorboard_log`).

    Returns:
        The :class:`~.rundir.RunSummary` (also in ``run.json``).

    Raises:
        RunError: bad names, data, output folder, checkpoint or metrics file, with one line
            naming it; nothing in ``out`` has been written.
        NonFiniteRunError: a NaN/inf loss; the step is not applied, nothing newer than the
            last checkpoint is saved and run.json says ``failed``.
        CheckpointError, OSError: a write failed (e.g. disk full) after training began;
            run.json says ``failed``, older checkpoints are intact. Ctrl-C: ``interrupted``.
    """
    log = log or _stderr
    folder = RunFolder(out, tensorboard=tensorboard)
    check_names(cfg)
    device = resolve_device(device)
    folder.check(resume)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    chash = config_hash(cfg)
    loaded = load_resume(cfg, chash, folder.path, resume)
    run = build(cfg, device, fresh=loaded is None)
    _warn_if_overshooting(run, log)
    start, step, seconds = 0, 0, 0.0
    if loaded is not None:
        start, step, seconds = run.load_state_dict(loaded[1], loaded[0])
    elif resume == "auto":
        check_fresh_start(folder.path, run.epoch_steps, log)
    rows = resume_rows(folder.metrics, start, log)
    if loaded is not None:
        log(f"resuming {folder.path} from epoch {start} (step {step})")
    folder.begin(_record(run, chash), rows)  # from here on the folder is ours
    bar = tqdm(total=run.total_steps, initial=step, desc=f"{run_label(cfg)} s{cfg.seed}",
               disable=not progress, leave=False)  # fmt: skip
    triggers = _Triggers(cfg, folder, [r["train_loss"] for r in rows if "train_loss" in r])
    try:
        if start == 0 and 0 in cfg.energy_epochs:
            _measure_energy(run, folder.energy_file(0))
        for epoch in range(start + 1, cfg.epochs + 1):
            row = _train_epoch(run, epoch, step, seconds, bar.update)
            step, seconds = row["step"], row["train_seconds"]
            collapsed = _collapsed(cfg, row)
            if collapsed:
                row["stop"] = collapsed
            last = collapsed or epoch == cfg.epochs  # a run's last epoch is always evaluated
            if last or epoch % cfg.eval_every == 0:
                _evaluate(run, row, replicas=last or epoch % cfg.replica_eval_every == 0)
                bar.set_postfix(loss=f"{row['train_loss']:.3f}", test=f"{row['test_error']:.4f}")
            fired = triggers.fired(row)  # matched training error, stationary loss
            if fired:  # one measurement of these weights, written under each trigger's name
                first = folder.energy_file(name=fired[0])
                _measure_energy(run, first)
                for name in fired[1:]:
                    again = folder.energy_file(name=name)
                    if cfg.energy_save_weights:
                        weights = first.with_suffix(".pt").read_bytes()
                        write_bytes_atomic(again.with_suffix(".pt"), weights)
                    write_bytes_atomic(again, first.read_bytes())
                row["energy_measured"] = fired
            folder.append(row)
            if epoch in cfg.energy_epochs:
                _measure_energy(run, folder.energy_file(epoch))
            save_checkpoint(folder.path / "checkpoints", step, run.state_dict(epoch, step, seconds),
                            config_hash=chash, config=folder.record["config"])  # fmt: skip
            if collapsed:
                log(f"stopping after epoch {epoch}: {collapsed}")
                break
    except (Exception, KeyboardInterrupt) as e:
        bar.close()
        folder.stop(e)
        raise
    bar.close()
    return folder.finish(cfg, step, seconds)


def _train_epoch(run: Run, epoch: int, step: int, seconds: float, tick: Callable) -> dict:
    """Train one data epoch from optimizer step ``step``; its metrics row (without
    evaluation). A non-finite loss raises :class:`NonFiniteRunError` naming the step."""
    cfg = run.cfg
    run.trained.train()
    if cfg.coupling_every_after and epoch - 1 >= cfg.coupling_switch_epoch:
        for group in run.opt.param_groups:  # the K switch (PyramidNet rows: 10 → 3 at 220)
            group["coupling_every"] = cfg.coupling_every_after
    losses = []
    began = time.perf_counter()
    for _ in range(run.epoch_steps):
        lr = run.lr_sched.get_last_lr()[0]  # the lr of this step
        step += 1
        run.probe.begin(step)
        try:
            with autocast(run.device, cfg.amp):
                loss = run.step()
        except NonFiniteLossError as e:
            raise NonFiniteRunError(epoch, step, _failed_replica(run.probe, e)) from None
        if run.gamma_sched is not None:
            run.gamma_sched.step()
        run.lr_sched.step()
        losses.append(loss)
        tick()
    train_loss = float(torch.stack(losses).float().mean())
    if not math.isfinite(train_loss):
        raise NonFiniteRunError(epoch, step, 0)
    elapsed = time.perf_counter() - began
    row = {
        "epoch": epoch,
        "step": step,
        "grad_evals": step * cfg.grad_evals_per_step,
        "lr": lr,
        "train_loss": train_loss,
        "epoch_seconds": elapsed,
        "train_seconds": seconds + elapsed,
        "images_per_s": run.epoch_steps * cfg.grad_evals_per_step * cfg.batch_size / elapsed,
    }
    if "gamma" in run.opt.param_groups[0]:
        row["gamma"] = float(run.opt.param_groups[0]["gamma"])
    row.update(_collapse(run))
    return row


def _collapse(run: Run) -> dict:
    """The paper's stopping quantities after the epoch: for rSGD the replica–center
    distances d(w_a, w̄) = ½‖w_a − w̄‖² (mean and max over replicas), for eSGD
    d(w, μ) = ½‖w − μ‖² (μ the last inner loop's running mean)."""
    opt = run.opt
    if isinstance(opt, ReplicatedSGD):
        d = opt.replicas.distances()
        return {"replica_distance": float(d.mean()), "replica_distance_max": float(d.max())}
    if isinstance(opt, EntropySGD):
        return {"mean_distance": opt.mean_distance()}
    return {}


def _collapsed(cfg: TrainConfig, row: dict) -> str | None:
    """Why the run stops here (``cfg.stop_at_collapse``), or None."""
    tol = cfg.stop_at_collapse
    for key, what in (("replica_distance", "replicas collapsed"), ("mean_distance", "w met μ")):
        if tol > 0 and key in row and row[key] < tol:
            return f"{what} ({key} {row[key]:.3g} < {tol:g})"
    return None


def _failed_replica(probe: LossProbe, error: NonFiniteLossError) -> int:
    """The replica whose loss was non-finite: the probe's note, else the optimizer's."""
    if probe.bad is not None:
        return probe.bad
    replicas = getattr(error, "replicas", None)
    if replicas:
        return int(replicas[0])
    found = re.search(r"replica\(s\) \[(\d+)", str(error))
    return int(found.group(1)) if found else 0


def _evaluate(run: Run, row: dict, replicas: bool = True) -> None:
    """Train and test error and loss of the evaluated model, into ``row``; for rSGD also each
    replica's and the ensemble's errors if ``replicas``."""
    cfg, began = run.cfg, time.perf_counter()
    model = run.eval_model()
    row["train_error"], row["train_eval_loss"] = evaluate(
        model, *run.data.train_eval, cfg.eval_batch, cfg.amp
    )
    row["test_error"], row["test_loss"] = evaluate(model, *run.data.test, cfg.eval_batch, cfg.amp)
    if replicas and isinstance(run.opt, ReplicatedSGD):  # each replica and the ensemble
        models = list(run.opt.replicas)
        for split, (x, t) in (("train", run.data.train_eval), ("test", run.data.test)):
            errors, ensemble = evaluate_replicas(models, x, t, cfg.eval_batch, cfg.amp)
            row[f"replica_{split}_errors"] = errors
            row[f"ensemble_{split}_error"] = ensemble
    row["eval_seconds"] = time.perf_counter() - began


class _Triggers:
    """When δE is measured besides the fixed epochs: the first evaluated epoch whose train
    error is ≤ each of ``energy_at_train_error`` (files ``energy/train-error-X.json``), and
    the first epoch where the train loss is stationary (``energy/stationary.json``): its
    relative change over the last two epochs is below ``energy_at_stationary``. A measurement
    whose file exists (a resumed run) is not repeated."""

    def __init__(self, cfg: TrainConfig, folder: RunFolder, losses: list[float]):
        self.cfg, self.folder, self.losses = cfg, folder, list(losses)

    def _done(self, name: str) -> bool:
        return (self.folder.path / "energy" / f"{name}.json").exists()

    def fired(self, row: dict) -> list[str]:
        names = []
        self.losses.append(row["train_loss"])
        if "train_error" in row:
            for threshold in sorted(self.cfg.energy_at_train_error, reverse=True):
                name = f"train-error-{threshold + 0.0:g}"  # + 0.0: no "-0"
                if row["train_error"] <= threshold and not self._done(name):
                    names.append(name)
        tol = self.cfg.energy_at_stationary
        if tol > 0 and len(self.losses) >= 3 and not self._done("stationary"):
            before, now = self.losses[-3], self.losses[-1]
            if before > 0 and abs(now - before) / before < tol:
                names.append("stationary")
        return names


def _measure_energy(run: Run, path: Path) -> None:
    """δE of the evaluated model into ``path`` (and its weights beside it, with
    ``energy_save_weights``: written first, so a profile on disk always has its weights)."""
    cfg = run.cfg
    model = run.eval_model()
    if cfg.energy_save_weights:
        write_bytes_atomic(path.with_suffix(".pt"), _state_bytes(model))
    profile = local_energy(
        model,
        run.data.energy,
        list(cfg.energy_sigmas),
        cfg.energy_samples,
        seed=cfg.seed,
        bn=cfg.energy_bn,
        batch_size=cfg.eval_batch,
        progress=False,
    )
    profile.to_json(path)


def _state_bytes(model: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def _record(run: Run, chash: str) -> dict:
    """run.json's description of the run (RunFolder adds status and times)."""
    cfg = run.cfg
    return {
        "label": run_label(cfg),
        "config": cfg.to_dict(),
        "config_hash": chash,
        "seed": cfg.seed,
        "data_source": run.data.source,  # the folder the dataset was read from
        "environment": environment(run.device),
        "budget": {
            "batches_per_epoch": run.batches_per_epoch,
            "steps_per_epoch": run.epoch_steps,
            "grad_evals_per_step": cfg.grad_evals_per_step,
            "total_steps": run.total_steps,
        },
        "argv": sys.argv,
    }


def _warn_if_overshooting(run: Run, log: Callable[[str], None]) -> None:
    peak = peak_coupling_step(run)
    if peak is not None and peak[0] >= 1:
        log(
            f"warning: the gamma schedule reaches a coupling step of {peak[0]:.3g} >= 1 at "
            f"epoch {peak[1]:.3g} (lr*K*gamma for rSGD, inner_lr*gamma for eSGD); the elastic "
            "term then overshoots and training may diverge"
        )
