"""T3 check 27: no network unless download=True; absent files say where to put them.

The download path itself is tested with a fake ``urlopen`` that serves local bytes.
"""

from __future__ import annotations

import io
import socket

import pytest
from wideflat_data_fakes import make_tarball, write_cifar10, write_cifar100, write_fashion

import wideflat.data._common as common
from wideflat.data import (
    DatasetError,
    fashion_committee,
    load_cifar10,
    load_cifar100,
    load_committee_data,
    load_fashion_mnist,
    load_tiny_imagenet,
)
from wideflat.data.checksums import md5_file


@pytest.fixture
def no_network(monkeypatch):
    """Count and refuse every socket creation and every urlopen."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(common, "_urlopen", refuse)
    return attempts


@pytest.fixture
def empty_search_path(tmp_path, monkeypatch):
    """$WIDEFLAT_DATA, the cache and the system folder all point at empty folders."""
    monkeypatch.setenv("WIDEFLAT_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("wideflat.data.fashion_mnist.SYSTEM_FASHION_MNIST", tmp_path / "sys")
    return tmp_path


def test_loaders_construct_from_local_files(tmp_path, no_network):
    write_fashion(tmp_path)
    write_cifar10(tmp_path)
    write_cifar100(tmp_path / "c100")
    make_tarball(tmp_path / "c100", "cifar-100-python", tmp_path / "cifar-100-python.tar.gz")
    from wideflat_data_fakes import write_tiny_imagenet

    write_tiny_imagenet(tmp_path)
    assert len(load_fashion_mnist(tmp_path, download=True, search=False)) == 3
    assert len(load_cifar10(tmp_path, split="test", download=True, search=False)) == 3
    assert len(load_cifar100(tmp_path, download=True, search=False)) == 3
    assert len(load_tiny_imagenet(tmp_path, split="val", download=True, search=False)) == 4
    assert load_committee_data("teacher", n_train=5, n_test=3, n_features=9, k=3).n_train == 5
    assert no_network == []


@pytest.mark.parametrize(
    "loader, names",
    [
        (load_fashion_mnist, ["train-images-idx3-ubyte.gz", "apt-get install dataset-fashion"]),
        (load_cifar10, ["cifar-10-batches-py/", "cifar-10-python.tar.gz"]),
        (load_cifar100, ["cifar-100-python/", "cifar-100-python.tar.gz"]),
        (load_tiny_imagenet, ["tiny-imagenet-200/", "tiny-imagenet-200.zip"]),
    ],
)
def test_absent_files_say_where_to_put_them(empty_search_path, no_network, loader, names):
    tmp = empty_search_path
    with pytest.raises(DatasetError) as info:
        loader()
    msg = str(info.value)
    for text in [*names, "Put the files in one of these folders", "download=True"]:
        assert text in msg, msg
    for folder in ("env", "cache"):
        assert str(tmp / folder) in msg, msg
    # A given root is the only folder searched, and the message says so.
    with pytest.raises(DatasetError) as info:
        loader(tmp / "mine")
    msg = str(info.value)
    for text in [*names, f"{tmp / 'mine'}: ", "only folder searched", "download=True"]:
        assert text in msg, msg
    assert str(tmp / "env") not in msg and str(tmp / "cache") not in msg, msg
    assert no_network == []


def test_download_into_an_unusable_root_is_a_dataset_error(tmp_path, no_network):
    root = tmp_path / "a-file"
    root.write_text("")
    with pytest.raises(DatasetError, match=f"^{root / 'fashion-mnist'}: cannot create"):
        load_fashion_mnist(root, download=True)
    assert no_network == []


def test_auto_committee_falls_back_without_network(empty_search_path, no_network):
    d = load_committee_data("auto", root=empty_search_path / "x", n_train=6, n_features=5, k=3)
    assert d.name == "teacher" and "not found" in d.metadata["fallback"]
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        fashion_committee(empty_search_path / "x")
    assert no_network == []


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _serve(monkeypatch, files):
    requested = []

    def fake_urlopen(url, timeout):
        requested.append(url)
        name = url.rsplit("/", 1)[1]
        if name not in files:
            raise OSError(f"404 {url}")
        return _FakeResponse(files[name])

    monkeypatch.setattr(common, "_urlopen", fake_urlopen)
    return requested


def test_fashion_download_checks_md5(tmp_path, empty_search_path, monkeypatch):
    src = tmp_path / "server"
    write_fashion(src)
    files = {p.name: p.read_bytes() for p in src.iterdir()}
    table = {n: md5_file(src / n) for n in files}
    requested = _serve(monkeypatch, files)
    root = tmp_path / "dl"
    ds = load_fashion_mnist(root, split="test", download=True, checksums=table, search=False)
    assert len(ds) == 2 and ds.source == str(root / "fashion-mnist")
    assert [u.rsplit("/", 1)[1] for u in requested] == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    assert requested[0].startswith("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")
    # Second construction finds the files: no new request.
    load_fashion_mnist(root, split="test", download=True, checksums=table, search=False)
    assert len(requested) == 2
    # A corrupted download is rejected and leaves nothing behind.
    bad = dict(table, **{"train-images-idx3-ubyte.gz": "0" * 32})
    with pytest.raises(DatasetError, match="checksum mismatch after download"):
        load_fashion_mnist(root, split="train", download=True, checksums=bad, search=False)
    assert not list((root / "fashion-mnist").glob("train-*"))
    # The download goes to the cache when no root is given.
    ds = load_fashion_mnist(split="train", download=True, checksums=table)
    assert ds.source == str(empty_search_path / "cache" / "wideflat" / "fashion-mnist")


def test_cifar_download_checks_md5(tmp_path, empty_search_path, monkeypatch):
    write_cifar10(tmp_path / "s")
    tar = make_tarball(tmp_path / "s", "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    requested = _serve(monkeypatch, {tar.name: tar.read_bytes()})
    with pytest.raises(DatasetError, match="checksum mismatch after download"):
        load_cifar10(tmp_path / "dl", download=True, search=False)  # official MD5 table
    ds = load_cifar10(
        tmp_path / "dl", download=True, checksums={tar.name: md5_file(tar)}, search=False
    )
    assert len(ds) == 15 and requested[-1].startswith("https://www.cs.toronto.edu/~kriz/")


def test_download_failure_is_a_dataset_error(tmp_path, empty_search_path, no_network):
    with pytest.raises(DatasetError, match="download from .* failed: network disabled"):
        load_cifar100(tmp_path / "dl", download=True, search=False)
    assert len(no_network) == 1  # exactly the one allowed attempt
