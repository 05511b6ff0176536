"""δE profiles over a σ grid (the paper's Fig. 3 style) of the minima a matched-error study
kept, re-measured from their weights without training again.

    OMP_NUM_THREADS=1 python docs/deep/matched_profiles.py \
        runs/matched/fashion-resnet20-bn docs/deep/matched-resnet20-bn-profiles \
        train-error-0.02 10000 5

Arguments: the study folder (its runs trained with ``energy_save_weights=true``; finished runs
only are measured), the output folder, the trigger whose minima are measured, the examples of
the δE data (a random subset, seed 0, the same for every run, of the run's own δE data: under
``--flatness-protocol paper`` the augmented training copy) and the draws per σ.
σ ∈ {0, 0.05, 0.1, 0.2, 0.3, 0.5}, multiplicative, BatchNorm statistics re-estimated for
every perturbed network.

Writes, per run, ``OUT/<run>/energy/<trigger>.json`` (the new profile) beside copies of the
run's ``run.json`` and ``metrics.jsonl``, so that wideflat's own tables and figures read OUT as
a study; then ``OUT/profiles.png`` and ``OUT/profiles.md`` (mean ± s.e. over seeds per σ,
and each method − SGD paired by seed). A run already measured is skipped: re-run to continue.
"""

import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch

from wideflat.experiments import plots
from wideflat.experiments.measured import load_measured, measured_names
from wideflat.flatness import LocalEnergyProfile, local_energy

SIGMAS = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5]


def measure(src: Path, out: Path, trigger: str, n: int, draws: int) -> None:
    for folder in sorted(p for p in src.iterdir() if trigger in measured_names(p)):
        if json.loads((folder / "run.json").read_text()).get("status") != "finished":
            continue  # measured when it is (its records are copied with the profile)
        target = out / folder.name / "energy" / f"{trigger}.json"
        if target.is_file():
            continue
        began = time.perf_counter()
        model, data = load_measured(folder, trigger)
        profile = local_energy(model, data, SIGMAS, draws, bn="recompute", subset=n, seed=0,
                               batch_size=500, progress=False)  # fmt: skip
        target.parent.mkdir(parents=True, exist_ok=True)
        for name in ("run.json", "metrics.jsonl"):
            shutil.copyfile(folder / name, out / folder.name / name)
        profile.to_json(target)
        print(f"{folder.name}: {time.perf_counter() - began:.0f} s", flush=True)


def table(runs: list[plots.RunRecord], trigger: str) -> str:
    profiles = {(r.label, r.seed): LocalEnergyProfile.from_dict(r.triggered[trigger])
                for r in runs if trigger in r.triggered}  # fmt: skip
    labels = sorted({label for label, _ in profiles}, key=plots._sort_key)
    head = "| method | seeds | " + " | ".join(f"σ = {s:g}" for s in SIGMAS[1:]) + " |"
    lines = [f"δE_train (%) at {trigger}, mean ± s.e. over seeds", "", head,
             "|---|---:|" + "---:|" * (len(SIGMAS) - 1)]  # fmt: skip
    for label in labels:
        rows = [p.delta_error for (m, _), p in sorted(profiles.items()) if m == label]
        lines.append(f"| {plots.LABELS.get(label, label)} | {len(rows)} | "
                     + " | ".join(_cell([100 * r[i] for r in rows])
                                  for i in range(1, len(SIGMAS))) + " |")  # fmt: skip
    lines += ["", "Paired with SGD (same seed), method − SGD in points, mean ± s.e.", "",
              head, "|---|---:|" + "---:|" * (len(SIGMAS) - 1)]  # fmt: skip
    for label in labels:
        seeds = [s for (m, s) in profiles if m == label and ("sgd", s) in profiles]
        if label == "sgd" or not seeds:
            continue
        diffs = [[100 * (profiles[label, s].delta_error[i] - profiles["sgd", s].delta_error[i])
                  for s in seeds] for i in range(1, len(SIGMAS))]  # fmt: skip
        lines.append(f"| {plots.LABELS.get(label, label)} | {len(seeds)} | "
                     + " | ".join(_cell(d) for d in diffs) + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _cell(values: list[float]) -> str:
    mean, std, n = plots._mean_std(values)
    return f"{mean:.2f}" if n < 2 else f"{mean:.2f} ± {std / math.sqrt(n):.2f}"


if __name__ == "__main__":
    torch.set_num_threads(1)
    src, out, trigger = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    measure(src, out, trigger, int(sys.argv[4]), int(sys.argv[5]))
    runs = [r for r in plots.collect_runs(out) if r.path.parent == out]
    plots.plot_energy_matched(runs, out / "profiles.png", title=f"{src.name}: {trigger}")
    (out / "profiles.md").write_text(table(runs, trigger))
    print((out / "profiles.md").read_text())
