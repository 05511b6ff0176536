"""Checkpoints: round trip, atomicity under injected faults, corruption detection, pruning,
mismatch errors, and the multi-rank commit protocol with real gloo processes (TESTING.md
checks 15, 16 and the save/commit half of 33)."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from wideflat import _io
from wideflat.experiments import checkpoint as ckpt
from wideflat.experiments.checkpoint import (
    CheckpointError,
    ConfigMismatchError,
    NoCheckpointError,
    latest_step,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)

LOGGER = "wideflat.experiments.checkpoint"


def _payload(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(64, 64, generator=g)  # 16 KiB of tensor data: "mid-file" lands in it
    w[0, :3] = torch.tensor([float("nan"), -0.0, float("inf")])
    return {
        "model": {"w": w, "b": torch.randn(7, generator=g, dtype=torch.float64)},
        "optimizer": {"state": {0: {"momentum_buffer": torch.randn(3, generator=g)}}},
        "step": seed,
        "lr": 0.1 * seed,
        "name": f"run-{seed}",
        "cpu_rng": torch.get_rng_state(),
        "gen_rng": g.get_state(),
        "history": [1, 2.5, "x", None, True],
        "nested": {"a": {"b": [torch.arange(5), (1, 2)]}},
    }


def _assert_bitwise(a, b, where="payload"):
    assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: dtype/shape differ"
        assert torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8)), (
            f"{where}: bytes differ"
        )
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {a.keys()} vs {b.keys()}"
        for k in a:
            _assert_bitwise(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_bitwise(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _step_dir(d: Path, step: int) -> Path:
    return d / f"step-{step:09d}"


def _manifest(d: Path, step: int) -> dict:
    return json.loads((_step_dir(d, step) / "MANIFEST.json").read_text())


def _assert_matches_manifest(d: Path, step: int) -> None:
    for entry in _manifest(d, step)["files"]:
        data = (_step_dir(d, step) / entry["name"]).read_bytes()
        assert len(data) == entry["size"], f"step {step} {entry['name']}: size differs"
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"step {step}: hash differs"


def _tmp_files(d: Path) -> list[Path]:
    return sorted(d.rglob("*.tmp"))


def _one_line_naming(err: CheckpointError, path: Path, reason: str) -> None:
    msg = str(err)
    assert "\n" not in msg, f"message is not one line: {msg!r}"
    assert str(path) in msg, f"message does not name {path}: {msg!r}"
    assert reason in msg, f"message does not say {reason!r}: {msg!r}"


# --------------------------------------------------------------------------- round trip


def test_round_trip_is_bitwise_and_manifest_describes_the_file(tmp_path):
    payload = _payload(3)
    step_dir = save_checkpoint(tmp_path, 42, payload, config_hash="cfg-a")
    assert step_dir == _step_dir(tmp_path, 42)
    step, loaded = load_checkpoint(tmp_path, config_hash="cfg-a", world_size=1)
    assert step == 42
    _assert_bitwise(payload, loaded)
    # The loaded generator state restores the stream where it was saved.
    g, h = torch.Generator(), torch.Generator()
    g.set_state(payload["gen_rng"])
    h.set_state(loaded["gen_rng"])
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=h))

    m = _manifest(tmp_path, 42)
    assert m["format"] == "wideflat-checkpoint" and m["format_version"] == ckpt.FORMAT_VERSION
    assert (m["step"], m["world_size"], m["config_hash"]) == (42, 1, "cfg-a")
    assert [f["name"] for f in m["files"]] == ["rank-0.pt"]
    assert m["torch_version"] == torch.__version__ and m["wideflat_version"]
    assert m["created"].endswith("+00:00")
    _assert_matches_manifest(tmp_path, 42)
    assert _tmp_files(tmp_path) == []


class Opaque:  # picklable, but not on torch.load(weights_only=True)'s allow-list
    pass


@pytest.mark.parametrize(
    "bad, name", [(Opaque(), "Opaque"), (lambda: 0, "lambda"), (slice(1, 2), "slice")]
)
def test_payload_that_weights_only_load_rejects_is_refused_before_writing(tmp_path, bad, name):
    with pytest.raises(TypeError) as info:
        save_checkpoint(tmp_path / "c", 1, {"opt": {"ok": torch.ones(2), "bad": [1, bad]}})
    msg = str(info.value)
    assert "payload['opt']['bad'][1]" in msg and name in msg and "weights_only" in msg, msg
    assert "\n" not in msg, msg
    assert not (tmp_path / "c").exists(), "something was written for a refused payload"
    with pytest.raises(TypeError, match="expected a dict"):
        save_checkpoint(tmp_path / "c", 1, [torch.ones(2)])
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"step": -1}, ValueError),
        ({"step": 10**9}, ValueError),
        ({"step": 1.0}, TypeError),
        ({"rank": 1}, ValueError),  # rank must be < world_size (1)
        ({"world_size": 0}, ValueError),
        ({"keep": 0}, ValueError),
        ({"config_hash": "a\nb"}, ValueError),
        ({"barrier": "not callable"}, TypeError),
    ],
)
def test_invalid_save_arguments_raise_before_writing(tmp_path, kwargs, error):
    args = {"step": 1, **kwargs}
    step = args.pop("step")
    with pytest.raises(error, match="Invalid"):
        save_checkpoint(tmp_path / "c", step, {"x": 1}, **args)
    assert not (tmp_path / "c").exists()


# --------------------------------------------------------------------------- atomicity


class _FullDisk:
    """A writable file that accepts a few bytes, then fails with ENOSPC (disk full)."""

    def __init__(self, path, mode):
        self._f = open(path, mode)  # noqa: SIM115 - closed by __exit__
        self._budget = 100

    def write(self, data):
        if len(data) > self._budget:
            self._f.write(bytes(data[: self._budget]))
            self._budget = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._budget -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


FAULTS = ["before_write", "mid_write", "after_tmp", "after_rename", "enospc"]


@pytest.mark.parametrize("fault", FAULTS)
def test_failed_save_leaves_previous_checkpoint_loadable(tmp_path, monkeypatch, faults, fault):
    old = _payload(1)
    save_checkpoint(tmp_path, 5, old)
    if fault == "enospc":
        monkeypatch.setattr(_io, "open", _FullDisk, raising=False)
        with pytest.raises(CheckpointError) as info:
            save_checkpoint(tmp_path, 10, _payload(2))
        tmp = _step_dir(tmp_path, 10) / "rank-0.pt.tmp"
        _one_line_naming(info.value, tmp, "No space left on device")
    else:
        faults.save(fault)
        with pytest.raises(faults.InjectedFault, match=f"save:{fault}"):
            save_checkpoint(tmp_path, 10, _payload(2))
    faults.clear()

    new_file = _step_dir(tmp_path, 10) / "rank-0.pt"
    assert new_file.exists() == (fault == "after_rename")
    assert not (_step_dir(tmp_path, 10) / "MANIFEST.json").exists()
    if fault == "after_tmp":  # a crash between the tmp write and the rename leaves the tmp
        assert _tmp_files(tmp_path) == [_step_dir(tmp_path, 10) / "rank-0.pt.tmp"]
    elif fault != "after_rename":  # a write that fails removes its partial tmp file
        assert _tmp_files(tmp_path) == []
    # The previous checkpoint is still the latest, loads, and its bytes match the manifest.
    assert latest_step(tmp_path) == 5
    step, loaded = load_checkpoint(tmp_path)
    assert step == 5
    _assert_bitwise(old, loaded)
    _assert_matches_manifest(tmp_path, 5)
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path, step=10)  # never committed

    # The next successful save commits and cleans up: no tmp file, no incomplete step.
    save_checkpoint(tmp_path, 15, _payload(3))
    assert _tmp_files(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000005", "step-000000015"]
    assert load_checkpoint(tmp_path)[0] == 15


def test_a_rank_that_fails_leaves_the_step_uncommitted(tmp_path, faults):
    # One process plays both ranks; rank 1's save of step 10 fails before writing.
    faults.save("before_write", step=10, rank=1)
    save_checkpoint(tmp_path, 5, {"x": 1}, rank=1, world_size=2)  # step 5: no fault
    save_checkpoint(tmp_path, 5, {"x": 0}, rank=0, world_size=2)
    with pytest.raises(faults.InjectedFault):
        save_checkpoint(tmp_path, 10, {"x": 1}, rank=1, world_size=2)
    with pytest.raises(CheckpointError) as info:  # rank 0 is not faulted but cannot commit
        save_checkpoint(tmp_path, 10, {"x": 0}, rank=0, world_size=2)
    _one_line_naming(info.value, _step_dir(tmp_path, 10) / "rank-1.pt", "missing at commit")
    assert latest_step(tmp_path) == 5


def test_fault_injection_lives_in_the_tests_not_in_the_package():
    import wideflat

    package = Path(wideflat.__file__).parent
    hooks = [p for p in package.rglob("*.py") if "WIDEFLAT_FAULT" in p.read_text()]
    assert hooks == []
    with pytest.warns(DeprecationWarning, match="never raised"):
        assert issubclass(ckpt.InjectedFault, Exception)


# --------------------------------------------------------------------------- corruption


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _flip(p: Path) -> None:
    b = bytearray(p.read_bytes())
    mid = len(b) // 2
    b[mid : mid + 8] = bytes(x ^ 0xFF for x in b[mid : mid + 8])
    p.write_bytes(bytes(b))


def _foreign(p: Path) -> None:
    p.write_text("epoch,loss\n1,0.5\n")


CORRUPTIONS = {
    "truncated": (_truncate, "truncated"),
    "empty": (_empty, "empty file"),
    "flipped": (_flip, "SHA-256 mismatch"),
    "foreign": (_foreign, "not a wideflat checkpoint"),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corruption_is_named_and_load_falls_back(tmp_path, caplog, kind):
    corrupt, reason = CORRUPTIONS[kind]
    good = _payload(1)
    save_checkpoint(tmp_path, 5, good, keep=3)
    save_checkpoint(tmp_path, 10, _payload(2), keep=3)
    bad = _step_dir(tmp_path, 10) / "rank-0.pt"
    size = bad.stat().st_size
    corrupt(bad)
    if kind == "flipped":  # same size, and torch.load alone does not notice: only the hash does
        assert bad.stat().st_size == size
        flipped = torch.load(bad, weights_only=True)
        assert not torch.equal(flipped["model"]["w"], _payload(2)["model"]["w"])

    for call in (lambda: load_checkpoint(tmp_path, step=10), lambda: verify_checkpoint(bad.parent)):
        with pytest.raises(CheckpointError) as info:
            call()
        _one_line_naming(info.value, bad, reason)
        assert info.value.corrupt

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        step, loaded = load_checkpoint(tmp_path)
    assert step == 5
    _assert_bitwise(good, loaded)
    skipped = [r.getMessage() for r in caplog.records if "step-000000010" in r.getMessage()]
    assert skipped and reason in skipped[0], caplog.text
    assert latest_step(tmp_path) == 5 and latest_step(tmp_path, verify=False) == 10


def test_no_checkpoint_differs_from_all_corrupt(tmp_path):
    with pytest.raises(NoCheckpointError, match="no committed checkpoint"):
        load_checkpoint(tmp_path / "absent")
    (tmp_path / "step-000000003").mkdir()  # an incomplete step is not a checkpoint
    with pytest.raises(NoCheckpointError, match="1 incomplete"):
        load_checkpoint(tmp_path)
    assert latest_step(tmp_path) is None and latest_step(tmp_path / "absent") is None

    save_checkpoint(tmp_path, 5, {"x": 1})
    save_checkpoint(tmp_path, 10, {"x": 2})
    _empty(_step_dir(tmp_path, 5) / "rank-0.pt")
    _flip(_step_dir(tmp_path, 10) / "rank-0.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path)
    assert not isinstance(info.value, NoCheckpointError)
    _one_line_naming(info.value, tmp_path, "all 2 committed steps are corrupt")
    assert latest_step(tmp_path) is None and latest_step(tmp_path, verify=False) == 10


def test_resaving_a_corrupt_committed_step_after_falling_back(tmp_path):
    save_checkpoint(tmp_path, 5, {"x": torch.ones(3)})
    save_checkpoint(tmp_path, 10, {"x": torch.ones(3)})
    _flip(_step_dir(tmp_path, 10) / "rank-0.pt")
    assert load_checkpoint(tmp_path)[0] == 5  # resume from 5, run again to step 10
    save_checkpoint(tmp_path, 10, {"x": torch.full((3,), 2.0)})
    verify_checkpoint(_step_dir(tmp_path, 10))
    step, payload = load_checkpoint(tmp_path)
    assert step == 10 and torch.equal(payload["x"], torch.full((3,), 2.0))


# --------------------------------------------------------------------------- pruning


def test_keep_prunes_old_committed_steps_and_debris(tmp_path, caplog):
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, {"s": step}, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000004", "step-000000005"]

    # Debris from crashed saves: an older incomplete step, stray tmp files, a newer step
    # from a timeline abandoned when the run resumed from step 5.
    (_step_dir(tmp_path, 6)).mkdir()
    (_step_dir(tmp_path, 6) / "rank-0.pt.tmp").write_bytes(b"partial")
    (_step_dir(tmp_path, 5) / "rank-0.pt.tmp").write_bytes(b"partial")
    (tmp_path / "stray.tmp").write_bytes(b"partial")
    save_checkpoint(tmp_path, 9, {"s": 9}, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-000000004",
        "step-000000005",
        "step-000000009",
    ]
    assert _tmp_files(tmp_path) == []
    (_step_dir(tmp_path, 4) / "rank-0.pt.tmp").write_bytes(b"partial")
    (_step_dir(tmp_path, 9) / "MANIFEST.json.tmp").write_text("{")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        save_checkpoint(tmp_path, 7, {"s": 7}, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-000000004",
        "step-000000005",
        "step-000000007",
    ]
    assert _tmp_files(tmp_path) == []
    assert "step-000000009" in caplog.text, "removing a newer step must be logged"

    for step in range(8, 12):
        save_checkpoint(tmp_path, step, {"s": step}, keep=None)
    assert len(list(tmp_path.iterdir())) == 7, "keep=None must keep every committed step"
    assert [load_checkpoint(tmp_path, step=s)[1]["s"] for s in (4, 11)] == [4, 11]


# --------------------------------------------------------------------------- mismatches


def _edit_manifest(d: Path, step: int, **changes) -> None:
    path = _step_dir(d, step) / "MANIFEST.json"
    m = json.loads(path.read_text())
    m.update(changes)
    path.write_text(json.dumps(m))


def test_newer_format_version_is_refused_not_skipped(tmp_path):
    save_checkpoint(tmp_path, 5, {"x": 1})
    save_checkpoint(tmp_path, 10, {"x": 2})
    _edit_manifest(tmp_path, 10, format_version=ckpt.FORMAT_VERSION + 1)
    mpath = _step_dir(tmp_path, 10) / "MANIFEST.json"
    for call in (
        lambda: load_checkpoint(tmp_path, step=10),
        lambda: load_checkpoint(tmp_path),  # intact but too new: no silent fallback to 5
        lambda: latest_step(tmp_path),
    ):
        with pytest.raises(CheckpointError) as info:
            call()
        _one_line_naming(info.value, mpath, "newer than this wideflat supports")
        assert not info.value.corrupt


def test_foreign_manifest_is_not_a_wideflat_checkpoint(tmp_path):
    save_checkpoint(tmp_path, 5, {"x": 1})
    _edit_manifest(tmp_path, 5, format="something-else")
    with pytest.raises(CheckpointError) as info:
        verify_checkpoint(_step_dir(tmp_path, 5))
    _one_line_naming(info.value, _step_dir(tmp_path, 5) / "MANIFEST.json", "not a wideflat")


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"config_hash": "cfg-b"}, "config hash mismatch (checkpoint 'cfg-a', this run 'cfg-b')"),
        ({"world_size": 3}, "world size mismatch (checkpoint 2, this run 3)"),
        ({"rank": 2}, "no rank 2 (world size 2)"),
    ],
)
def test_config_hash_world_size_and_rank_mismatch(tmp_path, kwargs, reason):
    for rank in (1, 0):  # one process saving both ranks: rank 0 commits last
        save_checkpoint(tmp_path, 5, {"r": rank}, rank=rank, world_size=2, config_hash="cfg-a")
    assert load_checkpoint(tmp_path, rank=1, world_size=2, config_hash="cfg-a")[1] == {"r": 1}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path, **kwargs)
    _one_line_naming(info.value, _step_dir(tmp_path, 5) / "MANIFEST.json", reason)
    assert not info.value.corrupt


def test_config_mismatch_names_the_fields_that_differ(tmp_path):
    saved = {"epochs": 2, "lr": 0.05, "model": "mlp"}
    save_checkpoint(tmp_path, 5, {"w": 1}, config_hash="cfg-a", config=saved)
    assert _manifest(tmp_path, 5)["config"] == saved
    now = {"epochs": 3, "lr": 0.05, "model": "mlp", "y": 3}
    with pytest.raises(ConfigMismatchError) as info:
        load_checkpoint(tmp_path, config_hash="cfg-b", config=now)
    _one_line_naming(
        info.value,
        _step_dir(tmp_path, 5) / "MANIFEST.json",
        "config hash mismatch (checkpoint 'cfg-a', this run 'cfg-b'): epochs (checkpoint 2, "
        "this run 3), y (checkpoint None, this run 3) differ",
    )
    assert info.value.differences == {"epochs": (2, 3), "y": (None, 3)}
    assert not info.value.corrupt and isinstance(info.value, CheckpointError)
    # a manifest without the config (older saves): the hashes only
    save_checkpoint(tmp_path / "old", 5, {"w": 1}, config_hash="cfg-a")
    with pytest.raises(ConfigMismatchError, match=r"this run 'cfg-b'\)$"):
        load_checkpoint(tmp_path / "old", config_hash="cfg-b", config=now)


# --------------------------------------------------------------------------- multi-rank

WORKER = textwrap.dedent(
    """
    import datetime, os, sys
    import torch
    import torch.distributed as dist
    from wideflat.experiments.checkpoint import load_checkpoint, save_checkpoint

    torch.set_num_threads(1)
    rank, directory, init, tests = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    sys.path.insert(0, tests)
    import _faults

    if rank == 1:  # killed between its tmp write and its rename in the save of step 15
        _faults.save_fault("after_tmp", step=15, exit=True)
    dist.init_process_group("gloo", init_method="file://" + init, rank=rank, world_size=3,
                            timeout=datetime.timedelta(seconds=60))

    def payload(step):
        return {"w": torch.full((256,), 100.0 * rank + step), "rank": rank, "step": step}

    def save(step):
        save_checkpoint(directory, step, payload(step), rank=rank, world_size=3,
                        config_hash="cfg", keep=2, barrier=dist.barrier)

    save(5)
    save(10)
    step, got = load_checkpoint(directory, rank=rank, world_size=3, config_hash="cfg")
    print("LOADED", rank, step, got["rank"], flush=True)
    try:
        save(15)  # rank 1 dies here (os._exit), the others fail at the barrier
    except Exception as e:
        print("SURVIVOR", rank, type(e).__name__, flush=True)
        os._exit(3)
    print("COMPLETED", rank, flush=True)
    os._exit(0)
    """
)


@pytest.mark.dist
def test_three_process_save_commit_and_kill_mid_save(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    d = tmp_path / "ckpt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    tests = str(Path(__file__).resolve().parents[1])
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(r), str(d), str(tmp_path / "rendezvous"), tests],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(3)
    ]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=90)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    log = "\n".join(
        f"--- rank {r} (exit {p.returncode})\n{o}"
        for r, (p, o) in enumerate(zip(procs, outputs, strict=True))
    )
    for r in range(3):
        assert f"LOADED {r} 10 {r}" in outputs[r], log
    assert [p.returncode for p in procs] == [3, 1, 3], log  # rank 1 killed, the others fail

    # Step 15 never committed; step 10 is the latest verified, for every rank.
    s15 = _step_dir(d, 15)
    assert not (s15 / "MANIFEST.json").exists()
    assert (s15 / "rank-1.pt.tmp").exists() and not (s15 / "rank-1.pt").exists()
    assert sorted(p.name for p in d.iterdir()) == [
        "step-000000005",
        "step-000000010",
        "step-000000015",
    ]
    assert latest_step(d) == 10
    m = _manifest(d, 10)
    assert m["world_size"] == 3 and [f["name"] for f in m["files"]] == [
        f"rank-{r}.pt" for r in range(3)
    ]
    _assert_matches_manifest(d, 10)
    for r in range(3):
        step, got = load_checkpoint(d, rank=r, world_size=3, config_hash="cfg")
        assert step == 10 and got["rank"] == r
        assert torch.equal(got["w"], torch.full((256,), 100.0 * r + 10))

    # The restarted run saves step 15 again (here one process plays all ranks, rank 0 last).
    for r in (2, 1, 0):
        save_checkpoint(d, 15, {"rank": r}, rank=r, world_size=3, config_hash="cfg", keep=2)
    assert _tmp_files(d) == []
    assert latest_step(d) == 15
    assert sorted(p.name for p in d.iterdir()) == ["step-000000010", "step-000000015"]
