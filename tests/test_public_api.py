"""The public surface: lazy top-level names, light imports, and an ``__all__`` in every module."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import warnings

import pytest

import wideflat

HEADLINE = {
    "EntropySGD": "wideflat.optim",
    "ReplicatedSGD": "wideflat.optim",
    "SAM": "wideflat.optim",
    "ExponentialGamma": "wideflat.optim",
    "CosineGamma": "wideflat.optim",
    "ConstantGamma": "wideflat.optim",
    "auto_gamma0_rsgd": "wideflat.optim",
    "create_optimizer": "wideflat.optim",
    "local_energy": "wideflat.flatness",
    "committee_local_entropy": "wideflat.flatness",
    "create_model": "wideflat.models",
}


def _public_modules() -> list[str]:
    names = ["wideflat"]
    for info in pkgutil.walk_packages(wideflat.__path__, "wideflat."):
        parts = info.name.split(".")
        if not any(p.startswith("_") for p in parts[1:]):
            names.append(info.name)
    return sorted(names)


def _loaded_modules(code: str) -> set[str]:
    """The modules a fresh interpreter imports to run ``code`` (``python -X importtime``)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[-1].strip() for line in lines[1:]}


def test_importing_the_optimizers_loads_neither_matplotlib_nor_the_studies():
    loaded = _loaded_modules("import wideflat.optim")
    assert "wideflat.optim" in loaded  # the probe sees our own modules
    assert not {m for m in loaded if m.split(".")[0] == "matplotlib"}
    assert not {m for m in loaded if m.startswith("wideflat.experiments")}


def test_headline_names_load_lazily_without_matplotlib():
    loaded = _loaded_modules("import wideflat")
    assert "torch" not in loaded and "wideflat.optim" not in loaded
    loaded = _loaded_modules("import wideflat; " + "; ".join(f"wideflat.{n}" for n in HEADLINE))
    assert not {m for m in loaded if m.split(".")[0] == "matplotlib"}
    assert not {m for m in loaded if m.startswith("wideflat.experiments")}


@pytest.mark.parametrize("name", sorted(HEADLINE))
def test_headline_names_are_the_subpackage_objects(name):
    assert name in wideflat.__all__ and name in dir(wideflat)
    assert getattr(wideflat, name) is getattr(importlib.import_module(HEADLINE[name]), name)


def test_unknown_top_level_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'EntropySgd'"):
        wideflat.EntropySgd  # noqa: B018


@pytest.mark.parametrize("module", _public_modules())
def test_every_public_module_declares_all_and_every_name_exists(module):
    mod = importlib.import_module(module)
    assert isinstance(getattr(mod, "__all__", None), list | tuple), f"{module} has no __all__"
    assert len(set(mod.__all__)) == len(mod.__all__), f"{module}.__all__ repeats a name"
    with warnings.catch_warnings():  # deprecated shims warn on access, by design
        warnings.simplefilter("ignore", DeprecationWarning)
        missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert not missing, f"{module}.__all__ names missing objects: {missing}"


def test_flatness_does_not_import_plots_until_asked():
    loaded = _loaded_modules("import wideflat.flatness")
    assert "wideflat.flatness.plots" not in loaded
    assert not {m for m in loaded if m.split(".")[0] == "matplotlib"}
    loaded = _loaded_modules("import wideflat.flatness as f; f.plot_local_energy")
    assert "wideflat.flatness.plots" in loaded
    loaded = _loaded_modules("import wideflat.flatness as f; f.plot_interpolation")
    assert "wideflat.flatness.landscape_plots" in loaded


@pytest.mark.parametrize(
    "old, name, new",
    [
        ("wideflat.replicas.replicas", "Replicas", "wideflat.replicas.loop"),
        ("wideflat.replicas.replicas", "mean_over_replicas", "wideflat.replicas.loop"),
        ("wideflat.replicas.stacked", "StackedReplicas", "wideflat.replicas.vmap"),
        ("wideflat.replicas.stacked", "stacked_center", "wideflat.replicas.vmap"),
        ("wideflat.data", "read_idx", "wideflat.data.fashion_mnist"),
        ("wideflat.data", "TINY_IMAGENET_MD5", "wideflat.data.checksums"),
        ("wideflat.data", "apply_crop", "wideflat.data.augment"),
        ("wideflat.data", "median_binarize", "wideflat.data.committee"),
    ],
)
def test_moved_names_still_work_with_a_deprecation_warning(old, name, new):
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved to {new}\.{name}"):
        value = getattr(module, name)
    assert value is getattr(importlib.import_module(new), name)


def test_trimmed_data_surface_keeps_readers_registry_and_loader():
    import wideflat.data as data

    for name in ("load_fashion_mnist", "load_dataset", "list_datasets", "DeviceLoader"):
        assert name in data.__all__
    for name in ("read_idx", "CIFAR10_MD5", "apply_crop", "md5_file"):
        assert name not in data.__all__
