"""Names that moved in the harness keep working for one release, with a DeprecationWarning;
the package's own imports raise none."""

import subprocess
import sys

import pytest

MOVED = {
    "train": "wideflat.experiments.training",
    "compare": "wideflat.experiments.comparison",
    "RunError": "wideflat.experiments.errors",
    "NonFiniteRunError": "wideflat.experiments.errors",
    "RunSummary": "wideflat.experiments.rundir",
    "read_metrics": "wideflat.experiments.rundir",
    "run_label": "wideflat.experiments.rundir",
    "lr_at": "wideflat.experiments.config",
    "steps_per_epoch": "wideflat.experiments.build",
}


@pytest.mark.parametrize("name", list(MOVED))
def test_runner_names_warn_and_are_the_new_objects(name):
    import importlib

    from wideflat.experiments import runner

    with pytest.warns(DeprecationWarning, match=MOVED[name]):
        old = getattr(runner, name)
    assert old is getattr(importlib.import_module(MOVED[name]), name)


def test_runner_cli_handlers_and_throughput():
    from wideflat import cli
    from wideflat.experiments import runner

    with pytest.warns(DeprecationWarning, match="wideflat.cli"):
        assert runner.cli_train is cli._run_train
    with pytest.raises(AttributeError, match="benchmarks/throughput.py"):
        runner.throughput  # noqa: B018


def test_recompute_bn_still_imports_from_replicas():
    from wideflat._bn import recompute_bn
    from wideflat.replicas import recompute_bn as from_package
    from wideflat.replicas.bn import recompute_bn as from_module

    assert from_package is recompute_bn and from_module is recompute_bn


def test_importing_the_harness_loads_neither_matplotlib_nor_the_committee_study():
    code = (
        "import sys, warnings; warnings.simplefilter('error', DeprecationWarning); "
        "import wideflat.experiments, wideflat.cli; "
        "print(sorted(m for m in sys.modules if m.startswith('matplotlib') or 'committee' in m "
        "and m.startswith('wideflat.experiments')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_lazy_names_of_the_experiments_package():
    import wideflat.experiments as ex

    assert ex.__all__ == ["TrainConfig", "compare", "preset_config", "train"]
    from wideflat.experiments.checkpoint import load_checkpoint
    from wideflat.experiments.committee import train_committee

    assert ex.load_checkpoint is load_checkpoint and ex.train_committee is train_committee
    with pytest.raises(AttributeError):
        ex.no_such_name  # noqa: B018
