"""Helpers shared by the training and command-line tests: compare two runs' final states and
metrics rows, ignoring wall-clock fields."""

from __future__ import annotations

from pathlib import Path

import torch

from wideflat.experiments.checkpoint import load_checkpoint
from wideflat.experiments.presets import preset_config
from wideflat.experiments.rundir import read_metrics

TIMING = {"epoch_seconds", "train_seconds", "images_per_s", "eval_seconds"}


def final_state(run: Path) -> dict:
    """The payload of a run folder's newest checkpoint."""
    _, payload = load_checkpoint(run / "checkpoints")
    return payload


def assert_equal_payloads(a, b, where="payload") -> None:
    """Bit-identical nested payloads (tensors by ``torch.equal``; wall clock ignored)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            if k != "train_seconds":
                assert_equal_payloads(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal_payloads(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), where


def metric_rows(run: Path) -> list[dict]:
    """A run's metrics rows without the wall-clock fields."""
    return [
        {k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(run / "metrics.jsonl")
    ]


def tiny_config(data_root, kind, **kw):
    """A fashion-smallconvnet config shrunk to seconds: an MLP on the fake Fashion-MNIST
    folder, 2 epochs, evaluation every epoch on 64 images, no δE; ``kw`` overrides."""
    base = dict(data_root=data_root, model="mlp", train_subset=0, epochs=2, batch_size=32,
                lr=0.05, lr_schedule="multistep:2", eval_every=1, energy_epochs=(),
                train_eval_subset=64, eval_batch=64, gamma="exp:auto:x10")  # fmt: skip
    base.update(kw)
    return preset_config("fashion-smallconvnet", kind, **base)
