"""Fingerprints of short runs a user relies on: every `wideflat train` method on a tiny preset,
`wideflat demo` and `wideflat committee --quick` (issue 10 item 7: a redesign must not change
them by accident).

`python tests/golden/golden_runs.py` prints ``{run: sha256}`` as JSON; ``--write`` stores it in
``hashes.json`` beside this file. A train run's fingerprint is the SHA-256 of its final model
and optimizer tensors (the last checkpoint); demo's and committee's are the SHA-256 of their
result JSON without timings. Floating-point results depend on which kernels the CPU dispatches
to, so `test_golden.py` runs this script with the kernel dispatch pinned to the baseline x86-64
paths (``ATEN_CPU_CAPABILITY=default``, ``MKL_CBWR=COMPATIBLE``, one thread): the same numbers
on any x86-64 CPU.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from wideflat.cli import main as cli
from wideflat.experiments import load_checkpoint

HERE = Path(__file__).resolve().parent
METHODS = ("sgd", "esgd", "rsgd", "rsgdxy", "sam")
TIMING = ("seconds", "wall", "time", "images_per_s", "elapsed", "started", "finished")


def _fake_fashion(folder: Path) -> str:
    """256 + 64 learnable IDX images (label = 3 if the top half is bright)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}  # fmt: skip
    for split, n in (("train", 256), ("test", 64)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (images[:, :14].mean(axis=(1, 2)) > 127.5).astype(np.uint8) * 3
        for name, arr in zip(names[split], (images, labels), strict=True):
            header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
            (folder / f"{name}.gz").write_bytes(gzip.compress(header + arr.tobytes()))
    return str(folder)


def _tensors_sha(tree) -> str:
    """SHA-256 over every tensor of a nested payload, in key order (dtype, shape and bytes)."""
    h = hashlib.sha256()

    def visit(key: str, value) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(value, dict):
            for k in sorted(value, key=str):
                visit(f"{key}/{k}", value[k])
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                visit(f"{key}/{i}", v)

    visit("", tree)
    return h.hexdigest()


def _json_sha(value) -> str:
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if not any(t in k for t in TIMING)}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return hashlib.sha256(json.dumps(clean(value), sort_keys=True).encode()).hexdigest()


def _run(argv: list[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as e:
        code = cli(argv)
    if code != 0:
        raise SystemExit(f"wideflat {' '.join(argv)} failed ({code}): {e.getvalue()[-2000:]}")


def fingerprints() -> dict[str, str]:
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = _fake_fashion(tmp / "fashion")
        for method in METHODS:
            run = tmp / method
            _run(["train", "--preset", "fashion-smallconvnet", "--method", method,
                  "--model", "mlp", "--data-root", root, "--train-subset", "0", "--epochs", "2",
                  "--batch-size", "32", "--energy-epochs", "--no-progress", "--device", "cpu",
                  "--out", str(run)])  # fmt: skip
            _, payload = load_checkpoint(run / "checkpoints")
            out[f"train-{method}"] = _tensors_sha(
                {"model": payload["model"], "optimizer": payload["optimizer"]}
            )
        _run(["demo", "--epochs", "3", "--seeds", "1", "--no-progress", "--out",
              str(tmp / "demo.json")])  # fmt: skip
        out["demo"] = _json_sha(json.loads((tmp / "demo.json").read_text())["results"])
        _run(["committee", "--quick", "--data", "teacher", "--no-progress",
              "--out", str(tmp / "committee")])  # fmt: skip
        results = json.loads((tmp / "committee" / "results.json").read_text())
        # The per-restart numbers (errors, losses, epochs, stop reasons, flatness), not the
        # echo of the hyper-parameters, whose field names may be renamed.
        out["committee-quick"] = _json_sha(
            {name: alg["restarts"] for name, alg in results["algorithms"].items()}
        )
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    prints = fingerprints()
    if "--write" in sys.argv[1:]:
        (HERE / "hashes.json").write_text(json.dumps(prints, indent=2, sort_keys=True) + "\n")
    print(json.dumps(prints, indent=2, sort_keys=True))
