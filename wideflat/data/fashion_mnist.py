"""Fashion-MNIST: a validating IDX reader (``.gz`` or raw) with folder search and download."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ._common import (
    SYSTEM_FASHION_MNIST,
    candidate_folders,
    download,
    download_folder,
    md5_bytes,
    md5_file,
    missing_message,
    searches_beyond,
)
from .base import DatasetError, ImageSet
from .checksums import FASHION_MNIST_MD5, FASHION_MNIST_RAW_MD5

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_URL",
    "load_fashion_mnist",
    "locate_fashion_mnist",
    "read_idx",
]

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_APT_HINT = (
    "on Debian/Ubuntu `apt-get install dataset-fashion-mnist` installs them in "
    f"{SYSTEM_FASHION_MNIST}"
)
# IDX type codes (third magic byte) -> big-endian numpy dtype.
_IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_payload(path: Path) -> bytes:
    """The IDX bytes of ``path``, decompressed if it is gzip; every failure is a DatasetError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: missing file") from err
    except OSError as err:
        raise DatasetError(f"{path}: cannot read file: {err}") from err
    if path.suffix == ".gz" or data[:2] == _GZIP_MAGIC:
        if len(data) == 0:
            raise DatasetError(f"{path}: empty .gz file (0 bytes; gzip would return no data)")
        if data[:2] != _GZIP_MAGIC:
            raise DatasetError(
                f"{path}: not a gzip file (starts with {data[:2].hex()}, gzip starts with 1f8b)"
            )
        try:
            data = gzip.decompress(data)
        except EOFError as err:
            raise DatasetError(f"{path}: truncated .gz file ({err})") from err
        except gzip.BadGzipFile as err:
            raise DatasetError(f"{path}: corrupted .gz file (bad gzip data: {err})") from err
        except zlib.error as err:
            raise DatasetError(f"{path}: corrupted .gz file (bad deflate data: {err})") from err
        if len(data) == 0:
            raise DatasetError(f"{path}: empty .gz file (it decompresses to 0 bytes)")
    elif len(data) == 0:
        raise DatasetError(f"{path}: empty file (0 bytes)")
    return data


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    if len(data) < 4:
        raise DatasetError(f"{path}: too short for an IDX header ({len(data)} bytes, need 4)")
    if data[0] != 0 or data[1] != 0:
        raise DatasetError(
            f"{path}: wrong magic number {data[:4].hex()} (an IDX file starts with two zero "
            "bytes, a type code and the number of dimensions)"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES:
        raise DatasetError(
            f"{path}: unknown IDX type code 0x{code:02x} (valid: 0x08, 0x09, 0x0b-0x0e)"
        )
    if ndim == 0:
        raise DatasetError(f"{path}: IDX header declares ndim 0 (need at least 1 dimension)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(
            f"{path}: truncated IDX header: ndim {ndim} needs {header} bytes, file has {len(data)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[code]
    need = math.prod(dims) * dtype.itemsize  # Python ints: 2^31 x 2^31 x 4 must not wrap to 0
    have = len(data) - header
    if have != need:
        raise DatasetError(
            f"{path}: payload length {have} bytes does not match the product of dims {dims} "
            f"({need} bytes)"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (raw, or gzip-compressed) into a numpy array in native byte order.

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
        An array with the dims and dtype the header declares (read-only view for ``uint8``).

    Raises:
        DatasetError: naming the file, for a missing file, an empty/truncated/corrupted/non-gzip
            ``.gz``, a wrong magic number, ndim 0, an unknown type code, or a payload whose length
            is not the product of the dims.

    Example:
        >>> import gzip, tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x-idx1-ubyte.gz"
        >>> _ = p.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9])))
        >>> read_idx(p).tolist()
        [7, 9]
    """
    path = Path(path)
    return _parse_idx(_read_payload(path), path)


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def _search_folders(root: str | os.PathLike | None, search: bool | None) -> list[Path]:
    """The folders :func:`locate_fashion_mnist` looks in, in order."""
    return candidate_folders(root, "fashion-mnist", search=search, system=(SYSTEM_FASHION_MNIST,))


def locate_fashion_mnist(
    root: str | os.PathLike | None = None, *, split: str = "train", search: bool | None = None
) -> Path | None:
    """The first folder holding any of ``split``'s two IDX files, or None.

    A given ``root`` is the only place looked at (``root/fashion-mnist``, then ``root``) unless
    ``search=True``. Without a root, or with ``search=True`` after it, the search order is
    ``$WIDEFLAT_DATA`` (and its ``fashion-mnist``), ``/usr/share/datasets/fashion-mnist``,
    ``~/.cache/wideflat/fashion-mnist``.

    Example:
        >>> locate_fashion_mnist("/nonexistent", search=False) is None
        True
    """
    _check_split(split)
    names = _FILES[split]
    for folder in _search_folders(root, search):
        if any(_find_file(folder, n) is not None for n in names):
            return folder
    return None


def _check_split(split: str) -> None:
    if split not in _FILES:
        raise ValueError(f"Invalid split for Fashion-MNIST: {split!r} (use 'train' or 'test')")


def _verify(path: Path, payload: bytes, table: Mapping[str, str]) -> None:
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    file_md5 = md5_file(path)
    if table.get(path.name, "").lower() == file_md5:
        return
    payload_md5 = md5_bytes(payload)
    if table.get(stem, "").lower() == payload_md5:
        return
    if path.name not in table and stem not in table:
        raise DatasetError(f"{path}: no checksum known for {path.name!r} or {stem!r}")
    raise DatasetError(
        f"{path}: checksum mismatch: file MD5 {file_md5} (expected {table.get(path.name)}), "
        f"payload MD5 {payload_md5} (expected {table.get(stem)}); the file is corrupted or "
        "not the official one"
    )


def load_fashion_mnist(
    root: str | os.PathLike | None = None,
    *,
    split: str = "train",
    dtype: torch.dtype = torch.uint8,
    download: bool = False,
    verify: bool = False,
    checksums: Mapping[str, str] | None = None,
    search: bool | None = None,
) -> ImageSet:
    """Load one Fashion-MNIST split from the four official IDX files.

    The files (``train-images-idx3-ubyte[.gz]`` ...) are read from ``root`` when it is given,
    and from nowhere else: a root without them is an error. Without a root they are looked for
    in order in ``$WIDEFLAT_DATA``, ``/usr/share/datasets/fashion-mnist`` (Debian's
    ``dataset-fashion-mnist``) and ``~/.cache/wideflat/fashion-mnist``. The first folder holding
    any of the split's files must hold both; ``source`` of the result names it. Nothing touches
    the network unless ``download=True`` and no folder has the files; then they are fetched from
    :data:`FASHION_MNIST_URL` into ``root/fashion-mnist`` (or the cache) and their MD5 is checked.

    Args:
        root: the folder to read (the files may sit in it or in ``root/fashion-mnist``).
        split: ``"train"`` (60000 images) or ``"test"`` (10000).
        dtype: ``torch.uint8`` (pixels 0..255) or a float dtype (pixels scaled to [0, 1]).
        download: allow fetching the files when they are absent.
        verify: check the files against ``checksums`` (the ``.gz`` MD5, or else the MD5 of the
            decompressed payload, which also accepts Debian's re-compressed files).
        checksums: name → MD5 table; defaults to :data:`FASHION_MNIST_MD5` together with
            :data:`FASHION_MNIST_RAW_MD5`. Tests inject their own.
        search: ``True`` also searches the folders above after ``root``; the default ``None``
            (or ``False``) reads a given ``root`` alone.

    Returns:
        An :class:`ImageSet` with images N×28×28 and int64 labels in 0..9.

    Raises:
        DatasetError: naming the file and the defect (see :func:`read_idx`), or, if the files
            are absent, saying where to put them.

    Example:
        >>> from wideflat.data import load_fashion_mnist
        >>> test = load_fashion_mnist(split="test")  # doctest: +SKIP
        >>> test.images.shape, test.labels.dtype  # doctest: +SKIP
        (torch.Size([10000, 28, 28]), torch.int64)
    """
    _check_split(split)
    if not (dtype == torch.uint8 or (isinstance(dtype, torch.dtype) and dtype.is_floating_point)):
        raise ValueError(f"Invalid dtype for Fashion-MNIST: {dtype} (use torch.uint8 or a float)")
    if checksums is not None and not isinstance(checksums, Mapping):
        raise TypeError(f"checksums must be a mapping name -> md5, got {type(checksums)}")
    table = (
        dict(checksums) if checksums is not None else {**FASHION_MNIST_MD5, **FASHION_MNIST_RAW_MD5}
    )
    names = _FILES[split]
    folder = locate_fashion_mnist(root, split=split, search=search)
    if folder is None:
        folders = _search_folders(root, search)
        if not download:
            raise DatasetError(
                missing_message(
                    "Fashion-MNIST",
                    [f"{n}.gz" for n in names],
                    folders,
                    url=FASHION_MNIST_URL,
                    hint=_APT_HINT,
                    root=None if searches_beyond(root, search) else root,
                )
            )
        folder = download_folder(root, "fashion-mnist")
        for n in names:
            _download_file(folder, f"{n}.gz", table)
    paths = []
    for n in names:
        p = _find_file(folder, n)
        if p is None:
            raise DatasetError(
                f"{folder / (n + '.gz')}: missing file (the folder holds the other "
                f"Fashion-MNIST {split} file); {_APT_HINT}"
            )
        paths.append(p)
    img_path, lbl_path = paths
    img_bytes, lbl_bytes = _read_payload(img_path), _read_payload(lbl_path)
    if verify:
        _verify(img_path, img_bytes, table)
        _verify(lbl_path, lbl_bytes, table)
    images = _parse_idx(img_bytes, img_path)
    labels = _parse_idx(lbl_bytes, lbl_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DatasetError(
            f"{img_path}: wrong image dims {images.shape} ({images.dtype}, ndim {images.ndim}); "
            "Fashion-MNIST images are uint8 with ndim 3, N x 28 x 28"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DatasetError(
            f"{lbl_path}: wrong label dims {labels.shape} ({labels.dtype}, ndim {labels.ndim}); "
            "Fashion-MNIST labels are uint8 with ndim 1"
        )
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{lbl_path}: label count {labels.shape[0]} differs from the image count "
            f"{images.shape[0]} in {img_path.name}"
        )
    bad = np.flatnonzero(labels >= len(FASHION_MNIST_CLASSES))
    if bad.size:
        raise DatasetError(
            f"{lbl_path}: label out of range: {bad.size} labels >= 10 (first: {labels[bad[0]]} "
            f"at index {bad[0]})"
        )
    x = torch.from_numpy(images.copy())
    if dtype != torch.uint8:
        x = x.to(dtype).div_(255.0)
    return ImageSet(
        images=x,
        labels=torch.from_numpy(labels.astype(np.int64)),
        classes=FASHION_MNIST_CLASSES,
        name="fashion-mnist",
        split=split,
        source=str(folder),
    )


def _download_file(folder: Path, name: str, table: Mapping[str, str]) -> None:
    download(FASHION_MNIST_URL + name, folder / name, table.get(name))
