"""The training runner: budget rescaling, schedules, kill/resume bit-identity, NaN policy, plots."""

import dataclasses
import gzip
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wideflat.experiments import plots
from wideflat.experiments.checkpoint import InjectedFault, load_checkpoint, verify_checkpoint
from wideflat.experiments.config import TrainConfig, parse_gamma, parse_lr_schedule
from wideflat.experiments.presets import list_presets, preset_config
from wideflat.experiments.runner import (
    NonFiniteRunError,
    lr_at,
    read_metrics,
    steps_per_epoch,
    train,
)

TIMING = {"epoch_seconds", "train_seconds", "images_per_s", "eval_seconds"}


def write_fake_fashion(folder: Path, n_train: int = 256, n_test: int = 64) -> Path:
    """Four Fashion-MNIST IDX files; labels are a function of the image so they can be learnt."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (images[:, :14].mean(axis=(1, 2)) > 127.5).astype(np.uint8) * 3
        for name, arr in zip(names[split], (images, labels), strict=True):
            header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
            (folder / f"{name}.gz").write_bytes(gzip.compress(header + arr.tobytes()))
    return folder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(write_fake_fashion(tmp_path_factory.mktemp("fashion")))


def tiny(data_root, kind="sgd", **kw):
    base = dict(
        data_root=data_root,
        model="mlp",
        train_subset=0,
        epochs=3,
        batch_size=32,
        lr=0.05,
        lr_schedule="multistep:2",
        eval_every=1,
        energy_epochs=(),
        train_eval_subset=64,
        eval_batch=64,
        gamma="exp:auto:x10",  # short runs: keep lr·K·γ < 1
    )
    base.update(kw)
    return preset_config("fashion-smallconvnet", kind, **base)


def test_budget_rescaling_gives_every_method_the_same_gradients_per_epoch():
    batches = 78
    per_epoch = {}
    for kind in ("sgd", "esgd", "rsgd", "sam", "rsgdxy"):
        cfg = preset_config("fashion-smallconvnet", kind, inner_steps=3, y=3)
        per_epoch[kind] = steps_per_epoch(cfg, batches) * cfg.grad_evals_per_step
    assert per_epoch == {"sgd": 78, "esgd": 78, "rsgd": 78, "sam": 78, "rsgdxy": 234}
    cfg = preset_config("fashion-smallconvnet", "esgd", inner_steps=5)
    assert steps_per_epoch(cfg, batches) == 15  # 78 // 5: whole steps, the rest dropped


def test_lr_schedules_and_warmup():
    cfg = TrainConfig(lr=0.1, epochs=10, lr_schedule="cosine")
    assert lr_at(cfg, 0) == pytest.approx(0.1) and lr_at(cfg, 5) == pytest.approx(0.05)
    assert lr_at(cfg, 10) == pytest.approx(0.0, abs=1e-12)
    cfg = TrainConfig(lr=0.01, epochs=10, lr_schedule="exponential:2:0.97")
    assert lr_at(cfg, 3.9) == pytest.approx(0.0097) and lr_at(cfg, 4) == pytest.approx(
        0.01 * 0.97**2
    )
    cfg = TrainConfig(lr=0.1, epochs=10, warmup_epochs=1, warmup_lr=0.01, lr_schedule="multistep:5")
    assert lr_at(cfg, 0) == pytest.approx(0.01) and lr_at(cfg, 0.5) == pytest.approx(0.055)
    assert lr_at(cfg, 1) == pytest.approx(0.1) and lr_at(cfg, 5) == pytest.approx(0.01)


@pytest.mark.parametrize(
    "text", ["exp:abc:x10", "exp:0.1", "cos:1", "exp:-1:x10", "exp:0.1:x0", "const:", ""]
)
def test_bad_gamma_schedules_name_the_string(text):
    with pytest.raises(ValueError, match="Invalid gamma schedule"):
        parse_gamma(text)


@pytest.mark.parametrize("text", ["multistep:20,10", "multistep:", "exponential:0:0.9", "step"])
def test_bad_lr_schedules_name_the_string(text):
    with pytest.raises(ValueError, match="Invalid lr schedule"):
        parse_lr_schedule(text)


def test_every_preset_resolves_for_every_method():
    for name in list_presets():
        for kind in ("sgd", "esgd", "rsgd", "rsgdxy", "sam"):
            cfg = preset_config(name, kind)
            assert cfg.name == name and cfg.epochs >= 1


def _final_state(run: Path) -> dict:
    _, payload = load_checkpoint(run / "checkpoints")
    return payload


def _equal_payloads(a, b, where="payload"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            if k != "train_seconds":
                _equal_payloads(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _equal_payloads(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), where


def _rows(run: Path) -> list[dict]:
    return [
        {k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(run / "metrics.jsonl")
    ]


@pytest.mark.parametrize("kind", ["rsgd", "esgd"])
def test_fault_in_save_then_resume_is_bit_identical(tmp_path, data_root, kind, monkeypatch):
    cfg = tiny(data_root, kind, energy_epochs=(2,), energy_samples=2, energy_subset=32)
    train(cfg, tmp_path / "ref", progress=False)
    step_2 = (
        2 * json.loads((tmp_path / "ref" / "run.json").read_text())["budget"]["steps_per_epoch"]
    )
    monkeypatch.setenv("WIDEFLAT_FAULT", f"save:after_tmp@step={step_2}")
    with pytest.raises(InjectedFault):
        train(cfg, tmp_path / "cut", progress=False)
    monkeypatch.delenv("WIDEFLAT_FAULT")
    assert len(read_metrics(tmp_path / "cut" / "metrics.jsonl")) == 2  # written before the save
    train(cfg, tmp_path / "cut", resume="auto", progress=False)
    _equal_payloads(_final_state(tmp_path / "ref"), _final_state(tmp_path / "cut"))
    assert _rows(tmp_path / "ref") == _rows(tmp_path / "cut")
    assert [r["epoch"] for r in read_metrics(tmp_path / "cut" / "metrics.jsonl")] == [1, 2, 3]
    ref = json.loads((tmp_path / "ref" / "energy" / "epoch-0002.json").read_text())
    cut = json.loads((tmp_path / "cut" / "energy" / "epoch-0002.json").read_text())
    assert ref["delta_error"] == cut["delta_error"]


def test_killed_process_resumes_bit_identical(tmp_path, data_root):
    """A real process death (os._exit inside the save, like SIGKILL), resumed by the CLI."""
    args = [
        sys.executable, "-m", "wideflat.cli", "train", "--method", "rsgdxy", "--model", "mlp",
        "--data-root", data_root, "--train-subset", "0", "--epochs", "3", "--batch-size", "32",
        "--lr", "0.05", "--set", "train_eval_subset=64", "--set", "eval_batch=64",
        "--energy-epochs", "--no-progress", "--y", "2", "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = subprocess.run([*args, "--out", str(tmp_path / "ref")], env=env, capture_output=True)
    assert ref.returncode == 0, ref.stderr.decode()
    steps = json.loads((tmp_path / "ref" / "run.json").read_text())["budget"]["steps_per_epoch"]
    env_fault = {**env, "WIDEFLAT_FAULT": f"save:after_rename:exit@step={2 * steps}"}
    cut = subprocess.run(
        [*args, "--out", str(tmp_path / "cut")], env=env_fault, capture_output=True
    )
    assert cut.returncode == 1
    again = subprocess.run(
        [*args, "--out", str(tmp_path / "cut"), "--resume", "auto"], env=env, capture_output=True
    )
    assert again.returncode == 0, again.stderr.decode()
    assert "resuming" in again.stderr.decode() and "from epoch 1" in again.stderr.decode()
    _equal_payloads(_final_state(tmp_path / "ref"), _final_state(tmp_path / "cut"))
    assert _rows(tmp_path / "ref") == _rows(tmp_path / "cut")


@pytest.mark.parametrize(("kind", "replica"), [("rsgd", 1), ("sgd", 0), ("sam", 0)])
def test_nonfinite_loss_stops_in_the_same_step_with_checkpoint_intact(
    tmp_path, data_root, monkeypatch, kind, replica
):
    cfg = tiny(data_root, kind, epochs=3)
    out = tmp_path / "run"
    train(cfg.replace(epochs=1), tmp_path / "probe", progress=False)
    steps = json.loads((tmp_path / "probe" / "run.json").read_text())["budget"]["steps_per_epoch"]
    bad_step = steps + 2  # epoch 2
    monkeypatch.setenv("WIDEFLAT_FAULT", f"loss:nan@step={bad_step}@replica={replica}")
    with pytest.raises(NonFiniteRunError) as info:
        train(cfg, out, progress=False)
    assert str(info.value) == f"non-finite loss at epoch 2 step {bad_step} replica {replica}"
    assert info.value.exit_code == 3
    steps_dirs = sorted((out / "checkpoints").glob("step-*"))
    assert [d.name for d in steps_dirs] == [f"step-{steps:09d}"]
    verify_checkpoint(steps_dirs[-1])
    _, payload = load_checkpoint(out / "checkpoints")
    assert all(torch.isfinite(t).all() for t in payload["model"].values() if t.is_floating_point())
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


def test_measurements_do_not_change_the_trajectory(tmp_path, data_root):
    cfg = tiny(data_root, "esgd", epochs=2)
    train(cfg, tmp_path / "plain", progress=False)
    measured = cfg.replace(energy_epochs=(0, 1, 2), energy_samples=2, energy_subset=32)
    train(measured, tmp_path / "measured", progress=False)
    a, b = _final_state(tmp_path / "plain"), _final_state(tmp_path / "measured")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k])
    assert sorted(p.name for p in (tmp_path / "measured" / "energy").iterdir()) == [
        "epoch-0000.json", "epoch-0001.json", "epoch-0002.json",
    ]  # fmt: skip


def test_run_folder_records_config_environment_and_strict_json(tmp_path, data_root):
    cfg = tiny(data_root, "rsgd", epochs=2, seed=3)
    summary = train(cfg, tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "finished" and record["seed"] == 3
    assert TrainConfig.from_dict(record["config"]) == cfg
    assert record["environment"]["torch"] == torch.__version__
    assert record["budget"]["grad_evals_per_step"] == 3
    assert record["summary"]["test_error"] == summary.test_error
    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))


def test_plots_survive_nan_empty_and_one_row_metrics(tmp_path):
    def run_folder(name, label, lines, seed=0):
        d = tmp_path / "study" / name
        d.mkdir(parents=True)
        (d / "run.json").write_text(
            json.dumps({"label": label, "seed": seed, "status": "finished"})
        )
        (d / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))

    run_folder("sgd-s0", "sgd", ['{"epoch": 1, "test_error": null, "nonfinite": ["test_error"]}'])
    run_folder("esgd-s0", "esgd", [])
    run_folder("rsgd-s0", "rsgd", ['{"epoch": 1, "test_error": 0.5}', "not json"])
    (tmp_path / "study" / "rsgd-s0" / "energy").mkdir()
    (tmp_path / "study" / "rsgd-s0" / "energy" / "epoch-0001.json").write_text('{"sigmas": [0]}')
    runs = plots.collect_runs(tmp_path / "study")
    assert sorted(r.label for r in runs) == ["esgd", "rsgd", "sgd"]
    assert plots.plot_test_error(runs, tmp_path / "fig2.png").stat().st_size > 0
    assert plots.plot_energy(runs, tmp_path / "fig3.png").stat().st_size > 0
    assert plots.plot_energy([], tmp_path / "empty.png").stat().st_size > 0
    table = plots.format_table(plots.summary_rows(runs))
    assert "| SGD | 1 | – |" in table
    assert not any(math.isnan(r["test_error"]) is False for r in plots.summary_rows([]))


def test_vmap_engine_trains_like_the_loop_engine(tmp_path, data_root):
    loop = train(tiny(data_root, "rsgd", epochs=2), tmp_path / "loop", progress=False)
    vmap = train(
        tiny(data_root, "rsgd", epochs=2, engine="vmap"), tmp_path / "vmap", progress=False
    )
    assert vmap.test_error == pytest.approx(loop.test_error, abs=1 / 64)
    assert vmap.train_loss == pytest.approx(loop.train_loss, rel=1e-4)


def test_esgd_with_a_non_sgd_base_is_refused():
    with pytest.raises(ValueError, match="Invalid optimizer: 'adam' with esgd"):
        TrainConfig(method="esgd", optimizer="adam", nesterov=False)


def test_throughput_times_each_method_and_counts_all_gradients(data_root):
    from wideflat.experiments.runner import throughput

    cfgs = {k: tiny(data_root, k) for k in ("sgd", "esgd", "rsgd")}
    table = throughput(cfgs, steps=2, rounds=3, warmup=1, device="cpu")
    assert set(table) == {"sgd", "esgd", "rsgd"}
    for row in table.values():
        assert 0 < row["min"] <= row["images_per_s"] <= row["max"] and row["step_ms"] > 0
    # eSGD's step spends L = 5 gradients: its steps take longer than SGD's.
    assert table["esgd"]["step_ms"] > table["sgd"]["step_ms"]


def test_rsgd_center_is_evaluated_with_recomputed_batchnorm_statistics(data_root):
    from torch.nn.modules.batchnorm import _BatchNorm

    from wideflat.experiments.runner import _as_float, _Run
    from wideflat.replicas import recompute_bn

    cfg = tiny(data_root, "rsgd", model="resnet20", epochs=1)
    run = _Run(cfg, torch.device("cpu"))
    run.start_gamma(fresh=True)
    for step in (1, 2):
        run.probe.begin(step)
        run.one_step()
    evaluated = run.eval_model()
    averaged = run.opt.center()  # buffers averaged over replicas, not recomputed
    x = _as_float(run.data["x"], run.data["mean"], run.data["std"])
    expected = recompute_bn(run.opt.center(), [x[i : i + 64] for i in range(0, len(x), 64)])

    def stats(m):
        return [b.running_mean for b in m.modules() if isinstance(b, _BatchNorm)]

    assert stats(evaluated) and not torch.equal(stats(evaluated)[0], stats(averaged)[0])
    for got, want in zip(stats(evaluated), stats(expected), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_gamma_schedule_that_overshoots_is_warned_about_with_the_number(tmp_path, data_root):
    notes = []
    cfg = tiny(data_root, "rsgd", epochs=1, lr=0.05, coupling_every=2, gamma="exp:1:x100")
    with pytest.warns(RuntimeWarning):  # the focusing scheduler's own warning, at runtime
        train(cfg, tmp_path / "run", progress=False, log=notes.append)
    # planned peak: lr · K · γ_final = 0.05 · 2 · 100 = 10, at the end of epoch 1
    assert any("coupling step of 10 >= 1 at epoch 1" in n for n in notes), notes
    notes.clear()
    train(tiny(data_root, "rsgd", epochs=1), tmp_path / "ok", progress=False, log=notes.append)
    assert not any("coupling step" in n for n in notes)


def test_shorter_epochs_override_keeps_valid_energy_epochs():
    from wideflat.experiments.presets import preset_config

    assert preset_config("fashion-smallconvnet", "sgd", epochs=1).energy_epochs == (1,)
    cfg = preset_config("fashion-smallconvnet", "sgd", epochs=7)
    assert cfg.energy_epochs == (5, 7)
    explicit = preset_config("fashion-smallconvnet", "sgd", epochs=7, energy_epochs=(2,))
    assert explicit.energy_epochs == (2,)


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(TrainConfig)])
def test_every_config_field_is_type_checked(field):
    with pytest.raises(ValueError, match=f"^Invalid {field}: "):
        TrainConfig(**{field: {"a": "dict"}})


@pytest.mark.parametrize(
    "changes",
    [{"lr": 1e39}, {"weight_decay": 1e300}, {"momentum": 3.5e38}, {"energy_sigmas": (0.0, 1e39)}],
)
def test_finite_values_that_overflow_float32_are_refused(changes):
    field = next(iter(changes))
    with pytest.raises(ValueError, match=f"Invalid {field}: .*float32"):
        TrainConfig(**changes)
    TrainConfig(lr=3e38, momentum=0.9)  # the float32 range itself is fine


@pytest.mark.parametrize("text", ["const:1e300", "exp:0.1:x1e39", "exp:1e39:0.1"])
def test_gamma_schedules_past_float32_are_refused(text):
    with pytest.raises(ValueError, match="Invalid gamma schedule: .*float32"):
        parse_gamma(text)


def test_seed_range_is_named():
    with pytest.raises(
        ValueError, match=r"Invalid seed: 9223372036854775808 .*0\.\.9223372036854775807"
    ):
        TrainConfig(seed=2**63)
    TrainConfig(seed=2**63 - 1)


def test_run_json_records_the_data_folder_actually_read(tmp_path, data_root):
    train(tiny(data_root, "sgd", epochs=1), tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert Path(record["data_source"]).resolve() == Path(data_root).resolve()
