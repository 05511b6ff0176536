"""Generator helpers: per-device streams whose states serialize as uint8 tensors."""

from __future__ import annotations

import numpy as np
import torch


def seed_from_global() -> int:
    """Draw a 62-bit seed from torch's global RNG (so ``torch.manual_seed`` fixes it)."""
    return int(torch.randint(0, 2**62, (1,), dtype=torch.int64).item())


def derive_seed(seed: int, *keys: int) -> int:
    """A child seed for ``(seed, *keys)`` (NumPy's ``SeedSequence``): distinct keys give
    statistically independent streams, e.g. one per replica."""
    state = np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(2))


class DeviceGenerators:
    """One ``torch.Generator`` per device, all seeded from one seed.

    The state is a plain dict of uint8 tensors, so it survives ``torch.save`` and
    ``torch.load(weights_only=True)`` and ``copy.deepcopy``.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._gens: dict[str, torch.Generator] = {}

    def get(self, device: torch.device) -> torch.Generator:
        key = str(device)
        gen = self._gens.get(key)
        if gen is None:
            gen = torch.Generator(device=device).manual_seed(self.seed)
            self._gens[key] = gen
        return gen

    def state_dict(self) -> dict:
        return {"seed": self.seed, "states": {k: g.get_state() for k, g in self._gens.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self._gens = {}
        for key, value in state["states"].items():
            gen = torch.Generator(device=torch.device(key))
            gen.set_state(value.clone())
            self._gens[key] = gen
