"""The model family (wideflat family) and the correlation harness (wideflat correlate)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from wideflat._stats import granulated_kendall, kendall, pearson, spearman
from wideflat.experiments import correlate as cor
from wideflat.experiments import family as fam

TINY_GRID = (
    ("lr", (0.05, 0.1, 0.2)),
    ("batch_size", (16,)),
    ("weight_decay", (0.0,)),
    ("width", (8,)),
    ("depth", (1, 2)),
    ("dropout", (0.0,)),
)


def tiny_config(root, **kw):
    return fam.FamilyConfig(
        grid=TINY_GRID, train_subset=64, target_loss=0.2, max_epochs=40, data_root=root, **kw
    )


@pytest.fixture(scope="module")
def tiny_family(tmp_path_factory, fashion_root):
    out = tmp_path_factory.mktemp("family")
    records = fam.train_family(tiny_config(fashion_root), out, progress=False, log=lambda s: None)
    return out, records


def test_every_member_is_trained_to_its_rule_and_reloads(tiny_family, fashion_root):
    out, records = tiny_family
    assert [r["id"] for r in records] == [m["id"] for m in fam.members(tiny_config(fashion_root))]
    data = fam.member_data("fashion-mnist", 64, fashion_root)
    for rec in records:
        t = rec["train"]
        assert t["stopped"] == (t["train_loss"] <= 0.2)
        assert t["stopped"] or t["epochs"] == 40
        assert t["gap_error"] == pytest.approx(t["test_error"] - t["train_error"])
        model, again = fam.load_member(out / "members" / rec["id"])
        assert again == rec
        with torch.no_grad():  # an independent evaluation of the saved network
            loss = float(F.cross_entropy(model(data["x_train"]), data["y_train"]))
        assert loss == pytest.approx(t["train_loss"], rel=1e-5)
        depth = rec["hparams"]["depth"]
        assert sum(isinstance(m, torch.nn.Linear) for m in model.modules()) == depth + 1


def test_a_family_resumes_without_retraining_and_refuses_another_config(
    tiny_family, fashion_root, monkeypatch, tmp_path
):
    out, records = tiny_family
    copy = tmp_path / "fam"
    import shutil

    shutil.copytree(out, copy)
    victim = records[1]["id"]
    (copy / "members" / victim / "member.json").unlink()  # as if killed mid-member
    trained = []
    real = fam._train_and_save
    monkeypatch.setattr(
        fam, "_train_and_save", lambda c, hp, f: trained.append(hp["id"]) or real(c, hp, f)
    )
    again = fam.train_family(tiny_config(fashion_root), copy, progress=False, log=lambda s: None)
    assert trained == [victim]
    assert [r["train"]["test_error"] for r in again] == [r["train"]["test_error"] for r in records]
    with pytest.raises(ValueError, match="another configuration"):
        fam.train_family(
            tiny_config(fashion_root, seed=1), copy, progress=False, log=lambda s: None
        )


def test_bad_grids_are_refused_naming_the_axis():
    with pytest.raises(ValueError, match="axes"):
        fam.FamilyConfig(grid=TINY_GRID[:-1])
    with pytest.raises(ValueError, match="dropout"):
        fam.FamilyConfig(grid=(*TINY_GRID[:-1], ("dropout", (1.5,))))
    with pytest.raises(ValueError, match="Invalid --grid"):
        fam.parse_grid(["depthx=1"])
    with pytest.raises(ValueError, match="numbers"):
        fam.parse_grid(["lr=fast"])


MEASURED = ("delta_energy", "weight_norm", "train_loss")


def test_correlate_measures_every_member_and_its_statistics_are_those_of_its_values(
    tiny_family, fashion_root, tmp_path
):
    out, records = tiny_family
    cfg = cor.CorrelateConfig(measures=MEASURED, samples=8)
    result = cor.correlate_family(
        out, tmp_path / "c", cfg, data_root=fashion_root, include_unstopped=True, progress=False,
        log=lambda s: None,
    )  # fmt: skip
    rows = result["members"]
    assert len(rows) == len(records) and result["axes"] == ["lr", "depth"]
    gap = [r["gap_error"] for r in rows]
    for name in MEASURED:
        values = [r["measures"][name]["value"] for r in rows]
        s = result["stats"][name]["gap"]
        assert (s["pearson_r"], s["pearson_p"]) == pytest.approx(pearson(values, gap), nan_ok=True)
        assert s["spearman_rho"] == pytest.approx(spearman(values, gap)[0], nan_ok=True)
        assert s["kendall_tau"] == pytest.approx(kendall(values, gap)[0], nan_ok=True)
        psi = granulated_kendall(values, gap, [r["hparams"] for r in rows], ["lr", "depth"])
        assert s["granulated_kendall"]["mean"] == pytest.approx(psi["mean"], nan_ok=True)
    for row in rows:  # the weight norm, recomputed from the saved weights
        model, _ = fam.load_member(out / "members" / row["id"])
        norm = sum(float((p.detach().double() ** 2).sum()) for p in model.parameters())
        assert row["measures"]["weight_norm"]["value"] == pytest.approx(norm, rel=1e-12)
        assert 0 <= row["measures"]["delta_energy"]["value"] <= 1
    saved = json.loads((tmp_path / "c" / "correlation.json").read_text())
    assert saved["ranking"] == result["ranking"]
    assert (tmp_path / "c" / "fig7.png").stat().st_size > 0
    assert "| measure |" in (tmp_path / "c" / "table.md").read_text()


def test_correlate_reuses_measured_members_and_recomputes_on_new_settings(
    tiny_family, fashion_root, tmp_path, monkeypatch
):
    out, _ = tiny_family
    cfg = cor.CorrelateConfig(measures=("delta_energy", "weight_norm"), samples=4)
    kw = dict(data_root=fashion_root, include_unstopped=True, progress=False, log=lambda s: None)
    first = cor.correlate_family(out, tmp_path / "c", cfg, **kw)
    calls = []
    real = cor.MEASURES["delta_energy"]
    monkeypatch.setitem(
        cor.MEASURES, "delta_energy", (lambda *a: calls.append(1) or real[0](*a), real[1])
    )
    second = cor.correlate_family(out, tmp_path / "c", cfg, **kw)
    assert calls == [] and second["members"] == first["members"]
    cor.correlate_family(out, tmp_path / "c", cor.CorrelateConfig(
        measures=("delta_energy",), samples=5), **kw)  # fmt: skip
    assert len(calls) == len(first["members"])


def test_correlate_leaves_out_members_off_target(tiny_family, fashion_root, tmp_path):
    out, records = tiny_family
    off = [r["id"] for r in records if not r["train"]["stopped"]]
    on = [r for r in records if r["train"]["stopped"]]
    cfg = cor.CorrelateConfig(measures=("weight_norm",))
    kw = dict(data_root=fashion_root, progress=False, log=lambda s: None)
    if len(on) < 3:
        with pytest.raises(ValueError, match="reached the training target"):
            cor.correlate_family(out, tmp_path / "c", cfg, **kw)
        return
    result = cor.correlate_family(out, tmp_path / "c", cfg, **kw)
    assert result["excluded"] == sorted(off) and result["n_members"] == len(on)


def test_correlate_config_refuses_bad_values():
    with pytest.raises(ValueError, match="measure"):
        cor.CorrelateConfig(measures=("nonsense",))
    with pytest.raises(ValueError, match="sigma"):
        cor.CorrelateConfig(sigma=-1.0)
    with pytest.raises(ValueError, match="samples"):
        cor.CorrelateConfig(samples=1)


def test_cli_family_and_correlate_report_bad_input_in_one_line(capsys, tmp_path):
    from cli._cli import run_cli

    code, _, err = run_cli(["family", "--out", str(tmp_path / "f"), "--grid", "lr=x"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--grid" in err
    code, _, err = run_cli(["correlate", str(tmp_path)], capsys)
    assert code == 2 and "no members" in err
    code, _, err = run_cli(["correlate", str(tmp_path), "--measures", "bogus"], capsys)
    assert code == 2 and "measure" in err


def test_all_measures_are_oriented_and_named():
    assert set(cor.CorrelateConfig().measures) == set(cor.MEASURES)
    for name, (fn, text) in cor.MEASURES.items():
        assert callable(fn) and text, name
    assert math.isfinite(cor.CorrelateConfig().sigma)


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_jobs_hands_on_every_result_and_raises_a_failure(jobs):
    from wideflat.experiments._jobs import run_jobs

    results = []
    run_jobs(pow, [(2, 3), (3, 2), (5, 1)], jobs, results.append)
    assert sorted(results) == [5, 8, 9]
    with pytest.raises(ValueError, match="invalid literal"):
        run_jobs(int, [("12",), ("x",)], jobs, results.append)
