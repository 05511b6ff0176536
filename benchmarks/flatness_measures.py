"""Wall time of each flatness measure on a SmallConvNet with 2,000 training images.

Each measure runs with the settings ``wideflat correlate`` uses (δE_train: σ = 0.5, 64 draws;
Hessian: top eigenvalue by Lanczos, trace by 32 Hutchinson vectors; sharpness: 10 ascent
steps; PAC-Bayes σ: bisection with 32 draws per σ; interpolation: 21 points). The network is
SmallConvNet for 1x28x28 inputs, trained for ``--epochs`` epochs of SGD on the images first so
that it sits near a minimum (untrained networks make the bisection and Lanczos atypical).
Data: the first 2,000 Fashion-MNIST training images when the files are found, else random
images (printed). Each measure runs ``--rounds`` times; the median is printed with the range.
The cost of one Hessian-vector product relative to a gradient is
``benchmarks/hessian.py``'s figure.

    python benchmarks/flatness_measures.py [--images 2000] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from wideflat import flatness  # noqa: E402
from wideflat.models import create_model  # noqa: E402


def images(n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    try:
        from wideflat.data import load_fashion_mnist

        train = load_fashion_mnist(split="train")
        x = train.images[:n].float().unsqueeze(1) / 255.0
        return (x - 0.286) / 0.353, train.labels[:n].clone(), "Fashion-MNIST"
    except Exception:  # noqa: BLE001 - any reason the files are not there
        g = torch.Generator().manual_seed(0)
        return (
            torch.randn(n, 1, 28, 28, generator=g),
            torch.randint(0, 10, (n,), generator=g),
            ("random images (Fashion-MNIST not found)"),
        )


def trained_model(x, y, epochs: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("smallconvnet", num_classes=10, in_channels=1, image_size=28)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), 64):
            idx = order[start : start + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def measures(model, other, data):
    kw = dict(progress=False)
    return {
        "local_energy (sigma 0.5, 64 draws)": lambda: flatness.local_energy(
            model, data, [0.5], 64, **kw
        ),
        "hessian (top-1 + trace, 32 vectors)": lambda: flatness.hessian(
            model, data, top_k=1, trace_samples=32, **kw
        ),
        "sharpness (rho 0.05, 10 steps)": lambda: flatness.sharpness(model, data, 0.05, **kw),
        "adaptive sharpness (rho 0.5)": lambda: flatness.sharpness(
            model, data, 0.5, adaptive=True, **kw
        ),
        "pac_bayes_sigma (32 draws per sigma)": lambda: flatness.pac_bayes_sigma(
            model, data, samples=32, **kw
        ),
        "interpolate (21 points)": lambda: flatness.interpolate(model, other, data, 21, **kw),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="SGD epochs before measuring")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y, source = images(args.images)
    model = trained_model(x, y, args.epochs)
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from optim_overhead import cpu_model

    print(
        f"wideflat flatness measures | {cpu_model()}, torch {torch.__version__}, cpu, "
        f"{args.threads} thread(s) | smallconvnet, {len(x)} images of {source}, "
        f"{args.rounds} rounds, median (min-max) wall time"
    )
    for name, fn in measures(model, other, (x, y)).items():
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        print(f"{name:<40} {statistics.median(times):7.2f} s  ({min(times):.2f}-{max(times):.2f})")


if __name__ == "__main__":
    main()
