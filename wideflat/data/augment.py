"""Batch augmentation on the batch's device: random crop with zero padding, flip, Cutout,
Fast AutoAugment.

Every operation works on a whole N×C×H×W batch with tensor ops (no per-image Python loop) and
draws its randomness from an explicit ``torch.Generator`` on the batch's device, so a seed
fixes the result. Each op is split into a *sampler* (draws the per-image parameters) and an
*apply* function (deterministic given them), which is what the tests check against a
per-image reference.

The standard recipe (the paper's CIFAR preprocessing, appendix C): random crop with 4 pixels
of zero padding (8 for Tiny ImageNet) and horizontal flip on pixels in [0, 1]; then
normalization by the training mean/std; then optional Cutout, whose zeroed square then equals
the mean pixel (as in DeVries & Taylor's code, where Cutout follows ``Normalize``).

AutoAugment: torchvision's learned policies (optional torchvision), or Fast AutoAugment's
published ImageNet policy (``"fast-imagenet"``, the paper's Tiny ImageNet recipe), which is
re-implemented in pure torch, op for op, from kakaobrain/fast-autoaugment
(:mod:`~wideflat.data.fast_autoaugment`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from wideflat import _validate as check
from wideflat._optional import import_optional

__all__ = [
    "AUTOAUGMENT_POLICIES",
    "FAST_AUTOAUGMENT_POLICIES",
    "Augment",
    "apply_crop",
    "apply_cutout",
    "apply_flip",
    "autoaugment",
    "channel_stats",
    "cutout",
    "normalize",
    "random_crop",
    "random_flip",
    "sample_crop_offsets",
    "sample_cutout_centers",
    "sample_flips",
]


def _check_batch(x: torch.Tensor, fn: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(
            f"{fn}: expected an N×C×H×W tensor, got "
            f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}"
        )


def _check_generator(gen: torch.Generator, x: torch.Tensor, fn: str) -> None:
    if not isinstance(gen, torch.Generator):
        raise TypeError(f"{fn}: generator must be a torch.Generator, got {type(gen).__name__}")
    if gen.device.type != x.device.type:
        raise ValueError(
            f"{fn}: generator is on {gen.device} but the batch is on {x.device}; create it "
            f"with torch.Generator(device={str(x.device)!r})"
        )


def _check_size(value: int, name: str, fn: str, low: int = 0) -> None:
    check.integer(name, value, minimum=low, numpy=False, context=fn)


# --- crop ---------------------------------------------------------------------------------


def sample_crop_offsets(
    n: int, padding: int, generator: torch.Generator, device: torch.device | str | None = None
) -> torch.Tensor:
    """Draw (dy, dx) offsets in ``[0, 2·padding]`` for ``n`` images: an n×2 int64 tensor.

    Example:
        >>> import torch
        >>> off = sample_crop_offsets(5, 4, torch.Generator().manual_seed(0))
        >>> off.shape, bool(((off >= 0) & (off <= 8)).all())
        (torch.Size([5, 2]), True)
    """
    _check_size(n, "n", "sample_crop_offsets")
    _check_size(padding, "padding", "sample_crop_offsets")
    device = generator.device if device is None else torch.device(device)
    return torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=device)


def apply_crop(x: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """Zero-pad each image by ``padding`` and cut the H×W window at ``offsets`` (dy, dx).

    ``offsets = (padding, padding)`` returns the image unchanged.

    Example:
        >>> import torch
        >>> x = torch.arange(4.0).view(1, 1, 2, 2)
        >>> apply_crop(x, 1, torch.tensor([[0, 0]]))[0, 0].tolist()
        [[0.0, 0.0], [0.0, 0.0]]
    """
    _check_batch(x, "apply_crop")
    _check_size(padding, "padding", "apply_crop")
    n, c, h, w = x.shape
    if offsets.shape != (n, 2):
        raise ValueError(f"apply_crop: offsets must be {n}×2, got {tuple(offsets.shape)}")
    if padding == 0:
        return x.clone()
    offsets = offsets.to(device=x.device, dtype=torch.int64)
    if bool(((offsets < 0) | (offsets > 2 * padding)).any()):
        raise ValueError(f"apply_crop: offsets must lie in [0, {2 * padding}]")
    padded = F.pad(x, (padding, padding, padding, padding))  # zeros
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)  # n×h
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)  # n×w
    # Gather out[i, :, r, s] = padded[i, :, rows[i, r], cols[i, s]] with broadcast indices.
    ni = torch.arange(n, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[ni, ci, rows[:, None, :, None], cols[:, None, None, :]]


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop of each image after zero padding by ``padding`` pixels (shape kept).

    Example:
        >>> import torch
        >>> x = torch.rand(8, 3, 32, 32)
        >>> random_crop(x, 4, torch.Generator().manual_seed(0)).shape
        torch.Size([8, 3, 32, 32])
    """
    _check_batch(x, "random_crop")
    _check_generator(generator, x, "random_crop")
    return apply_crop(x, padding, sample_crop_offsets(x.shape[0], padding, generator, x.device))


# --- flip ---------------------------------------------------------------------------------


def sample_flips(
    n: int, generator: torch.Generator, p: float = 0.5, device: torch.device | str | None = None
) -> torch.Tensor:
    """Draw a bool mask of length ``n``: True where the image is flipped (probability ``p``).

    Example:
        >>> import torch
        >>> sample_flips(4, torch.Generator().manual_seed(0), p=1.0).tolist()
        [True, True, True, True]
    """
    _check_size(n, "n", "sample_flips")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"sample_flips: invalid p: {p!r} (need 0 <= p <= 1)")
    device = generator.device if device is None else torch.device(device)
    return torch.rand(n, generator=generator, device=device) < p


def apply_flip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror (left-right) the images where ``mask`` is True.

    Example:
        >>> import torch
        >>> x = torch.tensor([[[[1.0, 2.0]]]])
        >>> apply_flip(x, torch.tensor([True]))[0, 0, 0].tolist()
        [2.0, 1.0]
    """
    _check_batch(x, "apply_flip")
    if mask.shape != (x.shape[0],) or mask.dtype != torch.bool:
        raise ValueError(f"apply_flip: mask must be a bool tensor of length {x.shape[0]}")
    return torch.where(mask.to(x.device)[:, None, None, None], x.flip(-1), x)


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Horizontal flip of each image with probability ``p``.

    Example:
        >>> import torch
        >>> random_flip(torch.rand(4, 1, 5, 5), torch.Generator().manual_seed(0)).shape
        torch.Size([4, 1, 5, 5])
    """
    _check_batch(x, "random_flip")
    _check_generator(generator, x, "random_flip")
    return apply_flip(x, sample_flips(x.shape[0], generator, p, x.device))


# --- cutout -------------------------------------------------------------------------------


def sample_cutout_centers(
    n: int,
    height: int,
    width: int,
    generator: torch.Generator,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw (cy, cx) centres uniformly over the image for ``n`` images: n×2 int64.

    Example:
        >>> import torch
        >>> sample_cutout_centers(3, 32, 32, torch.Generator().manual_seed(0)).shape
        torch.Size([3, 2])
    """
    _check_size(n, "n", "sample_cutout_centers")
    _check_size(height, "height", "sample_cutout_centers", 1)
    _check_size(width, "width", "sample_cutout_centers", 1)
    device = generator.device if device is None else torch.device(device)
    cy = torch.randint(0, height, (n, 1), generator=generator, device=device)
    cx = torch.randint(0, width, (n, 1), generator=generator, device=device)
    return torch.cat([cy, cx], dim=1)


def apply_cutout(x: torch.Tensor, size: int, centers: torch.Tensor) -> torch.Tensor:
    """Zero a ``size``×``size`` square centred at ``centers`` (clipped at the borders).

    The square covers rows ``[cy − size//2, cy − size//2 + size)`` and likewise columns,
    intersected with the image (DeVries & Taylor, 2017).

    Example:
        >>> import torch
        >>> y = apply_cutout(torch.ones(1, 1, 4, 4), 2, torch.tensor([[0, 0]]))
        >>> int(y.sum())
        15
    """
    _check_batch(x, "apply_cutout")
    _check_size(size, "size", "apply_cutout")
    n, _, h, w = x.shape
    if centers.shape != (n, 2):
        raise ValueError(f"apply_cutout: centers must be {n}×2, got {tuple(centers.shape)}")
    if size == 0:
        return x.clone()
    centers = centers.to(device=x.device, dtype=torch.int64)
    top = centers[:, 0:1] - size // 2
    left = centers[:, 1:2] - size // 2
    r = torch.arange(h, device=x.device)
    s = torch.arange(w, device=x.device)
    in_rows = (r >= top) & (r < top + size)  # n×h
    in_cols = (s >= left) & (s < left + size)  # n×w
    hole = in_rows[:, None, :, None] & in_cols[:, None, None, :]
    return x.masked_fill(hole, 0)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Cutout: zero one random ``size``×``size`` square per image.

    Example:
        >>> import torch
        >>> y = cutout(torch.ones(2, 3, 8, 8), 4, torch.Generator().manual_seed(0))
        >>> y.shape, bool((y == 0).any())
        (torch.Size([2, 3, 8, 8]), True)
    """
    _check_batch(x, "cutout")
    _check_generator(generator, x, "cutout")
    n, _, h, w = x.shape
    return apply_cutout(x, size, sample_cutout_centers(n, h, w, generator, x.device))


# --- normalization ------------------------------------------------------------------------


def channel_stats(images: torch.Tensor, *, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of a training set (pixels scaled to [0, 1] if uint8).

    Accumulates in float64 over chunks, so a 50000×3×32×32 uint8 set needs no float copy.
    Grey images N×H×W are treated as one channel.

    Returns:
        ``(mean, std)``, float32 tensors of shape (C,) (population std).

    Example:
        >>> import torch
        >>> m, s = channel_stats(torch.tensor([[[[0, 255]]]], dtype=torch.uint8))
        >>> m.tolist(), s.tolist()
        ([0.5], [0.5])
    """
    if not isinstance(images, torch.Tensor) or images.ndim not in (3, 4) or images.shape[0] == 0:
        raise ValueError(
            "channel_stats: expected a non-empty N×H×W or N×C×H×W tensor, got "
            f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}"
        )
    x4 = images[:, None] if images.ndim == 3 else images
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    c = x4.shape[1]
    total = torch.zeros(c, dtype=torch.float64, device=images.device)
    total_sq = torch.zeros_like(total)
    for start in range(0, x4.shape[0], chunk):
        part = x4[start : start + chunk].to(torch.float64) / scale
        total += part.sum(dim=(0, 2, 3))
        total_sq += part.square().sum(dim=(0, 2, 3))
    count = x4.shape[0] * x4.shape[2] * x4.shape[3]
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0)
    return mean.to(torch.float32), var.sqrt().to(torch.float32)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x − mean) / std`` per channel (dim 1) for an N×C×H×W float batch.

    Example:
        >>> import torch
        >>> mean, std = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 2.0])
        >>> normalize(torch.ones(1, 2, 1, 1), mean, std).flatten().tolist()
        [0.0, 0.5]
    """
    _check_batch(x, "normalize")
    if not x.is_floating_point():
        raise ValueError(f"normalize: expected a float batch, got {x.dtype}")
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(-1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(-1)
    if mean.numel() != x.shape[1] or std.numel() != x.shape[1]:
        raise ValueError(
            f"normalize: mean/std have {mean.numel()}/{std.numel()} entries, batch has "
            f"{x.shape[1]} channels"
        )
    if bool((std <= 0).any()):
        raise ValueError(f"normalize: std must be positive, got {std.tolist()}")
    return (x - mean[:, None, None]) / std[:, None, None]


TORCHVISION_POLICIES = ("cifar10", "imagenet", "svhn")
FAST_AUTOAUGMENT_POLICIES = ("fast-imagenet",)
AUTOAUGMENT_POLICIES = TORCHVISION_POLICIES + FAST_AUTOAUGMENT_POLICIES


def autoaugment(policy: str) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """An AutoAugment-style policy as a batch transform ``f(x, generator)``.

    ``"cifar10"``, ``"imagenet"``, ``"svhn"``: torchvision's AutoAugment (Cubuk et al., 2019)
    with its learned policies. Needs the optional torchvision (``pip install
    'wideflat[vision]'``). AutoAugment picks a sub-policy per image, so unlike the other steps
    here it loops over the images; its random draws come from a seed taken from ``generator``
    (reproducible, the global RNG untouched).

    ``"fast-imagenet"``: Fast AutoAugment's published ImageNet policy, in pure torch on the
    batch's device (:func:`fast_autoaugment`; no torchvision needed).

    Both work on float batches in [0, 1] (quantized to 8 bits, as the policies expect).

    Args:
        policy: one of :data:`AUTOAUGMENT_POLICIES`.

    Raises:
        ValueError: an unknown policy name.
    """
    if policy not in AUTOAUGMENT_POLICIES:
        raise ValueError(
            f"Invalid autoaugment policy: {policy!r} (expected one of {AUTOAUGMENT_POLICIES})"
        )
    if policy in FAST_AUTOAUGMENT_POLICIES:
        from .fast_autoaugment import fast_autoaugment  # its table is large: load on use

        return fast_autoaugment(policy)
    transforms = import_optional("torchvision.transforms", "AutoAugment")
    op = transforms.AutoAugment(getattr(transforms.AutoAugmentPolicy, policy.upper()))

    def apply(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        devices = [x.device.index] if x.device.type == "cuda" else []
        images = (x * 255).round().clamp(0, 255).to(torch.uint8)
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = torch.stack([op(image) for image in images])
        return out.to(x.dtype) / 255.0

    return apply


@dataclass(frozen=True)
class Augment:
    """The standard batch recipe: crop (zero padding) → flip → AutoAugment → normalize → Cutout.

    Calling it on a float batch in [0, 1] (or a uint8 batch, converted first) returns the
    augmented, normalized float batch. Each step is skipped when switched off. A Fast
    AutoAugment policy (``"fast-imagenet"``) runs first, on the uncropped image, as the
    source inserts it at the head of its training transform (``data.py``,
    ``transform_train.transforms.insert(0, Augmentation(...))``).

    Attributes:
        padding: zero padding of the random crop (4 for CIFAR, 8 for Tiny ImageNet; 0 = off).
        flip: random horizontal flip with probability 1/2.
        autoaugment: a policy of :data:`AUTOAUGMENT_POLICIES` ("" = off): torchvision's
            AutoAugment ("cifar10", "imagenet", "svhn"; needs torchvision) or Fast
            AutoAugment's published ImageNet policy ("fast-imagenet", pure torch).
        cutout: side of the Cutout square (0 = off).
        mean: per-channel mean for normalization (None = no normalization).
        std: per-channel std.

    Example:
        >>> import torch
        >>> aug = Augment(padding=4, flip=True, cutout=8, mean=(0.5, 0.5, 0.5), std=(0.25,) * 3)
        >>> aug(torch.rand(16, 3, 32, 32), torch.Generator().manual_seed(0)).shape
        torch.Size([16, 3, 32, 32])
    """

    padding: int = 4  # pixels
    flip: bool = True
    autoaugment: str = ""  # "cifar10" | "imagenet" | "svhn" | "fast-imagenet"; "" = off
    cutout: int = 0  # pixels; 0 = off
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None

    def __post_init__(self) -> None:
        _check_size(self.padding, "padding", "Augment")
        _check_size(self.cutout, "cutout", "Augment")
        if (self.mean is None) != (self.std is None):
            raise ValueError("Augment: give both mean and std, or neither")
        if self.std is not None and any(float(s) <= 0 for s in self.std):
            raise ValueError(f"Augment: std must be positive, got {tuple(self.std)}")
        if self.mean is not None:
            object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
            object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        policy = autoaugment(self.autoaugment) if self.autoaugment else None
        object.__setattr__(self, "_autoaugment", policy)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_batch(x, "Augment")
        _check_generator(generator, x, "Augment")
        if x.dtype == torch.uint8:
            x = x.to(torch.float32) / 255.0
        fast = self.autoaugment in FAST_AUTOAUGMENT_POLICIES
        if self._autoaugment is not None and fast:
            x = self._autoaugment(x, generator)
        if self.padding:
            x = random_crop(x, self.padding, generator)
        if self.flip:
            x = random_flip(x, generator)
        if self._autoaugment is not None and not fast:
            x = self._autoaugment(x, generator)
        if self.mean is not None:
            x = normalize(x, torch.tensor(self.mean), torch.tensor(self.std))
        if self.cutout:
            x = cutout(x, self.cutout, generator)
        return x
