"""Batch augmentation: correct against a per-image reference, on-device, reproducible."""

from __future__ import annotations

import pytest
import torch

from wideflat.data import Augment, channel_stats, normalize
from wideflat.data.augment import (
    apply_crop,
    apply_cutout,
    apply_flip,
    cutout,
    random_crop,
    random_flip,
    sample_crop_offsets,
    sample_cutout_centers,
    sample_flips,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _batch(device="cpu", n=5, c=2, h=6, w=7):
    g = torch.Generator().manual_seed(123)
    return (torch.rand(n, c, h, w, generator=g) + 0.5).to(device)  # no zeros: holes visible


def _ref_crop(x, padding, offsets):
    n, c, h, w = x.shape
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = (int(v) for v in offsets[i])
        for r in range(h):
            for s in range(w):
                rr, ss = r + dy - padding, s + dx - padding
                inside = 0 <= rr < h and 0 <= ss < w
                out[i, :, r, s] = x[i, :, rr, ss] if inside else 0
    return out


def _ref_cutout(x, size, centers):
    out = x.clone()
    n, _, h, w = x.shape
    for i in range(n):
        cy, cx = (int(v) for v in centers[i])
        for r in range(cy - size // 2, cy - size // 2 + size):
            for s in range(cx - size // 2, cx - size // 2 + size):
                if 0 <= r < h and 0 <= s < w:
                    out[i, :, r, s] = 0
    return out


@pytest.mark.parametrize("padding", [0, 1, 3])
def test_crop_matches_per_image_reference(padding):
    x = _batch()
    g = torch.Generator().manual_seed(0)
    offsets = sample_crop_offsets(x.shape[0], padding, g)
    corners = torch.tensor([[0, 0], [2 * padding, 2 * padding], [0, 2 * padding]])
    offsets[:3] = corners  # make sure the extreme windows are covered
    assert torch.equal(apply_crop(x, padding, offsets), _ref_crop(x, padding, offsets))
    centred = torch.full((x.shape[0], 2), padding)
    assert torch.equal(apply_crop(x, padding, centred), x)


def test_flip_and_cutout_match_per_image_reference():
    x = _batch()
    mask = torch.tensor([True, False, True, True, False])
    ref = torch.stack([xi.flip(-1) if m else xi for xi, m in zip(x, mask, strict=True)])
    assert torch.equal(apply_flip(x, mask), ref)
    centers = torch.tensor([[0, 0], [5, 6], [2, 3], [3, 0], [1, 6]])  # corners and borders
    for size in (1, 2, 3, 4):
        assert torch.equal(apply_cutout(x, size, centers), _ref_cutout(x, size, centers))


def test_random_ops_are_sampler_plus_apply():
    x = _batch()
    n, _, h, w = x.shape

    def gen():
        return torch.Generator().manual_seed(7)

    assert torch.equal(random_crop(x, 2, gen()), apply_crop(x, 2, sample_crop_offsets(n, 2, gen())))
    assert torch.equal(random_flip(x, gen()), apply_flip(x, sample_flips(n, gen())))
    centers = sample_cutout_centers(n, h, w, gen())
    assert torch.equal(cutout(x, 3, gen()), apply_cutout(x, 3, centers))


def test_sampler_distributions():
    g = torch.Generator().manual_seed(1)
    off = sample_crop_offsets(4000, 4, g)
    assert off.min() == 0 and off.max() == 8
    assert torch.bincount(off[:, 0], minlength=9).min() > 300  # ~444 expected per value
    flips = sample_flips(4000, g).float().mean()
    assert 0.45 < float(flips) < 0.55
    c = sample_cutout_centers(4000, 6, 7, g)
    assert c[:, 0].max() == 5 and c[:, 1].max() == 6 and c.min() == 0


def test_cutout_hole_size_interior():
    x = torch.ones(6, 3, 32, 32)
    y = apply_cutout(x, 8, torch.tensor([[16, 16]] * 6))
    assert torch.equal((y == 0).sum(dim=(2, 3)), torch.full((6, 3), 64))


@pytest.mark.parametrize("device", DEVICES)
def test_augment_on_device_reproducible_shapes(device):
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, device=device)
    aug = Augment(padding=4, flip=True, cutout=8, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))

    def run(seed):
        return aug(x, torch.Generator(device=device).manual_seed(seed))

    a, b, c = run(0), run(0), run(1)
    assert a.device.type == device and a.shape == x.shape and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Without any augmentation it reduces to exact normalization.
    plain = Augment(padding=0, flip=False, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    ref = (x.float() / 255 - torch.tensor([0.5, 0.4, 0.3], device=device)[:, None, None]) / 0.2
    assert torch.allclose(plain(x, torch.Generator(device=device)), ref, atol=1e-6)


def test_channel_stats_and_normalize():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (37, 3, 5, 4), dtype=torch.uint8, generator=g)
    mean, std = channel_stats(x, chunk=8)
    xf = x.double() / 255
    assert torch.allclose(mean.double(), xf.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(std.double(), xf.std(dim=(0, 2, 3), unbiased=False), atol=1e-6)
    z = normalize(xf.float(), mean, std)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    grey_mean, _ = channel_stats(x[:, 0])  # N×H×W: one channel
    assert grey_mean.shape == (1,) and torch.allclose(grey_mean, mean[:1])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: random_crop(torch.zeros(2, 3, 4), 1, torch.Generator()), "N×C×H×W"),
        (lambda: random_crop(torch.zeros(1, 1, 4, 4), -1, torch.Generator()), "padding"),
        (lambda: random_flip(torch.zeros(1, 1, 2, 2), "seed"), "torch.Generator"),
        (lambda: sample_flips(3, torch.Generator(), p=1.5), "invalid p"),
        (lambda: apply_crop(torch.zeros(2, 1, 4, 4), 1, torch.tensor([[0, 0], [0, 3]])), "offsets"),
        (lambda: apply_cutout(torch.zeros(2, 1, 4, 4), 2, torch.zeros(3, 2)), "centers"),
        (lambda: normalize(torch.zeros(1, 2, 1, 1), [0.0], [1.0]), "channels"),
        (lambda: normalize(torch.zeros(1, 1, 1, 1), [0.0], [0.0]), "std must be positive"),
        (lambda: Augment(mean=(0.5,)), "both mean and std"),
        (lambda: Augment(cutout=-2), "cutout"),
        (lambda: channel_stats(torch.zeros(0, 3, 2, 2)), "non-empty"),
    ],
)
def test_augment_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_generator_device_mismatch_is_rejected():
    with pytest.raises(ValueError, match="generator is on cpu but the batch is on cuda"):
        random_crop(torch.zeros(2, 1, 4, 4, device="cuda"), 1, torch.Generator())
