r"""PyTorch Lightning: EntropySGD and ReplicatedSGD in a ``LightningModule``.

Install with ``pip install 'wideflat[lightning]'``. Subclass :class:`EntropySGDModule` or
:class:`ReplicatedSGDModule` instead of ``lightning.pytorch.LightningModule``, define the loss
of one minibatch (``training_loss(batch)``, or ``replica_loss(replica, batch)``), and return
the optimizer from ``configure_optimizers``. Everything else (``Trainer``, data loaders,
callbacks, loggers, checkpoints, ``max_steps``) is ordinary Lightning.

Why a base class. Under automatic optimization Lightning calls ``training_step`` once per
batch and hands the optimizer a closure that re-runs ``training_step`` on *that* batch
(``lightning/pytorch/loops/optimization/automatic.py``: ``Closure``, lines 92-147, built per
batch in ``_make_closure``, lines 199-209). Entropy-SGD calls its closure L times per step and
needs a fresh minibatch each time; under automatic optimization the L inner steps would all
see one batch. Replicated-SGD calls ``closure(a)`` once per replica, each on its own batch;
Lightning's precision plugin wraps every closure as ``partial(Precision._wrap_closure, model,
optimizer, closure)``, which takes no argument
(``lightning/pytorch/plugins/precision/precision.py``, lines 96-123), hence ``TypeError:
Precision._wrap_closure() takes 4 positional arguments but 5 were given``. Both optimizers
refuse these closures with a message pointing here
(:func:`wideflat.integrations.lightning_closure_problem`).

The design. Both base classes switch to manual optimization and *collect* k batches from
Lightning's ordinary ``training_step(batch, batch_idx)`` calls (k = L inner steps, or y
replicas), then take one optimizer step on them: inner step i (replica a) gets the i-th
(a-th) collected batch. Lightning keeps doing what it does for any module: it iterates the
loaders, moves each batch to the device through the batch-transfer hooks, and counts
``batch_idx`` in batches and ``trainer.global_step`` in optimizer steps (outer steps), so
``max_steps``, ``every_n_train_steps`` checkpoints and step-wise schedules count steps. The k
batches of a step come from one epoch: the last ``N mod k`` batches of an epoch of N batches
are skipped (like ``drop_last``), so a step never straddles an epoch and nothing is pending
at an epoch boundary, where a checkpoint then resumes exactly. (Lightning's
``training_step(self, dataloader_iter)``, which would let the closure pull batches itself, is
experimental, leaves the device transfer to the module and leaves Lightning's step
bookkeeping half done when the iterator runs out inside a step.)

* :class:`EntropySGDModule` steps through Lightning's public path,
  ``self.optimizers().step(closure)``: the precision plugin wraps the closure, EntropySGD
  calls it L times and each call takes the next collected batch. ``on_before_optimizer_step``
  hooks therefore run after each of the L inner gradients.
* :class:`ReplicatedSGDModule` calls ``ReplicatedSGD.step(closure)`` itself, with a closure
  that takes the replica index (the precision plugin cannot pass it), inside the two hooks
  with which ``LightningOptimizer.step`` counts a manual step
  (``lightning/pytorch/core/optimizer.py`` lines 146-156, set by
  ``loops/optimization/manual.py`` lines 99-103 and 131-137), so ``global_step`` counts
  ReplicatedSGD steps; ``on_before_optimizer_step`` is not called. Replica a trains on the
  a-th of y consecutive batches of the training loader, or, with ``train_dataloaders=[loader_0,
  ..., loader_{y-1}]`` (one stream per replica, e.g. shuffled with different generators), on
  loader a's batch. Validation evaluates the center w̄ (:attr:`ReplicatedSGDModule.center_model`).
  Lightning checkpoints hold every replica: they save ``optimizer.state_dict()``, and
  ReplicatedSGD's carries all y replicas and its step count and RNG streams, restored by
  ``load_state_dict`` when Lightning resumes (replica 0, the model, is also in the module's
  state dict).

Limits: one optimizer per module; ``precision="16-mixed"`` (a GradScaler, whose
``scaler.step`` calls the closure once) is refused, ``"bf16-mixed"`` and ``"32-true"`` work;
tested on a single device. ReplicatedSGD's distributed engine runs its own processes and is
refused here (use the loop or vectorized engine).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._optional import import_optional
from ..optim import EntropySGD, ReplicatedSGD

pl = import_optional(
    "lightning.pytorch", "the Lightning integration (wideflat.integrations.lightning)"
)

__all__ = ["EntropySGDModule", "ReplicatedSGDModule"]


class _CollectingModule(pl.LightningModule):
    """Manual optimization that takes one optimizer step per k collected batches."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False
        self._pending: list = []
        self._pending_epoch: tuple[int, int] | None = None

    def _collect(self, batch: Any, k: int) -> list | None:
        """Add ``batch``; the k batches of the next step once there are k, else ``None``.

        A group left incomplete at the end of an epoch (or of a previous fit) is dropped.
        """
        epoch = (id(self.trainer), self.trainer.current_epoch)
        if self._pending_epoch != epoch:
            self._pending, self._pending_epoch = [], epoch
        self._pending.append(batch)
        if len(self._pending) < k:
            return None
        batches, self._pending = self._pending[:k], self._pending[k:]
        return batches

    def _lightning_optimizer(self, cls: type) -> Any:
        """The module's one ``LightningOptimizer``, checked to wrap a ``cls``."""
        name = type(self).__name__
        if self.automatic_optimization:
            raise ValueError(
                f"Invalid automatic_optimization: True ({name} trains with manual optimization; "
                "its __init__ sets automatic_optimization = False, keep it so)"
            )
        opt = self.optimizers()
        if isinstance(opt, list):
            raise ValueError(
                f"Invalid configure_optimizers: {len(opt)} optimizers ({name} steps exactly one "
                f"{cls.__name__})"
            )
        if not isinstance(opt.optimizer, cls):
            raise ValueError(
                f"Invalid configure_optimizers: returned a {type(opt.optimizer).__name__} "
                f"({name} trains with a {cls.__name__})"
            )
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            raise ValueError(
                f"Invalid precision: {self.trainer.precision!r} uses a GradScaler, which calls "
                f"the closure once per step and {cls.__name__} needs one call per "
                f"{'inner step' if cls is EntropySGD else 'replica'}; use precision="
                "'bf16-mixed' or '32-true'"
            )
        return opt


class EntropySGDModule(_CollectingModule):
    r"""A ``LightningModule`` trained by :class:`~wideflat.optim.EntropySGD`, one fresh
    minibatch per inner step.

    Define :meth:`training_loss` (the loss of one minibatch at the current weights) and
    ``configure_optimizers`` returning one ``EntropySGD``; do not override ``training_step``.
    Each outer step uses the next L batches of the training loader, in order::

        w', μ ← w
        for i = 1..L:  w' ← SGLD step on training_loss(batch_i) + γ/2 ‖w' − w‖²
        w ← outer step along w − μ

    so an epoch of N batches gives ⌊N / L⌋ outer steps (the last N mod L batches are skipped)
    and ``trainer.global_step`` and ``max_steps`` count outer steps. The loss at w (the first
    inner loss) is logged as ``train_loss``. See the module docstring for the design.

    Example:
        >>> import torch, lightning.pytorch as pl
        >>> from torch.nn import functional as F
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from wideflat.optim import EntropySGD
        >>> from wideflat.integrations.lightning import EntropySGDModule
        >>> class Net(EntropySGDModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = torch.nn.Linear(4, 2)
        ...     def training_loss(self, batch):      # called L times per step, fresh batch
        ...         x, t = batch
        ...         return F.cross_entropy(self.net(x), t)
        ...     def configure_optimizers(self):
        ...         return EntropySGD(self.parameters(), lr=0.5, inner_lr=0.1, inner_steps=3,
        ...                           seed=0)
        >>> data = TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
        >>> trainer = pl.Trainer(max_steps=2, accelerator="cpu", devices=1, logger=False,
        ...                      enable_checkpointing=False, enable_progress_bar=False,
        ...                      enable_model_summary=False)
        >>> trainer.fit(Net(), DataLoader(data, batch_size=8))   # 2 steps on 6 batches
        >>> trainer.global_step
        2

    References:
        P. Chaudhari et al., "Entropy-SGD: biasing gradient descent into wide valleys",
        J. Stat. Mech. 2019; F. Pittorino et al., ICLR 2021, Algorithm 1.
    """

    def training_loss(self, batch: Any) -> torch.Tensor:
        """The loss of one minibatch (as delivered by the loader) at the current weights."""
        raise NotImplementedError(f"{type(self).__name__} must define training_loss(batch)")

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        """Collect L batches, then take one EntropySGD step on them (``None`` meanwhile)."""
        opt = self._lightning_optimizer(EntropySGD)
        batches = self._collect(batch, opt.optimizer.param_groups[0]["inner_steps"])
        if batches is None:
            return None
        fresh = iter(batches)

        def closure():  # EntropySGD calls it once per inner step: the next batch each time
            loss = self.training_loss(next(fresh))
            self.manual_backward(loss)
            return loss.detach()

        loss = opt.step(closure=closure)
        self.log("train_loss", loss, prog_bar=True)
        return loss


class ReplicatedSGDModule(_CollectingModule):
    r"""A ``LightningModule`` trained by :class:`~wideflat.optim.ReplicatedSGD`, each replica
    on its own minibatches, validated at the center.

    Define :meth:`replica_loss` (the loss of one minibatch for a given replica module) and
    ``configure_optimizers`` returning one ``ReplicatedSGD`` built on the module's network
    (replica 0 *is* that network, trained in place); do not override ``training_step``. Per
    step, replica a gets the a-th of the next y batches of the training loader, or, when
    ``train_dataloaders`` is a list of y loaders, its own loader's batch. The mean replica
    loss is logged as ``train_loss``.

    Validation runs :meth:`replica_loss` on :attr:`center_model`, the center w̄ (logged as
    ``val_loss``); override ``validation_step`` to compute other metrics on
    ``self.center_model``. Its BatchNorm statistics are the replicas' averages (for
    re-estimated ones, ``torch.optim.swa_utils.update_bn(loader, module.center_model)``).
    A Lightning checkpoint holds all replicas (in the optimizer's state) and resumes them
    bit for bit.

    Example:
        >>> import torch, lightning.pytorch as pl
        >>> from torch.nn import functional as F
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from wideflat.optim import ReplicatedSGD
        >>> from wideflat.integrations.lightning import ReplicatedSGDModule
        >>> class Net(ReplicatedSGDModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = torch.nn.Linear(4, 2)
        ...     def replica_loss(self, replica, batch):  # replica a, its own batch
        ...         x, t = batch
        ...         return F.cross_entropy(replica(x), t)
        ...     def configure_optimizers(self):
        ...         return ReplicatedSGD(self.net, lr=0.1, y=3, gamma=0.01, seed=0)
        >>> data = TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
        >>> trainer = pl.Trainer(max_steps=2, accelerator="cpu", devices=1, logger=False,
        ...                      enable_checkpointing=False, enable_progress_bar=False,
        ...                      enable_model_summary=False, num_sanity_val_steps=0)
        >>> model = Net()
        >>> trainer.fit(model, DataLoader(data, batch_size=8), DataLoader(data, batch_size=32))
        >>> trainer.global_step, model.optimizers().optimizer.steps
        (2, 2)
        >>> center = model.center_model             # an nn.Linear holding w̄

    References:
        F. Pittorino et al., "Entropic gradient descent algorithms and wide flat minima",
        ICLR 2021, Algorithm 2.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._replicated_sgd_box: list[ReplicatedSGD] = []  # the optimizer (not a submodule)
        self._center_cache: tuple[tuple[int, int], nn.Module] | None = None

    def replica_loss(self, replica: nn.Module, batch: Any) -> torch.Tensor:
        """The loss of one minibatch for ``replica`` (also called with the center)."""
        raise NotImplementedError(f"{type(self).__name__} must define replica_loss(replica, batch)")

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        """Collect one batch per replica, then take one ReplicatedSGD step (``None`` meanwhile)."""
        opt = self._lightning_optimizer(ReplicatedSGD)
        rsgd = opt.optimizer
        if rsgd.replicas.spans_processes:
            raise ValueError(
                "Invalid engine: 'distributed' (its replicas live in processes it launches "
                "itself); under Lightning use engine='loop' or 'vmap'"
            )
        self._replicated_sgd_box[:] = [rsgd]
        loaders = self.trainer.train_dataloader
        if isinstance(loaders, (list, tuple)):  # one loader per replica: a batch of each
            if len(loaders) != rsgd.y:
                raise ValueError(
                    f"Invalid train_dataloaders: {len(loaders)} loaders for y = {rsgd.y} "
                    "replicas (give one loader, or one per replica)"
                )
            batches = list(batch)
        else:
            batches = self._collect(batch, rsgd.y)
            if batches is None:
                return None
        loss = _counted_step(opt, lambda: rsgd.step(self._replica_closure(rsgd, batches)))
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def _replica_closure(self, rsgd: ReplicatedSGD, batches: list) -> Callable:
        if rsgd.replicas.batched:  # vectorized engine: closure() → the y losses

            def closure():
                losses = torch.stack(
                    [self.replica_loss(rsgd.replicas[a], b) for a, b in enumerate(batches)]
                )
                self.manual_backward(losses.sum())
                return losses.detach()

            return closure

        def closure(a):  # loop engine: replica a on the a-th batch
            loss = self.replica_loss(rsgd.replicas[a], batches[a])
            self.manual_backward(loss)
            return loss.detach()

        return closure

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """``val_loss``: :meth:`replica_loss` of the center on the batch."""
        loss = self.replica_loss(self.center_model, batch)
        self.log("val_loss", loss, prog_bar=True)
        return loss

    @property
    def center_model(self) -> nn.Module:
        """The center w̄ of the replicas as a plain module in eval mode (not a submodule).

        Rebuilt (``ReplicatedSGD.center()``) when the optimizer has stepped since the last
        call. Available once the trainer has set up the optimizer (in validation, also in
        the sanity check) and after ``fit``.
        """
        rsgd = self._replicated_sgd()
        key = (id(rsgd), rsgd.steps)
        if self._center_cache is None or self._center_cache[0] != key:
            center = rsgd.center().eval()
            self._center_cache = (key, center)
        return self._center_cache[1]

    def _replicated_sgd(self) -> ReplicatedSGD:
        try:
            optimizers = list(self.trainer.optimizers)
        except RuntimeError:  # not attached to a Trainer
            optimizers = []
        found = [o for o in optimizers if isinstance(o, ReplicatedSGD)]
        if found:
            self._replicated_sgd_box[:] = found[:1]
        if not self._replicated_sgd_box:
            raise RuntimeError(
                f"{type(self).__name__}.center_model: no ReplicatedSGD yet (it exists once a "
                "Trainer has called configure_optimizers, e.g. during or after trainer.fit)"
            )
        return self._replicated_sgd_box[0]


def _counted_step(opt: Any, step: Callable[[], Any]) -> Any:
    """Run ``step()`` as ``LightningOptimizer.step`` runs the optimizer step, without its
    precision plugin: inside the hooks that count it in ``trainer.global_step``
    (``lightning/pytorch/core/optimizer.py`` lines 146-156)."""
    opt._on_before_step()
    out = step()
    opt._on_after_step()
    return out
