"""EntropySGD's ``convention`` ("paper" | "original") and ``outer_gamma_scaled``, checked against
trajectories computed by hand in NumPy (float64).

The problem: three coordinates in two parameters, a (2,) and b (1,), and a quadratic loss
L_k(w) = ½ (w − c)ᵀ A_k (w − c) whose matrix alternates between closure calls (standing for
fresh minibatches). L = 2 inner steps, 2 outer steps, momentum 0.9, weight decay in both loops.
The Langevin noise is replayed: EntropySGD draws, per inner step, one ``normal_`` of the flat
size (3) from ``torch.Generator().manual_seed(seed)`` (``wideflat._rng.DeviceGenerators``),
in parameter order; the reference draws the same numbers from an identically seeded generator.

The reference writes out, per coordinate, the two conventions (see the EntropySGD docstring
and ucla-vision/entropy-sgd python/optim.py):

    paper:     g = A(w'−c) + λw' + γ(w'−w);  v ← m v + g;  w' ← w' − η' d(g, v) + √η' ε ξ
    original:  v ← 0 at every outer step;   g = A(w'−c) + λw';  v ← m v + g;
               w' ← w' − η' d(g, v) − η' γ (w'−w) + √(2η') ε ξ
    both:      μ ← α μ + (1−α) w';  G = (w − μ) or γ (w − μ);  outer SGD with λ and momentum

with d(g, v) = g + m v (Nesterov) or v.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from wideflat.optim import EntropySGD

F64 = torch.float64
A_MATS = (
    np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.5]]),
    np.array([[1.2, -0.4, 0.2], [-0.4, 2.5, 0.0], [0.2, 0.0, 0.8]]),
)
CENTER = np.array([0.3, -0.7, 1.1])
W0 = np.array([1.0, 0.5, -0.8])
HP = dict(lr=0.7, inner_lr=0.1, inner_steps=2, gamma=0.5, alpha=0.75, momentum=0.9,
          weight_decay=0.01)  # fmt: skip
SEED = 1234
N_OUTER = 2


class Problem:
    """Two parameters a (2,), b (1,) and the alternating quadratic closure."""

    def __init__(self, sign: float = 1.0):
        self.a = torch.nn.Parameter(torch.tensor(W0[:2], dtype=F64))
        self.b = torch.nn.Parameter(torch.tensor(W0[2:], dtype=F64))
        self.calls = 0
        self.sign = sign  # −1 with maximize: maximizing −L is minimizing L

    def w(self) -> np.ndarray:
        return torch.cat([self.a.detach(), self.b.detach()]).numpy().copy()

    def closure(self):
        A = torch.tensor(A_MATS[self.calls % 2], dtype=F64)
        d = torch.cat([self.a, self.b]) - torch.tensor(CENTER, dtype=F64)
        loss = self.sign * 0.5 * d @ (A @ d)
        loss.backward()
        self.calls += 1
        return loss


def noise_draws(n_draws: int) -> list[np.ndarray]:
    gen = torch.Generator().manual_seed(SEED)
    return [torch.empty(3, dtype=F64).normal_(generator=gen).numpy() for _ in range(n_draws)]


def reference(
    *,
    original,
    scaled,
    noise,
    nesterov,
    reset=None,
    after=None,
    noise_factor=None,
    n_outer=N_OUTER,
    n_inner=HP["inner_steps"],
):
    """The hand-computed trajectory [w after each outer step], float64 NumPy.

    ``original`` and ``scaled`` are per-coordinate booleans (or one bool for all). ``reset``,
    ``after`` and ``noise_factor`` override the pieces "original" switches on (for checking
    that each one shows in the numbers).
    """
    original = np.broadcast_to(np.asarray(original, dtype=bool), (3,))
    scaled = np.broadcast_to(np.asarray(scaled, dtype=bool), (3,))
    reset = original if reset is None else np.broadcast_to(np.asarray(reset, dtype=bool), (3,))
    after = original if after is None else np.broadcast_to(np.asarray(after, dtype=bool), (3,))
    if noise_factor is None:
        noise_factor = np.where(original, 2.0, 1.0)
    eta, eta_in, gamma = HP["lr"], HP["inner_lr"], HP["gamma"]
    alpha, mom, wd = HP["alpha"], HP["momentum"], HP["weight_decay"]
    draws = noise_draws(n_outer * n_inner) if noise > 0 else None
    w = W0.copy()
    v_in = np.zeros(3)  # torch's first SGD step v = g equals v = m·0 + g (dampening 0)
    v_out = np.zeros(3)
    calls, trajectory = 0, []
    for _ in range(n_outer):
        wp, mu = w.copy(), w.copy()
        v_in = np.where(reset, 0.0, v_in)  # python/optim.py:56, lp['mdw'][i].zero_()
        for _ in range(n_inner):
            grad_loss = A_MATS[calls % 2] @ (wp - CENTER)
            calls += 1
            coupling = gamma * (wp - w)
            g = grad_loss + wd * wp + np.where(after, 0.0, coupling)
            v_in = mom * v_in + g
            direction = g + mom * v_in if nesterov else v_in
            new = wp - eta_in * direction - np.where(after, eta_in * coupling, 0.0)
            if noise > 0:
                new = new + np.sqrt(noise_factor * eta_in) * noise * draws.pop(0)
            wp = new
            mu = alpha * mu + (1 - alpha) * wp
        G = np.where(scaled, gamma * (w - mu), w - mu) + wd * w
        v_out = mom * v_out + G
        w = w - eta * (G + mom * v_out if nesterov else v_out)
        trajectory.append(w.copy())
    return trajectory


def run(problem: Problem, n_outer=N_OUTER, **kwargs) -> list[np.ndarray]:
    kwargs = {**HP, "seed": SEED, **kwargs}
    opt = EntropySGD([problem.a, problem.b], **kwargs)
    out = []
    for _ in range(n_outer):
        opt.step(problem.closure)
        out.append(problem.w())
    return out


def close(got, want, atol=1e-13):
    for t, (g, w) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(g, w, rtol=0, atol=atol, err_msg=f"outer step {t + 1}")


def far(x, y, margin=1e-6) -> bool:
    return max(float(np.abs(a - b).max()) for a, b in zip(x, y, strict=True)) > margin


@pytest.mark.parametrize("nesterov", [False, True], ids=["heavy-ball", "nesterov"])
@pytest.mark.parametrize("noise", [0.0, 0.05], ids=["eps0", "eps0.05"])
@pytest.mark.parametrize("scaled", [False, True], ids=["outer-eta", "outer-eta-gamma"])
@pytest.mark.parametrize("convention", ["paper", "original"])
def test_trajectory_matches_hand_computation(convention, scaled, noise, nesterov):
    got = run(
        Problem(),
        convention=convention,
        outer_gamma_scaled=scaled,
        noise=noise,
        nesterov=nesterov,
    )
    want = reference(original=convention == "original", scaled=scaled, noise=noise,
                     nesterov=nesterov)  # fmt: skip
    close(got, want)
    # The same settings with the other convention or the other outer step differ visibly,
    # so the comparison above can tell them apart.
    other = reference(original=convention != "original", scaled=scaled, noise=noise,
                      nesterov=nesterov)  # fmt: skip
    assert far(want, other)
    assert far(want, reference(original=convention == "original", scaled=not scaled,
                               noise=noise, nesterov=nesterov))  # fmt: skip


@pytest.mark.parametrize("nesterov", [False, True], ids=["heavy-ball", "nesterov"])
def test_each_original_choice_shows_in_the_numbers(nesterov):
    """Flipping any one of (reset, coupling after momentum, √2 noise) changes the reference,
    so the optimizer matching the full "original" reference has all three. L = 3: with a reset
    heavy-ball buffer and L = 2 the coupling (zero at the first inner step, w' = w) enters the
    buffer only at the last step, where "through" and "after" the momentum coincide."""
    want = reference(original=True, scaled=False, noise=0.05, nesterov=nesterov, n_inner=3)
    got = run(Problem(), convention="original", noise=0.05, nesterov=nesterov, inner_steps=3)
    close(got, want)
    for flip in (dict(reset=False), dict(after=False), dict(noise_factor=1.0)):
        variant = reference(original=True, scaled=False, noise=0.05, nesterov=nesterov,
                            n_inner=3, **flip)  # fmt: skip
        assert far(want, variant), flip


def test_default_is_the_paper_algorithm_as_before():
    """No keyword: Algorithm 1 as printed (inner momentum kept, coupling through it, √η' ε)."""
    problem = Problem()
    opt = EntropySGD([problem.a, problem.b], **HP, noise=0.05, nesterov=True, seed=SEED)
    assert opt.defaults["convention"] == "paper" and opt.defaults["outer_gamma_scaled"] is False
    got = []
    for _ in range(N_OUTER):
        opt.step(problem.closure)
        got.append(problem.w())
    close(got, reference(original=False, scaled=False, noise=0.05, nesterov=True))
    explicit = run(Problem(), convention="paper", outer_gamma_scaled=False, noise=0.05,
                   nesterov=True)  # fmt: skip
    for g, e in zip(got, explicit, strict=True):
        assert np.array_equal(g, e)


def test_one_group_per_convention():
    """Group a follows "paper", group b "original" with the γ-scaled outer step; the noise is
    still one flat draw over both groups in order."""
    problem = Problem()
    groups = [
        {"params": [problem.a]},
        {"params": [problem.b], "convention": "original", "outer_gamma_scaled": True},
    ]
    opt = EntropySGD(groups, **HP, noise=0.05, seed=SEED)
    got = []
    for _ in range(N_OUTER):
        opt.step(problem.closure)
        got.append(problem.w())
    mask = np.array([False, False, True])
    close(got, reference(original=mask, scaled=mask, noise=0.05, nesterov=False))


def test_original_with_maximize_is_minimizing_the_negative():
    kwargs = dict(convention="original", outer_gamma_scaled=True, noise=0.05, nesterov=True)
    minimized = run(Problem(), **kwargs)
    maximized = run(Problem(sign=-1.0), maximize=True, **kwargs)
    close(maximized, minimized, atol=1e-14)
    close(minimized, reference(original=True, scaled=True, noise=0.05, nesterov=True))


def test_state_dict_round_trip_keeps_the_switches_and_the_trajectory():
    problem = Problem()
    kwargs = {**HP, "noise": 0.05, "nesterov": True, "seed": SEED}
    opt = EntropySGD([problem.a, problem.b], convention="original", outer_gamma_scaled=True,
                     **kwargs)  # fmt: skip
    opt.step(problem.closure)
    saved = copy.deepcopy(opt.state_dict())
    assert [(g["convention"], g["outer_gamma_scaled"]) for g in saved["param_groups"]] == [
        ("original", True)
    ]

    resumed = Problem()
    with torch.no_grad():
        resumed.a.copy_(problem.a)
        resumed.b.copy_(problem.b)
    resumed.calls = problem.calls
    fresh = EntropySGD([resumed.a, resumed.b], **kwargs)  # the defaults: "paper", False
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["convention"] == "original"
    assert fresh.param_groups[0]["outer_gamma_scaled"] is True
    opt.step(problem.closure)
    fresh.step(resumed.closure)
    assert np.array_equal(problem.w(), resumed.w())
    close([resumed.w()], reference(original=True, scaled=True, noise=0.05, nesterov=True)[1:])


def test_state_saved_before_the_switches_loads_as_paper():
    problem = Problem()
    opt = EntropySGD([problem.a, problem.b], **HP, seed=SEED)
    opt.step(problem.closure)
    old = copy.deepcopy(opt.state_dict())
    for group in old["param_groups"]:
        del group["convention"], group["outer_gamma_scaled"]
    other = Problem()
    loader = EntropySGD([other.a, other.b], **HP, seed=SEED, convention="original",
                        outer_gamma_scaled=True)  # fmt: skip
    loader.load_state_dict(old)
    assert loader.param_groups[0]["convention"] == "paper"
    assert loader.param_groups[0]["outer_gamma_scaled"] is False


@pytest.mark.parametrize("bad", ["ucla", "Paper", "", None, 1])
def test_bad_convention_is_refused(bad):
    problem = Problem()
    with pytest.raises(ValueError, match="Invalid convention"):
        EntropySGD([problem.a, problem.b], **HP, convention=bad)
    with pytest.raises(ValueError, match="Invalid convention"):
        EntropySGD([{"params": [problem.a], "convention": bad}], **HP)


@pytest.mark.parametrize("bad", [1, 0, "yes", None, 1.0])
def test_bad_outer_gamma_scaled_is_refused(bad):
    problem = Problem()
    with pytest.raises(ValueError, match="Invalid outer_gamma_scaled"):
        EntropySGD([problem.a, problem.b], **HP, outer_gamma_scaled=bad)


def test_switch_edited_to_a_bad_value_is_refused_before_anything_moves():
    problem = Problem()
    opt = EntropySGD([{"params": [problem.a], "convention": "original"}, {"params": [problem.b]}],
                     **HP, seed=SEED)  # fmt: skip
    opt.step(problem.closure)
    before = problem.w()
    inner_state = copy.deepcopy(opt.inner.state_dict())
    opt.param_groups[1]["convention"] = "ucla"
    with pytest.raises(ValueError, match="Invalid convention"):
        opt.step(problem.closure)
    assert np.array_equal(problem.w(), before)
    after = opt.inner.state_dict()
    assert after["state"].keys() == inner_state["state"].keys()
    for key, value in inner_state["state"].items():
        assert torch.equal(after["state"][key]["momentum_buffer"], value["momentum_buffer"])


def test_original_noise_is_sqrt_two_eta_eps():
    """With a zero loss and γ = α = 0, lr = 1: one inner step lands w on √(2η') ε ξ."""
    w = torch.nn.Parameter(torch.zeros(500, dtype=F64))
    eta_in, eps = 0.04, 0.5
    opt = EntropySGD([w], lr=1.0, inner_lr=eta_in, inner_steps=1, gamma=0.0, alpha=0.0,
                     noise=eps, seed=11, convention="original")  # fmt: skip

    def closure():
        loss = (w * 0).sum()
        loss.backward()
        return loss

    opt.step(closure)
    xi = torch.randn(500, generator=torch.Generator().manual_seed(11), dtype=F64)
    torch.testing.assert_close(w.detach(), math.sqrt(2 * eta_in) * eps * xi, rtol=1e-12, atol=0)
