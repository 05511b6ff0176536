"""Cost of one Hessian-vector product against one gradient evaluation, on the same batch.

The HVP is the one :func:`wideflat.flatness.curvature` runs per batch (reverse-over-forward:
``torch.func.grad`` of the ``torch.func.jvp`` directional derivative, through
``functional_call``); two other exact engines are timed for reference, forward-over-reverse
(``jvp`` of ``grad``) and double backward (``autograd.grad`` of ``grad(create_graph=True)·v``).
The baseline is one gradient of the mean cross-entropy by ``torch.autograd.grad`` (forward +
backward). The model is ``smallconvnet`` for 3x32x32 inputs in eval mode, the batch random
CIFAR-shaped data. The variants alternate within each round (the order reversed every other
round); each printed ratio is the median over rounds of the per-round ratio variant /
gradient (quartiles too).
Target: HVP / gradient <= 2.5.

    python benchmarks/hessian.py [--rounds 15] [--batch 128] [--threads 1] [--clock cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch.func import functional_call, grad, jvp
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks' shared helpers

from optim_overhead import CLOCK, add_timing_options, cpu_model  # noqa: E402

from wideflat.flatness.curvature import _batch_hvp  # noqa: E402
from wideflat.models import create_model  # noqa: E402

TARGET = 2.5


def runners(model, x, y) -> dict:
    """The timed callables: the gradient, wideflat's HVP and the two reference HVPs."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    names = [n for n, _ in named]
    params = [p for _, p in named]
    primals = tuple(p.detach() for p in params)
    g = torch.Generator(device=x.device).manual_seed(1)
    tangents = tuple(torch.randn(p.shape, generator=g, device=p.device) for p in params)

    def gradient():
        return torch.autograd.grad(F.cross_entropy(model(x), y), params)

    def hvp():
        return _batch_hvp(model, names, primals, tangents, x, y, F.cross_entropy)

    def loss(weights):
        out = functional_call(model, dict(zip(names, weights, strict=True)), (x,))
        return F.cross_entropy(out, y)

    def hvp_forward_over_reverse():
        return jvp(grad(loss), (primals,), (tangents,))[1]

    def hvp_double_backward():
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
        dot = sum((gr * t).sum() for gr, t in zip(grads, tangents, strict=True))
        return torch.autograd.grad(dot, params)

    return {
        "gradient (autograd.grad)": gradient,
        "HVP reverse-over-forward (wideflat)": hvp,
        "HVP forward-over-reverse (reference)": hvp_forward_over_reverse,
        "HVP double backward (reference)": hvp_double_backward,
    }


def timed(fn, device: torch.device, clock) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = clock()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return clock() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_timing_options(parser)
    args = parser.parse_args(argv)
    clock = CLOCK[args.clock]
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model("smallconvnet", num_classes=10, in_channels=3, image_size=32)
    model = model.to(device).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"wideflat Hessian-vector product cost | {cpu_model()}, torch {torch.__version__}, "
        f"{device}, {args.threads} thread(s), {args.clock} clock | smallconvnet "
        f"({n_params / 1e6:.2f}M params), batch {args.batch}x3x32x32, {args.rounds} rounds, "
        "medians"
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(device)
    variants = runners(model, x, y)
    names = list(variants)
    base_key, ours = names[0], names[1]

    # warm-up, and every engine must give the same Hv
    outs = {k: fn() for k, fn in variants.items()}
    scale = max(t.abs().max().item() for t in outs[ours])
    diff = max(
        (a - b).abs().max().item()
        for k in names[2:]
        for a, b in zip(outs[ours], outs[k], strict=True)
    )

    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.rounds):
        for key in names if r % 2 == 0 else names[::-1]:  # alternate the order too
            times[key].append(timed(variants[key], device, clock))

    print(f"{base_key:<38} {statistics.median(times[base_key]) * 1e3:8.1f} ms")
    ratio = {}
    for key in names[1:]:
        # Median of per-round ratios: each round's variants run back to back, so load that
        # drifts over seconds on a shared machine cancels within a round.
        ratios = sorted(v / t for v, t in zip(times[key], times[base_key], strict=True))
        ratio[key] = statistics.median(ratios)
        q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
        print(
            f"{key:<38} {statistics.median(times[key]) * 1e3:8.1f} ms   "
            f"ratio {ratio[key]:.3f} (quartiles {q1:.3f}-{q3:.3f})"
        )
    met = "met" if ratio[ours] <= TARGET else "NOT met"
    print(
        f"HVP / gradient: {ratio[ours]:.3f} (target <= {TARGET}: {met}); references "
        f"{', '.join(f'{ratio[k]:.3f}' for k in names[2:])}; engines agree to "
        f"{diff / scale:.1e} (max |difference| / max |Hv|)"
    )


if __name__ == "__main__":
    main()
