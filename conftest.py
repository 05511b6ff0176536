"""pytest at the repository root: leave out the doctests of optional integrations whose
framework is not installed (they import it at module level)."""

import importlib.util

collect_ignore = (
    [] if importlib.util.find_spec("lightning") else ["wideflat/integrations/lightning.py"]
)
