"""How flat is a trained network? Every measure of wideflat.flatness on one checkpoint.

Shows: loading a checkpoint (a ``torch.save``d ``state_dict``, or a dict holding one under
``"model"``) into a model from ``wideflat.models``, then the local energy δE_train(w, σ), the
Hessian's top eigenvalue and trace, (adaptive) sharpness, the PAC-Bayes σ and the loss along
the line to a second network, as one table and two figures. Every measure leaves the model
untouched and draws its own randomness from ``seed``.

Run:
    python examples/flatness_of_a_checkpoint.py CKPT.pt --model smallconvnet [--other B.pt]
        # ~2 min for a SmallConvNet on --n 1000 images, 2 CPU cores
    python examples/flatness_of_a_checkpoint.py rsgd_center.pt --model mlp  # rsgd_torchrun.py's
    python examples/flatness_of_a_checkpoint.py --tiny   # trains two tiny MLPs first (CI)

Data: the first --n Fashion-MNIST training images, pixels in [0, 1] (the models are built for
1×28×28 inputs and 10 classes); preprocess ``x`` as your model was trained. Without --other
the line runs to a fresh initialization (Goodfellow et al., 2015).
"""

import argparse

import torch
from torch.nn import functional as F

from wideflat.data import load_fashion_mnist
from wideflat.flatness import (
    hessian,
    interpolate,
    local_energy,
    pac_bayes_sigma,
    plot_interpolation,
    plot_local_energy,
    sharpness,
)
from wideflat.models import create_model


def load(path: str, model: torch.nn.Module) -> torch.nn.Module:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state.get("model", state))
    return model.eval()


def tiny_models(x: torch.Tensor, y: torch.Tensor) -> list[torch.nn.Module]:
    """Two small MLPs trained from different seeds (full-batch SGD, a few seconds)."""
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = create_model("mlp", num_classes=10, in_channels=1, image_size=28, hidden=(32,))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(100):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        models.append(model.eval())
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="state_dict file (not with --tiny)")
    parser.add_argument("--model", default="smallconvnet", help="a name from list_models()")
    parser.add_argument("--other", help="second checkpoint for the interpolation")
    parser.add_argument("--n", type=int, default=1000, help="training images measured on")
    parser.add_argument("--tiny", action="store_true", help="two tiny MLPs, seconds (CI)")
    args = parser.parse_args()
    if args.tiny:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(256, 1, 28, 28, generator=g)
        y = (x.flatten(1) @ torch.randn(784, 10, generator=g)).argmax(1)  # a linear teacher
        model, other = tiny_models(x, y)
    elif args.checkpoint is None:
        parser.error("give a checkpoint, or --tiny")
    else:
        train = load_fashion_mnist(split="train", dtype=torch.float32)
        x, y = train.images[: args.n, None], train.labels[: args.n]
        build = lambda: create_model(args.model, num_classes=10, in_channels=1, image_size=28)  # noqa: E731
        model = load(args.checkpoint, build())
        torch.manual_seed(0)
        other = load(args.other, build()) if args.other else build().eval()
    data, few = (x, y), args.tiny  # few draws with --tiny; the s.e. columns say how few

    energy = local_energy(model, data, [0.0, 0.1, 0.25, 0.5], samples=4 if few else 20, seed=0)
    curv = hessian(model, data, top_k=1, trace_samples=4 if few else 16, seed=0)
    sam = sharpness(model, data, rho=0.05, seed=0)
    asam = sharpness(model, data, rho=0.5, adaptive=True, seed=0)
    pb = pac_bayes_sigma(model, data, samples=4 if few else 16, seed=0)
    line = interpolate(model, other, data, points=11 if few else 21)

    rows = [
        ("train error / loss", f"{energy.base_error:.4f} / {energy.base_loss:.4f}", "", 0.0),
        ("local energy dE_train(sigma=0.5)", f"{energy.delta_error[-1]:.4f}",
         f"{energy.delta_error_se[-1]:.4f}", energy.wall_time_s),
        ("Hessian top eigenvalue", f"{curv.eigenvalues[0]:.4g}", "", curv.wall_time_s),
        ("Hessian trace", f"{curv.trace:.4g}", f"{curv.trace_se:.2g}", 0.0),
        ("sharpness (rho=0.05)", f"{sam.value:.4g}", f"{sam.value_se:.2g}", sam.wall_time_s),
        ("adaptive sharpness (rho=0.5)", f"{asam.value:.4g}", f"{asam.value_se:.2g}",
         asam.wall_time_s),
        ("PAC-Bayes sigma (1/sigma^2)", f"{pb.sigma:.4g} ({pb.measure:.4g})", pb.status,
         pb.wall_time_s),
        ("interpolation barrier (loss)", f"{line.barrier_loss:.4g}", f"t={line.barrier_loss_t:.2g}",
         line.wall_time_s),
    ]  # fmt: skip
    print(f"{type(model).__name__}, {energy.n_parameters} parameters, {len(y)} training examples")
    print(f"{'measure':34} {'value':>20} {'s.e./note':>12} {'time (s)':>9}")
    for name, value, note, seconds in rows:
        print(f"{name:34} {value:>20} {note.replace('nan', ''):>12} {seconds:>9.2f}")
    plot_local_energy({args.model if not few else "tiny MLP": energy}, "flatness_local_energy.png")
    plot_interpolation(line, path="flatness_interpolation.png")
    print("wrote flatness_local_energy.png and flatness_interpolation.png")


if __name__ == "__main__":
    main()
