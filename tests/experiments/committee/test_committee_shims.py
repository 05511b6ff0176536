"""The committee study's old module paths and field names keep working for one release, with a
``DeprecationWarning``; the package's own code uses the new ones (no warning)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import wideflat.experiments.committee as committee
from wideflat.experiments.committee.presets import CommitteeHyperParams, committee_preset
from wideflat.experiments.committee.study import CommitteeStudyConfig, quick_study_config
from wideflat.flatness.committee import committee_local_energy

OLD = {
    "wideflat.experiments.committee_train": [
        "ALGORITHMS", "COMMITTEE_PRESETS", "STOP_REASONS", "CommitteeHyperParams",
        "CommitteeTrainResult", "committee_preset", "list_committee_algorithms",
        "restart_generator", "train_committee",
    ],
    "wideflat.experiments.committee_study": [
        "SCHEMA", "CommitteeStudyConfig", "check_study_folder", "default_study_folder",
        "format_study_table", "quick_study_config", "run_committee_study",
    ],
    "wideflat.experiments.committee_plots": ["curve_stats", "plot_fig1"],
}  # fmt: skip


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, names in OLD.items() for n in names])
def test_old_paths_give_the_new_objects_with_a_warning(module, name):
    old = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{module}\.{name} moved to wideflat\."):
        obj = getattr(old, name)
    if module.endswith("plots"):
        from wideflat.experiments.committee import plots

        assert obj is getattr(plots, name)
    else:
        assert obj is getattr(committee, name)
    assert name in old.__all__


def test_committee_local_energy_moved_to_flatness():
    old = importlib.import_module("wideflat.experiments.committee_study")
    with pytest.warns(DeprecationWarning, match="wideflat.flatness.committee"):
        assert old.committee_local_energy is committee_local_energy
    from wideflat.flatness import committee_local_energy as exported

    assert exported is committee_local_energy


def test_unknown_old_names_still_raise_attribute_error():
    old = importlib.import_module("wideflat.experiments.committee_train")
    with pytest.raises(AttributeError):
        old.no_such_name  # noqa: B018


RENAMED = [
    ("replicas", "y", 3),
    ("coupling_period", "coupling_every", 2),
    ("mean_decay", "alpha", 0.5),
]


@pytest.mark.parametrize(("old", "new", "value"), RENAMED)
def test_renamed_fields_are_accepted_in_overrides_with_a_warning(old, new, value):
    with pytest.warns(DeprecationWarning, match=rf"'{old}' is now called '{new}'"):
        hp = committee_preset("rsgd-fast", {old: value})
    assert getattr(hp, new) == value
    with pytest.warns(DeprecationWarning, match=rf"'{old}'"):
        assert getattr(hp, old) == value  # the old attribute, for one release
    with pytest.raises(ValueError, match=f"both '{old}' and its new name '{new}'"):
        committee_preset("rsgd-fast", {old: value, new: value})
    with pytest.warns(DeprecationWarning, match=rf"'{old}' is now called '{new}'"):
        cfg = quick_study_config(data="teacher", overrides=(("rsgd-fast", old, value),))
    assert cfg.overrides == (("rsgd-fast", new, value),)  # stored under the new name
    assert getattr(cfg.hparams("rsgd-fast"), new) == value
    assert new in cfg.to_dict()["hparams"]["rsgd-fast"]


def test_new_names_give_no_warning(recwarn):
    hp = committee_preset("rsgd-fast", {"y": 4, "coupling_every": 2, "alpha": 0.5})
    assert (hp.y, hp.coupling_every, hp.alpha) == (4, 2, 0.5)
    CommitteeStudyConfig(data="teacher", overrides=(("rsgd-fast", "y", 3),))
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]
    names = {f for f in CommitteeHyperParams.__dataclass_fields__}
    assert {"y", "coupling_every", "alpha"} <= names
    assert not {"replicas", "coupling_period", "mean_decay"} & names


def test_package_code_imports_without_deprecation_warnings():
    code = (
        "import wideflat.cli, wideflat.experiments as e\n"
        "import wideflat.experiments.committee.plots\n"
        "e.train_committee, e.run_committee_study, e.committee_preset\n"
        "wideflat.cli.main(['committee', '--help'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
