"""Committee datasets: the reduced Dress-vs-Coat set (fake and real files) and the teacher set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from wideflat_data_fakes import write_idx_pair

from wideflat.data import (
    CommitteeData,
    DatasetError,
    fashion_committee,
    load_committee_data,
    load_fashion_mnist,
    teacher_committee,
)
from wideflat.data.committee import median_binarize

SYSTEM = Path("/usr/share/datasets/fashion-mnist")


def _two_level(lo: int, hi: int, rng) -> np.ndarray:
    """A 28×28 image with 392 pixels at ``lo`` and 392 at ``hi``: median (lo+hi)/510."""
    img = np.array([lo] * 392 + [hi] * 392, dtype=np.uint8)
    return rng.permutation(img).reshape(28, 28)


def _independent_binarize(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = raw.reshape(len(raw), -1).astype(np.float64) / 255.0
    med = np.median(flat, axis=1)
    return np.where(flat > med[:, None], 1.0, -1.0), med


def test_median_binarize_convention():
    rng = np.random.default_rng(0)
    img = rng.permutation(np.array([0] * 300 + [128] * 200 + [255] * 284, np.uint8))
    x, med = median_binarize(torch.from_numpy(img.reshape(1, 28, 28)))
    assert float(med) == pytest.approx(128 / 255)
    # Pixels equal to the median go to -1; only the 284 brighter ones are +1.
    assert int((x == 1).sum()) == 284 and torch.equal(x[0] == 1, torch.from_numpy(img == 255))
    raw = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    x, med = median_binarize(torch.from_numpy(raw))
    ref_x, ref_med = _independent_binarize(raw)
    assert np.array_equal(x.numpy(), ref_x) and np.allclose(med.numpy(), ref_med, atol=1e-12)


def _fake_committee_files(folder: Path):
    rng = np.random.default_rng(1)
    # (label, lo, hi): medians 0.5 in; 0.118 out; 0.892 out; boundaries 128/510 in, 127 out,
    # 382 in, 383 out; class 0 with median 0.5 is the wrong class.
    spec = (
        [(3, 100, 155)] * 6
        + [(4, 64, 191)] * 6
        + [(4, 0, 60), (3, 200, 255), (3, 0, 128), (4, 0, 127), (4, 127, 255), (3, 128, 255)]
        + [(0, 100, 155)] * 3
    )
    order = rng.permutation(len(spec))
    spec = [spec[i] for i in order]
    images = np.stack([_two_level(lo, hi, rng) for _, lo, hi in spec])
    labels = np.array([c for c, _, _ in spec], np.uint8)
    write_idx_pair(folder, "train", images, labels)
    test_images, test_labels = images[::-1].copy(), labels[::-1].copy()
    write_idx_pair(folder, "test", test_images, test_labels)
    return images, labels, test_images, test_labels


def _expected_keep(images, labels):
    cls = np.flatnonzero((labels == 3) | (labels == 4))
    _, med = _independent_binarize(images[cls])
    return cls[(med >= 0.25) & (med <= 0.75)]


@pytest.mark.parametrize("balanced", [True, False])
def test_fashion_committee_on_fake_files(tmp_path, balanced):
    images, labels, t_images, t_labels = _fake_committee_files(tmp_path)
    keep = _expected_keep(images, labels)
    assert len(keep) == 7 + 7  # boundary medians 128/510 and 382/510 kept, 127 and 383 not
    d = fashion_committee(tmp_path, n_train=8, seed=4, balanced=balanced, search=False)
    assert isinstance(d, CommitteeData) and d.n_train == 8 and d.n_features == 784
    idx = d.metadata["train_indices"].numpy()
    assert set(idx) <= set(keep) and len(set(idx)) == 8
    ref_x, _ = _independent_binarize(images[idx])
    assert np.array_equal(d.X_train.numpy(), ref_x)
    assert np.array_equal(d.y_train.numpy(), np.where(labels[idx] == 3, 1.0, -1.0))
    if balanced:
        assert float(d.y_train.sum()) == 0.0
    t_keep = _expected_keep(t_images, t_labels)
    assert np.array_equal(d.metadata["test_indices"].numpy(), t_keep)
    assert np.array_equal(d.X_test.numpy(), _independent_binarize(t_images[t_keep])[0])
    assert d.metadata["label_map"] == {1: "Dress", -1: "Coat"}
    again = fashion_committee(tmp_path, n_train=8, seed=4, balanced=balanced, search=False)
    assert torch.equal(again.X_train, d.X_train) and torch.equal(again.y_train, d.y_train)
    other = fashion_committee(tmp_path, n_train=8, seed=5, balanced=balanced, search=False)
    assert not torch.equal(other.metadata["train_indices"], d.metadata["train_indices"])


def test_fashion_committee_errors(tmp_path):
    _fake_committee_files(tmp_path)
    with pytest.raises(DatasetError, match="only 7 filtered training images of class 3, 8"):
        fashion_committee(tmp_path, n_train=16, balanced=True, search=False)
    with pytest.raises(DatasetError, match="only 14 filtered training images, 15 requested"):
        fashion_committee(tmp_path, n_train=15, search=False)
    for kwargs, match in [
        ({"n_train": 0}, "n_train"),
        ({"n_train": 7, "balanced": True}, "even"),
        ({"classes": (3, 3)}, "classes"),
        ({"median_range": (0.8, 0.2)}, "median_range"),
    ]:
        with pytest.raises(ValueError, match=match):
            fashion_committee(tmp_path, search=False, **kwargs)


def test_teacher_committee_matches_reference():
    d = teacher_committee(n_train=60, n_test=40, n_features=31, k=5, seed=2)
    w = d.metadata["teacher"].numpy()
    for x, y in [(d.X_train, d.y_train), (d.X_test, d.y_test)]:
        xs = x.numpy().astype(np.float64)
        assert set(np.unique(xs)) == {-1.0, 1.0}
        for i in range(len(xs)):  # per pattern: majority vote of the K hidden signs
            votes = sum(1 if float(w[k] @ xs[i]) >= 0 else -1 for k in range(5))
            assert y[i] == (1.0 if votes > 0 else -1.0)
    assert set(d.y_train.tolist()) == {-1.0, 1.0}
    same = teacher_committee(n_train=60, n_test=40, n_features=31, k=5, seed=2)
    other = teacher_committee(n_train=60, n_test=40, n_features=31, k=5, seed=3)
    assert torch.equal(same.X_train, d.X_train) and torch.equal(same.y_test, d.y_test)
    assert not torch.equal(other.X_train, d.X_train)
    default = teacher_committee(n_train=4, n_test=2)
    assert default.n_features == 784 and default.metadata["k"] == 9


def test_teacher_and_dataclass_errors():
    with pytest.raises(ValueError, match="odd number of hidden units"):
        teacher_committee(k=4)
    with pytest.raises(ValueError, match="Invalid n_features"):
        teacher_committee(n_features=0)
    with pytest.raises(ValueError, match="values other than ±1"):
        CommitteeData(torch.zeros(2, 3), torch.ones(2), torch.ones(1, 3), torch.ones(1), "x", 0)
    with pytest.raises(ValueError, match="Invalid committee data source"):
        load_committee_data("mnist")


# --- real Fashion-MNIST (Debian's dataset-fashion-mnist) -----------------------------------

needs_real = pytest.mark.skipif(
    not (SYSTEM / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed in {SYSTEM} (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(scope="module")
def real():
    train = load_fashion_mnist(SYSTEM, split="train", verify=True, search=False)
    test = load_fashion_mnist(SYSTEM, split="test", verify=True, search=False)
    return train, test


@needs_real
def test_real_fashion_mnist_sizes(real):
    train, test = real
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10


@needs_real
def test_real_reduced_committee_set(real):
    train, test = real
    d = load_committee_data("fashion", root=SYSTEM, seed=0, search=False)
    assert d.name == "fashion-dress-coat" and d.n_train == 500 and d.n_features == 784
    assert set(d.X_train.unique().tolist()) == {-1.0, 1.0} == set(d.y_train.unique().tolist())
    # The median filter really applied: recompute from the raw pixels, independently.
    idx = d.metadata["train_indices"].numpy()
    raw = train.images.numpy()[idx]
    ref_x, med = _independent_binarize(raw)
    assert ((med >= 0.25) & (med <= 0.75)).all() and np.array_equal(d.X_train.numpy(), ref_x)
    lab = train.labels.numpy()
    keep = _expected_keep(train.images.numpy(), lab)
    assert set(idx) <= set(keep)
    pool = d.metadata["filtered_pool"]["train"]
    assert pool == {"Dress": int((lab[keep] == 3).sum()), "Coat": int((lab[keep] == 4).sum())}
    assert sum(pool.values()) < 12000  # the filter rejects images
    t_keep = _expected_keep(test.images.numpy(), test.labels.numpy())
    assert np.array_equal(d.metadata["test_indices"].numpy(), t_keep) and d.n_test == len(t_keep)
    balanced = fashion_committee(SYSTEM, seed=0, balanced=True, search=False)
    assert float(balanced.y_train.sum()) == 0.0
