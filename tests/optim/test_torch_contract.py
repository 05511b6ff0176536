"""torch.optim's generic contract, one table over wideflat's optimizers.

In the spirit of PyTorch's own optimizer tests (``test/test_optim.py`` over
``torch/testing/_internal/common_optimizers.py``): every optimizer, with each engine,
against the situations a torch optimizer handles: no gradients at all, frozen parameters,
a state_dict saved before torch added a group key, complex parameters (supported or
refused cleanly), deepcopy and pickle, step hooks, ``maximize``, a tensor ``lr``,
``add_param_group`` and an empty parameter list.
"""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass, field

import pytest
import torch
from _problems import N_IN, N_OUT, LinearModel, Stream, assert_state_equal, full_loss, mse
from torch import nn
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from wideflat.optim import SAM, EntropySGD, ReplicatedSGD


@dataclass(frozen=True)
class Row:
    id: str
    kind: str  # "esgd" | "sam" | "rsgd"
    kwargs: dict
    xfail: dict = field(default_factory=dict)  # test name -> reason (a defect elsewhere)


ROWS = [
    Row(
        "esgd-sgd",
        "esgd",
        dict(
            lr=0.5,
            inner_lr=0.05,
            inner_steps=3,
            gamma=0.1,
            momentum=0.5,
            weight_decay=1e-3,
            noise=1e-3,
        ),
    ),
    Row(
        "esgd-adam-outer",
        "esgd",
        dict(lr=0.05, inner_lr=0.05, inner_steps=2, gamma=0.1, outer=torch.optim.Adam),
    ),
    Row("sam-sgd", "sam", dict(rho=0.05, lr=0.1, momentum=0.9, weight_decay=1e-3)),
    Row("asam-adam", "sam", dict(base=torch.optim.Adam, rho=0.5, adaptive=True, lr=0.02)),
    Row("rsgd-loop", "rsgd", dict(lr=0.05, y=3, gamma=0.3, momentum=0.9, engine="loop")),
    Row("rsgd-vmap", "rsgd", dict(lr=0.05, y=3, gamma=0.3, momentum=0.9, engine="vmap")),
]


def table(test_name: str):
    """The rows as pytest params; a row's known defect for this test is a strict xfail."""
    return pytest.mark.parametrize(
        "row",
        [
            pytest.param(
                r,
                id=r.id,
                marks=[pytest.mark.xfail(strict=True, reason=r.xfail[test_name])]
                if test_name in r.xfail
                else [],
            )
            for r in ROWS
        ],
    )


class Trainer:
    """One optimizer on one model, stepped on reproducible minibatches (a stream per replica)."""

    def __init__(self, row: Row, model=None, streams=None, params=None, **overrides):
        self.row = row
        self.model = model if model is not None else LinearModel()
        params = list(self.model.parameters()) if params is None else params
        kwargs = {**row.kwargs, **overrides}
        if row.kind == "esgd":
            self.opt = EntropySGD(params, seed=7, **kwargs)
        elif row.kind == "sam":
            self.opt = SAM(params, **kwargs)
        else:
            maximize = kwargs.pop("maximize", False)
            if maximize:
                kwargs["base_kwargs"] = {"maximize": True}
            self.opt = ReplicatedSGD(self.model, seed=7, **kwargs)
        n_streams = self.opt.y if row.kind == "rsgd" else 1
        if streams is None:
            streams = [Stream(50 + a) for a in range(n_streams)]
        self.streams = streams

    def modules(self) -> list[nn.Module]:
        return list(self.opt.replicas) if self.row.kind == "rsgd" else [self.model]

    def params(self) -> list[torch.Tensor]:
        return [p.detach().clone() for m in self.modules() for p in m.parameters()]

    def loss(self) -> float:
        return sum(full_loss(m) for m in self.modules()) / len(self.modules())

    def step(self, *, backward: bool = True, loss_fn=mse):
        def finish(loss):
            if backward:
                loss.sum().backward()
            return loss.detach()

        if self.row.kind == "esgd":
            return self.opt.step(lambda: finish(loss_fn(self.model, self.streams[0].batch())))
        if self.row.kind == "sam":
            batch = self.streams[0].batch()  # the same minibatch for both calls
            return self.opt.step(lambda: finish(loss_fn(self.model, batch)))
        if self.opt.engine == "vmap":
            batches = [s.batch() for s in self.streams]
            replicas = self.opt.replicas

            def per_replica(out, t):  # loss_fn(module, (x, t)) on an output already computed
                return loss_fn(lambda _: out, (None, t))

            return self.opt.step(lambda: finish(replicas.losses(batches, per_replica)))
        return self.opt.step(
            lambda a: finish(loss_fn(self.opt.replicas[a], self.streams[a].batch()))
        )

    def twin(self) -> Trainer:
        """A new optimizer (no state) on copies of the current weights and streams."""
        other = Trainer(self.row, copy.deepcopy(self.model), copy.deepcopy(self.streams))
        if self.row.kind == "rsgd":  # every replica, not only the one built from the model
            other.opt.replicas.load_state_dict(self.opt.replicas.state_dict())
        return other


def assert_same(a: Trainer, b: Trainer) -> None:
    for p, q in zip(a.params(), b.params(), strict=True):
        assert torch.equal(p, q)


@table("no_grads")
def test_a_step_without_any_gradient_changes_nothing(row):
    """torch: params without .grad are skipped (test_step_is_noop_when_params_have_no_grad)."""
    t = Trainer(row)
    before = t.params()
    for _ in range(2):
        t.step(backward=False)
    for p, q in zip(before, t.params(), strict=True):
        assert torch.equal(p, q)


@table("frozen")
def test_a_frozen_parameter_is_never_changed(row):
    model = LinearModel()
    model.bias.requires_grad_(False)
    t = Trainer(row, model)
    biases = [m.bias.detach().clone() for m in t.modules()]
    weights = [m.weight.detach().clone() for m in t.modules()]
    for _ in range(3):
        t.step()
    for m, b, w in zip(t.modules(), biases, weights, strict=True):
        assert torch.equal(m.bias, b)
        assert not torch.equal(m.weight, w)


LATER_KEYS = ("maximize", "foreach", "fused", "differentiable")


def _strip_later_keys(sd):
    """A state_dict as saved by a torch without these group keys (recursively, nested too)."""
    if isinstance(sd, dict):
        out = {k: _strip_later_keys(v) for k, v in sd.items()}
        if isinstance(out.get("param_groups"), list):
            out["param_groups"] = [
                {k: v for k, v in g.items() if k not in LATER_KEYS} for g in out["param_groups"]
            ]
        return out
    return sd


@table("old_state_dict")
def test_a_state_dict_without_later_added_group_keys_loads_and_steps_the_same(row):
    t = Trainer(row)
    for _ in range(2):
        t.step()
    old = _strip_later_keys(copy.deepcopy(t.opt.state_dict()))
    assert "maximize" not in old["param_groups"][0]
    twin = t.twin()
    twin.opt.load_state_dict(old)
    for _ in range(3):
        t.step()
        twin.step()
        assert_same(t, twin)


class ComplexLinear(nn.Module):
    """f(x) = |x z| (z complex); with ``as_real`` z is stored as its (..., 2) real view."""

    def __init__(self, *, as_real: bool):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        z = torch.randn(N_IN, N_OUT, dtype=torch.cfloat, generator=g)
        self.as_real = as_real
        self.z = nn.Parameter(torch.view_as_real(z).clone() if as_real else z)

    def forward(self, x):
        z = torch.view_as_complex(self.z) if self.as_real else self.z
        return (x.to(z.dtype) @ z).abs()


@table("complex")
def test_complex_parameters_step_as_their_real_view_or_are_refused(row):
    """torch treats a complex parameter as its real view (test_complex_2d)."""
    if row.kind != "sam":  # refused cleanly, naming the parameter
        with pytest.raises(ValueError, match="Invalid param 0: complex"):
            Trainer(row, ComplexLinear(as_real=False))
        return
    c, r = Trainer(row, ComplexLinear(as_real=False)), Trainer(row, ComplexLinear(as_real=True))
    for _ in range(4):
        c.step()
        r.step()
        # torch's own complex kernels differ from the real ones in the last bit
        torch.testing.assert_close(
            torch.view_as_real(c.model.z.detach()), r.model.z.detach(), rtol=1e-6, atol=1e-6
        )


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@table("copy")
def test_a_copy_steps_exactly_like_the_original(row, how):
    t = Trainer(row)
    for _ in range(2):
        t.step()
    twin = copy.deepcopy(t) if how == "deepcopy" else pickle.loads(pickle.dumps(t))
    assert_state_equal(t.opt.state_dict(), twin.opt.state_dict())
    for _ in range(3):
        t.step()
        twin.step()
        assert_same(t, twin)
    assert_state_equal(t.opt.state_dict(), twin.opt.state_dict())


@table("hooks")
def test_global_and_local_step_hooks_fire_once_per_step(row):
    t = Trainer(row)
    seen = []
    handles = [
        register_optimizer_step_pre_hook(lambda opt, *_: seen.append(("global-pre", opt))),
        register_optimizer_step_post_hook(lambda opt, *_: seen.append(("global-post", opt))),
        t.opt.register_step_pre_hook(lambda opt, *_: seen.append(("pre", opt))),
        t.opt.register_step_post_hook(lambda opt, *_: seen.append(("post", opt))),
    ]
    try:
        for _ in range(2):
            t.step()
    finally:
        for h in handles:
            h.remove()
    order = ["global-pre", "pre", "post", "global-post"]  # torch's order
    assert [name for name, _ in seen] == order * 2
    assert all(opt is t.opt for _, opt in seen)


@table("maximize")
def test_maximize_goes_the_other_way(row):
    """The loss falls; with maximize=True it rises (torch's test_forloop_goes_right_direction)."""
    down, up = Trainer(row), Trainer(row, maximize=True)
    start = down.loss()
    for _ in range(10):
        down.step()
        up.step()
    assert down.loss() < start < up.loss()


@table("tensor_lr")
def test_a_tensor_lr_steps_like_the_float(row):
    lrs = {k: torch.tensor(row.kwargs[k]) for k in ("lr", "inner_lr") if k in row.kwargs}
    plain, tensor = Trainer(row), Trainer(row, **lrs)
    for _ in range(3):
        plain.step()
        tensor.step()
        # the same up to rounding: Adam's tensor-lr path orders its operations differently
        for p, q in zip(plain.params(), tensor.params(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


@table("add_param_group")
def test_add_param_group_unfreezes_like_a_frozen_parameter_or_is_refused(row):
    """Progressive unfreezing: the bias joins after 2 steps, as if it had been frozen."""
    late = LinearModel()
    if row.kind == "rsgd":
        t = Trainer(row, late)
        with pytest.raises(ValueError, match="Invalid add_param_group"):
            t.opt.add_param_group({"params": [t.model.bias]})
        return
    frozen = LinearModel()
    frozen.bias.requires_grad_(False)
    a, b = Trainer(row, frozen), Trainer(row, late, params=[late.weight])
    for step in range(5):
        if step == 2:
            frozen.bias.requires_grad_(True)
            b.opt.add_param_group({"params": [late.bias]})
        a.step()
        b.step()
        assert_same(a, b)
    assert not torch.equal(late.bias, LinearModel().bias)


@table("empty")
def test_an_empty_parameter_list_is_refused(row):
    with pytest.raises(ValueError, match="empty parameter list"):
        if row.kind == "esgd":
            EntropySGD([], **row.kwargs)
        elif row.kind == "sam":
            SAM([], **row.kwargs)
        else:
            ReplicatedSGD(nn.ReLU(), **row.kwargs)
