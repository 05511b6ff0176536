"""Optional dependencies (torchvision, h5py, lightning, tensorboard): import them, or say in
one line what to install.

An optional package can be absent, or installed but unable to load: PyPI's torchvision wheels
are built for PyPI's CUDA torch, and next to the CPU torch wheel their compiled ops fail at
import (``RuntimeError: operator torchvision::nms does not exist``). Both become an
``ImportError`` whose message names the feature, the package and the fix.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["import_optional"]

_EXTRAS = {
    "torchvision": "vision",
    "h5py": "pgdl",
    "lightning": "lightning",
    "tensorboard": "tensorboard",
}


def import_optional(module: str, feature: str) -> ModuleType:
    """``importlib.import_module(module)``, with one clear ``ImportError`` when it cannot load.

    Args:
        module: the module to import, e.g. ``"torchvision.models"``.
        feature: what needs it, for the message (e.g. ``"model 'resnet50'"``).

    Raises:
        ImportError: the package is missing, or installed but fails to import.

    Example:
        >>> import_optional("json", "this example").dumps([1])
        '[1]'
    """
    package = module.split(".")[0]
    extra = _EXTRAS.get(package)
    hint = f"pip install 'wideflat[{extra}]'" if extra else f"pip install {package}"
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is not None and err.name.split(".")[0] != package:
            raise  # the package is there, one of *its* dependencies is not
        raise ImportError(
            f"{feature} needs {package}, which is an optional extra: {hint}"
        ) from None
    except Exception as err:  # noqa: BLE001 - compiled ops that do not load raise RuntimeError
        import torch

        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ImportError(
            f"{feature} needs {package}, which is installed but fails to load ({reason}); "
            f"install the {package} built for torch {torch.__version__} (README: "
            f"'Optional torchvision')"
        ) from err
