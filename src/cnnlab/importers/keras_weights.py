"""Keras 3 weights (``model.weights.h5``, alone or inside a ``.keras`` archive) copied into the
PyTorch module built from the imported network.

Keras stores a layer's variables under ``layers/<snake_case class name>[_n]/vars/<i>``, numbered
in the model's layer order; kernels are channels-last and a Dense after a Flatten reads pixels in
(H, W, C) order, so each array is transposed (and the Dense rows permuted) to PyTorch's layout.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CnnlabError
from ..network import Network, join
from .keras import snake


def _read_layers(path: Path) -> tuple[dict[str, list[np.ndarray]], bool]:
    """Each layer's arrays in Keras' variable order, and whether they are keyed by layer name.

    Keras 3 (``.keras``, ``.weights.h5``) keys its ``layers`` group by class name and count (``conv2d_1``);
    the legacy HDF5 layout (tf.keras 2 and ``model.save("m.h5")``) keys by layer name and lists each layer's
    arrays in its ``weight_names`` attribute."""
    try:
        import h5py
    except ImportError:
        raise CnnlabError("reading Keras weights needs h5py: pip install h5py") from None

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                if "model.weights.h5" not in z.namelist():
                    raise CnnlabError(f"{path.name}: no model.weights.h5 inside; save the model with model.save()")
                blob: Any = io.BytesIO(z.read("model.weights.h5"))
        else:
            blob = str(path)
        with h5py.File(blob, "r") as h:
            root = h.get("layers")
            if root is not None:
                out: dict[str, list[np.ndarray]] = {}
                _walk(root, "", out)
                return out, False
            legacy = h["model_weights"] if "model_weights" in h else h
            if "layer_names" not in legacy.attrs:
                raise CnnlabError(f"{path.name}: neither Keras 3 weights (a 'layers' group) nor legacy HDF5 weights "
                                  "(layer_names); save them with model.save_weights() or model.save()")
            return _legacy(legacy), True
    except (OSError, KeyError) as e:
        raise CnnlabError(f"cannot read Keras weights {path.name}: {e}") from None


def _walk(group: Any, prefix: str, out: dict[str, list[np.ndarray]]) -> None:
    """Keras 3 groups: ``layers/<key>/vars/<i>``, a nested model's under ``layers/<key>/layers/...``."""
    for key, g in group.items():
        vs = g.get("vars")
        if vs is not None:
            out[prefix + key] = [np.asarray(vs[str(i)]) for i in range(len(vs))]
        if g.get("layers") is not None:
            _walk(g["layers"], f"{prefix}{key}/", out)


def _legacy(root: Any) -> dict[str, list[np.ndarray]]:
    """Legacy groups by layer name, arrays in ``weight_names`` order; a nested model's arrays, all listed
    under its own name, are told apart by the layer named before the array's name (``block1_conv1/kernel:0``)."""
    out: dict[str, list[np.ndarray]] = {}
    for raw in root.attrs["layer_names"]:
        name = _text(raw)
        out.setdefault(name, [])
        for w in root[name].attrs.get("weight_names", []):
            parts = _text(w).split("/")
            inner = parts[-2] if len(parts) > 1 else name
            out.setdefault(name if inner == name else f"{name}/{inner}", []).append(np.asarray(root[name][_text(w)]))
    return out


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _conv(w: np.ndarray) -> np.ndarray:
    return w.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)


def _depthwise(w: np.ndarray) -> np.ndarray:
    kh, kw, c, m = w.shape  # output channel i*m + j comes from input channel i
    return w.reshape(kh, kw, c * m, 1).transpose(2, 3, 0, 1)


def _dense(w: np.ndarray, flat: list[int] | None) -> np.ndarray:
    if flat:  # rows in Keras' (H, W, C) order -> PyTorch's (C, H, W)
        h, wd, c = flat
        w = w.reshape(h, wd, c, -1).transpose(2, 0, 1, 3).reshape(h * wd * c, -1)
    return w.T


def _arrays(cls: str, vs: list[np.ndarray], mod: nn.Module, flat: list[int] | None) -> dict[str, np.ndarray]:
    """The module's tensors (by state_dict key) from Keras' variables, in Keras' order."""
    if cls == "Conv2D":
        return dict(zip(("weight", "bias"), (_conv(vs[0]), *vs[1:])))
    if cls == "Conv2DTranspose":  # (kh, kw, out, in) -> PyTorch's (in, out, kh, kw); under "conv" when cropped
        keys = ("weight", "bias") if isinstance(mod, nn.ConvTranspose2d) else ("conv.weight", "conv.bias")
        return dict(zip(keys, (_conv(vs[0]), *vs[1:])))
    if cls == "DepthwiseConv2D":
        return dict(zip(("weight", "bias"), (_depthwise(vs[0]), *vs[1:])))
    if cls == "SeparableConv2D":
        return dict(zip(("depthwise.weight", "pointwise.weight", "pointwise.bias"),
                        (_depthwise(vs[0]), _conv(vs[1]), *vs[2:])))
    if cls == "Dense":
        w = vs[0]
        kernel = w.T[:, :, None, None] if isinstance(mod, nn.Conv2d) else _dense(w, flat)
        return dict(zip(("weight", "bias"), (kernel, *vs[1:])))
    if cls == "PReLU":  # alpha is (1, 1, C), (C,) or (1, 1, 1): one slope per channel, or one
        return {"weight": vs[0].reshape(-1)}
    if cls == "Normalization":  # none when the config gives the statistics
        return dict(zip(("mean", "variance", "count"), vs))
    if cls == "BatchNormalization":
        keys = [k for k, on in (("weight", mod.weight is not None), ("bias", mod.bias is not None)) if on]
        return dict(zip((*keys, "running_mean", "running_var"), vs))
    raise CnnlabError(f"Keras layer class {cls} has no weights cnnlab can load")


def is_keras_weights(path: str | Path) -> bool:
    """Whether ``path`` names Keras' own weights: a ``.keras`` archive, a ``.weights.h5`` file, or a legacy
    HDF5 model or weights file (``.h5``)."""
    return Path(path).suffix.lower() in (".keras", ".h5")


def keras_state(module: nn.Module, net: Network, path: str | Path) -> dict[str, torch.Tensor]:
    """The Keras weights at ``path`` as a state_dict of ``module`` (``cnnlab.build(net)``), every
    tensor in PyTorch's layout. BatchNorm's ``num_batches_tracked``, a count Keras does not keep,
    is the module's own, so the result covers the whole module."""
    new = _converted(module, net, Path(path), strict_shapes=False)
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in new:
            new[key] = value
    return new


def load_keras_weights(module: nn.Module, net: Network, path: str | Path) -> nn.Module:
    """Copy the Keras weights at ``path`` into ``module`` (``cnnlab.build(net)``) and return it."""
    module.load_state_dict(_converted(module, net, Path(path)), strict=False)
    return module


def _converted(module: nn.Module, net: Network, p: Path, strict_shapes: bool = True) -> dict[str, torch.Tensor]:
    """Keras' arrays, checked against ``module``'s tensors, by state_dict key. Without ``strict_shapes`` an
    array of another shape is kept as the file has it, for the loader to judge (a classifier resized to
    another class count is replaced there)."""
    order = net.meta.get("keras_weights")
    if order is None:
        raise CnnlabError(f"{p.name}: Keras weights load into a network read from a Keras model, and "
                          f"'{net.name}' was not; give the Keras model the weights were saved with")
    stored, by_name = _read_layers(p)
    prefix = net.meta.get("keras_prefix", "")
    flatten = net.meta.get("keras_flatten", {})
    used: dict[tuple[str, str], int] = {}
    scopes: dict[tuple[str, ...], str] = {}

    def numbered(parent: str, cls: str) -> str:  # Keras 3's key: the class in snake case, counted per level
        base = snake(cls)
        n = used.get((parent, base), 0)
        used[parent, base] = n + 1
        return parent + (base if n == 0 else f"{base}_{n}")

    state = module.state_dict()
    new: dict[str, torch.Tensor] = {}
    for entry in order:  # [class, name], or in a nested model [class, name, path, outer class, outer name, ...]
        cls, name = entry[0], entry[1]
        sub = entry[2] if len(entry) > 2 else name
        scope = list(zip(entry[3::2], entry[4::2]))
        if by_name:
            key = "/".join([n for _, n in scope] + [name])
        else:
            parent, names = "", ()
            for ocls, oname in scope:
                names = (*names, oname)
                if names not in scopes:
                    scopes[names] = numbered(parent, ocls) + "/"
                parent = scopes[names]
            key = numbered(parent, cls)
        path_ = join(prefix, sub)
        mod = module.get_submodule(path_)
        if key not in stored or (not stored[key] and mod.state_dict()):
            where = f"layer {key}" if by_name else f"layers/{key}"
            raise CnnlabError(f"{p.name}: no weights for Keras layer '{name}' (looked for {where}); "
                              "save the weights from the same model")
        arrays = _arrays(cls, stored[key], mod, flatten.get(sub))
        if cls == "Normalization" and len(arrays) != len(mod.state_dict()):
            raise CnnlabError(f"{p.name}: Keras layer '{name}' holds {len(arrays)} arrays where the model has "
                              f"{len(mod.state_dict())} (mean, variance, count); save the weights from the same model")
        for k, arr in arrays.items():
            full = join(path_, k)
            if full not in state or (strict_shapes and tuple(state[full].shape) != arr.shape):
                got = tuple(state[full].shape) if full in state else "nothing"
                raise CnnlabError(f"{p.name}: Keras layer '{name}' gives {k} of shape {arr.shape}, the module has "
                                  f"{got}; save the weights from the same model")
            # ascontiguousarray makes a scalar (Normalization's count) one-dimensional: reshape it back
            new[full] = torch.from_numpy(np.ascontiguousarray(arr).reshape(arr.shape)).to(state[full].dtype)
    return new
