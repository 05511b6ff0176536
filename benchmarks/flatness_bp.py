"""Committee-machine local entropy by BP: time of a full curve at the paper's size.

N = 784 inputs, K = 9 hidden units, M = 500 patterns. Prints:

* the wall time, BP iterations and convergence of a full ``Phi_LE`` curve computed with GAMP,
  once on a distance grid (``distances=``: a secant search for gamma at each distance) and
  once on the default 30-point gamma grid (1e4 down to 0.3);
* the time per iteration of the per-edge reference solver and of GAMP at the same gamma, and
  their ratio, measured side by side (alternating, medians; GAMP on one thread as the library
  runs it, the per-edge solver on ``--threads``);
* a few points of the curve.

Data: random ±1 inputs labelled by a random teacher (``--data teacher``, default, needs no
files) or the paper's Fashion-MNIST Dress/Coat set (``--data fashion``). The reference must
have zero training error: the teacher itself (``--reference teacher``, teacher data only), or
a student trained here until it fits every pattern (``--reference student``; a quick
Adam/tanh fit, not one of the paper's recipes, so its margins are small).

Usage::

    python benchmarks/flatness_bp.py                      # teacher data, teacher reference
    python benchmarks/flatness_bp.py --reference student  # smaller margins, harder BP
    python benchmarks/flatness_bp.py --data fashion       # real data (needs the IDX files)
    python benchmarks/flatness_bp.py --quick              # fewer timed per-edge iterations
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from wideflat.flatness._bp_solvers import EdgeBP, Gamp, Problem  # noqa: E402
from wideflat.flatness.committee_bp import _torch_threads, committee_local_entropy  # noqa: E402


def train_student(X: torch.Tensor, y: torch.Tensor, k: int, seed: int, max_epochs: int = 5000):
    """Fit a committee machine until it makes no training error (full-batch Adam on a tanh
    relaxation, rows renormalised to |w_k|^2 = N at every step). Returns (w, epochs)."""
    g = torch.Generator().manual_seed(seed)
    M, N = X.shape
    w = torch.randn(k, N, generator=g, dtype=torch.float64)
    w = (w * (math.sqrt(N) / w.norm(dim=1, keepdim=True))).requires_grad_()
    opt = torch.optim.Adam([w], lr=0.01)
    for epoch in range(max_epochs):
        wn = w * (math.sqrt(N) / w.norm(dim=1, keepdim=True))
        h = X @ wn.T / math.sqrt(N)
        with torch.no_grad():
            if bool((y * torch.sign(h).sum(1) > 0).all()):
                return wn.detach().clone(), epoch
        out = torch.tanh(2.0 * h).sum(1) / math.sqrt(k)
        loss = torch.nn.functional.softplus(-5.0 * y * out).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    raise RuntimeError(f"student did not reach zero training error in {max_epochs} epochs")


def load(data: str, reference: str, n: int, k: int, m: int, seed: int):
    if data == "fashion":
        from wideflat.data.committee import fashion_committee

        d = fashion_committee(n_train=m, seed=seed)
        if reference == "teacher":
            raise SystemExit("--data fashion has no teacher; use --reference student")
    else:
        from wideflat.data.committee import teacher_committee

        d = teacher_committee(n_train=m, n_test=1, n_features=n, k=k, seed=seed)
    X = d.X_train.to(torch.float64)
    y = d.y_train.to(torch.float64)
    if reference == "teacher":
        w = torch.as_tensor(d.metadata["teacher"], dtype=torch.float64)
        return w, X, y, "teacher"
    w, epochs = train_student(X, y, k, seed + 1)  # seed + 1: not the teacher's own stream
    return w, X, y, f"student ({epochs} epochs)"


def per_iteration_times(w, X, y, gamma: float, edge_iters: int, gamp_iters: int = 50):
    """Median seconds per iteration of each solver at ``gamma``, alternating the two. GAMP runs
    on one thread, as ``committee_local_entropy`` runs it; the per-edge solver on all threads."""
    w = w * (math.sqrt(w.shape[1]) / w.norm(dim=1, keepdim=True))
    prob = Problem.build(w, X, y)
    edge, gamp = EdgeBP(prob), Gamp(prob)
    se, sg = edge.init_state(gamma), gamp.init_state(gamma)
    te, tg = [], []
    for _ in range(edge_iters):
        t0 = time.perf_counter()
        se = edge.step(se, gamma, 0.5).state
        te.append(time.perf_counter() - t0)
        with _torch_threads(1):
            t0 = time.perf_counter()
            for _ in range(gamp_iters):
                sg = gamp.step(sg, gamma, 0.5).state
            tg.append((time.perf_counter() - t0) / gamp_iters)
    return statistics.median(te), statistics.median(tg)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", choices=["teacher", "fashion"], default="teacher")
    p.add_argument("--reference", choices=["teacher", "student"], default=None)
    p.add_argument("--points", type=int, default=20, help="distances on the curve (>= 20)")
    p.add_argument("--n", type=int, default=784)
    p.add_argument("--k", type=int, default=9)
    p.add_argument("--m", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--edge-iters", type=int, default=5, help="per-edge iterations timed")
    p.add_argument("--quick", action="store_true", help="time 2 per-edge iterations")
    args = p.parse_args(argv)
    reference = args.reference or ("teacher" if args.data == "teacher" else "student")
    torch.set_num_threads(args.threads)

    w, X, y, ref_name = load(args.data, reference, args.n, args.k, args.m, args.seed)
    K, N = w.shape
    print(
        f"committee BP benchmark: N={N} K={K} M={X.shape[0]} data={args.data} "
        f"reference={ref_name}; torch {torch.__version__}, {platform.processor() or 'cpu'}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}"
    )
    distances = np.geomspace(1e-4, 1.0, args.points)
    t0 = time.perf_counter()
    curve = committee_local_entropy(w, X, y, distances=distances)
    t_dist = time.perf_counter() - t0
    t0 = time.perf_counter()
    sweep = committee_local_entropy(w, X, y)
    t_sweep = time.perf_counter() - t0
    for name, res, t in (
        (f"{args.points} distances 1e-4..1", curve, t_dist),
        ("30 gammas 1e4..0.3  ", sweep, t_sweep),
    ):
        print(
            f"  GAMP curve, {name}: {t:6.2f} s, {sum(res.iterations):5d} iterations, "
            f"converged {sum(res.converged)}/{len(res.converged)}, final damping {res.damping[-1]}"
        )
        for line in res.failures:
            print(f"    NOT CONVERGED: {line}")
    print("  curve (per weight, n = N*K):  delta        gamma        Phi_LE")
    for i in range(0, len(curve.distance), max(1, len(curve.distance) // 6)):
        print(
            f"                                {curve.distance[i]:.4e}   {curve.gamma[i]:.4e}  "
            f"{curve.local_entropy[i]: .4e}"
        )
    edge_iters = 2 if args.quick else args.edge_iters
    t_edge, t_gamp = per_iteration_times(w, X, y, gamma=100.0, edge_iters=edge_iters)
    print(
        f"  per iteration at gamma=100 (medians of {edge_iters}): per-edge {t_edge * 1e3:.1f} ms, "
        f"GAMP {t_gamp * 1e3:.2f} ms, ratio per-edge/GAMP = {t_edge / t_gamp:.0f}x"
    )


if __name__ == "__main__":
    main()
