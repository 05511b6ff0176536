"""Fast AutoAugment's published ImageNet policy as a batch transform, in pure torch.

The paper's Tiny ImageNet rows train with "Fast-AutoAugment with the policies found on
ImageNet (Lim et al., 2019)". This module re-implements that policy op for op from the
authors' code; :func:`~wideflat.data.augment.autoaugment` (``"fast-imagenet"``) and
:class:`~wideflat.data.augment.Augment` use it. See the source notes below.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from .augment import FAST_AUTOAUGMENT_POLICIES, _check_batch, _check_generator, _check_size

__all__ = [
    "FAST_AUTOAUGMENT_OPS",
    "FastAutoAugmentDraws",
    "apply_fast_autoaugment",
    "fast_autoaugment",
    "fast_autoaugment_op",
    "fast_autoaugment_policy",
    "sample_fast_autoaugment",
]


# --- Fast AutoAugment ---------------------------------------------------------------------
#
# Source: kakaobrain/fast-autoaugment at commit 2424224291616a2158a2265069ee95a78a2d13d9
# (Lim et al., 2019). The policy table is `FastAutoAugment/archive.py: fa_resnet50_rimagenet()`
# (the one `data.py` inserts for `--aug fa_reduced_imagenet`); the ops, their ranges and the
# level map `v = level · (high − low) + low` are `FastAutoAugment/augmentations.py`
# (`augment_list`, `apply_augment`); the per-image sub-policy choice is `data.py: Augmentation`.
# The ops there are PIL calls on 8-bit RGB images; each one below re-implements Pillow's
# arithmetic on uint8 N×3×H×W tensors, as the comments say, and matches Pillow 13.0 bit for
# bit (tests/data/test_fast_autoaugment.py checks it where Pillow is installed).

# (name, low, high) in the order of augmentations.py's augment_list(for_autoaug=False).
FAST_AUTOAUGMENT_OPS = (
    ("ShearX", -0.3, 0.3),
    ("ShearY", -0.3, 0.3),
    ("TranslateX", -0.45, 0.45),
    ("TranslateY", -0.45, 0.45),
    ("Rotate", -30, 30),
    ("AutoContrast", 0, 1),
    ("Invert", 0, 1),
    ("Equalize", 0, 1),
    ("Solarize", 0, 256),
    ("Posterize", 4, 8),
    ("Contrast", 0.1, 1.9),
    ("Color", 0.1, 1.9),
    ("Brightness", 0.1, 1.9),
    ("Sharpness", 0.1, 1.9),
    ("Cutout", 0, 0.2),
)
_FA_INDEX = {name: i for i, (name, _, _) in enumerate(FAST_AUTOAUGMENT_OPS)}
# Ops whose value is negated with probability 1/2 (`random_mirror` in augmentations.py).
_FA_MIRRORED = frozenset(("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"))
_FA_CUTOUT_FILL = (125, 123, 114)  # CutoutAbs's rectangle colour


class FastAutoAugmentDraws(NamedTuple):
    """The random draws of one Fast AutoAugment batch (``n`` images, ``k`` ops per sub-policy).

    Attributes:
        subpolicy: (n,) int64, the sub-policy of each image (``random.choice``).
        uniform: (n, k) float64 in [0, 1): op j runs where ``uniform[:, j] <= prob``
            (the source skips it when ``random.random() > pr``).
        mirror: (n, k) bool: negate the value of a mirrored op (``random.random() > 0.5``).
        cutout: (n, k, 2) float64 in [0, 1): the (x, y) uniforms behind Cutout's
            ``np.random.uniform(w)``, ``np.random.uniform(h)``.
    """

    subpolicy: torch.Tensor
    uniform: torch.Tensor
    mirror: torch.Tensor
    cutout: torch.Tensor


@functools.cache
def fast_autoaugment_policy(
    policy: str = "fast-imagenet",
) -> tuple[tuple[tuple[str, float, float], ...], ...]:
    """The published Fast AutoAugment sub-policies: ``((name, prob, level), ...)`` per entry.

    ``"fast-imagenet"`` is ``fa_resnet50_rimagenet()`` of kakaobrain/fast-autoaugment
    (``FastAutoAugment/archive.py``, commit 2424224): 498 sub-policies of two ops each,
    searched with ResNet-50 on reduced ImageNet. Levels lie in [0, 1]; an op's value is
    ``level · (high − low) + low`` with ``(low, high)`` from :data:`FAST_AUTOAUGMENT_OPS`.

    Example:
        >>> table = fast_autoaugment_policy("fast-imagenet")
        >>> len(table), table[0][0]
        (498, ('ShearY', 0.14143816458479197, 0.513124791615952))
    """
    if policy not in FAST_AUTOAUGMENT_POLICIES:
        raise ValueError(
            f"Invalid Fast AutoAugment policy: {policy!r} "
            f"(expected one of {FAST_AUTOAUGMENT_POLICIES})"
        )
    subpolicies: dict[int, list[tuple[str, float, float]]] = {}
    for line in _FA_REDUCED_IMAGENET.strip().splitlines():
        index, name, prob, level = line.split()
        subpolicies.setdefault(int(index), []).append((name, float(prob), float(level)))
    return tuple(tuple(ops) for _, ops in sorted(subpolicies.items()))


FastPolicy = str | Sequence[Sequence[tuple[str, float, float]]]


def _policy_table(policy: FastPolicy) -> tuple[tuple[tuple[str, float, float], ...], ...]:
    """A policy name's table, or a given table of ``(name, prob, level)`` sub-policies,
    checked: known ops, prob and level in [0, 1], every sub-policy of the same length."""
    if isinstance(policy, str):
        return fast_autoaugment_policy(policy)
    try:
        table = tuple(tuple((str(o), float(p), float(lv)) for o, p, lv in sub) for sub in policy)
    except (TypeError, ValueError):
        raise ValueError(
            f"Invalid Fast AutoAugment policy: {policy!r} (expected a name or sub-policies of "
            "(name, prob, level) triples)"
        ) from None
    if not table or len({len(sub) for sub in table}) != 1 or not table[0]:
        raise ValueError(
            "Invalid Fast AutoAugment policy: expected a non-empty list of sub-policies, all "
            "with the same (non-zero) number of ops"
        )
    for sub in table:
        for op, prob, level in sub:
            if op not in _FA_INDEX:
                raise ValueError(
                    f"Invalid Fast AutoAugment op: {op!r} (expected one of {tuple(_FA_INDEX)})"
                )
            if not (0.0 <= prob <= 1.0 and 0.0 <= level <= 1.0):
                raise ValueError(
                    f"Invalid Fast AutoAugment op {(op, prob, level)!r}: prob and level must "
                    "lie in [0, 1]"
                )
    return table


def _check_images(images: torch.Tensor, fn: str) -> None:
    _check_batch(images, fn)
    if images.dtype != torch.uint8 or images.shape[1] != 3:
        raise ValueError(
            f"{fn}: expected a uint8 N×3×H×W batch (RGB), got {images.dtype} with "
            f"{images.shape[1]} channels"
        )


def _per_image(value: torch.Tensor | float, n: int, device: torch.device) -> torch.Tensor:
    v = torch.as_tensor(value, dtype=torch.float64, device=device)
    if v.ndim == 0:
        return v.expand(n)
    if v.shape != (n,):
        raise ValueError(f"fast_autoaugment_op: value must be a number or an ({n},) tensor")
    return v


def _affine_nearest(images: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """PIL ``Image.transform(size, AFFINE, (a, b, c, d, e, f))`` with NEAREST and black fill.

    Output pixel (x, y) takes input pixel ``⌊(a(x+½) + b(y+½) + c, d(x+½) + e(y+½) + f)⌋``
    (pixel centres), or 0 outside the image, computed as libImaging/Geometry.c does, so the
    pixels match bit for bit: with ``b = d = 0`` (translations) ``ImagingScaleAffine``'s
    float64 running sums ``x₀ = c + a/2, x₁ = x₀ + a, ...``; otherwise (shears, rotations)
    ``affine_fixed``'s 16.16 fixed point, ``FIX(v) = ⌊65536 v + ½⌋`` (the path PIL takes
    whenever the transformed corners lie within ±32768 pixels). ``coeffs`` is n×6 float64.
    """
    n, c, h, w = images.shape
    a, b, c0, d, e, f = coeffs.unbind(1)

    # ImagingScaleAffine: xin = COORD(xo), xo += a per column; likewise yo += e per row.
    def running(start: torch.Tensor, step: torch.Tensor, count: int) -> torch.Tensor:
        sums = [start]
        for _ in range(count - 1):
            sums.append(sums[-1] + step)
        coord = torch.stack(sums, dim=1)
        return torch.where(coord < 0, -1.0, coord.trunc()).to(torch.int64)  # COORD

    scale_x = running(c0 + a * 0.5, a, w)[:, None, :].expand(n, h, w)
    scale_y = running(f + e * 0.5, e, h)[:, :, None].expand(n, h, w)

    # affine_fixed: 16.16 fixed point, xx = a2 + y·a1 + x·a0 (exact integer running sums).
    def fix(v: torch.Tensor) -> torch.Tensor:
        return torch.floor(v * 65536.0 + 0.5).to(torch.int64)[:, None, None]

    a0, a1, a3, a4 = fix(a), fix(b), fix(d), fix(e)
    a2, a5 = fix(c0 + a * 0.5 + b * 0.5), fix(f + d * 0.5 + e * 0.5)
    xs = torch.arange(w, device=images.device)
    ys = torch.arange(h, device=images.device)[:, None]
    fixed_x = (a2 + ys * a1 + xs * a0) >> 16
    fixed_y = (a5 + ys * a4 + xs * a3) >> 16

    scaling = ((b == 0) & (d == 0))[:, None, None]
    xin = torch.where(scaling, scale_x, fixed_x)  # n×h×w
    yin = torch.where(scaling, scale_y, fixed_y)
    inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
    index = (yin.clamp(0, h - 1) * w + xin.clamp(0, w - 1)).reshape(n, 1, h * w)
    out = images.reshape(n, c, h * w).gather(2, index.expand(n, c, h * w)).reshape(n, c, h, w)
    return out.masked_fill(~inside[:, None], 0)


def _gray(images: torch.Tensor) -> torch.Tensor:
    """PIL ``convert("L")``: ``(19595 R + 38470 G + 7471 B + 2¹⁵) >> 16`` (Convert.c, L24)."""
    rgb = images.to(torch.int64)
    return (rgb[:, 0] * 19595 + rgb[:, 1] * 38470 + rgb[:, 2] * 7471 + 0x8000) >> 16  # n×h×w


def _blend(degenerate: torch.Tensor, images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ``Image.blend(degenerate, image, factor)`` (``ImageEnhance``): float32
    ``in1 + factor·(in2 − in1)``, clipped to [0, 255] and truncated (libImaging/Blend.c)."""
    alpha = factor.to(torch.float32)[:, None, None, None]
    low = degenerate.to(torch.float32)
    out = low + alpha * (images.to(torch.float32) - low)
    return out.clamp(0, 255).trunc().to(torch.uint8)


def _smooth(images: torch.Tensor) -> torch.Tensor:
    """PIL ``ImageFilter.SMOOTH``: the 3×3 kernel (1 1 1; 1 5 1; 1 1 1)/13 in float32, rounded
    (``+ 0.5``, then truncated), the one-pixel border copied (libImaging/Filter.c)."""
    _, _, h, w = images.shape
    if h < 3 or w < 3:
        return images.clone()
    kernel = torch.tensor([1.0, 5.0], dtype=torch.float32, device=images.device) / 13.0
    k1, k5 = kernel[0], kernel[1]  # kernel / divisor, in float32 as PIL does
    p = images.to(torch.float32)

    def row(r: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:  # KERNEL1x3, in its order
        return r[..., :-2] * k1 + r[..., 1:-1] * centre + r[..., 2:] * k1

    ss = torch.full_like(p[:, :, 1:-1, 1:-1], 0.5)
    ss = ss + row(p[:, :, 2:], k1)  # row y + 1 first, as ImagingFilter3x3
    ss = ss + row(p[:, :, 1:-1], k5)
    ss = ss + row(p[:, :, :-2], k1)
    out = images.clone()
    out[:, :, 1:-1, 1:-1] = ss.clamp(0, 255).trunc().to(torch.uint8)
    return out


def _autocontrast(images: torch.Tensor) -> torch.Tensor:
    """PIL ``ImageOps.autocontrast`` (cutoff 0): per channel, ``int(v·s − lo·s)`` with
    ``s = 255/(hi − lo)``, clipped; a flat channel is left alone."""
    n, c, h, w = images.shape
    flat = images.reshape(n, c, h * w).to(torch.int64)
    lo = flat.amin(2, keepdim=True)
    hi = flat.amax(2, keepdim=True)
    # A tensor numerator: `255.0 / t` would run as 255·(1/t), which rounds differently.
    scale = torch.full_like(lo, 255, dtype=torch.float64) / (hi - lo).clamp_min(1)
    offset = (-lo).to(torch.float64) * scale
    stretched = (flat.to(torch.float64) * scale + offset).trunc().clamp(0, 255).to(torch.int64)
    return torch.where(hi > lo, stretched, flat).to(torch.uint8).reshape(n, c, h, w)


def _equalize(images: torch.Tensor) -> torch.Tensor:
    """PIL ``ImageOps.equalize``: per channel, with ``step = (count − count of the top
    value) // 255``, the LUT ``(step // 2 + #pixels below v) // step`` (identity if step = 0)."""
    n, c, h, w = images.shape
    flat = images.reshape(n * c, h * w).to(torch.int64)
    hist = torch.zeros(n * c, 256, dtype=torch.int64, device=images.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    top_count = hist.gather(1, flat.amax(1, keepdim=True))
    step = (h * w - top_count) // 255  # (n·c)×1
    below = hist.cumsum(1) - hist
    lut = ((step // 2 + below) // step.clamp_min(1)).clamp_max(255)
    lut = torch.where(step > 0, lut, torch.arange(256, device=images.device))
    return lut.gather(1, flat).to(torch.uint8).reshape(n, c, h, w)


def _cutout_abs(images: torch.Tensor, size: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """``CutoutAbs(img, size)``: a (125, 123, 114) square at a random place.

    The source draws the corner as ``np.random.uniform(w)``, i.e. ``uniform(low=w,
    high=1.0)``, a value in (1, w] (not [0, w)): ``x0 = int(max(0, x − size/2))``,
    ``x1 = min(w, x0 + size)``, and PIL's ``rectangle`` fills the pixels ``int(x0)..int(x1)``
    inclusive; likewise in y.
    """
    n, c, h, w = images.shape
    x = w + (1.0 - w) * uniform[:, 0]  # numpy: low + (high − low)·U
    y = h + (1.0 - h) * uniform[:, 1]
    x0 = (x - size / 2.0).clamp_min(0).trunc()
    y0 = (y - size / 2.0).clamp_min(0).trunc()
    x1 = torch.clamp(x0 + size, max=w).trunc()
    y1 = torch.clamp(y0 + size, max=h).trunc()
    cols = torch.arange(w, device=images.device, dtype=torch.float64)
    rows = torch.arange(h, device=images.device, dtype=torch.float64)
    in_cols = (cols >= x0[:, None]) & (cols <= x1[:, None])  # n×w
    in_rows = (rows >= y0[:, None]) & (rows <= y1[:, None])  # n×h
    hole = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
    fill = torch.tensor(_FA_CUTOUT_FILL, dtype=torch.uint8, device=images.device)
    return torch.where(hole, fill[None, :, None, None], images)


def fast_autoaugment_op(
    images: torch.Tensor,
    name: str,
    value: torch.Tensor | float,
    *,
    cutout_uniform: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply one Fast AutoAugment op, as ``augmentations.py`` defines it, to a uint8 batch.

    ``value`` is the op's argument ``v`` there (after the level map and the mirror sign), one
    per image or one for all: ShearX/Y ``v`` (PIL affine ``(1, v, 0, 0, 1, 0)`` /
    ``(1, 0, 0, v, 1, 0)``), TranslateX/Y a fraction of the width/height, Rotate degrees
    counter-clockwise about the centre (all NEAREST, black fill), Solarize the threshold
    (pixels ``>= v`` inverted), Posterize ``int(v)`` bits kept, Contrast/Color/Brightness/
    Sharpness the ``ImageEnhance`` factor, Cutout the side as a fraction of the width; it is
    ignored by AutoContrast, Invert and Equalize.

    Args:
        images: uint8 N×3×H×W (RGB).
        name: an op of :data:`FAST_AUTOAUGMENT_OPS`.
        value: a number or an (N,) tensor.
        cutout_uniform: for Cutout, the N×2 uniforms in [0, 1) that place the square.

    Returns:
        The transformed uint8 batch (a new tensor).

    Example:
        >>> import torch
        >>> x = torch.tensor([0, 100, 200, 255], dtype=torch.uint8).expand(1, 3, 1, 4)
        >>> fast_autoaugment_op(x, "Solarize", 128.0)[0, 0, 0].tolist()
        [0, 100, 55, 0]
    """
    _check_images(images, "fast_autoaugment_op")
    if name not in _FA_INDEX:
        raise ValueError(
            f"Invalid Fast AutoAugment op: {name!r} (expected one of {tuple(_FA_INDEX)})"
        )
    n, _, h, w = images.shape
    v = _per_image(value, n, images.device)
    if name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"):
        one, zero = torch.ones_like(v), torch.zeros_like(v)
        if name == "ShearX":
            coeffs = (one, v, zero, zero, one, zero)
        elif name == "ShearY":
            coeffs = (one, zero, zero, v, one, zero)
        elif name == "TranslateX":
            coeffs = (one, zero, v * w, zero, one, zero)
        elif name == "TranslateY":
            coeffs = (one, zero, zero, zero, one, v * h)
        else:  # Image.rotate: the inverse rotation about (w/2, h/2), entries rounded to 15 digits
            angle = -(v.remainder(360.0) * (math.pi / 180.0))
            cos, sin = torch.round(angle.cos(), decimals=15), torch.round(angle.sin(), decimals=15)
            cx, cy = w / 2, h / 2
            c0 = cos * -cx + sin * -cy + 0.0 + cx
            f = -sin * -cx + cos * -cy + 0.0 + cy
            coeffs = (cos, sin, c0, -sin, cos, f)
        return _affine_nearest(images, torch.stack(coeffs, dim=1))
    if name == "AutoContrast":
        return _autocontrast(images)
    if name == "Invert":
        return 255 - images
    if name == "Equalize":
        return _equalize(images)
    if name == "Solarize":  # lut[i] = i if i < v else 255 − i
        return torch.where(images.to(torch.float64) < v[:, None, None, None], images, 255 - images)
    if name == "Posterize":  # keep the int(v) high bits: i & ~(2^(8 − bits) − 1)
        bits = v.trunc().to(torch.int64)
        mask = 255 - ((1 << (8 - bits)) - 1)
        return (images.to(torch.int64) & mask[:, None, None, None]).to(torch.uint8)
    if name == "Contrast":  # blend with the image's rounded mean grey level
        mean = _gray(images).sum(dim=(1, 2)).to(torch.float64) / (h * w)  # ImageStat's mean
        grey = (mean + 0.5).trunc().to(torch.uint8)[:, None, None, None]
        return _blend(grey.expand_as(images), images, v)
    if name == "Color":  # blend with the image's own grey version
        return _blend(_gray(images)[:, None].expand_as(images), images, v)
    if name == "Brightness":  # blend with black
        return _blend(torch.zeros_like(images), images, v)
    if name == "Sharpness":  # blend with the SMOOTH-filtered image
        return _blend(_smooth(images), images, v)
    # Cutout(img, v): nothing for v <= 0, else CutoutAbs(img, v · width)
    if cutout_uniform is None or cutout_uniform.shape != (n, 2):
        raise ValueError(f"fast_autoaugment_op: Cutout needs cutout_uniform of shape ({n}, 2)")
    out = _cutout_abs(images, v * w, cutout_uniform.to(device=images.device, dtype=torch.float64))
    return torch.where((v > 0)[:, None, None, None], out, images)


def sample_fast_autoaugment(
    n: int,
    policy: FastPolicy,
    generator: torch.Generator,
    device: torch.device | str | None = None,
) -> FastAutoAugmentDraws:
    """Draw one batch's Fast AutoAugment randomness (see :class:`FastAutoAugmentDraws`).

    Example:
        >>> import torch
        >>> d = sample_fast_autoaugment(4, "fast-imagenet", torch.Generator().manual_seed(0))
        >>> d.subpolicy.shape, d.uniform.shape, d.cutout.shape
        (torch.Size([4]), torch.Size([4, 2]), torch.Size([4, 2, 2]))
    """
    _check_size(n, "n", "sample_fast_autoaugment")
    table = _policy_table(policy)
    k = len(table[0])
    device = generator.device if device is None else torch.device(device)
    kw = {"generator": generator, "device": device}
    subpolicy = torch.randint(0, len(table), (n,), **kw)
    uniform = torch.rand(n, k, dtype=torch.float64, **kw)
    mirror = torch.rand(n, k, dtype=torch.float64, **kw) > 0.5
    cutout = torch.rand(n, k, 2, dtype=torch.float64, **kw)
    return FastAutoAugmentDraws(subpolicy, uniform, mirror, cutout)


def apply_fast_autoaugment(
    images: torch.Tensor, policy: FastPolicy, draws: FastAutoAugmentDraws
) -> torch.Tensor:
    """Apply each image's sub-policy: its ops in order, op j where ``uniform[:, j] <= prob``,
    with value ``level · (high − low) + low``, negated where mirrored (a mirrored op only).

    Args:
        images: uint8 N×3×H×W (RGB).
        policy: a policy name or table (see :func:`fast_autoaugment`).
        draws: from :func:`sample_fast_autoaugment` for the same policy and N.

    Returns:
        The augmented uint8 batch (a new tensor).

    Example:
        >>> import torch
        >>> x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
        >>> d = sample_fast_autoaugment(4, "fast-imagenet", torch.Generator().manual_seed(0))
        >>> apply_fast_autoaugment(x, "fast-imagenet", d).shape
        torch.Size([4, 3, 8, 8])
    """
    _check_images(images, "apply_fast_autoaugment")
    table = _policy_table(policy)
    n, k = images.shape[0], len(table[0])
    shapes = (draws.subpolicy.shape, draws.uniform.shape, draws.mirror.shape, draws.cutout.shape)
    if shapes != ((n,), (n, k), (n, k), (n, k, 2)):
        raise ValueError(
            f"apply_fast_autoaugment: draws of shapes {[tuple(t) for t in shapes]} do not fit "
            f"{n} images and {k} ops per sub-policy"
        )
    if bool(((draws.subpolicy < 0) | (draws.subpolicy >= len(table))).any()):
        raise ValueError(
            f"apply_fast_autoaugment: sub-policy indices must lie in [0, {len(table)})"
        )
    device = images.device
    ops = torch.tensor([[_FA_INDEX[o[0]] for o in sub] for sub in table], device=device)
    probs = torch.tensor([[o[1] for o in sub] for sub in table], dtype=torch.float64)
    levels = torch.tensor([[o[2] for o in sub] for sub in table], dtype=torch.float64)
    chosen = draws.subpolicy.to(device)
    op, prob, level = ops[chosen], probs.to(device)[chosen], levels.to(device)[chosen]
    runs = draws.uniform.to(device) <= prob  # the source skips op j if random() > prob
    mirror, cutout = draws.mirror.to(device), draws.cutout.to(device)
    out = images.clone()
    for j in range(op.shape[1]):
        for t, (name, low, high) in enumerate(FAST_AUTOAUGMENT_OPS):
            sel = (runs[:, j] & (op[:, j] == t)).nonzero().squeeze(1)
            if sel.numel() == 0:
                continue
            value = level[sel, j] * (high - low) + low
            if name in _FA_MIRRORED:
                value = torch.where(mirror[sel, j], -value, value)
            out[sel] = fast_autoaugment_op(out[sel], name, value, cutout_uniform=cutout[sel, j])
    return out


def fast_autoaugment(
    policy: FastPolicy = "fast-imagenet",
) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """Fast AutoAugment (Lim et al., 2019) with a published policy, as ``f(x, generator)``.

    For each image, one sub-policy is chosen uniformly at random; its ops then run in order,
    each with its probability and magnitude, exactly as ``Augmentation`` in
    kakaobrain/fast-autoaugment's ``FastAutoAugment/data.py`` does (commit
    2424224291616a2158a2265069ee95a78a2d13d9): ``"fast-imagenet"`` is ``FastAutoAugment/
    archive.py: fa_resnet50_rimagenet()`` (``--aug fa_reduced_imagenet``, 498 sub-policies
    of 2 ops), the ops, their ranges and the level map ``FastAutoAugment/augmentations.py``
    (see :func:`fast_autoaugment_op`). Pure torch on the batch's device, whole batch at once
    (a loop over the ops, not the images); no torchvision needed.

    Works on float batches in [0, 1]: they are quantized to 8 bits (``round(255 x)``), as the
    PIL ops expect, and returned as ``uint8 / 255`` in the input dtype.

    Deviations from the source: the random numbers come from ``generator`` (same
    distributions, other streams) and are drawn for every image and op, used or not (an op
    runs where ``u <= prob``, as the source skips it where ``random() > prob``). The pixel
    arithmetic is current Pillow's (checked bit for bit against Pillow 13.0, including the
    NEAREST sampling, the fixed-point affine path and the rounding of ``ImageEnhance``);
    the Pillow of 2019 that the authors ran may differ in such rounding details. Cutout
    keeps the source's ``np.random.uniform(w)`` placement (a corner in (1, w], see
    :func:`_cutout_abs`) and fill (125, 123, 114). Images must be RGB. Only the policy is
    modelled: the rest of the source's ImageNet training transform (crop and bicubic resize
    to 224, ColorJitter 0.4, PCA lighting 0.1) is not; :class:`Augment` runs the policy
    first, then its own crop, flip, normalization and Cutout.

    Args:
        policy: one of :data:`FAST_AUTOAUGMENT_POLICIES`, or a table of sub-policies, each a
            sequence of ``(op name, probability, level)`` like :func:`fast_autoaugment_policy`'s.

    Returns:
        ``f(x, generator)``: an N×3×H×W float batch in [0, 1] → the augmented batch.

    Example:
        >>> import torch
        >>> f = fast_autoaugment("fast-imagenet")
        >>> y = f(torch.rand(4, 3, 16, 16), torch.Generator().manual_seed(0))
        >>> y.shape, y.dtype
        (torch.Size([4, 3, 16, 16]), torch.float32)

    References:
        Lim, Kim, Kim, Kim & Kim, "Fast AutoAugment", NeurIPS 2019 (arXiv:1905.00397).
    """
    policy = _policy_table(policy)  # validated once

    def apply(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_batch(x, "fast_autoaugment")
        _check_generator(generator, x, "fast_autoaugment")
        if not x.is_floating_point():
            raise ValueError(f"fast_autoaugment: expected a float batch in [0, 1], got {x.dtype}")
        images = (x * 255).round().clamp(0, 255).to(torch.uint8)
        _check_images(images, "fast_autoaugment")
        draws = sample_fast_autoaugment(x.shape[0], policy, generator, x.device)
        return apply_fast_autoaugment(images, policy, draws).to(x.dtype) / 255.0

    return apply


# kakaobrain/fast-autoaugment, FastAutoAugment/archive.py, fa_resnet50_rimagenet() at commit
# 2424224291616a2158a2265069ee95a78a2d13d9, copied digit for digit: one op per line,
# "sub-policy name probability level".
_FA_REDUCED_IMAGENET = """
  0 ShearY 0.14143816458479197 0.513124791615952
  0 Sharpness 0.9290316227291179 0.9788406212603302
  1 Color 0.21502874228385338 0.3698477943880306
  1 TranslateY 0.49865058747734736 0.4352676987103321
  2 Brightness 0.6603452126485386 0.6990174510500261
  2 Cutout 0.7742953773992511 0.8362550883640804
  3 Posterize 0.5188375788270497 0.9863648925446865
  3 TranslateY 0.8365230108655313 0.6000972236440252
  4 ShearY 0.9714994964711299 0.2563663552809896
  4 Equalize 0.8987567223581153 0.1181761775609772
  5 Sharpness 0.14346409304565366 0.5342189791746006
  5 Sharpness 0.1219714162835897 0.44746801278319975
  6 TranslateX 0.08089260772173967 0.028011721602479833
  6 TranslateX 0.34767877352421406 0.45131294688688794
  7 Brightness 0.9191164585327378 0.5143232242627864
  7 Color 0.9235247849934283 0.30604586249462173
  8 Contrast 0.4584173187505879 0.40314219914942756
  8 Rotate 0.550289356406774 0.38419022293237126
  9 Posterize 0.37046156420799325 0.052693291117634544
  9 Cutout 0.7597581409366909 0.7535799791937421
 10 Color 0.42583964114658746 0.6776641859552079
 10 ShearY 0.2864805671096011 0.07580175477739545
 11 Brightness 0.5065952125552232 0.5508640233704984
 11 Brightness 0.4760021616081475 0.3544313318097987
 12 Posterize 0.5169630851995185 0.9466018906715961
 12 Posterize 0.5390336503396841 0.1171015788193209
 13 Posterize 0.41153170909576176 0.7213063942615204
 13 Rotate 0.6232230424824348 0.7291984098675746
 14 Color 0.06704687234714028 0.5278429246040438
 14 Sharpness 0.9146652195810183 0.4581415618941407
 15 ShearX 0.22404644446773492 0.6508620171913467
 15 Brightness 0.06421961538672451 0.06859528721039095
 16 Rotate 0.29864103693134797 0.5244313199644495
 16 Sharpness 0.4006161706584276 0.5203708477368657
 17 AutoContrast 0.5748186910788027 0.8185482599354216
 17 Posterize 0.9571441684265188 0.1921474117448481
 18 ShearY 0.5214786760436251 0.8375629059785009
 18 Invert 0.6872393349333636 0.9307694335024579
 19 Contrast 0.47219838080793364 0.8228524484275648
 19 TranslateY 0.7435518856840543 0.5888865560614439
 20 Posterize 0.10773482839638836 0.6597021018893648
 20 Contrast 0.5218466423129691 0.562985661685268
 21 Rotate 0.4401753067886466 0.055198255925702475
 21 Rotate 0.3702153509335602 0.5821574425474759
 22 TranslateY 0.6714729117832363 0.7145542887432927
 22 Equalize 0.0023263758097700205 0.25837341854887885
 23 Cutout 0.3159707561240235 0.19539664199170742
 23 TranslateY 0.8702824829864558 0.5832348977243467
 24 AutoContrast 0.24800812729140026 0.08017301277245716
 24 Brightness 0.5775505849482201 0.4905904775616114
 25 Color 0.4143517886294533 0.8445937742921498
 25 ShearY 0.28688910858536587 0.17539366839474402
 26 Brightness 0.6341134194059947 0.43683815933640435
 26 Brightness 0.3362277685899835 0.4612826163288225
 27 Sharpness 0.4504035748829761 0.6698294470467474
 27 Posterize 0.9610055612671645 0.21070714173174876
 28 Posterize 0.19490421920029832 0.7235798208354267
 28 Rotate 0.8675551331308305 0.46335565746433094
 29 Color 0.35097958351003306 0.42199181561523186
 29 Invert 0.914112788087429 0.44775583211984815
 30 Cutout 0.223575616055454 0.6328591417299063
 30 TranslateY 0.09269465212259387 0.5101073959070608
 31 Rotate 0.3315734525975911 0.9983593458299167
 31 Sharpness 0.12245416662856974 0.6258689139914664
 32 ShearY 0.696116760180471 0.6317805202283014
 32 Color 0.847501151593963 0.4440116609830195
 33 Solarize 0.24945891607225948 0.7651150206105561
 33 Cutout 0.7229677092930331 0.12674657348602494
 34 TranslateX 0.43461945065713675 0.06476571036747841
 34 Color 0.6139316940180952 0.7376264330632316
 35 Invert 0.1933003530637138 0.4497819016184308
 35 Invert 0.18391634069983653 0.3199769100951113
 36 Color 0.20418296626476137 0.36785101882029814
 36 Posterize 0.624658293920083 0.8390081535735991
 37 Sharpness 0.5864963540530814 0.586672446690273
 37 Posterize 0.1980280647652339 0.222114611452575
 38 Invert 0.3543654961628104 0.5146369635250309
 38 Equalize 0.40751271919434434 0.4325310837291978
 39 ShearY 0.22602859359451877 0.13137880879778158
 39 Posterize 0.7475029061591305 0.803900538461099
 40 Sharpness 0.12426276165599924 0.5965912716602046
 40 Invert 0.22603903038966913 0.4346802001255868
 41 TranslateY 0.010307035630661765 0.16577665156754046
 41 Posterize 0.4114319141395257 0.829872913683949
 42 TranslateY 0.9353069865746215 0.5327821671247214
 42 Color 0.16990443486261103 0.38794866007484197
 43 Cutout 0.1028174322829021 0.3955952903458266
 43 ShearY 0.4311995281335693 0.48024695395374734
 44 Posterize 0.1800334334284686 0.0548749478418862
 44 Brightness 0.7545808536793187 0.7699080551646432
 45 Color 0.48695305373084197 0.6674269768464615
 45 ShearY 0.4306032279086781 0.06057690550239343
 46 Brightness 0.4919399683825053 0.677338905806407
 46 Brightness 0.24112708387760828 0.42761103121157656
 47 Posterize 0.4434818644882532 0.9489450593207714
 47 Posterize 0.40957675116385955 0.015664946759584186
 48 Posterize 0.41307949855153797 0.6843276552020272
 48 Rotate 0.8003545094091291 0.7002300783416026
 49 Color 0.7038570031770905 0.4697612983649519
 49 Sharpness 0.9700016496081002 0.25185103545948884
 50 AutoContrast 0.714641656154856 0.7962423001719023
 50 Sharpness 0.2410097684093468 0.5919171048019731
 51 TranslateX 0.8101567644494714 0.7156447005337443
 51 Solarize 0.5634727831229329 0.8875158446846
 52 Sharpness 0.5335258857303261 0.364743126378182
 52 Color 0.453280875871377 0.5621962714743068
 53 Cutout 0.7423678127672542 0.7726370777867049
 53 Invert 0.2806161382641934 0.6021111986900146
 54 TranslateY 0.15190341320343761 0.3860373175487939
 54 Cutout 0.9980805818665679 0.05332384819400854
 55 Posterize 0.36518675678786605 0.2935819027397963
 55 TranslateX 0.26586180351840005 0.303641300745208
 56 Brightness 0.19994509744377761 0.90813953707639
 56 Equalize 0.8447217761297836 0.3449396603478335
 57 Sharpness 0.9294773669936768 0.999713346583839
 57 Brightness 0.1359744825665662 0.1658489221872924
 58 TranslateX 0.11456529257659381 0.9063795878367734
 58 Equalize 0.017438134319894553 0.15776887259743755
 59 ShearX 0.9833726383270114 0.5688194948373335
 59 Equalize 0.04975615490994345 0.8078130016227757
 60 Brightness 0.2654654830488695 0.8989789725280538
 60 TranslateX 0.3681535065952329 0.36433345713161036
 61 Rotate 0.04956524209892327 0.5371942433238247
 61 ShearY 0.0005527499145153714 0.56082571605602
 62 Rotate 0.7918337108932019 0.5906896260060501
 62 Posterize 0.8223967034091191 0.450216998388943
 63 Color 0.43595106766978337 0.5253013785221605
 63 Sharpness 0.9169421073531799 0.8439997639348893
 64 TranslateY 0.20052300197155504 0.8202662448307549
 64 Sharpness 0.2875792108435686 0.6997181624527842
 65 Color 0.10568089980973616 0.3349467065132249
 65 Brightness 0.13070947282207768 0.5757725013960775
 66 AutoContrast 0.3749999712869779 0.6665578760607657
 66 Brightness 0.8101178402610292 0.23271946112218125
 67 Color 0.6473605933679651 0.7903409763232029
 67 ShearX 0.588080941572581 0.27223524148254086
 68 Cutout 0.46293361616697304 0.7107761001833921
 68 AutoContrast 0.3063766931658412 0.8026114219854579
 69 Brightness 0.7884854981520251 0.5503669863113797
 69 Brightness 0.5832456158675261 0.5840349298921661
 70 Solarize 0.4157539625058916 0.9161905834309929
 70 Sharpness 0.30628197221802017 0.5386291658995193
 71 Sharpness 0.03329610069672856 0.17066672983670506
 71 Invert 0.9900547302690527 0.6276238841220477
 72 Solarize 0.551015648982762 0.6937104775938737
 72 Color 0.8838491591064375 0.31596634380795385
 73 AutoContrast 0.16224182418148447 0.6068227969351896
 73 Sharpness 0.9599468096118623 0.4885289719905087
 74 TranslateY 0.06576432526133724 0.6899544605400214
 74 Posterize 0.2177096480169678 0.9949164789616582
 75 Solarize 0.529820544480292 0.7576047224165541
 75 Sharpness 0.027047878909321643 0.45425231553970685
 76 Sharpness 0.9102526010473146 0.8311987141993857
 76 Invert 0.5191838751826638 0.6906136644742229
 77 Solarize 0.4762773516008588 0.7703654263842423
 77 Color 0.8048437792602289 0.4741523094238038
 78 Sharpness 0.7095055508594206 0.7047344238075169
 78 Sharpness 0.5059623654132546 0.6127255499234886
 79 TranslateY 0.02150725921966186 0.3515764519224378
 79 Posterize 0.12482170119714735 0.7829851754051393
 80 Color 0.7983830079184816 0.6964694521670339
 80 Brightness 0.3666527856286296 0.16093151636495978
 81 AutoContrast 0.6724982375829505 0.536777706678488
 81 Sharpness 0.43091754837597646 0.7363240924241439
 82 Brightness 0.2889770401966227 0.4556557902380539
 82 Sharpness 0.8805303296690755 0.6262218017754902
 83 Sharpness 0.5341939854581068 0.6697109101429343
 83 Rotate 0.6806606655137529 0.4896914517968317
 84 Sharpness 0.5690509737059344 0.32790632371915096
 84 Posterize 0.7951894258661069 0.08377850335209162
 85 Color 0.6124132978216081 0.5756485920709012
 85 Brightness 0.33053544654445344 0.23321841707002083
 86 TranslateX 0.0654795026615917 0.5227246924310244
 86 ShearX 0.2932320531132063 0.6732066478183716
 87 Cutout 0.6226071187083615 0.01009274433736012
 87 ShearX 0.7176799968189801 0.3758780240463811
 88 Rotate 0.18172339508029314 0.18099184896819184
 88 ShearY 0.7862658331645667 0.295658135767252
 89 Contrast 0.4156099177015862 0.7015784500878446
 89 Sharpness 0.6454135310009 0.32335858947955287
 90 Color 0.6215885089922037 0.6882673235388836
 90 Brightness 0.3539881732605379 0.39486736455795496
 91 Invert 0.8164816716866418 0.7238192000817796
 91 Sharpness 0.3876355847343607 0.9870077619731956
 92 Brightness 0.1875628712629315 0.5068115936257
 92 Sharpness 0.8732419122060423 0.5028019258530066
 93 Sharpness 0.6140734993408259 0.6458239834366959
 93 Rotate 0.5250107862824867 0.533419456933602
 94 Sharpness 0.5710893143725344 0.15551651073007305
 94 ShearY 0.6548487860151722 0.021365083044319146
 95 Color 0.7610250354649954 0.9084452893074055
 95 Brightness 0.6934611792619156 0.4108071412071374
 96 ShearY 0.07512550098923898 0.32923768385754293
 96 ShearY 0.2559588911696498 0.7082337365398496
 97 Cutout 0.5401319018926146 0.004750568603408445
 97 ShearX 0.7473354415031975 0.34472481968368773
 98 Rotate 0.02284154583679092 0.1353450082435801
 98 ShearY 0.8192458031684238 0.2811653613473772
 99 Contrast 0.21142896718139154 0.7230739568811746
 99 Sharpness 0.6902690582665707 0.13488436112901683
100 Posterize 0.21701219600958138 0.5900695769640687
100 Rotate 0.7541095031505971 0.5341162375286219
101 Posterize 0.5772853064792737 0.45808311743269936
101 Brightness 0.14366050177823675 0.4644871239446629
102 Cutout 0.8951718842805059 0.4970074074310499
102 Equalize 0.3863835903119882 0.9986531042150006
103 Equalize 0.039411354473938925 0.7475477254908457
103 Sharpness 0.8741966378291861 0.7304822679596362
104 Solarize 0.4908704265218634 0.5160677350249471
104 Color 0.24961813832742435 0.09362352627360726
105 Rotate 7.870457075154214e-05 0.8086950025500952
105 Solarize 0.10200484521793163 0.12312889222989265
106 Contrast 0.8052564975559727 0.3403813036543645
106 Solarize 0.7690158533600184 0.8234626822018851
107 AutoContrast 0.680362728854513 0.9415320040873628
107 TranslateY 0.5305871824686941 0.8030609611614028
108 Cutout 0.1748050257378294 0.06565343731910589
108 TranslateX 0.1812738872339903 0.6254461448344308
109 Brightness 0.4230502644722749 0.3346463682905031
109 ShearX 0.19107198973659312 0.6715789128604919
110 ShearX 0.1706528684548394 0.7816570201200446
110 TranslateX 0.494545185948171 0.4710810058360291
111 TranslateX 0.42356251508933324 0.23865307292867322
111 TranslateX 0.24407503619326745 0.6013778508137331
112 AutoContrast 0.7719512185744232 0.3107905373009763
112 ShearY 0.49448082925617176 0.5777951230577671
113 Cutout 0.13026983827940525 0.30120438757485657
113 Brightness 0.8857896834516185 0.7731541459513939
114 AutoContrast 0.6422800349197934 0.38637401090264556
114 TranslateX 0.25085431400995084 0.3170642592664873
115 Sharpness 0.22336654455367122 0.4137774852324138
115 ShearY 0.22446851054920894 0.518341735882535
116 Color 0.2597579403253848 0.7289643913060193
116 Sharpness 0.5227416670468619 0.9239943674030637
117 Cutout 0.6835337711563527 0.24777620448593812
117 AutoContrast 0.37260245353051846 0.4840361183247263
118 Posterize 0.32756602788628375 0.21185124493743707
118 ShearX 0.25431504951763967 0.19585996561416225
119 AutoContrast 0.07930627591849979 0.5719381348340309
119 AutoContrast 0.335512380071304 0.4208050118308541
120 Rotate 0.2924360268257798 0.5317629242879337
120 Sharpness 0.4531050021499891 0.4102650087199528
121 Equalize 0.5908862210984079 0.468742362277498
121 Brightness 0.08571766548550425 0.5629320703375056
122 Cutout 0.52751122383816 0.7287774744737556
122 Equalize 0.28721628275296274 0.8075179887475786
123 AutoContrast 0.24208377391366226 0.34616549409607644
123 TranslateX 0.17454707403766834 0.5278055700078459
124 Brightness 0.5511881924749478 0.999638675514418
124 Equalize 0.14076197797220913 0.2573030693317552
125 ShearX 0.668731433926434 0.7564253049646743
125 Color 0.63235486543845 0.43954436063340785
126 ShearX 0.40511960873276237 0.5710419512142979
126 Contrast 0.9256769948746423 0.7461350716211649
127 Cutout 0.9995917204023061 0.22908419326246265
127 TranslateX 0.5440902956629469 0.9965570051216295
128 Color 0.22552987172228894 0.4514558960849747
128 Sharpness 0.638058150559443 0.9987829481002615
129 Contrast 0.5362775837534763 0.7052133185951871
129 ShearY 0.220369845547023 0.7593922994775721
130 ShearX 0.0317785822935219 0.775536785253455
130 TranslateX 0.7939510227015061 0.5355620618496535
131 Cutout 0.46027969917602196 0.31561199122527517
131 Color 0.06154066467629451 0.5384660000729091
132 Sharpness 0.7205483743301113 0.552222392539886
132 Posterize 0.5146496404711752 0.9224333144307473
133 ShearX 0.00014547730356910538 0.3553954298642108
133 TranslateY 0.9625736029090676 0.57403418640424
134 Posterize 0.9199917903297341 0.6690259107633706
134 Posterize 0.0932558110217602 0.22279303372106138
135 Invert 0.25401453476874863 0.3354329544078385
135 Posterize 0.1832673201325652 0.4304718799821412
136 TranslateY 0.02084122674367607 0.12826181437197323
136 ShearY 0.655862534043703 0.3838330909470975
137 Contrast 0.35231797644104523 0.3379356652070079
137 Cutout 0.19685599014304822 0.1254328595280942
138 Sharpness 0.18795594984191433 0.09488678946484895
138 ShearX 0.33332876790679306 0.633523782574133
139 Cutout 0.28267175940290246 0.7901991550267817
139 Contrast 0.021200195312951198 0.4733128702798515
140 ShearX 0.966231043411256 0.7700673327786812
140 TranslateX 0.7102390777763321 0.12161245817120675
141 Cutout 0.5183324259533826 0.30766086003013055
141 Color 0.48399078150128927 0.4967477809069189
142 Sharpness 0.8160855187385873 0.47937658961644
142 Posterize 0.46360395447862535 0.7685454058155061
143 ShearX 0.10173571421694395 0.3987290690178754
143 TranslateY 0.8939980277379345 0.5669994143735713
144 Posterize 0.6768089584801844 0.7113149244621721
144 Posterize 0.054896856043358935 0.3660837250743921
145 AutoContrast 0.5915576211896306 0.33607718177676493
145 Contrast 0.3809408206617828 0.5712201773913784
146 AutoContrast 0.012321347472748323 0.06379072432796573
146 Rotate 0.0017964439160045656 0.7598026295973337
147 Contrast 0.6007100085192627 0.36171972473370206
147 Invert 0.09553573684975913 0.12218510774295901
148 AutoContrast 0.32848604643836266 0.2619457656206414
148 Invert 0.27082113532501784 0.9967965642293485
149 AutoContrast 0.6156282120903395 0.9422706516080884
149 Sharpness 0.4215509247379262 0.4063347716503587
150 Solarize 0.25059210436331264 0.7215305521159305
150 Invert 0.1654465185253614 0.9605851884186778
151 AutoContrast 0.4464438610980994 0.685334175815482
151 Cutout 0.24358625461158645 0.4699066834058694
152 Rotate 0.5931657741857909 0.6813978655574067
152 AutoContrast 0.9259100547738681 0.4903201223870492
153 Color 0.8203976071280751 0.9777824466585101
153 Posterize 0.4620669369254169 0.2738895968716055
154 Contrast 0.13754352055786848 0.3369433962088463
154 Posterize 0.48371187792441916 0.025718004361451302
155 Rotate 0.5208233630704999 0.1760188899913535
155 TranslateX 0.49753461392937226 0.4142935276250922
156 Cutout 0.5967418240931212 0.8028675552639539
156 Cutout 0.20021854152659121 0.19426330549590076
157 ShearY 0.549583567386676 0.6601326640171705
157 Cutout 0.6111813470383047 0.4141935587984994
158 Brightness 0.6354891977535064 0.31591459747846745
158 AutoContrast 0.7853952208711621 0.6555861906702081
159 AutoContrast 0.7333725370546154 0.9919410576081586
159 Cutout 0.9984177877923588 0.2938253683694291
160 Color 0.33219296307742263 0.6378995578424113
160 AutoContrast 0.15432820754183288 0.7897899838932103
161 Contrast 0.5905289460222578 0.8158577207653422
161 Cutout 0.3980284381203051 0.43030531250317217
162 TranslateX 0.452093693346745 0.5251475931559115
162 Rotate 0.991422504871258 0.4556503729269001
163 Color 0.04560406292983776 0.061574671308480766
163 Brightness 0.05161079440128734 0.6718398142425688
164 Contrast 0.02913302416506853 0.14402056093217708
164 Rotate 0.7306930378774588 0.47088249057922094
165 Solarize 0.3283072384190169 0.82680847744367
165 Invert 0.21632614168418854 0.8792241691482687
166 Equalize 0.4860808352478527 0.9440534949023064
166 Cutout 0.31395897639184694 0.41805859306017523
167 Rotate 0.2816043232522335 0.5451282807926706
167 Color 0.7388520447173302 0.7706503658143311
168 Color 0.9342776719536201 0.9039981381514299
168 Rotate 0.6646389177840164 0.5147917008383647
169 Cutout 0.08929430082050335 0.22416445996932374
169 Posterize 0.454485751267457 0.500958345348237
170 TranslateX 0.14674201106374488 0.7018633472428202
170 Sharpness 0.6128796723832848 0.743535235614809
171 TranslateX 0.5189900164469432 0.6491132403587601
171 Contrast 0.26309555778227806 0.5976857969656114
172 Solarize 0.23569808291972655 0.3315781686591778
172 ShearY 0.07292078937544964 0.7460326987587573
173 ShearY 0.7090542757477153 0.5246437008439621
173 Sharpness 0.9666919148538443 0.4841687888767071
174 Solarize 0.3486952615189488 0.7012877201721799
174 Invert 0.1933387967311534 0.9535472742828175
175 AutoContrast 0.5393460721514914 0.6924005011697713
175 Cutout 0.16988156769247176 0.3667207571712882
176 Rotate 0.5815329514554719 0.5390406879316949
176 AutoContrast 0.7370538341589625 0.7708822194197815
177 Color 0.8463701017918459 0.9893491045831084
177 Invert 0.06537367901579016 0.5238468509941635
178 Contrast 0.8099771812443645 0.39371603893945184
178 Posterize 0.38273629875646487 0.46493786058573966
179 Color 0.11164686537114032 0.6771450570033168
179 Posterize 0.27921361289661406 0.7214300893597819
180 Contrast 0.5958265906571906 0.5963959447666958
180 Sharpness 0.2640889223630885 0.3365870842641453
181 Color 0.255634146724125 0.5610029792926452
181 ShearY 0.7476893976084721 0.36613194760395557
182 ShearX 0.2167581882130063 0.022978065071245002
182 TranslateX 0.1686864409720319 0.4919575435512007
183 Solarize 0.10702753776284957 0.3954707963684698
183 Contrast 0.7256100635368403 0.48845259655719686
184 Sharpness 0.6165615058519549 0.2624079463213861
184 ShearX 0.3804820351860919 0.4738994677544202
185 TranslateX 0.18066394808448177 0.8174509422318228
185 Solarize 0.07964569396290502 0.45495935736800974
186 Sharpness 0.2741884021129658 0.9311045302358317
186 Cutout 0.0009101326429323388 0.5932102256756948
187 Rotate 0.8501796375826188 0.5092564038282137
187 Brightness 0.6520146983999912 0.724091283316938
188 Brightness 0.10079744898900078 0.7644088017429471
188 AutoContrast 0.33540215138213575 0.1487538541758792
189 ShearY 0.10632545944757177 0.9565164562996977
189 Rotate 0.275833816849538 0.6200731548023757
190 Color 0.6749819274397422 0.41042188598168844
190 AutoContrast 0.22396590966461932 0.5048018491863738
191 Equalize 0.5044277111650255 0.2649182381110667
191 Brightness 0.35715133289571355 0.8653260893016869
192 Cutout 0.49083594426355326 0.5602781291093129
192 Posterize 0.721795488514384 0.5525847430754974
193 Sharpness 0.5081835448947317 0.7453323423804428
193 TranslateX 0.11511932212234266 0.4337766796030984
194 Solarize 0.3817050641766593 0.6879004573473403
194 Invert 0.0015041436267447528 0.9793134066888262
195 AutoContrast 0.5107410439697935 0.8276720355454423
195 Cutout 0.2786270701864015 0.43993387208414564
196 Rotate 0.6711202569428987 0.6342930903972932
196 Posterize 0.802820231163559 0.42770002619222053
197 Color 0.9426854321337312 0.9055431782458764
197 AutoContrast 0.3556422423506799 0.2773922428787449
198 Contrast 0.10318991257659992 0.30841372533347416
198 Posterize 0.4202264962677853 0.05060395018085634
199 Invert 0.549305630337048 0.886056156681853
199 Cutout 0.9314157033373055 0.3485836940307909
200 ShearX 0.5642891775895684 0.16427372934801418
200 Invert 0.228741164726475 0.5066345406806475
201 ShearY 0.5813123201003086 0.33474363490586106
201 Equalize 0.11803439432255824 0.8583936440614798
202 Sharpness 0.1642809706111211 0.6958675237301609
202 ShearY 0.5989560762277414 0.6194018060415276
203 Rotate 0.05092104774529638 0.9358045394527796
203 Cutout 0.6443254331615441 0.28548414658857657
204 Brightness 0.6986036769232594 0.9618046340942727
204 Sharpness 0.5564490243465492 0.6295231286085622
205 Brightness 0.42725649792574105 0.17628028916784244
205 Equalize 0.4425109360966546 0.6392872650036018
206 ShearY 0.5758622795525444 0.8773349286588288
206 ShearX 0.038525646435423666 0.8755366512394268
207 Sharpness 0.3704459924265827 0.9236361456197351
207 Color 0.6379842432311235 0.4548767717224531
208 Contrast 0.1619523824549347 0.4506528800882731
208 AutoContrast 0.34513874426188385 0.3580290330996726
209 Contrast 0.728699731513527 0.6932238009822878
209 Brightness 0.8602917375630352 0.5341445123280423
210 Equalize 0.3574552353044203 0.16814745124536548
210 Rotate 0.24191717169379262 0.3279497108179034
211 ShearY 0.8567478695576244 0.37746117240238164
211 ShearX 0.9654125389830487 0.9283047610798827
212 ShearY 0.4339052480582405 0.5394548246617406
212 Cutout 0.5070570647967001 0.7846286976687882
213 AutoContrast 0.021620100406875065 0.44425839772845227
213 AutoContrast 0.33978157614075183 0.47716564815092244
214 Contrast 0.9727600659025666 0.6651758819229426
214 Brightness 0.9893133904996626 0.39176397622636105
215 Equalize 0.283428620586305 0.18727922861893637
215 Rotate 0.3556063466797136 0.3722839913107821
216 ShearY 0.7276172841941864 0.4834188516302227
216 ShearX 0.010783217950465884 0.9756458772142235
217 ShearY 0.2901753295101581 0.5684700238749064
217 Cutout 0.655585564610337 0.9490071307790201
218 AutoContrast 0.008507193981450278 0.4881150103902877
218 AutoContrast 0.6561989723231185 0.3715071329838596
219 Contrast 0.7702505530948414 0.6961371266519999
219 Brightness 0.9953051630261895 0.3861962467326121
220 Equalize 0.2805270012472756 0.17715406116880994
220 Rotate 0.3111256593947474 0.15824352183820073
221 Brightness 0.9888680802094193 0.4856236485253163
221 ShearX 0.022370252047332284 0.9284975906226682
222 ShearY 0.4065719044318099 0.7468528006921563
222 AutoContrast 0.19494427109708126 0.8613186475174786
223 AutoContrast 0.023296727279367765 0.9170949567425306
223 AutoContrast 0.11663051100921168 0.7908646792175343
224 AutoContrast 0.7335191671571732 0.4958357308292425
224 Color 0.7964964008349845 0.4977687544324929
225 ShearX 0.19905221600021472 0.3033081933150046
225 Equalize 0.9383410219319321 0.3224669877230161
226 ShearX 0.8265450331466404 0.6509091423603757
226 Sharpness 0.7134181178748723 0.6472835976443643
227 ShearY 0.46962439525486044 0.223433110541722
227 Rotate 0.7749806946212373 0.5337060376916906
228 Posterize 0.1652499695106796 0.04860659068586126
228 Brightness 0.6644577712782511 0.4144528269429337
229 TranslateY 0.6220449565731829 0.4917495676722932
229 Posterize 0.6255000355409635 0.8374266890984867
230 AutoContrast 0.4887160797052227 0.7106426020530529
230 Sharpness 0.7684218571497236 0.43678474722954763
231 Invert 0.13178101535845366 0.8301141976359813
231 Color 0.002820877424219378 0.49444413062487075
232 TranslateX 0.9920683666478188 0.5862245842588877
232 Posterize 0.5536357075855376 0.5454300367281468
233 Brightness 0.8150181219663427 0.1411060258870707
233 Sharpness 0.8548823004164599 0.77008691072314
234 Brightness 0.9580478020413399 0.7198667636628974
234 ShearY 0.8431585033377366 0.38750016565010803
235 Solarize 0.2331505347152334 0.25754361489084787
235 TranslateY 0.447431373734262 0.5782399531772253
236 TranslateY 0.8904927998691309 0.25872872455072315
236 AutoContrast 0.7129888139716263 0.7161603231650524
237 ShearY 0.6336216800247362 0.5247508616674911
237 Cutout 0.9167315119726633 0.2060557387978919
238 ShearX 0.001661782345968199 0.3682225725445044
238 Solarize 0.12303352043754572 0.5014989548584458
239 Brightness 0.9723625105116246 0.6555444729681099
239 Contrast 0.5539208721135375 0.7819973409318487
240 Equalize 0.3262607499912611 0.0006745572802121513
240 Contrast 0.35341551623767103 0.36814689398886347
241 ShearY 0.7478539900243613 0.37322078030129185
241 TranslateX 0.41558847793529247 0.7394615158544118
242 Invert 0.13735541232529067 0.5536403864332143
242 Cutout 0.5109718190377135 0.0447509485253679
243 AutoContrast 0.09403602327274725 0.5909250807862687
243 ShearY 0.53234060616395 0.5316981359469398
244 ShearX 0.5651922367876323 0.6794110241313183
244 Posterize 0.7431624856363638 0.7896861463783287
245 Brightness 0.30949179379286806 0.7650569096019195
245 Sharpness 0.5461629122105034 0.6814369444005866
246 Sharpness 0.28459340191768434 0.7802208350806028
246 Rotate 0.15097973114238117 0.5259683294104645
247 ShearX 0.6430803693700531 0.9333735880102375
247 Contrast 0.7522209520030653 0.18831747966185058
248 Contrast 0.4219455937915647 0.29949769435499646
248 Color 0.6925322933509542 0.8095523885795443
249 ShearX 0.23553236193043048 0.17966207900468323
249 AutoContrast 0.9039700567886262 0.21983629944639108
250 ShearX 0.19256223146671514 0.31200739880443584
250 Sharpness 0.31962196883294713 0.6828107668550425
251 Cutout 0.5947690279080912 0.21728220253899178
251 Rotate 0.6757188879871141 0.489460599679474
252 ShearY 0.18365897125470526 0.3988571115918058
252 Brightness 0.7727489489504 0.4790369956329955
253 Contrast 0.7090301084131432 0.5178303607560537
253 ShearX 0.16749258277688506 0.33061773301592356
254 ShearX 0.3706690885419934 0.38510677124319415
254 AutoContrast 0.8288356276501032 0.16556487668770264
255 TranslateY 0.16758043046445614 0.30127092823893986
255 Brightness 0.5194636577132354 0.6225165310621702
256 Cutout 0.6087289363049726 0.10439287037803044
256 Rotate 0.7503452083033819 0.7425316019981433
257 ShearY 0.24347189588329932 0.5554979486672325
257 Brightness 0.9468115239174161 0.6132449358023568
258 Brightness 0.7144508395807994 0.4610594769966929
258 ShearX 0.16466683833092968 0.3382903812375781
259 Sharpness 0.27743648684265465 0.17200038071656915
259 Color 0.47404262107546236 0.7868991675614725
260 Sharpness 0.8603993513633618 0.324604728411791
260 TranslateX 0.3331597130403763 0.9369586812977804
261 Color 0.1535813630595832 0.4700116846558207
261 Color 0.5435647971896318 0.7639291483525243
262 Brightness 0.21486188101947656 0.039347277341450576
262 Cutout 0.7069526940684954 0.39273934115015696
263 ShearY 0.7267130888840517 0.6310800726389485
263 AutoContrast 0.662163190824139 0.31948540372237766
264 ShearX 0.5123132117185981 0.1981015909438834
264 AutoContrast 0.9009347363863067 0.26790399126924036
265 Brightness 0.24245061453231648 0.2673478678291436
265 ShearX 0.31707976089283946 0.6800582845544948
266 Cutout 0.9257780138367764 0.03972673526848819
266 Rotate 0.6807858944518548 0.46974332280612097
267 ShearY 0.1543443071262312 0.6051682587030671
267 Brightness 0.9758203119828304 0.4941406868162414
268 Contrast 0.07578049236491124 0.38953819133407647
268 ShearX 0.20194918288164293 0.4141510791947318
269 Color 0.27826402243792286 0.43517491081531157
269 AutoContrast 0.6159269026143263 0.2021846783488046
270 AutoContrast 0.5039377966534692 0.19241507605941105
270 Invert 0.5563931144385394 0.7069728937319112
271 Sharpness 0.19031632433810566 0.26310171056096743
271 Color 0.4724537593175573 0.6715201448387876
272 ShearY 0.2280910467786642 0.33340559088059313
272 ShearY 0.8858560034869303 0.2598627441471076
273 ShearY 0.07291814128021593 0.5819462692986321
273 Cutout 0.27605696060512147 0.9693427371868695
274 Posterize 0.4249871586563321 0.8256952014328607
274 Posterize 0.005907466926447169 0.8081353382152597
275 Brightness 0.9071305290601128 0.4781196213717954
275 Posterize 0.8996214311439275 0.5540717376630279
276 Brightness 0.06560728936236392 0.9920627849065685
276 TranslateX 0.04530789794044952 0.5318568944702607
277 TranslateX 0.6800263601084814 0.4611536772507228
277 Rotate 0.7245888375283157 0.0914772551375381
278 Sharpness 0.879556061897963 0.42272481462067535
278 TranslateX 0.4600350422524085 0.5742175429334919
279 AutoContrast 0.5005776243176145 0.22597121331684505
279 Invert 0.10763286370369299 0.6841782704962373
280 Sharpness 0.7422908472000116 0.6850324203882405
280 TranslateX 0.3832914614128403 0.34798646673324896
281 ShearY 0.31939465302679326 0.8792088167639516
281 Brightness 0.4093604352811235 0.21055483197261338
282 AutoContrast 0.7447595860998638 0.19280222555998586
282 TranslateY 0.317754779431227 0.9983454520593591
283 Equalize 0.27706973689750847 0.6447455020660622
283 Contrast 0.5626579126863761 0.7920049962776781
284 Rotate 0.13064369451773816 0.1495367590684905
284 Sharpness 0.24893941981801215 0.6295943894521504
285 ShearX 0.6856269993063254 0.5167938584189854
285 Sharpness 0.24835352574609537 0.9990550493102627
286 AutoContrast 0.461654115871693 0.43097388896245004
286 Cutout 0.366359682416437 0.08011826474215511
287 AutoContrast 0.993892672935951 0.2403608711236933
287 ShearX 0.6620817870694181 0.1744814077869482
288 ShearY 0.6396747719986443 0.15031017143644265
288 Brightness 0.9451954879495629 0.26490678840264714
289 Color 0.19311480787397262 0.15712300697448575
289 Posterize 0.05391448762015258 0.6943963643155474
290 Sharpness 0.6199669674684085 0.5412492335319072
290 Invert 0.14086213450149815 0.2611850277919339
291 Posterize 0.5533129268803405 0.5332478159319912
291 ShearX 0.48956244029096635 0.09223930853562916
292 ShearY 0.05871590849449765 0.19549715278943228
292 TranslateY 0.7208521362741379 0.36414003004659434
293 ShearY 0.7316263417917531 0.0629747985768501
293 Contrast 0.036359793501448245 0.48658745414898386
294 Rotate 0.3301497610942963 0.5686622043085637
294 ShearX 0.40581487555676843 0.5866127743850192
295 ShearX 0.6679039628249283 0.5292270693200821
295 Sharpness 0.25901391739310703 0.9778360586541461
296 AutoContrast 0.27373222012596854 0.14456771405730712
296 Contrast 0.3877220783523938 0.7965158941894336
297 Solarize 0.29440905483979096 0.06071633809388455
297 Equalize 0.5246736285116214 0.37575084834661976
298 TranslateY 0.2191269464520395 0.7444942293988484
298 Posterize 0.3840878524812771 0.31812671711741247
299 Solarize 0.25159267140731356 0.5833264622559661
299 Brightness 0.07552262572348738 0.33210648549288435
300 AutoContrast 0.9770099298399954 0.46421915310428197
300 AutoContrast 0.04707358934642503 0.24922048012183493
301 Cutout 0.5379685806621965 0.02038212605928355
301 Brightness 0.5900728303717965 0.28807872931416956
302 Sharpness 0.11596624872886108 0.6086947716949325
302 AutoContrast 0.34876470059667525 0.22707897759730578
303 Contrast 0.276545513135698 0.8822580384226156
303 Rotate 0.04874027684061846 0.6722214281612163
304 ShearY 0.595839851757025 0.4389866852785822
304 Equalize 0.5225492356128832 0.2735290854063459
305 Sharpness 0.9918029636732927 0.9919926583216121
305 Sharpness 0.03672376137997366 0.5563865980047012
306 AutoContrast 0.34169589759999847 0.16419911552645738
306 Invert 0.32995953043129234 0.15073174739720568
307 Posterize 0.04600255098477292 0.2632612790075844
307 TranslateY 0.7852153329831825 0.6990722310191976
308 AutoContrast 0.4414653815356372 0.2657468780017082
308 Posterize 0.30647061536763337 0.3688222724948656
309 Contrast 0.4239361091421837 0.6076562806342001
309 Cutout 0.5780707784165284 0.05361325256745192
310 Sharpness 0.7657895907855394 0.9842407321667671
310 Sharpness 0.5416352696151596 0.6773681575200902
311 AutoContrast 0.13967381098331305 0.10787258006315015
311 Posterize 0.5019536507897069 0.9881978222469807
312 Brightness 0.030528346448984903 0.31562058762552847
312 TranslateY 0.0843808140595676 0.21019213305350526
313 AutoContrast 0.6934579165006736 0.2530484168209199
313 Rotate 0.0005751408130693636 0.43790043943210005
314 TranslateX 0.611258547664328 0.25465240215894935
314 Sharpness 0.5001446909868196 0.36102204109889413
315 Contrast 0.8995127327150193 0.5493190695343996
315 Brightness 0.242708780669213 0.5461116653329015
316 AutoContrast 0.3751825351022747 0.16845985803896962
316 Cutout 0.25201103287363663 0.0005893331783358435
317 ShearX 0.1518985779435941 0.14768180777304504
317 Color 0.85133530274324 0.4006641163378305
318 TranslateX 0.5489668255504668 0.4694591826554948
318 Rotate 0.1917354490155893 0.39993269385802177
319 ShearY 0.6689267479532809 0.34304285013663577
319 Equalize 0.24133154048883143 0.279324043138247
320 Contrast 0.3412544002099494 0.20217358823930232
320 Color 0.8606984790510235 0.14305503544676373
321 Cutout 0.21656155695311988 0.5240101349572595
321 Brightness 0.14109877717636352 0.2016827341210295
322 Sharpness 0.24764371218833872 0.19655480259925423
322 Posterize 0.19460398862039913 0.4975414350200679
323 Brightness 0.6071850094982323 0.7270716448607151
323 Solarize 0.111786402398499 0.6325641684614275
324 Contrast 0.44772949532200856 0.44267502710695955
324 AutoContrast 0.360117506402693 0.2623958228760273
325 Sharpness 0.8888131688583053 0.936897400764746
325 Sharpness 0.16080674198274894 0.5681119841445879
326 AutoContrast 0.8004456226590612 0.1788600469525269
326 Brightness 0.24832285390647374 0.02755350284841604
327 ShearY 0.06910320102646594 0.26076407321544054
327 Contrast 0.8633703022354964 0.38968514704043056
328 AutoContrast 0.42306251382780613 0.6883260271268138
328 Rotate 0.3938724346852023 0.16740881249086037
329 Contrast 0.2725343884286728 0.6468194318074759
329 Sharpness 0.32238942646494745 0.6721149242783824
330 AutoContrast 0.942093919956842 0.14675331481712853
330 Posterize 0.5406276708262192 0.683901182218153
331 Cutout 0.5386811894643584 0.04498833938429728
331 Posterize 0.17007257321724775 0.45761177118620633
332 Contrast 0.13599408935104654 0.53282738083886
332 Solarize 0.26941667995081114 0.20958261079465895
333 Color 0.6600788518606634 0.9522228302165842
333 Invert 0.0542722262516899 0.5152431169321683
334 Contrast 0.5328934819727553 0.2376220512388278
334 Posterize 0.04890422575781711 0.3182233123739474
335 AutoContrast 0.9289628064340965 0.2976678437448435
335 Color 0.20936893798507963 0.9649612821434217
336 Cutout 0.9019423698575457 0.24002036989728096
336 Brightness 0.48734445615892974 0.047660899809176316
337 Sharpness 0.09347824275711591 0.01358686275590612
337 Posterize 0.9248539660538934 0.4064232632650468
338 Brightness 0.46575675383704634 0.6280194775484345
338 Invert 0.17276207634499413 0.21263495428839635
339 Brightness 0.7238014711679732 0.6178946027258592
339 Equalize 0.3815496086340364 0.07301281068847276
340 Contrast 0.754557393588416 0.895332753570098
340 Color 0.32709957750707447 0.8425486003491515
341 Rotate 0.43406698081696576 0.28628263254953723
341 TranslateY 0.43949548709125374 0.15927082198238685
342 Brightness 0.0015838339831640708 0.09341692553352654
342 AutoContrast 0.9113966907329718 0.8345900469751112
343 ShearY 0.46698796308585017 0.6150701348176804
343 Invert 0.14894062704815722 0.2778388046184728
344 Color 0.30360499169455957 0.995713092016834
344 Contrast 0.2597016288524961 0.8654420870658932
345 Brightness 0.9661642031891435 0.7322006407169436
345 TranslateY 0.4393502786333408 0.33934762664274265
346 Color 0.9323638351992302 0.912776309755293
346 Brightness 0.1618274755371618 0.23485741708056307
347 Color 0.2216470771158821 0.3359240197334976
347 Sharpness 0.6328691811471494 0.6298393874452548
348 Solarize 0.4772769142265505 0.7073470698713035
348 ShearY 0.2656114148206966 0.31343097010487253
349 Solarize 0.3839017339304234 0.5985505779429036
349 Equalize 0.002412059429196589 0.06637506181196245
350 Contrast 0.12751196553017863 0.46980311434237976
350 Sharpness 0.3467487455865491 0.4054907610444406
351 AutoContrast 0.9321813669127206 0.31328471589533274
351 Rotate 0.05801738717432747 0.36035756254444273
352 TranslateX 0.52092390458353 0.5261722561643886
352 Contrast 0.17836804476171306 0.39354333443158535
353 Posterize 0.5458100909925713 0.49447244994482603
353 Brightness 0.7372536822363605 0.5303409097463796
354 Solarize 0.1913974941725724 0.5582966653986761
354 Equalize 0.020733669175727026 0.9377467166472878
355 Equalize 0.16265732137763889 0.5206282340874929
355 Sharpness 0.2421533133595281 0.506389065871883
356 AutoContrast 0.9787324801448523 0.24815051941486466
356 Rotate 0.2423487151245957 0.6456493129745148
357 TranslateX 0.6809867726670327 0.6949687002397612
357 Contrast 0.16125673359747458 0.7582679978218987
358 Posterize 0.8212000950994955 0.5225012157831872
358 Brightness 0.8824891856626245 0.4499216779709508
359 Solarize 0.12061313332505218 0.5319371283368052
359 Equalize 0.04120865969945108 0.8179402157299602
360 Rotate 0.11278256686005855 0.4022686554165438
360 ShearX 0.2983451019112792 0.42782525461812604
361 ShearY 0.8847385513289983 0.5429227024179573
361 Rotate 0.21316428726607445 0.6712120087528564
362 TranslateX 0.46448081241068717 0.4746090648963252
362 Brightness 0.19973580961271142 0.49252862676553605
363 Posterize 0.49664100539481526 0.4460713166484651
363 Brightness 0.6629559985581529 0.35192346529003693
364 Color 0.22710733249173676 0.37943185764616194
364 ShearX 0.015809774971472595 0.8472080190835669
365 Contrast 0.4187366322381491 0.21621979869256666
365 AutoContrast 0.7631045030367304 0.44965231251615134
366 Sharpness 0.47240637876720515 0.8080091811749525
366 Cutout 0.2853425420104144 0.6669811510150936
367 Posterize 0.7830320527127324 0.2727062685529881
367 Solarize 0.527834000867504 0.20098218845222998
368 Contrast 0.366380535288225 0.39766001659663075
368 Cutout 0.8708808878088891 0.20669525734273086
369 ShearX 0.6815427281122932 0.6146858582671569
369 AutoContrast 0.28330622372053493 0.931352024154997
370 AutoContrast 0.8668174463154519 0.39961453880632863
370 AutoContrast 0.5718557712359253 0.6337062930797239
371 ShearY 0.8923152519411871 0.02480062504737446
371 Cutout 0.14954159341231515 0.1422219808492364
372 Rotate 0.3733718175355636 0.3861928572224287
372 Sharpness 0.5651126520194574 0.6091103847442831
373 Posterize 0.8891714191922857 0.29600154265251016
373 TranslateY 0.7865351723963945 0.5664998548985523
374 TranslateX 0.9298214806998273 0.729856565052017
374 AutoContrast 0.26349082482341846 0.9638882609038888
375 Sharpness 0.8387378377527128 0.42146721129032494
375 AutoContrast 0.9860522000876452 0.4200699464169384
376 ShearY 0.019609159303115145 0.37197835936879514
376 Cutout 0.22199340461754258 0.015932573201085848
377 Rotate 0.43871085583928443 0.3283504258860078
377 Sharpness 0.6077702068037776 0.6830305349618742
378 Contrast 0.6160211756538094 0.32029451083389626
378 Cutout 0.8037631428427006 0.4025688837399259
379 TranslateY 0.051637820936985435 0.6908417834391846
379 Sharpness 0.7602756948473368 0.4927111506643095
380 Rotate 0.4973618638052235 0.45931479729281227
380 TranslateY 0.04701789716427618 0.9408779705948676
381 Rotate 0.5214194592768602 0.8371249272013652
381 Solarize 0.17734812472813338 0.045020798970228315
382 ShearX 0.7457999920079351 0.19025612553075893
382 Sharpness 0.5994846101703786 0.5665094068864229
383 Contrast 0.6172655452900769 0.7811432139704904
383 Cutout 0.09915620454670282 0.3963692287596121
384 TranslateX 0.2650112299235817 0.7377261946165307
384 AutoContrast 0.5019539734059677 0.26905046992024506
385 Contrast 0.6646299821370135 0.41667784809592945
385 Cutout 0.9698457154992128 0.15429001887703997
386 Sharpness 0.9467079029475773 0.44906457469098204
386 Cutout 0.30036908747917396 0.4766149689663106
387 Equalize 0.6667517691051055 0.5014839828447363
387 Solarize 0.4127890336820831 0.9578274770236529
388 Cutout 0.6447384874120834 0.2868806107728985
388 Cutout 0.4800990488106021 0.4757538246206956
389 Solarize 0.12560195032363236 0.5557473475801568
389 Equalize 0.019957161871490228 0.5556797187823773
390 Contrast 0.12607637375759484 0.4300633627435161
390 Sharpness 0.3437273670109087 0.40493203127714417
391 AutoContrast 0.884353334807183 0.5880138314357569
391 Rotate 0.9846032404597116 0.3591877296622974
392 TranslateX 0.6862295865975581 0.5307482119690076
392 Contrast 0.19439251187251982 0.3999195825722808
393 Posterize 0.4187641835025246 0.5008988942651585
393 Brightness 0.6665805605402482 0.3853288204214253
394 Posterize 0.4507470690013903 0.4232437206624681
394 TranslateX 0.6054107416317659 0.38123828040922203
395 AutoContrast 0.29562338573283276 0.35608605102687474
395 TranslateX 0.909954785390274 0.20098894888066549
396 Contrast 0.6015278411777212 0.6049140992035096
396 Cutout 0.47178713636517855 0.5333747244651914
397 TranslateX 0.490851976691112 0.3829593925141144
397 Sharpness 0.2716675173824095 0.5131696240367152
398 Posterize 0.4190558294646337 0.39316689077269873
398 Rotate 0.5018526072725914 0.295712490156129
399 AutoContrast 0.29624715560691617 0.10937329832409388
399 Posterize 0.8770505275992637 0.43117765012206943
400 Rotate 0.6649970092751698 0.47767131373391974
400 ShearX 0.6257923540490786 0.6643337040198358
401 Sharpness 0.5553620705849509 0.8467799429696928
401 Cutout 0.9006185811918932 0.3537270716262
402 ShearY 0.0007619678283789788 0.9494591850536303
402 Invert 0.24267733654007673 0.7851608409575828
403 Contrast 0.9730916198112872 0.404670123321921
403 Sharpness 0.5923587793251186 0.7405792404430281
404 Cutout 0.07393909593373034 0.44569630026328344
404 TranslateX 0.2460593252211425 0.4817527814541055
405 Brightness 0.31058654119340867 0.7043749950260936
405 ShearX 0.7632161538947713 0.8043681264908555
406 AutoContrast 0.4352334371415373 0.6377550087204297
406 Rotate 0.2892714673415678 0.49521052050510556
407 Equalize 0.509071051375276 0.7352913414974414
407 ShearX 0.5099959429711828 0.7071566714593619
408 Posterize 0.9540506532512889 0.8498853304461906
408 ShearY 0.28199061357155397 0.3161715627214629
409 Posterize 0.6740855359097433 0.684004694936616
409 Posterize 0.6816720350737863 0.9654766942980918
410 Solarize 0.7149344531717328 0.42212789795181643
410 Brightness 0.686601460864528 0.4263050070610551
411 Cutout 0.49577164991501 0.08394890892056037
411 Rotate 0.5810369852730606 0.3320732965776973
412 TranslateY 0.1793755480490623 0.6006520265468684
412 Brightness 0.3769016576438939 0.7190746300828186
413 TranslateX 0.7226363597757153 0.3847027238123509
413 Brightness 0.7641713191794035 0.36234003077512544
414 TranslateY 0.1211227055347106 0.6693523474608023
414 Brightness 0.13011180247738063 0.5126647617294864
415 Equalize 0.1501070550869129 0.0038548909451806557
415 Posterize 0.8266535939653881 0.5502199643499207
416 Sharpness 0.550624117428359 0.2023044586648523
416 Brightness 0.06291556314780017 0.7832635398703937
417 Color 0.3701578205508141 0.9051537973590863
417 Contrast 0.5763972727739397 0.4905511239739898
418 Rotate 0.7678527224046323 0.6723066265307555
418 Solarize 0.31458533097383207 0.38329324335154524
419 Brightness 0.292050127929522 0.7047582807953063
419 ShearX 0.040541891910333805 0.06639328601282746
420 TranslateY 0.4293891393238555 0.6608516902234284
420 Sharpness 0.7794685477624004 0.5168044063408147
421 Color 0.3682450402286552 0.17274523597220048
421 ShearY 0.3936056470397763 0.5702597289866161
422 Equalize 0.43436990310624657 0.9207072627823626
422 Contrast 0.7608688260846083 0.4759023148841439
423 Brightness 0.7926088966143935 0.8270093925674497
423 ShearY 0.4924174064969461 0.47424347505831244
424 Contrast 0.043917555279430476 0.15861903591675125
424 ShearX 0.30439480405505853 0.1682659341098064
425 TranslateY 0.5598255583454538 0.721352536005039
425 Posterize 0.9700921973303752 0.6882015184440126
426 AutoContrast 0.3620887415037668 0.5958176322317132
426 TranslateX 0.14213781552733287 0.6230799786459947
427 Color 0.490366889723972 0.9863152892045195
427 Color 0.817792262022319 0.6755656429452775
428 Brightness 0.7030707021937771 0.254633187122679
428 Color 0.13977318232688843 0.16378180123959793
429 AutoContrast 0.2933247831326118 0.6283663376211102
429 Sharpness 0.85430478154147 0.9753613184208796
430 Rotate 0.6674299955457268 0.48571208708018976
430 Contrast 0.47491370175907016 0.6401079552479657
431 Sharpness 0.37589579644127863 0.8475131989077025
431 TranslateY 0.9985149867598191 0.057815729375099975
432 Equalize 0.0017194373841596389 0.7888361311461602
432 Contrast 0.6779293670669408 0.796851411454113
433 TranslateY 0.3296782119072306 0.39765117357271834
433 Sharpness 0.5890554357001884 0.6318339473765834
434 Posterize 0.25423810893163856 0.5400430289894207
434 Sharpness 0.9273643918988342 0.6480913470982622
435 Cutout 0.850219975768305 0.4169812455601289
435 Solarize 0.5418755745870089 0.5679666650495466
436 Brightness 0.008881361977310959 0.9282562314720516
436 TranslateY 0.7736066471553994 0.20041167606029642
437 Brightness 0.05382537581401925 0.6405265501035952
437 Contrast 0.30484329473639593 0.5449338155734242
438 Color 0.613257119787967 0.4541503912724138
438 Brightness 0.9061572524724674 0.4030159294447347
439 Brightness 0.02739111568942537 0.006028056532326534
439 ShearX 0.17276751958646486 0.05967365780621859
440 TranslateY 0.4376298213047888 0.7691816164456199
440 Sharpness 0.8162292718857824 0.6054926462265117
441 Color 0.37963069679121214 0.5946919433483344
441 Posterize 0.08485417284005387 0.5663580913231766
442 Equalize 0.49785780226818316 0.9999137109183761
442 Sharpness 0.7685879484682496 0.6260846154212211
443 AutoContrast 0.4190931409670763 0.2374852525139795
443 Posterize 0.8797422264608563 0.3184738541692057
444 Rotate 0.7307269024632872 0.41523609600701106
444 ShearX 0.6166685870692289 0.647133807748274
445 Sharpness 0.5633713231039904 0.8276694754755876
445 Cutout 0.8329340776895764 0.42656043027424073
446 ShearY 0.14934828370884312 0.8622510773680372
446 Invert 0.25925989086863277 0.8813283584888576
447 Contrast 0.9457071292265932 0.43228655518614034
447 Sharpness 0.8485316947644338 0.7590298998732413
448 AutoContrast 0.8386103589399184 0.5859583131318076
448 Solarize 0.466758711343543 0.9956215363818983
449 Rotate 0.9387133710926467 0.19180564509396503
449 Rotate 0.5558247609706255 0.04321698692007105
450 ShearX 0.3608716600695567 0.15206159451532864
450 TranslateX 0.47295292905710146 0.5290760596129888
451 TranslateX 0.8357685981547495 0.5991305115727084
451 Posterize 0.5362929404188211 0.34398525441943373
452 ShearY 0.6751984031632811 0.6066293622133011
452 Contrast 0.4122723990263818 0.4062467515095566
453 Color 0.7515349936021702 0.5122124665429213
453 Contrast 0.03190514292904123 0.22903520154660545
454 Contrast 0.5448962625054385 0.38655673938910545
454 AutoContrast 0.4867400684894492 0.3433111101096984
455 Rotate 0.0008372434310827959 0.28599951781141714
455 Equalize 0.37113686925530087 0.5243929348114981
456 Color 0.720054993488857 0.2010177651701808
456 TranslateX 0.23036196506059398 0.11152764304368781
457 Cutout 0.859134208332423 0.6727345740185254
457 ShearY 0.02159833505865088 0.46390076266538544
458 Sharpness 0.3428232157391428 0.4067874527486514
458 Brightness 0.5409415136577347 0.3698432231874003
459 Solarize 0.27303978936454776 0.9832186173589548
459 ShearY 0.08831127213044043 0.4681870331149774
460 TranslateY 0.2909309268736869 0.4059460811623174
460 Sharpness 0.6425125139803729 0.20275737203293587
461 Contrast 0.32167626214661627 0.28636162794046977
461 Invert 0.4712405253509603 0.7934644799163176
462 Color 0.867993060896951 0.96574321666213
462 Color 0.02233897320328512 0.44478933557303063
463 AutoContrast 0.1841254751814967 0.2779992148017741
463 Color 0.3586283093530607 0.3696246850445087
464 Posterize 0.2052935984046965 0.16796913860308244
464 ShearX 0.4807226832843722 0.11296747254563266
465 Cutout 0.2016411266364791 0.2765295444084803
465 Brightness 0.3054112810424313 0.695924264931216
466 Rotate 0.8405872184910479 0.5434142541450815
466 Cutout 0.4493615138203356 0.893453735250007
467 Contrast 0.8433310507685494 0.4915423577963278
467 ShearX 0.22567799557913246 0.20129892537008834
468 Contrast 0.045954277103674224 0.5043900167190442
468 Cutout 0.5552992473054611 0.14436447810888237
469 AutoContrast 0.7719296115130478 0.4440417544621306
469 Sharpness 0.13992809206158283 0.7988278670709781
470 Color 0.7838574233513952 0.5971351401625151
470 TranslateY 0.13562290583925385 0.2253039635819158
471 Cutout 0.24870301109385806 0.6937886690381568
471 TranslateY 0.4033400068952813 0.06253378991880915
472 TranslateX 0.0036059390486775644 0.5234723884081843
472 Solarize 0.42724862530733526 0.8697702564187633
473 Equalize 0.5446026737834311 0.9367992979112202
473 ShearY 0.5943478903735789 0.42345889214100046
474 ShearX 0.18611885697957506 0.7320849092947314
474 ShearX 0.3796416430900566 0.03817761920009881
475 Posterize 0.37636778506979124 0.26807924785236537
475 Brightness 0.4317372554383255 0.5473346211870932
476 Brightness 0.8100436240916665 0.3817612088285007
476 Brightness 0.4193974619003253 0.9685902764026623
477 Contrast 0.701776402197012 0.6612786008858009
477 Color 0.19882787177960912 0.17275597188875483
478 Color 0.9538303302832989 0.48362384535228686
478 ShearY 0.2179980837345602 0.37027290936457313
479 TranslateY 0.6068028691503798 0.3919346523454841
479 Cutout 0.8228303342563138 0.18372280287814613
480 Equalize 0.016416758802906828 0.642838949194916
480 Cutout 0.5761717838655257 0.7600661153497648
481 Color 0.9417761826818639 0.9916074035986558
481 Equalize 0.2524209308597042 0.6373703468715077
482 Brightness 0.75512589439513 0.6155072321007569
482 Contrast 0.32413476940254515 0.4194739830159837
483 Sharpness 0.3339450765586968 0.9973297539194967
483 AutoContrast 0.6523930242124429 0.1053482471037186
484 ShearX 0.2961391955838801 0.9870036064904368
484 ShearY 0.18705025965909403 0.4550895821154484
485 TranslateY 0.36956447983807883 0.36371471767143543
485 Sharpness 0.6860051967688487 0.2850190720087796
486 Cutout 0.13017742151902967 0.47316674150067195
486 Invert 0.28923829959551883 0.9295585654924601
487 Contrast 0.7302368472279086 0.7178974949876642
487 TranslateY 0.12589674152030433 0.7485392909494947
488 Color 0.6474693117772619 0.5518269515590674
488 Contrast 0.24643004970708016 0.3435581358079418
489 Contrast 0.5650327855750835 0.4843031798040887
489 Brightness 0.3526684005761239 0.3005305004600969
490 Rotate 0.09822284968122225 0.13172798244520356
490 Equalize 0.38135066977857157 0.5135129123554154
491 Contrast 0.5902590645585712 0.2196062383730596
491 ShearY 0.14188379126120954 0.1582612142182743
492 Cutout 0.8529913814417812 0.89734031211874
492 Color 0.07293767043078672 0.32577659205278897
493 Equalize 0.21401668971453247 0.040015259500028266
493 ShearY 0.5126400895338797 0.4726484828276388
494 Brightness 0.8269430025954498 0.9678362841865166
494 ShearY 0.17142069814830432 0.4726727848289514
495 Brightness 0.699707089334018 0.2795501395789335
495 ShearX 0.5308818178242845 0.10581814221896294
496 Equalize 0.32519644258946145 0.15763390340309183
496 TranslateX 0.6149090364414208 0.7454832565718259
497 AutoContrast 0.5404508567155423 0.7472387762067986
497 Equalize 0.05649876539221024 0.5628180219887216
"""
