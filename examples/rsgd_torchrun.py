"""Replicated-SGD under torchrun: one replica per process, checkpoints, restarts.

Shows: the distributed engine (``ReplicatedSGD(..., engine="distributed")``: replica a in
rank a, y = world size, the center by all-reduce every K steps, never wrapped in DDP); each
rank's own minibatch stream (``replica_streams``); the paper's γ0 agreed by all ranks; atomic,
verified per-rank checkpoints and a resume after ``torchrun --max-restarts`` restarts the
ranks; and the center w̄ evaluated and saved by rank 0 (``rsgd_center.pt``, an ``mlp`` state
dict that ``examples/flatness_of_a_checkpoint.py rsgd_center.pt --model mlp`` measures).

Run (gloo on CPU; on GPUs: "nccl", the model and the stream on cuda:LOCAL_RANK):
    torchrun --standalone --nproc-per-node=3 --max-restarts=1 examples/rsgd_torchrun.py
    torchrun --standalone --nproc-per-node=3 --max-restarts=1 examples/rsgd_torchrun.py \\
        --kill-at 150       # the last rank dies at step 150 once; all ranks restart and resume
    OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node=2 examples/rsgd_torchrun.py --tiny
Run it again to continue from the newest checkpoint in --out (delete the folder to restart).
"""

import argparse
import os
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn import functional as F

from wideflat.data import DatasetError, load_fashion_mnist, replica_streams
from wideflat.experiments import NoCheckpointError, load_checkpoint, save_checkpoint
from wideflat.models import create_model
from wideflat.optim import ExponentialGamma, ReplicatedSGD, auto_gamma0_rsgd


def load_data(tiny: bool):
    if not tiny:
        try:
            train = load_fashion_mnist(split="train", dtype=torch.float32)
            test = load_fashion_mnist(split="test", dtype=torch.float32)
            return (train.images[:10_000], train.labels[:10_000]), (test.images, test.labels)
        except DatasetError:
            pass  # random data instead
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(512, 28, 28, generator=g), torch.randint(0, 10, (512,), generator=g)
    return (x[:384], y[:384]), (x[384:], y[384:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random data, seconds (CI)")
    parser.add_argument("--epochs", type=int, default=None, help="default 10 (--tiny: 2)")
    parser.add_argument("--kill-at", type=int, default=0, help="crash the last rank once here")
    parser.add_argument("--out", default="rsgd_torchrun", help="checkpoint folder")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(exist_ok=True)
    # A file:// rendezvous, fresh for every torchrun launch and attempt, so restarts work.
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    run = f"{os.environ.get('TORCHELASTIC_RUN_ID', 'run')}-{attempt}"
    dist.init_process_group("gloo", init_method=f"file://{out}/rdzv-{run}",
                            rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                            timeout=timedelta(seconds=120))  # fmt: skip
    rank, world = dist.get_rank(), dist.get_world_size()

    (x, t), (x_test, t_test) = load_data(args.tiny)
    batch, lr, K = (32 if args.tiny else 128), 0.05, 10
    steps_per_epoch, epochs = len(x) // batch, args.epochs or (2 if args.tiny else 10)
    torch.manual_seed(0)  # the same model on every rank: rank 0 keeps it, the others re-draw
    model = create_model("mlp", num_classes=10, in_channels=1, image_size=28)
    opt = ReplicatedSGD(model, lr=lr, engine="distributed", coupling_every=K, momentum=0.9,
                        nesterov=True, weight_decay=1e-4, seed=0)  # fmt: skip
    gamma0 = auto_gamma0_rsgd(opt, lambda m: F.cross_entropy(m(x[:batch]), t[:batch]))
    gamma_max = 0.5 / (lr * K)  # all ranks get the same γ0 (sums are all-reduced)
    focusing = ExponentialGamma(opt, gamma0=min(gamma0, gamma_max),
                                growth=max(gamma_max / gamma0, 1.0), steps=epochs)  # fmt: skip
    (stream,) = replica_streams(x, t, batch, replicas=opt.replicas.local_indices, seed=0)
    start = 0
    try:  # resume: every rank picks the newest step whose files all verify
        start, state = load_checkpoint(out / "ckpt", rank=rank, world_size=world)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        focusing.load_state_dict(state["focusing"])
        stream.load_state_dict(state["stream"])
        print(f"rank {rank}: resumed from step {start}", flush=True)
    except NoCheckpointError:
        pass

    for step in range(start + 1, epochs * steps_per_epoch + 1):
        if step == args.kill_at and rank == world - 1 and attempt == "0":
            print(f"rank {rank}: crashing at step {step}", flush=True)
            os._exit(1)  # torchrun --max-restarts restarts every rank
        loss = opt.step_batches([next(stream)])
        if step % steps_per_epoch == 0:
            focusing.step()
        if step % (steps_per_epoch // 2) == 0:  # atomic, SHA-256-verified, all ranks
            state = {"model": model.state_dict(), "opt": opt.state_dict(),
                     "focusing": focusing.state_dict(), "stream": stream.state_dict()}  # fmt: skip
            save_checkpoint(out / "ckpt", step, state, rank=rank, world_size=world,
                            barrier=dist.barrier)  # fmt: skip
        if step % steps_per_epoch == 0 and rank == 0:
            print(f"step {step}: rank 0 loss {float(loss):.3f}", flush=True)

    center = opt.center().eval()  # a collective: every rank calls it
    if rank == 0:
        with torch.no_grad():
            err = float((center(x_test).argmax(1) != t_test).float().mean())
        print(f"center of {world} replicas: test error {err:.3f}", flush=True)
        torch.save(center.state_dict(), "rsgd_center.pt")
    dist.barrier()
    dist.destroy_process_group()
    # Leave without the interpreter's finalization: on torch 2.13 gloo's threads sometimes
    # abort it ("terminate called without an active exception", pytorch/pytorch#179291) after
    # the work is done, and torchrun --max-restarts would then restart a finished job.
    os._exit(0)


if __name__ == "__main__":
    main()
