"""The documentation site (issue 14 item 5): ``mkdocs build --strict`` passes, the API pages
are generated from the docstrings, the tutorials embed the examples verbatim, and an
undocumented public object on an API page fails the strict build.

The build tests skip without the ``docs`` extra (``pip install -e ".[docs]"``); the Python
blocks written into the site's own pages run always.
"""

from __future__ import annotations

import ast
import html
import importlib.util
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guide"
TIMEOUT_S = 300


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config)]
    return subprocess.run(
        [*cmd, "--site-dir", str(site)], capture_output=True, text=True, timeout=TIMEOUT_S
    )


def _text(page: Path) -> str:
    """A built page's visible text (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed")
    out = tmp_path_factory.mktemp("site")
    result = _build(ROOT / "mkdocs.yml", out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_strict_build_passes_and_has_every_nav_page(site):
    for page in ["guide", "guide/concepts", "guide/api/optim", "results", "results_deep"]:
        assert (site / page / "index.html").is_file(), page
    assert 'url=guide/"' in (site / "index.html").read_text()  # the root sends to the guide


@pytest.mark.parametrize(
    ("page", "objects"),
    [
        ("optim", ["EntropySGD", "ReplicatedSGD", "SAM", "ExponentialGamma", "auto_gamma0_rsgd"]),
        ("flatness", ["local_energy", "hessian", "sharpness", "committee_local_entropy"]),
        ("flatness", ["plot_local_energy"]),
        ("replicas", ["Replicas", "StackedReplicas", "DistributedReplicas", "ReplicaEngine"]),
        ("models", ["create_model", "SmallConvNet", "CommitteeMachine"]),
        ("data", ["load_fashion_mnist", "replica_streams", "DeviceLoader"]),
        ("experiments", ["train", "compare", "TrainConfig"]),
    ],
)
def test_api_pages_render_each_object_from_its_docstring(site, page, objects):
    built = (site / "guide" / "api" / page / "index.html").read_text(encoding="utf-8")
    for name in objects:
        # mkdocstrings gives each rendered object a heading whose id ends in its name
        assert re.search(rf'id="wideflat\.[\w.]*\b{name}"', built), f"{page}: {name}"
    if page == "optim":  # the docstring's text, with its Sphinx roles rewritten to code
        text = _text(site / "guide" / "api" / "optim" / "index.html")
        assert "One call to step performs one outer iteration of Algorithm 1:" in text
        assert ":meth:" not in text and ":class:" not in text


def test_tutorials_embed_every_example_verbatim(site):
    tutorials = " ".join(_text(p) for p in (site / "guide" / "tutorials").rglob("index.html"))
    examples = sorted((ROOT / "examples").glob("*.py"))
    assert examples
    for script in examples:
        body = [line.strip() for line in script.read_text().splitlines() if line.strip()]
        missing = [line for line in body if line not in tutorials]
        assert not missing, f"{script.name}: {missing[:3]}"


def test_an_undocumented_public_object_fails_the_strict_build(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed")
    for item in ["mkdocs.yml", "docs", "examples", "wideflat"]:
        copy = shutil.copytree if (ROOT / item).is_dir() else shutil.copy
        copy(ROOT / item, tmp_path / item)
    energy = tmp_path / "wideflat" / "flatness" / "energy.py"
    source = energy.read_text().splitlines(keepends=True)
    (func,) = [
        node
        for node in ast.parse("".join(source)).body
        if isinstance(node, ast.FunctionDef) and node.name == "local_energy"
    ]
    doc = func.body[0]
    assert isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
    energy.write_text("".join(source[: doc.lineno - 1] + source[doc.end_lineno :]))
    result = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    log = result.stdout + result.stderr
    assert result.returncode != 0
    assert "wideflat.flatness.energy.local_energy: public object without a docstring" in log


def _extension():
    path = GUIDE / "griffe_docstrings.py"
    spec = importlib.util.spec_from_file_location("griffe_docstrings", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checker_rule_on_a_small_package(tmp_path, caplog):
    griffe = pytest.importorskip("griffe", reason="the docs extra is not installed")
    pkg = tmp_path / "toypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        '"""Toy."""\n'
        "from torch import nn\n"
        '__all__ = ["Net", "bare", "Doc"]\n'
        "class Net(nn.Module):\n"
        '    """A net."""\n'
        "    def forward(self, x):\n"  # overrides a documented nn.Module method: passes
        "        return x\n"
        "    def extra(self):\n"  # public, undocumented, no documented base: fails
        "        return 1\n"
        "    def _private(self):\n"
        "        return 2\n"
        "def bare():\n"  # exported without a docstring: fails
        "    return 0\n"
        "class Doc:\n"
        '    """Documented."""\n'
        "    @property\n"
        "    def size(self):\n"  # an undocumented property: fails
        "        return 3\n"
    )
    api = tmp_path / "api"
    api.mkdir()
    (api / "toy.md").write_text("# toy\n\n::: toypkg\n")
    ext = _extension().RequireDocstrings(api_pages=str(api))
    with caplog.at_level(logging.WARNING):
        griffe.load("toypkg", search_paths=[str(tmp_path)], extensions=griffe.load_extensions(ext))
    flagged = sorted(re.findall(r"(\S+): public object without a docstring", caplog.text))
    assert flagged == ["toypkg.Doc.size", "toypkg.Net.extra", "toypkg.bare"]


def test_docstring_rewrite_for_griffe_google_style():
    pytest.importorskip("griffe", reason="the docs extra is not installed")
    rewrite = _extension().markdown_docstring
    before = (
        "Uses :class:`~wideflat.optim.EntropySGD` and :func:`.build.build`::\n"
        "\n"
        "    w <- w - lr g\n"
        "\n"
        "Args:\n"
        "    momentum, nesterov: SGD settings\n"
        "        for both loops.\n"
        "    bn, seed,\n"
        "    device: as in f.\n"
        "\n"
        "Returns:\n"
        "    The loss at w: a float\n"
        "    before the step.\n"
        "\n"
        "Raises:\n"
        "    ValueError: bad input.\n"
        "\n"
        "    On these the state is restored.\n"
        "\n"
        "Example:\n"
        "    >>> x[1][1]\n"
    )
    after = (
        "Uses `EntropySGD` and `build.build`:\n"
        "\n"
        "    w <- w - lr g\n"
        "\n"
        "Args:\n"
        "    momentum: SGD settings\n"
        "        for both loops.\n"
        "    nesterov: SGD settings\n"
        "        for both loops.\n"
        "    bn: as in f.\n"
        "    seed: as in f.\n"
        "    device: as in f.\n"
        "\n"
        "Returns:\n"
        "    The loss at w: a float\n"
        "        before the step.\n"
        "\n"
        "Raises:\n"
        "    ValueError: bad input.\n"
        "\n"
        "On these the state is restored.\n"
        "\n"
        "Examples:\n"
        "    >>> x[1][1]\n"
    )
    assert rewrite(before) == after


def test_python_blocks_of_the_guide_pages_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = [
        (page.name, block)
        for page in sorted(GUIDE.rglob("*.md"))
        for block in re.findall(r"^```python\n(.*?)^```$", page.read_text(), flags=re.M | re.S)
        if not block.startswith("--8<--")  # included example scripts run in tests/examples
    ]
    assert blocks
    for name, block in blocks:
        exec(compile(block, name, "exec"), {"__name__": "__docs__"})
