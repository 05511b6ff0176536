"""BatchNorm statistics for a replica center: :func:`recompute_bn` lives in ``wideflat._bn``
(the one BatchNorm helper module); this module keeps ``wideflat.replicas.bn`` importing."""

from __future__ import annotations

from .._bn import recompute_bn

__all__ = ["recompute_bn"]
