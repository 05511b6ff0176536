"""Entropy-SGD in a plain CIFAR-style training loop.

Shows: ``EntropySGD`` wrapping Nesterov SGD in an ordinary ``DataLoader`` loop; the closure,
called L times per step, each time on a fresh minibatch; a γ focusing scheduler and an LR
scheduler, both stepped once per epoch; test error after each epoch; and the local energy
δE_train(w, σ) of the trained network at the end (lower = flatter).

Run:
    python examples/esgd_cifar_style.py           # Fashion-MNIST, 10,000 images: ~2 min
    python examples/esgd_cifar_style.py --tiny    # random CIFAR-shaped data, seconds (CI)

Data: Fashion-MNIST through ``wideflat.data.load_fashion_mnist`` ($WIDEFLAT_DATA,
/usr/share/datasets/fashion-mnist or ~/.cache/wideflat), or random CIFAR-shaped tensors with
--tiny or when it is not found. Put your own CIFAR tensors in ``load_data``: nothing else changes.
"""

import argparse

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from wideflat.data import DatasetError, load_fashion_mnist
from wideflat.flatness import local_energy
from wideflat.optim import EntropySGD, ExponentialGamma


def load_data(tiny: bool, n_train: int):
    """(x_train, y_train), (x_test, y_test) as float N×C×H×W images and int64 labels."""
    if not tiny:
        try:
            train = load_fashion_mnist(split="train", dtype=torch.float32)
            test = load_fashion_mnist(split="test", dtype=torch.float32)
            print(f"Fashion-MNIST from {train.source}")
            x, xt = train.images[:n_train, None], test.images[:, None]
            mean, std = x.mean(), x.std()
            return ((x - mean) / std, train.labels[:n_train]), ((xt - mean) / std, test.labels)
        except DatasetError as err:
            print(f"no Fashion-MNIST ({err}); using random data")
    n_train = 320 if tiny else n_train
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + 128, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n_train + 128,), generator=g)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def small_convnet(in_channels: int, classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64 * 4 * 4, classes),
    )  # fmt: skip


@torch.no_grad()
def test_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    batches = zip(x.split(1000), y.split(1000), strict=True)
    wrong = sum(int((model(xb).argmax(1) != yb).sum()) for xb, yb in batches)
    model.train()
    return wrong / len(y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random data, seconds (CI)")
    parser.add_argument("--epochs", type=int, default=None, help="default 10 (--tiny: 2)")
    parser.add_argument("--n-train", type=int, default=10_000, help="training images used")
    args = parser.parse_args()
    epochs = args.epochs or (2 if args.tiny else 10)
    torch.manual_seed(0)
    (x_train, y_train), (x_test, y_test) = load_data(args.tiny, args.n_train)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=32 if args.tiny else 128,
                        shuffle=True, drop_last=True)  # fmt: skip
    model = small_convnet(x_train.shape[1])
    L = 5  # inner (SGLD) steps per outer step: one outer step consumes L minibatches
    opt = EntropySGD(model.parameters(), lr=0.5, inner_lr=0.02, inner_steps=L, gamma=0.03,
                     noise=1e-4, momentum=0.9, nesterov=True, weight_decay=1e-4)  # fmt: skip
    focusing = ExponentialGamma(opt, growth=10, steps=epochs)  # γ grows ×10 over the run
    lr_decay = torch.optim.lr_scheduler.MultiStepLR(opt, [int(0.6 * epochs), int(0.8 * epochs)])

    def closure():  # called L times per step, each time on a fresh minibatch
        x, y = next(batches)
        x = torch.where(torch.rand(len(x), 1, 1, 1) < 0.5, x.flip(3), x)  # random flip
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for epoch in range(1, epochs + 1):
        batches = iter(loader)  # one outer step consumes L minibatches
        for _ in range(len(loader) // L):
            loss = opt.step(closure)  # the loss at w, before the step
        gamma = opt.param_groups[0]["gamma"]  # the γ this epoch used
        focusing.step()  # schedulers after the epoch's optimizer steps
        lr_decay.step()
        print(f"epoch {epoch}: train loss {loss.item():.3f}  test error "
              f"{test_error(model, x_test, y_test):.3f}  gamma {gamma:.3g}")  # fmt: skip

    # Flatness: training-error increase under multiplicative weight noise w + σ z ⊙ w.
    sigmas = [0.0, 0.1, 0.2, 0.3, 0.5]
    profile = local_energy(model, (x_train, y_train), sigmas, samples=2 if args.tiny else 10,
                           subset=min(1000, len(y_train)), seed=0, progress=False)  # fmt: skip
    print("local energy dE_train(sigma) on", profile.n_examples, "training images:")
    for s, d, se in zip(profile.sigmas, profile.delta_error, profile.delta_error_se, strict=True):
        print(f"  sigma {s:.2f}: {d:.4f} ± {se:.4f}")
    profile.to_json("esgd_local_energy.json")


if __name__ == "__main__":
    main()
