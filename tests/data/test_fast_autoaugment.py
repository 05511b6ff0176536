"""Fast AutoAugment ("fast-imagenet"): the published table, each op by hand, the transform.

Expected values are copied by hand from kakaobrain/fast-autoaugment at commit
2424224291616a2158a2265069ee95a78a2d13d9 (``FastAutoAugment/archive.py:
fa_resnet50_rimagenet``, ``FastAutoAugment/augmentations.py``) or computed by hand below.
Where Pillow is installed, every op is also checked pixel for pixel against the PIL calls of
``augmentations.py``.
"""

from __future__ import annotations

import sys
from collections import Counter

import pytest
import torch

from wideflat.data import Augment
from wideflat.data.augment import random_crop
from wideflat.data.fast_autoaugment import (
    FAST_AUTOAUGMENT_OPS,
    FastAutoAugmentDraws,
    apply_fast_autoaugment,
    fast_autoaugment,
    fast_autoaugment_op,
    fast_autoaugment_policy,
    sample_fast_autoaugment,
)
from wideflat.experiments.config import TrainConfig
from wideflat.experiments.presets import preset_config

FILL = (125, 123, 114)


def _rgb(channel):
    """A uint8 1×3×H×W batch whose three channels all equal ``channel`` (a nested list)."""
    return torch.tensor(channel, dtype=torch.uint8).expand(1, 3, -1, -1).contiguous()


def _pattern(h=4, w=4):
    """A 1×3×h×w uint8 image with distinct values 1..h·w (the same in every channel)."""
    return _rgb((torch.arange(h * w) + 1).view(h, w).tolist())


# --- the published policy table -------------------------------------------------------------


def test_table_has_the_published_498_two_op_subpolicies():
    table = fast_autoaugment_policy("fast-imagenet")
    assert len(table) == 498
    assert all(len(sub) == 2 for sub in table)
    names = {name for name, _, _ in FAST_AUTOAUGMENT_OPS}
    assert all(op in names and 0 <= p <= 1 and 0 <= lv <= 1 for sub in table for op, p, lv in sub)


@pytest.mark.parametrize(
    "index, expected",
    [  # copied from archive.py, fa_resnet50_rimagenet()
        (
            0,
            (
                ("ShearY", 0.14143816458479197, 0.513124791615952),
                ("Sharpness", 0.9290316227291179, 0.9788406212603302),
            ),
        ),
        (
            3,
            (
                ("Posterize", 0.5188375788270497, 0.9863648925446865),
                ("TranslateY", 0.8365230108655313, 0.6000972236440252),
            ),
        ),
        (
            100,
            (
                ("Posterize", 0.21701219600958138, 0.5900695769640687),
                ("Rotate", 0.7541095031505971, 0.5341162375286219),
            ),
        ),
        (
            250,
            (
                ("ShearX", 0.19256223146671514, 0.31200739880443584),
                ("Sharpness", 0.31962196883294713, 0.6828107668550425),
            ),
        ),
        (
            497,
            (
                ("AutoContrast", 0.5404508567155423, 0.7472387762067986),
                ("Equalize", 0.05649876539221024, 0.5628180219887216),
            ),
        ),
    ],
)
def test_table_entries_match_the_source(index, expected):
    assert fast_autoaugment_policy("fast-imagenet")[index] == expected


def test_table_op_counts_match_the_source():
    counts = Counter(op for sub in fast_autoaugment_policy("fast-imagenet") for op, _, _ in sub)
    assert counts == {
        "Sharpness": 105, "Brightness": 96, "AutoContrast": 88, "Posterize": 78, "Cutout": 76,
        "Color": 75, "Contrast": 75, "ShearY": 70, "Rotate": 66, "ShearX": 60, "TranslateX": 50,
        "TranslateY": 44, "Equalize": 44, "Solarize": 36, "Invert": 33,
    }  # fmt: skip


def test_op_ranges_are_augment_list():
    assert FAST_AUTOAUGMENT_OPS == (
        ("ShearX", -0.3, 0.3), ("ShearY", -0.3, 0.3), ("TranslateX", -0.45, 0.45),
        ("TranslateY", -0.45, 0.45), ("Rotate", -30, 30), ("AutoContrast", 0, 1),
        ("Invert", 0, 1), ("Equalize", 0, 1), ("Solarize", 0, 256), ("Posterize", 4, 8),
        ("Contrast", 0.1, 1.9), ("Color", 0.1, 1.9), ("Brightness", 0.1, 1.9),
        ("Sharpness", 0.1, 1.9), ("Cutout", 0, 0.2),
    )  # fmt: skip


# --- each op at a fixed value, by hand ------------------------------------------------------


def test_invert():
    x = _rgb([[0, 1, 128, 255]])
    assert fast_autoaugment_op(x, "Invert", 0.0)[0, 0].tolist() == [[255, 254, 127, 0]]


def test_posterize_keeps_int_v_high_bits():
    x = _rgb([[0x37, 0xFF, 0x0F, 0x80]])
    assert fast_autoaugment_op(x, "Posterize", 4.9)[0, 0].tolist() == [[0x30, 0xF0, 0x00, 0x80]]
    assert fast_autoaugment_op(x, "Posterize", 7.0)[0, 0].tolist() == [[0x36, 0xFE, 0x0E, 0x80]]
    assert torch.equal(fast_autoaugment_op(x, "Posterize", 8.0), x)


def test_solarize_inverts_at_and_above_the_threshold():
    x = _rgb([[0, 100, 101, 127, 128, 255]])
    assert fast_autoaugment_op(x, "Solarize", 128.0)[0, 0].tolist() == [[0, 100, 101, 127, 127, 0]]
    assert fast_autoaugment_op(x, "Solarize", 100.5)[0, 0].tolist() == [[0, 100, 154, 128, 127, 0]]
    assert torch.equal(fast_autoaugment_op(x, "Solarize", 256.0), x)


def test_shear_x_by_0_3():
    # Source x = ⌊x + ½ + 0.3 (y + ½)⌋: rows 0, 1 stay, rows 2, 3 move one pixel left.
    x = _pattern()
    out = fast_autoaugment_op(x, "ShearX", 0.3)[0, 0].tolist()
    assert out == [[1, 2, 3, 4], [5, 6, 7, 8], [10, 11, 12, 0], [14, 15, 16, 0]]


def test_shear_y_is_shear_x_transposed():
    x = _pattern()
    out = fast_autoaugment_op(x, "ShearY", 0.3)
    expected = fast_autoaugment_op(x.transpose(2, 3).contiguous(), "ShearX", 0.3).transpose(2, 3)
    assert out[0, 0].tolist() == [[1, 2, 7, 8], [5, 6, 11, 12], [9, 10, 15, 16], [13, 14, 0, 0]]
    assert torch.equal(out, expected)


def test_translate_by_a_fraction_of_the_size():
    x = _pattern()
    left = fast_autoaugment_op(x, "TranslateX", 0.25)[0, 0].tolist()  # 0.25 · 4 = 1 pixel
    assert left == [[2, 3, 4, 0], [6, 7, 8, 0], [10, 11, 12, 0], [14, 15, 16, 0]]
    right = fast_autoaugment_op(x, "TranslateX", -0.25)[0, 0].tolist()
    assert right == [[0, 1, 2, 3], [0, 5, 6, 7], [0, 9, 10, 11], [0, 13, 14, 15]]
    up = fast_autoaugment_op(_pattern(4, 2), "TranslateY", 0.2)[0, 0].tolist()  # 0.8 px → 1
    assert up == [[3, 4], [5, 6], [7, 8], [0, 0]]


def test_rotate_is_counter_clockwise_about_the_centre():
    x = _pattern(3, 3)
    assert torch.equal(fast_autoaugment_op(x, "Rotate", 90.0), torch.rot90(x, 1, (2, 3)))
    assert torch.equal(fast_autoaugment_op(x, "Rotate", -90.0), torch.rot90(x, -1, (2, 3)))
    assert torch.equal(fast_autoaugment_op(x, "Rotate", 180.0), x.flip(2, 3))
    assert torch.equal(fast_autoaugment_op(x, "Rotate", 0.0), x)
    small = fast_autoaugment_op(x, "Rotate", 30.0)[0, 0]
    assert small[1, 1] == 5  # the centre pixel stays


def test_autocontrast_stretches_each_channel():
    x = torch.tensor([[[50, 100, 150]], [[7, 7, 7]], [[0, 128, 255]]], dtype=torch.uint8)[None]
    out = fast_autoaugment_op(x, "AutoContrast", 0.0)[0]
    assert out[0].tolist() == [[0, 127, 255]]  # int(50 · 2.55 − 127.5) = 127
    assert out[1].tolist() == [[7, 7, 7]]  # a flat channel is left alone
    assert out[2].tolist() == [[0, 128, 255]]


def test_equalize_by_hand():
    # 32×32: 256 pixels of 10, 256 of 20, 512 of 30. step = (1024 − 512) // 255 = 2;
    # lut[10] = (1 + 0) // 2 = 0, lut[20] = (1 + 256) // 2 = 128, lut[30] = 256 → 255.
    img = torch.full((32, 32), 30)
    img[:8] = 10
    img[8:16] = 20
    out = fast_autoaugment_op(_rgb(img.tolist()), "Equalize", 0.0)[0, 0]
    assert set(out[:8].flatten().tolist()) == {0}
    assert set(out[8:16].flatten().tolist()) == {128}
    assert set(out[16:].flatten().tolist()) == {255}
    small = _rgb([[10, 20], [30, 40]])  # fewer than 256 pixels below the top: step 0, identity
    assert torch.equal(fast_autoaugment_op(small, "Equalize", 0.0), small)


def test_brightness_blends_with_black_and_truncates():
    x = _rgb([[255, 200, 100, 1]])
    assert fast_autoaugment_op(x, "Brightness", 0.5)[0, 0].tolist() == [[127, 100, 50, 0]]
    assert fast_autoaugment_op(x, "Brightness", 1.5)[0, 0].tolist() == [[255, 255, 150, 1]]


def test_contrast_blends_with_the_rounded_mean_grey():
    x = _rgb([[100, 200]])  # grey pixels: L = value; mean 150
    assert fast_autoaugment_op(x, "Contrast", 0.5)[0, 0].tolist() == [[125, 175]]
    assert fast_autoaugment_op(x, "Contrast", 1.5)[0, 0].tolist() == [[75, 225]]
    y = _rgb([[100, 201]])  # mean 150.5 → int(151.0) = 151
    assert fast_autoaugment_op(y, "Contrast", 0.0)[0, 0].tolist() == [[151, 151]]


def test_color_blends_with_the_pixel_grey():
    # L(255, 0, 0) = (255 · 19595 + 32768) >> 16 = 76.
    x = torch.tensor([255, 0, 0], dtype=torch.uint8).view(1, 3, 1, 1)
    assert fast_autoaugment_op(x, "Color", 0.1).flatten().tolist() == [93, 68, 68]
    assert fast_autoaugment_op(x, "Color", 0.5).flatten().tolist() == [165, 38, 38]


def test_sharpness_blends_with_the_smoothed_image():
    img = torch.zeros(3, 3, dtype=torch.int64)
    img[1, 1] = 130  # SMOOTH: 5 · 130 / 13 = 50 at the centre; the border is copied
    x = _rgb(img.tolist())
    blurred = fast_autoaugment_op(x, "Sharpness", 0.1)[0, 0]  # 50 + 0.1 · 80 = 58
    assert blurred.tolist() == [[0, 0, 0], [0, 58, 0], [0, 0, 0]]
    assert fast_autoaugment_op(x, "Sharpness", 1.9)[0, 0, 1, 1] == 202  # 50 + 1.9·80 = 202
    tiny = _rgb([[10, 200]])  # smaller than the kernel: unchanged
    assert torch.equal(fast_autoaugment_op(tiny, "Sharpness", 0.1), tiny)


def test_cutout_square_from_the_sources_corner_rule():
    x = torch.zeros(1, 3, 10, 10, dtype=torch.uint8)
    # size 0.2 · 10 = 2; corner = 10 − 9u; u = ½ → 5.5 − 1 → 4; x1 = 6: pixels 4, 5, 6.
    out = fast_autoaugment_op(x, "Cutout", 0.2, cutout_uniform=torch.tensor([[0.5, 0.5]]))
    hole = torch.zeros(10, 10, dtype=torch.bool)
    hole[4:7, 4:7] = True
    for ch, value in enumerate(FILL):
        assert torch.equal(out[0, ch] == value, hole)
    corner = fast_autoaugment_op(x, "Cutout", 0.2, cutout_uniform=torch.tensor([[0.0, 0.0]]))
    assert (corner[0, :, 9, 9].tolist(), int((corner != 0).any(1).sum())) == (list(FILL), 1)
    none = fast_autoaugment_op(x, "Cutout", 0.0, cutout_uniform=torch.tensor([[0.5, 0.5]]))
    assert torch.equal(none, x)


def test_ops_take_one_value_per_image():
    x = torch.cat([_rgb([[10, 200]]), _rgb([[10, 200]])])
    out = fast_autoaugment_op(x, "Solarize", torch.tensor([256.0, 0.0]))
    assert out[:, 0].tolist() == [[[10, 200]], [[245, 55]]]


# --- against Pillow, where installed ----------------------------------------------------------


def _pil_reference(image, name, v, uniform):
    """The op of augmentations.py (mirror sign already in v), on a PIL image."""
    from PIL import Image, ImageDraw, ImageEnhance, ImageOps

    w, h = image.size
    affine = {
        "ShearX": (1, v, 0, 0, 1, 0),
        "ShearY": (1, 0, 0, v, 1, 0),
        "TranslateX": (1, 0, v * w, 0, 1, 0),
        "TranslateY": (1, 0, 0, 0, 1, v * h),
    }
    if name in affine:
        return image.transform(image.size, Image.AFFINE, affine[name])
    if name == "Rotate":
        return image.rotate(v)
    if name in ("AutoContrast", "Invert", "Equalize"):
        return getattr(ImageOps, name.lower())(image)
    if name == "Solarize":
        return ImageOps.solarize(image, v)
    if name == "Posterize":
        return ImageOps.posterize(image, int(v))
    if name in ("Contrast", "Color", "Brightness", "Sharpness"):
        return getattr(ImageEnhance, name)(image).enhance(v)
    if v <= 0:  # Cutout → CutoutAbs, with np.random.uniform(w) = w + (1 − w)·u
        return image
    v = v * w
    x0 = int(max(0, w + (1.0 - w) * uniform[0] - v / 2.0))
    y0 = int(max(0, h + (1.0 - h) * uniform[1] - v / 2.0))
    image = image.copy()
    ImageDraw.Draw(image).rectangle((x0, y0, min(w, x0 + v), min(h, y0 + v)), FILL)
    return image


def _to_pil(image):
    from PIL import Image

    return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())


def _from_pil(image):
    import numpy as np

    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


@pytest.mark.parametrize("name", [name for name, _, _ in FAST_AUTOAUGMENT_OPS])
def test_each_op_matches_pillow(name):
    pytest.importorskip("PIL")
    low, high = dict((n, (lo, hi)) for n, lo, hi in FAST_AUTOAUGMENT_OPS)[name]
    g = torch.Generator().manual_seed(7)
    for h, w in [(64, 64), (7, 5), (13, 17)]:
        x = torch.randint(0, 256, (4, 3, h, w), generator=g, dtype=torch.uint8)
        x[1] = x[1] // 3 + 60  # a low-contrast image
        x[2] = (x[2] // 64) * 50  # few levels
        levels = torch.tensor([0.0, 1.0, 0.37, 0.81], dtype=torch.float64)
        values = levels * (high - low) + low
        values[1::2] = -values[1::2] if name in ("ShearX", "ShearY", "TranslateX") else values[1::2]
        uniform = torch.rand(4, 2, generator=g, dtype=torch.float64)
        out = fast_autoaugment_op(x, name, values, cutout_uniform=uniform)
        for i in range(4):
            ref = _pil_reference(_to_pil(x[i]), name, float(values[i]), uniform[i].tolist())
            assert torch.equal(out[i], _from_pil(ref)), (name, h, w, i)


def test_policy_matches_the_sources_augmentation_loop_with_pillow():
    pytest.importorskip("PIL")
    policy = fast_autoaugment_policy("fast-imagenet")
    ranges = {n: (lo, hi) for n, lo, hi in FAST_AUTOAUGMENT_OPS}
    mirrored = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (48, 3, 12, 10), generator=g, dtype=torch.uint8)
    draws = sample_fast_autoaugment(48, "fast-imagenet", g)
    draws = draws._replace(uniform=draws.uniform * 0.6)  # most ops run
    out = apply_fast_autoaugment(x, "fast-imagenet", draws)
    for i in range(48):  # data.py's Augmentation.__call__, with these draws
        image = _to_pil(x[i])
        for j, (name, prob, level) in enumerate(policy[int(draws.subpolicy[i])]):
            if float(draws.uniform[i, j]) > prob:
                continue
            low, high = ranges[name]
            v = level * (high - low) + low
            if name in mirrored and bool(draws.mirror[i, j]):
                v = -v
            image = _pil_reference(image, name, v, draws.cutout[i, j].tolist())
        assert torch.equal(out[i], _from_pil(image)), i


# --- sub-policy application -------------------------------------------------------------------


def _draws(subpolicy, uniform, mirror):
    n = len(subpolicy)
    return FastAutoAugmentDraws(
        torch.tensor(subpolicy),
        torch.tensor(uniform, dtype=torch.float64),
        torch.tensor(mirror),
        torch.full((n, 2, 2), 0.5, dtype=torch.float64),
    )


def test_subpolicy_3_by_hand():
    # Entry 3: Posterize (p .519, level .986 → 4 + 4·.986 = 7.95 → 7 bits), then TranslateY
    # (p .837, level .600 → .9·.600 − .45 = .0901 → .901 px on 10 rows → one row up).
    img = (torch.arange(30).view(10, 3) * 8 + 1).tolist()
    x = _rgb(img)
    expected = (torch.tensor(img) & 0xFE).tolist()[1:] + [[0, 0, 0]]
    out = apply_fast_autoaugment(x, "fast-imagenet", _draws([3], [[0.0, 0.5]], [[True, False]]))
    assert out[0, 0].tolist() == expected
    down = apply_fast_autoaugment(x, "fast-imagenet", _draws([3], [[0.0, 0.5]], [[True, True]]))
    assert down[0, 0].tolist() == [[0, 0, 0]] + (torch.tensor(img) & 0xFE).tolist()[:-1]
    skip = apply_fast_autoaugment(x, "fast-imagenet", _draws([3], [[0.6, 0.9]], [[True, True]]))
    assert torch.equal(skip, x)  # u > p: both ops skipped


def test_probability_zero_is_the_identity_and_one_always_runs():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (32, 3, 8, 8), generator=g, dtype=torch.uint8)
    never = [
        [("Invert", 0.0, 0.5), ("Rotate", 0.0, 0.9)],
        [("Cutout", 0.0, 1.0), ("Color", 0.0, 0.0)],
    ]
    d = sample_fast_autoaugment(32, never, g)
    assert torch.equal(apply_fast_autoaugment(x, never, d), x)
    f = fast_autoaugment(never)
    xf = x.to(torch.float32) / 255
    assert torch.equal(f(xf, g), xf)
    always = [[("Invert", 1.0, 0.0), ("Solarize", 1.0, 0.0)]]  # 255 − x, then all ≥ 0 inverted
    d = sample_fast_autoaugment(32, always, g)
    assert torch.equal(apply_fast_autoaugment(x, always, d), x)


def test_subpolicies_are_chosen_uniformly_per_image():
    d = sample_fast_autoaugment(20000, "fast-imagenet", torch.Generator().manual_seed(1))
    counts = torch.bincount(d.subpolicy, minlength=498)
    assert counts.numel() == 498 and int(counts.min()) > 0
    # about 40 each: a χ² over 497 degrees of freedom stays far below 700 (p < 1e-7)
    chi2 = float(((counts - 20000 / 498) ** 2 / (20000 / 498)).sum())
    assert chi2 < 700
    assert abs(float(d.mirror.double().mean()) - 0.5) < 0.02


# --- the batch transform ----------------------------------------------------------------------


def test_transform_is_reproducible_and_keeps_shape_dtype_and_global_rng():
    f = fast_autoaugment("fast-imagenet")
    x = torch.randint(0, 256, (16, 3, 20, 20), generator=torch.Generator().manual_seed(0))
    x = x.to(torch.float64) / 255
    state = torch.get_rng_state()
    a = f(x, torch.Generator().manual_seed(5))
    b = f(x, torch.Generator().manual_seed(5))
    c = f(x, torch.Generator().manual_seed(6))
    assert torch.equal(torch.get_rng_state(), state)
    assert a.shape == x.shape and a.dtype == torch.float64
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal((a * 255).round() / 255, a) and bool(((a >= 0) & (a <= 1)).all())
    assert not torch.equal(a, x)


def test_augment_runs_fast_autoaugment_before_the_crop_without_torchvision(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # not needed for "fast-imagenet"
    monkeypatch.setitem(sys.modules, "torchvision.transforms", None)
    aug = Augment(padding=4, flip=False, autoaugment="fast-imagenet")
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = aug(x, torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    expected = random_crop(fast_autoaugment("fast-imagenet")(x, g), 4, g)
    assert torch.equal(out, expected)
    assert (
        aug(x.mul(255).round().to(torch.uint8), torch.Generator().manual_seed(9)).shape == x.shape
    )


# --- names and arguments ----------------------------------------------------------------------


def test_bad_names_raise_value_errors_naming_them():
    with pytest.raises(ValueError, match="Invalid autoaugment policy: 'fast-imagenett'"):
        Augment(autoaugment="fast-imagenett")
    with pytest.raises(ValueError, match="Invalid Fast AutoAugment policy: 'fast-cifar10'"):
        fast_autoaugment("fast-cifar10")
    with pytest.raises(ValueError, match="Invalid Fast AutoAugment policy: 'cifar10'"):
        fast_autoaugment_policy("cifar10")
    with pytest.raises(ValueError, match="Invalid Fast AutoAugment op: 'Shear'"):
        fast_autoaugment_op(_rgb([[1]]), "Shear", 0.1)
    with pytest.raises(ValueError, match="Invalid Fast AutoAugment op: 'Blur'"):
        fast_autoaugment([[("Blur", 0.5, 0.5)]])
    with pytest.raises(ValueError, match="prob and level must lie in"):
        fast_autoaugment([[("Invert", 1.5, 0.5)]])
    with pytest.raises(ValueError, match="Invalid autoaugment: 'fast-cifar'"):
        TrainConfig(autoaugment="fast-cifar")


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="uint8 N×3×H×W"):
        fast_autoaugment_op(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), "Invert", 0.0)
    with pytest.raises(ValueError, match="uint8 N×3×H×W"):
        fast_autoaugment("fast-imagenet")(torch.rand(2, 1, 4, 4), torch.Generator())
    with pytest.raises(ValueError, match="Cutout needs cutout_uniform"):
        fast_autoaugment_op(_rgb([[1]]), "Cutout", 0.1)
    with pytest.raises(ValueError, match=r"an \(2,\) tensor"):
        fast_autoaugment_op(torch.zeros(2, 3, 2, 2, dtype=torch.uint8), "Solarize", torch.ones(3))
    d = sample_fast_autoaugment(3, "fast-imagenet", torch.Generator())
    with pytest.raises(ValueError, match="do not fit 2 images"):
        apply_fast_autoaugment(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), "fast-imagenet", d)


def test_tiny_imagenet_presets_use_fast_autoaugment():
    for name in ("tiny-imagenet-resnet50", "tiny-imagenet-densenet121"):
        for method in ("sgd", "esgd", "rsgd"):
            assert preset_config(name, method).autoaugment == "fast-imagenet"
    assert preset_config("cifar10-resnet18", "sgd").autoaugment == ""
    assert TrainConfig(autoaugment="fast-imagenet").autoaugment == "fast-imagenet"
