"""torchrun worker for the distributed-engine tests (one replica per rank, gloo).

    torchrun --standalone --nproc-per-node=3 dist_worker.py OUT_DIR PHASE...

Phases, run in order in the same processes:
* ``equivalence``: 50 steps of the shared BatchNorm problem; saves rank-r.pt (replica state
  dict and center state dict).
* ``nan`` / ``nan21``: rank 1's loss turns NaN at step 20 / 21; every rank must stop at the
  same (coupling) step; saves nan-rank-r.json / nan21-rank-r.json (step and message).
* ``mismatch``: rank 2 uses another seed; every rank must refuse with one message.
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
from wideflat.optim import NonFiniteLossError, ReplicatedSGD  # noqa: E402


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
        elif phase == "restart":
            restart(out, rank, world)
        else:
            raise SystemExit(f"unknown phase {phase!r}")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
