"""GPU-only checks (skipped without CUDA): run by benchmarks/device_checks.sh on a lent GPU."""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "replicas"))
from _engine_problem import HYPER, SEED, Y, make_data, make_model  # noqa: E402

from wideflat.data import Augment, replica_streams  # noqa: E402
from wideflat.optim import EntropySGD, ReplicatedSGD  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def train_on(device, engine: str, steps: int = 50) -> ReplicatedSGD:
    opt = ReplicatedSGD(make_model().to(device), y=Y, engine=engine, seed=SEED, **HYPER)
    x, t = (v.to(device) for v in make_data())
    streams = replica_streams(x, t, 16, replicas=opt.replicas.local_indices, seed=SEED)
    for _ in range(steps):
        opt.step_batches([next(s) for s in streams])
    return opt


def test_auto_engine_is_vmap_on_gpu_and_agrees_with_loop():
    auto = ReplicatedSGD(make_model().to(CUDA), lr=0.1, y=2)
    assert auto.engine == "vmap"
    loop, vec = train_on(CUDA, "loop"), train_on(CUDA, "vmap")
    for a in range(Y):
        for (name, p), q in zip(
            loop.replicas[a].state_dict().items(),
            vec.replicas[a].state_dict().values(),
            strict=True,
        ):
            if p.is_floating_point():
                torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)


def test_gpu_matches_cpu_trajectory():
    cpu, gpu = train_on(torch.device("cpu"), "loop", 20), train_on(CUDA, "loop", 20)
    for p, q in zip(cpu.replicas.parameters(), gpu.replicas.parameters(), strict=True):
        torch.testing.assert_close(q.cpu(), p, rtol=1e-3, atol=1e-4)


def test_cpu_state_dict_loads_onto_cuda_and_resumes():
    model = make_model()
    opt = EntropySGD(model.parameters(), lr=0.3, inner_lr=0.05, inner_steps=3, momentum=0.9, seed=0)
    x, t = make_data()

    def closure_for(m, xs, ts):
        def closure():
            loss = torch.nn.functional.cross_entropy(m(xs[:16]), ts[:16])
            loss.backward()
            return loss

        return closure

    opt.step(closure_for(model, x, t))
    gpu_model = copy.deepcopy(model).to(CUDA)
    gpu_opt = EntropySGD(
        gpu_model.parameters(), lr=0.3, inner_lr=0.05, inner_steps=3, momentum=0.9, seed=0
    )
    gpu_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    for state in list(gpu_opt.state.values()) + list(gpu_opt.outer.state.values()):
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                assert value.device.type == "cuda"
    gpu_opt.step(closure_for(gpu_model, x.to(CUDA), t.to(CUDA)))  # noise moves to a CUDA stream


def test_on_device_augmentation_with_real_autoaugment():
    pytest.importorskip("torchvision")
    aug = Augment(
        padding=4, flip=True, autoaugment="cifar10", cutout=8, mean=(0.5,) * 3, std=(0.25,) * 3
    )
    x = torch.rand(32, 3, 32, 32, device=CUDA)
    g = torch.Generator(device=CUDA).manual_seed(0)
    out = aug(x, g)
    assert out.shape == x.shape and out.device.type == "cuda" and torch.isfinite(out).all()


def _small_problem(device):
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)
        )
    x, t = torch.randn(256, 10, generator=g), torch.randint(0, 3, (256,), generator=g)
    return model.to(device).double(), (x.to(device).double(), t.to(device))


def test_flatness_measures_run_on_cuda_and_agree_with_cpu():
    """The Hessian, sharpness, PAC-Bayes σ and interpolation on CUDA (issue 12): deterministic
    quantities agree with the CPU; sampled ones are in range (CUDA noise streams differ)."""
    from wideflat.flatness import hessian, interpolate, pac_bayes_sigma, sharpness

    cpu_model, cpu_data = _small_problem("cpu")
    gpu_model, gpu_data = _small_problem(CUDA)
    h_cpu = hessian(cpu_model, cpu_data, top_k=2, trace=False, progress=False)
    h_gpu = hessian(gpu_model, gpu_data, top_k=2, trace=False, progress=False)
    assert h_gpu.eigenvalues == pytest.approx(h_cpu.eigenvalues, rel=1e-6)
    line_cpu = interpolate(cpu_model, copy.deepcopy(cpu_model).cpu(), cpu_data, 5, progress=False)
    line_gpu = interpolate(gpu_model, copy.deepcopy(gpu_model), gpu_data, 5, progress=False)
    assert line_gpu.loss == pytest.approx(line_cpu.loss, rel=1e-9)
    s = sharpness(gpu_model, gpu_data, 0.05, progress=False)
    assert 0 <= s.value < 10
    with warnings.catch_warnings():  # an untrained net may cross the target above sigma_max
        warnings.simplefilter("ignore", RuntimeWarning)
        pb = pac_bayes_sigma(gpu_model, gpu_data, samples=8, progress=False)
    assert pb.sigma > 0


def test_matched_error_run_on_cuda_keeps_weights_that_measure_the_same_again(
    tmp_path, fashion_root
):
    """A run on CUDA with the paper protocol, recomputed BatchNorm statistics and kept
    weights (issue 13): the weights loaded back onto CUDA give the profile bit for bit."""
    from _runs import tiny_config

    from wideflat.experiments.measured import load_measured
    from wideflat.experiments.training import train
    from wideflat.flatness import LocalEnergyProfile, local_energy

    cfg = tiny_config(fashion_root, "rsgd", model="resnet20", epochs=1, energy_epochs=(1,),
                      energy_sigmas=(0.0, 0.2), energy_samples=2, energy_subset=64,
                      energy_bn="recompute", energy_save_weights=True, replica_eval_every=2,
                      gamma="exp:0.01:x10")  # fmt: skip
    train(cfg, tmp_path / "run", device="cuda", progress=False)
    model, data = load_measured(tmp_path / "run", "epoch-0001", device="cuda")
    assert next(model.parameters()).is_cuda and data[0].is_cuda
    saved = LocalEnergyProfile.from_json(tmp_path / "run" / "energy" / "epoch-0001.json")
    again = local_energy(model, data, [0.0, 0.2], 2, seed=cfg.seed, bn="recompute",
                         batch_size=cfg.eval_batch, progress=False)  # fmt: skip
    assert again.delta_error == saved.delta_error
