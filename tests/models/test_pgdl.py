"""PGDL model folders (config.json + Keras HDF5 weights) loaded as torch modules.

The folders are written here in the starting kit's format: ``config.json`` holds
``{"model_config": [{"layer_name": ..., **kwargs}], "input_shape": [H, W, C]}`` and the
weights file is Keras's ``save_weights`` HDF5 layout, written with h5py (root attribute
``layer_names`` over every layer, one group per layer with a ``weight_names`` attribute and a
dataset per weight). Outputs are compared with an independent NumPy forward pass of the Keras
layers on NHWC arrays (explicit loops over output positions, out-of-range pixels skipped),
never with the loader's own modules.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from wideflat.models.pgdl import load_pgdl_model


@pytest.fixture
def h5py():
    return pytest.importorskip("h5py")


# ---- a NumPy Keras (NHWC, float64) ---------------------------------------------------------


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int | float) else tuple(int(i) for i in v)


def _window_starts(size, kernel, stride, padding):
    """Start index of each output window along one axis (TensorFlow's "same": the output
    has ceil(size / stride) positions and the padding before is floor(total / 2))."""
    if padding == "valid":
        return [i * stride for i in range((size - kernel) // stride + 1)]
    out = -(-size // stride)
    before = max((out - 1) * stride + kernel - size, 0) // 2
    return [i * stride - before for i in range(out)]


def _windows(x, kernel, stride, padding):
    """Yield (i, j, rows, cols) with only the in-range rows/cols of each window."""
    _, height, width, _ = x.shape
    for i, r0 in enumerate(_window_starts(height, kernel[0], stride[0], padding)):
        for j, c0 in enumerate(_window_starts(width, kernel[1], stride[1], padding)):
            rows = [r for r in range(r0, r0 + kernel[0]) if 0 <= r < height]
            cols = [c for c in range(c0, c0 + kernel[1]) if 0 <= c < width]
            yield i, j, r0, c0, rows, cols


def _activation(name, y):
    if name in (None, "linear"):
        return y
    if name == "relu":
        return np.maximum(y, 0.0)
    if name == "tanh":
        return np.tanh(y)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-y))
    if name == "softmax":
        e = np.exp(y - y.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise AssertionError(name)


def keras_forward(model_config, weights, x):
    """``weights``: one list of arrays per layer with weights, in Keras's stored order."""
    stack = list(weights)
    for layer in model_config:
        kind, kw = layer["layer_name"], layer
        if kind == "Conv2D":
            kernel_w, bias = stack.pop(0)
            k, s = _pair(kw["kernel_size"]), _pair(kw.get("strides", 1))
            positions = list(_windows(x, k, s, kw.get("padding", "valid")))
            out_h = max(p[0] for p in positions) + 1
            out_w = max(p[1] for p in positions) + 1
            y = np.zeros((x.shape[0], out_h, out_w, kernel_w.shape[3]))
            for i, j, r0, c0, rows, cols in positions:
                for r in rows:
                    for c in cols:
                        y[:, i, j, :] += x[:, r, c, :] @ kernel_w[r - r0, c - c0]
            x = _activation(kw.get("activation"), y + bias)
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            k = _pair(kw.get("pool_size", 2))
            s = k if kw.get("strides") is None else _pair(kw["strides"])
            positions = list(_windows(x, k, s, kw.get("padding", "valid")))
            out_h = max(p[0] for p in positions) + 1
            out_w = max(p[1] for p in positions) + 1
            y = np.zeros((x.shape[0], out_h, out_w, x.shape[3]))
            for i, j, _, _, rows, cols in positions:
                patch = x[:, rows][:, :, cols]  # only covered pixels: TF ignores padding
                reduce = np.max if kind == "MaxPooling2D" else np.mean
                y[:, i, j, :] = reduce(patch, axis=(1, 2))
            x = y
        elif kind == "GlobalAveragePooling2D":
            x = x.mean(axis=(1, 2))
        elif kind == "Flatten":
            x = x.reshape(x.shape[0], -1)  # NHWC memory order, as Keras flattens
        elif kind == "Dense":
            kernel_w, bias = stack.pop(0)
            x = _activation(kw.get("activation"), x @ kernel_w + bias)
        elif kind == "Dropout":
            pass  # inference
        elif kind == "BatchNormalization":
            gamma, beta, mean, var = stack.pop(0)
            x = (x - mean) / np.sqrt(var + kw.get("epsilon", 1e-3)) * gamma + beta
        elif kind == "Activation":
            x = _activation(kw["activation"], x)
        else:
            raise AssertionError(kind)
    assert not stack
    return x


# ---- writing a PGDL folder -----------------------------------------------------------------


def _keras_name(kind, counts):
    base = {"BatchNormalization": "batch_normalization", "Conv2D": "conv2d"}.get(
        kind, "".join("_" + ch.lower() if ch.isupper() else ch for ch in kind).lstrip("_")
    )
    n = counts.get(base, 0)
    counts[base] = n + 1
    return base if n == 0 else f"{base}_{n}"


def random_weights(model_config, input_shape, seed):
    """Keras-shaped random weights for each layer with weights, tracking the NHWC shape."""
    rng = np.random.default_rng(seed)
    x = np.zeros((1, *input_shape))
    out = []
    for index, layer in enumerate(model_config):
        kind = layer["layer_name"]
        if kind == "Conv2D":
            k = _pair(layer["kernel_size"])
            w = rng.normal(0, 0.4, (*k, x.shape[3], int(layer["filters"])))
            out.append([w.astype(np.float32), rng.normal(0, 0.1, w.shape[3]).astype(np.float32)])
        elif kind == "Dense":
            w = rng.normal(0, 0.4, (x.shape[1], int(layer["units"])))
            out.append([w.astype(np.float32), rng.normal(0, 0.1, w.shape[1]).astype(np.float32)])
        elif kind == "BatchNormalization":
            c = x.shape[-1]
            out.append(
                [
                    rng.uniform(0.5, 1.5, c).astype(np.float32),
                    rng.normal(0, 0.2, c).astype(np.float32),
                    rng.normal(0, 0.3, c).astype(np.float32),
                    rng.uniform(0.5, 2.0, c).astype(np.float32),
                ]
            )
        x = keras_forward(model_config[index : index + 1], out[-1:] if _has(kind) else [], x)
    return out


def _has(kind):
    return kind in ("Conv2D", "Dense", "BatchNormalization")


_SUFFIXES = {
    "Conv2D": ("kernel", "bias"),
    "Dense": ("kernel", "bias"),
    "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
}


def write_weights(
    h5py,
    path,
    model_config,
    weights,
    *,
    names=None,
    chunks=1,
    wrap=False,
    drop_weight=False,
    reverse=False,
    anonymous=False,
):
    """Keras's save_weights layout: every layer (weightless ones too) listed in ``layer_names``,
    groups created in sorted-name order, datasets at ``<layer>/<layer>/<weight>:0``."""
    counts = {}
    names = names or [_keras_name(layer["layer_name"], counts) for layer in model_config]
    stack = list(weights)
    per_layer = {}
    for name, layer in zip(names, model_config, strict=True):
        kind = layer["layer_name"]
        arrays = stack.pop(0) if _has(kind) else []
        suffixes = _SUFFIXES.get(kind, ())
        if anonymous:  # names Keras would not give: only the stored order tells them apart
            suffixes = [f"param_{i}" for i in range(len(suffixes))]
        entries = [(f"{name}/{s}:0", a) for s, a in zip(suffixes, arrays, strict=True)]
        per_layer[name] = entries[::-1] if reverse else entries
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if wrap else f
        encoded = np.array([n.encode("utf8") for n in names])
        if chunks == 1:
            root.attrs["layer_names"] = encoded
        else:
            for i, part in enumerate(np.array_split(encoded, chunks)):
                root.attrs[f"layer_names{i}"] = part
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.3.0-tf"
        for name in sorted(names):
            group = root.create_group(name)
            entries = per_layer[name][:-1] if drop_weight and per_layer[name] else per_layer[name]
            group.attrs["weight_names"] = np.array([w.encode("utf8") for w, _ in entries], "S")
            for weight_name, array in entries:
                group.create_dataset(weight_name, data=array)


def write_folder(h5py, folder, model_config, input_shape, seed=0, **kwargs):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(
        json.dumps({"model_config": model_config, "input_shape": list(input_shape)})
    )
    weights = random_weights(model_config, input_shape, seed)
    write_weights(h5py, folder / "weights.hdf5", model_config, weights, **kwargs)
    return weights


# Task-1 style: [conv-relu-conv-relu-maxpool] x 2, Flatten, 2 x (Dense 128-like + Dropout).
VGG = [
    {"layer_name": "Conv2D", "filters": 4.0, "kernel_size": 3, "padding": "same",
     "activation": "relu", "input_shape": [8, 8, 3]},
    {"layer_name": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same",
     "activation": "relu"},
    {"layer_name": "MaxPooling2D", "pool_size": 2},
    {"layer_name": "Conv2D", "filters": 6, "kernel_size": 3, "padding": "same",
     "activation": "relu"},
    {"layer_name": "Conv2D", "filters": 6, "kernel_size": 3, "padding": "same",
     "activation": "relu"},
    {"layer_name": "MaxPooling2D", "pool_size": 2},
    {"layer_name": "Flatten"},
    {"layer_name": "Dense", "units": 7, "activation": "relu"},
    {"layer_name": "Dropout", "rate": 0.5},
    {"layer_name": "Dense", "units": 7, "activation": "relu"},
    {"layer_name": "Dropout", "rate": 0.5},
    {"layer_name": "Dense", "units": 10},
]  # fmt: skip

# Everything else the loader supports, on a non-square input: strided even-kernel "same"
# convolutions (asymmetric padding), valid convolutions, BatchNorm on images and features,
# "same" average pooling, global pooling, Activation layers and a softmax head.
ODD = [
    {"layer_name": "Conv2D", "filters": 3, "kernel_size": [2, 2], "strides": 2,
     "padding": "same", "activation": "tanh"},
    {"layer_name": "BatchNormalization", "epsilon": 0.01},
    {"layer_name": "Conv2D", "filters": 5, "kernel_size": 2, "padding": "valid",
     "use_bias": True, "kernel_initializer": "glorot_uniform"},
    {"layer_name": "Activation", "activation": "relu"},
    {"layer_name": "AveragePooling2D", "pool_size": 2, "strides": 1, "padding": "same"},
    {"layer_name": "MaxPooling2D", "pool_size": [2, 2], "strides": [1, 1], "padding": "same"},
    {"layer_name": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same"},
    {"layer_name": "GlobalAveragePooling2D"},
    {"layer_name": "BatchNormalization"},
    {"layer_name": "Dense", "units": 3, "activation": "softmax"},
]  # fmt: skip


def _compare(folder, model_config, input_shape, weights, seed=1):
    net = load_pgdl_model(folder)
    x = np.random.default_rng(seed).normal(size=(3, *input_shape))
    expected = keras_forward(model_config, [[a.astype(np.float64) for a in w] for w in weights], x)
    got = net.double()(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    return net


def test_a_task1_vgg_matches_the_keras_forward_pass(h5py, tmp_path):
    weights = write_folder(h5py, tmp_path / "model_0", VGG, (8, 8, 3))
    net = _compare(tmp_path / "model_0", VGG, (8, 8, 3), weights)
    assert net.training is False and net.input_shape == (3, 8, 8)
    assert net.keras_layers == tuple(layer["layer_name"] for layer in VGG)
    n_keras = sum(a.size for w in weights for a in w)
    assert sum(p.numel() for p in net.parameters()) == n_keras
    assert next(net.parameters()).dtype == torch.float64  # after .double(); stored as float32


def test_the_other_supported_layers_match_on_a_non_square_input(h5py, tmp_path):
    weights = write_folder(h5py, tmp_path / "m", ODD, (7, 6, 2), seed=3)
    net = _compare(tmp_path / "m", ODD, (7, 6, 2), weights)
    bn = [m for m in net if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d)]
    assert [m.eps for m in bn] == pytest.approx([0.01, 1e-3])
    assert [m.momentum for m in bn] == pytest.approx([0.01, 0.01])  # Keras 0.99


def test_same_padding_puts_the_odd_pixel_after_as_tensorflow_does(h5py, tmp_path):
    # A 2x2 kernel with "same" padding and stride 1: TensorFlow pads 0 rows before and 1
    # after, so the kernel's top-left tap reads x[i, j] and its bottom-right tap x[i+1, j+1]
    # (0 past the last row/column). Checked by hand, independent of any padding formula.
    config = [{"layer_name": "Conv2D", "filters": 2, "kernel_size": 2, "padding": "same"}]
    kernel = np.zeros((2, 2, 1, 2), np.float32)
    kernel[0, 0, 0, 0] = 1.0
    kernel[1, 1, 0, 1] = 1.0
    folder = tmp_path / "pad"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"model_config": config, "input_shape": [3, 4, 1]})
    )
    write_weights(h5py, folder / "weights.hdf5", config, [[kernel, np.zeros(2, np.float32)]])
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    y = load_pgdl_model(folder)(x)
    torch.testing.assert_close(y[0, 0], x[0, 0])
    shifted = torch.zeros(3, 4)
    shifted[:2, :3] = x[0, 0, 1:, 1:]
    torch.testing.assert_close(y[0, 1], shifted)


def test_weights_load_by_topology_not_by_name_and_attributes_may_be_chunked(h5py, tmp_path):
    # Names whose sorted order differs from the model order, and layer_names split in chunks
    # as Keras does past the HDF5 header limit: the loader must follow the attribute's order.
    names = [f"{chr(ord('z') - i)}_layer" for i in range(len(VGG))]
    weights = write_folder(h5py, tmp_path / "a", VGG, (8, 8, 3), names=names, chunks=3)
    _compare(tmp_path / "a", VGG, (8, 8, 3), weights)


def test_weights_are_matched_by_their_names_else_by_keras_order(h5py, tmp_path):
    # Named weights stored in reverse order are matched by name; unnamed ones by position.
    weights = write_folder(h5py, tmp_path / "r", ODD, (7, 6, 2), seed=5, reverse=True)
    _compare(tmp_path / "r", ODD, (7, 6, 2), weights)
    weights = write_folder(h5py, tmp_path / "n", ODD, (7, 6, 2), seed=6, anonymous=True)
    _compare(tmp_path / "n", ODD, (7, 6, 2), weights)


def test_a_full_model_file_and_the_initial_weights_are_read(h5py, tmp_path):
    folder = tmp_path / "b"
    weights = write_folder(h5py, folder, VGG, (8, 8, 3), wrap=True)
    _compare(folder, VGG, (8, 8, 3), weights)
    init = random_weights(VGG, (8, 8, 3), seed=7)
    write_weights(h5py, folder / "weights_init.hdf5", VGG, init)
    net = load_pgdl_model(folder, weights="weights_init.hdf5")
    first = next(m for m in net if isinstance(m, torch.nn.Conv2d))
    np.testing.assert_array_equal(first.weight.detach().numpy(), init[0][0].transpose(3, 2, 0, 1))
    assert net.source.endswith("weights_init.hdf5")


# ---- errors --------------------------------------------------------------------------------


def test_missing_folder_and_files_are_file_not_found(h5py, tmp_path):
    with pytest.raises(FileNotFoundError, match="folder not found"):
        load_pgdl_model(tmp_path / "nope")
    folder = tmp_path / "c"
    write_folder(h5py, folder, VGG, (8, 8, 3))
    with pytest.raises(FileNotFoundError, match="weights_init.hdf5"):
        load_pgdl_model(folder, weights="weights_init.hdf5")
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pgdl_model(folder)


def test_an_unsupported_layer_is_named(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    config = [*VGG[:6], {"layer_name": "LocallyConnected2D", "filters": 2, "kernel_size": 2}]
    (folder / "config.json").write_text(
        json.dumps({"model_config": config, "input_shape": [8, 8, 3]})
    )
    (folder / "weights.hdf5").write_bytes(b"")
    with pytest.raises(ValueError, match="Unsupported PGDL layer 6 .*LocallyConnected2D"):
        load_pgdl_model(folder)


@pytest.mark.parametrize(
    "layer, match",
    [
        ({"data_format": "channels_first"}, "data_format='channels_first' is not supported"),
        ({"dilation_rate": 2}, "dilation_rate"),
        ({"activation": "swish"}, "activation='swish' is not supported"),
        ({"padding": "causal"}, "padding='causal'"),
        ({"frobnicate": 1}, r"unsupported argument\(s\) frobnicate=1"),
    ],
)
def test_unsupported_layer_arguments_are_named(tmp_path, layer, match):
    folder = tmp_path / "e"
    folder.mkdir()
    conv = {"layer_name": "Conv2D", "filters": 2, "kernel_size": 3, **layer}
    (folder / "config.json").write_text(
        json.dumps({"model_config": [conv], "input_shape": [4, 4, 1]})
    )
    (folder / "weights.hdf5").write_bytes(b"")
    with pytest.raises(ValueError, match=match):
        load_pgdl_model(folder)


def test_a_weight_of_the_wrong_shape_is_rejected(h5py, tmp_path):
    folder = tmp_path / "f"
    weights = write_folder(h5py, folder, VGG, (8, 8, 3))
    weights[4][0] = weights[4][0][:-1]  # the first Dense kernel loses one input row
    write_weights(h5py, folder / "weights.hdf5", VGG, weights)
    with pytest.raises(ValueError, match=r"'kernel' has shape \(23, 7\), expected \(24, 7\)"):
        load_pgdl_model(folder)


def test_layer_and_weight_counts_must_match(h5py, tmp_path):
    folder = tmp_path / "g"
    write_folder(h5py, folder, VGG, (8, 8, 3))
    config = json.loads((folder / "config.json").read_text())
    config["model_config"] = [*VGG[:-1], {"layer_name": "Dense", "units": 10}, VGG[-1]]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="holds 7 layers with weights, .* describes 8"):
        load_pgdl_model(folder)
    write_folder(h5py, folder, VGG, (8, 8, 3), drop_weight=True)  # every bias dropped
    with pytest.raises(ValueError, match="holds 1 weights, expected 2"):
        load_pgdl_model(folder)


def test_files_in_other_formats_are_value_errors(h5py, tmp_path):
    folder = tmp_path / "h"
    write_folder(h5py, folder, VGG, (8, 8, 3))
    (folder / "weights.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="not HDF5"):
        load_pgdl_model(folder)
    with h5py.File(folder / "weights.hdf5", "w") as f:
        f.create_dataset("x", data=np.zeros(2))
    with pytest.raises(ValueError, match="no 'layer_names'"):
        load_pgdl_model(folder)
    (folder / "config.json").write_text(json.dumps(VGG))  # Keras-like list, no model_config
    with pytest.raises(ValueError, match="'model_config' list"):
        load_pgdl_model(folder)


def test_without_h5py_the_error_names_the_extra(tmp_path, monkeypatch):
    folder = tmp_path / "i"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_config": VGG, "input_shape": [8, 8, 3]}))
    (folder / "weights.hdf5").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"optional extra: pip install 'wideflat\[pgdl\]'"):
        load_pgdl_model(folder)
