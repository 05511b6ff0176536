"""The README's Python blocks run as written (issue 9 E).

Every ```python block of README.md runs, top to bottom, in one namespace, in a scratch folder
(the files the snippets write land there). A block that starts with a ``torchrun`` comment is a
script of its own: it is written to a file and run under ``torchrun`` as the comment says.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

import _procs
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
TORCHRUN = re.compile(r"^# \S+ — run with: (torchrun .*)$")


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", README.read_text(), flags=re.M | re.S)


def test_readme_has_the_blocks_it_documents():
    blocks = _blocks()
    assert len(blocks) >= 5
    assert sum(bool(TORCHRUN.match(b.splitlines()[0])) for b in blocks) == 1


def test_readme_python_blocks_run_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    ran = 0
    for i, block in enumerate(_blocks()):
        if TORCHRUN.match(block.splitlines()[0]):
            continue
        exec(compile(block, f"README.md block {i}", "exec"), namespace)
        ran += 1
    assert ran >= 4
    # What the snippets claim: the models learned, and the files they name were written.
    model, x, y = namespace["model"], namespace["x_train"], namespace["y_train"]
    assert float((model(x).argmax(1) != y).float().mean()) < 0.5  # chance is 0.9
    assert (tmp_path / "profile.json").is_file() and (tmp_path / "local_energy.png").is_file()
    # "every replica is in opt.state_dict()": a fresh model + optimizer resume the same center.
    import torch

    from wideflat.optim import ReplicatedSGD

    opt = namespace["opt"]
    nn = namespace["nn"]
    model2 = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 10))
    opt2 = ReplicatedSGD(model2, lr=0.05, y=3, coupling_every=10, momentum=0.9, nesterov=True,
                         weight_decay=1e-4, seed=0)  # fmt: skip
    state = torch.load(tmp_path / "rsgd.pt", weights_only=True)
    model2.load_state_dict(state["model"])
    opt2.load_state_dict(state["opt"])
    for a, b in zip(opt.center().parameters(), opt2.center().parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.dist
def test_readme_torchrun_script_runs_and_resumes(tmp_path):
    (block,) = [b for b in _blocks() if TORCHRUN.match(b.splitlines()[0])]
    command = shlex.split(TORCHRUN.match(block.splitlines()[0]).group(1))
    assert command[-1] == "train.py"
    (tmp_path / "train.py").write_text(block)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", *command[1:]]
    for attempt in range(2):  # the second launch resumes from the last checkpoint (step 40)
        done = _procs.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, (attempt, done.stderr.decode()[-3000:])
        # A crashed launch leaves its rendezvous file: the next launch must not re-use one
        # (a name made of the attempt count alone would be rdzv-0 again).
        (tmp_path / "rdzv-0").write_bytes(b"stale rendezvous of a crashed launch")
    steps = sorted(p.name for p in (tmp_path / "ckpt").iterdir() if p.name.startswith("step-"))
    assert steps == ["step-000000030", "step-000000040"]
    assert len(list((tmp_path / "ckpt" / steps[-1]).glob("rank-*.pt"))) == 3
