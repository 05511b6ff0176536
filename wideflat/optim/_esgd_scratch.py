"""Buffers Entropy-SGD reuses from step to step (w, μ and the flat noise), never checkpointed."""

from __future__ import annotations

import torch

__all__ = ["Scratch"]


class Scratch:
    """Buffers reused from step to step (w, μ and the flat noise), never checkpointed.

    Reusing them keeps the allocator quiet: fresh model-sized tensors at every step cost
    page faults and cache misses comparable to the arithmetic itself on CPU.
    """

    def __init__(self, params: list[torch.Tensor]):
        self.shapes = [(p.shape, p.dtype, p.device) for p in params]
        self.anchors = [torch.empty_like(p) for p in params]
        self.means: list[torch.Tensor | None] = [torch.empty_like(p) for p in params]
        self.noise: dict[tuple, torch.Tensor] = {}  # flat N(0, I) buffer per (device, dtype)
        self.views: dict[tuple, list[torch.Tensor]] = {}

    def fits(self, params: list[torch.Tensor]) -> bool:
        if len(params) != len(self.shapes):
            return False
        if any(s != (p.shape, p.dtype, p.device) for s, p in zip(self.shapes, params, strict=True)):
            return False
        # A mean handed to the optimizer state comes back as the next step's buffer; after
        # a load_state_dict (or on the first step) it may be missing or of another kind.
        self.means = [
            m if _same_kind(m, p) else torch.empty_like(p)
            for m, p in zip(self.means, params, strict=True)
        ]
        return True

    def noise_views(self, key: tuple, params: list[torch.Tensor], index: tuple) -> list:
        """[flat, views shaped like ``params``] over the first Σ numel entries of a buffer.

        The buffer is kept only on CPU; on an accelerator the caching allocator makes a
        fresh one cheap, and keeping it would hold a model-sized block through the closure.
        """
        keep = key[0].type == "cpu"
        views = self.views.get(index) if keep else None
        if views is None:
            sizes = [p.numel() for p in params]
            flat = self.noise.get(key)
            if flat is None or flat.numel() < sum(sizes):
                flat = torch.empty(sum(sizes), dtype=key[1], device=key[0])
                if keep:
                    self.noise[key] = flat
                    self.views.clear()
            flat = flat[: sum(sizes)]
            views = [flat, *(x.view_as(p) for x, p in zip(flat.split(sizes), params, strict=True))]
            if keep:
                if len(self.views) >= 8:  # the set of parameters with a gradient keeps changing
                    self.views.clear()
                self.views[index] = views
        return views


def _same_kind(t: torch.Tensor | None, p: torch.Tensor) -> bool:
    return t is not None and (t.shape, t.dtype, t.device) == (p.shape, p.dtype, p.device)
