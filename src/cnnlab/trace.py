"""Trace a user's ``torch.nn.Module`` into a network description, so analysis, adapt and reports
work on it.

``torch.fx`` records the forward pass as a graph; chains of known modules become layers, an
``add`` of two paths from a common fork becomes a :class:`Residual`, a channel ``cat`` becomes a
:class:`Concat`. Graphs outside that series-parallel shape, or unknown operations, are refused
with the name of the offending node.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from . import torch_backend as tb
from .errors import CnnlabError
from .layers import (
    LRN,
    AdaptiveAvgPool,
    AdaptiveMaxPool,
    AvgPool,
    BatchNorm,
    Conv,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Layer,
    MaxPool,
    ReLU,
    ScaledTanh,
    Sigmoid,
    Softmax,
    Tanh,
)
from .network import Network, Node, concat, residual, seq


def _t(v: Any) -> Any:
    return tuple(v) if isinstance(v, (tuple, list)) else v


def _sides(pad: Any) -> Any:
    """F.pad order (left, right, top, bottom) -> ours (top, bottom, left, right); 'same' stays."""
    return pad if isinstance(pad, str) else (pad[2], pad[3], pad[0], pad[1])


LEAVES = (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d,
          nn.AdaptiveMaxPool2d, nn.LocalResponseNorm, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Flatten, nn.Identity,
          nn.Dropout, nn.Softmax, tb.GlobalAvgPool, tb.ScaledTanh)


class _LeafTracer(fx.Tracer):
    """Stops at every module cnnlab can describe, including subclasses (fx only stops at torch.nn's own)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAVES) or super().is_leaf_module(m, qualname)


def module_layer(m: nn.Module, name: str) -> Layer:
    """The description of one PyTorch leaf module."""
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            raise CnnlabError(f"module '{name}': padding_mode '{m.padding_mode}' is not supported; use zeros")
        pad = m.padding if isinstance(m.padding, str) else _t(m.padding)
        if isinstance(m, tb.Conv2dPad):
            pad = _sides(m.pad)
        return Conv(name=name, filters=m.out_channels, kernel=_t(m.kernel_size), stride=_t(m.stride), padding=pad,
                    dilation=_t(m.dilation), groups=m.groups, bias=m.bias is not None)
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
        return BatchNorm(name=name, eps=m.eps, momentum=m.momentum if m.momentum is not None else 0.1)
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        cls = AdaptiveAvgPool if isinstance(m, nn.AdaptiveAvgPool2d) else AdaptiveMaxPool
        return cls(name=name, output=_t(m.output_size))
    if isinstance(m, nn.LocalResponseNorm):
        return LRN(name=name, size=m.size, alpha=m.alpha / m.size, beta=m.beta, k=m.k)
    simple = {nn.ReLU: ReLU, nn.Tanh: Tanh, nn.Sigmoid: Sigmoid, nn.Flatten: Flatten, nn.Identity: None}
    for cls, ours in simple.items():
        if isinstance(m, cls):
            if ours is None:
                break
            return ours(name=name)
    if isinstance(m, nn.Dropout):
        return Dropout(name=name, p=m.p)
    if isinstance(m, nn.Softmax):
        return Softmax(name=name)
    raise CnnlabError(f"module '{name}' ({type(m).__name__}) has no cnnlab layer type; "
                      "trace a model built from Conv2d, Linear, pooling, BatchNorm, activations and Dropout")


_FUNCS = {F.relu: ReLU, torch.relu: ReLU, torch.tanh: Tanh, torch.sigmoid: Sigmoid, F.softmax: Softmax,
          torch.softmax: Softmax}


class _Tracer:
    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.mods = dict(gm.named_modules())
        self.order = {n: i for i, n in enumerate(gm.graph.nodes)}
        self.count: dict[str, int] = {}

    def fresh(self, base: str) -> str:
        self.count[base] = self.count.get(base, 0) + 1
        return f"{base}{self.count[base]}"

    def ancestors(self, n: fx.Node) -> set[fx.Node]:
        seen, todo = {n}, [n]
        while todo:
            for a in todo.pop().all_input_nodes:
                if a not in seen:
                    seen.add(a)
                    todo.append(a)
        return seen

    def fork(self, inputs: list[fx.Node]) -> fx.Node:
        common = set.intersection(*(self.ancestors(i) for i in inputs))
        return max(common, key=self.order.__getitem__)

    def chain(self, end: fx.Node, start: fx.Node) -> list[Node]:
        """Description of the path from ``start`` (exclusive) to ``end`` (inclusive)."""
        out: list[Node] = []
        n = end
        while n is not start:
            if n.op == "placeholder":
                raise CnnlabError(f"node '{end.name}': its inputs do not meet at one point; the graph is not "
                                  "a chain of sequences, branches and residual sums")
            node, n = self.one(n)
            if node is not None:
                out.insert(0, node)
        return out

    def one(self, n: fx.Node) -> tuple[Node | None, fx.Node]:
        """The description of node ``n`` (None for no-ops) and the node it continues from."""
        if n.op == "call_module":
            m = self.mods[n.target]
            layer = None if isinstance(m, nn.Identity) else module_layer(m, str(n.target).replace(".", "_"))
            return layer, n.args[0]
        if n.op == "call_function" and n.target in _FUNCS:
            return _FUNCS[n.target](name=self.fresh(n.target.__name__)), n.args[0]
        if n.op == "call_function" and n.target is torch.flatten:
            if (n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)) != 1:
                raise CnnlabError(f"node '{n.name}': only flatten from dim 1 (keeping the batch) is supported")
            return Flatten(name=self.fresh("flatten")), n.args[0]
        if n.op == "call_method" and n.target in ("view", "reshape", "flatten"):
            return Flatten(name=self.fresh("flatten")), n.args[0]
        if n.op == "call_function" and n.target in (operator.add, torch.add):
            a, b = n.args[0], n.args[1]
            f = self.fork([a, b])
            body, short = self.chain(a, f), self.chain(b, f)
            if not body:
                body, short = short, body
            sc = seq("shortcut", *short) if short else None
            return residual(self.fresh("residual"), body, sc), f
        if n.op == "call_function" and n.target is torch.cat:
            parts = list(n.args[0])
            dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
            if dim != 1:
                raise CnnlabError(f"node '{n.name}': only concatenation along channels (dim=1) is supported")
            f = self.fork(parts)
            return concat(self.fresh("concat"), *[seq(f"branch{i + 1}", *self.chain(p, f))
                                                  for i, p in enumerate(parts)]), f
        what = n.target if n.op != "call_function" else getattr(n.target, "__name__", n.target)
        raise CnnlabError(f"node '{n.name}' ({n.op} {what}) cannot be described; "
                          "use modules or relu/flatten/add/cat in forward()")


def trace(model: nn.Module, input_shape: tuple[int, int, int], name: str | None = None) -> Network:
    """Describe ``model`` as a :class:`Network` with design input ``(C, H, W)``."""
    try:
        gm = fx.GraphModule(model, _LeafTracer().trace(model))
    except Exception as e:  # fx raises many kinds for data-dependent control flow
        raise CnnlabError(f"cannot trace {type(model).__name__}: {str(e).splitlines()[0]}") from None
    t = _Tracer(gm)
    outputs = [n for n in gm.graph.nodes if n.op == "output"]
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise CnnlabError(f"{type(model).__name__}.forward takes {len(inputs)} inputs; trace needs exactly one")
    result = outputs[0].args[0]
    if not isinstance(result, fx.Node):
        raise CnnlabError(f"{type(model).__name__}.forward must return one tensor")
    layers = t.chain(result, inputs[0])
    return Network(name or type(model).__name__, tuple(layers), tuple(input_shape))
