"""Lift a user's ``torch.nn.Module`` into a network description, so analysis, adapt, the diagram
and spec export work on it.

``torch.fx`` records the forward pass as a graph. Each call of a known module or function becomes
a layer: a module called twice gives two rows (ResNet's shared ``relu``), and when it has
parameters the later calls share the first's weights (``shares``), so they are counted once. Where
the graph merges paths, the merge becomes a :class:`Residual` (an ``add`` of two paths that share no
layer), a :class:`Concat` (a channel ``cat`` of such paths) or, when the paths share layers
(DenseNet) or multiply (squeeze-excitation), a :class:`Graph` that holds every layer once. Anything
else (a parameter tied between two modules, among others) is refused with a :class:`LiftError` that
names every unsupported node at once.
"""

from __future__ import annotations

import inspect
import operator
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from . import torch_backend as tb
from .errors import CnnlabError
from .layers import (
    ELU,
    GELU,
    LRN,
    AdaptiveAvgPool,
    AdaptiveMaxPool,
    AvgPool,
    BatchNorm,
    Conv,
    ConvTranspose,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    GroupNorm,
    Hardsigmoid,
    Hardswish,
    Layer,
    LayerNorm,
    LeakyReLU,
    LogSoftmax,
    MaxPool,
    Mish,
    ReLU,
    ReLU6,
    Scale,
    ScaledTanh,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
    Upsample,
    ZeroPad,
)
from .network import Merge, Network, Node, concat, graph, map_leaves, residual, seq


class LiftError(CnnlabError):
    """The module's forward uses operations the description cannot hold. ``unsupported`` maps each
    kind of node (``call_method permute``) to how often it occurs, so a caller can report them
    all and fall back to measuring the module."""

    def __init__(self, message: str, unsupported: dict[str, int]) -> None:
        super().__init__(message)
        self.unsupported = unsupported


def _t(v: Any) -> Any:
    return tuple(v) if isinstance(v, (tuple, list)) else v


def _sides(pad: Any) -> Any:
    """F.pad order (left, right, top, bottom) -> ours (top, bottom, left, right); 'same' stays."""
    return pad if isinstance(pad, str) else (pad[2], pad[3], pad[0], pad[1])


IDENTITY_NAMES = ("DropPath", "StochasticDepth", "Identity")  # stochastic depth is the identity at inference
LEAVES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.BatchNorm1d, nn.BatchNorm2d,
          nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.LocalResponseNorm, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Flatten,
          nn.Identity, nn.Dropout, nn.Dropout2d, nn.Softmax, nn.LogSoftmax, nn.SiLU, nn.Hardswish, nn.Hardsigmoid,
          nn.GELU, nn.ReLU6, nn.LeakyReLU, nn.Mish, nn.ELU, nn.LayerNorm, nn.GroupNorm, nn.ZeroPad2d, nn.Upsample,
          tb.GlobalAvgPool, tb.ScaledTanh)


class _LeafTracer(fx.Tracer):
    """Stops at every module cnnlab can describe, including subclasses (fx only stops at torch.nn's own)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (isinstance(m, LEAVES) or type(m).__name__ in IDENTITY_NAMES
                or super().is_leaf_module(m, qualname))


_SIMPLE = {nn.ReLU: ReLU, nn.Tanh: Tanh, nn.Sigmoid: Sigmoid, nn.SiLU: SiLU, nn.Hardswish: Hardswish,
           nn.Hardsigmoid: Hardsigmoid, nn.ReLU6: ReLU6, nn.Mish: Mish}


def module_layer(m: nn.Module, name: str) -> Layer | None:
    """The description of one PyTorch leaf module (None: the identity at inference)."""
    if type(m).__name__ in IDENTITY_NAMES or isinstance(m, nn.Identity):
        return None
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise CnnlabError(f"module '{name}': padding_mode '{m.padding_mode}' is not supported; use zeros")
        pad = m.padding if isinstance(m.padding, str) else _t(m.padding)
        if isinstance(m, tb.Conv2dPad):
            pad = _sides(m.pad)
        return Conv(name=name, filters=m.out_channels, kernel=_t(m.kernel_size), stride=_t(m.stride), padding=pad,
                    dilation=_t(m.dilation), groups=m.groups, bias=m.bias is not None)
    if isinstance(m, nn.ConvTranspose2d):
        return ConvTranspose(name=name, filters=m.out_channels, kernel=_t(m.kernel_size), stride=_t(m.stride),
                             padding=_t(m.padding), output_padding=_t(m.output_padding), dilation=_t(m.dilation),
                             groups=m.groups, bias=m.bias is not None)
    if isinstance(m, nn.Linear):
        return Dense(name=name, units=m.out_features, bias=m.bias is not None)
    if isinstance(m, nn.MaxPool2d):
        pad = _sides(m.extra) if getattr(m, "extra", None) is not None else _t(m.padding)
        return MaxPool(name=name, kernel=_t(m.kernel_size), stride=_t(m.stride), padding=pad,
                       dilation=_t(m.dilation), ceil_mode=m.ceil_mode)
    if isinstance(m, nn.AvgPool2d):
        pad = _sides(m.extra) if getattr(m, "extra", None) is not None else _t(m.padding)
        return AvgPool(name=name, kernel=_t(m.kernel_size), stride=_t(m.stride), padding=pad,
                       ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad)
    if isinstance(m, tb.GlobalAvgPool):
        return GlobalAvgPool(name=name)
    if isinstance(m, tb.ScaledTanh):
        return ScaledTanh(name=name, a=m.a, s=m.s)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return BatchNorm(name=name, eps=m.eps, momentum=m.momentum if m.momentum is not None else 0.1,
                         affine=m.affine, track_running_stats=m.track_running_stats)
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        cls = AdaptiveAvgPool if isinstance(m, nn.AdaptiveAvgPool2d) else AdaptiveMaxPool
        return cls(name=name, output=_t(m.output_size))
    if isinstance(m, nn.LocalResponseNorm):
        return LRN(name=name, size=m.size, alpha=m.alpha / m.size, beta=m.beta, k=m.k)
    for cls, ours in _SIMPLE.items():
        if isinstance(m, cls):
            return ours(name=name)
    if isinstance(m, nn.Flatten):
        if m.end_dim != -1 or m.start_dim < 1:
            raise CnnlabError(f"module '{name}': Flatten({m.start_dim}, {m.end_dim}) keeps trailing dimensions; "
                              "only flattening to the end (end_dim=-1) is supported")
        return Flatten(name=name, start_dim=m.start_dim)
    if isinstance(m, (nn.Dropout, nn.Dropout2d)):
        return Dropout(name=name, p=m.p)
    if isinstance(m, (nn.Softmax, nn.LogSoftmax)):  # over the channels: the lift checks its dim
        return (Softmax if isinstance(m, nn.Softmax) else LogSoftmax)(name=name)
    if isinstance(m, nn.GELU):
        return GELU(name=name, approximate=m.approximate)
    if isinstance(m, nn.LeakyReLU):
        return LeakyReLU(name=name, slope=m.negative_slope)
    if isinstance(m, nn.ELU):
        return ELU(name=name, alpha=m.alpha)
    if isinstance(m, nn.LayerNorm):
        return LayerNorm(name=name, shape=tuple(m.normalized_shape), eps=m.eps, affine=m.elementwise_affine,
                         bias=getattr(m, "bias", None) is not None)
    if isinstance(m, nn.GroupNorm):
        return GroupNorm(name=name, groups=m.num_groups, eps=m.eps, affine=m.affine)
    if isinstance(m, nn.ZeroPad2d):
        left, right, top, bottom = m.padding
        return ZeroPad(name=name, padding=(top, bottom, left, right))
    if isinstance(m, nn.Upsample):
        return Upsample(name=name, scale=_t(m.scale_factor) if m.scale_factor is not None else None,
                        size=_t(m.size), mode=m.mode, align_corners=m.align_corners)
    raise CnnlabError(f"module '{name}' ({type(m).__name__}) has no cnnlab layer type; "
                      "trace a model built from Conv2d, Linear, pooling, normalization, activations and Dropout")


_FUNCS = {F.relu: ReLU, torch.relu: ReLU, torch.tanh: Tanh, torch.sigmoid: Sigmoid, F.sigmoid: Sigmoid,
          F.softmax: Softmax, torch.softmax: Softmax, F.log_softmax: LogSoftmax, torch.log_softmax: LogSoftmax,
          F.silu: SiLU, F.hardswish: Hardswish, F.hardsigmoid: Hardsigmoid,
          F.relu6: ReLU6, F.mish: Mish, F.gelu: GELU, F.leaky_relu: LeakyReLU, F.elu: ELU}
_METHODS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "softmax": Softmax, "log_softmax": LogSoftmax}
_IDENTITY_METHODS = ("contiguous",)


@dataclass(frozen=True)
class _Item:
    """What one fx node is: a layer (or None, the identity) reading ``srcs[0]``, or a merge of ``srcs``."""

    layer: Layer | None
    srcs: tuple[fx.Node, ...]
    merge: str = ""  # "add", "concat" or "mul"


def _arg(n: fx.Node, i: int, key: str, default: Any) -> Any:
    return n.args[i] if len(n.args) > i else n.kwargs.get(key, default)


def _describe(n: fx.Node) -> str:
    if n.op == "call_module":
        return f"module {n.target}"
    what = n.target if n.op != "call_function" else getattr(n.target, "__name__", str(n.target))
    return f"{n.op} {what}"


class _Lift:
    def __init__(self, gm: fx.GraphModule, tied: set[str]) -> None:
        self.gm, self.tied = gm, tied
        self.last_dim: set[str] = set()  # softmaxes over dim -1: the channels only when they read a vector
        self.mods = dict(gm.named_modules())
        self.nodes = list(gm.graph.nodes)
        self.order = {n: i for i, n in enumerate(self.nodes)}
        self.count: dict[str, int] = {}
        calls: Counter[str] = Counter()
        self.call_no: dict[fx.Node, int] = {}  # which call of its module a node is, in forward's order
        for n in self.nodes:
            if n.op == "call_module":
                calls[str(n.target)] += 1
                self.call_no[n] = calls[str(n.target)]
        self.calls = calls
        self.shared: dict[str, str] = {}  # layer name -> its module, for modules with parameters called again
        self.items: dict[fx.Node, _Item] = {}
        self.unsupported: Counter[str] = Counter()
        self.anc: dict[fx.Node, int] = {}  # ancestors as a bit set over ``order``

    def tie(self, layers: tuple[Node, ...]) -> tuple[Node, ...]:
        """``layers`` with every call of a module with parameters but the first (in the description's
        order, which a residual's body may change) sharing that first call's weights."""
        first: dict[str, str] = {}

        def share(path: str, layer: Layer) -> tuple[Layer, ...]:
            module = self.shared.get(layer.name)
            if module is None:
                return (layer,)
            if module not in first:
                first[module] = path
                return (layer,)
            return (replace(layer, shares=first[module]),)

        return map_leaves(layers, share) if self.shared else layers

    def fresh(self, base: str) -> str:
        self.count[base] = self.count.get(base, 0) + 1
        return f"{base}{self.count[base]}"

    def module_name(self, n: fx.Node) -> str:
        """``layer1.0.relu`` -> ``layer1_0_relu``; later calls of the same module get ``_2``, ``_3``."""
        base, k = str(n.target).replace(".", "_"), self.call_no[n]
        return base if k == 1 else f"{base}_{k}"

    # ------------------------------------------------------------------ classification

    def classify_all(self, result: fx.Node, start: fx.Node) -> None:
        """Describe every node the output depends on; gather all unsupported ones."""
        todo, seen = [result], {result}
        while todo:
            n = todo.pop()
            if n is start:
                continue
            try:
                item = self.classify(n)
            except _Unsupported as e:
                self.unsupported[e.key] += 1
                nxt = [a for a in n.all_input_nodes if a.op not in ("get_attr",)]
            else:
                self.items[n] = item
                nxt = list(item.srcs)
            for a in nxt:
                if a not in seen:
                    seen.add(a)
                    todo.append(a)
        for n in self.nodes:
            what = self.mutation(n)
            if what:
                self.unsupported[f"{what} on a tensor used again"] += 1
        if not self.unsupported:  # again in forward's order, so functions are numbered as they run
            self.count.clear()
            self.items = {n: self.classify(n) for n in sorted(self.items, key=self.order.__getitem__)}

    def mutation(self, n: fx.Node) -> str:
        """An in-place op whose input is read again later: the description computes out of place, so it would
        give the later reader the value before the change (``x.mul_(2)`` with no user of its own, or
        ``F.relu(x, inplace=True)`` beside a skip connection). Empty when ``n`` is no such op."""
        if n.op == "call_method" and str(n.target).endswith("_") and not str(n.target).startswith("_"):
            what = f"in-place call_method {n.target}"
        elif n.op == "call_function" and (n.kwargs.get("inplace") is True or
                                          getattr(n.target, "__name__", "").endswith("_")):
            what = f"in-place {getattr(n.target, '__name__', 'op')}"
        elif n.op == "call_module" and getattr(self.mods[str(n.target)], "inplace", False) is True:
            what = f"in-place module {type(self.mods[str(n.target)]).__name__}"
        else:
            return ""
        x = n.args[0] if n.args else None
        if not isinstance(x, fx.Node):
            return ""
        later = [u for u in x.users if u is not n and self.order[u] > self.order[n]]
        return what if later else ""

    def classify(self, n: fx.Node) -> _Item:
        if n.op == "placeholder":
            raise _Unsupported("a second input of forward (give it a default)")
        if n.op == "get_attr":
            raise _Unsupported("a parameter or buffer used directly in forward (get_attr)")
        if n.op == "call_module":
            m = self.mods[str(n.target)]
            if not isinstance(m, LEAVES) and type(m).__name__ not in IDENTITY_NAMES:
                raise _Unsupported(f"module {type(m).__name__}")
            if str(n.target) in self.tied:
                raise _Unsupported(f"module {type(m).__name__} holding a parameter of another module (tied weights)")
            try:
                layer = module_layer(m, self.module_name(n))
            except CnnlabError as e:
                raise _Unsupported(f"module {type(m).__name__} ({str(e).split(': ', 1)[-1]})") from None
            if isinstance(layer, Softmax):
                self.softmax_dim(layer, m.dim, type(m).__name__)
            if layer is not None and self.calls[str(n.target)] > 1 and any(True for _ in m.parameters()):
                self.shared[layer.name] = str(n.target)
            return _Item(layer, (n.args[0],))
        if n.op == "call_function":
            return self.function(n)
        if n.op == "call_method":
            return self.method(n)
        raise _Unsupported(_describe(n))

    def softmax_dim(self, layer: Layer, dim: Any, what: str) -> None:
        """A softmax is over the channels (dim 1), or over dim -1 where that is the channels (a vector)."""
        if dim == -1:
            self.last_dim.add(layer.name)
        elif dim not in (None, 1):
            raise _Unsupported(f"{what} over dimension {dim}")

    def function(self, n: fx.Node) -> _Item:
        f, x = n.target, n.args[0] if n.args else None
        name = getattr(f, "__name__", "op")
        if f in _FUNCS:
            cls = _FUNCS[f]
            kw: dict[str, Any] = {}
            if cls is GELU:
                kw["approximate"] = n.kwargs.get("approximate", "none")
            elif cls is LeakyReLU:
                kw["slope"] = _arg(n, 1, "negative_slope", 0.01)
            elif cls is ELU:
                kw["alpha"] = _arg(n, 1, "alpha", 1.0)
            layer = cls(name=self.fresh(name), **kw)
            if cls in (Softmax, LogSoftmax):
                self.softmax_dim(layer, _arg(n, 1, "dim", None), name)
            return _Item(layer, (x,))
        if f in (F.dropout, F.dropout2d):
            return _Item(Dropout(name=self.fresh("dropout"), p=_arg(n, 1, "p", 0.5)), (x,))
        if f is torch.flatten:
            return _Item(self.flatten(n, _arg(n, 1, "start_dim", 0), _arg(n, 2, "end_dim", -1)), (x,))
        if f in (F.max_pool2d, F.avg_pool2d):
            return _Item(self.pool(n, f is F.max_pool2d), (x,))
        if f in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
            cls = AdaptiveAvgPool if f is F.adaptive_avg_pool2d else AdaptiveMaxPool
            return _Item(cls(name=self.fresh(name), output=_t(_arg(n, 1, "output_size", 1))), (x,))
        if f is torch.mean:
            return self.mean(n)
        if f in (operator.add, torch.add, operator.mul, torch.mul, operator.sub, operator.truediv):
            return self.arith(n)
        if f is torch.cat:
            parts = list(_arg(n, 0, "tensors", ()))
            if _arg(n, 1, "dim", 0) not in (1, -3) or not all(isinstance(p, fx.Node) for p in parts):
                raise _Unsupported("cat along a dimension other than channels")
            return _Item(None, tuple(parts), "concat" if len(parts) > 1 else "")
        raise _Unsupported(_describe(n))

    def method(self, n: fx.Node) -> _Item:
        x, m = n.args[0], str(n.target)
        if m in _METHODS:
            layer = _METHODS[m](name=self.fresh(m))
            if isinstance(layer, Softmax):
                self.softmax_dim(layer, _arg(n, 1, "dim", None), m)
            return _Item(layer, (x,))
        if m in _IDENTITY_METHODS:
            return _Item(None, (x,))
        if m == "flatten":
            return _Item(self.flatten(n, _arg(n, 1, "start_dim", 0), _arg(n, 2, "end_dim", -1)), (x,))
        if m in ("view", "reshape"):
            sizes = n.args[1:] if len(n.args) > 2 or not isinstance(n.args[1], (tuple, list)) else n.args[1]
            if len(sizes) != 2:
                raise _Unsupported(f"call_method {m} to other than (batch, features)")
            return _Item(Flatten(name=self.fresh("flatten")), (x,))
        if m == "mean":
            return self.mean(n)
        if m in ("add", "mul", "sub", "div"):
            return self.arith(n)
        raise _Unsupported(_describe(n))

    def flatten(self, n: fx.Node, start: Any, end: Any) -> Flatten:
        if start == 0 or end != -1:
            raise _Unsupported("flatten of the batch dimension or not to the last one")
        return Flatten(name=self.fresh("flatten"), start_dim=start)

    def pool(self, n: fx.Node, is_max: bool) -> Layer:
        k = _t(_arg(n, 1, "kernel_size", None))
        st = _arg(n, 2, "stride", None)
        st = k if st is None or st == [] or st == () else _t(st)
        pad = _t(_arg(n, 3, "padding", 0))
        if is_max:
            return MaxPool(name=self.fresh("max_pool2d"), kernel=k, stride=st, padding=pad,
                           dilation=_t(_arg(n, 4, "dilation", 1)), ceil_mode=bool(_arg(n, 5, "ceil_mode", False)))
        if _arg(n, 6, "divisor_override", None) is not None:
            raise _Unsupported("avg_pool2d with divisor_override")
        return AvgPool(name=self.fresh("avg_pool2d"), kernel=k, stride=st, padding=pad,
                       ceil_mode=bool(_arg(n, 4, "ceil_mode", False)),
                       count_include_pad=bool(_arg(n, 5, "count_include_pad", True)))

    def mean(self, n: fx.Node) -> _Item:
        dims = _arg(n, 1, "dim", None)
        dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
        if sorted(d % 4 if isinstance(d, int) else -1 for d in dims) != [2, 3]:
            raise _Unsupported("mean over other dimensions than H and W")
        keep = bool(_arg(n, 2, "keepdim", False))
        layer = AdaptiveAvgPool(name=self.fresh("mean"), output=1) if keep else GlobalAvgPool(name=self.fresh("mean"))
        return _Item(layer, (n.args[0],))

    def arith(self, n: fx.Node) -> _Item:
        a, b = n.args[0], n.args[1] if len(n.args) > 1 else n.kwargs.get("other")
        op = getattr(n.target, "__name__", str(n.target)).removeprefix("true")
        op = {"truediv": "div"}.get(op, op)
        tensors = [v for v in (a, b) if isinstance(v, fx.Node)]
        if any(v.op == "get_attr" for v in tensors):
            raise _Unsupported(f"{op} with a parameter or buffer")
        if len(tensors) == 2:
            if op in ("add", "mul") and n.kwargs.get("alpha", 1) == 1:
                return _Item(None, (a, b), op)
            raise _Unsupported(f"{op} of two tensors")
        c = b if isinstance(a, fx.Node) else a
        if not isinstance(c, (int, float)) or isinstance(c, bool):
            raise _Unsupported(f"{op} with a non-constant")
        x = tensors[0]
        first = x is a
        if op == "add":
            mul, add = 1.0, float(c)
        elif op == "mul":
            mul, add = float(c), 0.0
        elif op == "sub":
            mul, add = (1.0, -float(c)) if first else (-1.0, float(c))
        elif first and c != 0:
            mul, add = 1.0 / float(c), 0.0
        else:
            raise _Unsupported(f"{op} of a constant by a tensor")
        return _Item(Scale(name=self.fresh(op), mul=mul, add=add), (x,))

    # ------------------------------------------------------------------ structure

    def ancestors(self, n: fx.Node) -> int:
        """Bit set of the nodes ``n`` depends on through described edges (itself included)."""
        got = self.anc.get(n)
        if got is not None:
            return got
        stack = [n]
        while stack:
            m = stack[-1]
            srcs = self.items[m].srcs if m in self.items else ()
            missing = [s for s in srcs if s not in self.anc]
            if missing:
                stack.extend(missing)
                continue
            bits = 1 << self.order[m]
            for s in srcs:
                bits |= self.anc[s]
            self.anc[m] = bits
            stack.pop()
        return self.anc[n]

    def fork(self, inputs: list[fx.Node]) -> fx.Node:
        common = -1
        for i in inputs:
            common &= self.ancestors(i)
        if common <= 0:
            raise CnnlabError(f"node '{inputs[0].name}': its inputs do not meet at one point")
        return self.nodes[common.bit_length() - 1]

    def chain(self, end: fx.Node, start: fx.Node) -> list[Node]:
        """Description of the path from ``start`` (exclusive) to ``end`` (inclusive)."""
        out: list[Node] = []
        n = end
        while n is not start:
            if n not in self.items:
                raise CnnlabError(f"node '{end.name}': its inputs do not meet at one point; the graph is not "
                                  "a chain of layers and merges")
            node, n = self.one(n)
            if node is not None:
                out.append(node)
        out.reverse()
        return out

    def one(self, n: fx.Node) -> tuple[Node | None, fx.Node]:
        """The description of node ``n`` (None for no-ops) and the node it continues from."""
        item = self.items[n]
        if not item.merge:
            return item.layer, item.srcs[0]
        srcs = list(item.srcs)
        f = self.fork(srcs)
        while True:  # widen the region until every node in it reads only from inside it or the fork
            region = self.ancestors(n) & ~self.ancestors(f) & ~(1 << self.order[n])
            outside = [s for m in self._members(region) for s in self.items[m].srcs
                       if s is not f and not region >> self.order[s] & 1]
            if not outside:
                break
            f = self.fork([f, *outside])
        branches = [self.ancestors(s) & ~self.ancestors(f) for s in srcs]
        disjoint = sum(b.bit_count() for b in branches) == region.bit_count()
        if disjoint and item.merge == "add" and len(srcs) == 2:
            body, short = self.chain(srcs[0], f), self.chain(srcs[1], f)
            if not body:
                body, short = short, body
            return residual(self.fresh("residual"), body, seq("shortcut", *short) if short else None), f
        if disjoint and item.merge == "concat":
            return concat(self.fresh("concat"), *[seq(f"branch{i + 1}", *self.chain(p, f))
                                                  for i, p in enumerate(srcs)]), f
        return self.graph(n, f, region), f

    def _members(self, bits: int) -> list[fx.Node]:
        out = []
        while bits:
            low = bits & -bits
            out.append(self.nodes[low.bit_length() - 1])
            bits ^= low
        return out

    def graph(self, end: fx.Node, f: fx.Node, region: int) -> Node:
        """The region between fork ``f`` and merge ``end`` as a :class:`Graph`: every layer once."""
        names: dict[fx.Node, str] = {f: ""}
        nodes: list[Node] = []
        inputs: list[str] = []
        merges: list[Merge] = []
        for m in [*self._members(region), end]:
            item = self.items[m]
            if item.merge:
                names[m] = self.fresh(item.merge)
                merges.append(Merge(names[m], item.merge, tuple(names[s] for s in item.srcs)))
            elif item.layer is None:
                names[m] = names[item.srcs[0]]
            else:
                names[m] = item.layer.name
                nodes.append(item.layer)
                inputs.append(names[item.srcs[0]])
        if not nodes:
            raise CnnlabError(f"node '{end.name}': merges the same value with itself; write it as one layer")
        return graph(self.fresh("graph"), nodes, inputs, merges, names[end])


class _Unsupported(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _concrete_defaults(model: nn.Module) -> tuple[int, dict[str, Any]]:
    """(inputs forward needs, the defaults of its other arguments: traced with those values)."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return 1, {}
    needed = [p for p in params if p.default is inspect.Parameter.empty
              and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    defaults = {p.name: p.default for p in params[1:] if p.default is not inspect.Parameter.empty}
    return len(needed), defaults


def _tied(model: nn.Module) -> set[str]:
    """Modules holding a parameter that another module holds too (``b.weight = a.weight``): the
    description shares whole layers, not single tensors."""
    holders: dict[int, list[str]] = {}
    for name, m in model.named_modules():
        for p in m.parameters(recurse=False):
            holders.setdefault(id(p), []).append(name)
    return {n for names in holders.values() if len(names) > 1 for n in names}


def _unreached(model: nn.Module, called: set[str]) -> dict[str, Any] | None:
    """Parameters and buffers of modules forward never calls (GoogLeNet's auxiliary heads in eval)."""
    def reached(name: str) -> bool:
        owner = name.rpartition(".")[0]
        return any(owner == t or owner.startswith(t + ".") for t in called)

    params = [(k, v.numel()) for k, v in model.named_parameters() if not reached(k)]
    bufs = [(k, v.numel()) for k, v in model.named_buffers()
            if not reached(k) and not k.endswith("num_batches_tracked")]
    if not params and not bufs:
        return None
    owners = sorted({k.rpartition(".")[0] or k for k, _ in params + bufs})
    return {"params": sum(n for _, n in params), "buffers": sum(n for _, n in bufs), "modules": owners}


def trace(model: nn.Module, input_shape: tuple[int, int, int], name: str | None = None) -> Network:
    """Describe ``model`` (as at inference) as a :class:`Network` with design input ``(C, H, W)``.

    Raises :class:`LiftError` naming every operation the description cannot hold. Parameters
    and buffers forward never reaches are not counted; they are listed in ``meta['unreached']``."""
    label = type(model).__name__
    needed, defaults = _concrete_defaults(model)
    if needed != 1:
        raise CnnlabError(f"{label}.forward takes {needed} inputs without defaults; trace needs exactly one")
    was_training = model.training
    model.eval()
    try:
        gm = fx.GraphModule(model, _LeafTracer().trace(model, concrete_args=defaults or None))
    except Exception as e:  # fx raises many kinds for data-dependent control flow
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise LiftError(f"cannot trace {label}: {msg}", {"fx control flow": 1}) from None
    finally:
        model.train(was_training)
    t = _Lift(gm, _tied(model))
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    result = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    if not isinstance(result, fx.Node):
        raise LiftError(f"{label}.forward must return one tensor", {"output of several values": 1})
    t.classify_all(result, inputs[0])
    if t.unsupported:
        groups = ", ".join(f"{k} x{v}" for k, v in sorted(t.unsupported.items(), key=lambda kv: (-kv[1], kv[0])))
        total = sum(t.unsupported.values())
        raise LiftError(f"cannot describe {label}: {total} unsupported node{'s' * (total > 1)}: {groups}",
                        dict(t.unsupported))
    layers = t.tie(tuple(t.chain(result, inputs[0])))
    net = Network(name or label, tuple(layers), tuple(input_shape))
    if t.last_dim:  # over the last dimension: the channels of a vector, the width of a map
        from .analysis import analyze

        spatial = [s for s in analyze(net).layers if s.layer.name in t.last_dim and len(s.output_shape) != 1]
        if spatial:
            raise LiftError(f"cannot describe {label}: {len(spatial)} unsupported node{'s' * (len(spatial) > 1)}: "
                            f"softmax over the last dimension of a map x{len(spatial)}",
                            {"softmax over the last dimension of a map": len(spatial)})
    called = {str(n.target) for n in t.items if n.op == "call_module"}
    gone = _unreached(model, called)
    if gone:
        net.meta["unreached"] = gone
    return net
