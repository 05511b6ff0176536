"""`wideflat train` / `wideflat compare`: bad inputs fail in one line without touching results;
`compare` runs end to end, and re-running it keeps finished runs."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from test_runner import write_fake_fashion

from wideflat.cli import main
from wideflat.experiments.checkpoint import load_checkpoint


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


def run_cli(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse errors
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = str(write_fake_fashion(root / "data"))
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


def test_nonfinite_loss_exits_3_with_the_step(study, capsys, tmp_path, monkeypatch):
    _, data = study
    monkeypatch.setenv("WIDEFLAT_FAULT", "loss:inf@step=3@replica=2")
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
