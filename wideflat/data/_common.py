"""Private helpers shared by the readers: folder search, hashing, download, safe unpickling."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .base import DatasetError

_CHUNK = 1 << 20

#: Debian/Ubuntu install Fashion-MNIST here (package ``dataset-fashion-mnist``).
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/wideflat`` (default ``~/.cache/wideflat``): where downloads go."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "wideflat"


def searches_beyond(root: str | os.PathLike | None, search: bool | None) -> bool:
    """Whether a reader looks past ``root``: always without a root; with one, only when
    ``search=True`` (the default ``None`` reads a given root alone, so a root that lacks the
    data is an error, never a silent fallback to another copy).

    Example:
        >>> searches_beyond(None, None), searches_beyond("d", None), searches_beyond("d", True)
        (True, False, True)
    """
    return root is None or bool(search)


def candidate_folders(
    root: str | os.PathLike | None,
    subdir: str,
    *,
    search: bool | None,
    system: Sequence[Path] = (),
) -> list[Path]:
    """Folders to look in, in order: ``root`` (and ``root/subdir``), ``$WIDEFLAT_DATA`` (and its
    ``subdir``), the ``system`` folders, then the cache folder ``cache_root()/subdir``.

    Past ``root`` only when :func:`searches_beyond` says so.
    """
    out: list[Path] = []
    if root is not None:
        r = Path(root).expanduser()
        out += [r / subdir, r]
    if searches_beyond(root, search):
        env = os.environ.get("WIDEFLAT_DATA")
        if env:
            e = Path(env).expanduser()
            out += [e / subdir, e]
        out += list(system)
        out.append(cache_root() / subdir)
    seen: set[Path] = set()
    uniq = []
    for p in out:
        if p not in seen:
            seen.add(p)
            uniq.append(p)
    return uniq


def download_folder(root: str | os.PathLike | None, subdir: str) -> Path:
    """Where ``download=True`` writes: ``root/subdir`` if ``root`` was given, else the cache."""
    if root is not None:
        return Path(root).expanduser() / subdir
    return cache_root() / subdir


def md5_file(path: str | os.PathLike) -> str:
    """Hex MD5 of a file's bytes, read in 1 MiB chunks.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
        >>> _ = p.write_bytes(b"abc")
        >>> md5_file(p)
        '900150983cd24fb0d6963f7d28e17f72'
    """
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def md5_bytes(data: bytes) -> str:
    """Hex MD5 of ``data``."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def check_md5(path: Path, expected: str, actual: str, what: str = "file") -> None:
    """Raise :class:`DatasetError` if ``actual`` differs from ``expected`` (case-insensitive)."""
    if actual.lower() != expected.lower():
        raise DatasetError(
            f"{path}: checksum mismatch: MD5 of the {what} is {actual}, expected {expected} "
            "(the file is corrupted or not the official one; delete it and fetch it again)"
        )


def _urlopen(url: str, timeout: float):  # indirection so tests can serve fake bytes
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (https/http only)


def download(url: str, dest: Path, md5: str | None, *, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` atomically (``.part`` then rename), checking its MD5.

    Raises:
        DatasetError: with no known MD5 (nothing is fetched), on a network failure, or on a
            checksum mismatch (the partial file is removed).
    """
    if not url.startswith(("https://", "http://")):
        raise DatasetError(f"{dest}: refusing to download from a non-HTTP URL {url!r}")
    if not md5:
        raise DatasetError(f"{dest}: no checksum known for {dest.name!r}; refusing to download")
    part = dest.with_name(dest.name + ".part")
    h = hashlib.md5(usedforsecurity=False)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatasetError(f"{dest.parent}: cannot create the download folder: {err}") from err
    try:
        with _urlopen(url, timeout) as resp, open(part, "wb") as out:
            while chunk := resp.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
    except OSError as err:
        part.unlink(missing_ok=True)
        raise DatasetError(
            f"{dest}: download from {url} failed: {err}. Fetch the file by hand and put it "
            f"in {dest.parent}"
        ) from err
    if h.hexdigest() != md5.lower():
        part.unlink(missing_ok=True)
        raise DatasetError(
            f"{dest}: checksum mismatch after download from {url}: MD5 {h.hexdigest()}, "
            f"expected {md5}; the partial file was removed"
        )
    os.replace(part, dest)
    return dest


def missing_message(
    dataset: str,
    names: Iterable[str],
    folders: Sequence[Path],
    *,
    url: str | None,
    hint: str = "",
    root: str | os.PathLike | None = None,
) -> str:
    """The text of a 'files not found' error: what is missing and where to put it.

    ``root`` is the given root when it was the only folder searched: the message then starts
    with it and says that no other folder was looked at.
    """
    where = ", ".join(str(f) for f in folders)
    if root is not None:
        text = (
            f"{Path(root).expanduser()}: {dataset} files not found: {', '.join(names)}. "
            f"Looked in: {where} (a given root is the only folder searched). Put the files there"
        )
    else:
        text = (
            f"{dataset}: files not found: {', '.join(names)}. Searched: {where}. "
            f"Put the files in one of these folders (or pass root=FOLDER, or set $WIDEFLAT_DATA)"
        )
    if hint:
        text += f"; {hint}"
    if url:
        text += f"; or pass download=True to fetch them from {url}"
    return text + "."


# Globals a CIFAR pickle may name: the numpy array reconstruction machinery, nothing else.
# Anything else is refused, so a crafted file cannot run code on load.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        mod, attr = target
        try:
            return super().find_class(mod, attr)
        except (ImportError, AttributeError):  # numpy < 2 has no numpy._core
            return super().find_class(mod.replace("numpy._core", "numpy.core"), attr)


def load_pickle(data: bytes, path: Path | str) -> Mapping:
    """Unpickle an official CIFAR batch (Python 2 pickle, ``latin1``) with a safe unpickler.

    Keys that are ``bytes`` are decoded as latin1, so both Python 2 and Python 3 pickles give
    ``str`` keys.

    Raises:
        DatasetError: if the bytes are empty, truncated, not a pickle, or not a dict.
    """
    if len(data) == 0:
        raise DatasetError(f"{path}: empty pickle (0 bytes)")
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except EOFError as err:
        raise DatasetError(f"{path}: truncated pickle (ends early: {err})") from err
    except Exception as err:  # UnpicklingError, ValueError, KeyError, ... from bad bytes
        raise DatasetError(
            f"{path}: unreadable pickle (truncated or corrupted): {type(err).__name__}: {err}"
        ) from err
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: pickle holds a {type(obj).__name__}, expected a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
