"""Integrations with training frameworks; each loads its framework only when imported.

* :mod:`wideflat.integrations.lightning`: PyTorch Lightning (``pip install
  'wideflat[lightning]'``), ``EntropySGDModule`` and ``ReplicatedSGDModule``.

Importing this package loads no framework; :func:`lightning_closure_problem`, which the
optimizers use to refuse a Lightning closure they cannot use, recognizes Lightning's
closures without importing Lightning.
"""

from ..optim._closures import lightning_closure_kind, lightning_closure_problem

__all__ = ["lightning_closure_kind", "lightning_closure_problem"]
