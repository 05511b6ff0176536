"""The run config: field bounds, schedule strings parsed once, the LR schedule and its torch
scheduler (bit for bit the same values), budget rescaling."""

import dataclasses

import pytest
import torch

from wideflat.experiments.build import EpochLR, steps_per_epoch
from wideflat.experiments.config import TrainConfig, lr_at
from wideflat.experiments.presets import preset_config
from wideflat.experiments.schedules import parse_gamma, parse_lr_schedule


def test_budget_rescaling_gives_every_method_the_same_gradients_per_epoch():
    batches = 78
    per_epoch = {}
    for kind in ("sgd", "esgd", "rsgd", "sam", "rsgdxy"):
        cfg = preset_config("fashion-smallconvnet", kind, inner_steps=3, y=3)
        per_epoch[kind] = steps_per_epoch(cfg, batches) * cfg.grad_evals_per_step
    assert per_epoch == {"sgd": 78, "esgd": 78, "rsgd": 78, "sam": 78, "rsgdxy": 234}
    cfg = preset_config("fashion-smallconvnet", "esgd", inner_steps=5)
    assert steps_per_epoch(cfg, batches) == 15  # 78 // 5: whole steps, the rest dropped


def test_lr_schedules_and_warmup():
    cfg = TrainConfig(lr=0.1, epochs=10, lr_schedule="cosine")
    assert lr_at(cfg, 0) == pytest.approx(0.1) and lr_at(cfg, 5) == pytest.approx(0.05)
    assert lr_at(cfg, 10) == pytest.approx(0.0, abs=1e-12)
    cfg = TrainConfig(lr=0.01, epochs=10, lr_schedule="exponential:2:0.97")
    assert lr_at(cfg, 3.9) == pytest.approx(0.0097) and lr_at(cfg, 4) == pytest.approx(
        0.01 * 0.97**2
    )
    cfg = TrainConfig(lr=0.1, epochs=10, warmup_epochs=1, warmup_lr=0.01, lr_schedule="multistep:5")
    assert lr_at(cfg, 0) == pytest.approx(0.01) and lr_at(cfg, 0.5) == pytest.approx(0.055)
    assert lr_at(cfg, 1) == pytest.approx(0.1) and lr_at(cfg, 5) == pytest.approx(0.01)


def _reference_lr(cfg: TrainConfig, epoch: float) -> float:
    """The LR exactly as the runner computed it before the schedule became a scheduler
    (re-parsing the string), kept here to pin the values bit for bit."""
    import math

    spec = parse_lr_schedule(cfg.lr_schedule)
    if spec.kind == "multistep":
        factor = spec.factor ** sum(epoch >= m for m in spec.milestones)
    elif spec.kind == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * min(epoch / cfg.epochs, 1.0)))
    elif spec.kind == "exponential":
        factor = spec.factor ** math.floor(epoch / spec.every)
    else:
        factor = 1.0
    lr = cfg.lr * factor
    if epoch < cfg.warmup_epochs:
        lr = cfg.warmup_lr + (lr - cfg.warmup_lr) * epoch / cfg.warmup_epochs
    return lr


@pytest.mark.parametrize(
    "changes",
    [
        {"lr_schedule": "multistep:3,7:0.3"},
        {"lr_schedule": "cosine", "warmup_epochs": 1.5, "warmup_lr": 0.003},
        {"lr_schedule": "exponential:0.7:0.93"},
        {"lr_schedule": "constant", "warmup_epochs": 2.0, "warmup_lr": 0.2},
    ],
)
def test_the_lr_scheduler_gives_the_schedule_bit_for_bit_and_resumes(changes):
    cfg = TrainConfig(lr=0.07, epochs=10, **changes)
    steps_per_epoch_, steps = 13, 130
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    sched = EpochLR(opt, lambda e: lr_at(cfg, e), steps_per_epoch_)
    seen = []
    for t in range(steps):
        seen.append(opt.param_groups[0]["lr"])
        assert sched.get_last_lr() == [seen[-1]]
        opt.step()
        sched.step()
        if t == 60:
            state = sched.state_dict()
    assert seen == [_reference_lr(cfg, t / steps_per_epoch_) for t in range(steps)]  # exact
    # Resume: built before loading, then loaded; or (an old checkpoint) placed by the step.
    for load in (True, False):
        opt2 = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=cfg.lr)
        again = EpochLR(opt2, lambda e: lr_at(cfg, e), steps_per_epoch_)
        if load:
            again.load_state_dict(torch.load(_saved(state), weights_only=True))
        again.seek(61)
        assert opt2.param_groups[0]["lr"] == seen[61] and again.get_last_lr() == [seen[61]]
        opt2.step()
        again.step()
        assert opt2.param_groups[0]["lr"] == seen[62]


def _saved(state: dict):
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return buf


def test_schedule_strings_are_parsed_once_and_kept():
    cfg = TrainConfig(method="rsgd", lr_schedule="multistep:3,6", gamma="exp:0.1:x10")
    assert cfg.lr_spec == parse_lr_schedule("multistep:3,6")
    assert cfg.gamma_spec == parse_gamma("exp:0.1:x10")
    assert "lr_spec" not in cfg.to_dict() and "gamma_spec" not in cfg.to_dict()
    assert cfg.replace(lr_schedule="cosine").lr_spec.kind == "cosine"


@pytest.mark.parametrize(
    "text", ["exp:abc:x10", "exp:0.1", "cos:1", "exp:-1:x10", "exp:0.1:x0", "const:", ""]
)
def test_bad_gamma_schedules_name_the_string(text):
    with pytest.raises(ValueError, match="Invalid gamma schedule"):
        parse_gamma(text)


@pytest.mark.parametrize("text", ["multistep:20,10", "multistep:", "exponential:0:0.9", "step"])
def test_bad_lr_schedules_name_the_string(text):
    with pytest.raises(ValueError, match="Invalid lr schedule"):
        parse_lr_schedule(text)


def test_esgd_with_a_non_sgd_base_is_refused():
    with pytest.raises(ValueError, match="Invalid optimizer: 'adam' with esgd"):
        TrainConfig(method="esgd", optimizer="adam", nesterov=False)


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(TrainConfig)])
def test_every_config_field_is_type_checked(field):
    with pytest.raises(ValueError, match=f"^Invalid {field}: "):
        TrainConfig(**{field: {"a": "dict"}})


@pytest.mark.parametrize("field", dataclasses.fields(TrainConfig), ids=lambda f: f.name)
def test_every_field_declares_its_bound_beside_it(field):
    assert callable(field.metadata["check"])


@pytest.mark.parametrize(
    "changes",
    [{"lr": 1e39}, {"weight_decay": 1e300}, {"momentum": 3.5e38}, {"energy_sigmas": (0.0, 1e39)}],
)
def test_finite_values_that_overflow_float32_are_refused(changes):
    field = next(iter(changes))
    with pytest.raises(ValueError, match=f"Invalid {field}: .*float32"):
        TrainConfig(**changes)
    TrainConfig(lr=3e38, momentum=0.9)  # the float32 range itself is fine


@pytest.mark.parametrize("text", ["const:1e300", "exp:0.1:x1e39", "exp:1e39:0.1"])
def test_gamma_schedules_past_float32_are_refused(text):
    with pytest.raises(ValueError, match="Invalid gamma schedule: .*float32"):
        parse_gamma(text)


def test_seed_range_is_named():
    with pytest.raises(
        ValueError, match=r"Invalid seed: 9223372036854775808 .*\[0, 9223372036854775807\]"
    ):
        TrainConfig(seed=2**63)
    TrainConfig(seed=2**63 - 1)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"alpha": 1.5}, r"Invalid alpha: 1.5 \(expected a finite number in \[0.0, 1.0\]\)"),
        ({"energy_epochs": (11,)}, r"each an integer in \[0, 10\]"),
        ({"lr": 0.0}, r"Invalid lr: 0.0 \(expected a number > 0.0\)"),
        ({"autoaugment": "x"}, "Invalid autoaugment: 'x'"),
        ({"budget": "per-replica"}, "applies to rsgd only"),
        ({"momentum": 0.0}, "Invalid nesterov: True needs momentum > 0"),
    ],
)
def test_bounds_and_cross_field_rules_name_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)
