"""The optimizers' validators now live in :mod:`wideflat._validate`, shared by every package;
this private module re-exports them for code that imported it here."""

from .._validate import *  # noqa: F403
from .._validate import __all__  # noqa: F401
