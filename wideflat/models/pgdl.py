"""Load the Keras models of the PGDL competition (NeurIPS 2020) as PyTorch modules.

"Predicting Generalization in Deep Learning" released its trained models (Task 1: VGG-like
networks on CIFAR-10, Task 2: Network-in-Network on SVHN, ...) as one folder per model, in the
format its starting kit reads (``ingestion_program/data_manager.py``, ``DataManager.load_model``
and ``ingestion_program/model_utils.py``, ``model_def_to_keras_sequential``)::

    input_data/task1_v4/
        model_configs.json          hyper-parameters of every model (not read here)
        dataset_1/train/shard_*.tfrecord   training images, NHWC float32 (not read here)
        model_<id>/config.json      {"model_config": [layer, ...], "input_shape": [H, W, C]}
        model_<id>/weights.hdf5     trained weights (Keras ``save_weights``, HDF5)
        model_<id>/weights_init.hdf5   initial weights, same layout

* ``config.json`` is not Keras's ``model.to_json()``: ``model_config`` is a list of dicts, one
  per layer of a ``tf.keras.Sequential``, each ``{"layer_name": <tf.keras.layers class name>,
  **constructor kwargs}``; floats holding an integer are cast to ``int`` before the call.
  ``input_shape`` is ``[H, W, C]`` (channels last; the model is built on ``[0] + input_shape``).
* ``weights.hdf5`` is Keras's HDF5 weights layout (TF 2.2, ``hdf5_format.
  save_weights_to_hdf5_group``): the root attribute ``layer_names`` lists every layer in model
  order (weightless ones included; long lists are split into ``layer_names0``,
  ``layer_names1``, ...); each layer has a group whose attribute ``weight_names`` lists its
  weights (trainable first: ``kernel``, ``bias``; BatchNorm ``gamma``, ``beta``,
  ``moving_mean``, ``moving_variance``), each stored as a dataset at ``<group>/<weight name>``
  (e.g. ``conv2d/conv2d/kernel:0``). Keras loads it by topology: the k-th layer *with weights*
  in the file goes to the k-th layer with weights in the model, whatever the names. A
  full-model file (weights under a ``model_weights`` group) is read too.

The returned :class:`PGDLModel` is an ``nn.Sequential`` equal to the Keras forward pass, but
it takes **NCHW** input like every torch vision model (permute PGDL's NHWC images with
``x.permute(0, 3, 1, 2)``). Conversions: Conv2D kernels ``(kh, kw, in, out)`` become
``(out, in, kh, kw)``; Dense kernels ``(in, out)`` become ``(out, in)``; ``Flatten`` after a
convolution flattens in Keras's ``(H, W, C)`` order (:class:`ChannelsLastFlatten`), so the
first Dense layer keeps Keras's weights unpermuted; ``padding="same"`` pads like TensorFlow
(the odd pixel at the bottom/right, :class:`SamePad2d`); BatchNormalization keeps Keras's
``epsilon`` (default 1e-3), and its ``momentum`` m becomes torch's ``1 - m``. Activations
named in a layer (``relu``, ``tanh``, ``sigmoid``, ``softmax``, ``elu``, ``linear``) become
separate modules after it. Parameters are float32, as stored; the model is returned in
``eval()`` mode.

Supported layers: Conv2D, Dense, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
GlobalMaxPooling2D, Flatten, Dropout, BatchNormalization, Activation (and the Keras aliases
MaxPool2D, AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D). Anything else, or a constructor
argument that changes the forward pass and has no equivalent here (``channels_first``,
dilation, groups, ...), raises ``ValueError`` naming it. Initializers, regularizers,
constraints, names and ``input_shape`` are read and ignored (they do not change the forward
pass). HDF5 is read with ``h5py``, an optional extra: ``pip install 'wideflat[pgdl]'``.

References:
    Jiang, Foret, Yak, Roy, Mobahi, Dziugaite, Bengio, Gunasekar, Guyon, Neyshabur.
    "NeurIPS 2020 Competition: Predicting Generalization in Deep Learning." arXiv:2012.07976,
    2020. Data and task descriptions: github.com/google-research/google-research/tree/master/
    pgdl; starting kit (ingestion program) e.g. as redistributed in github.com/cadurosar/pgdl.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ChannelsLastFlatten", "PGDLModel", "SameAvgPool2d", "SamePad2d", "load_pgdl_model"]


# Constructor arguments that never change the forward pass (training-time or bookkeeping).
_IGNORED = frozenset(
    {
        "name",
        "trainable",
        "dtype",
        "input_shape",
        "batch_input_shape",
        "batch_size",
        "input_dim",
        "kernel_initializer",
        "bias_initializer",
        "kernel_regularizer",
        "bias_regularizer",
        "activity_regularizer",
        "kernel_constraint",
        "bias_constraint",
        "beta_initializer",
        "gamma_initializer",
        "moving_mean_initializer",
        "moving_variance_initializer",
        "beta_regularizer",
        "gamma_regularizer",
        "beta_constraint",
        "gamma_constraint",
        "seed",
    }
)

_ACTIVATIONS: dict[str | None, Callable[[], nn.Module] | None] = {
    None: None,
    "linear": None,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    # Keras applies softmax to the last (channels) axis: dim 1 in NCHW and in (N, F).
    "softmax": lambda: nn.Softmax(dim=1),
}

_SUPPORTED = (
    "Conv2D",
    "Dense",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "Flatten",
    "Dropout",
    "BatchNormalization",
    "Activation",
)

_ALIASES = {
    "MaxPool2D": "MaxPooling2D",
    "AvgPool2D": "AveragePooling2D",
    "GlobalAvgPool2D": "GlobalAveragePooling2D",
    "GlobalMaxPool2D": "GlobalMaxPooling2D",
}


# ---- modules that make torch compute what Keras computes ------------------------------------


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding along one axis: ``out = ceil(size / stride)`` and the
    total ``max((out - 1) * stride + kernel - size, 0)`` split with the odd pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SamePad2d(nn.Module):
    """Pad an NCHW tensor as TensorFlow's ``padding="same"`` does before a convolution or
    pooling with this kernel and stride.

    TensorFlow pads ``p = max((ceil(n / s) - 1) s + k - n, 0)`` pixels per axis,
    ``floor(p / 2)`` before and the rest after; torch's symmetric ``padding`` differs when
    ``p`` is odd (even kernels, strides > 1). The padding depends on the input size, so it is
    computed at each call.

    Args:
        kernel_size: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        value: The fill value (0 before a convolution, ``-inf`` before a max pooling).

    Example:
        >>> import torch
        >>> SamePad2d((2, 2), (1, 1))(torch.ones(1, 1, 3, 3)).shape
        torch.Size([1, 1, 4, 4])
    """

    def __init__(
        self, kernel_size: tuple[int, int], stride: tuple[int, int], value: float = 0.0
    ) -> None:
        super().__init__()
        self.kernel_size = tuple(kernel_size)
        self.stride = tuple(stride)
        self.value = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _same_pads(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = _same_pads(x.shape[-1], self.kernel_size[1], self.stride[1])
        return F.pad(x, (left, right, top, bottom), value=self.value)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, value={self.value}"


class SameAvgPool2d(nn.Module):
    """TensorFlow's average pooling with ``padding="same"``: each window averages only the
    input pixels it covers (padding is not counted).

    Computed as ``avgpool(pad0(x)) / avgpool(pad0(1))``: both pools divide by the full window
    size, which cancels, leaving (sum of covered pixels) / (number of covered pixels).

    Args:
        kernel_size: ``(kh, kw)``.
        stride: ``(sh, sw)``.

    Example:
        >>> import torch
        >>> SameAvgPool2d((2, 2), (2, 2))(torch.ones(1, 1, 3, 3))
        tensor([[[[1., 1.],
                  [1., 1.]]]])
    """

    def __init__(self, kernel_size: tuple[int, int], stride: tuple[int, int]) -> None:
        super().__init__()
        self.kernel_size = tuple(kernel_size)
        self.stride = tuple(stride)
        self.pad = SamePad2d(kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(x[:1, :1])
        total = F.avg_pool2d(self.pad(x), self.kernel_size, self.stride)
        count = F.avg_pool2d(self.pad(ones), self.kernel_size, self.stride)
        return total / count

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class ChannelsLastFlatten(nn.Module):
    """Flatten an NCHW tensor in Keras's channels-last order: ``(N, C, H, W) -> (N, H*W*C)``.

    Keras flattens its NHWC activations as ``index = (h * W + w) * C + c``; permuting to NHWC
    before ``flatten`` reproduces it, so the next Dense layer uses Keras's kernel as it is.

    Example:
        >>> import torch
        >>> x = torch.arange(8.0).reshape(1, 2, 2, 2)  # C=2: channel 0 is 0..3, channel 1 is 4..7
        >>> ChannelsLastFlatten()(x)
        tensor([[0., 4., 1., 5., 2., 6., 3., 7.]])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


class PGDLModel(nn.Sequential):
    """The torch equivalent of one PGDL Keras ``Sequential`` (built by :func:`load_pgdl_model`).

    Attributes:
        input_shape: ``(C, H, W)``, the NCHW shape of one input.
        keras_layers: The Keras class name of each layer of ``config.json``, in order.
        source: The weights file the parameters were read from.
    """

    def __init__(
        self,
        modules: Sequence[nn.Module],
        *,
        input_shape: tuple[int, int, int],
        keras_layers: Sequence[str],
        source: str,
    ) -> None:
        super().__init__(*modules)
        self.input_shape = tuple(input_shape)
        self.keras_layers = tuple(keras_layers)
        self.source = source


# ---- config.json --------------------------------------------------------------------------


def _cast_integers(value: Any) -> Any:
    """The starting kit's cast: a float holding an integer becomes an ``int``."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _pair(where: str, name: str, value: Any) -> tuple[int, int]:
    """Keras's ``normalize_tuple``: an int ``n`` is ``(n, n)``; a list must hold two ints."""
    items = [value, value] if not isinstance(value, list | tuple) else list(value)
    items = [_cast_integers(v) for v in items]
    if len(items) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ValueError(f"Invalid {where}: {name}={value!r} (expected an int or two ints)")
    if min(items) < 1:
        raise ValueError(f"Invalid {where}: {name}={value!r} (expected positive sizes)")
    return items[0], items[1]


class _Args:
    """The kwargs of one layer: ``take`` each argument once, then ``finish`` rejects the rest."""

    def __init__(self, where: str, kwargs: dict[str, Any]) -> None:
        self.where = where
        self.kwargs = {k: _cast_integers(v) for k, v in kwargs.items() if k not in _IGNORED}

    def take(self, name: str, default: Any = ..., allowed: Sequence[Any] | None = None) -> Any:
        if name not in self.kwargs:
            if default is ...:
                raise ValueError(f"Invalid {self.where}: missing argument {name!r}")
            return default
        value = self.kwargs.pop(name)
        if allowed is not None and value not in allowed:
            raise ValueError(
                f"Invalid {self.where}: {name}={value!r} is not supported "
                f"(expected one of {', '.join(map(repr, allowed))})"
            )
        return value

    def padding(self) -> str:
        value = self.take("padding", "valid")
        if not isinstance(value, str) or value.lower() not in ("valid", "same"):
            raise ValueError(
                f"Invalid {self.where}: padding={value!r} (expected 'valid' or 'same')"
            )
        return value.lower()

    def channels_last(self) -> None:
        self.take("data_format", None, allowed=(None, "channels_last"))

    def activation(self) -> nn.Module | None:
        value = self.take("activation", None)
        if not (value is None or isinstance(value, str)) or value not in _ACTIVATIONS:
            raise ValueError(
                f"Invalid {self.where}: activation={value!r} is not supported (expected one of "
                f"{', '.join(repr(k) for k in _ACTIVATIONS if k is not None)} or None)"
            )
        factory = _ACTIVATIONS[value]
        return None if factory is None else factory()

    def finish(self) -> None:
        if self.kwargs:
            names = ", ".join(f"{k}={v!r}" for k, v in sorted(self.kwargs.items()))
            raise ValueError(f"Invalid {self.where}: unsupported argument(s) {names}")


def _out_size(size: int, kernel: int, stride: int, padding: str) -> int:
    return -(-size // stride) if padding == "same" else (size - kernel) // stride + 1


class _Builder:
    """Walks ``model_config``, tracking the activation shape, and collects torch modules plus
    the (module, expected Keras weight shapes) of each layer with weights."""

    def __init__(self, input_shape: tuple[int, int, int]) -> None:
        height, width, channels = input_shape
        self.shape: tuple[int, ...] = (channels, height, width)  # torch order, no batch
        self.modules: list[nn.Module] = []
        self.weighted: list[tuple[str, nn.Module, dict[str, tuple[int, ...]]]] = []

    def spatial(self, where: str) -> tuple[int, int, int]:
        if len(self.shape) != 3:
            raise ValueError(f"Invalid {where}: expects an image input, got features {self.shape}")
        return self.shape  # type: ignore[return-value]

    def add(self, kind: str, where: str, kwargs: dict[str, Any]) -> None:
        args = _Args(where, kwargs)
        getattr(self, "_" + kind)(args)
        args.finish()
        if any(s < 1 for s in self.shape):
            raise ValueError(f"Invalid {where}: its output would be empty (shape {self.shape})")

    def _activation_after(self, args: _Args) -> None:
        module = args.activation()
        if module is not None:
            self.modules.append(module)

    def _Conv2D(self, args: _Args) -> None:
        channels, height, width = self.spatial(args.where)
        filters = args.take("filters")
        if not isinstance(filters, int) or isinstance(filters, bool) or filters < 1:
            raise ValueError(f"Invalid {args.where}: filters={filters!r} (expected an int >= 1)")
        kernel = _pair(args.where, "kernel_size", args.take("kernel_size"))
        stride = _pair(args.where, "strides", args.take("strides", 1))
        if _pair(args.where, "dilation_rate", args.take("dilation_rate", 1)) != (1, 1):
            raise ValueError(f"Invalid {args.where}: dilation_rate != 1 is not supported")
        args.take("groups", 1, allowed=(1,))
        padding = args.padding()
        args.channels_last()
        bias = args.take("use_bias", True, allowed=(True, False))
        symmetric = padding == "valid" or (stride == (1, 1) and kernel[0] % 2 and kernel[1] % 2)
        torch_pad = (0, 0) if padding == "valid" else (kernel[0] // 2, kernel[1] // 2)
        if not symmetric:  # TensorFlow's asymmetric or input-size-dependent "same" padding
            self.modules.append(SamePad2d(kernel, stride))
            torch_pad = (0, 0)
        conv = nn.Conv2d(channels, filters, kernel, stride, padding=torch_pad, bias=bias)
        self.modules.append(conv)
        expected = {"kernel": (*kernel, channels, filters)}
        if bias:
            expected["bias"] = (filters,)
        self.weighted.append((args.where, conv, expected))
        self.shape = (
            filters,
            _out_size(height, kernel[0], stride[0], padding),
            _out_size(width, kernel[1], stride[1], padding),
        )
        self._activation_after(args)

    def _Dense(self, args: _Args) -> None:
        if len(self.shape) != 1:
            raise ValueError(
                f"Invalid {args.where}: Dense on an image (shape {self.shape}) is not supported; "
                "Flatten or global-pool first"
            )
        units = args.take("units")
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(f"Invalid {args.where}: units={units!r} (expected an int >= 1)")
        bias = args.take("use_bias", True, allowed=(True, False))
        linear = nn.Linear(self.shape[0], units, bias=bias)
        self.modules.append(linear)
        expected = {"kernel": (self.shape[0], units)}
        if bias:
            expected["bias"] = (units,)
        self.weighted.append((args.where, linear, expected))
        self.shape = (units,)
        self._activation_after(args)

    def _pool(self, args: _Args, kind: str) -> None:
        channels, height, width = self.spatial(args.where)
        kernel = _pair(args.where, "pool_size", args.take("pool_size", 2))
        strides = args.take("strides", None)
        stride = kernel if strides is None else _pair(args.where, "strides", strides)
        padding = args.padding()
        args.channels_last()
        if padding == "valid":
            pool = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
            self.modules.append(pool(kernel, stride))
        elif kind == "max":  # padded pixels never win a max
            self.modules += [SamePad2d(kernel, stride, -math.inf), nn.MaxPool2d(kernel, stride)]
        else:
            self.modules.append(SameAvgPool2d(kernel, stride))
        self.shape = (
            channels,
            _out_size(height, kernel[0], stride[0], padding),
            _out_size(width, kernel[1], stride[1], padding),
        )

    def _MaxPooling2D(self, args: _Args) -> None:
        self._pool(args, "max")

    def _AveragePooling2D(self, args: _Args) -> None:
        self._pool(args, "avg")

    def _global(self, args: _Args, pool: type[nn.Module]) -> None:
        channels, _, _ = self.spatial(args.where)
        args.channels_last()
        args.take("keepdims", False, allowed=(False,))
        self.modules += [pool(1), nn.Flatten()]
        self.shape = (channels,)

    def _GlobalAveragePooling2D(self, args: _Args) -> None:
        self._global(args, nn.AdaptiveAvgPool2d)

    def _GlobalMaxPooling2D(self, args: _Args) -> None:
        self._global(args, nn.AdaptiveMaxPool2d)

    def _Flatten(self, args: _Args) -> None:
        args.channels_last()
        if len(self.shape) == 3:
            self.modules.append(ChannelsLastFlatten())
            self.shape = (math.prod(self.shape),)

    def _Dropout(self, args: _Args) -> None:
        rate = args.take("rate")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1:
            raise ValueError(f"Invalid {args.where}: rate={rate!r} (expected a number in [0, 1))")
        args.take("noise_shape", None, allowed=(None,))
        self.modules.append(nn.Dropout(float(rate)))

    def _BatchNormalization(self, args: _Args) -> None:
        rank = len(self.shape) + 1  # with the batch axis
        axis = args.take("axis", -1)
        if isinstance(axis, list) and len(axis) == 1:
            axis = axis[0]
        if axis not in (-1, rank - 1):
            raise ValueError(
                f"Invalid {args.where}: axis={axis!r} (only the channels-last axis is supported)"
            )
        momentum = args.take("momentum", 0.99)
        epsilon = args.take("epsilon", 1e-3)
        for name in ("momentum", "epsilon"):
            value = momentum if name == "momentum" else epsilon
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"Invalid {args.where}: {name}={value!r} (expected a number)")
        if not 0 <= momentum <= 1 or epsilon <= 0:
            raise ValueError(
                f"Invalid {args.where}: momentum={momentum!r}, epsilon={epsilon!r} "
                "(expected momentum in [0, 1] and epsilon > 0)"
            )
        args.take("center", True, allowed=(True,))
        args.take("scale", True, allowed=(True,))
        args.take("fused", None, allowed=(None, True, False))  # an implementation choice
        args.take("renorm", False, allowed=(False,))
        args.take("virtual_batch_size", None, allowed=(None,))
        args.take("adjustment", None, allowed=(None,))
        channels = self.shape[0]
        norm = (nn.BatchNorm2d if len(self.shape) == 3 else nn.BatchNorm1d)(
            channels, eps=float(epsilon), momentum=1.0 - float(momentum)
        )
        self.modules.append(norm)
        self.weighted.append(
            (
                args.where,
                norm,
                {n: (channels,) for n in ("gamma", "beta", "moving_mean", "moving_variance")},
            )
        )

    def _Activation(self, args: _Args) -> None:
        if "activation" not in args.kwargs:
            raise ValueError(f"Invalid {args.where}: missing argument 'activation'")
        self._activation_after(args)


def _read_config(path: Path) -> tuple[list[dict[str, Any]], tuple[int, int, int]]:
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"Invalid config file {path}: not JSON ({err})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_config"), list):
        raise ValueError(
            f"Invalid config file {path}: expected an object with a 'model_config' list "
            "(the PGDL starting kit's format)"
        )
    shape = config.get("input_shape")
    shape = [_cast_integers(s) for s in shape] if isinstance(shape, list) else shape
    if (
        not isinstance(shape, list)
        or len(shape) != 3
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
    ):
        raise ValueError(
            f"Invalid config file {path}: input_shape={config.get('input_shape')!r} "
            "(expected [height, width, channels])"
        )
    for index, layer in enumerate(config["model_config"]):
        if not isinstance(layer, dict) or not isinstance(layer.get("layer_name"), str):
            raise ValueError(
                f"Invalid config file {path}: layer {index} is {layer!r} "
                "(expected an object with a 'layer_name')"
            )
    return config["model_config"], (shape[0], shape[1], shape[2])


# ---- weights.hdf5 -------------------------------------------------------------------------


def _import_h5py() -> Any:
    from wideflat._optional import import_optional

    return import_optional("h5py", "reading PGDL weights (HDF5)")


def _strings(group: Any, name: str) -> list[str]:
    """Keras's ``load_attributes_from_hdf5_group``: ``name``, or its chunks ``name0``, ..."""
    if name in group.attrs:
        values = list(np.atleast_1d(group.attrs[name]))
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values += list(np.atleast_1d(group.attrs[f"{name}{chunk}"]))
            chunk += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _read_weights(path: Path) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """The layers with weights, in the file's topological order: ``(name, [(weight, array)])``."""
    h5py = _import_h5py()
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"Invalid weights file {path}: not HDF5 ({err})") from None
    with handle as root:
        if not _strings(root, "layer_names") and "model_weights" in root:
            root = root["model_weights"]  # a full-model save: the weights sit one level down
        names = _strings(root, "layer_names")
        if not names:
            raise ValueError(
                f"Invalid weights file {path}: no 'layer_names' attribute "
                "(expected Keras's save_weights HDF5 layout)"
            )
        layers = []
        for name in names:
            if name not in root:
                raise ValueError(f"Invalid weights file {path}: layer group {name!r} is missing")
            group = root[name]
            weights = [(w, np.asarray(group[w])) for w in _strings(group, "weight_names")]
            if weights:
                layers.append((name, weights))
    return layers


def _short(weight_name: str) -> str:
    """``'conv2d/kernel:0'`` -> ``'kernel'``."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _assign(
    path: Path,
    where: str,
    module: nn.Module,
    expected: dict[str, tuple[int, ...]],
    name: str,
    stored: list[tuple[str, np.ndarray]],
) -> None:
    head = f"Invalid weights file {path}: layer {name!r} (for {where})"
    if len(stored) != len(expected):
        raise ValueError(f"{head} holds {len(stored)} weights, expected {len(expected)}")
    by_name = {_short(w): a for w, a in stored}
    if set(by_name) == set(expected):
        values = by_name  # matched by name (robust to the stored order)
    else:  # Keras's own rule: trainable weights first, in the layer's order
        values = {key: array for key, (_, array) in zip(expected, stored, strict=True)}
    for key, shape in expected.items():
        if tuple(values[key].shape) != shape:
            raise ValueError(
                f"{head}: weight {key!r} has shape {tuple(values[key].shape)}, expected {shape}"
            )
        if not np.issubdtype(values[key].dtype, np.floating):
            raise ValueError(f"{head}: weight {key!r} has dtype {values[key].dtype}")

    def tensor(key: str, *axes: int) -> torch.Tensor:
        array = values[key].transpose(axes) if axes else values[key]
        return torch.from_numpy(np.ascontiguousarray(array))

    with torch.no_grad():
        if isinstance(module, nn.Conv2d):
            module.weight.copy_(tensor("kernel", 3, 2, 0, 1))  # (kh, kw, in, out) -> (out, in, ..)
        elif isinstance(module, nn.Linear):
            module.weight.copy_(tensor("kernel", 1, 0))  # (in, out) -> (out, in)
        else:
            module.weight.copy_(tensor("gamma"))
            module.bias.copy_(tensor("beta"))
            module.running_mean.copy_(tensor("moving_mean"))
            module.running_var.copy_(tensor("moving_variance"))
        if not isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d) and module.bias is not None:
            module.bias.copy_(tensor("bias"))


# ---- the loader ---------------------------------------------------------------------------


def load_pgdl_model(folder: str | os.PathLike[str], *, weights: str = "weights.hdf5") -> PGDLModel:
    """Build the torch equivalent of one PGDL model folder (``config.json`` + HDF5 weights).

    The k-th Keras layer of ``config.json`` becomes one torch module (plus its activation,
    plus :class:`SamePad2d` where TensorFlow pads asymmetrically); the k-th layer with weights
    in the HDF5 file fills the k-th layer with weights of the model (Keras's topological
    loading, names ignored), after checking every shape. For an NHWC batch ``x`` that Keras
    maps to ``y``, the returned model maps ``x.permute(0, 3, 1, 2)`` to ``y`` (up to float
    rounding). The format is described in this module's docstring.

    Args:
        folder: A model folder, e.g. ``public_data/input_data/task1_v4/model_0``.
        weights: The weights file in it: ``"weights.hdf5"`` (trained) or
            ``"weights_init.hdf5"`` (at initialization).

    Returns:
        A :class:`PGDLModel` (an ``nn.Sequential``) in ``eval()`` mode with float32
        parameters, taking NCHW input of shape ``(N, *model.input_shape)``.

    Raises:
        FileNotFoundError: If the folder, its ``config.json`` or the weights file is missing.
        ValueError: For a layer class or constructor argument this loader does not support
            (the message names it), a malformed ``config.json``, or a weights file that is not
            Keras HDF5, holds another number of layers with weights, or a weight of another
            shape than the configuration implies.
        ImportError: If h5py is not installed (``pip install 'wideflat[pgdl]'``).

    Example:
        >>> load_pgdl_model("no/such/model_0")
        Traceback (most recent call last):
        ...
        FileNotFoundError: PGDL model folder not found: no/such/model_0
        >>> net = load_pgdl_model("input_data/task1_v4/model_0")  # doctest: +SKIP
        >>> net(images_nhwc.permute(0, 3, 1, 2))  # doctest: +SKIP

    References:
        Jiang et al. "NeurIPS 2020 Competition: Predicting Generalization in Deep Learning."
        arXiv:2012.07976, 2020.
    """
    if not isinstance(weights, str) or not weights:
        raise ValueError(
            f"Invalid weights: {weights!r} (expected a file name, e.g. 'weights.hdf5')"
        )
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"PGDL model folder not found: {folder}")
    config_path, weights_path = root / "config.json", root / weights
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"PGDL model file not found: {path}")

    layers, input_shape = _read_config(config_path)
    builder = _Builder(input_shape)
    names = []
    for index, layer in enumerate(layers):
        kwargs = dict(layer)
        keras_name = kwargs.pop("layer_name")
        kind = _ALIASES.get(keras_name, keras_name)
        if kind not in _SUPPORTED:
            raise ValueError(
                f"Unsupported PGDL layer {index} of {config_path}: {keras_name} "
                f"(supported: {', '.join(_SUPPORTED)})"
            )
        names.append(keras_name)
        builder.add(kind, f"layer {index} ({keras_name}) of {config_path}", kwargs)

    stored = _read_weights(weights_path)
    if len(stored) != len(builder.weighted):
        raise ValueError(
            f"Invalid weights file {weights_path}: it holds {len(stored)} layers with weights, "
            f"{config_path} describes {len(builder.weighted)}"
        )
    for (where, module, expected), (name, arrays) in zip(builder.weighted, stored, strict=True):
        _assign(weights_path, where, module, expected, name, arrays)

    model = PGDLModel(
        builder.modules,
        input_shape=(input_shape[2], input_shape[0], input_shape[1]),
        keras_layers=names,
        source=str(weights_path),
    )
    return model.eval()
