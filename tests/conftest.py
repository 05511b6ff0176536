"""Shared test set-up: one thread, a headless matplotlib, and the shared fakes as fixtures.

``tests/`` is on the import path (pytest inserts the folder of this conftest), so helper
modules here (``wideflat_data_fakes``, ``_faults``, ``_runs``) import by name from any test.
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def write_fashion():
    """``write_fashion(folder, n_train=256, n_test=64)``: a learnable fake Fashion-MNIST folder
    (label 3 when the top half of the image is bright, else 0); returns the folder."""
    from wideflat_data_fakes import write_learnable_fashion

    return write_learnable_fashion


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory, write_fashion) -> str:
    """One learnable fake Fashion-MNIST folder (256 train, 64 test images) for the session."""
    return str(write_fashion(tmp_path_factory.mktemp("fashion")))


@pytest.fixture
def faults(monkeypatch):
    """Fault injection undone after the test: ``faults.save(point, step=…, rank=…)`` and
    ``faults.loss(value, step=…, replica=…)`` (see ``tests/_faults.py``)."""
    import _faults

    class Faults:
        InjectedFault = _faults.InjectedFault

        @staticmethod
        def save(point, **kwargs):
            _faults.save_fault(point, patch=_raising_off(monkeypatch), **kwargs)

        @staticmethod
        def loss(value, **kwargs):
            _faults.loss_fault(value, patch=monkeypatch.setattr, **kwargs)

        @staticmethod
        def clear():
            monkeypatch.undo()

    return Faults


def _raising_off(monkeypatch):
    """``monkeypatch.setattr`` that may add a name (``open`` as a module global)."""
    return lambda obj, name, value: monkeypatch.setattr(obj, name, value, raising=False)
