"""`wideflat report` (issue 14 item 6): one self-contained HTML page for a run, a compare study,
a committee study and a correlate result. The pages are checked for their content here and
opened in a real headless browser (Debian's chromium) to check that every figure decodes and
every table renders."""

from __future__ import annotations

import base64
import html
import re
import shutil

import _procs
import pytest

from wideflat.cli import main
from wideflat.experiments import compare
from wideflat.experiments import correlate as cor
from wideflat.experiments import family as fam
from wideflat.experiments._html import figure, markdown, page
from wideflat.experiments.committee.study import quick_study_config, run_committee_study
from wideflat.experiments.report import build_report, report_kind, write_report
from wideflat.experiments.rundir import read_metrics

QUIET = dict(progress=False, log=lambda s: None)


def run_cli(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def results(tmp_path_factory, fashion_root):
    """One folder of each kind, made by the real commands on tiny data."""
    root = tmp_path_factory.mktemp("report")
    overrides = dict(data_root=fashion_root, model="mlp", train_subset=0, epochs=2,
                     batch_size=32, lr=0.05, eval_every=1, energy_epochs=(2,),
                     train_eval_subset=64, eval_batch=64, energy_samples=3, energy_subset=64,
                     energy_sigmas=(0.0, 0.5), energy_at_train_error=(1.0,),
                     gamma="exp:auto:x10")  # fmt: skip
    compare("fashion-smallconvnet", ["sgd", "rsgd"], [0, 1], root / "compare",
            overrides=overrides, device="cpu", **QUIET)  # fmt: skip
    committee = quick_study_config(data="teacher", algorithms=("sgd-fast", "esgd"), restarts=2,
                                   max_epochs=2, draws=4, n_train=100, mc_restarts=0)  # fmt: skip
    run_committee_study(committee, root / "committee", **QUIET)
    grid = (("lr", (0.05, 0.2)), ("batch_size", (16,)), ("weight_decay", (0.0,)),
            ("width", (8,)), ("depth", (1, 2)), ("dropout", (0.0,)))  # fmt: skip
    family = fam.FamilyConfig(grid=grid, train_subset=64, target_loss=0.2, max_epochs=40,
                              data_root=fashion_root)  # fmt: skip
    fam.train_family(family, root / "family", **QUIET)
    cor.correlate_family(root / "family", root / "correlate",
                         cor.CorrelateConfig(measures=("delta_energy", "weight_norm"), samples=4),
                         data_root=fashion_root, include_unstopped=True, **QUIET)  # fmt: skip
    return {
        "run": root / "compare" / "rsgd-s0",
        "compare": root / "compare",
        "committee": root / "committee",
        "correlate": root / "correlate",
    }


# The figures each page must carry (counted as <img> elements).
FIGURES = {"run": 4, "compare": 4, "committee": 1, "correlate": 2}


def text_of(page_html: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page_html))


@pytest.mark.parametrize("kind", list(FIGURES))
def test_each_kind_is_recognised_and_its_page_embeds_every_figure(results, kind):
    assert report_kind(results[kind]) == kind
    out = write_report(results[kind])
    assert out == results[kind] / "report.html"
    doc = out.read_text()
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', doc)
    assert len(images) == FIGURES[kind]
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    assert "not drawn" not in doc
    assert not re.search(r'(src|href)="(?!data:)', doc)  # nothing loaded from elsewhere


def test_the_run_page_holds_every_metrics_row_the_config_and_provenance(results):
    run = results["run"]
    doc = text_of(build_report(run))
    rows = read_metrics(run / "metrics.jsonl")
    assert f"Metrics ({len(rows)} rows" in doc
    for row in rows:
        assert f"{row['train_loss']:.4g}" in doc
        assert f"{row['replica_distance']:.4g}" in doc
    for needle in ("config_hash", "environment.torch", "data_source", "coupling_every",
                   "Flatness at matched training error"):  # fmt: skip
        assert needle in doc, needle


def test_the_compare_page_holds_the_study_table_and_every_run(results):
    study = results["compare"]
    doc = text_of(build_report(study))
    table = (study / "summary.md").read_text()
    for line in table.splitlines():  # the same table compare wrote, cell by cell
        if line.startswith("| ") and "---" not in line:
            for value in [c.strip() for c in line.strip("|").split("|")]:
                assert value in doc, value
    for run in ("sgd-s0", "sgd-s1", "rsgd-s0", "rsgd-s1"):
        assert run in doc


def test_a_page_is_escaped_and_markdown_tables_become_tables():
    doc = page("<t>", "s", [markdown("| a | b |\n|---|---|\n| <script>x</script> | 2 |")])
    assert "<script>x</script>" not in doc and "&lt;script&gt;" in doc
    assert doc.count("<table>") == 1 and doc.count("<tr>") == 2


def test_unknown_and_missing_folders_are_one_line_errors(tmp_path, capsys):
    code, out, err = run_cli(["report", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "holds no result" in err
    code, out, err = run_cli(["report", str(tmp_path / "nope")], capsys)
    assert code == 2 and "is not a folder" in err
    assert not (tmp_path / "report.html").exists()


def test_cli_writes_the_page_where_asked(results, tmp_path, capsys):
    out = tmp_path / "pages" / "study.html"
    code, stdout, err = run_cli(["report", str(results["compare"]), "--out", str(out)], capsys)
    assert code == 0, err
    assert stdout.strip() == f"wrote {out} (compare)"
    assert out.read_text().startswith("<!DOCTYPE html>")


# --- in a real browser ------------------------------------------------------------------------


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no headless browser (apt-get install chromium; .ci/run installs it)")


def _chromium(path, *args: str) -> str:
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--disable-dev-shm-usage", *args, path.as_uri()]  # fmt: skip
    done = _procs.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("kind", list(FIGURES))
def test_the_page_renders_its_figures_and_tables_in_chromium(results, kind, tmp_path):
    out = write_report(results[kind], tmp_path / f"{kind}.html")
    dom = _chromium(out, "--dump-dom")
    n = FIGURES[kind]
    # set by the page's own script after load: figures that decoded / figures
    assert f'data-plots="{n}/{n}"' in dom
    assert dom.count("<table>") == out.read_text().count("<table>") >= 3
    # The screenshot has the figures' ink: with all text and table lines made invisible, the
    # page is not white only where a figure is drawn, and blanking the figures' data whitens it.
    hide = ("<style>* { color: transparent !important; border-color: transparent !important;"
            " background: none !important; }</style></head>")  # fmt: skip
    shown = tmp_path / f"{kind}-figures.html"
    shown.write_text(out.read_text().replace("</head>", hide, 1))
    blank = tmp_path / f"{kind}-blank.html"
    blank.write_text(re.sub(r'src="data:image/png;base64,[^"]+"', 'src=""', shown.read_text()))
    ink, blank_ink = _ink(shown, tmp_path), _ink(blank, tmp_path)
    assert ink > 0.005 and blank_ink < ink / 10, (ink, blank_ink)


def _ink(page_path, tmp_path) -> float:
    """The fraction of a 1000 × 2400 screenshot of the page that is not white."""
    import matplotlib.image

    shot = tmp_path / (page_path.stem + ".png")
    _chromium(page_path, f"--screenshot={shot}", "--window-size=1000,2400")
    pixels = matplotlib.image.imread(shot)[..., :3]
    return float((pixels.min(axis=-1) < 0.9).mean())


def test_a_damaged_figure_is_reported_by_the_page_in_chromium(tmp_path):
    broken = figure(b"\x89PNG\r\n\x1a\n not really a png", "broken")
    good = tmp_path / "good.png"
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0], color="red")
    fig.savefig(good)
    out = tmp_path / "p.html"
    out.write_text(page("t", "s", [figure(good.read_bytes(), "good"), broken]))
    dom = _chromium(out, "--dump-dom")
    assert 'data-plots="1/2"' in dom
    assert "1 figure(s) could not be shown" in dom
