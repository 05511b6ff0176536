"""Every registered optimizer builds and steps; unknown names list the known ones."""

import pytest
import torch
from _problems import LinearModel, Stream, mse

from wideflat.experiments import esgd_step, rsgd_step, sgd_step
from wideflat.optim import create_optimizer, list_optimizers

ARGS = {
    "sgd": dict(lr=0.1),
    "esgd": dict(lr=0.5, inner_lr=0.05, inner_steps=2),
    "rsgd": dict(lr=0.1, y=2, gamma=0.1, seed=0),
    "sam": dict(lr=0.1, rho=0.05),
}


@pytest.mark.parametrize("name", list_optimizers())
def test_every_registered_optimizer_builds_and_steps(name):
    model = LinearModel()
    opt = create_optimizer(model, name, **ARGS[name])
    stream = Stream(0)
    batches = iter(lambda: stream.batch(), None)

    def loss_fn(out, t):
        return ((out - t) ** 2).mean()

    before = [p.detach().clone() for p in model.parameters()]
    if name == "sgd":
        sgd_step(opt, model, loss_fn, batches)
    elif name == "sam":  # two passes on the same minibatch: a closure that re-evaluates it
        x, t = next(batches)

        def closure():
            loss = loss_fn(model(x), t)
            loss.backward()
            return loss

        opt.step(closure)
    elif name == "esgd":
        esgd_step(opt, model, loss_fn, batches)
    else:
        rsgd_step(opt, loss_fn, [batches, iter(lambda: Stream(1).batch(), None)])
    after = list(model.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
    assert mse(model, stream.batch()).isfinite()


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="known: " + ", ".join(list_optimizers())):
        create_optimizer(LinearModel(), "adamw")


@pytest.mark.parametrize("name", ["sgd", "esgd", "sam"])
def test_parameters_or_groups_work_like_the_model(name):
    torch.manual_seed(0)
    a, b = LinearModel(), LinearModel()
    b.load_state_dict(a.state_dict())
    from_model = create_optimizer(a, name, **ARGS[name])
    groups = [{"params": list(b.parameters())}]
    from_groups = create_optimizer(groups, name, **ARGS[name])
    assert type(from_model) is type(from_groups)
    assert from_model.param_groups[0]["lr"] == from_groups.param_groups[0]["lr"]


def test_rsgd_needs_the_module_itself():
    with pytest.raises(ValueError, match="needs the nn.Module itself"):
        create_optimizer(LinearModel().parameters(), "rsgd", **ARGS["rsgd"])


def test_the_old_argument_order_still_works_with_a_deprecation_warning():
    torch.manual_seed(0)
    model = LinearModel()
    with pytest.warns(DeprecationWarning, match="model first"):
        old = create_optimizer("sgd", model, lr=0.1)
    assert type(old) is torch.optim.SGD and old.param_groups[0]["params"][0] is next(
        model.parameters()
    )
