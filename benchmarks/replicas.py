"""Replicated-SGD engines: per-step time against SGD, and the distributed coupling overhead.

Part 1 (one process): the time of one rSGD step with y = 3 replicas (loop and vectorized
engines; each replica on its own minibatch) against one SGD step of one model on one
minibatch, for a SmallConvNet (3×32×32 inputs) and an MLP (784-256-256-10). The paper's
claim is that rSGD parallelizes over replicas, so on hardware with room for y models
(a GPU) rSGD×3 per step can approach SGD; on a CPU the 3 replicas cost about 3× the work.

Part 2 (``--distributed``, 3 gloo processes via torchrun): per-step time of the distributed
engine with coupling every K = 1 and K = 10 steps, against the same processes training
with no coupling and no communication (γ = 0, no finiteness check). Target: ≤ 5 % at K = 10.

Variants alternate in rounds; figures are medians; ratios are printed.

    python benchmarks/replicas.py [--rounds 9] [--distributed] [--device cuda]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn import functional as F

from wideflat.models import MLP, create_model
from wideflat.optim import ReplicatedSGD

MODELS = {
    "smallconvnet": (
        lambda: create_model("smallconvnet", num_classes=10, in_channels=3, image_size=32),
        (3, 32, 32),
    ),
    "mlp": (lambda: MLP(784, 10, hidden=(256, 256)), (784,)),
}
SETTINGS = dict(momentum=0.9, nesterov=True, weight_decay=1e-4)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batches(shape, batch: int, n: int, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(batch, *shape, generator=g).to(device),
            torch.randint(0, 10, (batch,), generator=g).to(device),
        )
        for _ in range(n)
    ]


def time_steps(step, n_steps: int, device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(n_steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / n_steps


def part1(args, device: torch.device) -> None:
    print(
        f"\n[1] per-step time, y = 3, batch {args.batch}, device {device}, "
        f"{torch.get_num_threads()} thread(s), median of {args.rounds} rounds"
    )
    for name, (build, shape) in MODELS.items():
        torch.manual_seed(0)
        net = build().to(device)
        data = batches(shape, args.batch, 3, device)
        sgd_model = copy.deepcopy(net)
        sgd = torch.optim.SGD(sgd_model.parameters(), lr=0.01, **SETTINGS)

        def sgd_step(model=sgd_model, opt=sgd, data=data):
            opt.zero_grad()
            F.cross_entropy(model(data[0][0]), data[0][1]).backward()
            opt.step()

        engines = {}
        for engine in ("loop", "vmap"):
            opt = ReplicatedSGD(
                copy.deepcopy(net), lr=0.01, y=3, gamma=1e-3, engine=engine, seed=0, **SETTINGS
            )
            engines[engine] = lambda opt=opt, data=data: opt.step_batches(data)
        variants = {"sgd": sgd_step, **{f"rsgd-{k}": v for k, v in engines.items()}}
        for fn in variants.values():  # warm-up
            time_steps(fn, 2, device)
        times = {k: [] for k in variants}
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(variants)[::-1]
            for key in order:
                times[key].append(time_steps(variants[key], args.steps, device))
        med = {k: statistics.median(v) for k, v in times.items()}
        # ratios: the median over rounds of (variant / SGD in the same round)
        ratio = {
            k: statistics.median(v / b for v, b in zip(times[k], times["sgd"], strict=True))
            for k in times
        }
        print(
            f"  {name:<13} SGD {med['sgd'] * 1e3:7.2f} ms | rSGD×3 loop "
            f"{med['rsgd-loop'] * 1e3:7.2f} ms (×{ratio['rsgd-loop']:.2f}) | "
            f"rSGD×3 vmap {med['rsgd-vmap'] * 1e3:7.2f} ms (×{ratio['rsgd-vmap']:.2f})"
        )


def dist_worker(args) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=120))
    rank = dist.get_rank()
    torch.set_num_threads(1)
    name = args.dist_model
    build, shape = MODELS[name]
    data = batches(shape, args.batch, 1, torch.device("cpu"), seed=rank)
    variants = {}
    for label, gamma, k, check in (
        ("none", 0.0, 1, False),
        ("K=1", 1e-3, 1, True),
        ("K=10", 1e-3, 10, True),
        ("K=10 nocheck", 1e-3, 10, False),
    ):
        torch.manual_seed(0)
        opt = ReplicatedSGD(
            build(),
            lr=0.01,
            engine="distributed",
            gamma=gamma,
            coupling_every=k,
            check_finite=check,
            seed=0,
            **SETTINGS,
        )
        variants[label] = lambda opt=opt: opt.step_batches(data)
    for fn in variants.values():
        time_steps(fn, 3, torch.device("cpu"))
    times = {k: [] for k in variants}
    for r in range(args.rounds):
        order = list(variants) if r % 2 == 0 else list(variants)[::-1]
        for key in order:
            dist.barrier()
            times[key].append(time_steps(variants[key], 20, torch.device("cpu")))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = {
        k: statistics.median(v / b for v, b in zip(times[k], times["none"], strict=True))
        for k in times
    }
    if rank == 0:
        print(
            f"\n[2] distributed engine, 3 gloo processes (1 thread each), {name}, batch "
            f"{args.batch}, 20-step blocks, median of {args.rounds} rounds"
        )
        for key, value in med.items():
            print(f"  {key:<13} {value * 1e3:7.2f} ms/step   ratio to no coupling {ratio[key]:.3f}")
    dist.destroy_process_group()


def part2(args) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=3",
        str(Path(__file__).resolve()),
        "--dist-worker",
        "--rounds",
        str(args.rounds),
        "--batch",
        str(args.batch),
        "--dist-model",
        args.dist_model,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    print(proc.stdout, end="")
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(proc.returncode)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed block (part 1)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--distributed", action="store_true", help="also run part 2")
    parser.add_argument("--dist-model", default="smallconvnet", choices=list(MODELS))
    parser.add_argument("--dist-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dist_worker:
        dist_worker(args)
        return
    print(f"wideflat replica engines | torch {torch.__version__} | {time.strftime('%Y-%m-%d')}")
    part1(args, torch.device(args.device))
    if args.distributed:
        part2(args)


if __name__ == "__main__":
    main()
