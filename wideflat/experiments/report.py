"""``wideflat report``: one self-contained HTML page for a result folder.

It reads what the commands wrote and nothing else (no training code runs), so a report can be
made while a study is still running, or on another machine from copied folders:

=====================  ==========================  ==========================================
folder                 recognised by               the page shows
=====================  ==========================  ==========================================
a run                  ``run.json``                summary, test error / collapse / δE
                                                   figures, every metrics row, the config,
                                                   provenance (versions, commit, argv, data)
a ``compare`` study    run folders ``*/run.json``  the Table-1 summary with its flags, the
                                                   matched-error and paired-with-SGD tables,
                                                   the four figures,
                                                   one row per run, configs, provenance
a committee study      ``results.json``            the study table (and BP against Monte
                                                   Carlo), Fig. 1, the config, provenance
a ``correlate`` result ``correlation.json``        the ranking, Fig. 7 and every measure,
                                                   one row per network, settings, provenance
=====================  ==========================  ==========================================

Figures are drawn afresh from the files (the same functions the commands use) and embedded
as PNG ``data:`` URIs (:mod:`._html`): the page is one file that opens offline.

Example (a run folder as ``wideflat train`` writes it, cut down to two files):
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> run = Path(tempfile.mkdtemp()) / "sgd-s0"
    >>> run.mkdir()
    >>> record = {"label": "sgd", "seed": 0, "status": "running", "config": {"name": "demo"}}
    >>> _ = (run / "run.json").write_text(json.dumps(record))
    >>> _ = (run / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 0.5, "test_error": 0.2}')
    >>> report_kind(run), write_report(run).name
    ('run', 'report.html')
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__
from .._io import write_bytes_atomic
from . import _html as h

__all__ = ["KINDS", "build_report", "report_kind", "write_report"]

KINDS = ("run", "compare", "committee", "correlate")


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ``ValueError`` naming the file when it is not one."""
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"cannot read {path}: not a JSON object")
    return value


def report_kind(folder: str | os.PathLike) -> str:
    """Which result ``folder`` holds: one of :data:`KINDS`.

    Raises:
        ValueError: the folder does not exist or holds none of them (the message says what
            was looked for).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    if (folder / "correlation.json").is_file():
        return "correlate"
    if (folder / "results.json").is_file():
        results = _read_json(folder / "results.json")
        if str(results.get("schema", "")).startswith("wideflat.committee_study"):
            return "committee"
    if (folder / "run.json").is_file():
        return "run"
    if any((p / "run.json").is_file() for p in folder.iterdir() if p.is_dir()):
        return "compare"
    raise ValueError(
        f"{folder} holds no result wideflat knows (looked for run.json, */run.json, "
        "results.json of a committee study, correlation.json)"
    )


def _png(draw: Callable[[Path], Any]) -> bytes:
    """The PNG a plotting function writes to a path, as bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        draw(path)
        return path.read_bytes()


def _figure(caption: str, draw: Callable[[Path], Any]) -> str:
    """A figure, or a note saying why it could not be drawn (a report is never lost to one)."""
    try:
        return h.figure(_png(draw), caption)
    except Exception as e:  # noqa: BLE001 - one figure never fails the page
        return h.note(f"{caption}: not drawn ({type(e).__name__}: {e})".splitlines()[0])


def _provenance(record: dict, keys: tuple[str, ...]) -> str:
    shown = {k: record[k] for k in keys if k in record}
    for key in ("environment", "versions"):
        if isinstance(record.get(key), dict):
            shown.pop(key, None)
            shown.update({f"{key}.{k}": v for k, v in record[key].items()})
    if isinstance(shown.get("argv"), list):
        shown["argv"] = " ".join(map(str, shown["argv"]))
    return h.kv_table(shown)


# --- one run, and a compare study -----------------------------------------------------------


def _run_figures(runs: list, title: str) -> list[str]:
    from . import plots

    out = [
        _figure(
            "Test error over epochs (Fig. 2)", lambda p: plots.plot_test_error(runs, p, title=title)
        )
    ]
    if any("replica_distance" in r or "mean_distance" in r for x in runs for r in x.metrics):
        out.append(_figure(
            "Collapse: replica–center distance (rSGD), d(w, μ) (eSGD); center, replica and "
            "ensemble test errors", lambda p: plots.plot_collapse(runs, p, title=title),
        ))  # fmt: skip
    if any(x.energy for x in runs):
        out.append(_figure(
            "Local energy δE_train(σ) at fixed epochs (Figs. 3–5; lower = flatter)",
            lambda p: plots.plot_energy(runs, p, title=title),
        ))  # fmt: skip
    if any(x.triggered for x in runs):
        out.append(_figure(
            "Local energy at matched training error (the paper's comparison)",
            lambda p: plots.plot_energy_matched(runs, p, title=title),
        ))  # fmt: skip
    return out


def _flagged(runs: list) -> list:
    """The runs with the flags ``compare`` gives them (chance level, train error too high)."""
    from ..data import dataset_info
    from . import plots
    from .presets import get_preset

    config = _read_json(runs[0].path / "run.json").get("config", {}) if runs else {}
    try:
        classes = dataset_info(config.get("dataset", "")).num_classes
        max_train = get_preset(config.get("name", "")).max_train_error
    except (ValueError, KeyError):  # not from a preset: flag unfinished runs only
        classes, max_train = None, None
    if classes is not None:
        plots.flag_runs(runs, num_classes=classes, max_train_error=max_train)
    return runs


def _metrics_table(metrics: list[dict]) -> str:
    from .rundir import flat_row

    rows = [flat_row(r) for r in metrics]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return h.table(columns, ([r.get(c) for c in columns] for r in rows), scroll=True)


def _run_page(folder: Path) -> tuple[str, str, list[str]]:
    from . import plots

    record = _read_json(folder / "run.json")
    runs = _flagged([r for r in plots.collect_runs(folder) if r.path == folder])
    run = runs[0]
    cfg = record.get("config", {})
    title = f"{plots.LABELS.get(run.label, run.label)} seed {run.seed}: {cfg.get('name', '')}"
    summary = {"status": record.get("status"), **(record.get("summary") or {})}
    if record.get("error"):
        summary["error"] = record["error"]
    if run.flags:
        summary["not a result"] = "; ".join(run.flags)
    sections = [
        h.section("Summary", h.kv_table(summary)),
        h.section("Figures", *_run_figures(runs, title)),
    ]
    matched = plots.matched_rows(runs, finished_only=False)
    if matched:
        sections.append(h.section("Flatness at matched training error",
                                  h.markdown(plots.format_matched_table(matched))))  # fmt: skip
    sections += [
        h.section(f"Metrics ({len(run.metrics)} rows, metrics.jsonl)", _metrics_table(run.metrics)),
        h.section("Config", h.kv_table(cfg)),
        h.section("Provenance", _provenance(record, (
            "config_hash", "seed", "budget", "data_source", "created", "finished", "argv",
            "environment"))),
    ]  # fmt: skip
    return title, f"run folder {folder}", sections


def _compare_page(folder: Path) -> tuple[str, str, list[str]]:
    from . import plots
    from .paired import TITLE, format_paired_table, paired_rows

    runs = _flagged([r for r in plots.collect_runs(folder) if r.path.parent == folder])
    records = {r.path.name: _read_json(r.path / "run.json") for r in runs}
    preset = next(iter(records.values()), {}).get("config", {}).get("name", folder.name)
    title = f"compare study: {preset}"
    table = plots.format_table(plots.summary_rows(runs))
    sections = [h.section("Test error over seeds (mean ± std, finished runs)", h.markdown(table))]
    matched = plots.matched_rows(runs)
    if matched:
        sections.append(h.section("Flatness at matched training error",
                                  h.markdown(plots.format_matched_table(matched))))  # fmt: skip
    paired = paired_rows(runs)
    if paired:
        sections.append(h.section(TITLE, h.markdown(format_paired_table(paired))))
    sections.append(h.section("Figures", *_run_figures(runs, preset)))
    header = ["run", "method", "seed", "status", "epochs", "test error (%)", "train error (%)",
              "stop", "not a result"]  # fmt: skip
    rows = [
        [
            r.path.name,
            plots.LABELS.get(r.label, r.label),
            r.seed,
            r.status,
            r.summary.get("epochs"),
            100 * float(r.summary.get("test_error", float("nan"))),
            100 * float(r.summary.get("train_error", float("nan"))),
            r.summary.get("stop_reason"),
            "; ".join(r.flags),
        ]  # fmt: skip
        for r in runs
    ]
    sections.append(h.section(f"Runs ({len(runs)})", h.table(header, rows)))
    configs = {}  # one column per method (its first seed), one row per field
    for r in runs:
        configs.setdefault(r.label, records[r.path.name].get("config", {}))
    fields = list(dict.fromkeys(k for c in configs.values() for k in c))
    sections.append(h.section(
        "Config (first seed of each method)",
        h.table(["field", *(plots.LABELS.get(k, k) for k in configs)],
                ([f, *(c.get(f) for c in configs.values())] for f in fields), scroll=True),
    ))  # fmt: skip
    first = next(iter(records.values()), {})
    argvs = sorted({" ".join(map(str, rec.get("argv", []))) for rec in records.values()})
    sections.append(h.section(
        "Provenance", _provenance(first, ("environment",)),
        h.note("command lines that wrote these runs:"), h.pre("\n".join(argvs)),
    ))  # fmt: skip
    return title, f"study folder {folder}", sections


# --- committee study, correlate result --------------------------------------------------------


def _committee_page(folder: Path) -> tuple[str, str, list[str]]:
    from .committee import study
    from .committee.plots import plot_fig1

    results = _read_json(folder / "results.json")
    cfg = results.get("config", {})
    data = results.get("data") or {}
    quick = " (QUICK RUN)" if cfg.get("quick") else ""
    title = f"committee study: {data.get('name', '?')} data{quick}"
    sections = [h.section("Summary (mean ± std over restarts)",
                          h.pre(study.format_study_table(results)))]  # fmt: skip
    if cfg.get("mc_restarts"):
        sections.append(
            h.section("BP against Monte Carlo", h.pre(study.format_bp_mc_table(results)))
        )
    sections += [
        h.section("Figure", _figure("Fig. 1: local entropy, local energy, test error",
                                    lambda p: plot_fig1(results, p))),
        h.section("Config", h.kv_table(cfg)),
        h.section("Data", h.kv_table(data)),
        h.section("Provenance", _provenance(results, (
            "schema", "seed", "device", "threads", "jobs", "started", "finished",
            "wall_clock_s", "complete", "versions"))),
    ]  # fmt: skip
    return title, f"study folder {folder}", sections


def _correlate_page(folder: Path) -> tuple[str, str, list[str]]:
    from .correlate import format_ranking
    from .correlate_plots import plot_fig7, plot_measures

    result = _read_json(folder / "correlation.json")
    title = f"flatness against generalization: {result.get('n_members', '?')} networks"
    measures = list(result.get("ranking", []))
    members = result.get("members", [])
    axes = sorted({k for m in members for k in m.get("hparams", {})})
    header = ["network", *axes, "train error", "test error", "gap", *measures]
    rows = [
        [
            m.get("id"),
            *(m.get("hparams", {}).get(a) for a in axes),
            m.get("train_error"),
            m.get("test_error"),
            m.get("gap_error"),
            *((m.get("measures", {}).get(k) or {}).get("value") for k in measures),
        ]  # fmt: skip
        for m in members
    ]
    sections = [
        h.section("Ranking (larger = sharper; correlation with the generalization gap)",
                  h.markdown(format_ranking(result))),
        h.section("Figures",
                  _figure("δE_train against the gap (Fig. 7)", lambda p: plot_fig7(result, p)),
                  _figure("every measure against the gap", lambda p: plot_measures(result, p))),
        h.section(f"Networks ({len(members)})", h.table(header, rows, scroll=True)),
        h.section("Measures", h.kv_table(result.get("descriptions", {}))),
        h.section("Settings", h.kv_table(result.get("config", {}))),
        h.section("Provenance", _provenance(result, (
            "family", "n_members", "excluded", "wall_clock_s", "environment"))),
    ]  # fmt: skip
    return title, f"result folder {folder}", sections


_PAGES = {"run": _run_page, "compare": _compare_page, "committee": _committee_page,
          "correlate": _correlate_page}  # fmt: skip


def build_report(folder: str | os.PathLike) -> str:
    """The HTML page of result ``folder`` (kind from :func:`report_kind`)."""
    folder = Path(folder)
    title, subtitle, sections = _PAGES[report_kind(folder)](folder)
    made = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return h.page(title, f"{subtitle} · report made {made} by wideflat {__version__}", sections)


def write_report(folder: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write :func:`build_report` of ``folder`` to ``out`` (default ``folder/report.html``),
    atomically; returns the path."""
    out = Path(out) if out is not None else Path(folder) / "report.html"
    page = build_report(folder)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, page.encode("utf-8"))
    return out
