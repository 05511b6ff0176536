"""Per-gradient overhead of EntropySGD and ReplicatedSGD against plain SGD.

Same model, same minibatch shapes, same number of gradient evaluations:

* eSGD with L = 5 (one outer step = 5 gradients) against 5 SGD steps;
* rSGD with y = 3 (one step = 3 gradients, one per replica) against 3 SGD steps on 3
  models (the same work as 3 independent SGD runs);
* eSGD with its Langevin noise against the same step without it (ε = 0): the noise's own
  cost, side by side;
* eSGD with its Langevin noise drawn off the calling thread, as the library does on CPU (by a
  worker thread during each closure when torch's threads leave a core free, e.g.
  ``--threads 1`` on two cores; otherwise after the closure, block by block on torch's
  OpenMP team when it has several threads) against the same step drawing it serially on the
  calling thread after the closure. Same bits either way.

Both optimizers use momentum 0.9 (Nesterov) and weight decay, as in the paper. The
variants alternate in one run; each figure is the median over rounds, and the printed
ratio is the median over rounds of variant / SGD within the round (quartiles printed too).
Target: ≤ 1.05 each.

A process's figures also depend on where its buffers happen to lie in memory: on a 2-vCPU
Intel Xeon (2026-12-03) the same eSGD code measured 0.95–1.14× SGD from one process to the
next, more than the overhead itself. The cause is glibc's dynamic mmap threshold, which
places the model-sized gradient and update buffers differently from run to run (SGD's own
step time moved between 190 and 228 ms); with the threshold fixed,

    MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=536870912 python benchmarks/...

the spread fell to ±1.5 % and both variants ran faster. ``--processes K`` runs the whole
comparison in K fresh processes (with this environment, if set), one after the other, and
prints each process's ratios and their median: the figure to quote.

``--breakdown`` also times, on the same parameters, each kernel eSGD adds to an inner step
(the coupling, the noise draw, the noise add, the running mean: the library's own kernels)
as a percentage of one SGD step (forward, backward, ``opt.step``): their sum is the part of
eSGD's overhead that its arithmetic alone costs, whatever the bookkeeping around it. The draw
is timed serially, as one ``normal_`` call; on CPU the library hides it behind the closure
where a core is free (the floor is then the sum without it) and shares it out between
torch's threads otherwise.

    python benchmarks/optim_overhead.py [--rounds 15] [--batch 128] [--threads 1] [--breakdown]
                                        [--processes 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import subprocess
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

from wideflat.models import create_model
from wideflat.optim import EntropySGD, ReplicatedSGD, _esgd_noise

SETTINGS = dict(momentum=0.9, nesterov=True, weight_decay=1e-4)


def data(batch: int, n_batches: int = 16):
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(n_batches, batch, 3, 32, 32, generator=g)
    ts = torch.randint(0, 10, (n_batches, batch), generator=g)
    return xs, ts


class Batches:
    def __init__(self, xs, ts):
        self.xs, self.ts, self.i = xs, ts, 0

    def __call__(self):
        self.i = (self.i + 1) % len(self.xs)
        return self.xs[self.i], self.ts[self.i]


def sgd_runner(models: list[nn.Module], batches: Batches, n_steps: int):
    opts = [torch.optim.SGD(m.parameters(), lr=0.01, **SETTINGS) for m in models]

    def run():
        for _ in range(n_steps):
            for m, opt in zip(models, opts, strict=True):
                x, t = batches()
                opt.zero_grad()
                F.cross_entropy(m(x), t).backward()
                opt.step()

    return run


def esgd_runner(
    model: nn.Module, batches: Batches, inner_steps: int, noise: float = 1e-4, worker: bool = True
):
    """An eSGD step; ``worker=False`` draws the Langevin noise serially after each closure
    on the calling thread (the library's path for small models) instead of on other
    threads."""
    opt = EntropySGD(
        model.parameters(),
        lr=0.1,
        inner_lr=0.01,
        inner_steps=inner_steps,
        gamma=0.03,
        noise=noise,
        seed=0,
        **SETTINGS,
    )

    def closure():
        x, t = batches()
        loss = F.cross_entropy(model(x), t)
        loss.backward()
        return loss

    def step():
        saved = _esgd_noise._THREAD_MIN
        _esgd_noise._THREAD_MIN = saved if worker else 2**62
        try:
            opt.step(closure)
        finally:
            _esgd_noise._THREAD_MIN = saved

    return step


def rsgd_runner(model: nn.Module, batches: Batches, y: int):
    """The rSGD step, and its replicas (so the SGD baseline can train the very same tensors)."""
    opt = ReplicatedSGD(model, lr=0.01, y=y, gamma=1e-3, coupling_every=1, seed=0, **SETTINGS)

    def closure(a):
        x, t = batches()
        loss = F.cross_entropy(opt.replicas[a](x), t)
        loss.backward()
        return loss

    return (lambda: opt.step(closure)), list(opt.replicas)


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


DEVICE = torch.device("cpu")


def timed(fn) -> float:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)
    start = clock()
    fn()
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)
    return clock() - start


def compare(name: str, baseline, variant, rounds: int, base: str = "SGD") -> float:
    baseline(), variant()  # warm-up
    base_t, var_t = [], []
    for r in range(rounds):
        pair = [(base_t, baseline), (var_t, variant)]
        for times, fn in pair if r % 2 == 0 else pair[::-1]:  # alternate the order too
            times.append(timed(fn))
    b, v = statistics.median(base_t), statistics.median(var_t)
    # The ratio is the median of the per-round ratios: each round's pair runs back to back,
    # so load that drifts over seconds on a shared machine cancels within a pair.
    ratios = sorted(vt / bt for bt, vt in zip(base_t, var_t, strict=True))
    ratio = statistics.median(ratios)
    q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
    print(
        f"{name:<34} {base} {b * 1e3:8.1f} ms   variant {v * 1e3:8.1f} ms   "
        f"ratio {ratio:.3f} (quartiles {q1:.3f}-{q3:.3f})"
    )
    return ratio


def breakdown(model: nn.Module, batches: Batches, rounds: int, reps: int = 20) -> None:
    """Each kernel eSGD adds per inner step, as a % of one SGD step on ``model``."""
    from wideflat._kernels import esgd_coupling_, langevin_, running_mean_

    params = [p for p in model.parameters()]
    sgd = sgd_runner([model], batches, 1)
    sgd()  # gradients exist from here on
    grads = [p.grad for p in params]
    anchors = [p.detach().clone() for p in params]
    means = [p.detach().clone() for p in params]
    flat = torch.empty(sum(p.numel() for p in params), device=DEVICE)
    pieces = [
        x.view_as(p) for x, p in zip(flat.split([p.numel() for p in params]), params, strict=True)
    ]
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    work = [p.detach() for p in params]  # the kernels run outside autograd, as in the step
    kernels = {
        "coupling g' += γ (w' − w)": lambda: esgd_coupling_(grads, work, anchors, 1e-12),
        "noise draw ξ ~ N(0, I)": lambda: flat.normal_(generator=gen),
        "noise add w' += √η' ε ξ": lambda: langevin_(work, pieces, 1e-12),
        "running mean μ ← lerp(μ, w')": lambda: running_mean_(means, work, 1.0),
    }
    times: dict[str, list[float]] = {"SGD step": [], **{k: [] for k in kernels}}
    for _ in range(rounds):
        times["SGD step"].append(timed(sgd))
        for name, fn in kernels.items():
            times[name].append(timed(lambda fn=fn: [fn() for _ in range(reps)]) / reps)
    step = statistics.median(times["SGD step"])
    total = serial = 0.0
    for name in kernels:
        share = statistics.median(times[name]) / step
        total += share
        serial += 0.0 if name.startswith("noise draw") and DEVICE.type == "cpu" else share
        print(f"  {name:<32} {statistics.median(times[name]) * 1e3:7.3f} ms  {100 * share:5.2f} %")
    print(
        f"  eSGD's added kernels per inner step: {100 * total:.2f} % of an SGD step "
        f"({step * 1e3:.1f} ms); {100 * serial:.2f} % without the draw (on CPU hidden behind "
        "the closure by a worker thread where a core is free): the floor of its per-gradient "
        "overhead from arithmetic alone, with a core to spare"
    )


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, as lscpu shows it), else the platform's."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def add_timing_options(parser: argparse.ArgumentParser) -> None:
    """The options every timing benchmark here shares (rounds, batch, threads, clock, device)."""
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--clock",
        choices=list(CLOCK),
        default="wall",
        help="wall time, or this process's CPU time (robust to other jobs on a shared machine; "
        "use with --threads 1)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


RATIOS = ("eSGD", "rSGD", "eSGD noise=0", "noise's own cost", "noise off the caller")


def processes(argv: list[str], k: int) -> None:
    """Run this benchmark in ``k`` fresh processes; print each one's ratios and the medians."""
    rows = []
    for i in range(k):
        done = subprocess.run([sys.executable, __file__, *argv, "--ratios-json"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        lines = done.stdout.strip().splitlines()
        if i == 0:
            print(lines[0])  # the header: machine, torch, threads, model
        rows.append(json.loads(lines[-1]))
        print(f"process {i + 1}/{k}: " + ", ".join(f"{n} {rows[-1][n]:.3f}" for n in RATIOS))
    print(
        f"median of {k} processes: "
        + ", ".join(f"{n} {statistics.median(r[n] for r in rows):.3f}" for n in RATIOS)
        + " (target <= 1.05 for eSGD and rSGD)"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_timing_options(parser)
    parser.add_argument("--model", default="smallconvnet")
    parser.add_argument(
        "--breakdown", action="store_true", help="also time each kernel eSGD adds per inner step"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="run the comparison in this many fresh processes and print the median of their "
        "ratios (memory placement moves a process's figures by several %%)",
    )
    parser.add_argument("--ratios-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.processes > 1:
        raw = list(sys.argv[1:] if argv is None else argv)
        rest = [a for i, a in enumerate(raw) if not a.startswith("--processes")
                and not (i > 0 and raw[i - 1] == "--processes")]  # fmt: skip
        processes([a for a in rest if a != "--breakdown"], args.processes)
        return
    global clock, DEVICE
    clock = CLOCK[args.clock]
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = create_model(args.model, num_classes=10, in_channels=3, image_size=32).to(DEVICE)
    n_params = sum(p.numel() for p in net.parameters())
    print(
        f"wideflat optimizer overhead | {cpu_model()}, "
        f"torch {torch.__version__}, {DEVICE}, {args.threads} thread(s), {args.clock} clock | "
        f"{args.model} "
        f"({n_params / 1e6:.2f}M params), batch {args.batch}, {args.rounds} rounds, medians"
    )
    xs, ts = (t.to(DEVICE) for t in data(args.batch))
    # Baseline and variant train the same module objects, so both run on the same memory
    # (separate copies measured up to ±10 % apart from allocation placement alone).
    model = copy.deepcopy(net)
    r1 = compare(
        "eSGD L=5 vs 5 SGD steps",
        sgd_runner([model], Batches(xs, ts), 5),
        esgd_runner(model, Batches(xs, ts), 5),
        args.rounds,
    )
    r0 = compare(
        "eSGD L=5 noise=0 vs 5 SGD steps",
        sgd_runner([model], Batches(xs, ts), 5),
        esgd_runner(model, Batches(xs, ts), 5, noise=0.0),
        args.rounds,
    )
    r4 = compare(
        "eSGD L=5: noise vs noise=0",
        esgd_runner(model, Batches(xs, ts), 5, noise=0.0),
        esgd_runner(model, Batches(xs, ts), 5),
        args.rounds,
        base="noise=0",
    )
    r3 = compare(
        "eSGD L=5: noise off vs on caller",
        esgd_runner(model, Batches(xs, ts), 5, worker=False),
        esgd_runner(model, Batches(xs, ts), 5),
        args.rounds,
        base="caller",
    )
    rsgd_step, replicas = rsgd_runner(copy.deepcopy(net), Batches(xs, ts), 3)
    r2 = compare(
        "rSGD y=3 vs 3 SGD steps (3 models)",
        sgd_runner(replicas, Batches(xs, ts), 1),
        rsgd_step,
        args.rounds,
    )
    print(
        f"per-gradient overhead ratios: eSGD {r1:.3f}, rSGD {r2:.3f} (target <= 1.05); "
        f"eSGD without Langevin noise {r0:.3f}; the noise's own cost (with / without, side "
        f"by side) {r4:.3f}; noise drawn off the calling thread / serially on it {r3:.3f}"
    )
    if args.ratios_json:
        print(json.dumps(dict(zip(RATIOS, (r1, r2, r0, r4, r3), strict=True))))
    if args.breakdown:
        breakdown(copy.deepcopy(net), Batches(xs, ts), args.rounds)


if __name__ == "__main__":
    main()
