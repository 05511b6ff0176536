"""Replicas of a model for Replicated-SGD: three engines behind one written interface.

* :class:`Replicas` (``"loop"``, :mod:`~wideflat.replicas.loop`): y modules in one process
  (any model).
* :class:`StackedReplicas` (``"vmap"``, :mod:`~wideflat.replicas.vmap`): stacked tensors, one
  vmapped program.
* :class:`DistributedReplicas` (``"distributed"``, :mod:`~wideflat.replicas.distributed`): one
  replica per process over ``torch.distributed``.

Each implements :class:`~wideflat.replicas.base.ReplicaEngine` (``local_indices``,
``center()``, ``distances()``, ``couple_()``, ``optimizer_params()``, ``losses()``, ...), and
``engine[a]`` is the live module of replica a everywhere; :func:`make_replicas` builds one by
name and :class:`~wideflat.optim.ReplicatedSGD` drives any of them.
"""

from ._make import ENGINES, choose_engine, make_replicas
from .base import ReplicaEngine, ReplicaIndexError
from .bn import recompute_bn
from .distributed import DistributedReplicas
from .loop import Replicas
from .vmap import StackedReplicas

__all__ = [
    "ENGINES",
    "DistributedReplicas",
    "ReplicaEngine",
    "ReplicaIndexError",
    "Replicas",
    "StackedReplicas",
    "choose_engine",
    "make_replicas",
    "recompute_bn",
]
