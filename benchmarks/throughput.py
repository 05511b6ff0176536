"""Training throughput of several run configs, measured interleaved in one process.

Each config gets the run's own data, model, optimizer, schedulers and step function
(``wideflat.experiments.build.build``: exactly what ``wideflat train`` times, evaluation
excluded). After ``warmup`` untimed steps each, the configs take turns: every round times
``steps`` optimizer steps of each, so a change in machine load hits all of them alike.
Images/s counts minibatch gradients × batch size (all replicas and eSGD inner steps), i.e.
training data consumed per second. Figures are medians over rounds.

    python benchmarks/throughput.py [--preset fashion-smallconvnet] [--methods sgd esgd rsgd]
        [--steps 10] [--rounds 5] [--warmup 3] [--device cuda] [--set FIELD=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from wideflat.experiments.build import build, resolve_device
from wideflat.experiments.config import TrainConfig
from wideflat.experiments.methods import autocast


def throughput(
    configs: dict[str, TrainConfig],
    *,
    steps: int = 10,
    rounds: int = 5,
    warmup: int = 3,
    device: str | torch.device | None = None,
) -> dict[str, dict[str, float]]:
    """name → ``{"images_per_s": median, "min": ..., "max": ..., "step_ms": median ms}``.

    Example:
        >>> from wideflat.experiments.presets import preset_config
        >>> cfgs = {k: preset_config("fashion-smallconvnet", k) for k in ("sgd", "rsgd")}
        >>> table = throughput(cfgs, steps=2, rounds=1)  # doctest: +SKIP
    """
    device = resolve_device(device)
    runs = {name: build(cfg, device) for name, cfg in configs.items()}
    position = dict.fromkeys(runs, 0)

    def advance(name: str, n: int) -> None:
        run = runs[name]
        for _ in range(n):
            position[name] += 1
            run.probe.begin(position[name])
            with autocast(device, run.cfg.amp):
                run.step()
            if run.gamma_sched is not None:
                run.gamma_sched.step()
            run.lr_sched.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for name in runs:
        advance(name, warmup)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name in runs:
            sync()
            began = time.perf_counter()
            advance(name, steps)
            sync()
            samples[name].append(time.perf_counter() - began)
    result = {}
    for name, run in runs.items():
        images = steps * run.cfg.grad_evals_per_step * run.cfg.batch_size
        rates = [images / t for t in samples[name]]
        result[name] = {
            "images_per_s": float(np.median(rates)),
            "min": float(min(rates)),
            "max": float(max(rates)),
            "step_ms": float(np.median(samples[name])) * 1000 / steps,
        }
    return result


def main() -> None:
    from wideflat.cli import parse_set
    from wideflat.experiments.presets import preset_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="fashion-smallconvnet")
    p.add_argument("--methods", nargs="+", default=["sgd", "esgd", "rsgd", "sam"])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    args = p.parse_args()
    overrides = {name: value for _, name, value in map(parse_set, args.set)}
    configs = {m: preset_config(args.preset, m, **overrides) for m in args.methods}
    table = throughput(configs, steps=args.steps, rounds=args.rounds, warmup=args.warmup,
                       device=args.device)  # fmt: skip
    print(json.dumps(table, indent=2))
    sgd = table.get("sgd", {}).get("images_per_s")
    for name, row in table.items():
        ratio = f" ({row['images_per_s'] / sgd:.2f}x sgd)" if sgd else ""
        print(f"{name:>7}: {row['images_per_s']:9.0f} images/s{ratio}")


if __name__ == "__main__":
    main()
