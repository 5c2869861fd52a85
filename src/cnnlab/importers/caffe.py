"""Caffe ``.prototxt`` (deploy or train_val) as a :class:`~cnnlab.network.Network`.

The protobuf text format is read by a small parser of its own (no protobuf dependency): a message
is a list of ``name: value`` and ``name { message }`` fields, repeated fields collect in order.
Blobs are named values: each layer reads its ``bottom`` blobs and writes its ``top`` (in place
when they are equal), so a layer graph becomes a :class:`Graph` (a chain stays a chain). Caffe
pools round up (ceil mode); the analysis flags where that differs from PyTorch's floor.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import layers as ly
from ..errors import CnnlabError
from ..layers import Layer, Shape
from ..network import Merge, Network, Node, check_values, graph
from ..text import safe_text
from ..validate import short
from . import fresh_name, module_name

MAX_PROTOTXT_BYTES = 16 * 2**20

Message = dict[str, list[Any]]

_TOKEN = re.compile(r"""\s+|\#[^\n]*|(?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')|(?P<punct>[{}:;,<>\[\]])"""
                    r"""|(?P<word>[A-Za-z0-9_.+\-]+)""")


def parse_prototxt(text: str, where: str = "prototxt") -> Message:
    """The protobuf text format as nested dicts of lists; errors name the line."""
    tokens: list[tuple[str, str, int]] = []
    line, pos = 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise CnnlabError(f"{where}, line {line}: unexpected {safe_text(text[pos])!r}; is it a prototxt file?")
        kind = m.lastgroup
        if kind is not None:
            tokens.append((kind, m.group(kind), line))
        line += m.group(0).count("\n")
        pos = m.end()
    i = 0

    def message(depth: int, end: str | None) -> Message:
        nonlocal i
        if depth > 64:
            raise CnnlabError(f"{where}, line {tokens[i][2]}: nested more than 64 deep")
        out: Message = {}
        while i < len(tokens):
            kind, tok, ln = tokens[i]
            if kind == "punct" and tok in ("}", ">") and end is not None:
                i += 1
                return out
            if kind != "word":
                raise CnnlabError(f"{where}, line {ln}: expected a field name, got {tok!r}")
            i += 1
            if i < len(tokens) and tokens[i][1] == ":":
                i += 1
            if i >= len(tokens):
                raise CnnlabError(f"{where}, line {ln}: field '{safe_text(tok)}' has no value")
            vkind, v, vln = tokens[i]
            if v in ("{", "<"):
                i += 1
                value: Any = message(depth + 1, "}" if v == "{" else ">")
            elif vkind == "str":
                i += 1
                value = v[1:-1].encode().decode("unicode_escape") if "\\" in v else v[1:-1]
            elif vkind == "word":
                i += 1
                value = _scalar(v)
            else:
                raise CnnlabError(f"{where}, line {vln}: field '{safe_text(tok)}' has no value (got {v!r})")
            out.setdefault(tok, []).append(value)
            if i < len(tokens) and tokens[i][1] in (";", ","):
                i += 1
        if end is not None:
            last = tokens[-1][2] if tokens else 1
            raise CnnlabError(f"{where}, line {last}: a '{{' is never closed; add the missing '}}'")
        return out

    return message(0, None)


def _scalar(v: str) -> Any:
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return {"true": True, "false": False}.get(v, v)


def load_caffe(path: str | Path, input_shape: Shape | None = None) -> Network:
    """The network a Caffe ``.prototxt`` describes (``.caffemodel`` weights are not read); ``input_shape``
    (C, H, W) when the file states none."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_PROTOTXT_BYTES:
            raise CnnlabError(f"{p.name}: over {MAX_PROTOTXT_BYTES >> 20} MiB; is it a prototxt?")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CnnlabError(f"cannot read Caffe model {p.name}: {e}") from None
    return from_prototxt(parse_prototxt(text, p.name), p.name, default_name=p.stem, input_shape=input_shape)


# --------------------------------------------------------------------------- translation

SUPPORTED = ("Input", "Data", "Convolution", "Deconvolution", "Pooling", "InnerProduct", "ReLU", "PReLU", "Sigmoid",
             "TanH", "LRN", "Dropout", "Softmax", "Concat", "Eltwise", "Axpy", "BatchNorm", "Scale", "Split", "Crop",
             "Reshape", "Flatten")
_SKIPPED = ("Accuracy", "Silence")  # and every *Data and *Loss layer of a train_val file


def _skipped(kind: str) -> bool:
    return kind == "Input" or kind.endswith("Data") or kind.endswith("Loss") or kind in _SKIPPED


def _one(msg: Message, key: str, default: Any = None) -> Any:
    v = msg.get(key)
    return v[-1] if v else default


def _param(layer: Message, key: str) -> Message:
    v = _one(layer, key, {})
    return v if isinstance(v, dict) else {}


def _int(p: Message, key: str, default: int, name: str) -> int:
    """An integer field of a layer's parameters (not a bool, a fraction or a word)."""
    v = _one(p, key, default)
    if not isinstance(v, int) or isinstance(v, bool):
        raise CnnlabError(f"Caffe layer '{safe_text(name)}': {key} {short(v)} is not an integer")
    return v


def _float(p: Message, key: str, default: float, name: str) -> float:
    """A finite number field of a layer's parameters."""
    v = _one(p, key, default)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise CnnlabError(f"Caffe layer '{safe_text(name)}': {key} {short(v)} is not a finite number")
    return float(v)


def _bool(p: Message, key: str, default: bool, name: str) -> bool:
    """A bool field: true or false (protobuf also reads 1 and 0)."""
    v = _one(p, key, default)
    if v in (0, 1) and type(v) in (bool, int):
        return bool(v)
    raise CnnlabError(f"Caffe layer '{safe_text(name)}': {key} {short(v)} is not true or false")


def _hw(p: Message, base: str, default: int, name: str) -> tuple[int, int]:
    """A Caffe size: ``base`` (one value, or one per axis) or its per-axis fields (``kernel_h``/``kernel_w``
    for ``kernel_size``, ``stride_h``/``stride_w``, ``pad_h``/``pad_w``)."""
    axis = base.removesuffix("_size")
    h, w = _one(p, f"{axis}_h"), _one(p, f"{axis}_w")
    if h is not None or w is not None:
        if h is None or w is None:
            raise CnnlabError(f"Caffe layer '{name}': give both {axis}_h and {axis}_w")
        vals = [h, w]
    else:
        got = p.get(base) or [default]
        vals = [got[0], got[-1]] if len(got) in (1, 2) else []
    if len(vals) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in vals):
        raise CnnlabError(f"Caffe layer '{name}': {base} {got if h is None else (h, w)} is not one or two "
                          "non-negative integers")
    return vals[0], vals[1]


@dataclass
class _Builder:
    taken: set[str]
    nodes: list[Node] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    shapes: dict[str, Shape] = field(default_factory=dict)  # value -> channels-first shape
    blobs: dict[str, str] = field(default_factory=dict)  # Caffe blob -> the value that holds it
    notes: list[str] = field(default_factory=list)

    def fresh(self, base: str) -> str:
        return fresh_name(self.taken, base)

    def add(self, layer: Layer, src: str) -> str:
        out = layer.figures(self.shapes[src]).out
        self.nodes.append(layer)
        self.inputs.append(src)
        self.shapes[layer.name] = out
        return layer.name


def _input_shape(net: Message, layers: list[Message], where: str,
                 given: Shape | None = None) -> tuple[str, Shape] | None:
    dims: list[Any] | None = None

    def dims_of(shape: Any) -> Any:
        if not isinstance(shape, dict):
            raise CnnlabError(f"{where}: an input shape {short(shape)} is not a message; write "
                              "shape { dim: 1 dim: 3 dim: 224 dim: 224 }")
        return shape.get("dim")

    name = _one(net, "input")
    if name is not None:
        shape = _one(net, "input_shape")
        dims = dims_of(shape) if shape is not None else net.get("input_dim")
    for layer in layers:
        if dims is None and _one(layer, "type") == "Input":
            name = _one(layer, "top")
            dims = dims_of(_one(_param(layer, "input_param"), "shape", {}))
    if dims is None:
        for layer in layers:  # a train_val file: the data layer's crop is the input
            crop = _one(_param(layer, "transform_param"), "crop_size")
            if str(_one(layer, "type", "")).endswith("Data") and crop:
                name, dims = (layer.get("top") or [None])[0], [1, 3, crop, crop]
                break
    if dims is None and given is not None:  # a train_val file whose data layers do not say: --input
        name = next(((x.get("top") or [None])[0] for x in layers if str(_one(x, "type", "")).endswith("Data")), "data")
        dims = [1, *given]
    if dims is None:
        return None
    if not isinstance(name, str) or len(dims) not in (2, 4) or \
            not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise CnnlabError(f"{where}: input dims {dims} are not N x C x H x W (or N x D) positive integers")
    return name, tuple(dims[1:])


# V1 prototxt (``layers { type: CONVOLUTION }``, as the VGG and early Model Zoo files are written): the
# LayerType enum of caffe.proto's V1LayerParameter, by name and number, as the V2 type strings.
_V1_TYPES = {
    "ABSVAL": (35, "AbsVal"), "ACCURACY": (1, "Accuracy"), "ARGMAX": (30, "ArgMax"), "BNLL": (2, "BNLL"),
    "CONCAT": (3, "Concat"), "CONTRASTIVE_LOSS": (37, "ContrastiveLoss"), "CONVOLUTION": (4, "Convolution"),
    "DATA": (5, "Data"), "DECONVOLUTION": (39, "Deconvolution"), "DROPOUT": (6, "Dropout"),
    "DUMMY_DATA": (32, "DummyData"), "EUCLIDEAN_LOSS": (7, "EuclideanLoss"), "ELTWISE": (25, "Eltwise"),
    "EXP": (38, "Exp"), "FLATTEN": (8, "Flatten"), "HDF5_DATA": (9, "HDF5Data"), "HDF5_OUTPUT": (10, "HDF5Output"),
    "HINGE_LOSS": (28, "HingeLoss"), "IM2COL": (11, "Im2col"), "IMAGE_DATA": (12, "ImageData"),
    "INFOGAIN_LOSS": (13, "InfogainLoss"), "INNER_PRODUCT": (14, "InnerProduct"), "LRN": (15, "LRN"),
    "MEMORY_DATA": (29, "MemoryData"), "MULTINOMIAL_LOGISTIC_LOSS": (16, "MultinomialLogisticLoss"),
    "MVN": (34, "MVN"), "POOLING": (17, "Pooling"), "POWER": (26, "Power"), "RELU": (18, "ReLU"),
    "SIGMOID": (19, "Sigmoid"), "SIGMOID_CROSS_ENTROPY_LOSS": (27, "SigmoidCrossEntropyLoss"),
    "SILENCE": (36, "Silence"), "SOFTMAX": (20, "Softmax"), "SOFTMAX_LOSS": (21, "SoftmaxWithLoss"),
    "SPLIT": (22, "Split"), "SLICE": (33, "Slice"), "TANH": (23, "TanH"), "WINDOW_DATA": (24, "WindowData"),
    "THRESHOLD": (31, "Threshold"),
}
_V1_BY_NUMBER = {n: v2 for n, v2 in _V1_TYPES.values()}


def _upgrade_v1(layers: list[Any], where: str) -> list[Message]:
    """V1 ``layers`` entries as V2 ``layer`` ones: the same fields, the type enum as its V2 string; the V1-only
    ``blobs_lr``/``weight_decay`` (learning-rate and decay multipliers) are dropped, as they count nothing."""
    out = []
    for x in layers:
        if not isinstance(x, dict):
            raise CnnlabError(f"{where}: a 'layers' entry is not a message; write layers {{ name: ... type: ... }}")
        if "layer" in x:
            raise CnnlabError(f"{where}: a V0 prototxt (layers {{ layer {{ ... }} }}); upgrade it with Caffe's "
                              "upgrade_net_proto_text")
        kind = _one(x, "type")
        v2 = _V1_BY_NUMBER.get(kind) if isinstance(kind, int) else _V1_TYPES.get(str(kind), (0, None))[1]
        if v2 is None:
            name = safe_text(str(_one(x, "name", "?")))
            raise CnnlabError(f"{where}: V1 layer '{name}' has type {short(kind)}, not one of caffe.proto's V1 "
                              "types (CONVOLUTION, POOLING, INNER_PRODUCT, RELU, ...)")
        out.append({k: ([v2] if k == "type" else v) for k, v in x.items() if k not in ("blobs_lr", "weight_decay")})
    return out


def from_prototxt(net: Message, where: str = "prototxt", default_name: str = "caffe",
                  input_shape: Shape | None = None) -> Network:
    """Translate a parsed prototxt (V2 ``layer`` entries, or V1 ``layers`` ones, upgraded on the way).
    ``input_shape`` (C, H, W) is the input when the file gives none (a train_val file's data layers read
    a database whose image size they do not state)."""
    layers = net.get("layer", [])
    if net.get("layers"):
        if layers:
            raise CnnlabError(f"{where}: both V1 'layers' and V2 'layer' entries; write the file in one of the two")
        layers = _upgrade_v1(net["layers"], where)
    if not layers or not all(isinstance(x, dict) for x in layers):
        raise CnnlabError(f"{where}: no 'layer {{ ... }}' entries; is it a Caffe prototxt?")
    found = _input_shape(net, layers, where, input_shape)
    if found is None:
        raise CnnlabError(f"{where}: no input shape; give it with --input CxHxW (input_shape= in Python), or add an "
                          "Input layer, input_shape or input_dim to the file")
    model = module_name(str(_one(net, "name", default_name)) or default_name)
    names = [module_name(n) if n else n for n in (str(_one(x, "name", "")) for x in layers)]
    kept = [n for x, n in zip(layers, names) if not _skipped(str(_one(x, "type", "")))]
    if len(set(kept)) != len(kept):
        dup = next(n for n in kept if kept.count(n) > 1)
        raise CnnlabError(f"{where}: two layers are named '{safe_text(dup)}'; give each layer its own name")
    for x, n in zip(layers, names):
        bad = next((v for key in ("bottom", "top") for v in x.get(key, []) if not isinstance(v, str)), None)
        if bad is not None:
            raise CnnlabError(f"{where}: Caffe layer '{safe_text(n)}' has a bottom or top {short(bad)} that is not a "
                              'blob name; write it as bottom: "name"')
    b = _Builder(set(names))
    b.shapes[""] = found[1]
    b.blobs[found[0]] = ""
    skipped: dict[str, dict[str, None]] = {}  # kind -> layer names, in the file's order
    for at, (layer, name) in enumerate(zip(layers, names)):
        kind = _one(layer, "type")
        if not isinstance(kind, str) or not name:
            raise CnnlabError(f"{where}: a layer without a name or type; give both")
        if _skipped(kind):
            if kind != "Input":
                skipped.setdefault(kind, {})[name] = None
            continue
        bottoms, tops = layer.get("bottom", []), layer.get("top", [])
        for blob in bottoms:
            if blob not in b.blobs:
                raise CnnlabError(_unwritten(layers, names, at, blob, where))
        srcs = [b.blobs[x] for x in bottoms]
        outs = _layer(b, layer, kind, name, srcs, where)
        for blob, value in zip(tops, outs if len(outs) == len(tops) else outs * len(tops)):
            b.blobs[blob] = value
    if not b.nodes:
        raise CnnlabError(f"{where}: no layers besides the input")
    for kind, which in skipped.items():
        shown = ", ".join(f"'{n}'" for n in list(which)[:3]) + (f" and {len(which) - 3} more" if len(which) > 3 else "")
        b.notes.append(f"{kind} layer{'s' if len(which) > 1 else ''} {shown} skipped")
    last = b.blobs[_one(layers[-1], "top")] if _one(layers[-1], "top") in b.blobs else b.nodes[-1].name
    side = _unreached(b, last)
    if side:  # a train_val file's auxiliary classifiers (GoogLeNet's loss1, loss2) end in skipped loss layers
        shown = ", ".join(side[:3]) + (", ..." if len(side) > 3 else "")
        b.notes.append(f"{len(side)} layers ({shown}) do not lead to the output {last}: a train_val file's "
                       "auxiliary heads; their parameters are counted, and the built module computes them")
    meta: dict[str, Any] = {"source": "caffe"}
    if b.notes:
        meta["notes"] = b.notes
    chain = not b.merges and last == b.nodes[-1].name and \
        all(src == (b.nodes[i - 1].name if i else "") for i, src in enumerate(b.inputs))
    if chain:
        return check_values(Network(model, tuple(b.nodes), found[1], meta), where)
    return check_values(Network(model, (graph(model, b.nodes, b.inputs, b.merges,
                                              last if last != b.nodes[-1].name else ""),), found[1], meta), where)


def _unreached(b: _Builder, out: str) -> list[str]:
    """The layers whose values never reach ``out``."""
    reads = {n.name: [src] for n, src in zip(b.nodes, b.inputs)} | {m.name: list(m.inputs) for m in b.merges}
    seen, todo = set(), [out]
    while todo:
        v = todo.pop()
        if v not in seen:
            seen.add(v)
            todo.extend(reads.get(v, []))
    return [n.name for n in b.nodes if n.name not in seen]


def _unwritten(layers: list[Message], names: list[str], at: int, blob: str, where: str) -> str:
    """Why layer ``at`` cannot read ``blob``, which no layer before it writes: no layer writes it, a
    later layer does (the order is wrong), or a later layer writes it from ``at``'s own output (a cycle)."""
    name, what = safe_text(names[at]), f"Caffe layer '{safe_text(names[at])}' reads blob '{safe_text(blob)}'"
    readers: dict[str, list[int]] = {}
    for j in range(at + 1, len(layers)):
        for x in layers[j].get("bottom", []):
            readers.setdefault(x, []).append(j)
    came: dict[int, int] = {at: at}  # breadth first over the later layers that read what ``at`` feeds
    queue = [at]
    for i in queue:
        if i != at and blob in layers[i].get("top", []):
            path = [i]
            while path[-1] != at:
                path.append(came[path[-1]])
            loop = " -> ".join(safe_text(names[j]) for j in reversed(path))
            return (f"{where}: {what}, which is written from its own output ({loop} -> {name}): the layers form a "
                    f"cycle; give '{name}' a blob written before it")
        for top in layers[i].get("top", []):
            for j in readers.get(top, []):
                if j not in came:
                    came[j] = i
                    queue.append(j)
    if any(blob in x.get("top", []) for x in layers[at + 1:]):
        return f"{where}: {what}, which only a later layer writes; order the layers so that each bottom is written first"
    return f"{where}: {what}, which no layer before it writes; name the top of an earlier layer (or the input)"


def _layer(b: _Builder, layer: Message, kind: str, name: str, srcs: list[str], where: str) -> list[str]:
    """Add one Caffe layer; returns the values of its tops (one value for all tops when they share it)."""
    if kind in ("Concat", "Eltwise"):
        return [_merge(b, layer, kind, name, srcs)]
    if kind == "Scale" and len(srcs) == 2:  # SENet's channel gate: a map times its C x 1 x 1 (or C) weights
        return [_gate(b, layer, name, srcs)]
    if kind == "Axpy":  # SENet's own layer: a * x + y, the gate a (C x 1 x 1) on the map x, plus the shortcut y
        if len(srcs) != 3:
            raise CnnlabError(f"{where}: Caffe layer '{safe_text(name)}' (Axpy) reads {len(srcs)} bottoms; give it "
                              "the gate, the map and the shortcut")
        gated = _gate(b, {}, b.fresh(f"{name}_gate"), [srcs[1], srcs[0]])
        return [_merge(b, {}, "Eltwise", name, [gated, srcs[2]])]
    if kind == "Reshape":
        return [_reshape(b, layer, name, srcs, where)]
    if kind == "Split":
        return srcs[:1]
    if kind == "Crop":
        return [_crop(b, layer, name, srcs, where)]
    if len(srcs) != 1:
        raise CnnlabError(f"{where}: Caffe layer '{safe_text(name)}' ({kind}) reads {len(srcs)} bottoms; give it one")
    src = srcs[0]
    s = b.shapes[src]
    if kind in ("Convolution", "Deconvolution"):  # a Deconvolution's output s(n - 1) + d(k - 1) + 1 - 2p is
        p = _param(layer, "convolution_param")  # PyTorch's ConvTranspose2d's
        cls = ly.Conv if kind == "Convolution" else ly.ConvTranspose
        return [b.add(cls(name=name, filters=_int(p, "num_output", 0, name), kernel=_hw(p, "kernel_size", 1, name),
                          stride=_hw(p, "stride", 1, name), padding=_hw(p, "pad", 0, name),
                          dilation=_hw(p, "dilation", 1, name), groups=_int(p, "group", 1, name),
                          bias=_bool(p, "bias_term", True, name)), src)]
    if kind == "Pooling":
        p = _param(layer, "pooling_param")
        op = _one(p, "pool", "MAX")
        if op not in ("MAX", "AVE"):
            raise CnnlabError(f"Caffe layer '{safe_text(name)}': pool {safe_text(op)} is not supported; use MAX or AVE")
        if _one(p, "global_pooling", False):
            cls = ly.AdaptiveMaxPool if op == "MAX" else ly.AdaptiveAvgPool
            return [b.add(cls(name=name, output=1), src)]
        k, st, pad = _hw(p, "kernel_size", 1, name), _hw(p, "stride", 1, name), _hw(p, "pad", 0, name)
        # Caffe rounds up unless told otherwise: round_mode FLOOR (BVLC's own setting) or ceil_mode false (forks)
        mode = _one(p, "round_mode", "CEIL")
        if mode not in ("CEIL", "FLOOR"):
            raise CnnlabError(f"Caffe layer '{safe_text(name)}': round_mode {short(mode)} is not CEIL or FLOOR")
        ceil = mode == "CEIL" and _bool(p, "ceil_mode", True, name)
        cls = ly.MaxPool if op == "MAX" else ly.AvgPool
        return [b.add(cls(name=name, kernel=k, stride=st, padding=pad, ceil_mode=ceil), src)]
    if kind == "InnerProduct":
        p = _param(layer, "inner_product_param")
        if len(s) != 1:  # Caffe flattens from axis 1 by itself
            src = b.add(ly.Flatten(name=b.fresh(f"{name}_flatten")), src)
        return [b.add(ly.Dense(name=name, units=_int(p, "num_output", 0, name), bias=_bool(p, "bias_term", True, name)),
                      src)]
    if kind == "ReLU":
        slope = _float(_param(layer, "relu_param"), "negative_slope", 0.0, name)
        return [b.add(ly.LeakyReLU(name=name, slope=slope) if slope else ly.ReLU(name=name), src)]
    if kind == "PReLU":
        return [b.add(_prelu(b, layer, name), src)]
    if kind in ("Sigmoid", "TanH"):
        return [b.add((ly.Sigmoid if kind == "Sigmoid" else ly.Tanh)(name=name), src)]
    if kind == "LRN":
        p = _param(layer, "lrn_param")
        if _one(p, "norm_region", "ACROSS_CHANNELS") != "ACROSS_CHANNELS":
            raise CnnlabError(f"Caffe layer '{safe_text(name)}': LRN within a channel is not supported; "
                              "use ACROSS_CHANNELS")
        size = _int(p, "local_size", 5, name)  # Caffe divides alpha by the window size; cnnlab's LRN does not
        return [b.add(ly.LRN(name=name, size=size, alpha=_float(p, "alpha", 1.0, name) / max(size, 1),
                             beta=_float(p, "beta", 0.75, name), k=_float(p, "k", 1.0, name)), src)]
    if kind == "Dropout":
        return [b.add(ly.Dropout(name=name, p=_float(_param(layer, "dropout_param"), "dropout_ratio", 0.5, name)),
                      src)]
    if kind == "Softmax":
        return [b.add(ly.Softmax(name=name), src)]
    if kind == "Flatten":
        return [b.add(ly.Flatten(name=name), src)]
    if kind == "BatchNorm":
        eps = _float(_param(layer, "batch_norm_param"), "eps", 1e-5, name)
        return [b.add(ly.BatchNorm(name=name, eps=eps, affine=False), src)]
    if kind == "Scale":
        return [_scale(b, layer, name, src)]
    raise CnnlabError(f"Caffe layer '{safe_text(name)}' ({safe_text(kind)}) is not supported: cnnlab reads "
                      f"{', '.join(SUPPORTED)}; rewrite it with these layers")


def _crop(b: _Builder, layer: Message, name: str, srcs: list[str], where: str) -> str:
    """Caffe's Crop: the first bottom cut to the second's height and width from ``offset`` (FCN aligns its
    upsampled scores with the input this way). The sizes are known here, so it is a fixed crop of the first."""
    if len(srcs) != 2:
        raise CnnlabError(f"{where}: Caffe layer '{safe_text(name)}' (Crop) reads {len(srcs)} bottoms; give it the "
                          "blob to crop and the blob whose size it takes")
    p = _param(layer, "crop_param")
    axis, offsets = _int(p, "axis", 2, name), p.get("offset", [0])
    (c, h, w), ref = b.shapes[srcs[0]], b.shapes[srcs[1]]
    if axis not in (2, -2) or len(ref) != 3 or len(offsets) not in (1, 2) or \
            not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets):
        raise CnnlabError(f"Caffe layer '{safe_text(name)}': Crop on axis {axis} with offset {short(offsets)} is not "
                          "supported; crop height and width (axis 2) by non-negative offsets")
    oh, ow = offsets[0], offsets[-1]
    if oh + ref[1] > h or ow + ref[2] > w:
        raise CnnlabError(f"Caffe layer '{safe_text(name)}': cannot cut {ref[1]}x{ref[2]} at offset {oh}, {ow} from "
                          f"{ly.fmt_shape((c, h, w))}; give a smaller offset or a larger first bottom")
    return b.add(ly.Crop(name=name, crop=(oh, h - oh - ref[1], ow, w - ow - ref[2])), srcs[0])


def _prelu(b: _Builder, layer: Message, name: str) -> ly.PReLU:
    """Caffe's PReLU: one slope per channel, or one for all with ``channel_shared``. Without a filler
    the slopes start at 0.25; a constant filler gives its value (Caffe's default 0)."""
    p = _param(layer, "prelu_param")
    shared = _one(p, "channel_shared", False)
    if not isinstance(shared, bool):
        raise CnnlabError(f"Caffe layer '{safe_text(name)}': channel_shared {safe_text(str(shared))} is not true or "
                          "false")
    init = 0.25
    filler = _one(p, "filler")
    if isinstance(filler, dict):
        kind, value = _one(filler, "type", "constant"), _one(filler, "value", 0.0)
        if kind == "constant" and type(value) in (int, float) and math.isfinite(value):
            init = float(value)
        else:
            b.notes.append(f"PReLU layer '{name}': filler {kind} read as the constant 0.25")
    return ly.PReLU(name=name, shared=shared, init=init)


def _scale(b: _Builder, layer: Message, name: str, src: str) -> str:
    """A Scale after a BatchNorm gives it gamma (and beta with bias_term): one affine BatchNorm."""
    i = next((j for j, n in enumerate(b.nodes) if n.name == src), None)
    bn = b.nodes[i] if i is not None else None
    if not isinstance(bn, ly.BatchNorm) or bn.affine:
        raise CnnlabError(f"Caffe layer '{safe_text(name)}': a Scale is supported right after a BatchNorm; "
                          "put a BatchNorm before it")
    bias = _bool(_param(layer, "scale_param"), "bias_term", False, name)
    b.nodes[i] = replace(bn, affine=True, center=bias)  # type: ignore[index]
    return src


def _reshape(b: _Builder, layer: Message, name: str, srcs: list[str], where: str) -> str:
    """Caffe's Reshape where it only adds or drops unit axes (SE-BN-Inception's gate, ``dim: 0 dim: 0``):
    ``dim`` 0 copies the bottom's axis, -1 takes what is left. Nothing else reshapes a map here."""
    if len(srcs) != 1:
        raise CnnlabError(f"{where}: Caffe layer '{safe_text(name)}' (Reshape) reads {len(srcs)} bottoms; give it one")
    shape = _one(_param(layer, "reshape_param"), "shape", {})
    dims = shape.get("dim", []) if isinstance(shape, dict) else None
    s = b.shapes[srcs[0]]
    full = (1, *s)  # Caffe's blob has the batch axis
    if not isinstance(dims, list) or not dims or not all(isinstance(d, int) and not isinstance(d, bool) and d >= -1
                                                         for d in dims) or dims.count(-1) > 1:
        raise CnnlabError(f"Caffe layer '{safe_text(name)}': Reshape to {short(dims)} is not a list of dims (0 copies "
                          "an axis, -1 takes the rest)")
    out = [full[i] if d == 0 and i < len(full) else d for i, d in enumerate(dims)]
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        out[out.index(-1)] = math.prod(full) // known if known and math.prod(full) % known == 0 else 0
    target = tuple(out[1:])
    if math.prod(out) != math.prod(full) or not target or out[0] != 1:
        raise CnnlabError(f"Caffe layer '{safe_text(name)}': cannot reshape {ly.fmt_shape(s)} to {short(dims)}")
    if target == s:
        return srcs[0]
    if len(target) == 1:
        return b.add(ly.Flatten(name=name), srcs[0])
    if len(s) == 1 and len(target) == 3 and target[1:] == (1, 1):
        return b.add(ly.Reshape(name=name, shape=target), srcs[0])
    raise CnnlabError(f"Caffe layer '{safe_text(name)}': Reshape of {ly.fmt_shape(s)} to {ly.fmt_shape(target)} is "
                      "not supported; cnnlab reshapes only by adding or dropping unit axes")


def _gate(b: _Builder, layer: Message, name: str, srcs: list[str]) -> str:
    """A Scale of two bottoms multiplies the first by the second from ``axis`` on (SE-ResNet's
    ``scale_param { axis: 0 }`` over a C x 1 x 1 blob): a ``mul`` merge, broadcast over height and width."""
    (c, *hw), other = b.shapes[srcs[0]], b.shapes[srcs[1]]
    axis = _int(_param(layer, "scale_param"), "axis", 1, name)
    weights = other if len(other) != 1 else (other[0], 1, 1)
    if axis not in (0, 1) or len(b.shapes[srcs[0]]) != 3 or weights[0] != c or \
            any(w not in (1, n) for w, n in zip(weights[1:], hw)) or _bool(_param(layer, "scale_param"), "bias_term",
                                                                              False, name):
        raise CnnlabError(f"Caffe layer '{safe_text(name)}': Scale of {ly.fmt_shape(b.shapes[srcs[0]])} by "
                          f"{ly.fmt_shape(other)} is not supported; scale a map by one weight per channel")
    gate = srcs[1]
    if len(other) == 1:  # weights from an InnerProduct: as C x 1 x 1, so they broadcast over the map
        gate = b.add(ly.Reshape(name=b.fresh(f"{name}_reshape"), shape=(c, 1, 1)), gate)
    b.merges.append(Merge(name, "mul", (srcs[0], gate)))
    b.shapes[name] = b.shapes[srcs[0]]
    return name


def _merge(b: _Builder, layer: Message, kind: str, name: str, srcs: list[str]) -> str:
    if len(srcs) < 2:
        return srcs[0] if srcs else ""
    shapes = [b.shapes[x] for x in srcs]
    if kind == "Concat":
        p = _param(layer, "concat_param")
        axis = _one(p, "axis", _one(p, "concat_dim", 1))
        if axis != 1 or len({s[1:] for s in shapes}) != 1:
            raise CnnlabError(f"Caffe layer '{safe_text(name)}': cannot concatenate "
                              f"{', '.join(map(ly.fmt_shape, shapes))} on axis {axis}; concatenate channels "
                              "(axis 1) of maps of one size")
        op, out = "concat", (sum(s[0] for s in shapes), *shapes[0][1:])
    else:
        p = _param(layer, "eltwise_param")
        operation = _one(p, "operation", "SUM")
        if operation not in ("SUM", "PROD", "MAX") or p.get("coeff"):
            raise CnnlabError(f"Caffe layer '{safe_text(name)}': Eltwise {safe_text(str(operation))} "
                              f"{'with coefficients ' if p.get('coeff') else ''}is not supported; use SUM, PROD or "
                              "MAX")
        if len(set(shapes)) != 1:
            raise CnnlabError(f"Caffe layer '{safe_text(name)}': Eltwise of {', '.join(map(ly.fmt_shape, shapes))}; "
                              "give its bottoms one shape")
        op, out = {"SUM": "add", "PROD": "mul", "MAX": "max"}[operation], shapes[0]
    m = name
    b.merges.append(Merge(m, op, tuple(srcs)))
    b.shapes[m] = out
    return m


