"""Keras model configs (``model.to_json()``, a ``.keras`` archive's ``config.json``, or the ``model_config`` of
a legacy ``model.save("m.h5")`` file) as a
:class:`~cnnlab.network.Network`.

A thin translator: each Keras layer becomes the cnnlab layer that computes the same thing, shown
channels-first. A Sequential model becomes a chain; a Functional one a :class:`Graph` whose
Add/Concatenate/Multiply/Maximum layers are merges. Keras 3 and tf.keras 2 JSON are both read. Pure
Python: neither Keras nor torch is imported.
"""

from __future__ import annotations

import math
import re
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import layers as ly
from ..errors import CnnlabError
from ..layers import Layer, Shape
from ..network import Graph, Merge, Network, Node, check_values, graph, join, seq
from ..text import safe_text
from ..validate import load_json, short
from . import fresh_name, module_name

MAX_CONFIG_BYTES = 64 * 2**20

SUPPORTED = ("InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "MaxPooling2D",
             "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "UpSampling2D", "Dense",
             "BatchNormalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Dropout",
             "SpatialDropout2D", "Flatten", "Reshape", "ZeroPadding2D", "Cropping2D", "Add", "Concatenate", "Multiply",
             "Maximum", "Rescaling", "Normalization")

# Keras activation name -> a cnnlab layer (None: the identity).
ACTIVATIONS: dict[str, Any] = {
    "linear": None, "relu": ly.ReLU, "relu6": ly.ReLU6, "softmax": ly.Softmax, "sigmoid": ly.Sigmoid,
    "tanh": ly.Tanh, "swish": ly.SiLU, "silu": ly.SiLU, "hard_swish": ly.Hardswish, "hard_silu": ly.Hardswish,
    "hard_sigmoid": ly.Hardsigmoid, "gelu": ly.GELU, "elu": ly.ELU, "leaky_relu": ly.LeakyReLU,
}
_MERGES = {"Add": "add", "Concatenate": "concat", "Multiply": "mul", "Maximum": "max"}
_MODELS = ("Sequential", "Functional", "Model")  # a model used as a layer (a pretrained base)
_EXTRA = ("CustomScaleLayer",)  # keras.applications' own layer (InceptionResNetV2's scaled residual sum)
_ALIASES = {"Convolution2D": "Conv2D", "MaxPool2D": "MaxPooling2D", "AvgPool2D": "AveragePooling2D",
            "GlobalAvgPool2D": "GlobalAveragePooling2D", "GlobalMaxPool2D": "GlobalMaxPooling2D",
            "SeparableConvolution2D": "SeparableConv2D", "AtrousConvolution2D": "Conv2D"}
# Keras 1 setting -> its Keras 2 name (Keras 2.0 renamed them; its own converter did the same).
_KERAS1_MERGES = {"sum": "Add", "concat": "Concatenate", "mul": "Multiply", "max": "Maximum"}
_KERAS1_KEYS = {"nb_filter": "filters", "subsample": "strides", "border_mode": "padding", "output_dim": "units",
                "atrous_rate": "dilation_rate", "bias": "use_bias"}


def _keras1(cls: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """A Keras 1 layer config in Keras 2 terms: renamed settings, ``nb_row``/``nb_col`` as ``kernel_size``,
    Dropout's ``p`` as ``rate``, and ``dim_ordering`` (``th``: channels first) as ``data_format``."""
    out = {_KERAS1_KEYS.get(k, k): v for k, v in cfg.items() if k not in ("nb_row", "nb_col", "dim_ordering")}
    if "nb_row" in cfg or "nb_col" in cfg:
        out["kernel_size"] = [cfg.get("nb_row"), cfg.get("nb_col")]
    if cls in ("Dropout", "SpatialDropout2D") and "p" in cfg:
        out["rate"] = out.pop("p")
    if "dim_ordering" in cfg:
        out["data_format"] = "channels_first" if cfg["dim_ordering"] == "th" else "channels_last"
    return out


def is_keras_config(data: Any) -> bool:
    """Whether parsed JSON is a Keras model config (``"class_name"`` and ``"config"``; Keras 1 to 2.2.2 wrote a
    Sequential model's config as its list of layers)."""
    return isinstance(data, dict) and "class_name" in data and isinstance(data.get("config"), (dict, list))


def looks_like_keras_json(path: str | Path) -> bool:
    """Whether a ``.json`` file holds a Keras config, judged from its first few kilobytes."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return False
    return '"class_name"' in head and '"config"' in head


def is_legacy_h5(path: str | Path) -> bool:
    """Whether ``path`` is an HDF5 file (tf.keras 2's and Keras' legacy ``model.save("m.h5")``), by its signature."""
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def _h5_config(p: Path) -> str:
    """The ``model_config`` attribute of a legacy HDF5 model file (JSON text)."""
    try:
        import h5py
    except ImportError:
        raise CnnlabError(f"{p.name}: reading a Keras .h5 file needs h5py: pip install h5py") from None
    with h5py.File(p, "r") as h:
        text = h.attrs.get("model_config")
    if text is None:
        raise CnnlabError(f"{p.name} holds weights only, no model config: give the model (model.to_json() or a "
                          ".keras file) and this file with --weights")
    return text.decode("utf-8") if isinstance(text, bytes) else str(text)


def read_config(path: str | Path) -> dict[str, Any]:
    """The model config of a ``.keras`` archive, a legacy ``.h5`` model file or a JSON file."""
    p = Path(path)
    where = p.name
    try:
        if is_legacy_h5(p):
            text = _h5_config(p)
        elif zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                if "config.json" not in z.namelist():
                    raise CnnlabError(f"{where}: no config.json inside; save the model with model.save('m.keras')")
                info = z.getinfo("config.json")
                if info.file_size > MAX_CONFIG_BYTES:
                    raise CnnlabError(f"{where}: config.json is over {MAX_CONFIG_BYTES >> 20} MiB")
                text = z.read("config.json").decode("utf-8")
        else:
            if p.stat().st_size > MAX_CONFIG_BYTES:
                raise CnnlabError(f"{where}: over {MAX_CONFIG_BYTES >> 20} MiB; is it a Keras config?")
            text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile) as e:
        raise CnnlabError(f"cannot read Keras model {where}: {e}") from None
    data = load_json(text, where)
    if not is_keras_config(data):
        raise CnnlabError(f"{where}: not a Keras model config (no \"class_name\"/\"config\"); "
                          "write one with open(path, 'w').write(model.to_json())")
    return data


def archive_has_weights(path: str | Path) -> bool:
    """Whether ``path`` is a ``.keras`` archive that holds its weights (``model.weights.h5``) or a legacy ``.h5``
    model file (which always does)."""
    p = Path(path)
    if p.suffix.lower() == ".h5":
        return is_legacy_h5(p)
    if p.suffix.lower() != ".keras":
        return False
    try:
        with zipfile.ZipFile(p) as z:
            return "model.weights.h5" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def load_keras(path: str | Path, input_shape: Shape | None = None) -> Network:
    """The network a Keras ``.keras`` archive or ``model.to_json()`` file describes. ``input_shape``
    (C, H, W) gives the sizes its input leaves unknown (``Input(shape=(None, None, 3))``); a file
    that fixes them keeps its own."""
    return from_config(read_config(path), where=Path(path).name, input_shape=input_shape)


def snake(name: str) -> str:
    """Keras' snake_case of a class name (the key of a layer's weights in ``model.weights.h5``)."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


# --------------------------------------------------------------------------- translation


@dataclass
class _Value:
    shape: Shape  # channels-first
    flat: tuple[int, int, int] | None = None  # a flattened H, W, C map (Keras order), for Dense weights


@dataclass
class _Builder:
    where: str
    taken: set[str]
    nodes: list[Node] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    values: dict[str, _Value] = field(default_factory=dict)
    alias: dict[str, str] = field(default_factory=dict)  # Keras layer name -> the value it produced
    flatten: dict[str, list[int]] = field(default_factory=dict)  # Dense name -> [H, W, C] it reads
    weights: list[list[str]] = field(default_factory=list)  # [keras class, layer name] in order
    notes: list[str] = field(default_factory=list)

    def fresh(self, base: str) -> str:
        return fresh_name(self.taken, base)

    def add(self, node: Node, src: str, shape: Shape, flat: tuple[int, int, int] | None = None) -> str:
        self.nodes.append(node)
        self.inputs.append(src)
        self.values[node.name] = _Value(shape, flat)
        return node.name


def _cfg(layer: dict[str, Any], where: str) -> tuple[str, dict[str, Any], str]:
    if not isinstance(layer, dict) or not isinstance(layer.get("config"), dict):
        raise CnnlabError(f"{where}: a layer entry {short(layer)} has no config; is it a Keras model config?")
    cls = layer.get("class_name")
    cfg = layer["config"]
    name = cfg.get("name") or layer.get("name")
    if not isinstance(cls, str) or not isinstance(name, str) or not name:
        raise CnnlabError(f"{where}: a layer entry has no class_name or name; is it a Keras model config?")
    if any(k in cfg for k in (*_KERAS1_KEYS, "nb_row", "dim_ordering")) or (cls == "Dropout" and "p" in cfg):
        cfg = _keras1(cls, cfg)
    if cls == "Merge":  # Keras 1's one merge layer: its mode is the Keras 2 layer
        mode = cfg.get("mode")
        if mode not in _KERAS1_MERGES:
            raise CnnlabError(f"{where}: Keras 1 layer '{safe_text(name)}' (Merge) with mode {short(mode)} is not "
                              f"supported; cnnlab reads the modes {', '.join(_KERAS1_MERGES)}")
        return _KERAS1_MERGES[mode], {**cfg, "axis": cfg.get("concat_axis", -1)}, name
    return _ALIASES.get(cls, cls), cfg, name


def _pair(v: Any, what: str, name: str) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return (v[0], v[1])
    raise CnnlabError(f"Keras layer '{name}': {what} {short(v)} is not an int or a pair of ints")


def _activation(v: Any, name: str) -> Any:
    if isinstance(v, dict):  # a serialized function: {"class_name": "function", "config": "relu"}
        v = v.get("config") if isinstance(v.get("config"), str) else v.get("class_name")
    if v is None:
        return None
    if not isinstance(v, str) or v not in ACTIVATIONS:
        raise CnnlabError(f"Keras layer '{name}': activation {short(v)} is not supported; use one of "
                          f"{', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[v]


def _int(cfg: dict[str, Any], key: str, default: Any, name: str) -> int:
    """An integer setting of a layer's config (not a bool, a fraction or text)."""
    v = cfg.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool):
        raise CnnlabError(f"Keras layer '{safe_text(name)}': {key} {short(v)} is not an integer")
    return v


def _num(cfg: dict[str, Any], key: str, default: float | None, name: str) -> float:
    """A finite number setting of a layer's config (None reads as ``default``)."""
    v = cfg.get(key)
    v = default if v is None else v
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise CnnlabError(f"Keras layer '{safe_text(name)}': {key} {short(v)} is not a finite number")
    return float(v)


def _flag(cfg: dict[str, Any], key: str, default: bool, name: str) -> bool:
    v = cfg.get(key, default)
    if not isinstance(v, bool):
        raise CnnlabError(f"Keras layer '{safe_text(name)}': {key} {short(v)} is not true or false")
    return v


def _check_channels_last(cfg: dict[str, Any], name: str) -> None:
    if cfg.get("data_format", "channels_last") not in (None, "channels_last"):
        raise CnnlabError(f"Keras layer '{name}': data_format {short(cfg['data_format'])} is not supported; "
                          "build the model channels_last (the Keras default)")


def _conv(cls: str, cfg: dict[str, Any], name: str, c: int) -> list[Layer]:
    _check_channels_last(cfg, name)
    k = _pair(cfg.get("kernel_size"), "kernel_size", name)
    s = _pair(cfg.get("strides", 1), "strides", name)
    d = _pair(cfg.get("dilation_rate", 1), "dilation_rate", name)
    pad = cfg.get("padding", "valid")
    if pad not in ("valid", "same"):
        raise CnnlabError(f"Keras layer '{name}': padding {short(pad)} is not supported; use 'valid' or 'same'")
    bias = _flag(cfg, "use_bias", True, name)
    geo = dict(kernel=k, stride=s, dilation=d, padding=pad)
    if cls == "Conv2D":
        return [ly.Conv(name=name, filters=_int(cfg, "filters", None, name), groups=_int(cfg, "groups", 1, name),
                        bias=bias, **geo)]
    mult = _int(cfg, "depth_multiplier", 1, name)
    if cls == "DepthwiseConv2D":
        return [ly.Conv(name=name, filters=c * mult, groups=c, bias=bias, **geo)]
    return [ly.Conv(name="depthwise", filters=c * mult, groups=c, bias=False, **geo),
            ly.Conv(name="pointwise", filters=_int(cfg, "filters", None, name), kernel=1, bias=bias)]


def _conv_transpose(cfg: dict[str, Any], name: str) -> list[Layer]:
    """Keras' Conv2DTranspose with TensorFlow's output alignment (also JAX's; Keras' torch backend shifts some
    odd cases by a pixel, and warns): the full transposed output ``(n - 1)s + K`` cut by TensorFlow's padding,
    extended at the end by ``output_padding``. A symmetric cut is the ConvTranspose's own padding; an
    asymmetric one (kernel 3, stride 2, 'same') a Crop after it."""
    _check_channels_last(cfg, name)
    k, st = _pair(cfg.get("kernel_size"), "kernel_size", name), _pair(cfg.get("strides", 1), "strides", name)
    d = _pair(cfg.get("dilation_rate", 1), "dilation_rate", name)
    pad, given = cfg.get("padding", "valid"), cfg.get("output_padding")
    if pad not in ("valid", "same"):
        raise CnnlabError(f"Keras layer '{name}': padding {short(pad)} is not supported; use 'valid' or 'same'")
    ops = [None, None] if given is None else list(_pair(given, "output_padding", name))
    paddings, extra, crop = [], [], []
    for ki, si, di, op in zip(k, st, d, ops):
        kk = (ki - 1) * di + 1
        if pad == "valid":
            top, bottom = 0, -(max(kk, si) - kk if op is None else op)
        else:
            total = si + kk - 2 if op is None else kk + kk % 2 - 2 + op
            left = min(total // 2 + total % 2, kk - 1)
            top, bottom = kk - 1 - left, kk - 1 - (total - left)
        out_pad = max(-bottom, 0)
        bottom = max(bottom, 0)
        if out_pad >= si:
            raise CnnlabError(f"Keras layer '{name}': output_padding {out_pad} must be smaller than the stride {si}")
        p = min(top, bottom)
        paddings.append(p)
        extra.append(out_pad)
        crop.append((top - p, bottom - p))
    cut = any(map(any, crop))
    conv = ly.ConvTranspose(name="conv" if cut else name, filters=_int(cfg, "filters", None, name), kernel=k,
                            stride=st, padding=(paddings[0], paddings[1]), output_padding=(extra[0], extra[1]),
                            dilation=d, bias=_flag(cfg, "use_bias", True, name))
    return [conv, ly.Crop(name="crop", crop=(*crop[0], *crop[1]))] if cut else [conv]


def _pool(cls: str, cfg: dict[str, Any], name: str) -> Layer:
    _check_channels_last(cfg, name)
    k = _pair(cfg.get("pool_size", 2), "pool_size", name)
    s = _pair(cfg.get("strides") or k, "strides", name)
    pad = cfg.get("padding", "valid")
    if pad not in ("valid", "same"):
        raise CnnlabError(f"Keras layer '{name}': padding {short(pad)} is not supported; use 'valid' or 'same'")
    if cls == "MaxPooling2D":
        return ly.MaxPool(name=name, kernel=k, stride=s, padding=pad)
    return ly.AvgPool(name=name, kernel=k, stride=s, padding=pad, count_include_pad=False)


def _crop_or_pad(cls: str, cfg: dict[str, Any], name: str) -> Layer:
    key = "padding" if cls == "ZeroPadding2D" else "cropping"
    v = cfg.get(key, 1 if cls == "ZeroPadding2D" else 0)
    if isinstance(v, int):
        t = b = left = r = v
    elif isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        t = b = v[0]
        left = r = v[1]
    elif isinstance(v, (list, tuple)) and len(v) == 2:
        (t, b), (left, r) = (_pair(x, key, name) for x in v)
    else:
        raise CnnlabError(f"Keras layer '{name}': {key} {short(v)} is not an int, [h, w] or [[t, b], [l, r]]")
    if cls == "Cropping2D":
        return ly.Crop(name=name, crop=(t, b, left, r))
    return ly.ZeroPad(name=name, padding=(t, b, left, r))


def _prelu(cfg: dict[str, Any], name: str, s: Shape) -> Layer:
    """Keras' PReLU: slopes shared over the spatial axes (1, 2) are one per channel; over every axis,
    one for all. A slope per pixel has no cnnlab layer."""
    axes = cfg.get("shared_axes")
    axes = [] if axes is None else [axes] if isinstance(axes, int) else axes
    spatial = set(range(1, len(s)))  # Keras' H and W axes of a map; none for a vector
    if not isinstance(axes, list) or not all(type(a) is int for a in axes) \
            or set(axes) not in (spatial, spatial | {len(s)}):
        raise CnnlabError(f"Keras layer '{name}': PReLU with shared_axes {short(cfg.get('shared_axes'))} on "
                          f"{ly.fmt_shape(s)} is not supported; share the slope over the spatial axes ("
                          "shared_axes=[1, 2]: one per channel) or over all of them")
    init = cfg.get("alpha_initializer")
    value = 0.0  # Keras' default initializer: zeros
    if isinstance(init, dict) and init.get("class_name") == "Constant":
        v = (init.get("config") or {}).get("value", 0.0)
        value = float(v) if type(v) in (int, float) and math.isfinite(v) else 0.0
    return ly.PReLU(name=name, shared=len(set(axes)) == len(s), init=value)


def _batchnorm(cfg: dict[str, Any], name: str, last: int) -> Layer:
    axis = cfg.get("axis", -1)
    if isinstance(axis, list) and len(axis) == 1:
        axis = axis[0]
    if axis not in (-1, last):
        raise CnnlabError(f"Keras layer '{name}': BatchNormalization over axis {short(axis)} is not supported; "
                          "normalize the channels (axis=-1)")
    return ly.BatchNorm(name=name, eps=_num(cfg, "epsilon", 1e-3, name), momentum=1 - _num(cfg, "momentum", 0.99, name),
                        center=_flag(cfg, "center", True, name), scale=_flag(cfg, "scale", True, name))


def _normalization(cfg: dict[str, Any], name: str, s: Shape) -> ly.Normalize:
    """Keras' Normalization over the channels. A ``mean`` and ``variance`` in the config are constants
    (one number, or one per channel); without them they are weights, with Keras' ``count``."""
    axis = cfg.get("axis", -1)
    if isinstance(axis, list) and len(axis) == 1:
        axis = axis[0]
    if axis not in (-1, len(s)):
        raise CnnlabError(f"Keras layer '{name}': Normalization over axis {short(cfg.get('axis'))} is not supported; "
                          "normalize the channels (axis=-1)")
    invert = cfg.get("invert", False) is True
    mean, var = cfg.get("mean"), cfg.get("variance")
    if mean is None and var is None:
        return ly.Normalize(name=name, invert=invert)
    c = s[0]

    def per_channel(v: Any, what: str) -> tuple[float, ...]:
        vs = [v] if type(v) in (int, float) else v
        if isinstance(vs, list) and len(vs) in (1, c) and all(type(x) in (int, float) and math.isfinite(x) for x in vs):
            return tuple(float(x) for x in vs) * (c // len(vs))
        raise CnnlabError(f"Keras layer '{name}': Normalization {what} {short(v)} is not one finite number or {c} "
                          "(one per channel)")

    means, variances = per_channel(mean, "mean"), per_channel(var, "variance")
    if min(variances) < 0:
        raise CnnlabError(f"Keras layer '{name}': Normalization variance {short(var)} is negative; give variances >= 0")
    return ly.Normalize(name=name, mean=means, variance=variances, invert=invert)


def _built(entry: dict[str, Any]) -> dict[str, Any]:
    """The input shape a layer entry was built with (Keras 3's ``build_config``, batch axis first)."""
    built = entry.get("build_config")
    shape = built.get("input_shape") if isinstance(built, dict) else None
    return {"batch_input_shape": shape} if isinstance(shape, list) else {}


def _model_input(cfg: dict[str, Any]) -> dict[str, Any]:
    """The config that states the input of a model used as the first layer of a Sequential: its InputLayer, or
    its own first layer (``batch_input_shape``), looked for inside a model that starts with a model too."""
    entries = cfg.get("layers") if isinstance(cfg, dict) else cfg
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        return {}
    first = next((e for e in entries if isinstance(e, dict) and e.get("class_name") == "InputLayer"), entries[0])
    inner = first.get("config") if isinstance(first.get("config"), (dict, list)) else {}
    if first.get("class_name") in _MODELS:
        return _model_input(inner)
    return {**_built(first), **inner} if isinstance(inner, dict) else {}


def _nested(b: _Builder, cls: str, cfg: dict[str, Any], name: str, src: str) -> str:
    """A model used as a layer (``Sequential([VGG16(include_top=False), Flatten(), Dense(1)])``): its layers
    as one node named after it. Its weights are recorded with their path under that node and the scope Keras
    keys them by (``layers/functional/layers/conv2d_3``, or by layer names in a legacy file)."""
    v = b.values[src]
    inner, value = _translate({"class_name": cls, "config": cfg}, f"{b.where}, model '{name}'",
                              v.shape if len(v.shape) == 3 else None)
    if inner.input_shape != v.shape:
        raise CnnlabError(f"Keras layer '{name}' ({cls}) takes {ly.fmt_shape(inner.input_shape)} but gets "
                          f"{ly.fmt_shape(v.shape)}")
    label = module_name(name)
    b.notes.extend(inner.meta.get("notes", []))
    if cfg.get("trainable") is False:
        b.notes.append(f"Keras marks '{name}' as not trainable (a frozen base): its weights count as parameters "
                       f"here and as non-trainable in Keras; train with --freeze {label} to keep them (and "
                       "what comes before it)")
    body = inner.layers
    node: Node = replace(body[0], name=label) if len(body) == 1 and isinstance(body[0], Graph) else seq(label, *body)
    for entry in inner.meta["keras_weights"]:  # [class, name, path, then (class, name) of each enclosing model]
        sub = entry[2] if len(entry) > 2 else entry[1]
        b.weights.append([entry[0], entry[1], join(label, sub), cls, name, *entry[3:]])
    for key, hwc in inner.meta.get("keras_flatten", {}).items():
        b.flatten[join(label, key)] = hwc
    return b.add(node, src, value.shape, value.flat)


def _layer(b: _Builder, cls: str, cfg: dict[str, Any], name: str, src: str) -> str:
    """Add the layer ``name`` reading value ``src``; returns the value it produces."""
    v = b.values[src]
    s = v.shape
    kept = v.flat  # what a shape-keeping layer passes on

    def leaf(layer: Layer, flat: tuple[int, int, int] | None = None) -> str:
        return b.add(layer, src, layer.figures(s).out, flat)

    def then(value: str, act: Any) -> str:
        if act is None:
            return value
        layer = act(name=b.fresh(f"{name}_activation"))
        return b.add(layer, value, layer.figures(b.values[value].shape).out, b.values[value].flat)

    if cls in _MODELS:
        return _nested(b, cls, cfg, name, src)
    if cls in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose"):
        if len(s) != 3:
            raise CnnlabError(f"Keras layer '{name}' ({cls}) needs a feature map but gets a vector of {s[0]}")
        b.weights.append([cls, name])
        parts = _conv_transpose(cfg, name) if cls == "Conv2DTranspose" else _conv(cls, cfg, name, s[0])
        node: Node = parts[0] if len(parts) == 1 else seq(name, *parts)
        out = s
        for p in parts:
            out = p.figures(out).out
        return then(b.add(node, src, out), _activation(cfg.get("activation"), name))
    if cls == "Dense":
        b.weights.append([cls, name])
        units, bias = _int(cfg, "units", None, name), _flag(cfg, "use_bias", True, name)
        act = _activation(cfg.get("activation"), name)
        if len(s) == 3:  # Keras applies Dense along the channels of every pixel: a 1x1 convolution
            return then(leaf(ly.Conv(name=name, filters=units, kernel=1, bias=bias)), act)
        if v.flat and v.flat[0] * v.flat[1] > 1:
            b.flatten[name] = list(v.flat)
        return then(leaf(ly.Dense(name=name, units=units, bias=bias)), act)
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        return leaf(_pool(cls, cfg, name))
    if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        _check_channels_last(cfg, name)
        avg = cls == "GlobalAveragePooling2D"
        if cfg.get("keepdims"):
            return leaf((ly.AdaptiveAvgPool if avg else ly.AdaptiveMaxPool)(name=name, output=1))
        if avg:
            return leaf(ly.GlobalAvgPool(name=name))
        return leaf(seq(name, ly.AdaptiveMaxPool(name="pool", output=1), ly.Flatten(name="flatten")))
    if cls == "BatchNormalization":
        b.weights.append([cls, name])
        return leaf(_batchnorm(cfg, name, len(s)), kept)
    if cls == "Normalization":
        b.weights.append([cls, name])  # Keras numbers its weights among all Normalization layers, even those with none
        return leaf(_normalization(cfg, name, s), kept)
    if cls == "UpSampling2D":
        _check_channels_last(cfg, name)
        sh, sw = _pair(cfg.get("size", 2), "size", name)
        mode = cfg.get("interpolation", "nearest")
        if mode not in ("nearest", "bilinear"):
            raise CnnlabError(f"Keras layer '{name}': interpolation {short(mode)} is not supported; use nearest or "
                              "bilinear")
        return leaf(ly.Upsample(name=name, scale=(float(sh), float(sw)), mode=mode,
                                align_corners=None if mode == "nearest" else False), kept)
    if cls == "ELU":
        return leaf(ly.ELU(name=name, alpha=_num(cfg, "alpha", 1.0, name)), kept)
    if cls == "Softmax":
        if cfg.get("axis", -1) not in (-1, [-1], len(s)):
            raise CnnlabError(f"Keras layer '{name}': Softmax over axis {short(cfg.get('axis'))} is not supported; "
                              "use the last axis (the channels)")
        return leaf(ly.Softmax(name=name), kept)
    if cls == "Activation":
        act = _activation(cfg.get("activation"), name)
        if act is None:
            return src
        return leaf(act(name=name), kept)
    if cls == "ReLU":
        mx, slope, thr = cfg.get("max_value"), _num(cfg, "negative_slope", 0.0, name), _num(cfg, "threshold", 0.0, name)
        if thr:
            raise CnnlabError(f"Keras layer '{name}': ReLU with a threshold is not supported; use threshold 0")
        if mx is None and not slope:
            return leaf(ly.ReLU(name=name), kept)
        if mx is None:
            return leaf(ly.LeakyReLU(name=name, slope=slope), kept)
        if _num(cfg, "max_value", None, name) == 6.0 and not slope:
            return leaf(ly.ReLU6(name=name), kept)
        raise CnnlabError(f"Keras layer '{name}': ReLU(max_value={mx}, negative_slope={slope}) is not supported; "
                          "use max_value None or 6 without a slope")
    if cls == "LeakyReLU":
        key = "negative_slope" if "negative_slope" in cfg else "alpha"
        return leaf(ly.LeakyReLU(name=name, slope=_num(cfg, key, 0.3, name)), kept)
    if cls == "PReLU":
        b.weights.append([cls, name])
        return leaf(_prelu(cfg, name, s), kept)
    if cls in ("Dropout", "SpatialDropout2D"):
        return leaf(ly.Dropout(name=name, p=_num(cfg, "rate", 0.5, name)), kept)
    if cls == "Flatten":
        return leaf(ly.Flatten(name=name), (s[1], s[2], s[0]) if len(s) == 3 else kept)
    if cls == "Reshape":
        return _reshape(b, cfg, name, src, s, kept)
    if cls in ("ZeroPadding2D", "Cropping2D"):
        _check_channels_last(cfg, name)
        return leaf(_crop_or_pad(cls, cfg, name))
    if cls == "Rescaling":
        if isinstance(cfg.get("scale"), list) or isinstance(cfg.get("offset"), list):
            raise CnnlabError(f"Keras layer '{name}': Rescaling by a per-channel scale is not supported; "
                              "give one number for scale and offset")
        return leaf(ly.Scale(name=name, mul=_num(cfg, "scale", 1.0, name), add=_num(cfg, "offset", 0.0, name)), kept)
    raise CnnlabError(f"Keras layer '{safe_text(name)}' ({safe_text(cls)}) is not supported: cnnlab reads {', '.join(SUPPORTED)}; "
                      "rewrite it with these layers")


def _reshape(b: _Builder, cfg: dict[str, Any], name: str, src: str, s: Shape,
             kept: tuple[int, int, int] | None) -> str:
    target = cfg.get("target_shape")
    if not isinstance(target, (list, tuple)) or not all(isinstance(x, int) for x in target):
        raise CnnlabError(f"Keras layer '{name}': target_shape {short(target)} is not a list of ints")
    n = math.prod(s)
    if target.count(-1) == 1:
        rest = math.prod(x for x in target if x != -1)
        if rest < 1 or n % rest:
            raise CnnlabError(f"Keras layer '{name}': cannot reshape {n} values to {short(target)}")
        target = [n // rest if x == -1 else x for x in target]
    if math.prod(target) != n:
        raise CnnlabError(f"Keras layer '{name}': cannot reshape {n} values to {short(target)}")
    if len(target) == 1:
        layer = ly.Flatten(name=name)
        return b.add(layer, src, layer.figures(s).out, (s[1], s[2], s[0]) if len(s) == 3 else kept)
    if len(s) == 1 and len(target) == 3:  # (H, W, C) from a vector, in Keras' order
        h, w, c = target
        layer2 = ly.Reshape(name=name, shape=(c, h, w), channels_last=(h, w) != (1, 1))
        return b.add(layer2, src, layer2.figures(s).out)
    raise CnnlabError(f"Keras layer '{name}': Reshape of {ly.fmt_shape(s)} to {short(target)} is not supported; "
                      "cnnlab reads a Reshape that flattens a map or makes a vector an (H, W, C) map")


def _merge(b: _Builder, cls: str, cfg: dict[str, Any], name: str, srcs: list[str]) -> str:
    shapes = [b.values[x].shape for x in srcs]
    if len(srcs) < 2:
        raise CnnlabError(f"Keras layer '{name}' ({cls}) needs at least two inputs, got {len(srcs)}")
    if cls == "Concatenate":
        axis = cfg.get("axis", -1)
        if axis not in (-1, len(shapes[0])):
            raise CnnlabError(f"Keras layer '{name}': Concatenate on axis {short(axis)} is not supported; "
                              "concatenate channels (axis=-1)")
        if len({sh[1:] for sh in shapes}) != 1:
            raise CnnlabError(f"Keras layer '{name}': cannot concatenate {', '.join(map(ly.fmt_shape, shapes))}")
        out: Shape = (sum(sh[0] for sh in shapes), *shapes[0][1:])
    else:
        from ..analysis import broadcast

        got = broadcast(shapes)
        if got is None:
            raise CnnlabError(f"Keras layer '{name}' ({cls}): shapes {', '.join(map(ly.fmt_shape, shapes))} "
                              "do not broadcast")
        out = got
    m = b.fresh(name)
    b.merges.append(Merge(m, _MERGES[cls], tuple(srcs)))
    b.values[m] = _Value(out)
    return m


def _scalar_op(b: _Builder, cls: str, name: str, srcs: list[str], numbers: list[float]) -> str:
    """A Keras op of a tensor and a number (``x + 3.0``, ``x * (1 / 6)``: keras.applications'
    MobileNetV3 writes its hard sigmoid so) as a Scale."""
    if cls not in ("Add", "Multiply") or len(srcs) != 1 or len(numbers) != 1 or not math.isfinite(numbers[0]):
        raise CnnlabError(f"Keras layer '{safe_text(name)}' ({safe_text(cls)}) of {len(srcs)} tensor(s) and "
                          f"{len(numbers)} number(s) is not supported; cnnlab reads a tensor plus or times one "
                          "finite number")
    layer = ly.Scale(name=name, add=numbers[0]) if cls == "Add" else ly.Scale(name=name, mul=numbers[0])
    v = b.values[srcs[0]]
    return b.add(layer, srcs[0], v.shape, v.flat)


def _scaled_sum(b: _Builder, cfg: dict[str, Any], name: str, srcs: list[str]) -> str:
    """keras.applications' InceptionResNetV2 ``CustomScaleLayer``: ``inputs[0] + inputs[1] * scale``."""
    scale = cfg.get("scale")
    if len(srcs) != 2 or not isinstance(scale, (int, float)):
        raise CnnlabError(f"Keras layer '{name}' (CustomScaleLayer) needs two inputs and a numeric scale")
    layer = ly.Scale(name=b.fresh(f"{name}_scale"), mul=float(scale))
    scaled = b.add(layer, srcs[1], b.values[srcs[1]].shape)
    return _merge(b, "Add", {}, name, [srcs[0], scaled])


def _input_shape(cfg: dict[str, Any], name: str, given: Shape | None = None) -> Shape:
    """The input's shape, channels-first; ``given`` (C, H, W) fills the sizes it leaves unknown."""
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    if isinstance(shape, (list, tuple)):
        shape = shape[1:]
    else:
        shape = cfg.get("input_shape") or cfg.get("shape") or ([cfg["input_dim"]] if "input_dim" in cfg else None)
    if shape is None and given is not None:  # the file does not say: --input does
        shape = [given[1], given[2], given[0]] if len(given) == 3 else list(given)
    if isinstance(shape, (list, tuple)) and len(shape) == 3 and None in shape \
            and all(x is None or isinstance(x, int) and x > 0 for x in shape):
        shape = _fill(list(shape), name, given)
    if shape is None:
        raise CnnlabError(f"Keras layer '{name}': the model does not state its input shape; give it with --input "
                          "CxHxW (input_shape= in Python)")
    if not isinstance(shape, (list, tuple)) or not shape or not all(isinstance(x, int) and x > 0 for x in shape):
        raise CnnlabError(f"Keras layer '{name}': input shape {short(shape)} is not fixed; give every "
                          "dimension, e.g. Input(shape=(224, 224, 3))")
    if len(shape) == 3:
        return (shape[2], shape[0], shape[1])
    if len(shape) == 1:
        return (shape[0],)
    raise CnnlabError(f"Keras layer '{name}': input shape {short(shape)} is neither (H, W, C) nor (N,)")


def _fill(hwc: list[int | None], name: str, given: Shape | None) -> list[int]:
    """Keras' (H, W, C) with unknown sizes (None) taken from ``given`` (C, H, W); the sizes the
    file fixes must agree with it."""
    want = "x".join("?" if v is None else str(v) for v in (hwc[2], hwc[0], hwc[1]))
    if given is None:
        raise CnnlabError(f"Keras input '{name}' has size {want} (unknown sizes): give it with --input CxHxW "
                          "(--design CxHxW with adapt; input_shape=(C, H, W) in Python)")
    if len(given) != 3 or not all(type(v) is int and v > 0 for v in given):
        raise CnnlabError(f"input_shape {short(given)}: give (C, H, W) as three positive integers")
    c, h, w = given
    if any(k is not None and k != v for k, v in zip(hwc, (h, w, c))):
        raise CnnlabError(f"input {ly.fmt_shape(given)} does not fit the Keras input '{name}' of size {want}: "
                          "keep the sizes it fixes (channels first, CxHxW)")
    return [h, w, c]


def _tensor_ref(t: Any) -> str | None:
    """The producing layer of one inbound tensor (Keras 3 ``__keras_tensor__`` or tf.keras 2 list)."""
    if isinstance(t, dict) and t.get("class_name") == "__keras_tensor__":
        hist = t.get("config", {}).get("keras_history")
        return hist[0] if isinstance(hist, list) and hist and isinstance(hist[0], str) else None
    if isinstance(t, list) and t and isinstance(t[0], str):
        return t[0]
    return None


def _is_number(v: Any) -> bool:
    return type(v) in (int, float)


def _inbound(layer: dict[str, Any], name: str, where: str) -> list[str]:
    """The layers whose outputs ``layer`` reads (numbers among its arguments left out)."""
    items = [t for t in _call_args(layer, name, where) if not _is_number(t)]
    refs = [_tensor_ref(t) for t in items]
    if any(r is None for r in refs):
        raise CnnlabError(f"{where}: Keras layer '{name}' has inputs cnnlab cannot read: {short(items)}")
    return refs  # type: ignore[return-value]


def _numbers(layer: dict[str, Any], name: str, where: str) -> list[float]:
    """The numbers among a call's arguments: the constant of a Keras op such as ``x + 3.0``."""
    return [float(t) for t in _call_args(layer, name, where) if _is_number(t)]


def _call_args(layer: dict[str, Any], name: str, where: str) -> list[Any]:
    nodes = layer.get("inbound_nodes", [])
    if not nodes:
        return []
    if len(nodes) > 1:
        raise CnnlabError(f"{where}: Keras layer '{name}' is called {len(nodes)} times; shared layers are not "
                          "supported, give each call its own layer")
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3: {"args": [tensor or [tensors]], "kwargs": {}}
        args = node.get("args", [])
        items = args[0] if len(args) == 1 and isinstance(args[0], list) else args
    else:  # tf.keras 2: [[layer, node, tensor, kwargs], ...]
        items = node
    if not isinstance(items, list) or not items:
        raise CnnlabError(f"{where}: Keras layer '{name}' has inputs cnnlab cannot read: {short(items)}")
    return items


def _endpoints(v: Any) -> list[str]:
    if isinstance(v, list) and len(v) >= 1 and isinstance(v[0], str):
        return [v[0]]
    if isinstance(v, list):
        return [x[0] for x in v if isinstance(x, list) and x and isinstance(x[0], str)]
    return []


def _unread(entries: list[Any], name: str, ref: str, where: str) -> str:
    """Why layer ``name`` cannot read ``ref``, which no layer before it produces: ``ref`` is no layer,
    comes later in the list, or is computed from ``name``'s own output (a cycle)."""
    what = f"Keras layer '{safe_text(name)}' reads '{safe_text(ref)}'"
    inbound: dict[str, list[str]] = {}
    for e in entries:
        try:
            layer = _cfg(e, where)[2]
            inbound[layer] = _inbound(e, layer, where)
        except CnnlabError:
            continue  # a later entry cnnlab cannot read: no edges from it
    if ref not in inbound:
        return f"{where}: {what}, which is not a layer of the model; read the input or an earlier layer"
    came: dict[str, str] = {ref: ref}  # backwards from ``ref`` through what it reads, looking for ``name``
    queue = [ref]
    for x in queue:
        if x == name:
            path = [x]
            while path[-1] != ref:
                path.append(came[path[-1]])
            loop = " -> ".join(safe_text(v) for v in (*path, name))
            return (f"{where}: {what}, which is computed from its own output ({loop}): the layers form a cycle; "
                    f"give '{safe_text(name)}' an input computed before it")
        for v in inbound.get(x, []):
            if v not in came:
                came[v] = x
                queue.append(v)
    return f"{where}: {what}, which comes later in the layer list; list each layer after the layers it reads"


def from_config(data: dict[str, Any], where: str = "Keras config", input_shape: Shape | None = None) -> Network:
    """Translate a parsed Keras model config; ``input_shape`` as in :func:`load_keras`."""
    return _translate(data, where, input_shape)[0]


def _translate(data: dict[str, Any], where: str, input_shape: Shape | None) -> tuple[Network, _Value]:
    """The network of a model config and the value it outputs (its shape, and what a Flatten made of it)."""
    if not is_keras_config(data):
        raise CnnlabError(f"{where}: not a Keras model config (no \"class_name\"/\"config\"); "
                          "write one with open(path, 'w').write(model.to_json())")
    cls, cfg = data.get("class_name"), data["config"]
    if isinstance(cfg, list):  # Keras 1 to 2.2.2: a Sequential model's config is its layers
        cfg = {"layers": cfg}
    model_name = module_name(cfg["name"]) if isinstance(cfg.get("name"), str) and cfg["name"] else "keras_model"
    entries = cfg.get("layers")
    if cls not in ("Sequential", "Functional", "Model") or not isinstance(entries, list) or not entries:
        raise CnnlabError(f"{where}: a {short(cls)} config; cnnlab reads a Sequential or Functional model with layers")
    names = [_cfg(e, where)[2] for e in entries]
    if len(set(names)) != len(names):
        raise CnnlabError(f"{where}: layer names repeat; give each layer its own name")
    b = _Builder(where, set(names))
    meta: dict[str, Any] = {"source": "keras", "keras_class": cls}
    if cls == "Sequential":
        shape: Shape | None = None
        prev = ""
        for e in entries:
            lcls, lcfg, name = _cfg(e, where)
            if shape is None:
                first = lcfg if lcls == "InputLayer" else _model_input(lcfg) if lcls in _MODELS else lcfg
                shape = _input_shape({**_built(e), **first}, name, input_shape)
                b.values[""] = _Value(shape)
            if lcls == "InputLayer":
                continue
            if lcls in _MERGES:
                raise CnnlabError(f"{where}: Keras layer '{name}' ({lcls}) cannot sit in a Sequential model")
            prev = _layer(b, lcls, lcfg, name, prev)
        out = prev
    else:
        ins = _endpoints(cfg.get("input_layers"))
        outs = _endpoints(cfg.get("output_layers"))
        if len(ins) != 1 or len(outs) != 1:
            raise CnnlabError(f"{where}: {len(ins)} inputs and {len(outs)} outputs; cnnlab reads models with one "
                              "input and one output")
        for e in entries:
            lcls, lcfg, name = _cfg(e, where)
            if lcls == "InputLayer":
                if name != ins[0]:
                    raise CnnlabError(f"{where}: input '{name}' is not the model's input '{ins[0]}'")
                b.values[""] = _Value(_input_shape(lcfg, name, input_shape))
                b.alias[name] = ""
                continue
            refs = _inbound(e, name, where)
            for r in refs:
                if r not in b.alias:
                    raise CnnlabError(_unread(entries, name, r, where))
            srcs = [b.alias[r] for r in refs]
            numbers = _numbers(e, name, where)
            if numbers:
                b.alias[name] = _scalar_op(b, lcls, name, srcs, numbers)
                continue
            if lcls not in SUPPORTED and lcls not in _EXTRA and lcls not in _MODELS:
                _layer(b, lcls, lcfg, name, srcs[0])  # refuses it, naming the supported set
            if lcls == "CustomScaleLayer":
                b.alias[name] = _scaled_sum(b, lcfg, name, srcs)
                continue
            if lcls in _MERGES:
                b.alias[name] = _merge(b, lcls, lcfg, name, srcs)
                continue
            if len(srcs) != 1:
                raise CnnlabError(f"{where}: Keras layer '{name}' ({lcls}) reads {len(srcs)} inputs; give it one")
            b.alias[name] = _layer(b, lcls, lcfg, name, srcs[0])
        if "" not in b.values:
            raise CnnlabError(f"{where}: no InputLayer; build the model from keras.Input(shape=...)")
        if outs[0] not in b.alias:
            raise CnnlabError(f"{where}: the output '{outs[0]}' is not a layer of the model")
        out = b.alias[outs[0]]
    if not b.nodes:
        raise CnnlabError(f"{where}: the model has no layers besides its input")
    meta["keras_weights"] = b.weights
    if b.notes:
        meta["notes"] = b.notes
    if b.flatten:
        meta["keras_flatten"] = b.flatten
    chain = not b.merges and all(src == (b.nodes[i - 1].name if i else "") for i, src in enumerate(b.inputs)) \
        and out == b.nodes[-1].name
    if chain:
        layers: tuple[Node, ...] = tuple(b.nodes)
        meta["keras_prefix"] = ""
    else:
        g = graph(model_name, b.nodes, b.inputs, b.merges, out if out != b.nodes[-1].name else "")
        layers = (g,)
        meta["keras_prefix"] = join("", model_name)
    return check_values(Network(model_name, layers, b.values[""].shape, meta), where), b.values[out]
