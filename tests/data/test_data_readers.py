"""T3 check 24: readers on tiny fake files in the official formats; shapes, dtypes, labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from wideflat_data_fakes import (
    TINY_COLORS,
    make_tarball,
    write_cifar10,
    write_cifar100,
    write_fashion,
    write_tiny_imagenet,
)

from wideflat.data import (
    ImageSet,
    dataset_info,
    list_datasets,
    load_cifar10,
    load_cifar100,
    load_dataset,
    load_fashion_mnist,
    load_tiny_imagenet,
)
from wideflat.data.fashion_mnist import read_idx


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_fashion_mnist_fake_files(tmp_path, gz):
    written = write_fashion(tmp_path, n_train=3, n_test=2, gz=gz)
    for split, n in (("train", 3), ("test", 2)):
        ds = load_fashion_mnist(tmp_path, split=split, search=False)
        images, labels = written[split]
        assert isinstance(ds, ImageSet) and len(ds) == n
        assert ds.images.shape == (n, 28, 28) and ds.images.dtype == torch.uint8
        assert ds.labels.dtype == torch.int64
        assert torch.equal(ds.images, torch.from_numpy(images))
        assert ds.labels.tolist() == labels.tolist()
        assert ds.classes[3] == "Dress" and ds.classes[4] == "Coat"
    f = load_fashion_mnist(tmp_path, split="train", dtype=torch.float32, search=False)
    assert f.images.dtype == torch.float32
    assert torch.allclose(f.images * 255, torch.from_numpy(written["train"][0]).float())
    assert float(f.images.min()) >= 0.0 and float(f.images.max()) <= 1.0


def test_fashion_mnist_subfolder_and_env(tmp_path, monkeypatch):
    write_fashion(tmp_path / "fashion-mnist")
    assert len(load_fashion_mnist(tmp_path, split="test", search=False)) == 2
    monkeypatch.setenv("WIDEFLAT_DATA", str(tmp_path))
    monkeypatch.setattr("wideflat.data.fashion_mnist.SYSTEM_FASHION_MNIST", tmp_path / "none")
    assert load_fashion_mnist(split="test").source == str(tmp_path / "fashion-mnist")


def test_read_idx_other_types(tmp_path):
    from wideflat_data_fakes import idx_bytes

    arr = np.array([[1.5, -2.0], [3.25, 4.0]])
    p = tmp_path / "x.idx"
    p.write_bytes(idx_bytes(arr, 0x0E))
    out = read_idx(p)
    assert out.dtype == np.float64 and out.tolist() == arr.tolist()
    p.write_bytes(idx_bytes(np.array([-3, 300]), 0x0C))
    assert read_idx(p).tolist() == [-3, 300]


def _check_cifar(ds, batches, names, label_key, n_classes):
    rows = np.concatenate([batches[n]["data"] for n in names])
    labels = sum((batches[n][label_key] for n in names), [])
    assert ds.images.shape == (len(labels), 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == labels
    # Official layout: row = 1024 R, 1024 G, 1024 B bytes; image i, channel c, pixel (r, s).
    assert torch.equal(ds.images.reshape(len(labels), -1), torch.from_numpy(rows))
    assert int(ds.images[1, 2, 5, 7]) == int(rows[1, 2 * 1024 + 5 * 32 + 7])
    assert ds.num_classes == n_classes


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "tarball"])
def test_cifar10_fake(tmp_path, packed):
    batches = write_cifar10(tmp_path / "src", n=3)
    root = tmp_path / "src"
    if packed:
        root = tmp_path / "tar"
        root.mkdir()
        make_tarball(tmp_path / "src", "cifar-10-batches-py", root / "cifar-10-python.tar.gz")
    train = load_cifar10(root, split="train", search=False)
    test = load_cifar10(root, split="test", search=False)
    _check_cifar(train, batches, [f"data_batch_{k}" for k in range(1, 6)], "labels", 10)
    _check_cifar(test, batches, ["test_batch"], "labels", 10)
    assert len(train) == 15 and len(test) == 3 and train.classes[2] == "c2"
    # The reader also accepts the batches folder itself as root.
    if not packed:
        assert len(load_cifar10(root / "cifar-10-batches-py", split="test", search=False)) == 3


@pytest.mark.parametrize("packed", [False, True], ids=["folder", "tarball"])
def test_cifar100_fake(tmp_path, packed):
    batches = write_cifar100(tmp_path / "src", n=3)
    root = tmp_path / "src"
    if packed:
        root = tmp_path / "tar"
        root.mkdir()
        make_tarball(tmp_path / "src", "cifar-100-python", root / "cifar-100-python.tar.gz")
    for split in ("train", "test"):
        ds = load_cifar100(root, split=split, search=False)
        _check_cifar(ds, batches, [split], "fine_labels", 100)
        coarse = load_cifar100(root, split=split, coarse=True, search=False)
        assert coarse.labels.tolist() == batches[split]["coarse_labels"]
        assert coarse.num_classes == 20 and coarse.classes[0] == "g0"
    f = load_cifar100(root, split="test", dtype=torch.float64, search=False)
    assert f.images.dtype == torch.float64 and float(f.images.max()) <= 1.0


def test_tiny_imagenet_fake(tmp_path):
    wnids, val_labels = write_tiny_imagenet(tmp_path, n_classes=3, per_class=2, n_val=4)
    train = load_tiny_imagenet(tmp_path, split="train", search=False)
    assert train.images.shape == (6, 3, 64, 64) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert train.classes == ("thing 0", "thing 1", "thing 2")
    val = load_tiny_imagenet(tmp_path, split="val", search=False)
    assert val.labels.tolist() == val_labels
    for img, label in zip(val.images, val.labels, strict=True):
        colour = torch.tensor(TINY_COLORS[int(label) % 3], dtype=torch.float32)
        # JPEG is lossy; a solid colour survives within a few levels.
        assert (img.float().mean(dim=(1, 2)) - colour).abs().max() < 4


def _fake_all(tmp_path):
    write_fashion(tmp_path)
    write_cifar10(tmp_path)
    write_cifar100(tmp_path)
    write_tiny_imagenet(tmp_path)


def test_registry_every_name_loads(tmp_path):
    _fake_all(tmp_path)
    assert list_datasets() == ["cifar10", "cifar100", "fashion-mnist", "tiny-imagenet"]
    for name in list_datasets():
        info = dataset_info(name)
        for split in ("train", "test"):
            ds = load_dataset(name, tmp_path, split=split, search=False)
            # The fake Tiny ImageNet has 3 wnids; the others use the official class counts.
            want = 3 if name == "tiny-imagenet" else info.num_classes
            assert ds.name == name and ds.num_classes == want
            assert tuple(ds.images.shape[1:]) == info.image_shape
    with pytest.raises(ValueError, match="Unknown dataset: 'mnist'"):
        dataset_info("mnist")


@pytest.mark.parametrize("workers", [0, 2])
def test_torch_dataloader_workers(tmp_path, workers):
    write_fashion(tmp_path, n_train=7)
    write_cifar10(tmp_path, n=2)
    for ds in (
        load_fashion_mnist(tmp_path, search=False),
        load_cifar10(tmp_path, split="train", search=False),
    ):
        loader = DataLoader(ds, batch_size=3, shuffle=False, num_workers=workers)
        xs, ys = zip(*loader, strict=True)
        assert torch.equal(torch.cat(xs), ds.images) and torch.equal(torch.cat(ys), ds.labels)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p: load_fashion_mnist(p, split="val"), "Invalid split"),
        (lambda p: load_fashion_mnist(p, dtype=torch.int32), "Invalid dtype"),
        (lambda p: load_cifar10(p, split="validation"), "Invalid split"),
        (lambda p: load_cifar100(p, dtype=torch.int64), "Invalid dtype"),
        (lambda p: load_tiny_imagenet(p, split="test"), "Invalid split"),
    ],
)
def test_bad_arguments(tmp_path, call, match):
    with pytest.raises(ValueError, match=match):
        call(tmp_path)
