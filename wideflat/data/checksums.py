"""MD5 tables of the official dataset files (the values torchvision uses) and a verifier.

Fashion-MNIST has two tables: the MD5 of each ``.gz`` as served by the canonical mirror, and
the MD5 of its decompressed payload. Debian's ``dataset-fashion-mnist`` re-compresses the files,
so their ``.gz`` hashes differ from the mirror's while the payloads are identical; a local
``.gz`` passes verification when either hash matches.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ._common import check_md5, md5_file
from .base import DatasetError

__all__ = [
    "CIFAR10_MD5",
    "CIFAR100_MD5",
    "FASHION_MNIST_MD5",
    "FASHION_MNIST_RAW_MD5",
    "TINY_IMAGENET_MD5",
    "md5_file",
    "verify_files",
]

#: ``.gz`` files at http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/
FASHION_MNIST_MD5: Mapping[str, str] = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

#: Decompressed IDX payloads (equal for the mirror's and Debian's files).
FASHION_MNIST_RAW_MD5: Mapping[str, str] = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}

#: https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and its members.
CIFAR10_MD5: Mapping[str, str] = {
    "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}

#: https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and its members.
CIFAR100_MD5: Mapping[str, str] = {
    "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "meta": "7973b15100ade9c7d40fb424638fde48",
}

#: http://cs231n.stanford.edu/tiny-imagenet-200.zip
TINY_IMAGENET_MD5: Mapping[str, str] = {
    "tiny-imagenet-200.zip": "90528d7ca1a48142e341f4ef8d21d0de",
}


def verify_files(
    paths: list[str | os.PathLike], table: Mapping[str, str], *, strict: bool = True
) -> dict[str, str]:
    """Check each file's MD5 against ``table`` (looked up by file name).

    Args:
        paths: files to check.
        table: file name → expected hex MD5 (e.g. :data:`CIFAR10_MD5`, or a test's own table).
        strict: if True, a file whose name is not in ``table`` is an error.

    Returns:
        File name → the MD5 computed.

    Raises:
        DatasetError: naming the file, on a missing file, a name absent from the table (strict),
            or a mismatch.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
        >>> _ = p.write_bytes(b"abc")
        >>> verify_files([p], {"x": "900150983cd24fb0d6963f7d28e17f72"})
        {'x': '900150983cd24fb0d6963f7d28e17f72'}
    """
    if not isinstance(table, Mapping):
        raise TypeError(f"verify_files: table must be a mapping name -> md5, got {type(table)}")
    out = {}
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise DatasetError(f"{path}: missing file, cannot verify its checksum")
        expected = table.get(path.name)
        if expected is None:
            if strict:
                raise DatasetError(f"{path}: no checksum known for file name {path.name!r}")
            continue
        actual = md5_file(path)
        check_md5(path, expected, actual)
        out[path.name] = actual
    return out
