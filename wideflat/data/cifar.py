"""CIFAR-10 and CIFAR-100 in their official python-pickle layout (folder or ``.tar.gz``)."""

from __future__ import annotations

import os
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._common import (
    cache_root,
    download,
    load_pickle,
    md5_bytes,
    md5_file,
    missing_message,
    searches_beyond,
)
from .base import DatasetError, ImageSet
from .checksums import CIFAR10_MD5, CIFAR100_MD5

__all__ = ["CIFAR10_URL", "CIFAR100_URL", "load_cifar10", "load_cifar100"]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
_ROW = 3 * 32 * 32  # one image: 1024 red, 1024 green, 1024 blue bytes, each row-major


@dataclass(frozen=True)
class _Spec:
    name: str
    folder: str  # official folder name inside the tarball
    tarball: str
    url: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: str
    names_key: str
    num_classes: int
    table: Mapping[str, str]


_CIFAR10 = _Spec(
    "cifar10",
    "cifar-10-batches-py",
    "cifar-10-python.tar.gz",
    CIFAR10_URL,
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",),
    "batches.meta",
    "labels",
    "label_names",
    10,
    CIFAR10_MD5,
)
_CIFAR100 = _Spec(
    "cifar100",
    "cifar-100-python",
    "cifar-100-python.tar.gz",
    CIFAR100_URL,
    ("train",),
    ("test",),
    "meta",
    "fine_labels",
    "fine_label_names",
    100,
    CIFAR100_MD5,
)


def _bases(root: str | os.PathLike | None, search: bool | None) -> list[Path]:
    out = []
    if root is not None:
        out.append(Path(root).expanduser())
    if searches_beyond(root, search):
        env = os.environ.get("WIDEFLAT_DATA")
        if env:
            out.append(Path(env).expanduser())
        out.append(cache_root())
    return list(dict.fromkeys(out))


def _locate(spec: _Spec, root, search: bool | None) -> tuple[str, Path] | None:
    """('folder', path) or ('tar', path) for the first base holding the data."""
    for base in _bases(root, search):
        if (base / spec.folder).is_dir():
            return "folder", base / spec.folder
        if base.name == spec.folder and base.is_dir():
            return "folder", base
        if (base / spec.tarball).is_file():
            return "tar", base / spec.tarball
    return None


def _read_folder(folder: Path, names: list[str], verify: bool, table) -> dict[str, bytes]:
    out = {}
    for name in names:
        path = folder / name
        if not path.is_file():
            kind = "meta file" if "meta" in name else "batch file"
            raise DatasetError(f"{path}: missing {kind} {name!r} in {folder}")
        try:
            data = path.read_bytes()
        except OSError as err:
            raise DatasetError(f"{path}: cannot read file: {err}") from err
        if verify:
            _check(path, md5_bytes(data), table)
        out[name] = data
    return out


def _read_tar(tar_path: Path, folder: str, names: list[str], verify: bool, table) -> dict:
    if tar_path.stat().st_size == 0:
        raise DatasetError(f"{tar_path}: empty tarball (0 bytes); delete it and fetch it again")
    if verify:
        _check(tar_path, md5_file(tar_path), table)
    wanted = {f"{folder}/{n}": n for n in names}
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            for member in tar:
                n = wanted.get(member.name.removeprefix("./"))
                if n is not None and member.isfile():
                    f = tar.extractfile(member)
                    out[n] = f.read() if f is not None else b""
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DatasetError(f"{tar_path}: corrupted or truncated tarball: {err}") from err
    for n in names:
        if n not in out:
            kind = "meta file" if "meta" in n else "batch file"
            raise DatasetError(f"{tar_path}: missing {kind} {folder}/{n} in the tarball")
    return out


def _check(path: Path, actual: str, table: Mapping[str, str]) -> None:
    expected = table.get(path.name)
    if expected is None:
        raise DatasetError(f"{path}: no checksum known for {path.name!r}")
    if expected.lower() != actual:
        raise DatasetError(
            f"{path}: checksum mismatch: MD5 {actual}, expected {expected} (the file is "
            "corrupted or not the official one)"
        )


def _array(value, where: str, key: str) -> np.ndarray:
    """``np.asarray(value)``, with a ragged or odd value reported as a DatasetError."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as err:
        raise DatasetError(f"{where}: {key!r} is not an array: {err}") from err


def _parse_batch(data: bytes, where: str, label_key: str, num_classes: int):
    d = load_pickle(data, where)
    for key in ("data", label_key):
        if key not in d:
            raise DatasetError(
                f"{where}: missing key {key!r} in the batch dict (keys: {sorted(map(str, d))})"
            )
    x = _array(d["data"], where, "data")
    if x.dtype != np.uint8:
        raise DatasetError(f"{where}: 'data' has dtype {x.dtype}, expected uint8")
    if x.size % _ROW != 0:
        raise DatasetError(
            f"{where}: 'data' length {x.size} is not a multiple of 3072 (3x32x32 bytes per image)"
        )
    n = x.size // _ROW
    y = _array(d[label_key], where, label_key)
    if y.ndim != 1 or y.shape[0] != n or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise DatasetError(
            f"{where}: {label_key!r} must be {n} integers (one per image), got shape "
            f"{y.shape} of {y.dtype}"
        )
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if bad.size:
        raise DatasetError(
            f"{where}: label out of range: {bad.size} values outside 0..{num_classes - 1} in "
            f"{label_key!r} (first: {y[bad[0]]} at index {bad[0]})"
        )
    return x.reshape(n, 3, 32, 32), y.astype(np.int64)


def _load(
    spec: _Spec,
    root,
    *,
    split: str,
    dtype: torch.dtype,
    download_ok: bool,
    verify: bool,
    checksums,
    search: bool | None,
    coarse: bool = False,
) -> ImageSet:
    if split not in ("train", "test"):
        raise ValueError(f"Invalid split for {spec.name}: {split!r} (use 'train' or 'test')")
    if not (dtype == torch.uint8 or (isinstance(dtype, torch.dtype) and dtype.is_floating_point)):
        raise ValueError(f"Invalid dtype for {spec.name}: {dtype} (use torch.uint8 or a float)")
    if checksums is not None and not isinstance(checksums, Mapping):
        raise TypeError(f"checksums must be a mapping name -> md5, got {type(checksums)}")
    table = dict(checksums) if checksums is not None else dict(spec.table)
    found = _locate(spec, root, search)
    if found is None:
        if not download_ok:
            raise DatasetError(
                missing_message(
                    spec.name,
                    [f"{spec.folder}/ (or {spec.tarball})"],
                    _bases(root, search),
                    url=spec.url,
                    root=None if searches_beyond(root, search) else root,
                )
            )
        dest = (Path(root).expanduser() if root is not None else cache_root()) / spec.tarball
        download(spec.url, dest, table.get(spec.tarball))
        found = ("tar", dest)
    kind, path = found
    batches = list(spec.train if split == "train" else spec.test)
    names = [*batches, spec.meta]
    if kind == "folder":
        raw = _read_folder(path, names, verify, table)
        where = {n: str(path / n) for n in names}
    else:
        raw = _read_tar(path, spec.folder, names, verify, table)
        where = {n: f"{path}:{spec.folder}/{n}" for n in names}
    meta = load_pickle(raw[spec.meta], where[spec.meta])
    names_key = "coarse_label_names" if coarse else spec.names_key
    label_key = "coarse_labels" if coarse else spec.label_key
    num_classes = 20 if coarse else spec.num_classes
    classes = meta.get(names_key)
    if not isinstance(classes, (list, tuple)) or len(classes) != num_classes:
        raise DatasetError(
            f"{where[spec.meta]}: meta file lacks {names_key!r} with {num_classes} class names"
        )
    xs, ys = [], []
    for n in batches:
        x, y = _parse_batch(raw[n], where[n], label_key, num_classes)
        xs.append(x)
        ys.append(y)
    images = torch.from_numpy(np.concatenate(xs))
    if dtype != torch.uint8:
        images = images.to(dtype).div_(255.0)
    return ImageSet(
        images=images,
        labels=torch.from_numpy(np.concatenate(ys)),
        classes=tuple(str(c) for c in classes),
        name=spec.name,
        split=split,
        source=str(path),
    )


def load_cifar10(
    root: str | os.PathLike | None = None,
    *,
    split: str = "train",
    dtype: torch.dtype = torch.uint8,
    download: bool = False,
    verify: bool = False,
    checksums: Mapping[str, str] | None = None,
    search: bool | None = None,
) -> ImageSet:
    """Load a CIFAR-10 split from ``cifar-10-batches-py/`` or ``cifar-10-python.tar.gz``.

    Read from ``root`` when it is given (it may contain the folder or the tarball, or be the
    folder), and from nowhere else: a root without them is an error. Without a root they are
    looked for in ``$WIDEFLAT_DATA``, then ``~/.cache/wideflat``; ``source`` of the result names
    the folder or tarball read. The tarball is read in place (not extracted). Pickles are read
    with a restricted unpickler that only rebuilds numpy arrays. The network is used only with
    ``download=True`` when nothing is found: the official tarball is fetched into ``root`` (or
    the cache) and its MD5 checked.

    Args:
        root: the folder to read.
        split: ``"train"`` (``data_batch_1..5``, 50000 images) or ``"test"`` (``test_batch``).
        dtype: ``torch.uint8`` or a float dtype (pixels scaled to [0, 1]).
        download: allow fetching the tarball when absent.
        verify: check MD5s against ``checksums`` (each batch file, or the tarball).
        checksums: name → MD5 table; defaults to :data:`~wideflat.data.checksums.CIFAR10_MD5`.
        search: ``True`` also searches the folders above after ``root``; the default ``None``
            (or ``False``) reads a given ``root`` alone.

    Returns:
        An :class:`ImageSet` with images N×3×32×32 (RGB, channels first) and labels 0..9.

    Raises:
        DatasetError: naming the file and the defect: missing batch or meta file, empty,
            truncated or corrupted pickle, missing ``data``/``labels`` key, ``data`` length not
            a multiple of 3072, label out of range, checksum mismatch; or, when nothing is
            found, where to put the files.

    Example:
        >>> train = load_cifar10("~/data", split="train")  # doctest: +SKIP
        >>> train.images.shape  # doctest: +SKIP
        torch.Size([50000, 3, 32, 32])
    """
    return _load(
        _CIFAR10,
        root,
        split=split,
        dtype=dtype,
        download_ok=download,
        verify=verify,
        checksums=checksums,
        search=search,
    )


def load_cifar100(
    root: str | os.PathLike | None = None,
    *,
    split: str = "train",
    dtype: torch.dtype = torch.uint8,
    coarse: bool = False,
    download: bool = False,
    verify: bool = False,
    checksums: Mapping[str, str] | None = None,
    search: bool | None = None,
) -> ImageSet:
    """Load a CIFAR-100 split from ``cifar-100-python/`` or ``cifar-100-python.tar.gz``.

    Same search, download and validation rules as :func:`load_cifar10`; the files are
    ``train``, ``test`` and ``meta``.

    Args:
        root: the folder to read.
        split: ``"train"`` (50000 images) or ``"test"`` (10000).
        dtype: ``torch.uint8`` or a float dtype (pixels scaled to [0, 1]).
        coarse: use the 20 ``coarse_labels`` instead of the 100 ``fine_labels``.
        download: allow fetching the tarball when absent.
        verify: check MD5s against ``checksums``.
        checksums: name → MD5 table; defaults to :data:`~wideflat.data.checksums.CIFAR100_MD5`.
        search: ``True`` also searches the folders above after ``root``; the default ``None``
            (or ``False``) reads a given ``root`` alone.

    Returns:
        An :class:`ImageSet` with images N×3×32×32 and labels 0..99 (0..19 if ``coarse``).

    Raises:
        DatasetError: as :func:`load_cifar10` (the label key is ``fine_labels``).

    Example:
        >>> test = load_cifar100("~/data", split="test")  # doctest: +SKIP
        >>> test.num_classes  # doctest: +SKIP
        100
    """
    return _load(
        _CIFAR100,
        root,
        split=split,
        dtype=dtype,
        download_ok=download,
        verify=verify,
        checksums=checksums,
        search=search,
        coarse=coarse,
    )
