"""T3 check 26: MD5 verification detects a 1-byte change in every official file kind."""

from __future__ import annotations

import re
import zipfile

import pytest
from wideflat_data_fakes import (
    make_tarball,
    write_cifar10,
    write_cifar100,
    write_fashion,
    write_tiny_imagenet,
)

from wideflat.data import (
    DatasetError,
    load_cifar10,
    load_cifar100,
    load_fashion_mnist,
    load_tiny_imagenet,
)
from wideflat.data.checksums import (
    CIFAR10_MD5,
    CIFAR100_MD5,
    FASHION_MNIST_MD5,
    FASHION_MNIST_RAW_MD5,
    TINY_IMAGENET_MD5,
    md5_file,
    verify_files,
)


def test_official_tables_cover_the_official_files():
    hexmd5 = re.compile(r"^[0-9a-f]{32}$")
    tables = (
        FASHION_MNIST_MD5,
        FASHION_MNIST_RAW_MD5,
        CIFAR10_MD5,
        CIFAR100_MD5,
        TINY_IMAGENET_MD5,
    )
    for table in tables:
        assert all(hexmd5.match(v) for v in table.values())
    assert set(CIFAR10_MD5) == {
        "cifar-10-python.tar.gz",
        *(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
    }
    assert set(CIFAR100_MD5) == {"cifar-100-python.tar.gz", "train", "test", "meta"}
    assert {n + ".gz" for n in FASHION_MNIST_RAW_MD5} == set(FASHION_MNIST_MD5)


def _official_fakes(tmp):
    """Every official file name, written as a fake: 4 IDX .gz, 7 CIFAR-10 files + tarball,
    3 CIFAR-100 files + tarball, the Tiny ImageNet zip."""
    write_fashion(tmp / "fm")
    write_cifar10(tmp)
    write_cifar100(tmp)
    c10 = tmp / "cifar-10-batches-py"
    c100 = tmp / "cifar-100-python"
    files = sorted((tmp / "fm").glob("*.gz")) + sorted(c10.iterdir()) + sorted(c100.iterdir())
    files.append(make_tarball(tmp, c10.name, tmp / "cifar-10-python.tar.gz"))
    files.append(make_tarball(tmp, c100.name, tmp / "cifar-100-python.tar.gz"))
    write_tiny_imagenet(tmp / "ti")
    z = tmp / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted((tmp / "ti").rglob("*")):
            zf.write(p, p.relative_to(tmp / "ti"))
    files.append(z)
    return files


def test_one_byte_change_detected_in_every_file(tmp_path):
    files = _official_fakes(tmp_path)
    official = {**FASHION_MNIST_MD5, **CIFAR10_MD5, **CIFAR100_MD5, **TINY_IMAGENET_MD5}
    assert {f.name for f in files} == set(official)  # one fake per official file name
    table = {f.name: md5_file(f) for f in files}  # injected table for the fakes
    assert verify_files(files, table) == table
    detected = trials = 0
    for f in files:
        original = f.read_bytes()
        for pos in (0, len(original) // 2, len(original) - 1):
            changed = bytearray(original)
            changed[pos] ^= 0x01
            f.write_bytes(bytes(changed))
            trials += 1
            with pytest.raises(DatasetError, match="checksum mismatch") as info:
                verify_files([f], table)
            detected += f.name in str(info.value)
        f.write_bytes(original)
    assert detected == trials == 3 * len(official)


def test_verify_files_errors(tmp_path):
    p = tmp_path / "unknown.bin"
    p.write_bytes(b"x")
    with pytest.raises(DatasetError, match="no checksum known"):
        verify_files([p], {})
    assert verify_files([p], {}, strict=False) == {}
    with pytest.raises(DatasetError, match="missing file"):
        verify_files([tmp_path / "absent"], {"absent": "0" * 32})


def test_fashion_verify_pixel_change(tmp_path):
    """A changed pixel in a raw IDX file still parses: only the checksum catches it."""
    write_fashion(tmp_path, gz=False)
    table = {p.name: md5_file(p) for p in tmp_path.iterdir()}
    load_fashion_mnist(tmp_path, verify=True, checksums=table, search=False)
    img = tmp_path / "train-images-idx3-ubyte"
    data = bytearray(img.read_bytes())
    data[100] ^= 0x01
    img.write_bytes(bytes(data))
    load_fashion_mnist(tmp_path, search=False)  # still a valid IDX file
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte: checksum mismatch"):
        load_fashion_mnist(tmp_path, verify=True, checksums=table, search=False)


def test_fashion_verify_accepts_recompressed_gz(tmp_path):
    """A .gz whose own MD5 differs (re-compressed, as Debian's) passes on its payload MD5."""
    import gzip

    write_fashion(tmp_path)
    table = {}
    for p in sorted(tmp_path.iterdir()):
        payload = gzip.decompress(p.read_bytes())
        table[p.name] = "0" * 32  # the "mirror" .gz hash does not match
        table[p.name[:-3]] = __import__("hashlib").md5(payload).hexdigest()
    load_fashion_mnist(tmp_path, verify=True, checksums=table, search=False)
    table["train-labels-idx1-ubyte"] = "f" * 32
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz: checksum mismatch"):
        load_fashion_mnist(tmp_path, verify=True, checksums=table, search=False)


@pytest.mark.parametrize("packed", [False, True])
def test_cifar_verify(tmp_path, packed):
    write_cifar10(tmp_path / "s")
    write_cifar100(tmp_path / "s")
    root = tmp_path / "s"
    if packed:
        root = tmp_path / "t"
        root.mkdir()
        make_tarball(tmp_path / "s", "cifar-10-batches-py", root / "cifar-10-python.tar.gz")
        make_tarball(tmp_path / "s", "cifar-100-python", root / "cifar-100-python.tar.gz")
        table = {p.name: md5_file(p) for p in root.iterdir()}
        target = root / "cifar-10-python.tar.gz"
    else:
        table = {p.name: md5_file(p) for p in root.rglob("*") if p.is_file()}
        target = root / "cifar-10-batches-py" / "data_batch_3"
    load_cifar10(root, verify=True, checksums=table, search=False)
    load_cifar100(root, split="test", verify=True, checksums=table, search=False)
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=f"{target.name}: checksum mismatch"):
        load_cifar10(root, verify=True, checksums=table, search=False)
    with pytest.raises(DatasetError, match="no checksum known"):
        load_cifar10(root, verify=True, checksums={}, search=False)


def test_tiny_imagenet_zip_verified_and_extracted(tmp_path):
    write_tiny_imagenet(tmp_path / "ti")
    root = tmp_path / "r"
    root.mkdir()
    z = root / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted((tmp_path / "ti").rglob("*")):
            zf.write(p, p.relative_to(tmp_path / "ti"))
    table = {z.name: md5_file(z)}
    bad = {z.name: "0" * 32}
    with pytest.raises(DatasetError, match="tiny-imagenet-200.zip: checksum mismatch"):
        load_tiny_imagenet(root, split="val", verify=True, checksums=bad, search=False)
    val = load_tiny_imagenet(root, split="val", verify=True, checksums=table, search=False)
    assert len(val) == 4 and (root / "tiny-imagenet-200" / "wnids.txt").is_file()
