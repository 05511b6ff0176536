"""benchmarks/throughput.py (a script of the source tree): interleaved timing of run steps."""

import importlib.util
from pathlib import Path

from wideflat.experiments.presets import preset_config

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"


def _throughput():
    spec = importlib.util.spec_from_file_location("wideflat_benchmark_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.throughput


def test_throughput_times_each_method_and_counts_all_gradients(fashion_root):
    base = dict(data_root=fashion_root, model="mlp", train_subset=0, epochs=3, batch_size=32,
                lr=0.05, lr_schedule="multistep:2", energy_epochs=(), train_eval_subset=64,
                eval_batch=64, gamma="exp:auto:x10")  # fmt: skip
    cfgs = {k: preset_config("fashion-smallconvnet", k, **base) for k in ("sgd", "esgd", "rsgd")}
    table = _throughput()(cfgs, steps=2, rounds=3, warmup=1, device="cpu")
    assert set(table) == {"sgd", "esgd", "rsgd"}
    for row in table.values():
        assert 0 < row["min"] <= row["images_per_s"] <= row["max"] and row["step_ms"] > 0
    # eSGD's step spends L = 5 gradients: its steps take longer than SGD's.
    assert table["esgd"]["step_ms"] > table["sgd"]["step_ms"]
