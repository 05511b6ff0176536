"""ShakeDrop regularization (Yamada et al., 2018) as an autograd Function and a module."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from wideflat import _validate as check

__all__ = ["ShakeDrop", "ShakeDropFunction", "shake_drop", "shakedrop_survival_probs"]


class ShakeDropFunction(torch.autograd.Function):
    """``y = x * forward_coef`` whose backward multiplies by ``backward_coef`` instead.

    ShakeDrop's forward and backward passes scale the residual branch by different
    random factors; this Function carries both. The factors are drawn by the caller
    (``shake_drop``) so that the Function itself is deterministic: it then supports
    ``torch.func`` transforms (``vmap`` through ``generate_vmap_rule``, ``grad``,
    ``functional_call``) and recomputation (activation checkpointing) sees the same factors.
    No gradient flows into the coefficients.

    Example:
        >>> import torch
        >>> x = torch.ones(2, 3, requires_grad=True)
        >>> fwd, bwd = torch.tensor([[-1.0], [1.0]]), torch.tensor([[0.5], [1.0]])
        >>> y = ShakeDropFunction.apply(x, fwd, bwd)
        >>> y.sum().backward()
        >>> y.detach().tolist(), x.grad.tolist()
        ([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], [[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]])

    References:
        Yamada, Iwamura, Akiba, Kise. "ShakeDrop Regularization for Deep Residual Learning."
        IEEE Access 2019 (arXiv:1802.02375, 2018).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: torch.Tensor, forward_coef: torch.Tensor, backward_coef: torch.Tensor
    ) -> torch.Tensor:
        return x * forward_coef

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        _, _, backward_coef = inputs
        ctx.save_for_backward(backward_coef)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (backward_coef,) = ctx.saved_tensors
        return grad_output * backward_coef, None, None


def _check_range(label: str, value: Any, low: float, high: float) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {label}: {value!r} (expected a pair of floats)") from None
    if not (low <= lo <= hi <= high):
        raise ValueError(f"Invalid {label}: {value!r} (expected {low} <= low <= high <= {high})")
    return lo, hi


def _check_prob(survival_prob: Any) -> float:
    return check.number("survival_prob", survival_prob, minimum=0.0, maximum=1.0)


def shake_drop(
    x: torch.Tensor,
    survival_prob: float,
    *,
    training: bool,
    alpha_range: tuple[float, float] = (-1.0, 1.0),
    beta_range: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    r"""Apply ShakeDrop to a residual-branch output ``x`` (batch first).

    Training mode, independently for each sample ``n`` of the batch:

    .. math::
        b_n \sim \mathrm{Bernoulli}(p),\quad \alpha_n \sim U[\alpha_{lo}, \alpha_{hi}],\quad
        \beta_n \sim U[\beta_{lo}, \beta_{hi}],

    forward ``y_n = (b_n + \alpha_n - b_n \alpha_n) x_n`` and backward
    ``\partial L/\partial x_n = (b_n + \beta_n - b_n \beta_n)\, \partial L/\partial y_n``,
    so a kept sample (``b = 1``) passes unchanged both ways and a dropped one is scaled
    by ``alpha`` forward and by an independent ``beta`` backward. ``beta`` is drawn at
    forward time (from the same generator, right after ``alpha``) and used in the backward.

    Evaluation mode returns the expectation of the forward factor:
    ``y = (p + (1 - p) E[alpha]) x`` with ``E[alpha] = (alpha_lo + alpha_hi) / 2``, which is
    ``y = p x`` for the default ``alpha in [-1, 1]``.

    All randomness uses ``torch.rand`` on ``x``'s device, so ``torch.manual_seed`` makes
    it reproducible, and under ``torch.func.vmap(..., randomness="different")`` each
    vmapped replica draws its own factors.

    Args:
        x: Tensor of shape ``(batch, ...)``.
        survival_prob: ``p``, the probability of ``b = 1`` (keeping the branch as is).
        training: Draw random factors (true) or use the expectation (false).
        alpha_range: Bounds of the uniform forward factor; within [-1, 1] (paper: [-1, 1]).
        beta_range: Bounds of the uniform backward factor; within [0, 1] (paper: [0, 1]).

    Returns:
        The scaled tensor, same shape and dtype as ``x``.

    Raises:
        ValueError: If ``x`` has no batch dimension, or a probability or range is invalid.

    Example:
        >>> import torch
        >>> shake_drop(torch.ones(2, 3), 0.75, training=False).tolist()
        [[0.75, 0.75, 0.75], [0.75, 0.75, 0.75]]

    References:
        Yamada, Iwamura, Akiba, Kise. "ShakeDrop Regularization for Deep Residual Learning."
        IEEE Access 2019 (arXiv:1802.02375, 2018).
    """
    p = _check_prob(survival_prob)
    a_lo, a_hi = _check_range("alpha_range", alpha_range, -1.0, 1.0)
    b_lo, b_hi = _check_range("beta_range", beta_range, 0.0, 1.0)
    if not isinstance(x, torch.Tensor) or x.dim() < 1:
        raise ValueError(f"Invalid x: expected a tensor with a batch dimension, got {type(x)}")
    if not training:
        return x * (p + (1.0 - p) * 0.5 * (a_lo + a_hi))
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    opts = {"dtype": x.dtype, "device": x.device}
    keep = torch.rand(shape, **opts) < p
    alpha = a_lo + (a_hi - a_lo) * torch.rand(shape, **opts)
    beta = b_lo + (b_hi - b_lo) * torch.rand(shape, **opts)
    # b + a - b a is 1 where b = 1 and a where b = 0; `where` keeps the 1 exact.
    forward_coef = torch.where(keep, 1.0, alpha)
    backward_coef = torch.where(keep, 1.0, beta)
    return ShakeDropFunction.apply(x, forward_coef, backward_coef)


def shakedrop_survival_probs(num_blocks: int, final_survival_prob: float = 0.5) -> list[float]:
    """The linear-decay rule ``p_l = 1 - (l / L)(1 - p_L)`` for blocks ``l = 1..L``.

    Args:
        num_blocks: ``L``, the number of residual blocks.
        final_survival_prob: ``p_L``, the survival probability of the last block
            (0.5 in Yamada et al.).

    Returns:
        ``[p_1, ..., p_L]``.

    Raises:
        ValueError: If ``num_blocks`` < 1 or ``final_survival_prob`` is outside [0, 1].

    Example:
        >>> shakedrop_survival_probs(4)
        [0.875, 0.75, 0.625, 0.5]
    """
    check.positive_int("num_blocks", num_blocks)
    p_last = _check_prob(final_survival_prob)
    return [1.0 - (l / num_blocks) * (1.0 - p_last) for l in range(1, num_blocks + 1)]


class ShakeDrop(nn.Module):
    """Module form of :func:`shake_drop`; random in ``train()`` mode, expectation in ``eval()``.

    Args:
        survival_prob: Probability of keeping the branch unchanged (``p_l``).
        alpha_range: Bounds of the forward factor, within [-1, 1].
        beta_range: Bounds of the backward factor, within [0, 1].

    Raises:
        ValueError: If a probability or range is invalid.

    Example:
        >>> import torch
        >>> m = ShakeDrop(0.5).eval()
        >>> m(torch.ones(1, 2)).tolist()
        [[0.5, 0.5]]

    References:
        Yamada, Iwamura, Akiba, Kise. "ShakeDrop Regularization for Deep Residual Learning."
        IEEE Access 2019 (arXiv:1802.02375, 2018).
    """

    def __init__(
        self,
        survival_prob: float,
        alpha_range: tuple[float, float] = (-1.0, 1.0),
        beta_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        self.survival_prob = _check_prob(survival_prob)
        self.alpha_range = _check_range("alpha_range", alpha_range, -1.0, 1.0)
        self.beta_range = _check_range("beta_range", beta_range, 0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shake_drop(
            x,
            self.survival_prob,
            training=self.training,
            alpha_range=self.alpha_range,
            beta_range=self.beta_range,
        )

    def extra_repr(self) -> str:
        return (
            f"survival_prob={self.survival_prob:.4f}, alpha_range={self.alpha_range}, "
            f"beta_range={self.beta_range}"
        )
