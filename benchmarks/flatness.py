"""Flatness benchmarks, measured side by side in one run.

(a) Local energy: batched perturbations (``torch.func.vmap`` engine) against a plain loop of
    perturbed forward passes, the same work (same σ grid, draws, data and noise) on a LeNet-like
    conv net (Conv5x5·20 - MaxPool2 - Conv5x5·50 - MaxPool2 - Dense500 - Dense10, 1x28x28 inputs)
    and on an MLP. The variants alternate, each is repeated, the medians and their ratio are
    printed, and the two engines' results are compared.
(b) The committee-machine BP curve: ``main()`` of ``benchmarks/flatness_bp.py`` when present.

Usage::

    python benchmarks/flatness.py            # ~1-2 minutes on 2 CPU cores
    python benchmarks/flatness.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import inspect
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # run from a checkout without installing

from wideflat.flatness.energy import local_energy  # noqa: E402


def lenet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 20, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(20, 50, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(50 * 4 * 4, 500),
        nn.ReLU(),
        nn.Linear(500, 10),
    )


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 500),
        nn.ReLU(),
        nn.Linear(500, 300),
        nn.ReLU(),
        nn.Linear(300, 10),
    )


def bench_local_energy(name, model, data, sigmas, samples, repeats, chunk_size, device):
    """Median wall time of each engine over ``repeats`` alternating runs (one warm-up each)."""
    kw = dict(
        sigmas=sigmas,
        samples=samples,
        chunk_size=chunk_size,
        batch_size=len(data[0]),
        device=device,
        progress=False,
        seed=0,
    )
    times: dict[bool, list[float]] = {True: [], False: []}
    profiles = {}
    for rep in range(repeats + 1):
        for vmap in (True, False) if rep % 2 == 0 else (False, True):
            t0 = time.perf_counter()
            profiles[vmap] = local_energy(model, data, vmap=vmap, **kw)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if rep > 0:  # rep 0 is the warm-up
                times[vmap].append(time.perf_counter() - t0)
    t_vmap, t_loop = statistics.median(times[True]), statistics.median(times[False])
    dev = max(
        abs(a - b)
        for ra, rb in zip(profiles[True].loss_draws, profiles[False].loss_draws, strict=True)
        for a, b in zip(ra, rb, strict=True)
    )
    n_params = profiles[True].n_parameters
    n_fwd = samples * sum(1 for s in sigmas if s > 0)
    print(
        f"{name:<8} params={n_params:>7}  examples={len(data[0])}  perturbations={n_fwd}  "
        f"loop {t_loop:7.3f} s   vmap(chunk={chunk_size}) {t_vmap:7.3f} s   "
        f"loop/vmap = {t_loop / t_vmap:5.2f}x   max|Δloss draw| = {dev:.1e}"
    )
    return t_loop, t_vmap


def run_bp_benchmark(quick: bool) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        import flatness_bp
    except ModuleNotFoundError as exc:
        if exc.name != "flatness_bp":
            raise
        print("(b) committee-machine BP: benchmarks/flatness_bp.py is missing; skipped")
        return
    print("(b) committee-machine BP curve (benchmarks/flatness_bp.py)")
    argv = ["--quick"] if quick else []
    if inspect.signature(flatness_bp.main).parameters:
        flatness_bp.main(argv)
        return
    saved = sys.argv
    sys.argv = [str(ROOT / "flatness_bp.py"), *argv]
    try:
        flatness_bp.main()
    finally:
        sys.argv = saved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--chunk-size", type=int, default=None, help="vmap chunk (default 16)")
    parser.add_argument("--skip-bp", action="store_true", help="skip part (b)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    n, samples, repeats = (64, 4, 2) if args.quick else (256, 16, 5)
    if device.type == "cuda" and not args.quick:
        n, samples = 4096, 64
    chunk = args.chunk_size or 16
    sigmas = [0.0, 0.1, 0.3, 0.5]
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"(a) local energy, vmap vs loop: device={device} ({gpu or 'cpu'}), "
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, sigmas={sigmas}, "
        f"samples={samples}, median of {repeats} alternating runs after one warm-up"
    )
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))
    torch.manual_seed(0)
    for name, model in (("lenet", lenet()), ("mlp", mlp())):
        model.to(device)
        bench_local_energy(name, model, data, sigmas, samples, repeats, chunk, device)
    if not args.skip_bp:
        run_bp_benchmark(args.quick)


if __name__ == "__main__":
    main()
