"""DeviceLoader: every sample once per epoch, reproducible, bit-identical resume."""

from __future__ import annotations

import io

import pytest
import torch

from wideflat.data import Augment, DeviceLoader, ImageSet


def _data(n=23):
    # Each image is filled with its own index, so labels can be checked against images.
    images = torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 1, 4, 4).clone()
    return images, torch.arange(n, dtype=torch.int64)


@pytest.mark.parametrize("drop_last", [False, True])
def test_epoch_covers_each_sample_once(drop_last):
    images, labels = _data()
    loader = DeviceLoader(images, labels, 5, drop_last=drop_last, seed=3)
    assert len(loader) == (4 if drop_last else 5)
    seen = []
    for x, y in loader:
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 4, 4)
        assert torch.equal((x[:, 0, 0, 0] * 255).round().long(), y)  # labels travel with images
        seen += y.tolist()
    assert len(seen) == (20 if drop_last else 23) and len(set(seen)) == len(seen)
    assert seen != sorted(seen)  # shuffled
    assert loader.epoch == 1 and loader.batch_index == 0


def test_reproducible_and_epochs_differ():
    images, labels = _data()

    def order(seed, epochs=2):
        loader = DeviceLoader(images, labels, 4, seed=seed)
        return [torch.cat([y for _, y in loader]).tolist() for _ in range(epochs)]

    a, b, c = order(0), order(0), order(1)
    assert a == b and a != c and a[0] != a[1]
    seq = DeviceLoader(images, labels, 10, shuffle=False)
    assert torch.cat([y for _, y in seq]).tolist() == list(range(23))


def test_grey_images_get_channel_dim_and_features_pass_through():
    loader = DeviceLoader(torch.zeros(6, 28, 28, dtype=torch.uint8), torch.zeros(6), 4)
    assert next(iter(loader))[0].shape == (4, 1, 28, 28)
    feats = DeviceLoader(torch.ones(6, 784), torch.ones(6), 4)
    assert next(iter(feats))[0].shape == (4, 784)


def _stream(loader, k):
    out = []
    it = iter(loader)
    while len(out) < k:
        try:
            out.append(next(it))
        except StopIteration:
            it = iter(loader)
    return out, it


def test_resume_mid_epoch_is_bit_identical():
    n = 40
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(n)
    aug = Augment(padding=2, flip=True, cutout=3, mean=(0.5,) * 3, std=(0.25,) * 3)

    def make():
        return DeviceLoader(images, labels, 6, seed=11, transform=aug)

    reference, _ = _stream(make(), 20)  # 20 batches = 2 epochs + 6 batches

    first = make()
    got, it = _stream(first, 9)  # stop in the middle of epoch 1 (7 batches per epoch)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    resumed = make()
    resumed.load_state_dict(state)
    rest, _ = _stream(resumed, 11)
    for (xa, ya), (xb, yb) in zip(reference, got + rest, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # Control: a fresh loader does not continue the stream, so the state mattered.
    cold, _ = _stream(make(), 11)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(reference[9:], cold, strict=True))


def test_resume_after_exact_epoch_end():
    images, labels = _data(12)
    a = DeviceLoader(images, labels, 4, seed=5)
    epoch0 = [
        y for _, y in zip(range(3), a, strict=False)
    ]  # consume all 3 batches, no StopIteration
    assert len(epoch0) == 3 and a.batch_index == 3
    b = DeviceLoader(images, labels, 4, seed=5)
    b.load_state_dict(a.state_dict())
    nxt_a = [y.tolist() for _, y in a]
    nxt_b = [y.tolist() for _, y in b]
    assert nxt_a == nxt_b and a.epoch == b.epoch == 2
    fresh = DeviceLoader(images, labels, 4, seed=5)
    list(fresh)  # epoch 0
    fresh_e1 = [y.tolist() for _, y in fresh]
    assert nxt_a == fresh_e1  # epoch 1 order, as an uninterrupted loader's second epoch


def test_from_imageset_and_errors():
    s = ImageSet(
        torch.zeros(5, 2, 2, dtype=torch.uint8), torch.arange(5), ("a",) * 5, "t", "train", "m"
    )
    assert len(DeviceLoader.from_imageset(s, 2)) == 3
    images, labels = _data(8)
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(images, labels, 0)
    with pytest.raises(ValueError, match="share the first dim"):
        DeviceLoader(images, labels[:5], 2)
    with pytest.raises(ValueError, match="empty"):
        DeviceLoader(images[:0], labels[:0], 2)
    with pytest.raises(ValueError, match="seed"):
        DeviceLoader(images, labels, 2, seed=1.5)
    other = DeviceLoader(images, labels, 3)
    with pytest.raises(ValueError, match="batches of 3"):
        DeviceLoader(images, labels, 2).load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match="lacks keys"):
        other.load_state_dict({"epoch": 1})
