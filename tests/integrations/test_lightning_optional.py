"""``lightning`` stays optional: nothing loads it but the integration, which names the extra.

These run with or without lightning installed.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


def test_missing_lightning_names_the_extra(monkeypatch):
    for name in ("lightning", "lightning.pytorch"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    monkeypatch.delitem(sys.modules, "wideflat.integrations.lightning", raising=False)
    with pytest.raises(
        ImportError, match=r"Lightning integration.*pip install 'wideflat\[lightning\]'"
    ):
        importlib.import_module("wideflat.integrations.lightning")


def test_optimizers_and_the_detector_do_not_import_lightning():
    code = (
        "import sys, torch, wideflat.optim, wideflat.integrations as wi\n"
        "net = torch.nn.Linear(2, 1)\n"
        "opt = wideflat.optim.EntropySGD(net.parameters(), lr=0.1, inner_lr=0.1)\n"
        "def closure():\n"
        "    loss = net(torch.ones(1, 2)).sum()\n"
        "    loss.backward()\n"
        "    return loss\n"
        "opt.step(closure)\n"
        "assert wi.lightning_closure_kind(lambda: None) is None\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', "
        "'pytorch_lightning')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
