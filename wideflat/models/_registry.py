"""Model registry: ``register_model``, ``create_model``, ``list_models``.

One table maps a name to a builder. Builders take the keyword-only arguments
``num_classes``, ``in_channels`` and ``image_size`` (plus their own options) and return a
freshly initialized ``torch.nn.Module``. A model whose builder needs an optional package
(torchvision) is registered with ``requires=("torchvision",)``: it is always listed, and
creating it without the package raises an ``ImportError`` that says which extra to install.
The optional package is looked up with ``importlib.util.find_spec`` and never imported here.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import nn

from wideflat import _validate as check

__all__ = [
    "ModelInfo",
    "create_model",
    "is_model_available",
    "list_models",
    "model_info",
    "register_model",
]

Builder = Callable[..., nn.Module]

# Which ``pip install wideflat[...]`` extra provides each optional package.
_EXTRAS = {"torchvision": "vision"}

_DEFAULT_EXAMPLE = MappingProxyType({"num_classes": 10, "in_channels": 3, "image_size": 32})


@dataclass(frozen=True)
class ModelInfo:
    """A registry entry.

    Attributes:
        name: Registry name (lower case).
        builder: Callable ``builder(*, num_classes, in_channels, image_size, **options)``.
        requires: Optional packages the builder imports (e.g. ``("torchvision",)``).
        summary: First line of the builder's docstring.
        example: Small ``create_model`` arguments that tests use for a quick
            forward/backward (``num_classes``, ``in_channels``, ``image_size`` and options).
    """

    name: str
    builder: Builder
    requires: tuple[str, ...] = ()
    summary: str = ""
    example: Mapping[str, Any] = field(default_factory=lambda: dict(_DEFAULT_EXAMPLE))


_REGISTRY: dict[str, ModelInfo] = {}


def _module_available(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    return importlib.util.find_spec(module) is not None


def _missing(info: ModelInfo) -> list[str]:
    return [m for m in info.requires if not _module_available(m)]


def register_model(
    name: str,
    *,
    requires: tuple[str, ...] = (),
    example: Mapping[str, Any] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator that adds a model builder to the registry under ``name``.

    Args:
        name: Non-empty lower-case identifier; must not be registered already.
        requires: Names of optional packages the builder imports lazily. While one is
            missing, the model is listed but ``create_model`` raises ``ImportError``.
        example: ``create_model`` keyword arguments for a small test instance; defaults
            to ``num_classes=10, in_channels=3, image_size=32``.

    Returns:
        The decorator; it returns the builder unchanged.

    Raises:
        ValueError: If ``name`` is empty, not lower case, or already registered, or if
            ``requires`` is not a tuple of strings.

    Example:
        >>> from torch import nn
        >>> @register_model("doc_linear")
        ... def doc_linear(*, num_classes, in_channels, image_size):
        ...     features = in_channels * image_size**2
        ...     return nn.Sequential(nn.Flatten(), nn.Linear(features, num_classes))
        >>> create_model("doc_linear", num_classes=2, in_channels=1, image_size=4)[1].out_features
        2
        >>> _ = _REGISTRY.pop("doc_linear")  # keep the doctest side-effect free
    """
    if not isinstance(name, str) or not name or name != name.lower() or name.strip() != name:
        raise ValueError(f"Invalid model name: {name!r} (expected a non-empty lower-case string)")
    if name in _REGISTRY:
        raise ValueError(f"Invalid model name: {name!r} is already registered")
    if not isinstance(requires, tuple) or not all(isinstance(r, str) and r for r in requires):
        raise ValueError(f"Invalid requires: {requires!r} (expected a tuple of module names)")
    if example is not None and not isinstance(example, Mapping):
        raise ValueError(f"Invalid example: {example!r} (expected a mapping)")

    def decorator(builder: Builder) -> Builder:
        if not callable(builder):
            raise ValueError(f"Invalid builder for {name!r}: {builder!r} is not callable")
        doc = inspect.getdoc(builder) or ""
        merged = dict(_DEFAULT_EXAMPLE)
        merged.update(example or {})
        _REGISTRY[name] = ModelInfo(
            name=name,
            builder=builder,
            requires=requires,
            summary=doc.splitlines()[0] if doc else "",
            example=MappingProxyType(merged),
        )
        return builder

    return decorator


def list_models(*, available_only: bool = False) -> list[str]:
    """Sorted names of the registered models.

    Args:
        available_only: If true, leave out models whose optional packages are missing
            (e.g. the torchvision models without torchvision).

    Returns:
        The sorted list of names.

    Example:
        >>> "smallconvnet" in list_models()
        True
    """
    if not isinstance(available_only, bool):
        raise ValueError(f"Invalid available_only: {available_only!r} (expected a bool)")
    names = sorted(_REGISTRY)
    if available_only:
        names = [n for n in names if not _missing(_REGISTRY[n])]
    return names


def _lookup(name: str) -> ModelInfo:
    if not isinstance(name, str) or name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"Unknown model: {name!r}. Known models: {known}")
    return _REGISTRY[name]


def model_info(name: str) -> ModelInfo:
    """The registry entry of ``name``.

    Raises:
        ValueError: If ``name`` is not registered (the message lists the known names).

    Example:
        >>> model_info("resnet110").requires
        ()
    """
    return _lookup(name)


def is_model_available(name: str) -> bool:
    """Whether ``name`` is registered and its optional packages are installed.

    Raises:
        ValueError: If ``name`` is not registered.

    Example:
        >>> is_model_available("mlp")
        True
    """
    return not _missing(_lookup(name))


def create_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    **kwargs: Any,
) -> nn.Module:
    """Build a freshly initialized model from the registry.

    Args:
        name: A name from ``list_models()``.
        num_classes: Number of output logits.
        in_channels: Channels of the input images (1 for Fashion-MNIST, 3 for CIFAR).
        image_size: Side of the square input images (28, 32, 64, ...).
        **kwargs: Model-specific options (e.g. ``hidden=(64,)`` for ``"mlp"``).

    Returns:
        The model, in training mode, on the CPU, in float32.

    Raises:
        ValueError: If ``name`` is unknown (the message lists the known models), a size is
            not a positive int, or an option is not accepted by the model.
        ImportError: If the model needs an optional package that is not installed; the
            message names the ``pip install`` command.

    Example:
        >>> import torch
        >>> net = create_model("smallconvnet", num_classes=10, in_channels=1, image_size=28)
        >>> net(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    info = _lookup(name)
    check.positive_int("num_classes", num_classes)
    check.positive_int("in_channels", in_channels)
    check.positive_int("image_size", image_size)
    params = inspect.signature(info.builder).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        accepted = {
            n
            for n, p in params.items()
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        } - {"num_classes", "in_channels", "image_size"}
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise ValueError(
                f"Invalid option(s) for model {name!r}: {', '.join(unknown)}. "
                f"Accepted options: {', '.join(sorted(accepted)) or '(none)'}"
            )
    missing = _missing(info)
    if missing:
        hints = sorted(
            {
                f"pip install 'wideflat[{_EXTRAS[m]}]'" if m in _EXTRAS else f"pip install {m}"
                for m in missing
            }
        )
        raise ImportError(
            f"Model {name!r} needs {', '.join(missing)}, which is not installed. "
            f"Install it with: {' && '.join(hints)}"
        )
    return info.builder(
        num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kwargs
    )
