"""Which σ ranks ResNet-20 minima? δE of finished runs' final weights, BatchNorm statistics
kept ("eval") or re-estimated per perturbed network ("recompute").

    OMP_NUM_THREADS=1 python docs/deep/sigma_probe.py runs/matched/fashion-resnet20 \
        sgd-s0,esgd-s0,rsgd-s0 2000 5

Arguments: a compare folder, run names, examples of the δE data (the run's own: here the
augmented training copy of --flatness-protocol paper), draws per σ. Prints one line per run
and policy with δE (%) ± s.e. at σ = 0, 0.05, 0.1, 0.2, 0.3, 0.5. The results of 2026-12-03
are in docs/results_deep.md ("Choosing σ for the ResNet").
"""

import json
import sys
import time
from pathlib import Path

import torch

from wideflat.experiments.build import build
from wideflat.experiments.checkpoint import load_checkpoint
from wideflat.experiments.config import TrainConfig
from wideflat.flatness import local_energy

torch.set_num_threads(1)
root, runs = Path(sys.argv[1]), sys.argv[2].split(",")
n, samples = int(sys.argv[3]), int(sys.argv[4])
sigmas = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5]
for name in runs:
    folder = root / name
    cfg = TrainConfig.from_dict(json.loads((folder / "run.json").read_text())["config"])
    run = build(cfg, torch.device("cpu"), fresh=False)
    run.load_state_dict(load_checkpoint(folder / "checkpoints")[1], folder)  # final weights
    model = run.eval_model()  # rSGD: the center, BatchNorm statistics recomputed
    x, t = run.data.energy
    for bn in ("eval", "recompute"):
        began = time.perf_counter()
        p = local_energy(model, (x[:n], t[:n]), sigmas, samples, seed=0, bn=bn,
                         batch_size=500, progress=False)  # fmt: skip
        cells = [f"{100 * d:.2f} ± {100 * s:.2f}" for d, s in
                 zip(p.delta_error, p.delta_error_se, strict=True)]  # fmt: skip
        print(f"{name} bn={bn} ({time.perf_counter() - began:.0f} s): " + " | ".join(cells))
