"""SAM: ρ = 0 is the base optimizer bit for bit, a hand-computed step, state round trip, errors."""

import copy
import io
import math
import pickle

import pytest
import torch

from wideflat.optim import SAM, MissingClosureError, NonFiniteLossError, create_optimizer


def _net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def _batches(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 5, generator=g), torch.randn(16, 2, generator=g)) for _ in range(n)]


def _closure(model, x, t):
    def closure():
        loss = torch.nn.functional.mse_loss(model(x), t)
        loss.backward()
        return loss

    return closure


def test_rho_zero_is_the_base_optimizer_bit_for_bit():
    kw = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    a, b = _net(), _net()
    sam = SAM(a.parameters(), torch.optim.SGD, rho=0.0, **kw)
    sgd = torch.optim.SGD(b.parameters(), **kw)
    for x, t in _batches():
        sam.step(_closure(a, x, t))
        sgd.zero_grad()
        _closure(b, x, t)()
        sgd.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_one_step_on_a_quadratic_matches_the_hand_computation():
    # L(w) = ½ wᵀ A w, A = diag(1, 3), w = (1, 2): g = (1, 6), ‖g‖ = √37.
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    a = torch.tensor([1.0, 3.0], dtype=torch.float64)
    rho, lr = 0.1, 0.05
    opt = SAM([w], torch.optim.SGD, rho=rho, lr=lr)

    def closure():
        loss = 0.5 * (a * w * w).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    g = torch.tensor([1.0, 6.0], dtype=torch.float64)
    w_adv = torch.tensor([1.0, 2.0], dtype=torch.float64) + rho * g / math.sqrt(37.0)
    expected = torch.tensor([1.0, 2.0], dtype=torch.float64) - lr * a * w_adv
    assert float(loss.detach()) == pytest.approx(0.5 * (1 + 12))
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-12)


def test_adaptive_step_on_a_quadratic_matches_the_hand_computation():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    a = torch.tensor([1.0, 3.0], dtype=torch.float64)
    opt = SAM([w], torch.optim.SGD, rho=0.5, adaptive=True, lr=0.1)

    def closure():
        loss = 0.5 * (a * w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    g = a * w0
    eps = 0.5 * w0**2 * g / torch.linalg.vector_norm(w0.abs() * g)
    torch.testing.assert_close(w.detach(), w0 - 0.1 * a * (w0 + eps), rtol=0, atol=1e-12)


def test_state_dict_round_trip_continues_in_lockstep():
    kw = dict(lr=0.05, momentum=0.9, weight_decay=1e-4)
    batches = _batches(8)
    a = _net()
    opt_a = SAM(a.parameters(), torch.optim.SGD, rho=0.05, **kw)
    for x, t in batches[:4]:
        opt_a.step(_closure(a, x, t))
    buf = io.BytesIO()
    torch.save({"model": a.state_dict(), "opt": opt_a.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    assert saved["opt"]["state"], "the base optimizer's momentum must be in the state_dict"
    b = _net(seed=99)
    b.load_state_dict(saved["model"])
    opt_b = SAM(b.parameters(), torch.optim.SGD, rho=0.05, **kw)
    opt_b.load_state_dict(saved["opt"])
    assert opt_b.base.state is opt_b.state and opt_b.base.param_groups is opt_b.param_groups
    for x, t in batches[4:]:
        opt_a.step(_closure(a, x, t))
        opt_b.step(_closure(b, x, t))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_errors_name_the_problem_and_leave_parameters_untouched():
    model = _net()
    with pytest.raises(ValueError, match="Invalid rho: -1"):
        SAM(model.parameters(), rho=-1, lr=0.1)
    opt = SAM(model.parameters(), rho=0.05, lr=0.1)
    with pytest.raises(MissingClosureError):
        opt.step()
    before = [p.detach().clone() for p in model.parameters()]
    x, t = _batches(1)[0]
    calls = []

    def second_pass_nan():
        calls.append(1)
        loss = torch.nn.functional.mse_loss(model(x), t) * (math.nan if len(calls) == 2 else 1)
        loss.backward()
        return loss

    with pytest.raises(NonFiniteLossError, match="w \\+ eps"):
        opt.step(second_pass_nan)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_registered_and_lowers_the_loss():
    model = _net()
    opt = create_optimizer(model, "sam", lr=0.1, rho=0.05, momentum=0.9)
    x, t = _batches(1)[0]
    first = float(opt.step(_closure(model, x, t)))
    for _ in range(20):
        last = float(opt.step(_closure(model, x, t)))
    assert last < first
    assert "SAM(base=SGD" in repr(opt)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copy_keeps_its_base_optimizer_and_steps_like_the_original(how):
    model = _net()
    opt = SAM(model.parameters(), rho=0.05, lr=0.1, momentum=0.9)
    batches = _batches(5)
    for x, t in batches[:2]:
        opt.step(_closure(model, x, t))
    pair = (
        copy.deepcopy((model, opt))
        if how == "deepcopy"
        else pickle.loads(pickle.dumps((model, opt)))
    )
    model_c, opt_c = pair
    assert opt_c.base.param_groups is opt_c.param_groups and opt_c.base.state is opt_c.state
    assert next(iter(opt_c.state.values()))["momentum_buffer"] is not None
    for x, t in batches[2:]:
        opt.step(_closure(model, x, t))
        opt_c.step(_closure(model_c, x, t))
    for p, q in zip(model.parameters(), model_c.parameters(), strict=True):
        assert torch.equal(p, q)


def test_two_param_groups_share_one_global_perturbation_norm():
    """Foret et al.: ε = ρ g / ‖g‖ with one norm over all parameters, however grouped."""
    kw = dict(rho=0.1, lr=0.1, momentum=0.9)
    one, two = _net(), _net()
    opt_one = SAM(one.parameters(), **kw)
    opt_two = SAM([{"params": two[0].parameters()}, {"params": two[2].parameters()}], **kw)
    for x, t in _batches(4):
        opt_one.step(_closure(one, x, t))
        opt_two.step(_closure(two, x, t))
    for p, q in zip(one.parameters(), two.parameters(), strict=True):
        assert torch.equal(p, q)


def test_maximize_is_minimizing_the_negated_loss_bit_for_bit():
    """maximize=True on L ≡ minimizing −L: the perturbation goes to the lowest point."""
    up, down = _net(), _net()
    opt_up = SAM(up.parameters(), rho=0.05, lr=0.05, momentum=0.9, maximize=True)
    opt_down = SAM(down.parameters(), rho=0.05, lr=0.05, momentum=0.9)
    for x, t in _batches(4):
        opt_up.step(_closure(up, x, t))

        def negated(x=x, t=t):
            loss = -torch.nn.functional.mse_loss(down(x), t)
            loss.backward()
            return loss

        opt_down.step(negated)
    for p, q in zip(up.parameters(), down.parameters(), strict=True):
        assert torch.equal(p, q)


def test_nan_gradient_at_the_perturbed_point_changes_nothing():
    model = _net()
    opt = SAM(model.parameters(), rho=0.05, lr=0.1, momentum=0.9)
    x, t = _batches(1)[0]
    opt.step(_closure(model, x, t))  # some momentum first
    before = [p.detach().clone() for p in model.parameters()]
    state = copy.deepcopy(opt.state_dict())
    calls = []

    def closure():
        calls.append(1)
        loss = torch.nn.functional.mse_loss(model(x), t)
        loss.backward()
        if len(calls) == 2:
            model[0].bias.grad[0] = float("nan")  # injected: the loss stays finite
        return loss

    with pytest.raises(NonFiniteLossError, match="non-finite gradient at w \\+ eps"):
        opt.step(closure)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    after = opt.state_dict()
    for key, value in state["state"].items():
        assert torch.equal(value["momentum_buffer"], after["state"][key]["momentum_buffer"])


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_closure_raising_at_the_perturbed_point_restores_w(exc):
    model = _net()
    opt = SAM(model.parameters(), rho=0.5, lr=0.1)
    x, t = _batches(1)[0]
    before = [p.detach().clone() for p in model.parameters()]
    calls = []

    def closure():
        calls.append(1)
        if len(calls) == 2:
            raise exc("interrupted")
        loss = torch.nn.functional.mse_loss(model(x), t)
        loss.backward()
        return loss

    with pytest.raises(exc, match="interrupted"):
        opt.step(closure)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("adaptive", [False, True])
def test_first_and_second_step_give_the_closure_step_bit_for_bit(adaptive):
    a, b = _net(), _net()
    b.load_state_dict(a.state_dict())
    kw = dict(rho=0.05, adaptive=adaptive, lr=0.1, momentum=0.9, weight_decay=1e-3)
    one, two = SAM(a.parameters(), **kw), SAM(b.parameters(), **kw)
    for x, t in _batches(4):
        one.step(_closure(a, x, t))
        torch.nn.functional.mse_loss(b(x), t).backward()
        two.first_step(zero_grad=True)
        torch.nn.functional.mse_loss(b(x), t).backward()
        two.second_step(zero_grad=True)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert all(p.grad is None for p in b.parameters())


def test_two_call_form_is_guarded():
    model = _net()
    opt = SAM(model.parameters(), rho=0.05, lr=0.1)
    x, t = _batches(1)[0]
    with pytest.raises(RuntimeError, match="without first_step"):
        opt.second_step()
    w = [p.detach().clone() for p in model.parameters()]
    torch.nn.functional.mse_loss(model(x), t).backward()
    opt.first_step()
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), w, strict=True))
    for call in (opt.first_step, opt.state_dict, lambda: opt.step(_closure(model, x, t))):
        with pytest.raises(RuntimeError, match="first_step|second_step"):
            call()
    for p in model.parameters():  # a NaN gradient at w + eps: back to w, no step
        p.grad = torch.full_like(p, float("nan"))
    with pytest.raises(NonFiniteLossError, match="w is restored"):
        opt.second_step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), w, strict=True))
    opt.state_dict()  # usable again
