"""The fully connected committee machine of the paper's section 5 (Eq. 7, appendix B.1).

A committee machine has ``N`` inputs, ``K`` hidden units (``K`` odd) and its second-layer
weights fixed to ``+1``. Its weights are one matrix ``w`` of shape ``(K, N)``, one row per
hidden unit, and its output on a pattern ``x`` is

    σ(w, x) = sign( (1/√K) Σ_k sign(h_k) ),      h_k = w_k · x / √N.

Conventions used everywhere in this module:

* **Batched weights.** Every function takes weights of shape ``(..., K, N)``: any leading
  dimensions (for example ``restart × replica``) index independent networks, so one call
  evaluates a whole population of networks as one tensor program.
* **Patterns.** ``X`` has shape ``(M, N)`` (one data set shared by all networks) or
  ``(..., M, N)`` with leading dimensions broadcastable against the weights' (one minibatch
  per network). Labels ``y`` are ``±1`` with shape ``(M,)`` or ``(..., M)``.
* **sign(0) = +1** for the hidden units, so every hidden output is ``±1``; with ``K`` odd the
  sum of ``K`` values ``±1`` is never zero, so the network output is always ``±1``.
* **Normalization.** Each hidden unit's weight vector is kept at Euclidean norm ``√N``
  (``‖w_k‖² = N``: the mean squared weight is 1, and ``h_k`` is of order one for ``±1``
  inputs). The sign network is invariant to this rescaling; the training loss is not, which
  is why the paper normalizes after every update and controls the scale with ``β`` and ``ω``.
* **Training surrogate.** The hidden ``sign`` is replaced by ``tanh(β ·)``:
  ``o_β(w, x) = (1/√K) Σ_k tanh(β h_k)``, and the loss of a pattern with label ``y`` is
  ``f(y o_β(w, x), ω)`` with

      f(x, ω) = −x/2 + (1/(2ω)) log(2 cosh(ω x)) = softplus(−2ω x) / (2ω),

  (the identity follows from ``log(2 cosh z) = z + log(1 + e^{−2z})``); the second form is
  evaluated, which never overflows. ``f'(x) = −sigmoid(−2ω x)``. The training loss is the
  mean of ``f`` over the patterns (the expectation of the paper's Eq. 8).

References:
    Baldassi, Pittorino, Zecchina, "Shaping the learning landscape in neural networks around
    wide flat minima", PNAS 2020. Pittorino et al., "Entropic gradient descent algorithms and
    wide flat minima", ICLR 2021, section 5 and appendix B.1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CommitteeMachine",
    "committee_errors",
    "committee_loss",
    "committee_loss_and_grad",
    "committee_output",
    "committee_preactivations",
    "committee_soft_output",
    "hidden_signs",
    "init_committee_weights",
    "normalize_units",
    "omega_loss",
    "omega_loss_grad",
]


# --------------------------------------------------------------------------- validation


def _check_weights(w: Tensor, name: str = "w") -> tuple[int, int]:
    """Validate batched weights ``(..., K, N)``; return ``(K, N)``."""
    if not isinstance(w, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(w).__name__}")
    if w.ndim < 2:
        raise ValueError(f"{name} must have shape (..., K, N), got shape {tuple(w.shape)}")
    if not w.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {w.dtype}")
    k, n = w.shape[-2], w.shape[-1]
    if k < 1 or k % 2 == 0:
        raise ValueError(f"Invalid number of hidden units K={k} in {name}: K must be odd")
    if n < 1:
        raise ValueError(f"Invalid number of inputs N={n} in {name}: N must be >= 1")
    return k, n


def _check_patterns(X: Tensor, n: int, name: str = "X") -> None:
    if not isinstance(X, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(X).__name__}")
    if X.ndim < 2:
        raise ValueError(f"{name} must have shape (..., M, N), got shape {tuple(X.shape)}")
    if X.shape[-1] != n:
        raise ValueError(
            f"Shape mismatch: {name} has {X.shape[-1]} inputs per pattern "
            f"(shape {tuple(X.shape)}) but the weights have N={n}"
        )


def _check_labels(y: Tensor, m: int, name: str = "y") -> None:
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.ndim < 1 or y.shape[-1] != m:
        raise ValueError(
            f"Shape mismatch: {name} has shape {tuple(y.shape)} but there are M={m} patterns"
        )
    bad = (y != 1) & (y != -1)
    if bool(bad.any()):
        first = y[bad].flatten()[0].item()
        raise ValueError(f"Labels {name} must be +1 or -1, found {first!r}")


def _check_positive(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"Invalid {name}: {value!r} (must be finite and > 0)")
    return v


# --------------------------------------------------------------------------- weights


def normalize_units(w: Tensor) -> Tensor:
    """Rescale every hidden unit's weight vector to Euclidean norm ``√N``.

    ``w_k ← √N · w_k / ‖w_k‖`` for each row ``k`` of each network. A unit whose norm is
    exactly zero stays zero (there is no direction to keep) instead of becoming NaN.

    Args:
        w: Weights of shape ``(..., K, N)``.

    Returns:
        A new tensor of the same shape with ``‖w_k‖ = √N`` for every unit.

    Example:
        >>> w = normalize_units(torch.randn(2, 3, 16))
        >>> torch.allclose(w.norm(dim=-1), torch.full((2, 3), 4.0))
        True
    """
    _, n = _check_weights(w)
    norm = torch.linalg.vector_norm(w, dim=-1, keepdim=True)
    tiny = torch.finfo(w.dtype).tiny
    return w * (math.sqrt(n) / norm.clamp_min(tiny))


def init_committee_weights(
    *shape: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Uniform initialization followed by per-unit normalization (appendix B.1).

    Every weight is drawn from ``U(−1, 1)`` (``2 · torch.rand − 1``, one call to
    ``torch.rand`` with the whole shape, so a generator reproduces it), then each hidden
    unit is normalized to norm ``√N`` with :func:`normalize_units`.

    Args:
        *shape: ``(..., K, N)``: leading dimensions, then ``K`` (odd) and ``N``.
        generator: Source of randomness (default: the global generator).
        dtype: Floating dtype (default: ``torch.get_default_dtype()``).
        device: Device of the result.

    Returns:
        Weights of shape ``shape``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> w = init_committee_weights(4, 3, 25, generator=g)
        >>> tuple(w.shape), round(float(w[0, 0].norm()), 6)
        ((4, 3, 25), 5.0)
    """
    if len(shape) < 2 or any(not isinstance(s, int) or s < 0 for s in shape):
        raise ValueError(f"Invalid shape {shape}: need (..., K, N) non-negative integers")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    w = torch.rand(shape, generator=generator, dtype=dtype, device=device) * 2 - 1
    return normalize_units(w)


# --------------------------------------------------------------------------- sign network


def committee_preactivations(w: Tensor, X: Tensor) -> Tensor:
    """Hidden pre-activations ``h_k = w_k · x / √N``.

    Args:
        w: Weights ``(..., K, N)``.
        X: Patterns ``(M, N)`` or ``(..., M, N)`` (leading dimensions broadcast with ``w``).

    Returns:
        Tensor of shape ``(..., M, K)``.

    Example:
        >>> w = torch.ones(1, 4); X = torch.tensor([[1.0, 1.0, 1.0, -1.0]])
        >>> committee_preactivations(w, X)
        tensor([[1.]])
    """
    _, n = _check_weights(w)
    _check_patterns(X, n)
    return torch.matmul(X, w.transpose(-1, -2)) / math.sqrt(n)


def hidden_signs(h: Tensor) -> Tensor:
    """Hidden-unit outputs ``sign(h)`` with ``sign(0) = +1`` (so every vote is ``±1``), int64.

    The one definition of the committee's sign: :func:`committee_output` and the flatness
    code's correctness checks (:mod:`wideflat.flatness`) use it.

    Example:
        >>> hidden_signs(torch.tensor([-2.0, 0.0, 3.0]))
        tensor([-1,  1,  1])
    """
    return torch.where(h >= 0, 1, -1)


def committee_output(w: Tensor, X: Tensor) -> Tensor:
    """Network output ``σ(w, x) = sign((1/√K) Σ_k sign(w_k · x / √N))`` (Eq. 7).

    The hidden units use ``sign(0) = +1``; with ``K`` odd the output is always ``±1``.

    Args:
        w: Weights ``(..., K, N)`` with ``K`` odd.
        X: Patterns ``(M, N)`` or ``(..., M, N)``.

    Returns:
        Outputs ``±1`` of shape ``(..., M)``, dtype of ``w``.

    Example:
        >>> w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> committee_output(w, torch.tensor([[1.0, -1.0], [-1.0, -1.0]]))
        tensor([ 1., -1.])
    """
    h = committee_preactivations(w, X)
    votes = hidden_signs(h).sum(dim=-1)
    one = torch.ones((), dtype=w.dtype, device=w.device)
    return torch.where(votes > 0, one, -one)


def committee_errors(w: Tensor, X: Tensor, y: Tensor) -> Tensor:
    """Fraction of patterns misclassified by the sign network.

    ``E(w) = (1/M) Σ_μ [σ(w, x^μ) ≠ y^μ]`` for each network.

    Args:
        w: Weights ``(..., K, N)``.
        X: Patterns ``(M, N)`` or ``(..., M, N)``.
        y: Labels ``±1``, shape ``(M,)`` or ``(..., M)``.

    Returns:
        Error fractions of shape ``(...)`` (a 0-d tensor for a single network).

    Example:
        >>> w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> X = torch.tensor([[1.0, -1.0], [-1.0, -1.0]])
        >>> committee_errors(w, X, torch.tensor([1.0, 1.0]))
        tensor(0.5000)
    """
    out = committee_output(w, X)
    _check_labels(y, X.shape[-2])
    return (out != y).to(w.dtype).mean(dim=-1)


# --------------------------------------------------------------------------- training loss


def omega_loss(x: Tensor, omega: float) -> Tensor:
    """The ω-loss ``f(x, ω) = −x/2 + (1/(2ω)) log(2 cosh(ω x)) = softplus(−2ω x)/(2ω)``.

    Applied element-wise to the margin ``x = y · o_β(w, x)``. It tends to ``−x`` for
    ``x → −∞`` and to 0 for ``x → +∞`` (like a cross-entropy with inverse temperature
    ``2ω``). The ``softplus`` form is evaluated: no ``cosh`` overflow for large ``|ω x|``.

    Args:
        x: Margins, any shape.
        omega: ``ω > 0``.

    Returns:
        ``f(x, ω)`` with the shape of ``x``.

    Example:
        >>> omega_loss(torch.tensor([0.0]), 0.5)  # f(0) = log(2)/(2ω)
        tensor([0.6931])
    """
    omega = _check_positive(omega, "omega")
    return F.softplus(-2.0 * omega * x) / (2.0 * omega)


def omega_loss_grad(x: Tensor, omega: float) -> Tensor:
    """Derivative ``∂f/∂x = −1/2 + tanh(ω x)/2 = −sigmoid(−2ω x)``.

    Args:
        x: Margins, any shape.
        omega: ``ω > 0``.

    Returns:
        ``f'(x, ω)`` with the shape of ``x``, in ``(−1, 0)``.

    Example:
        >>> omega_loss_grad(torch.tensor([0.0]), 2.0)
        tensor([-0.5000])
    """
    omega = _check_positive(omega, "omega")
    return -torch.sigmoid(-2.0 * omega * x)


def committee_soft_output(w: Tensor, X: Tensor, beta: float) -> Tensor:
    """Training surrogate output ``o_β(w, x) = (1/√K) Σ_k tanh(β w_k · x / √N)``.

    Args:
        w: Weights ``(..., K, N)``.
        X: Patterns ``(M, N)`` or ``(..., M, N)``.
        beta: ``β > 0``.

    Returns:
        Tensor of shape ``(..., M)``, differentiable in ``w``.

    Example:
        >>> w = torch.ones(1, 4)
        >>> committee_soft_output(w, torch.ones(1, 4), 1.0)  # tanh(2)
        tensor([0.9640])
    """
    beta = _check_positive(beta, "beta")
    k, _ = _check_weights(w)
    h = committee_preactivations(w, X)
    return torch.tanh(beta * h).sum(dim=-1) / math.sqrt(k)


def committee_loss(w: Tensor, X: Tensor, y: Tensor, *, beta: float, omega: float) -> Tensor:
    """Training loss ``L(w) = (1/M) Σ_μ f(y^μ o_β(w, x^μ), ω)`` (the paper's Eq. 8).

    Args:
        w: Weights ``(..., K, N)``.
        X: Patterns ``(M, N)`` or ``(..., M, N)``.
        y: Labels ``±1``, shape ``(M,)`` or ``(..., M)``.
        beta: Inverse width of the hidden ``tanh``, ``β > 0``.
        omega: Scale of the ω-loss, ``ω > 0``.

    Returns:
        Loss per network, shape ``(...)``; differentiable in ``w``.

    Example:
        >>> w = torch.ones(1, 4)
        >>> float(committee_loss(w, torch.ones(2, 4), torch.tensor([1.0, 1.0]), beta=1.0,
        ...                      omega=1.0)) < float(torch.log(torch.tensor(2.0)) / 2)
        True
    """
    out = committee_soft_output(w, X, beta)
    _check_labels(y, X.shape[-2])
    return omega_loss(y * out, omega).mean(dim=-1)


def committee_loss_and_grad(
    w: Tensor, X: Tensor, y: Tensor, *, beta: float, omega: float
) -> tuple[Tensor, Tensor]:
    """Training loss and its gradient in closed form, for a batch of networks.

    With ``h_{μk} = w_k · x^μ / √N``, ``t_{μk} = tanh(β h_{μk})``,
    ``m_μ = y^μ (1/√K) Σ_k t_{μk}`` and ``L = (1/M) Σ_μ f(m_μ, ω)``:

        ∂L/∂w_k = (1/M) Σ_μ f'(m_μ, ω) · y^μ · (β/√K) (1 − t_{μk}²) · x^μ / √N.

    The networks in the leading dimensions are independent, so this equals the autograd
    gradient of ``committee_loss(...).sum()``; computing it explicitly avoids building a
    graph and is about twice as fast.

    Args:
        w: Weights ``(..., K, N)``.
        X: Patterns ``(M, N)`` or ``(..., M, N)``.
        y: Labels ``±1``, shape ``(M,)`` or ``(..., M)``.
        beta: ``β > 0``.
        omega: ``ω > 0``.

    Returns:
        ``(loss, grad)``: loss of shape ``(...)`` and gradient with the shape of ``w``
        (broadcast against the leading dimensions of ``X``).

    Example:
        >>> w = normalize_units(torch.randn(2, 3, 8, dtype=torch.float64))
        >>> X = torch.randn(5, 8, dtype=torch.float64).sign(); y = torch.ones(5, dtype=X.dtype)
        >>> loss, grad = committee_loss_and_grad(w, X, y, beta=1.0, omega=0.5)
        >>> tuple(loss.shape), tuple(grad.shape)
        ((2,), (2, 3, 8))
    """
    beta = _check_positive(beta, "beta")
    omega = _check_positive(omega, "omega")
    _, n = _check_weights(w)
    _check_patterns(X, n)
    _check_labels(y, X.shape[-2])
    return _loss_and_grad_unchecked(w, X, y, beta, omega)


def _loss_and_grad_unchecked(
    w: Tensor, X: Tensor, y: Tensor, beta: float, omega: float, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """:func:`committee_loss_and_grad` without input validation (for inner loops).

    ``mask`` (``(..., M, K)``, optional): multiplies each hidden unit's output ``t_{μk}``
    (dropout on the hidden layer: 0 or ``1/(1−p)``), in the loss and its gradient.
    """
    k, n = w.shape[-2], w.shape[-1]
    m_patterns = X.shape[-2]
    # Hidden fields in (K, M) layout: w Xᵀ and dhᵀ X are ~2x faster as batched CPU products
    # than X wᵀ and a transposed dh (benchmarks/committee_batching.py).
    h = torch.matmul(w, X.transpose(-1, -2)) / math.sqrt(n)  # (..., K, M)
    t = torch.tanh(beta * h)
    mask_t = None if mask is None else mask.transpose(-1, -2)
    votes = t if mask_t is None else t * mask_t
    margin = y * votes.sum(dim=-2) / math.sqrt(k)  # (..., M)
    loss = F.softplus(-2.0 * omega * margin).mean(dim=-1) / (2.0 * omega)
    # dL/dh_{μk} = f'(m_μ)/M · y_μ · β/√K · (1 − t²), with f'(m) = −sigmoid(−2ω m);
    # then dL/dw_k = Σ_μ dL/dh_{μk} x^μ / √N.
    dm = torch.sigmoid(-2.0 * omega * margin) * y * (-beta / (m_patterns * math.sqrt(k)))
    dh = dm.unsqueeze(-2) * (1 - t * t)  # (..., K, M)
    if mask_t is not None:
        dh = dh * mask_t
    grad = torch.matmul(dh, X) / math.sqrt(n)  # (..., K, N)
    return loss, grad


# --------------------------------------------------------------------------- module


class CommitteeMachine(nn.Module):
    """A single committee machine as an ``nn.Module`` (second layer fixed to ``+1``).

    ``forward(x)`` returns the sign network's output ``σ(w, x) ∈ {±1}`` (not
    differentiable); train through :meth:`loss` (the ``tanh(β ·)`` surrogate with the
    ω-loss) and call :meth:`normalize_` after every optimizer step, as the paper does.

    Args:
        num_inputs: ``N``.
        num_hidden: ``K`` (odd).
        generator: Randomness for the ``U(−1, 1)`` initialization.
        dtype: Parameter dtype.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> net = CommitteeMachine(16, 3, generator=g)
        >>> X = torch.randn(10, 16).sign(); y = torch.ones(10)
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> loss = net.loss(X, y, beta=1.0, omega=0.5); loss.backward(); opt.step()
        >>> _ = net.normalize_(); net(X).shape
        torch.Size([10])
    """

    def __init__(
        self,
        num_inputs: int,
        num_hidden: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(num_inputs, int) or num_inputs < 1:
            raise ValueError(f"Invalid num_inputs: {num_inputs!r} (must be an int >= 1)")
        if not isinstance(num_hidden, int) or num_hidden < 1 or num_hidden % 2 == 0:
            raise ValueError(f"Invalid num_hidden: {num_hidden!r} (must be an odd int >= 1)")
        w = init_committee_weights(num_hidden, num_inputs, generator=generator, dtype=dtype)
        self.weight = nn.Parameter(w)

    @property
    def num_inputs(self) -> int:
        """N, the number of inputs."""
        return self.weight.shape[1]

    @property
    def num_hidden(self) -> int:
        """K, the number of hidden units."""
        return self.weight.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        """Sign-network outputs ``±1`` for patterns ``x`` of shape ``(M, N)``."""
        return committee_output(self.weight, x)

    def soft_output(self, x: Tensor, beta: float) -> Tensor:
        """Differentiable surrogate ``(1/√K) Σ_k tanh(β w_k · x / √N)``."""
        return committee_soft_output(self.weight, x, beta)

    def loss(self, x: Tensor, y: Tensor, *, beta: float, omega: float) -> Tensor:
        """Mean ω-loss of the surrogate output (differentiable)."""
        return committee_loss(self.weight, x, y, beta=beta, omega=omega)

    def errors(self, x: Tensor, y: Tensor) -> Tensor:
        """Fraction of patterns the sign network misclassifies."""
        return committee_errors(self.weight, x, y)

    @torch.no_grad()
    def normalize_(self) -> CommitteeMachine:
        """Rescale each hidden unit to norm ``√N`` in place; returns ``self``."""
        self.weight.copy_(normalize_units(self.weight))
        return self

    def extra_repr(self) -> str:
        return f"num_inputs={self.num_inputs}, num_hidden={self.num_hidden}"
