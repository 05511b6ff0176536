"""Evaluation throughput against the forward batch size (``eval_batch``).

Every evaluation of a run (train and test error each epoch) and every δE measurement runs
eval-mode forward passes of ``eval_batch`` examples (default 1000). On a CPU a large batch
can be slower per example than a small one (the activations of a whole batch leave the
caches): this prints images/s per batch size, the sizes alternating within each round, and
each size's median ratio to the default.

    python benchmarks/eval_batch.py [--models smallconvnet resnet20] [--sizes 1000 500 250 128]
        [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from wideflat.models import create_model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["smallconvnet", "resnet20"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 500, 250, 128])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.examples, 1, 28, 28)  # Fashion-MNIST's shape
    print(f"eval-mode forward, {args.examples} images 1x28x28, {args.threads} thread(s), "
          f"torch {torch.__version__}, {args.rounds} rounds, medians")  # fmt: skip
    for name in args.models:
        model = create_model(name, num_classes=10, in_channels=1, image_size=28).eval()
        rates: dict[int, list[float]] = {b: [] for b in args.sizes}
        with torch.no_grad():
            model(x[: args.sizes[0]])  # warm-up
            for r in range(args.rounds):
                order = args.sizes if r % 2 == 0 else args.sizes[::-1]
                for b in order:
                    began = time.perf_counter()
                    for i in range(0, len(x), b):
                        model(x[i : i + b])
                    rates[b].append(len(x) / (time.perf_counter() - began))
        base = args.sizes[0]
        cells = []
        for b in args.sizes:
            ratio = statistics.median(v / w for v, w in zip(rates[b], rates[base], strict=True))
            cells.append(f"batch {b}: {statistics.median(rates[b]):.0f} img/s ({ratio:.2f}x)")
        print(f"{name:<14} " + "; ".join(cells))


if __name__ == "__main__":
    main()
