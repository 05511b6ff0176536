"""Replicas of a model for Replicated-SGD: three engines behind one interface.

* :class:`Replicas` — the loop engine: y modules in one process (any model).
* :class:`StackedReplicas` — the vectorized engine: stacked tensors, one vmapped program.
* :class:`DistributedReplicas` — one replica per process over ``torch.distributed``.

Each gives ``local_indices``, ``center()``, ``distances()``, ``couple_()`` and
``optimizer_params()``; :class:`~wideflat.optim.ReplicatedSGD` drives any of them.
"""

from .bn import recompute_bn
from .distributed import DistributedReplicas
from .replicas import Replicas
from .stacked import StackedReplicas

__all__ = ["DistributedReplicas", "Replicas", "StackedReplicas", "recompute_bn"]
