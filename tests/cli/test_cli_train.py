"""`wideflat train` / `wideflat compare`: bad inputs fail in one line without touching results;
`compare` runs end to end, and re-running it keeps finished runs; nothing is silently lost (a
resume that would discard a run or a metrics row is refused, and a failed run says so)."""

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from _cli import run_cli

from wideflat.cli import main
from wideflat.experiments.checkpoint import load_checkpoint, save_checkpoint


def tree_hash(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def tiny_args(data_root: str) -> list[str]:
    return [
        "--model", "mlp", "--data-root", data_root, "--train-subset", "0", "--epochs", "2",
        "--batch-size", "32", "--lr", "0.05", "--set", "train_eval_subset=64",
        "--set", "eval_batch=64", "--energy-epochs", "--no-progress", "--device", "cpu",
        "--gamma", "exp:auto:x10",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory, write_fashion):
    root = tmp_path_factory.mktemp("cli")
    data = str(write_fashion(root / "data"))
    for seed, name in ((0, "a"), (1, "b")):
        code = main(["train", *tiny_args(data), "--seed", str(seed), "--out", str(root / name)])
        assert code == 0
    return root, data


BAD = {
    "unknown method": (["--method", "adamw"], "invalid choice: 'adamw'"),
    "unknown model": (["--model", "nope"], "unknown model 'nope'"),
    "unknown dataset": (["--dataset", "nope"], "unknown dataset 'nope'"),
    "y = 0": (["--method", "rsgd", "--y", "0"], "Invalid y: 0"),
    "negative lr": (["--lr", "-0.1"], "Invalid lr: -0.1"),
    "unparsable gamma": (["--method", "rsgd", "--gamma", "exp:abc:x10"], "Invalid gamma schedule"),
    "unparsable lr schedule": (["--lr-schedule", "multistep:9,3"], "Invalid lr schedule"),
    "epochs not an int": (["--epochs", "two"], "not an integer: 'two'"),
    "unknown --set field": (["--set", "nope=1"], "unknown config field 'nope'"),
    "budget for sgd": (["--budget", "per-replica"], "Invalid budget"),
    "missing data folder": (["--data-root", "/nonexistent/wideflat"], "data folder not found"),
    "resume path missing": (["--resume", "/nonexistent/ckpt"], "resume checkpoint not found"),
    "existing run without --resume": ([], "already holds a run"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_nonzero_and_leaves_results_untouched(case, study, capsys):
    root, data = study
    before = tree_hash(root)
    extra, message = BAD[case]
    code, out, err = run_cli(["train", *tiny_args(data), "--out", str(root / "a"), *extra], capsys)
    assert code == 2
    assert message in err
    assert err.startswith("wideflat train: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert tree_hash(root) == before


def test_resume_from_a_foreign_checkpoint_is_refused(study, capsys):
    root, data = study
    before = tree_hash(root)
    argv = ["train", *tiny_args(data), "--seed", "0", "--out", str(root / "c"), "--resume"]
    code, _, err = run_cli([*argv, str(root / "b")], capsys)
    assert code == 2 and "config hash mismatch" in err and err.count("\n") == 1
    assert tree_hash(root) == before and not (root / "c").exists()


def test_output_folder_that_is_a_file(study, capsys, tmp_path):
    _, data = study
    target = tmp_path / "file"
    target.write_text("keep me")
    code, _, err = run_cli(["train", *tiny_args(data), "--out", str(target)], capsys)
    assert code == 2 and "is not a folder" in err and target.read_text() == "keep me"


def test_nonfinite_loss_exits_3_with_the_step(study, capsys, tmp_path, faults):
    _, data = study
    faults.loss(float("inf"), step=3, replica=2)
    argv = ["train", *tiny_args(data), "--method", "rsgd", "--out", str(tmp_path / "r")]
    code, _, err = run_cli(argv, capsys)
    assert code == 3
    assert err.strip().splitlines()[-1] == (
        "wideflat train: non-finite loss at epoch 2 step 3 replica 2"
    )


def test_compare_end_to_end_and_rerun_keeps_finished_runs(study, capsys, tmp_path):
    _, data = study
    argv = ["compare", *tiny_args(data), "--methods", "sgd", "rsgd", "rsgdxy", "--seeds", "0", "1"]
    argv += ["--out", str(tmp_path / "s")]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    s = tmp_path / "s"
    assert sorted(p.name for p in s.iterdir() if p.is_dir()) == [
        "rsgd-s0", "rsgd-s1", "rsgdxy-s0", "rsgdxy-s1", "sgd-s0", "sgd-s1",
    ]  # fmt: skip
    for name in ("summary.md", "summary.json", "test_error.png", "local_energy.png"):
        assert (s / name).stat().st_size > 0
    rows = json.loads((s / "summary.json").read_text())
    assert [r["label"] for r in rows] == ["sgd", "rsgd", "rsgdxy"]
    assert all(r["runs"] == 2 and 0 <= r["test_error"] <= 100 for r in rows)
    assert "| rSGD×y | 2 |" in out
    before = tree_hash(s)
    code, out, err = run_cli(argv, capsys)
    assert code == 0 and err.count("finished, kept") == 6
    after = tree_hash(s)
    assert {k: v for k, v in after.items() if "/" in k} == {
        k: v for k, v in before.items() if "/" in k
    }


def test_same_seed_is_bitwise_reproducible_and_another_seed_is_not(study, capsys):
    root, data = study
    code, _, _ = run_cli(
        ["train", *tiny_args(data), "--seed", "0", "--out", str(root / "a2")], capsys
    )
    assert code == 0
    _, a = load_checkpoint(root / "a" / "checkpoints")
    _, a2 = load_checkpoint(root / "a2" / "checkpoints")
    _, b = load_checkpoint(root / "b" / "checkpoints")
    assert all(torch.equal(a["model"][k], a2["model"][k]) for k in a["model"])
    assert not all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    rows = [(root / n / "metrics.jsonl").read_text().splitlines() for n in ("a", "a2")]
    strip = [[{k: v for k, v in json.loads(x).items() if "seconds" not in k and k != "images_per_s"}
              for x in r] for r in rows]  # fmt: skip
    assert strip[0] == strip[1]


# --- nothing silently lost: resume refusals, damaged metrics, failures as one line ---------


def _copy_run(study, tmp_path, name: str = "a") -> Path:
    root, _ = study
    return Path(shutil.copytree(root / name, tmp_path / "run"))


def _resume(data: str, run: Path, *extra: str) -> list[str]:
    return ["train", *tiny_args(data), "--out", str(run), "--resume", "auto", *extra]


@pytest.mark.parametrize("damage", ["checkpoints deleted", "manifests lost", "interrupted"])
def test_resume_auto_without_a_committed_checkpoint_refuses_and_changes_nothing(
    damage, study, capsys, tmp_path
):
    _, data = study
    run = _copy_run(study, tmp_path)
    if damage == "checkpoints deleted":  # a finished run whose checkpoints were removed
        shutil.rmtree(run / "checkpoints")
    else:  # the step folders lost their manifests; the rank files are intact
        for manifest in run.glob("checkpoints/step-*/MANIFEST.json"):
            manifest.unlink()
    if damage == "interrupted":
        record = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**record, "status": "running"}))
    before = tree_hash(run)
    code, _, err = run_cli(_resume(data, run), capsys)
    assert code == 2, err
    assert err.startswith("wideflat train: ") and err.count("\n") == 1, err
    assert str(run) in err and "no committed checkpoint" in err and "--out" in err
    assert tree_hash(run) == before


def test_resume_auto_in_an_empty_or_missing_folder_starts_fresh(study, capsys, tmp_path):
    _, data = study
    (tmp_path / "empty").mkdir()
    for run in (tmp_path / "empty", tmp_path / "missing"):
        code, _, err = run_cli(_resume(data, run), capsys)
        assert code == 0, err
        assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_run_cut_in_its_first_save_restarts_from_scratch_and_says_so(
    study, capsys, tmp_path, faults
):
    root, data = study
    steps = json.loads((root / "a" / "run.json").read_text())["budget"]["steps_per_epoch"]
    run = tmp_path / "run"
    faults.save("after_tmp", step=steps, error=OSError)  # an I/O error at the rename
    code, _, err = run_cli(["train", *tiny_args(data), "--out", str(run)], capsys)
    assert code == 1 and err.count("\n") == 1 and "injected failure" in err, err
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    faults.clear()
    code, _, err = run_cli(_resume(data, run), capsys)
    assert code == 0, err
    assert f"no committed checkpoint in {run / 'checkpoints'}: starting from scratch" in err
    _, want = load_checkpoint(root / "a" / "checkpoints")
    _, got = load_checkpoint(run / "checkpoints")
    assert all(torch.equal(want["model"][k], got["model"][k]) for k in want["model"])


def test_damaged_metrics_row_before_the_checkpoint_is_refused(study, capsys, tmp_path):
    _, data = study
    run = _copy_run(study, tmp_path)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    assert len(lines) == 2
    metrics.write_text(lines[0][:40] + "\n" + lines[1])  # row 1 cut short, row 2 intact
    before = tree_hash(run)
    code, _, err = run_cli(_resume(data, run), capsys)
    assert code == 2, err
    assert err.startswith("wideflat train: ") and err.count("\n") == 1, err
    assert f"{metrics}: line 1 is damaged" in err and "epoch 1" in err
    assert tree_hash(run) == before


def test_partial_last_metrics_row_past_the_checkpoint_is_cut(study, capsys, tmp_path):
    root, data = study
    run = _copy_run(study, tmp_path)
    newest = sorted((run / "checkpoints").glob("step-*"))[-1]
    shutil.rmtree(newest)  # the kill came in the epoch-2 save, after its row was begun
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines(keepends=True)
    metrics.write_text(lines[0] + lines[1][:25])
    code, _, err = run_cli(_resume(data, run), capsys)
    assert code == 0, err
    strip = [
        {k: v for k, v in json.loads(x).items() if "seconds" not in k and k != "images_per_s"}
        for x in (root / "a" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [
        {k: v for k, v in json.loads(x).items() if "seconds" not in k and k != "images_per_s"}
        for x in metrics.read_text().splitlines()
    ] == strip


def test_a_damaged_line_that_is_not_a_kept_row_is_dropped_with_a_note(study, capsys, tmp_path):
    _, data = study
    run = _copy_run(study, tmp_path)
    metrics = run / "metrics.jsonl"
    rows = metrics.read_text().splitlines(keepends=True)
    metrics.write_text(rows[0] + '{"epoch": 1, "trunc\n' + rows[1])
    code, _, err = run_cli(_resume(data, run), capsys)
    assert code == 0, err
    assert f"{metrics}: dropping damaged line(s) 2" in err
    assert metrics.read_text().splitlines() == [r.rstrip("\n") for r in rows]


def _full_disk_for_checkpoints(file, *args, **kwargs):
    """``open`` for wideflat._io: the checkpoint folder's disk is full, the rest writes."""
    if "checkpoints" in str(file):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return open(file, *args, **kwargs)


def test_disk_full_at_a_checkpoint_is_one_line_and_marks_the_run_failed(
    study, capsys, tmp_path, monkeypatch
):
    from wideflat import _io

    _, data = study
    run = tmp_path / "run"
    monkeypatch.setattr(_io, "open", _full_disk_for_checkpoints, raising=False)
    code, _, err = run_cli(["train", *tiny_args(data), "--out", str(run)], capsys)
    assert code == 1
    assert err.startswith("wideflat train: ") and err.count("\n") == 1, err
    assert "No space left on device" in err and "Traceback" not in err
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and "No space left on device" in record["error"]


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: not enough memory: "
            "you tried to allocate 3136000000000 bytes.\nframe #0 ..."
        ),
        MemoryError(),
    ],
)
def test_a_model_too_large_to_build_is_one_line(error, study, capsys, tmp_path, monkeypatch):
    from wideflat.experiments import build

    def refuse(*args, **kwargs):
        raise error

    _, data = study
    monkeypatch.setattr(build, "create_model", refuse)
    run = tmp_path / "run"
    argv = ["train", *tiny_args(data), "--set", 'model_kwargs=[["hidden", [1000000000]]]']
    code, _, err = run_cli([*argv, "--out", str(run)], capsys)
    assert code == 2
    assert err.startswith("wideflat train: cannot build model 'mlp'") and err.count("\n") == 1
    assert "hidden" in err and not run.exists()


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"format": 1, "weights": torch.zeros(2)}, "lacks 'epoch', 'gamma', 'model'"),
        ("empty model", "model state does not fit this run"),
    ],
)
def test_a_checkpoint_with_a_foreign_payload_names_what_is_wrong(
    payload, message, study, capsys, tmp_path
):
    _, data = study
    run = _copy_run(study, tmp_path)
    newest = sorted((run / "checkpoints").glob("step-*"))[-1]
    chash = json.loads((newest / "MANIFEST.json").read_text())["config_hash"]
    _, good = load_checkpoint(run / "checkpoints")
    payload = {**good, "model": {}} if payload == "empty model" else payload
    shutil.rmtree(run / "checkpoints")
    save_checkpoint(run / "checkpoints", 99, payload, config_hash=chash)
    before = tree_hash(run)
    code, _, err = run_cli(_resume(data, run), capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert message in err and str(run / "checkpoints") in err
    assert tree_hash(run) == before


def test_config_mismatch_on_resume_names_the_fields_and_the_fix(study, capsys, tmp_path):
    _, data = study
    run = _copy_run(study, tmp_path)
    before = tree_hash(run)
    code, _, err = run_cli(_resume(data, run, "--epochs", "3", "--lr", "0.07"), capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert (
        "epochs (checkpoint 2, this run 3)" in err and "lr (checkpoint 0.05, this run 0.07)" in err
    )
    assert "--out" in err and f"delete {run}" in err
    assert tree_hash(run) == before


def test_ctrl_c_is_one_line_exit_130_and_marks_the_run_interrupted(
    study, capsys, tmp_path, monkeypatch
):
    from wideflat.experiments import training

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    _, data = study
    run = tmp_path / "run"
    monkeypatch.setattr(training, "save_checkpoint", interrupt)
    code, _, err = run_cli(["train", *tiny_args(data), "--out", str(run)], capsys)
    assert (code, err) == (130, "wideflat train: interrupted; resume with --resume auto\n")
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
