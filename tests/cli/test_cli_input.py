"""Bad command lines fail in one line on stderr with exit 2 and write nothing; every command's
help shows its defaults; ``python -m wideflat`` works."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys

import pytest
from _cli import run_cli

from wideflat.cli import build_parser
from wideflat.experiments.config import ENGINES


def one_line(err: str, prog: str) -> None:
    assert err.startswith(f"{prog}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


# Refused while the config is resolved: before any data is read or folder made.
TRAIN_BAD = {
    "string for a boolean": (["--set", 'nesterov="no"'], "Invalid nesterov: 'no'"),
    "bare word for a boolean": (["--set", "deterministic=maybe"], "Invalid deterministic"),
    "number for a boolean": (["--set", "flip=1"], "Invalid flip: 1"),
    "number for a string": (["--set", "data_root=1"], "Invalid data_root: 1"),
    "int for a tuple": (["--set", "energy_epochs=5"], "Invalid energy_epochs: 5"),
    "--epochs and --set epochs": (["--epochs", "1", "--set", "epochs=2"], "--epochs"),
    "--lr and --set lr": (["--lr", "0.1", "--set", "lr=0.2"], "--lr"),
    "--method and --set method": (["--method", "rsgd", "--set", 'method="esgd"'], "--method"),
    "--set method alone": (["--set", "method=esgd"], "--method"),
    "--set seed": (["--set", "seed=3"], "--seed"),
    "--set budget": (["--method", "rsgd", "--set", "budget=per-replica"], "--budget"),
    "a field set twice": (["--set", "lr=0.1", "--set", "lr=0.2"], "twice"),
    "lr past float32": (["--lr", "1e39"], "Invalid lr: 1e+39"),
    "weight decay past float32": (["--set", "weight_decay=1e300"], "Invalid weight_decay"),
    "gamma past float32": (["--method", "rsgd", "--gamma", "const:1e300"], "float32"),
    "seed past its range": (
        ["--seed", "1180591620717411303424"],
        "seed 1180591620717411303424 out of range (expected 0..9223372036854775807)",
    ),
    "model_kwargs not pairs": (["--set", "model_kwargs={bad"], "Invalid model_kwargs: '{bad'"),
}


@pytest.mark.parametrize("case", list(TRAIN_BAD))
def test_bad_train_config_is_one_line_exit_2_and_writes_nothing(case, capsys, tmp_path):
    extra, message = TRAIN_BAD[case]
    out = tmp_path / "run"
    argv = ["train", "--model", "mlp", "--no-progress", "--out", str(out), *extra]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 2, err
    one_line(err, "wideflat train")
    assert message in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_model_kwargs_message_names_the_expected_form(capsys, tmp_path):
    code, _, err = run_cli(["train", "--set", "model_kwargs={bad", "--out", str(tmp_path)], capsys)
    assert code == 2 and '[["NAME", VALUE], ...]' in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "method=esgd"], "--method"),
        (["--set", "seed=1"], "--seed"),
        (["--seeds", "0", "99999999999999999999"], "seed 99999999999999999999 out of range"),
        (["--epochs", "2", "--set", "epochs=3"], "--epochs"),
    ],
)
def test_bad_compare_input_is_one_line_and_writes_nothing(extra, message, capsys, tmp_path):
    out = tmp_path / "study"
    code, _, err = run_cli(["compare", "--no-progress", "--out", str(out), *extra], capsys)
    assert code == 2
    one_line(err, "wideflat compare")
    assert message in err and not out.exists()


def test_unknown_command_is_one_line(capsys):
    code, out, err = run_cli(["bogus"], capsys)
    assert code == 2 and out == ""
    one_line(err, "wideflat")
    assert "'bogus'" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--seed", "1180591620717411303424"],
        ["committee", "--seed", "-1"],
    ],
)
def test_seed_range_is_checked_by_every_command(argv, capsys):
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "out of range (expected 0..9223372036854775807)" in err
    one_line(err, f"wideflat {argv[0]}")


@pytest.mark.parametrize("where", ["missing parent", "a folder"])
def test_demo_out_is_checked_before_the_demo_runs(where, capsys, tmp_path):
    target = tmp_path / "nodir" / "x.json" if where == "missing parent" else tmp_path
    code, stdout, err = run_cli(["demo", "--no-progress", "--out", str(target)], capsys)
    assert code == 2 and stdout == ""  # refused before the header and the training
    one_line(err, "wideflat demo")
    assert str(target) in err
    assert list(tmp_path.iterdir()) == []


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("command", ["demo", "committee", "train", "compare"])
def test_help_shows_every_default(command):
    parser = _subcommands()[command]
    text = " ".join(parser.format_help().split())
    shown = 0
    for action in parser._actions:
        default = action.default
        unset = default is None or default is False or default in (argparse.SUPPRESS, [])
        if action.help == argparse.SUPPRESS or unset:
            continue
        if isinstance(default, (list, tuple)):
            default = " ".join(map(str, default))
        assert f"(default: {default})" in text, (command, action.dest)
        shown += 1
    assert shown >= 2


def test_engine_help_lists_the_accepted_engines():
    for command in ("train", "compare"):
        engine = next(a for a in _subcommands()[command]._actions if a.dest == "engine")
        assert list(engine.choices) == list(ENGINES)
        assert all(name in engine.help for name in ENGINES)


def test_python_dash_m_wideflat_runs_the_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "wideflat", "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.startswith("wideflat ")


# --- committee: the default folder and overwriting ----------------------------------------

TINY_STUDY = [
    "committee", "--quick", "--data", "teacher", "--algorithms", "sgd-fast", "--restarts", "1",
    "--max-epochs", "1", "--draws", "2", "--no-progress",
]  # fmt: skip


def test_committee_default_folder_depends_on_the_data_and_quick():
    from wideflat.experiments.committee import CommitteeStudyConfig as Config
    from wideflat.experiments.committee import default_study_folder, quick_study_config

    folders = {
        default_study_folder(quick_study_config(data="teacher")),
        default_study_folder(quick_study_config(data="fashion")),
        default_study_folder(Config(data="teacher")),
        default_study_folder(Config(data="fashion")),
    }
    assert len(folders) == 4


def _hashes(folder) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def test_committee_refuses_to_overwrite_a_study_without_overwrite(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(TINY_STUDY, capsys)
    assert code == 0, err
    from wideflat.experiments.committee import default_study_folder, quick_study_config

    folder = tmp_path / default_study_folder(quick_study_config(data="teacher"))
    assert json.loads((folder / "results.json").read_text())["data"]["name"]
    before = _hashes(folder)
    code, stdout, err = run_cli(TINY_STUDY, capsys)
    assert code == 2 and stdout == ""
    one_line(err, "wideflat committee")
    assert "already holds a study" in err and "--overwrite" in err
    assert _hashes(folder) == before
    (folder / "results.json").write_text('{"marker": 1}')
    code, _, err = run_cli([*TINY_STUDY, "--overwrite"], capsys)
    assert code == 0, err
    assert "marker" not in json.loads((folder / "results.json").read_text())
