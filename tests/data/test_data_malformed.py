"""T3 check 25: every malformed-file case raises DatasetError at construction, and the
message names the file and the defect (also under ``python -O``: no assert-based checks)."""

from __future__ import annotations

import ast
import gzip
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from wideflat_data_fakes import (
    idx_bytes,
    make_tarball,
    py2_pickle,
    write_cifar10,
    write_cifar100,
    write_fashion,
    write_tiny_imagenet,
)

import wideflat.data
from wideflat.data import (
    DatasetError,
    load_cifar10,
    load_cifar100,
    load_fashion_mnist,
    load_tiny_imagenet,
)

TRAIN_IMG = "train-images-idx3-ubyte.gz"
TRAIN_LBL = "train-labels-idx1-ubyte.gz"


def _fashion(tmp: Path):
    write_fashion(tmp, n_train=3)
    return lambda: load_fashion_mnist(tmp, split="train", search=False)


def _put(tmp: Path, name: str, data: bytes):
    (tmp / name).write_bytes(data)


# Each case: (id, setup(tmp) -> loader call, file name the message must contain, defect regex)
def _idx_case(mutate, file, defect):
    def setup(tmp):
        call = _fashion(tmp)
        mutate(tmp)
        return call

    return setup, file, defect


def _gz_crc(tmp):
    data = bytearray((tmp / TRAIN_IMG).read_bytes())
    data[-8] ^= 0xFF  # gzip trailer: CRC32 then ISIZE
    _put(tmp, TRAIN_IMG, bytes(data))


def _imgs(**kw):
    return idx_bytes(np.zeros((3, 28, 28), np.uint8), **kw)


IDX_CASES = {
    "idx-missing-file": _idx_case(lambda t: (t / TRAIN_LBL).unlink(), TRAIN_LBL, "missing file"),
    "idx-empty-gz-0-bytes": _idx_case(lambda t: _put(t, TRAIN_IMG, b""), TRAIN_IMG, "empty"),
    "idx-empty-gz-payload": _idx_case(
        lambda t: _put(t, TRAIN_IMG, gzip.compress(b"")), TRAIN_IMG, "empty"
    ),
    "idx-truncated-gz": _idx_case(
        lambda t: _put(t, TRAIN_IMG, (t / TRAIN_IMG).read_bytes()[:200]), TRAIN_IMG, "truncated"
    ),
    "idx-crc-corrupted-gz": _idx_case(_gz_crc, TRAIN_IMG, "corrupted .*CRC"),
    "idx-not-gzip": _idx_case(
        lambda t: _put(t, TRAIN_IMG, b"<html>not found</html>"), TRAIN_IMG, "not a gzip file"
    ),
    "idx-wrong-magic": _idx_case(
        lambda t: _put(t, TRAIN_IMG, gzip.compress(b"\x01\x02" + _imgs()[2:])),
        TRAIN_IMG,
        "wrong magic",
    ),
    "idx-ndim-0": _idx_case(
        lambda t: _put(t, TRAIN_IMG, gzip.compress(bytes([0, 0, 8, 0]) + b"\x00" * 8)),
        TRAIN_IMG,
        "ndim 0",
    ),
    "idx-ndim-4": _idx_case(
        lambda t: _put(t, TRAIN_IMG, gzip.compress(idx_bytes(np.zeros((3, 28, 28, 1), np.uint8)))),
        TRAIN_IMG,
        "ndim 4",
    ),
    "idx-type-code-0x07": _idx_case(
        lambda t: _put(t, TRAIN_IMG, gzip.compress(b"\x00\x00\x07" + _imgs()[3:])),
        TRAIN_IMG,
        "type code 0x07",
    ),
    "idx-type-code-0x0f": _idx_case(
        lambda t: _put(t, TRAIN_IMG, gzip.compress(b"\x00\x00\x0f" + _imgs()[3:])),
        TRAIN_IMG,
        "type code 0x0f",
    ),
    "idx-payload-length": _idx_case(
        lambda t: _put(t, TRAIN_IMG, gzip.compress(_imgs()[:-5])), TRAIN_IMG, "payload length"
    ),
    "idx-count-mismatch": _idx_case(
        lambda t: _put(t, TRAIN_LBL, gzip.compress(idx_bytes(np.zeros(4, np.uint8)))),
        TRAIN_LBL,
        "label count 4 differs from the image count 3",
    ),
    "idx-label-ge-10": _idx_case(
        lambda t: _put(t, TRAIN_LBL, gzip.compress(idx_bytes(np.array([1, 10, 2], np.uint8)))),
        TRAIN_LBL,
        "label out of range",
    ),
}


def _cifar_case(which, mutate, file, defect, *, tar=False):
    def setup(tmp):
        src = tmp / "src"
        if which == 10:
            write_cifar10(src)
            folder, loader = src / "cifar-10-batches-py", load_cifar10
        else:
            write_cifar100(src)
            folder, loader = src / "cifar-100-python", load_cifar100
        mutate(folder)
        root = src
        if tar:
            root = tmp / "t"
            root.mkdir()
            name = "cifar-10-python.tar.gz" if which == 10 else "cifar-100-python.tar.gz"
            make_tarball(src, folder.name, root / name)
        return lambda: loader(root, split="train", search=False)

    return setup, file, defect


def _batch_without(key, name="data_batch_2", which=10):
    def mutate(folder):
        from wideflat_data_fakes import cifar_batch

        lk = "labels" if which == 10 else "fine_labels"
        d = cifar_batch(3, 10 if which == 10 else 100, 0, lk)
        del d[key]
        (folder / name).write_bytes(py2_pickle(d))

    return mutate


def _batch_with(name, which=10, **changes):
    def mutate(folder):
        from wideflat_data_fakes import cifar_batch

        lk = "labels" if which == 10 else "fine_labels"
        d = cifar_batch(3, 10 if which == 10 else 100, 0, lk)
        d.update(changes)
        (folder / name).write_bytes(py2_pickle(d))

    return mutate


def _truncate(name, keep=60):
    def mutate(folder):
        (folder / name).write_bytes((folder / name).read_bytes()[:keep])

    return mutate


CIFAR_CASES = {
    "cifar10-missing-batch": _cifar_case(
        10, lambda f: (f / "data_batch_3").unlink(), "data_batch_3", "missing batch file"
    ),
    "cifar10-truncated-pickle": _cifar_case(
        10, _truncate("data_batch_1"), "data_batch_1", "truncated"
    ),
    "cifar10-empty-pickle": _cifar_case(
        10, lambda f: (f / "data_batch_4").write_bytes(b""), "data_batch_4", "empty pickle"
    ),
    "cifar10-missing-data-key": _cifar_case(
        10, _batch_without("data"), "data_batch_2", "missing key 'data'"
    ),
    "cifar10-missing-labels-key": _cifar_case(
        10, _batch_without("labels"), "data_batch_2", "missing key 'labels'"
    ),
    "cifar10-data-not-multiple-3072": _cifar_case(
        10,
        _batch_with("data_batch_5", data=np.zeros((3, 3000), np.uint8)),
        "data_batch_5",
        "not a multiple of 3072",
    ),
    "cifar10-label-10": _cifar_case(
        10, _batch_with("data_batch_1", labels=[0, 10, 1]), "data_batch_1", "label out of range"
    ),
    "cifar10-missing-meta": _cifar_case(
        10, lambda f: (f / "batches.meta").unlink(), "batches.meta", "missing meta file"
    ),
    "cifar10-tar-missing-batch": _cifar_case(
        10,
        lambda f: (f / "data_batch_5").unlink(),
        "cifar-10-python.tar.gz",
        "missing batch file cifar-10-batches-py/data_batch_5",
        tar=True,
    ),
    "cifar10-tar-truncated-pickle": _cifar_case(
        10, _truncate("data_batch_2"), "data_batch_2", "truncated", tar=True
    ),
    "cifar100-truncated-pickle": _cifar_case(100, _truncate("train", 100), "train", "truncated"),
    "cifar100-missing-fine-labels": _cifar_case(
        100, _batch_without("fine_labels", "train", 100), "train", "missing key 'fine_labels'"
    ),
    "cifar100-label-100": _cifar_case(
        100,
        _batch_with("train", 100, fine_labels=[5, 100, 0], coarse_labels=[0, 0, 0]),
        "train",
        "label out of range",
    ),
    "cifar100-missing-meta": _cifar_case(
        100, lambda f: (f / "meta").unlink(), "meta", "missing meta file"
    ),
}


def _truncated_tarball(tmp):
    write_cifar10(tmp / "src")
    root = tmp / "t"
    root.mkdir()
    tar = make_tarball(tmp / "src", "cifar-10-batches-py", root / "cifar-10-python.tar.gz")
    tar.write_bytes(tar.read_bytes()[:300])
    return lambda: load_cifar10(root, search=False)


def _tiny_case(mutate, file, defect, split="val"):
    def setup(tmp):
        write_tiny_imagenet(tmp)
        mutate(tmp / "tiny-imagenet-200")
        return lambda: load_tiny_imagenet(tmp, split=split, search=False)

    return setup, file, defect


def _unknown_wnid(folder):
    ann = folder / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_0.JPEG\tn99999999\t0\t0\t1\t1\n")


TINY_CASES = {
    "tiny-missing-wnids": _tiny_case(
        lambda f: (f / "wnids.txt").unlink(), "wnids.txt", "missing wnids.txt", "train"
    ),
    "tiny-missing-annotations": _tiny_case(
        lambda f: (f / "val" / "val_annotations.txt").unlink(),
        "val_annotations.txt",
        "missing val_annotations.txt",
    ),
    "tiny-unknown-wnid": _tiny_case(
        _unknown_wnid, "val_annotations.txt", "unknown wnid 'n99999999'"
    ),
    "tiny-undecodable-jpeg": _tiny_case(
        lambda f: (f / "val" / "images" / "val_1.JPEG").write_bytes(b"\xff\xd8garbage"),
        "val_1.JPEG",
        "cannot decode",
    ),
    "tiny-missing-class-folder": _tiny_case(
        lambda f: __import__("shutil").rmtree(f / "train" / "n00000001"),
        "n00000001",
        "missing class folder",
        "train",
    ),
}

CASES = {
    **IDX_CASES,
    **CIFAR_CASES,
    "cifar10-truncated-tarball": (_truncated_tarball, "cifar-10-python.tar.gz", "truncated"),
    **TINY_CASES,
}


def test_table_is_big_enough():
    # TESTING.md check 25 asks for >= 18 cases (IDX 11 kinds, CIFAR 7 kinds).
    assert len(IDX_CASES) >= 11 and len(CIFAR_CASES) >= 7 and len(CASES) >= 18


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_raises(tmp_path, case):
    setup, file, defect = CASES[case]
    call = setup(tmp_path)
    with pytest.raises(DatasetError) as info:
        call()
    msg = str(info.value)
    assert file in msg, f"message does not name the file {file!r}: {msg}"
    assert re.search(defect, msg), f"message does not name the defect {defect!r}: {msg}"
    assert isinstance(info.value, ValueError)


def test_no_assert_statements_in_package():
    # Validation must survive `python -O`, which strips assert statements.
    pkg = Path(wideflat.data.__file__).parent
    for path in sorted(pkg.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        asserts = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assert)]
        assert not asserts, f"{path.name} uses assert at lines {asserts}"


@pytest.mark.skipif(sys.flags.optimize > 0, reason="already running under python -O")
def test_malformed_table_under_python_O():
    here = Path(__file__)
    proc = subprocess.run(
        [
            sys.executable,
            "-O",
            "-m",
            "pytest",
            str(here),
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "malformed_raises",
        ],
        capture_output=True,
        text=True,
        cwd=here.parents[2],
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert f"{len(CASES)} passed" in proc.stdout
