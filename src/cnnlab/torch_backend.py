"""Network description -> ``torch.nn.Module``.

The module tree mirrors the description: a node named ``layer1.0.conv1`` is the submodule at
that path, so analysis rows, forward hooks and ``state_dict`` keys line up one to one.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Layer, Shape, resolve_padding
from .network import Graph, Network, Node, Sequential, is_inline, kind_of

Pad4 = tuple[int, int, int, int]  # F.pad order: left, right, top, bottom


def _same_pad(x: torch.Tensor, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int]) -> Pad4:
    (t, b), (left, r) = resolve_padding("same", tuple(x.shape[-2:]), k, s, d)
    return (left, r, t, b)


def _apply_pad(x: torch.Tensor, pad: Pad4 | str, k: Any, s: Any, d: Any) -> torch.Tensor:
    p = _same_pad(x, k, s, d) if pad == "same" else pad
    return F.pad(x, p) if any(p) else x


class Conv2dPad(nn.Conv2d):
    """Conv2d with asymmetric padding: fixed sides, or TensorFlow 'same' computed per input."""

    def __init__(self, *args: Any, pad: Pad4 | str, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = _same_pad(x, self.kernel_size, self.stride, self.dilation) if self.pad == "same" else self.pad
        return super().forward(F.pad(x, p))


def conv2d(cin: int, cout: int, k: tuple[int, int], s: tuple[int, int], pad: tuple[int, int],
           d: tuple[int, int], groups: int, bias: bool, extra: Pad4 | str | None) -> nn.Conv2d:
    if extra is None:
        return nn.Conv2d(cin, cout, k, s, pad, d, groups, bias)
    return Conv2dPad(cin, cout, k, s, 0, d, groups, bias, pad=extra)


class MaxPool2d(nn.MaxPool2d):
    def __init__(self, k: Any, s: Any, pad: Any, d: Any, ceil: bool, extra: Pad4 | str | None) -> None:
        super().__init__(k, s, pad, d, ceil_mode=ceil)
        self.extra = extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.extra is not None:
            p = _same_pad(x, self.kernel_size, self.stride, self.dilation) if self.extra == "same" else self.extra
            x = F.pad(x, p, value=float("-inf"))
        return super().forward(x)


class AvgPool2d(nn.AvgPool2d):
    def __init__(self, k: Any, s: Any, pad: Any, ceil: bool, count_include_pad: bool,
                 extra: Pad4 | str | None) -> None:
        super().__init__(k, s, pad, ceil_mode=ceil, count_include_pad=count_include_pad)
        self.extra = extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.extra is None:
            return super().forward(x)
        p = _same_pad(x, self.kernel_size, self.stride, (1, 1)) if self.extra == "same" else self.extra
        y = super().forward(F.pad(x, p))
        if self.count_include_pad:
            return y
        ones = F.pad(torch.ones_like(x[:1, :1]), p)
        return y / super().forward(ones)


class PartialConv2d(nn.Module):
    """Sparse channel connections (LeNet-5 C3): output maps grouped by fan-in, one grouped conv per group."""

    def __init__(self, table: tuple[tuple[int, ...], ...], k: tuple[int, int], s: tuple[int, int], bias: bool,
                 d: tuple[int, int] = (1, 1), pad: Pad4 | str = (0, 0, 0, 0)):
        super().__init__()
        self.pad = pad
        by_size: dict[int, list[int]] = {}
        for j, inputs in enumerate(table):
            by_size.setdefault(len(inputs), []).append(j)
        self.sizes = sorted(by_size)
        self.convs = nn.ModuleList()
        order: list[int] = []
        for n in self.sizes:
            outs = by_size[n]
            idx = torch.tensor([i for j in outs for i in table[j]])
            self.register_buffer(f"idx{n}", idx, persistent=False)
            self.convs.append(nn.Conv2d(n * len(outs), len(outs), k, s, dilation=d, groups=len(outs), bias=bias))
            order += outs
        self.register_buffer("inverse", torch.argsort(torch.tensor(order)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _apply_pad(x, self.pad, self.convs[0].kernel_size, self.convs[0].stride, self.convs[0].dilation)
        ys = [conv(x[:, getattr(self, f"idx{n}")]) for n, conv in zip(self.sizes, self.convs)]
        return torch.cat(ys, 1)[:, self.inverse]


class Subsample2d(nn.Module):
    """LeNet-5's S-layers: ``w_c * sum(window) + b_c`` as a depthwise conv with one shared weight per map."""

    def __init__(self, c: int, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int] = (1, 1),
                 pad: Pad4 | str = (0, 0, 0, 0)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((c,), 1.0 / (k[0] * k[1])))
        self.bias = nn.Parameter(torch.zeros(c))
        self.k, self.s, self.d, self.pad = k, s, d, pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _apply_pad(x, self.pad, self.k, self.s, self.d)
        w = self.weight.view(-1, 1, 1, 1).expand(-1, 1, *self.k)
        return F.conv2d(x, w, self.bias, self.s, dilation=self.d, groups=x.shape[1])


class RBFOutput(nn.Module):
    """LeNet-5's Euclidean RBF output: y_i = sum_j (x_j - w_ij)^2, expanded so the cross term is one
    matrix product."""

    def __init__(self, n: int, units: int) -> None:
        super().__init__()
        # LeNet-5 fixes these to +-1 bitmaps of the classes; random +-1 codes keep their scale.
        self.weight = nn.Parameter(torch.randint(0, 2, (units, n)).float() * 2 - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * x).sum(1, keepdim=True) - 2 * x @ self.weight.t() + (self.weight * self.weight).sum(1)


class ScaledTanh(nn.Module):
    """a * tanh(s * x) (LeNet-5: a = 1.7159, s = 2/3)."""

    def __init__(self, a: float, s: float) -> None:
        super().__init__()
        self.a, self.s = a, s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a * torch.tanh(self.s * x)


class ScaleShift(nn.Module):
    """x * mul + add with constants (a traced ``x / 6`` or ``x + 3``)."""

    def __init__(self, mul: float, add: float) -> None:
        super().__init__()
        self.mul, self.add = mul, add

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mul + self.add


class Normalize(nn.Module):
    """``(x - mean) / max(sqrt(variance), eps)`` per channel (Keras' ``Normalization``), or its
    inverse. Given statistics are constants (buffers outside the state_dict, so they follow the
    module to its device); without them ``mean``, ``variance`` and an integer ``count`` are
    buffers the weights fill, as Keras keeps them."""

    def __init__(self, channels: int, dims: int, mean: tuple[float, ...] | None,
                 variance: tuple[float, ...] | None, eps: float, invert: bool) -> None:
        super().__init__()
        self.shape, self.eps, self.invert = (1, channels) + (1,) * (dims - 1), eps, invert
        fixed = mean is not None and variance is not None
        self.register_buffer("mean", torch.tensor(mean) if fixed else torch.zeros(channels), persistent=not fixed)
        self.register_buffer("variance", torch.tensor(variance) if fixed else torch.ones(channels),
                             persistent=not fixed)
        if not fixed:
            self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean.view(self.shape)
        std = torch.clamp(torch.sqrt(self.variance), min=self.eps).view(self.shape)
        return mean + x * std if self.invert else (x - mean) / std


class ChannelPad(nn.Module):
    """A parameter-free shortcut (ResNet option A): every stride-th pixel, channels zero-padded."""

    def __init__(self, extra: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = extra, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class UnflattenChannelsLast(nn.Module):
    """A vector holding a map in (H, W, C) order (Keras' ``Reshape``) as the (N, C, H, W) map."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.c, self.h, self.w = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.h, self.w, self.c).permute(0, 3, 1, 2).contiguous()


class GlobalAvgPool(nn.Module):
    """The mean of each map: (N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


class Shared(nn.Module):
    """A later call of an earlier layer's module (shared weights). The module is held here without
    being registered, so its parameters appear once in ``parameters()`` and ``state_dict()``, where
    the first call registered them, and a gradient step moves both calls. Its ``forward`` runs
    here, so hooks see each call at its own path, as the description has a row per call."""

    def __init__(self, shares: str) -> None:
        super().__init__()
        self.shares = shares  # the module's path from the root of the network
        self.owner: nn.Module | None = None

    def tie(self, owner: nn.Module) -> None:
        self.__dict__["owner"] = owner  # not add_module: a second registration would list the weights twice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.owner is None:
            raise RuntimeError(f"shared layer not tied to '{self.shares}': call tie_shared on the network")
        return self.owner.forward(x)

    def extra_repr(self) -> str:
        return f"shares={self.shares!r}"


def tie_shared(model: nn.Module) -> None:
    """Point every :class:`Shared` layer of ``model`` at the module it names."""
    for m in model.modules():
        if isinstance(m, Shared):
            m.tie(model.get_submodule(m.shares))


class _TorchFlow:
    """Tensors through one composite whose namespace's modules are ``mods``; inline children run
    here, from the same namespace (see :func:`cnnlab.network.namespace`)."""

    __slots__ = ("mods", "owner")

    def __init__(self, mods: dict[str, nn.Module], owner: NodeModule | CnnModule) -> None:
        self.mods, self.owner = mods, owner

    def chain(self, nodes: tuple[Node, ...], x: torch.Tensor) -> torch.Tensor:
        for n in nodes:
            x = kind_of(n).run(n, x, self) if is_inline(n) else self.mods[n.name](x)
        return x

    def concat(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, 1)

    def add(self, body: torch.Tensor, shortcut: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return shortcut + body * scale if scale != 1.0 else shortcut + body

    def mul(self, xs: list[torch.Tensor]) -> torch.Tensor:
        y = xs[0]
        for other in xs[1:]:
            y = y * other
        return y

    def max(self, xs: list[torch.Tensor]) -> torch.Tensor:
        y = xs[0]
        for other in xs[1:]:
            y = torch.maximum(y, other)
        return y

    def side(self, nodes: tuple[Node, ...], x: torch.Tensor) -> None:
        if self.owner.sink is not None:
            self.owner.sink.append(self.chain(nodes, x))


class NodeModule(nn.Module):
    """A composite node: the modules of its namespace, run as its kind says. ``side``: it has side
    outputs (an auxiliary head), which go to ``sink`` while the owning network trains."""

    sink: list[torch.Tensor] | None = None

    def __init__(self, node: Node, children: OrderedDict[str, nn.Module], side: bool = False) -> None:
        super().__init__()
        for k, m in children.items():
            self.add_module(k, m)
        self.node, self.side = node, side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kind_of(self.node).run(self.node, x, _TorchFlow(self._modules, self))


class CnnModule(nn.Sequential):
    """The built network. In training mode with auxiliary heads it returns ``(main, *aux)``."""

    sink: list[torch.Tensor] | None = None

    def __init__(self, modules: OrderedDict[str, nn.Module], name: str, input_shape: Shape,
                 negate: bool = False, nodes: tuple[Node, ...] = (), side: bool = False, flatten: bool = False) -> None:
        super().__init__(modules)
        self.name, self.input_shape, self.negate, self.nodes = name, input_shape, negate, nodes
        self._flat_out = flatten
        self.aux_heads: list[NodeModule | CnnModule] = [m for m in self.modules()
                                                        if isinstance(m, NodeModule) and m.side]
        if side:
            self.aux_heads.append(self)

    def forward(self, x: torch.Tensor) -> Any:  # type: ignore[override]
        sink: list[torch.Tensor] | None = [] if self.training and self.aux_heads else None
        for m in self.aux_heads:
            m.sink = sink
        x = _TorchFlow(self._modules, self).chain(self.nodes, x)
        if self.negate:
            x = -x
        if self._flat_out:
            x = x.flatten(1)
        return (x, *sink) if sink else x


class _BuildFlow:
    """Shapes through one composite, building the modules of its namespace on the way."""

    def __init__(self) -> None:
        self.mods: OrderedDict[str, nn.Module] = OrderedDict()
        self.side_outputs = False

    def chain(self, nodes: tuple[Node, ...], shape: Shape) -> Shape:
        for n in nodes:
            if is_inline(n):
                shape = kind_of(n).run(n, shape, self)
            else:
                self.mods[n.name], shape = build_node(n, shape)
        return shape

    def concat(self, shapes: list[Shape]) -> Shape:
        return (sum(s[0] for s in shapes), *shapes[0][1:])

    def add(self, body: Shape, shortcut: Shape, scale: float = 1.0) -> Shape:
        return body

    def mul(self, shapes: list[Shape]) -> Shape:
        from .analysis import broadcast

        return broadcast(shapes) or shapes[0]

    max = mul  # the same broadcast shape

    def side(self, nodes: tuple[Node, ...], shape: Shape) -> None:
        self.side_outputs = True
        self.chain(nodes, shape)


def build_node(node: Node, shape: Shape) -> tuple[nn.Module, Shape]:
    """The module of one node at the input ``shape`` (already checked by the analysis), and its output."""
    if isinstance(node, Layer):
        return Shared(node.shares) if node.shares else node.build(shape), node.figures(shape).out
    f = _BuildFlow()
    out = kind_of(node).run(node, shape, f)
    if type(node) is Sequential and not any(is_inline(c) for c in node.children):
        return nn.Sequential(f.mods), out
    return NodeModule(node, f.mods, f.side_outputs), out


def build(net: Network, input_shape: Shape | None = None, *, logits: bool = False) -> CnnModule:
    """Build the PyTorch module for ``net`` at ``input_shape`` (default: its design input).

    ``logits=True`` is the training form: a final Softmax/Sigmoid is left out (the loss applies
    it), a final RBF layer's distances are negated into scores, and a final C x 1 x 1 map is
    flattened to its C scores (:func:`cnnlab.layers.scores`). The analysis runs first, so an
    impossible shape fails with the same one-line error, and a network whose weights cannot fit
    in memory (a mistyped width in a file) is refused before anything is allocated."""
    from .analysis import analyze
    from .layers import RBF, Sigmoid, Softmax, scores
    from .memory import check_fits

    shape = tuple(input_shape or net.input_shape)
    totals = analyze(net, shape).totals
    values = totals["params"] + totals["buffers"]
    check_fits(4 * values, f"{net.name}'s {values:,} weights (float32)", "check the layer widths of the model")
    nodes = list(net.layers)
    negate = False
    if logits and nodes and isinstance(nodes[-1], (Softmax, Sigmoid)):
        nodes.pop()
    elif logits and nodes and isinstance(nodes[-1], (Sequential, Graph)):
        nodes[-1] = _without_final_softmax(nodes[-1])
    if logits and nodes and isinstance(nodes[-1], RBF):
        negate = True
    f = _BuildFlow()
    out = f.chain(tuple(nodes), shape)
    flatten = logits and scores(out) != out
    model = CnnModule(f.mods, net.name, shape, negate=negate, nodes=tuple(nodes), side=f.side_outputs,
                      flatten=flatten)
    tie_shared(model)
    init_weights(model)
    return model


def _without_final_softmax(node: Any) -> Any:
    """``node`` without a Softmax/Sigmoid that gives its output (an imported graph ends in one), so the
    training form returns logits whatever the shape of the description."""
    from dataclasses import replace

    from .layers import Sigmoid, Softmax

    if isinstance(node, Sequential) and node.children:
        last = node.children[-1]
        if isinstance(last, (Softmax, Sigmoid)):
            return replace(node, children=node.children[:-1]) if len(node.children) > 1 else node
        if isinstance(last, (Sequential, Graph)):
            return replace(node, children=(*node.children[:-1], _without_final_softmax(last)))
        return node
    if isinstance(node, Graph) and node.nodes:
        names = [n.name for n in node.nodes]
        if node.output and node.output not in names:  # the graph ends in a merge
            return node
        i = names.index(node.output) if node.output else len(node.nodes) - 1
        last = node.nodes[i]
        read = set(node.inputs) | {x for m in node.merges for x in m.inputs}
        if isinstance(last, (Softmax, Sigmoid)) and last.name not in read and i > 0 and node.inputs[i]:
            keep = [k for k in range(len(node.nodes)) if k != i]
            return replace(node, nodes=tuple(node.nodes[k] for k in keep),
                           inputs=tuple(node.inputs[k] for k in keep), output=node.inputs[i])
    return node


def init_weights(model: nn.Module) -> None:
    """He (fan-out) init for convs with zero biases and unit BatchNorm (torchvision's choice for the
    architectures mirrored here); dense layers keep PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if m.weight is not None:  # affine=False leaves both out; Keras' scale=False / center=False one
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
