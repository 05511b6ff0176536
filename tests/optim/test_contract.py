"""The torch.optim contract, checked over one table of optimizer configurations."""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field

import pytest
import torch
from _problems import LinearModel, Stream, assert_state_equal, full_loss, mse

from wideflat.optim import (
    ConstantGamma,
    CosineGamma,
    EntropySGD,
    ExponentialGamma,
    ReplicatedSGD,
)


@dataclass(frozen=True)
class Config:
    id: str
    kind: str  # "esgd" | "rsgd"
    kwargs: dict = field(default_factory=dict)
    schedule: str = "constant"  # "constant" | "exponential" | "cosine"


CONFIGS = [
    Config("esgd-L1-plain", "esgd", dict(lr=1.0, inner_lr=0.3, inner_steps=1, gamma=0.1)),
    Config(
        "esgd-L5-momentum-wd",
        "esgd",
        dict(lr=0.5, inner_lr=0.05, inner_steps=5, gamma=0.1, momentum=0.5, weight_decay=5e-4),
    ),
    Config(
        "esgd-L5-nesterov-exp",
        "esgd",
        dict(lr=0.5, inner_lr=0.02, inner_steps=5, gamma=0.1, momentum=0.9, nesterov=True),
        "exponential",
    ),
    Config(
        "esgd-L1-nesterov-wd-cos",
        "esgd",
        dict(
            lr=1.0,
            inner_lr=0.3,
            inner_steps=1,
            gamma=0.1,
            momentum=0.5,
            nesterov=True,
            weight_decay=5e-4,
        ),
        "cosine",
    ),
    Config("rsgd-y1-momentum", "rsgd", dict(lr=0.05, y=1, gamma=0.1, momentum=0.9)),
    Config("rsgd-y3-plain-K3", "rsgd", dict(lr=0.05, y=3, gamma=0.5, coupling_every=3)),
    Config(
        "rsgd-y3-nesterov-wd-exp",
        "rsgd",
        dict(lr=0.05, y=3, gamma=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
        "exponential",
    ),
    Config(
        "esgd-adam-outer-sgd-inner",
        "esgd",
        dict(lr=0.05, inner_lr=0.05, inner_steps=3, gamma=0.1, outer=torch.optim.Adam),
    ),
    Config(
        "rsgd-y3-vmap-nesterov-K2-exp",
        "rsgd",
        dict(lr=0.05, y=3, gamma=0.1, coupling_every=2, momentum=0.9, nesterov=True, engine="vmap"),
        "exponential",
    ),
    Config("rsgd-y3-adam", "rsgd", dict(lr=0.05, y=3, gamma=0.1, base=torch.optim.Adam)),
    Config(
        "rsgd-y3-momentum-K4-cos",
        "rsgd",
        dict(lr=0.05, y=3, gamma=0.5, coupling_every=4, momentum=0.9),
        "cosine",
    ),
]
IDS = [c.id for c in CONFIGS]


class Run:
    """A model, its optimizer, its minibatch streams and its γ scheduler, stepped together."""

    def __init__(self, cfg: Config, *, contiguous: bool = True, model=None, streams=None):
        self.cfg = cfg
        if cfg.kind == "esgd":
            self.model = model if model is not None else LinearModel(contiguous=contiguous)
            self.opt = EntropySGD(self.model.parameters(), seed=7, **cfg.kwargs)
            n_streams = 1
        else:
            base = model if model is not None else LinearModel(contiguous=contiguous)
            self.opt = ReplicatedSGD(base, seed=7, **cfg.kwargs)
            self.model = self.opt.replicas
            n_streams = self.opt.y
        self.streams = (
            streams if streams is not None else [Stream(100 + a) for a in range(n_streams)]
        )
        self.sched = {
            "constant": lambda: ConstantGamma(self.opt),
            "exponential": lambda: ExponentialGamma(self.opt, growth=10.0, steps=20),
            "cosine": lambda: CosineGamma(self.opt, gamma_max=cfg.kwargs["gamma"], steps=20),
        }[cfg.schedule]()

    def closure(self):
        if self.cfg.kind == "esgd":

            def closure():
                loss = mse(self.model, self.streams[0].batch())
                loss.backward()
                return loss

        else:

            def closure(a):
                loss = mse(self.opt.replicas[a], self.streams[a].batch())
                loss.backward()
                return loss

        return closure

    def step(self):
        if self.cfg.kwargs.get("engine") == "vmap":  # one minibatch per replica, batched
            batches = [s.batch() for s in self.streams]
            loss = self.opt.step_batches(batches, lambda out, t: ((out - t) ** 2).mean())
        else:
            loss = self.opt.step(self.closure())
        self.sched.step()
        return loss

    def params(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.model.parameters()]

    def loss(self) -> float:
        if self.cfg.kind == "esgd":
            return full_loss(self.model)
        return sum(full_loss(r) for r in self.opt.replicas) / self.opt.y

    def fresh(self, *, load: bool) -> Run:
        """A new run on clones of the current weights and streams; optionally resumed."""
        model = copy.deepcopy(self.model if self.cfg.kind == "esgd" else self.opt.replicas[0])
        other = Run(self.cfg, model=model, streams=copy.deepcopy(self.streams))
        if self.cfg.kind == "rsgd":  # clone every replica, not only replica 0
            other.opt.replicas.load_state_dict(self.opt.replicas.state_dict())
        if load:
            other.opt.load_state_dict(copy.deepcopy(self.opt.state_dict()))
            other.sched.load_state_dict(copy.deepcopy(self.sched.state_dict()))
        return other


LR_SCHEDULERS = {
    "none": None,
    "step": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5),
    "cosine": lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20),
    "plateau": lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=2),
}


@pytest.mark.parametrize("contiguous", [True, False], ids=["contiguous", "noncontiguous"])
@pytest.mark.parametrize("lr_sched", list(LR_SCHEDULERS))
@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_loss_goes_down(cfg, lr_sched, contiguous):
    run = Run(cfg, contiguous=contiguous)
    assert run.model.weight.is_contiguous() == contiguous if cfg.kind == "esgd" else True
    sched = LR_SCHEDULERS[lr_sched](run.opt) if LR_SCHEDULERS[lr_sched] else None
    before = run.loss()
    for _ in range(20):
        loss = run.step()
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(float(loss.detach()))
        elif sched is not None:
            sched.step()
    after = run.loss()
    assert after < 0.8 * before, (before, after)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_resume_is_bit_identical_and_cold_start_differs(cfg):
    run = Run(cfg)
    for _ in range(10):
        run.step()
    resumed = run.fresh(load=True)
    cold = run.fresh(load=False)
    for step in range(10):
        run.step()
        resumed.step()
        cold.step()
        for p, q in zip(run.params(), resumed.params(), strict=True):
            assert torch.equal(p, q), f"step {step}"
    assert_state_equal(run.opt.state_dict(), resumed.opt.state_dict())
    assert run.sched.state_dict() == resumed.sched.state_dict()
    assert any(not torch.equal(p, q) for p, q in zip(run.params(), cold.params(), strict=True))


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_state_dict_survives_weights_only_load(cfg):
    run = Run(cfg)
    for _ in range(3):
        run.step()
    buf = io.BytesIO()
    torch.save(run.opt.state_dict(), buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    assert_state_equal(run.opt.state_dict(), loaded)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_deepcopy_is_independent(cfg):
    run = Run(cfg)
    for _ in range(3):
        run.step()
    twin = copy.deepcopy(run)
    assert_state_equal(run.opt.state_dict(), twin.opt.state_dict())
    original_params = run.params()
    original_state = copy.deepcopy(run.opt.state_dict())
    twin_params = []
    for _ in range(10):
        twin.step()
        twin_params.append(twin.params())
    for p, q in zip(original_params, run.params(), strict=True):
        assert torch.equal(p, q)
    assert_state_equal(original_state, run.opt.state_dict())
    for step in range(10):  # the copy stepped exactly as the original now does
        run.step()
        for p, q in zip(run.params(), twin_params[step], strict=True):
            assert torch.equal(p, q)


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_repr_names_the_class_and_hyperparameters(cfg):
    text = repr(Run(cfg).opt)
    assert type(Run(cfg).opt).__name__ in text
    assert "gamma" in text and "lr" in text


@pytest.mark.parametrize("cfg", CONFIGS, ids=IDS)
def test_float32_state_is_cast_into_float64_params(cfg):
    run = Run(cfg)
    for _ in range(3):
        run.step()
    sd = run.opt.state_dict()
    sd_copy = copy.deepcopy(sd)
    twin = run.fresh(load=False)
    twin.model.double()
    twin.opt.load_state_dict(sd)
    nested = [getattr(twin.opt, name, None) for name in ("outer", "inner", "base")]
    states = [twin.opt.state] + [o.state for o in nested if o is not None]
    for state in (s for st in states for s in st.values()):
        for key, value in state.items():
            # torch's policy: every floating state follows the param dtype except "step"
            if isinstance(value, torch.Tensor) and value.is_floating_point() and key != "step":
                assert value.dtype == torch.float64, key
    assert_state_equal(sd, sd_copy)  # the input state_dict is not modified
