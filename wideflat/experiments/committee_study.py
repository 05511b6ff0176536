"""Deprecated: moved to :mod:`wideflat.experiments.committee.study`, and
``committee_local_energy`` to :mod:`wideflat.flatness.committee`.

The old names keep working until the next release, with a ``DeprecationWarning``.
"""

from wideflat._deprecated import moved

_STUDY = ["SCHEMA", "CommitteeStudyConfig", "check_study_folder", "default_study_folder",
          "format_study_table", "quick_study_config", "run_committee_study"]  # fmt: skip

__all__ = sorted([*_STUDY, "committee_local_energy"])  # noqa: F822 (served by __getattr__)
__getattr__ = moved(
    __name__,
    {
        **dict.fromkeys(_STUDY, "wideflat.experiments.committee.study"),
        "committee_local_energy": "wideflat.flatness.committee",
    },
)
