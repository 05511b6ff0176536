"""The builder: everything a run needs from its config, built once."""

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from wideflat._bn import recompute_bn
from wideflat.experiments.build import EpochLR, as_float, build
from wideflat.experiments.presets import preset_config


def tiny(data_root, kind, **kw):
    base = dict(data_root=data_root, model="mlp", train_subset=0, epochs=1, batch_size=32,
                energy_epochs=(), train_eval_subset=64, eval_batch=64,
                gamma="exp:auto:x10")  # fmt: skip
    return preset_config("fashion-smallconvnet", kind, **{**base, **kw})


def test_rsgd_center_is_evaluated_with_recomputed_batchnorm_statistics(fashion_root):
    run = build(tiny(fashion_root, "rsgd", model="resnet20"), torch.device("cpu"))
    for step in (1, 2):
        run.probe.begin(step)
        run.step()
    evaluated = run.eval_model()
    averaged = run.opt.center()  # buffers averaged over replicas, not recomputed
    x = as_float(run.data.x, run.data.mean, run.data.std)
    expected = recompute_bn(run.opt.center(), [x[i : i + 64] for i in range(0, len(x), 64)])

    def stats(m):
        return [b.running_mean for b in m.modules() if isinstance(b, _BatchNorm)]

    assert stats(evaluated) and not torch.equal(stats(evaluated)[0], stats(averaged)[0])
    for got, want in zip(stats(evaluated), stats(expected), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_build_makes_schedulers_streams_and_the_step_once(fashion_root):
    cfg = tiny(fashion_root, "rsgd", y=2, lr_schedule="multistep:0.5")
    run = build(cfg, torch.device("cpu"))
    assert len(run.streams) == 2 and run.gamma_sched is not None
    assert isinstance(run.lr_sched, EpochLR)
    assert run.total_steps == cfg.epochs * run.epoch_steps
    lrs = []
    for step in range(1, run.epoch_steps + 1):
        lrs.append(run.opt.param_groups[0]["lr"])
        run.probe.begin(step)
        run.step()
        run.gamma_sched.step()
        run.lr_sched.step()
    half = run.epoch_steps / 2
    assert lrs == [cfg.lr if t < half else cfg.lr * 0.1 for t in range(run.epoch_steps)]
    sgd = build(tiny(fashion_root, "sgd"), torch.device("cpu"))
    assert len(sgd.streams) == 1 and sgd.gamma_sched is None
