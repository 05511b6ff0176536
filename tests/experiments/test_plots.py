"""Tables and figures read run folders only and survive bad rows."""

import json
import math

from wideflat.experiments import plots


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


def test_figures_use_no_pyplot_and_no_global_backend(tmp_path):
    import os
    import subprocess
    import sys

    code = (
        "import sys; from wideflat.experiments import plots; "
        f"plots.plot_energy([], {str(tmp_path / 'e.png')!r}); "
        f"plots.plot_test_error([], {str(tmp_path / 't.png')!r}); "
        "print('matplotlib.pyplot' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"


def test_a_method_has_one_colour_in_every_panel():
    """Panels where a method is missing must not shift the others' colours (rSGD×y was
    green in one panel of the matched-error figure and red in the next)."""
    from matplotlib.figure import Figure

    def run(label, triggers):
        prof = {"sigmas": [0.0, 0.5], "delta_error": [0.0, 0.1]}
        return plots.RunRecord(path=None, label=label, seed=0, status="finished",
                               triggered={t: prof for t in triggers})  # fmt: skip

    runs = [run("sgd", "ab"), run("esgd", "ab"), run("rsgd", "b"), run("rsgdxy", "ab")]
    left, right = Figure().subplots(1, 2)
    plots._draw_energy(left, runs, "a", triggered=True)
    plots._draw_energy(right, runs, "b", triggered=True)
    colours = [
        {ln.get_label().split(" (")[0]: ln.get_color() for ln in ax.lines} for ax in (left, right)
    ]
    assert set(colours[0]) == {"SGD", "eSGD", "rSGD×y"}
    assert all(colours[1][name] == colour for name, colour in colours[0].items())
    assert len(set(colours[1].values())) == 4


def test_runs_in_progress_are_counted_apart_not_as_missing_triggers(tmp_path):
    """A study still running: the tables count finished runs only and say what is running."""

    def run_folder(name, label, status, de):
        d = tmp_path / name
        (d / "energy").mkdir(parents=True)
        record = {"label": label, "seed": 0, "status": status}
        if status == "finished":
            record["summary"] = {"test_error": 0.1, "train_error": 0.01}
        (d / "run.json").write_text(json.dumps(record))
        (d / "metrics.jsonl").write_text(
            json.dumps({"epoch": 3, "energy_measured": ["train-error-0.05"]}) + "\n"
        )
        profile = {"sigmas": [0, 0.2], "delta_error": [0, de]}
        (d / "energy" / "train-error-0.05.json").write_text(json.dumps(profile))

    run_folder("sgd-s0", "sgd", "finished", 0.12)
    run_folder("rsgdxy-s0", "rsgdxy", "running", 0.02)
    run_folder("rsgdxy-s1", "rsgdxy", "failed", 0.03)
    runs = plots.collect_runs(tmp_path)
    table = plots.format_table(plots.summary_rows(runs))
    assert "| SGD | 1 | 10.00 |" in table and "| ok |" in table
    assert "| rSGD×y | 0 | – |" in table and "| – (1 failed, 1 running) |" in table
    rows = plots.matched_rows(runs)
    assert [(r["label"], r["runs"], r["reached"]) for r in rows] == [("sgd", 1, 1)]
    assert "| train-error-0.05 | SGD | 1 of 1 | 3.0 | σ = 0.2: 12.00 |" in (
        plots.format_matched_table(rows)
    )
    everything = plots.matched_rows(runs, finished_only=False)
    assert [(r["label"], r["runs"], r["reached"]) for r in everything] == [
        ("sgd", 1, 1), ("rsgdxy", 2, 2)]  # fmt: skip
    assert everything[1]["delta_error"] == [0.0, 2.5]
