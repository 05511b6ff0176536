"""Helpers shared by the training and command-line tests: compare two runs' final states and
metrics rows, ignoring wall-clock fields."""

from __future__ import annotations

from pathlib import Path

import torch

from wideflat.experiments.checkpoint import load_checkpoint
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
