"""Optional torchvision that is missing or installed but broken: one ImportError saying what to do.

PyPI's torchvision next to the CPU torch wheel imports with ``RuntimeError: operator
torchvision::nms does not exist``; a stand-in package on ``sys.path`` that raises the same
reproduces it without installing anything."""

from __future__ import annotations

import sys

import pytest

from wideflat._optional import import_optional
from wideflat.data import Augment
from wideflat.models import create_model


@pytest.fixture
def broken_torchvision(tmp_path, monkeypatch):
    package = tmp_path / "torchvision"
    package.mkdir()
    (package / "__init__.py").write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')\n"
    )
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_broken_install_is_one_import_error_naming_the_cause(broken_torchvision):
    with pytest.raises(ImportError) as info:
        import_optional("torchvision.models", "the torchvision models")
    message = str(info.value)
    assert "\n" not in message
    assert "installed but fails to load (operator torchvision::nms does not exist)" in message
    assert "built for torch" in message


def test_models_and_autoaugment_report_a_broken_torchvision(broken_torchvision):
    with pytest.raises(ImportError, match="fails to load"):
        create_model("resnet50", num_classes=10, in_channels=3, image_size=32)
    with pytest.raises(ImportError, match="AutoAugment needs torchvision, which is installed"):
        Augment(autoaugment="cifar10")


def test_a_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ImportError, match=r"optional extra: pip install 'wideflat\[vision\]'"):
        import_optional("torchvision.models", "the torchvision models")
    with pytest.raises(ImportError, match="pip install notapackage"):
        import_optional("notapackage", "a test")
