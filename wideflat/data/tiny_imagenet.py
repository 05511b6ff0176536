"""Tiny ImageNet (200 classes, 64×64) in its official folder layout; JPEGs decoded by Pillow.

Layout (as in ``tiny-imagenet-200.zip``)::

    tiny-imagenet-200/wnids.txt                      one WordNet id per line (the classes)
    tiny-imagenet-200/words.txt                      optional: "wnid<TAB>names"
    tiny-imagenet-200/train/<wnid>/images/*.JPEG     500 per class
    tiny-imagenet-200/val/val_annotations.txt        "file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1"
    tiny-imagenet-200/val/images/*.JPEG              10000
"""

from __future__ import annotations

import os
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePath

import numpy as np
import torch

from ._common import cache_root, download, md5_file, missing_message, searches_beyond
from .base import DatasetError, ImageSet
from .checksums import TINY_IMAGENET_MD5

__all__ = ["TINY_IMAGENET_URL", "load_tiny_imagenet"]

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
_FOLDER = "tiny-imagenet-200"
_ZIP = "tiny-imagenet-200.zip"
_SIZE = 64


def _bases(root, search: bool | None) -> list[Path]:
    out = []
    if root is not None:
        out.append(Path(root).expanduser())
    if searches_beyond(root, search):
        env = os.environ.get("WIDEFLAT_DATA")
        if env:
            out.append(Path(env).expanduser())
        out.append(cache_root())
    return list(dict.fromkeys(out))


def _extract(zip_path: Path) -> Path:
    dest = zip_path.parent
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for name in zf.namelist():
                target = (dest / name).resolve()
                if not target.is_relative_to(dest.resolve()):
                    raise DatasetError(f"{zip_path}: member {name!r} would extract outside {dest}")
            zf.extractall(dest)
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise DatasetError(f"{zip_path}: corrupted or truncated zip: {err}") from err
    except (RuntimeError, NotImplementedError) as err:  # encrypted, or an unknown compression
        raise DatasetError(f"{zip_path}: cannot extract the zip: {err}") from err
    except OSError as err:
        raise DatasetError(f"{zip_path}: cannot extract the zip into {dest}: {err}") from err
    folder = dest / _FOLDER
    if not folder.is_dir():
        raise DatasetError(f"{zip_path}: the zip holds no {_FOLDER}/ folder")
    return folder


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path}: missing {what}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: unreadable {what}: {err}") from err
    return [line.strip() for line in text.splitlines() if line.strip()]


def _plain_name(entry: str) -> bool:
    """True if ``entry`` is one file or folder name: no separator, drive, ``.`` or ``..``, so
    joining it to a folder stays inside that folder (symbolic links aside)."""
    return entry not in ("", ".", "..") and PurePath(entry).name == entry


def _decode(path: Path) -> np.ndarray:
    """A 64×64 image as a 3×64×64 uint8 array; the size is checked before decoding.

    Pillow's decompression-bomb guard (an error above twice ``Image.MAX_IMAGE_PIXELS``, a
    warning above it) is turned into a DatasetError, and so is any failure of a decoder
    reading bad bytes.
    """
    try:
        from PIL import Image
    except ImportError as err:  # Pillow ships with matplotlib, but say so if it is absent
        raise ImportError("Tiny ImageNet needs Pillow to decode JPEGs: pip install pillow") from err
    if not path.is_file():
        raise DatasetError(f"{path}: missing image file")
    arr = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                size = im.size
                if size == (_SIZE, _SIZE):
                    arr = np.asarray(im.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DatasetError(
            f"{path}: image too large to decode safely (decompression bomb?): {err}"
        ) from err
    except Exception as err:  # UnidentifiedImageError, OSError, SyntaxError, ... from bad bytes
        raise DatasetError(f"{path}: cannot decode image: {type(err).__name__}: {err}") from err
    if arr is None:
        raise DatasetError(
            f"{path}: image size {size[0]}x{size[1]}, Tiny ImageNet images are 64x64"
        )
    return arr.transpose(2, 0, 1)


def load_tiny_imagenet(
    root: str | os.PathLike | None = None,
    *,
    split: str = "train",
    dtype: torch.dtype = torch.uint8,
    download: bool = False,
    verify: bool = False,
    checksums: Mapping[str, str] | None = None,
    search: bool | None = None,
) -> ImageSet:
    """Load a Tiny ImageNet split from the official ``tiny-imagenet-200/`` folder.

    Read from ``root`` when it is given, and from nowhere else (a root without the data is an
    error); without a root, looked for in ``$WIDEFLAT_DATA``, then ``~/.cache/wideflat``. Each
    may hold the folder, be the folder, or hold ``tiny-imagenet-200.zip``, which is then
    extracted next to itself; ``source`` of the result names the folder read. Image names in
    ``val_annotations.txt`` and the wnids (folder names under ``train/``) must be plain names,
    so nothing outside the dataset folder is read.
    With ``download=True`` and nothing found, the zip is fetched from
    :data:`TINY_IMAGENET_URL`, its MD5 checked, and extracted. Every JPEG is decoded at
    construction (the whole split is held in memory: 100000×3×64×64 bytes ≈ 1.2 GB for train).
    Labels are the line numbers of the wnids in ``wnids.txt``.

    Args:
        root: the folder to read.
        split: ``"train"`` or ``"val"`` (the official test split has no labels).
        dtype: ``torch.uint8`` or a float dtype (pixels scaled to [0, 1]).
        download: allow fetching the zip when absent.
        verify: check the zip's MD5 (the zip must sit next to the folder).
        checksums: name → MD5 table; defaults to :data:`~wideflat.data.checksums.TINY_IMAGENET_MD5`.
        search: ``True`` also searches the folders above after ``root``; the default ``None``
            (or ``False``) reads a given ``root`` alone.

    Returns:
        An :class:`ImageSet` with images N×3×64×64; ``classes`` are the wnids (or, when
        ``words.txt`` is present, their first English name).

    Raises:
        DatasetError: naming the file and the defect: missing ``wnids.txt``, class folder,
            ``val_annotations.txt`` or image; an unknown wnid in the annotations; an image
            entry or wnid that is not a plain name; an undecodable, wrongly sized or
            oversized (decompression-bomb) image; a corrupted zip; or, when nothing is found,
            where to put it.

    Example:
        >>> val = load_tiny_imagenet("~/data", split="val")  # doctest: +SKIP
        >>> val.images.shape  # doctest: +SKIP
        torch.Size([10000, 3, 64, 64])
    """
    if split not in ("train", "val"):
        raise ValueError(f"Invalid split for Tiny ImageNet: {split!r} (use 'train' or 'val')")
    if not (dtype == torch.uint8 or (isinstance(dtype, torch.dtype) and dtype.is_floating_point)):
        raise ValueError(f"Invalid dtype for Tiny ImageNet: {dtype} (use torch.uint8 or a float)")
    if checksums is not None and not isinstance(checksums, Mapping):
        raise TypeError(f"checksums must be a mapping name -> md5, got {type(checksums)}")
    table = dict(checksums) if checksums is not None else dict(TINY_IMAGENET_MD5)
    folder = _locate(root, search, download, verify, table)
    wnids = _read_wnids(folder)
    files, labels = (_train_files if split == "train" else _val_files)(folder, wnids)

    images = torch.from_numpy(np.stack([_decode(p) for p in files]))
    if dtype != torch.uint8:
        images = images.to(dtype).div_(255.0)
    return ImageSet(
        images=images,
        labels=torch.tensor(labels, dtype=torch.int64),
        classes=_class_names(folder, wnids),
        name="tiny-imagenet",
        split=split,
        source=str(folder),
    )


def _locate(root, search, download: bool, verify: bool, table: Mapping[str, str]) -> Path:
    """The ``tiny-imagenet-200`` folder: found (extracting a zip), or downloaded if allowed."""
    folder = None
    for base in _bases(root, search):
        if (base / _FOLDER).is_dir():
            folder = base / _FOLDER
        elif base.name == _FOLDER and base.is_dir():
            folder = base
        elif (base / _ZIP).is_file():
            if verify:
                _verify_zip(base / _ZIP, table)
            folder = _extract(base / _ZIP)
        if folder is not None:
            break
    if folder is None:
        if not download:
            raise DatasetError(
                missing_message(
                    "Tiny ImageNet",
                    [f"{_FOLDER}/ (or {_ZIP})"],
                    _bases(root, search),
                    url=TINY_IMAGENET_URL,
                    root=None if searches_beyond(root, search) else root,
                )
            )
        dest = (Path(root).expanduser() if root is not None else cache_root()) / _ZIP
        _download(dest, table)
        folder = _extract(dest)
    elif verify:
        zip_path = folder.parent / _ZIP
        if not zip_path.is_file():
            raise DatasetError(
                f"{folder}: cannot verify an extracted folder (no official per-file checksums); "
                f"keep {_ZIP} next to it at {zip_path}"
            )
        _verify_zip(zip_path, table)
    return folder


def _read_wnids(folder: Path) -> list[str]:
    """The class ids of ``wnids.txt``: non-empty, distinct, plain folder names."""
    wnids = _read_lines(folder / "wnids.txt", "wnids.txt (the list of class ids)")
    if not wnids:
        raise DatasetError(f"{folder / 'wnids.txt'}: empty wnids.txt (no class ids)")
    if len(set(wnids)) != len(wnids):
        raise DatasetError(f"{folder / 'wnids.txt'}: duplicate wnids in wnids.txt")
    for w in wnids:
        if not _plain_name(w):
            raise DatasetError(
                f"{folder / 'wnids.txt'}: wnid {w!r} is not a plain folder name in "
                f"{folder / 'train'} (paths that may leave the dataset folder are refused)"
            )
    return wnids


def _train_files(folder: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    """Every JPEG under ``train/<wnid>/images`` (sorted per class) and its label."""
    index = {w: i for i, w in enumerate(wnids)}
    files: list[Path] = []
    labels: list[int] = []
    for w in wnids:
        img_dir = folder / "train" / w / "images"
        if not img_dir.is_dir():
            raise DatasetError(f"{img_dir}: missing class folder for wnid {w!r}")
        try:
            found = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
        except OSError as err:
            raise DatasetError(f"{img_dir}: cannot list the class folder: {err}") from err
        if not found:
            raise DatasetError(f"{img_dir}: no JPEG images for wnid {w!r}")
        files += found
        labels += [index[w]] * len(found)
    return files, labels


def _val_files(folder: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    """The images listed in ``val/val_annotations.txt`` and their labels."""
    index = {w: i for i, w in enumerate(wnids)}
    files: list[Path] = []
    labels: list[int] = []
    ann = folder / "val" / "val_annotations.txt"
    for lineno, line in enumerate(_read_lines(ann, "val_annotations.txt"), start=1):
        parts = line.split("\t")
        if len(parts) < 2:
            raise DatasetError(f"{ann}: line {lineno} has no '<file><TAB><wnid>': {line!r}")
        name, w = parts[0], parts[1]
        if not _plain_name(name):
            raise DatasetError(
                f"{ann}: line {lineno}: image entry {name!r} is not a plain file name in "
                f"{folder / 'val' / 'images'} (paths that may leave the dataset folder "
                "are refused)"
            )
        if w not in index:
            raise DatasetError(
                f"{ann}: line {lineno}: unknown wnid {w!r} (not in {folder / 'wnids.txt'})"
            )
        files.append(folder / "val" / "images" / name)
        labels.append(index[w])
    if not files:
        raise DatasetError(f"{ann}: no annotations")
    return files, labels


def _class_names(folder: Path, wnids: list[str]) -> tuple[str, ...]:
    words = folder / "words.txt"
    if not words.is_file():
        return tuple(wnids)
    try:
        content = words.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise DatasetError(f"{words}: unreadable words.txt: {err}") from err
    names = {}
    for line in content.splitlines():
        wnid, _, text = line.partition("\t")
        names[wnid.strip()] = text.split(",")[0].strip()
    return tuple(names.get(w) or w for w in wnids)


def _verify_zip(path: Path, table: Mapping[str, str]) -> None:
    expected = table.get(path.name)
    if expected is None:
        raise DatasetError(f"{path}: no checksum known for {path.name!r}")
    actual = md5_file(path)
    if actual != expected.lower():
        raise DatasetError(f"{path}: checksum mismatch: MD5 {actual}, expected {expected}")


def _download(dest: Path, table: Mapping[str, str]) -> None:
    download(TINY_IMAGENET_URL, dest, table.get(dest.name))
