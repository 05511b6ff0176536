"""Writers of tiny fake datasets in the exact official on-disk formats, shared by every test
folder (``tests/`` is on the import path through ``tests/conftest.py``, which also serves the
harness's fake Fashion-MNIST folder as the ``fashion_root`` fixture)."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

FASHION_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# --- IDX ----------------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    """IDX encoding: 0, 0, type code, ndim, big-endian uint32 dims, big-endian payload."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    header = bytes([0, 0, type_code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + np.ascontiguousarray(arr, dtype=dtype[type_code]).tobytes()


def write_fashion(
    folder: Path, n_train: int = 3, n_test: int = 2, *, gz: bool = True, seed: int = 0
) -> dict:
    """Write the four Fashion-MNIST IDX files; return {split: (images, labels)}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx_pair(folder, split, images, labels, gz=gz)
        out[split] = (images, labels)
    return out


def write_learnable_fashion(folder: Path, n_train: int = 256, n_test: int = 64) -> Path:
    """Four Fashion-MNIST IDX files whose labels can be learnt (3 if the top half of the image
    is bright, else 0): the training harness's fake data set. Returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (images[:, :14].mean(axis=(1, 2)) > 127.5).astype(np.uint8) * 3
        write_idx_pair(folder, split, images, labels)
    return folder


def write_idx_pair(folder: Path, split: str, images, labels, *, gz: bool = True) -> None:
    for name, arr in zip(FASHION_NAMES[split], (images, labels), strict=True):
        data = idx_bytes(np.asarray(arr))
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


# --- Python 2 pickles (the official CIFAR files were written by Python 2's cPickle) --------


class _Py2Pickler(pickle._Pickler):
    """Protocol 2 with Python 2 ``str`` opcodes for text and bytes, and numpy 1.x global names,
    as in the official CIFAR batches."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    def save_str(self, obj):
        self.save_bytes(obj.encode("latin1"))

    def save_global(self, obj, name=None):
        mod = obj.__module__
        name = name or obj.__qualname__
        mod = mod.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{mod}\n{name}\n".encode())
        self.memoize(obj)

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str
    dispatch[type] = save_global


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def cifar_batch(n: int, num_classes: int, seed: int, label_key: str = "labels") -> dict:
    rng = np.random.default_rng(seed)
    d = {
        "batch_label": f"fake batch {seed}",
        label_key: [int(v) for v in rng.integers(0, num_classes, n)],
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"img_{seed}_{i}.png" for i in range(n)],
    }
    if label_key == "fine_labels":
        d["coarse_labels"] = [v % 20 for v in d["fine_labels"]]
    return d


def write_cifar10(root: Path, n: int = 3) -> dict:
    """root/cifar-10-batches-py with 5 train batches of n rows, a test batch, batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batches[name] = cifar_batch(n, 10, seed=i)
        (folder / name).write_bytes(py2_pickle(batches[name]))
    meta = {"num_cases_per_batch": n, "label_names": [f"c{i}" for i in range(10)], "num_vis": 3072}
    (folder / "batches.meta").write_bytes(py2_pickle(meta))
    return batches


def write_cifar100(root: Path, n: int = 3) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate(["train", "test"]):
        batches[name] = cifar_batch(n, 100, seed=10 + i, label_key="fine_labels")
        (folder / name).write_bytes(py2_pickle(batches[name]))
    meta = {
        "fine_label_names": [f"f{i}" for i in range(100)],
        "coarse_label_names": [f"g{i}" for i in range(20)],
    }
    (folder / "meta").write_bytes(py2_pickle(meta))
    return batches


def make_tarball(root: Path, folder_name: str, tar_path: Path) -> Path:
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(root / folder_name, arcname=folder_name)
    return tar_path


# --- Tiny ImageNet ------------------------------------------------------------------------

TINY_COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]


def write_tiny_imagenet(root: Path, n_classes: int = 3, per_class: int = 2, n_val: int = 4):
    """root/tiny-imagenet-200 with solid-colour 64x64 JPEGs (class i has colour i)."""
    from PIL import Image

    folder = root / "tiny-imagenet-200"
    wnids = [f"n0{i:07d}" for i in range(n_classes)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (folder / "words.txt").write_text(
        "\n".join(f"{w}\tthing {i}, other name" for i, w in enumerate(wnids)) + "\n"
    )
    for i, w in enumerate(wnids):
        d = folder / "train" / w / "images"
        d.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            Image.new("RGB", (64, 64), TINY_COLORS[i % 3]).save(d / f"{w}_{k}.JPEG", quality=95)
        (folder / "train" / w / f"{w}_boxes.txt").write_text("")
    vdir = folder / "val" / "images"
    vdir.mkdir(parents=True, exist_ok=True)
    lines = []
    val_labels = []
    for k in range(n_val):
        c = (k + 1) % n_classes
        Image.new("RGB", (64, 64), TINY_COLORS[c % 3]).save(vdir / f"val_{k}.JPEG", quality=95)
        lines.append(f"val_{k}.JPEG\t{wnids[c]}\t0\t0\t63\t63")
        val_labels.append(c)
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return wnids, val_labels
