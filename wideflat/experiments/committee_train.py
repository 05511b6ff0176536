"""Deprecated: moved to :mod:`wideflat.experiments.committee` (``presets`` and ``train``).

The old names keep working until the next release, with a ``DeprecationWarning``.
"""

from wideflat._deprecated import moved

_PRESETS = ["ALGORITHMS", "COMMITTEE_PRESETS", "CommitteeHyperParams", "committee_preset",
            "list_committee_algorithms"]  # fmt: skip
_TRAIN = ["STOP_REASONS", "CommitteeTrainResult", "restart_generator", "train_committee"]

__all__ = sorted(_PRESETS + _TRAIN)  # noqa: F822 (moved names, served by __getattr__)
__getattr__ = moved(
    __name__,
    {
        **dict.fromkeys(_PRESETS, "wideflat.experiments.committee.presets"),
        **dict.fromkeys(_TRAIN, "wideflat.experiments.committee.train"),
    },
)
