"""One ``--set [ALG.]FIELD=VALUE`` grammar for train, compare and committee."""

from __future__ import annotations

import pytest

from wideflat.cli import main, parse_set


@pytest.mark.parametrize(
    ("text", "algorithm", "expected"),
    [
        ("lr=0.5", False, (None, "lr", 0.5)),
        ("epochs=3", False, (None, "epochs", 3)),
        ("nesterov=false", False, (None, "nesterov", False)),
        ("lr_schedule=multistep:5,8", False, (None, "lr_schedule", "multistep:5,8")),
        ("energy_epochs=[1,2]", False, (None, "energy_epochs", (1, 2))),
        ('model_kwargs=[["hidden", [512]]]', False, (None, "model_kwargs", (("hidden", [512]),))),
        ('data_root="a=b"', False, (None, "data_root", "a=b")),
        ("esgd.lr=0.5", True, ("esgd", "lr", 0.5)),
        ("sgd-fast.max_epochs=10", True, ("sgd-fast", "max_epochs", 10)),
    ],
)
def test_the_grammar(text, algorithm, expected):
    assert parse_set(text, algorithm=algorithm) == expected


@pytest.mark.parametrize(
    ("text", "algorithm"),
    [("lr", False), ("=1", False), ("esgd.lr=0.5", False), ("lr=0.5", True), ("esgd.lr", True),
     (".lr=1", True), ("esgd.=1", True)],
)  # fmt: skip
def test_malformed_items_name_the_expected_form(text, algorithm):
    form = "ALG.FIELD=VALUE" if algorithm else "FIELD=VALUE"
    with pytest.raises(ValueError, match=rf"Invalid --set '{text}' \(expected {form}"):
        parse_set(text, algorithm=algorithm)


@pytest.mark.parametrize(
    ("item", "needle"),
    [("esgd.lr=abc", "'abc' is not a number"), ("esgd.lr=true", "True is not a number"),
     ("esgd.lr=[1]", "is not a number"), ("lr=0.5", "expected ALG.FIELD=VALUE")],
)  # fmt: skip
def test_committee_values_are_numbers(item, needle, capsys, tmp_path):
    rc = main(["committee", "--quick", "--out", str(tmp_path / "o"), "--set", item])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("wideflat committee: Invalid --set") and needle in err, err
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()


def test_train_refuses_an_algorithm_prefix(capsys, tmp_path):
    rc = main(["train", "--out", str(tmp_path / "r"), "--set", "esgd.lr=0.5"])
    err = capsys.readouterr().err
    assert rc == 2 and "(expected FIELD=VALUE)" in err and not (tmp_path / "r").exists()
