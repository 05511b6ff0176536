"""Seeds and generators: every seed in wideflat is derived here.

One scheme, NumPy's ``SeedSequence``: the child seed of ``(seed, *keys)`` is the top ``bits``
bits of its first state word, so distinct keys give statistically independent streams. The
width differs between streams only to keep the numbers they have always produced (62 bits for
replicas and data streams, 63 for local-energy noise and committee restarts, a 32-bit word
for the committee study's measurements); :func:`numpy_generator` runs NumPy's generator on the
sequence itself. :func:`epoch_seed` is the one older linear mix, kept for the same reason.
:class:`DeviceGenerators` holds numbered streams per device whose states serialize as uint8
tensors.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "STREAM_KEY",
    "DeviceGenerators",
    "derive_seed",
    "epoch_seed",
    "generator",
    "numpy_generator",
    "seed_from_global",
]


# The key of DeviceGenerators' numbered streams: stream j > 0 is seeded with
# derive_seed(seed, STREAM_KEY, j, bits=63).
STREAM_KEY = 0x5EED


def seed_from_global() -> int:
    """Draw a 62-bit seed from torch's global RNG (so ``torch.manual_seed`` fixes it)."""
    return int(torch.randint(0, 2**62, (1,), dtype=torch.int64).item())


def derive_seed(seed: int, *keys: int, bits: int = 62) -> int:
    """A child seed for ``(seed, *keys)`` (NumPy's ``SeedSequence``): distinct keys give
    statistically independent streams, e.g. one per replica.

    Args:
        seed, keys: non-negative integers.
        bits: 62 (default) or 63: the top bits of the first 64-bit state word; 32: the first
            32-bit state word.

    Example:
        >>> derive_seed(0, 1) < 2**62, derive_seed(0, 1, bits=63) >> 1 == derive_seed(0, 1)
        (True, True)
    """
    entropy = [int(seed), *map(int, keys)]
    if bits == 32:
        return int(np.random.SeedSequence(entropy).generate_state(1, np.uint32)[0])
    if bits not in (62, 63):
        raise ValueError(f"Invalid bits: {bits!r} (expected 32, 62 or 63)")
    state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(64 - bits))


def generator(
    seed: int, *keys: int, bits: int = 62, device: torch.device | str = "cpu"
) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`derive_seed` of ``(seed, *keys)``."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *keys, bits=bits))


def numpy_generator(seed: int, *keys: int) -> np.random.Generator:
    """A NumPy ``Generator`` on the ``SeedSequence`` of ``(seed, *keys)`` itself (its full
    state, not a derived integer seed), e.g. for drawing a fixed subset of examples."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, keys)]))


def epoch_seed(seed: int, epoch: int) -> int:
    """The data loader's seed for ``(seed, epoch)``: a fixed linear mix modulo 2⁶³ − 1.

    Older than :func:`derive_seed` and kept as is, since every run's data order depends on it.
    """
    return (int(seed) * 1_000_003 + int(epoch) * 7_919 + 12_345) % (2**63 - 1)


class DeviceGenerators:
    """Per device, numbered ``torch.Generator`` streams, all seeded from one seed.

    Stream 0 of a device is seeded with the seed itself (so it is ``torch.randn``'s stream
    after ``torch.manual_seed(seed)`` on that device); stream ``j > 0`` with
    ``derive_seed(seed, STREAM_KEY, j, bits=63)``, statistically independent of the others.
    Streams are made on first use. The state is a plain dict of uint8 tensors, so it
    survives ``torch.save`` and ``torch.load(weights_only=True)`` and ``copy.deepcopy``; a
    state saved before there were numbered streams loads as it is (the numbered streams then
    start from their seeds).

    Example:
        >>> gens = DeviceGenerators(3)
        >>> x = torch.randn(2, generator=gens.get(torch.device("cpu")))
        >>> torch.equal(x, torch.randn(2, generator=torch.Generator().manual_seed(3)))
        True
        >>> y = torch.randn(2, generator=gens.get(torch.device("cpu"), 1))
        >>> torch.equal(y, torch.randn(2, generator=generator(3, STREAM_KEY, 1, bits=63)))
        True
    """

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._gens: dict[str, torch.Generator] = {}

    def get(self, device: torch.device, stream: int = 0) -> torch.Generator:
        key = str(device) if stream == 0 else f"{device}#{stream}"
        gen = self._gens.get(key)
        if gen is None:
            seed = self.seed if stream == 0 else derive_seed(self.seed, STREAM_KEY, stream, bits=63)
            gen = torch.Generator(device=device).manual_seed(seed)
            self._gens[key] = gen
        return gen

    def state_dict(self) -> dict:
        return {"seed": self.seed, "states": {k: g.get_state() for k, g in self._gens.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self._gens = {}
        for key, value in state["states"].items():
            gen = torch.Generator(device=torch.device(key.partition("#")[0]))
            gen.set_state(value.clone())
            self._gens[key] = gen
