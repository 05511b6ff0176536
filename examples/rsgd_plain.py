"""Replicated-SGD in a plain training loop, with save and resume.

Shows: ``ReplicatedSGD`` (y replicas of your model, coupled to their center w̄ every K
steps) in an ordinary loop, one closure per replica, each replica on its own minibatch
stream; γ focusing from the paper's automatic γ0; the center evaluated after its BatchNorm
statistics are re-estimated (``recompute_bn``); and a checkpoint of ``model.state_dict()`` +
``opt.state_dict()`` (which holds every replica) that resumes bit for bit.

Run:
    python examples/rsgd_plain.py                       # Fashion-MNIST MLP, y = 3, ~10 s
    python examples/rsgd_plain.py --interrupt-after 2   # stop after epoch 2, as a crash would
    python examples/rsgd_plain.py --resume              # ... and continue from rsgd_plain.pt
    python examples/rsgd_plain.py --tiny                # random data, seconds (CI)
"""

import argparse
import os

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from wideflat.data import DatasetError, load_fashion_mnist
from wideflat.optim import ExponentialGamma, ReplicatedSGD, auto_gamma0_rsgd
from wideflat.replicas import recompute_bn


def load_data(tiny: bool):
    if not tiny:
        try:
            train = load_fashion_mnist(split="train", dtype=torch.float32)
            test = load_fashion_mnist(split="test", dtype=torch.float32)
            return (train.images[:10_000], train.labels[:10_000]), (test.images, test.labels)
        except DatasetError as err:
            print(f"no Fashion-MNIST ({err}); using random data")
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(512, 28, 28, generator=g), torch.randint(0, 10, (512,), generator=g)
    return (x[:384], y[:384]), (x[384:], y[384:])


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()  # the center's BatchNorm uses its recomputed running statistics
    out = model(x)
    return float((out.argmax(1) != y).float().mean()), float(F.cross_entropy(out, y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random data, seconds (CI)")
    parser.add_argument("--epochs", type=int, default=None, help="default 10 (--tiny: 3)")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument("--interrupt-after", type=int, default=None, metavar="EPOCH")
    parser.add_argument("--checkpoint", default="rsgd_plain.pt")
    args = parser.parse_args()
    epochs = args.epochs or (3 if args.tiny else 10)
    (x_train, y_train), (x_test, y_test) = load_data(args.tiny)
    train_set, batch = TensorDataset(x_train, y_train), 32 if args.tiny else 128

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(),
                          nn.Linear(256, 10))  # fmt: skip
    lr, K = 0.05, 10
    # Replica 0 is `model` (trained in place); replicas 1..y-1 are new, drawn from `seed`.
    opt = ReplicatedSGD(model, lr=lr, y=3, coupling_every=K, momentum=0.9, nesterov=True,
                        weight_decay=1e-4, seed=0)  # fmt: skip
    x0, y0 = x_train[:batch], y_train[:batch]
    gamma0 = auto_gamma0_rsgd(opt, lambda m: F.cross_entropy(m(x0), y0))  # the paper's balance
    gamma_max = 0.5 / (lr * K)  # the elastic step lr·K·γ stays ≤ 0.5 at a constant lr
    focusing = ExponentialGamma(opt, gamma0=min(gamma0, gamma_max),
                                growth=max(gamma_max / gamma0, 1.0), steps=epochs)  # fmt: skip
    start = 0
    if args.resume and os.path.exists(args.checkpoint):  # objects built first, then loaded
        ck = torch.load(args.checkpoint, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])  # restores replicas 1..y-1, momenta, RNG streams
        focusing.load_state_dict(ck["focusing"])
        start = ck["epoch"]
        print(f"resumed from {args.checkpoint} at epoch {start}")

    def closure(a):  # replica a's loss on its own fresh minibatch
        x, y = next(streams[a])
        loss = F.cross_entropy(opt.replicas[a](x), y)
        loss.backward()
        return loss

    for epoch in range(start + 1, epochs + 1):
        # One shuffled stream per replica, seeded by (epoch, replica): a resume is exact.
        streams = [iter(DataLoader(train_set, batch, shuffle=True, drop_last=True,
                                   generator=torch.Generator().manual_seed(1000 * epoch + a)))
                   for a in range(opt.y)]  # fmt: skip
        for _ in range(len(train_set) // batch):
            loss = opt.step(closure)  # mean of the replicas' losses
        gamma = opt.param_groups[0]["gamma"]  # the γ this epoch used
        focusing.step()
        center = recompute_bn(opt.center(), DataLoader(train_set, 1000))  # w̄, BN stats for w̄
        err, _ = evaluate(center, x_test, y_test)
        print(f"epoch {epoch}: replica loss {loss.item():.3f}  center test error {err:.3f}  "
              f"gamma {gamma:.3g}")  # fmt: skip
        state = {"model": model.state_dict(), "opt": opt.state_dict(),
                 "focusing": focusing.state_dict(), "epoch": epoch}  # fmt: skip
        torch.save(state, args.checkpoint + ".tmp")
        os.replace(args.checkpoint + ".tmp", args.checkpoint)  # a crash never leaves half a file
        if epoch == args.interrupt_after:
            print(f"interrupted after epoch {epoch}; continue with --resume")
            return
    center = recompute_bn(opt.center(), DataLoader(train_set, 1000))
    err, loss = evaluate(center, x_train, y_train)
    print(f"final center: train error {err:.4f}  train loss {loss:.6f}")


if __name__ == "__main__":
    main()
