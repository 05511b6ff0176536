"""Per-epoch time of the batched committee trainer vs a Python loop over the same networks.

One rSGD epoch (``M // batch_size`` minibatch steps for every replica of every restart) is
timed three ways on the same synthetic teacher–student data and the same initial weights and
minibatch permutations:

* ``batched``: the trainer's own epoch function
  (``wideflat.experiments.committee._batched.sgd_epoch``): all ``restarts × replicas``
  networks are one tensor ``(R, y, K, N)``; on CPU the gradient is computed over cache-sized
  blocks of restarts (``CPU_BLOCK_BYTES``).
* ``batched-1block``: the same with all restarts in one block (what runs on a GPU).
* ``loop-restarts``: a Python loop over restarts, the replicas of a restart batched.
* ``loop-networks``: a Python loop over every network (restart, replica), one ``(K, N)``
  matrix at a time.

All three call the same closed-form gradient (without input validation), so the ratio
measures batching, not validation overhead. The runs alternate (batched, loop, ...) to share
machine noise, and medians over ``--reps`` epochs are printed with their ratios, plus the
largest weight difference between the batched and looped results (they must agree).

The batched epoch's training FLOP rate is also printed as a ratio to a plain float32
``torch.matmul`` (sgemm, ``--sgemm-size`` square) timed in the same alternation, on each
thread count of ``--threads``: training FLOPs are the two matmuls per network and minibatch
step (forward ``X wᵀ`` and backward ``dhᵀ X``, 2·B·N·K each), i.e. ``4·R·y·M·N·K`` per epoch;
the elementwise work is not counted. Issue 11's target is a ratio ≥ 0.5.

Usage::

    python benchmarks/committee_batching.py                  # paper sizes, 1 and 2 threads
    python benchmarks/committee_batching.py --restarts 10 --replicas 10 --reps 7 --threads 2
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from wideflat.experiments.committee import _batched
from wideflat.experiments.committee.presets import committee_preset
from wideflat.experiments.committee.train import restart_generator
from wideflat.models.committee import (
    _loss_and_grad_unchecked,
    committee_output,
    init_committee_weights,
    normalize_units,
)


def make_data(n, k, m, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = (torch.randint(0, 2, (m, n), generator=g) * 2 - 1).to(dtype)
    teacher = init_committee_weights(k, n, generator=g, dtype=dtype)
    return X.to(device), committee_output(teacher, X).to(device)


def draw_perms(gens, m, replicas, device):
    """Same draw order as the trainer: per restart, one permutation per replica."""
    return [[torch.randperm(m, generator=g, device=device) for _ in range(replicas)] for g in gens]


def loop_epoch(w, gens, X, y, hp, epoch, per_network):
    """One rSGD epoch with a Python loop over restarts (and over replicas if per_network).

    ``w`` is a list (restarts) of ``(y, K, N)`` tensors; returns the updated list.
    """
    beta, omega, gamma = hp.beta(epoch), hp.omega(epoch), hp.gamma(epoch)
    b, steps = hp.batch_size, X.shape[0] // hp.batch_size
    perms = draw_perms(gens, X.shape[0], hp.y, X.device)
    for s in range(steps):
        new = []
        for r, wr in enumerate(w):
            center = wr.mean(dim=0, keepdim=True)
            if per_network:
                rows = []
                for a in range(hp.y):
                    idx = perms[r][a][s * b : (s + 1) * b]
                    _, g = _loss_and_grad_unchecked(wr[a], X[idx], y[idx], beta, omega)
                    g = g + gamma * (wr[a] - center[0])
                    rows.append(normalize_units(wr[a] - hp.lr * g))
                new.append(torch.stack(rows))
            else:
                idx = torch.stack([p[s * b : (s + 1) * b] for p in perms[r]])
                _, g = _loss_and_grad_unchecked(wr, X[idx], y[idx], beta, omega)
                g = g + gamma * (wr - center)
                new.append(normalize_units(wr - hp.lr * g))
        w = new
    return w


SGEMM_CALLS = 4  # matmuls per timed sgemm sample


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--restarts", type=int, default=10)
    p.add_argument("--replicas", type=int, default=10)
    p.add_argument("--N", type=int, default=784)
    p.add_argument("--K", type=int, default=9)
    p.add_argument("--M", type=int, default=500)
    p.add_argument("--reps", type=int, default=7, help="timed epochs per variant")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--sgemm-size", type=int, default=1024, help="side of the sgemm reference")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-per-network", action="store_true")
    args = p.parse_args()

    for threads in args.threads:
        bench(args, threads)


def bench(args, threads: int) -> None:
    torch.set_num_threads(threads)
    dtype, device = getattr(torch, args.dtype), torch.device(args.device)
    hp = committee_preset("rsgd-fast", {"y": args.replicas})
    X, y = make_data(args.N, args.K, args.M, dtype, device)
    R, Y = args.restarts, args.replicas
    w0 = torch.stack(
        [
            init_committee_weights(
                Y, args.K, args.N, generator=restart_generator(0, r), dtype=dtype
            )
            for r in range(R)
        ]
    ).to(device)

    variants = ["batched", "batched-1block", "loop-restarts"]
    variants += [] if args.skip_per_network else ["loop-networks"]
    state = {}
    for v in list(variants):
        gens = [restart_generator(1, r, device) for r in range(R)]
        if v.startswith("batched"):
            state[v] = _batched.Population(w0.clone(), gens, torch.arange(R, device=device))
        else:
            state[v] = ([w0[r].clone() for r in range(R)], gens)

    a = torch.randn(args.sgemm_size, args.sgemm_size, device=device)
    b = torch.randn(args.sgemm_size, args.sgemm_size, device=device)

    def run(v, epoch):
        sync(device)
        t0 = time.perf_counter()
        if v == "sgemm":
            for _ in range(SGEMM_CALLS):
                torch.matmul(a, b)
        elif v.startswith("batched"):
            # "batched-1block": all restarts in one block (what a GPU runs), no CPU blocking.
            budget = 1 << 62 if v == "batched-1block" else default_budget
            _batched.CPU_BLOCK_BYTES = budget
            _batched.sgd_epoch(state[v], X, y, hp, epoch, epoch * (args.M // hp.batch_size))
            _batched.CPU_BLOCK_BYTES = default_budget
        else:
            w, gens = state[v]
            state[v] = (loop_epoch(w, gens, X, y, hp, epoch, v == "loop-networks"), gens)
        sync(device)
        return time.perf_counter() - t0

    default_budget = _batched.CPU_BLOCK_BYTES
    variants.append("sgemm")
    times = {v: [] for v in variants}
    for epoch in range(args.reps + 1):  # epoch 0 is a warm-up, not timed
        for v in variants:  # alternate the variants within each epoch
            dt = run(v, epoch)
            if epoch > 0:
                times[v].append(dt)

    ref = state["batched"].w
    print(
        f"committee rSGD epoch: restarts={R} replicas={Y} N={args.N} K={args.K} M={args.M} "
        f"batch={hp.batch_size} ({args.M // hp.batch_size} steps/epoch), {args.dtype}, "
        f"device={device}, threads={threads}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}"
    )
    base = statistics.median(times["batched"])
    for v in variants[:-1]:
        med = statistics.median(times[v])
        line = f"  {v:14s} median {med * 1e3:9.2f} ms/epoch  (n={len(times[v])})"
        if v != "batched":
            other = state[v].w if v.startswith("batched") else torch.stack(state[v][0])
            diff = (other - ref).abs().max().item()
            line += f"  {med / base:6.1f}x slower than batched; max |Δw| = {diff:.1e}"
        print(line)
    flops = 4 * R * Y * args.M * args.N * args.K  # two matmuls per network and step
    train_rate = flops / base
    sgemm_rate = SGEMM_CALLS * 2 * args.sgemm_size**3 / statistics.median(times["sgemm"])
    print(
        f"  training FLOP rate {train_rate / 1e9:.2f} GFLOP/s vs sgemm ({args.sgemm_size}^3, "
        f"float32) {sgemm_rate / 1e9:.2f} GFLOP/s: "
        f"ratio {train_rate / sgemm_rate:.2f} (target >= 0.5)"
    )


if __name__ == "__main__":
    main()
