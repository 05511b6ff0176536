"""A given root is the only folder read (issue 9, B7): no silent fallback to ``$WIDEFLAT_DATA``,
the system folder or the cache, and the loaded set names the folder it was read from.

Every test puts a valid copy of the dataset on the searched path, so a fallback would load it.
"""

from __future__ import annotations

import pytest
from wideflat_data_fakes import write_cifar10, write_fashion, write_tiny_imagenet

from wideflat.cli import main
from wideflat.data import (
    DatasetError,
    fashion_committee,
    load_cifar10,
    load_cifar100,
    load_committee_data,
    load_dataset,
    load_fashion_mnist,
    load_tiny_imagenet,
)
from wideflat.data.fashion_mnist import locate_fashion_mnist


@pytest.fixture
def data_elsewhere(tmp_path, monkeypatch):
    """Valid Fashion-MNIST, CIFAR-10 and Tiny ImageNet in $WIDEFLAT_DATA, the system folder
    and the cache; returns an existing, empty folder to pass as root."""
    env, cache, system = tmp_path / "env", tmp_path / "cache", tmp_path / "sys"
    for base in (env, cache / "wideflat"):
        write_fashion(base / "fashion-mnist", n_train=40, n_test=20)
        write_cifar10(base)
        write_tiny_imagenet(base)
    write_fashion(system, n_train=40, n_test=20)
    monkeypatch.setenv("WIDEFLAT_DATA", str(env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setattr("wideflat.data.fashion_mnist.SYSTEM_FASHION_MNIST", system)
    empty = tmp_path / "empty"
    empty.mkdir()
    return empty


@pytest.mark.parametrize(
    "loader, split, names",
    [
        (load_fashion_mnist, "train", ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte"]),
        (load_cifar10, "train", ["cifar-10-batches-py/", "cifar-10-python.tar.gz"]),
        (load_cifar100, "train", ["cifar-100-python/", "cifar-100-python.tar.gz"]),
        (load_tiny_imagenet, "val", ["tiny-imagenet-200/", "tiny-imagenet-200.zip"]),
    ],
)
def test_a_given_root_without_the_data_is_an_error(data_elsewhere, loader, split, names):
    with pytest.raises(DatasetError) as info:
        loader(data_elsewhere, split=split)
    msg = str(info.value)
    assert msg.startswith(f"{data_elsewhere}:"), msg
    for text in names:
        assert text in msg, msg
    root = str(data_elsewhere.parent)
    for other in ("env", "cache", "sys"):
        assert f"{root}/{other}" not in msg, msg
    assert "\n" not in msg


def test_load_dataset_and_locate_read_only_the_given_root(data_elsewhere):
    with pytest.raises(DatasetError, match=str(data_elsewhere)):
        load_dataset("fashion-mnist", data_elsewhere, split="test")
    with pytest.raises(DatasetError, match=str(data_elsewhere)):
        load_dataset("tiny-imagenet", data_elsewhere, split="test")
    assert locate_fashion_mnist(data_elsewhere) is None
    # Without a root the search still finds the data, in $WIDEFLAT_DATA first.
    env = data_elsewhere.parent / "env"
    assert load_fashion_mnist(split="test").source == str(env / "fashion-mnist")
    assert load_cifar10(split="test").source == str(env / "cifar-10-batches-py")
    assert load_tiny_imagenet(split="val").source == str(env / "tiny-imagenet-200")
    # search=True asks for the fallback explicitly.
    assert load_fashion_mnist(data_elsewhere, split="test", search=True).source == str(
        env / "fashion-mnist"
    )


def test_source_is_the_folder_actually_read(data_elsewhere):
    root = data_elsewhere
    write_fashion(root / "fashion-mnist", n_train=5, n_test=3)
    write_cifar10(root)
    write_tiny_imagenet(root)
    assert load_fashion_mnist(root, split="test").source == str(root / "fashion-mnist")
    assert load_cifar10(root, split="test").source == str(root / "cifar-10-batches-py")
    assert load_tiny_imagenet(root, split="val").source == str(root / "tiny-imagenet-200")
    assert len(load_fashion_mnist(root, split="test")) == 3  # not the 20 of the fallback


def test_committee_reads_only_the_given_root(data_elsewhere):
    with pytest.raises(DatasetError, match=f"^{data_elsewhere}: .*train-images-idx3-ubyte"):
        fashion_committee(data_elsewhere, n_train=4)
    with pytest.raises(DatasetError, match=f"^{data_elsewhere}: "):
        load_committee_data("fashion", root=data_elsewhere, n_train=4)
    auto = load_committee_data("auto", root=data_elsewhere, n_train=4, n_features=5, k=3)
    assert auto.name == "teacher" and str(data_elsewhere) in auto.metadata["fallback"]


def _cli(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_cli_train_refuses_a_data_root_without_the_data(data_elsewhere, tmp_path, capsys):
    argv = [
        "train", "--model", "mlp", "--data-root", str(data_elsewhere), "--train-subset", "0",
        "--epochs", "1", "--batch-size", "8", "--set", "train_eval_subset=8",
        "--set", "eval_batch=8", "--energy-epochs", "--no-progress", "--device", "cpu",
        "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    code, err = _cli(argv, capsys)
    assert code == 2, err
    assert str(data_elsewhere) in err and "train-images-idx3-ubyte" in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_cli_committee_refuses_a_data_root_without_the_data(data_elsewhere, tmp_path, capsys):
    out = tmp_path / "committee"
    code, err = _cli(
        ["committee", "--quick", "--data-root", str(data_elsewhere), "--out", str(out)], capsys
    )
    assert code == 2, err
    assert str(data_elsewhere) in err and "train-images-idx3-ubyte" in err, err
    assert not (out / "results.json").exists()
