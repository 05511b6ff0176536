"""torchrun worker for the distributed-engine tests (one replica per rank, gloo).

    torchrun --standalone --nproc-per-node=3 dist_worker.py OUT_DIR PHASE...

Phases, run in order in the same processes:
* ``equivalence``: 50 steps of the shared BatchNorm problem; saves rank-r.pt (replica state
  dict and center state dict).
* ``nan`` / ``nan21``: rank 1's loss turns NaN at step 20 / 21; every rank must stop at the
  same (coupling) step; saves nan-rank-r.json / nan21-rank-r.json (step and message).
* ``mismatch``: rank 2 uses another seed; every rank must refuse with one message.
* ``hyper``: rank 2 uses another value of one optimizer setting (coupling_every, lr, ...),
  one case after another; every rank must refuse each with one message; saves
  hyper-rank-r.json.
* ``optresume``: 5 steps, then a fresh model with other weights and a fresh optimizer
  restored from ``opt.state_dict()`` alone (via torch.save / weights_only load); 5 more
  steps of both; saves optresume-rank-r.json (bit-identical or not, and the message of
  loading another rank's state dict).
* ``gamma0``: ``auto_gamma0_rsgd`` on every rank; saves gamma0-rank-r.json.
* ``restart``: 100 steps with an atomic checkpoint every 5 steps, resuming from the newest
  verified one; with KILL_AT set, rank 1 dies (``os._exit``) at that step on the first
  attempt (TORCHELASTIC_RESTART_COUNT = 0); saves final-rank-r.pt.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from _engine_problem import BATCH, HYPER, SEED, make_data, make_model, train  # noqa: E402

from wideflat.data import replica_streams  # noqa: E402
from wideflat.experiments.checkpoint import (  # noqa: E402
    latest_step,
    load_checkpoint,
    save_checkpoint,
)
from wideflat.optim import NonFiniteLossError, ReplicatedSGD, auto_gamma0_rsgd  # noqa: E402


def equivalence(out: Path, rank: int) -> None:
    opt = train("distributed")
    center = opt.center()
    torch.save(
        {"replica": opt.replicas.replica.state_dict(), "center": center.state_dict()},
        out / f"rank-{rank}.pt",
    )


def nan(out: Path, rank: int, bad_step: int = 20, name: str = "nan") -> None:
    opt = ReplicatedSGD(make_model(), engine="distributed", seed=SEED, **HYPER)
    x, t = make_data()
    (stream,) = replica_streams(x, t, BATCH, replicas=[rank], seed=SEED)
    model = opt.replicas.replica
    result = {"stopped_at": None, "message": ""}
    for step in range(1, 41):

        def closure(a, step=step):
            xb, tb = next(stream)
            loss = torch.nn.functional.cross_entropy(model(xb), tb)
            if rank == 1 and step == bad_step:
                loss = loss * float("nan")
            loss.backward()
            return loss

        try:
            opt.step(closure)
        except NonFiniteLossError as err:
            result = {"stopped_at": step, "message": str(err)}
            break
    (out / f"{name}-rank-{rank}.json").write_text(json.dumps(result))


def mismatch(out: Path, rank: int) -> None:
    """Rank 2 is launched with another seed: every rank must refuse at construction."""
    seed = SEED + 1 if rank == 2 else SEED
    try:
        ReplicatedSGD(make_model(), engine="distributed", seed=seed, **HYPER)
        message = ""
    except ValueError as err:
        message = str(err)
    (out / f"mismatch-rank-{rank}.json").write_text(json.dumps({"message": message}))


HYPER_CASES = {  # rank 2's value for one setting; the other ranks use HYPER's
    "same": {},
    "coupling_every": dict(coupling_every=4),
    "lr": dict(lr=0.06),
    "gamma": dict(gamma=0.3),
    "momentum": dict(momentum=0.8),
    "weight_decay": dict(weight_decay=0.0),
    "nesterov": dict(nesterov=False),
    "check_finite": dict(check_finite=False),
    "base_kwargs": dict(base_kwargs={"maximize": True}),
}


def hyper(out: Path, rank: int) -> None:
    """Rank 2 differs in one setting per case: every rank must refuse at construction."""
    messages = {}
    for case, change in HYPER_CASES.items():
        kwargs = {**HYPER, **(change if rank == 2 else {})}
        try:
            ReplicatedSGD(make_model(), engine="distributed", seed=SEED, **kwargs)
            messages[case] = ""
        except ValueError as err:
            messages[case] = str(err)
    (out / f"hyper-rank-{rank}.json").write_text(json.dumps(messages))


def optresume(out: Path, rank: int) -> None:
    """Restore this rank's replica from the optimizer's state dict alone."""
    x, t = make_data()
    (stream,) = replica_streams(x, t, BATCH, replicas=[rank], seed=SEED)
    batches = [next(stream) for _ in range(10)]
    opt = ReplicatedSGD(make_model(), engine="distributed", seed=SEED, **HYPER)
    for batch in batches[:5]:
        opt.step_batches([batch])
    path = out / f"opt-rank-{rank}.pt"
    torch.save(opt.state_dict(), path)
    saved = torch.load(path, weights_only=True)
    other = make_model()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    resumed = ReplicatedSGD(other, engine="distributed", seed=SEED, **HYPER)
    resumed.load_state_dict(saved)
    for batch in batches[5:]:
        opt.step_batches([batch])
        resumed.step_batches([batch])
    ref, got = opt.replicas.replica.state_dict(), resumed.replicas.replica.state_dict()
    identical = all(torch.equal(got[k], v) for k, v in ref.items())
    dist.barrier()
    try:  # another rank's state dict
        other_rank = out / f"opt-rank-{(rank + 1) % dist.get_world_size()}.pt"
        resumed.load_state_dict(torch.load(other_rank, weights_only=True))
        wrong_rank = ""
    except ValueError as err:
        wrong_rank = str(err)
    result = {"identical": identical, "wrong_rank": wrong_rank}
    (out / f"optresume-rank-{rank}.json").write_text(json.dumps(result))


def gamma0(out: Path, rank: int) -> None:
    opt = ReplicatedSGD(make_model(), engine="distributed", seed=SEED, **HYPER)
    x, t = make_data()
    value = auto_gamma0_rsgd(opt, lambda m: torch.nn.functional.cross_entropy(m(x), t))
    (out / f"gamma0-rank-{rank}.json").write_text(json.dumps({"gamma0": value}))


def restart(out: Path, rank: int, world: int) -> None:
    ckpt = out / "checkpoints"
    opt = ReplicatedSGD(make_model(), engine="distributed", seed=SEED, **HYPER)
    x, t = make_data()
    (stream,) = replica_streams(x, t, BATCH, replicas=[rank], seed=SEED)
    model = opt.replicas.replica
    start = 0
    if latest_step(ckpt) is not None:  # resume from the newest verified checkpoint
        start, payload = load_checkpoint(ckpt, rank=rank, world_size=world)
        model.load_state_dict(payload["model"])
        opt.load_state_dict(payload["optimizer"])
        stream.load_state_dict(payload["stream"])
    kill_at = int(os.environ.get("KILL_AT", "0"))
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    for step in range(start + 1, 101):
        if rank == 1 and step == kill_at and first_attempt:
            os._exit(1)
        opt.step_batches([next(stream)])
        if step % 5 == 0:
            payload = {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "stream": stream.state_dict(),
            }
            save_checkpoint(ckpt, step, payload, rank=rank, world_size=world, barrier=dist.barrier)
    torch.save(model.state_dict(), out / f"final-rank-{rank}.pt")
    (out / f"resumed-rank-{rank}.json").write_text(json.dumps({"start": start}))


def main() -> None:
    out, phases = Path(sys.argv[1]), sys.argv[2:]
    faulthandler.dump_traceback_later(90, exit=True)  # a hang shows where, then exits
    # A file:// rendezvous, fresh for every torchrun attempt: after a restart the workers
    # must not find the previous attempt's peer addresses (seen to hang or be refused).
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    dist.init_process_group(
        "gloo",
        init_method=f"file://{out.resolve()}/rendezvous-{attempt}",
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        timeout=timedelta(seconds=60),
    )
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    for phase in phases:
        if phase == "equivalence":
            equivalence(out, rank)
        elif phase == "nan":
            nan(out, rank)
        elif phase == "nan21":
            nan(out, rank, bad_step=21, name="nan21")
        elif phase == "mismatch":
            mismatch(out, rank)
        elif phase == "hyper":
            hyper(out, rank)
        elif phase == "optresume":
            optresume(out, rank)
        elif phase == "gamma0":
            gamma0(out, rank)
        elif phase == "restart":
            restart(out, rank, world)
        else:
            raise SystemExit(f"unknown phase {phase!r}")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
