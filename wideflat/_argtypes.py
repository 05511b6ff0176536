"""argparse value types shared by the command-line parsers: errors name the bad text."""

from __future__ import annotations

import argparse


def int_at_least(low: int):
    """An argparse ``type`` accepting integers >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}: {value}")
        return value

    parse.__name__ = f"int>={low}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)

SEED_MAX = 2**63 - 1  # torch.manual_seed takes a signed/unsigned 64-bit int; stay in both


def seed(text: str) -> int:
    """An argparse ``type`` for a seed: an integer in ``0..SEED_MAX``.

    Example:
        >>> seed("7")
        7
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"seed {value} out of range (expected 0..{SEED_MAX})")
    return value
