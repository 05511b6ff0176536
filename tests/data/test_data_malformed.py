"""T3 check 25: every malformed-file case raises DatasetError at construction, and the
message names the file and the defect (also under ``python -O``: no assert-based checks)."""

from __future__ import annotations

import ast
import gzip
import re
import shutil
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
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


def _dims(*dims: int) -> bytes:
    return struct.pack(f">{len(dims)}I", *dims)


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
    "idx-dims-overflow-int64": _idx_case(
        # 2^31 * 2^31 * 4 = 2^64 wraps to 0 in int64, which matched the empty payload.
        lambda t: _put(t, TRAIN_IMG, gzip.compress(bytes([0, 0, 8, 3]) + _dims(2**31, 2**31, 4))),
        TRAIN_IMG,
        r"dims \(2147483648, 2147483648, 4\)",
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


def _tarball_of(data: bytes):
    """A cifar-10-python.tar.gz holding ``data``; tarfile's error for it has 5 lines."""

    def setup(tmp):
        root = tmp / "t"
        root.mkdir()
        (root / "cifar-10-python.tar.gz").write_bytes(data)
        return lambda: load_cifar10(root, search=False)

    return setup


CIFAR_CASES = {
    "cifar10-ragged-labels": _cifar_case(
        10, _batch_with("data_batch_3", labels=[[0, 1], [2], 3]), "data_batch_3", "'labels'"
    ),
    "cifar10-ragged-data": _cifar_case(
        10, _batch_with("data_batch_3", data=[[0, 1], [2]]), "data_batch_3", "'data'"
    ),
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


def _annotation(entry):
    """A val_annotations.txt whose only line reads the image at ``entry(tmp)``, which exists."""

    def mutate(folder):
        outside = folder.parent / "secret.JPEG"
        shutil.copy(folder / "val" / "images" / "val_0.JPEG", outside)
        line = f"{entry(folder)}\tn00000000\t0\t0\t1\t1\n"
        (folder / "val" / "val_annotations.txt").write_text(line)

    return mutate


def _wnid_outside(folder):
    """A wnid that walks out of train/: its images/ folder exists outside the dataset."""
    outside = folder.parent / "outside" / "images"
    outside.mkdir(parents=True)
    shutil.copy(folder / "val" / "images" / "val_0.JPEG", outside / "x.JPEG")
    (folder / "wnids.txt").write_text("../../outside\n")


def _zip_case(mutate, defect):
    """tiny-imagenet-200.zip (one deflated wnids.txt) whose bytes ``mutate`` damages."""

    def setup(tmp):
        zp = tmp / "tiny-imagenet-200.zip"
        with zipfile.ZipFile(zp, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("tiny-imagenet-200/wnids.txt", "n00000000\n" * 200)
        data = bytearray(zp.read_bytes())
        mutate(data)
        zp.write_bytes(bytes(data))
        return lambda: load_tiny_imagenet(tmp, split="val", search=False)

    return setup, "tiny-imagenet-200.zip", defect


def _zip_header_byte(local: int, central: int, value=None, bit=0):
    def mutate(data):
        for sig, off in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
            i = data.find(sig) + off
            data[i] = value if value is not None else data[i] | bit

    return mutate


def _bad_deflate(data):
    i = data.find(b"wnids.txt") + len(b"wnids.txt")  # start of the compressed stream
    data[i : i + 3] = b"\xff\xff\xff"


TINY_CASES = {
    "tiny-annotation-dotdot": _tiny_case(
        _annotation(lambda f: "../../../secret.JPEG"),
        "val_annotations.txt",
        "'../../../secret.JPEG'.*not a plain file name",
    ),
    "tiny-annotation-absolute": _tiny_case(
        _annotation(lambda f: f.parent / "secret.JPEG"),
        "val_annotations.txt",
        "secret.JPEG'.*not a plain file name",
    ),
    "tiny-annotation-subfolder": _tiny_case(
        _annotation(lambda f: "../images/val_0.JPEG"),
        "val_annotations.txt",
        "not a plain file name",
    ),
    "tiny-wnid-outside": _tiny_case(
        _wnid_outside, "wnids.txt", "'../../outside'.*not a plain folder name", "train"
    ),
    "tiny-zip-bad-deflate": _zip_case(_bad_deflate, "corrupted"),
    "tiny-zip-encrypted": _zip_case(_zip_header_byte(6, 8, bit=1), "encrypted"),
    "tiny-zip-unknown-method": _zip_case(_zip_header_byte(8, 10, value=99), "compression"),
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
    "cifar10-empty-tarball": (_tarball_of(b""), "cifar-10-python.tar.gz", "empty tarball"),
    "cifar10-not-a-tarball": (
        _tarball_of(b"<html>not found</html>"),
        "cifar-10-python.tar.gz",
        "could not be opened",
    ),
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
    assert "\n" not in msg, f"message is not one line: {msg}"


def _png_header(width: int, height: int) -> bytes:
    """A PNG with a valid IHDR and no pixel data: Pillow reads its size without decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_decompression_bomb_is_a_dataset_error(tmp_path):
    # The probe's case, at Pillow's real limit: 20000 x 20000 pixels under a .JPEG name.
    write_tiny_imagenet(tmp_path)
    bomb = tmp_path / "tiny-imagenet-200" / "val" / "images" / "val_2.JPEG"
    bomb.write_bytes(_png_header(20000, 20000))
    with pytest.raises(DatasetError, match=f"^{bomb}: .*400000000 pixels") as info:
        load_tiny_imagenet(tmp_path, split="val", search=False)
    assert "\n" not in str(info.value)


# Limit 4096 px (the 64x64 images pass): 91x91 is over twice the limit (Pillow raises),
# 80x80 is between the limit and twice it (Pillow only warns, then decodes).
@pytest.mark.parametrize("side", [91, 80])
def test_decompression_bomb_error_and_warning_are_dataset_errors(tmp_path, monkeypatch, side):
    from PIL import Image

    write_tiny_imagenet(tmp_path)
    img = tmp_path / "tiny-imagenet-200" / "val" / "images" / "val_1.JPEG"
    Image.new("RGB", (side, side), (9, 9, 9)).save(img)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(DatasetError, match=f"^{img}: .*decompression bomb"):
            load_tiny_imagenet(tmp_path, split="val", search=False)
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]


def test_oversized_image_is_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import Image

    write_tiny_imagenet(tmp_path)
    img = tmp_path / "tiny-imagenet-200" / "val" / "images" / "val_3.JPEG"
    Image.new("RGB", (65, 64), (9, 9, 9)).save(img)
    converted = []
    real = Image.Image.convert
    monkeypatch.setattr(
        Image.Image, "convert", lambda im, *a: converted.append(im.size) or real(im, *a)
    )
    with pytest.raises(DatasetError, match=f"^{img}: image size 65x64"):
        load_tiny_imagenet(tmp_path, split="val", search=False)
    assert (65, 64) not in converted


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


def _refuse(monkeypatch, method: str, name: str):
    """Make ``Path.<method>`` fail with EACCES for paths named ``name`` (tests run as root,
    where chmod cannot make a file unreadable)."""
    real = getattr(Path, method)

    def fake(self, *args, **kwargs):
        if self.name == name:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, method, fake)


@pytest.mark.parametrize(
    "method, name, split",
    [("read_text", "words.txt", "val"), ("iterdir", "images", "train")],
)
def test_unreadable_tiny_files_are_dataset_errors(tmp_path, monkeypatch, method, name, split):
    write_tiny_imagenet(tmp_path)
    _refuse(monkeypatch, method, name)
    with pytest.raises(DatasetError, match=f"{name}.*Permission denied"):
        load_tiny_imagenet(tmp_path, split=split)


def test_unreadable_cifar_batch_is_a_dataset_error(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    _refuse(monkeypatch, "read_bytes", "data_batch_2")
    with pytest.raises(DatasetError, match="data_batch_2: cannot read file: .*Permission denied"):
        load_cifar10(tmp_path)
