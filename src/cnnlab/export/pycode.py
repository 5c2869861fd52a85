"""A network description -> one self-contained Python file defining its ``nn.Module``.

The file is written the way a person writes a model: a class per kind of block with its layers as
attributes (named as in the description, so ``state_dict`` keys equal those of
:func:`cnnlab.torch_backend.build`) and a ``forward`` spelling out the sums, concatenations and
auxiliary heads. Blocks that come out identical share one class.

Composite kinds are walked through :data:`cnnlab.network.KINDS`: a kind's ``run`` is executed
with a flow whose values are variable names, so every step it takes becomes a line of code. A kind
whose ``run`` needs more than the flow's ``chain``/``concat``/``add``/``mul``/``max``/``side`` registers its own
emitter with :func:`register_emitter`; a leaf layer type registers one with
:func:`register_layer`. Anything else is refused in one line.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from ..errors import CnnlabError
from ..layers import (
    ELU,
    GELU,
    LRN,
    RBF,
    AdaptiveAvgPool,
    AdaptiveMaxPool,
    AvgPool,
    BatchNorm,
    ChannelPad,
    Conv,
    ConvTranspose,
    Crop,
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
    Normalize,
    PartialConv,
    PReLU,
    ReLU,
    ReLU6,
    Reshape,
    Scale,
    ScaledTanh,
    Shape,
    Sigmoid,
    SiLU,
    Softmax,
    Subsample,
    Tanh,
    Upsample,
    ZeroPad,
    pair,
    resolve_padding,
)
from ..network import KINDS, Graph, Network, Node, Sequential, is_inline, join
from .helpers import HELPERS, with_dependencies

INDENT = "    "


@dataclass(frozen=True)
class Value:
    """A tensor in generated code: the expression naming it and its shape (without the batch)."""

    expr: str
    shape: Shape


# --------------------------------------------------------------------------- leaf layers

LayerEmitter = Callable[[Any, Shape], "tuple[str, tuple[str, ...]]"]
LAYER_EMITTERS: dict[type, LayerEmitter] = {}


def register_layer(cls: type, emit: LayerEmitter) -> None:
    """``emit(layer, input_shape) -> (constructor expression, helpers it needs)`` for ``cls``."""
    LAYER_EMITTERS[cls] = emit


def _args(*positional: Any, **keywords: Any) -> str:
    """Call arguments: the positional ones, then the keywords whose value is not None."""
    parts = [_lit(v) for v in positional] + [f"{k}={_lit(v)}" for k, v in keywords.items() if v is not None]
    return ", ".join(parts)


def _raw(*values: Any) -> str:
    """Positional arguments written in full (the helper modules take pairs as pairs)."""
    return ", ".join(repr(v) for v in values)


def _lit(v: Any) -> str:
    """A Python literal, a square pair written once (``3``, not ``(3, 3)``)."""
    if isinstance(v, tuple) and len(v) == 2 and v[0] == v[1] and all(type(x) is int for x in v):
        return str(v[0])
    return repr(v)


def _unless(v: Any, default: Any) -> Any:
    return None if v == default else v


def _conv(c: Conv, s: Shape) -> tuple[str, tuple[str, ...]]:
    sym, extra = c.torch_padding(s)
    k, st, d = pair(c.kernel), pair(c.stride or 1), pair(c.dilation)
    stride, common = _unless(st, (1, 1)), {"dilation": _unless(d, (1, 1)), "groups": _unless(c.groups, 1),
                                           "bias": _unless(c.bias, True)}
    if extra is None:
        return f"nn.Conv2d({_args(s[0], c.filters, k, stride=stride, padding=_unless(sym, (0, 0)), **common)})", ()
    return f"Conv2dPad({_args(s[0], c.filters, k, stride=stride, **common)}, pad={extra!r})", ("Conv2dPad",)


def _partial_conv(c: PartialConv, s: Shape) -> tuple[str, tuple[str, ...]]:
    return (f"PartialConv2d({_raw(c.table, pair(c.kernel), pair(c.stride or 1), c.bias, pair(c.dilation), c.pad4(s))})",
            ("PartialConv2d",))


def _max_pool(p: MaxPool, s: Shape) -> tuple[str, tuple[str, ...]]:
    sym, extra = p.torch_padding(s)
    k, st, d = pair(p.kernel), pair(p.stride or p.kernel), pair(p.dilation)
    kw = {"dilation": _unless(d, (1, 1)), "ceil_mode": _unless(p.ceil_mode, False)}
    if extra is None:
        return f"nn.MaxPool2d({_args(k, stride=_unless(st, k), padding=_unless(sym, (0, 0)), **kw)})", ()
    kw = {"stride": _unless(st, k), **kw}
    return f"MaxPool2dPad({_args(k, **kw)}, pad={extra!r})", ("MaxPool2dPad",)


def _avg_pool(p: AvgPool, s: Shape) -> tuple[str, tuple[str, ...]]:
    sym, extra = p.torch_padding(s)
    k, st = pair(p.kernel), pair(p.stride or p.kernel)
    kw = {"ceil_mode": _unless(p.ceil_mode, False), "count_include_pad": _unless(p.count_include_pad, True)}
    if extra is None:
        return f"nn.AvgPool2d({_args(k, stride=_unless(st, k), padding=_unless(sym, (0, 0)), **kw)})", ()
    kw = {"stride": _unless(st, k), **kw}
    return f"AvgPool2dPad({_args(k, **kw)}, pad={extra!r})", ("AvgPool2dPad",)


def _subsample(p: Subsample, s: Shape) -> tuple[str, tuple[str, ...]]:
    return (f"Subsample2d({_raw(s[0], pair(p.kernel), pair(p.stride or p.kernel), pair(p.dilation), p.pad4(s))})",
            ("Subsample2d",))


def _zero_pad(p: ZeroPad, s: Shape) -> tuple[str, tuple[str, ...]]:
    (t, b), (left, r) = resolve_padding(p.padding, s[1:], (1, 1), (1, 1), (1, 1))
    return f"nn.ZeroPad2d({(left, r, t, b)!r})", ()


def _batch_norm(b: BatchNorm, s: Shape) -> tuple[str, tuple[str, ...]]:
    if b.affine and not (b.center and b.scale):
        raise CnnlabError(f"layer '{b.name}' is a BatchNorm without {'gamma' if not b.scale else 'beta'} (Keras' "
                          "center/scale), which the pytorch export cannot write: export to onnx or torchscript")
    cls = "BatchNorm2d" if len(s) == 3 else "BatchNorm1d"
    kw = {"eps": _unless(b.eps, 1e-5), "momentum": _unless(b.momentum, 0.1), "affine": _unless(b.affine, True),
          "track_running_stats": _unless(b.track_running_stats, True)}
    return f"nn.{cls}({_args(s[0], **kw)})", ()


def _layer_norm(n: LayerNorm, s: Shape) -> tuple[str, tuple[str, ...]]:
    kw = {"eps": _unless(n.eps, 1e-5), "elementwise_affine": _unless(n.affine, True), "bias": _unless(n.bias, True)}
    return f"nn.LayerNorm({_args(list(n.shape), **kw)})", ()


def _group_norm(n: GroupNorm, s: Shape) -> tuple[str, tuple[str, ...]]:
    return f"nn.GroupNorm({_args(n.groups, s[0], eps=_unless(n.eps, 1e-5), affine=_unless(n.affine, True))})", ()


def _conv_transpose(c: ConvTranspose, s: Shape) -> tuple[str, tuple[str, ...]]:
    k, st, p, op, d = (pair(v) for v in (c.kernel, c.stride, c.padding, c.output_padding, c.dilation))
    kw = {"stride": _unless(st, (1, 1)), "padding": _unless(p, (0, 0)), "output_padding": _unless(op, (0, 0)),
          "groups": _unless(c.groups, 1), "bias": _unless(c.bias, True), "dilation": _unless(d, (1, 1))}
    return f"nn.ConvTranspose2d({_args(s[0], c.filters, k, **kw)})", ()


def _upsample(u: Upsample, s: Shape) -> tuple[str, tuple[str, ...]]:
    size = pair(u.size) if u.size is not None else None
    kw = {"size": size, "scale_factor": u.scale if size is None else None, "mode": u.mode,
          "align_corners": u.align_corners}
    return f"nn.Upsample({_args(**kw)})", ()


def _simple(text: str, *helpers: str) -> LayerEmitter:
    return lambda layer, s: (text, helpers)


register_layer(Conv, _conv)
register_layer(PartialConv, _partial_conv)
register_layer(MaxPool, _max_pool)
register_layer(AvgPool, _avg_pool)
register_layer(Subsample, _subsample)
register_layer(ZeroPad, _zero_pad)
register_layer(Crop, lambda c, s: (f"nn.ZeroPad2d({(-c.crop[2], -c.crop[3], -c.crop[0], -c.crop[1])!r})", ()))
register_layer(Reshape, lambda r, s: (f"UnflattenChannelsLast({tuple(r.shape)!r})", ("UnflattenChannelsLast",))
               if r.channels_last and len(r.shape) == 3 and tuple(r.shape[1:]) != (1, 1)
               else (f"nn.Unflatten(1, {tuple(r.shape)!r})", ()))
register_layer(AdaptiveAvgPool, lambda p, s: (f"nn.AdaptiveAvgPool2d({_lit(pair(p.output))})", ()))
register_layer(AdaptiveMaxPool, lambda p, s: (f"nn.AdaptiveMaxPool2d({_lit(pair(p.output))})", ()))
register_layer(GlobalAvgPool, _simple("GlobalAvgPool()", "GlobalAvgPool"))
register_layer(ChannelPad, lambda p, s: (f"ChannelPad({p.channels - s[0]}, {p.stride})", ("ChannelPad",)))
register_layer(Flatten, lambda f, s: (f"nn.Flatten({'' if f.start_dim == 1 else f.start_dim})", ()))
register_layer(Dense, lambda d, s: (f"nn.Linear({_args(s[0], d.units, bias=_unless(d.bias, True))})", ()))
register_layer(RBF, lambda r, s: (f"RBFOutput({s[0]}, {r.units})", ("RBFOutput",)))
register_layer(BatchNorm, _batch_norm)
# torch divides alpha by the window size; the description keeps the paper's alpha (see layers.LRN).
register_layer(Normalize, lambda n, s: (f"Normalize({_raw(s[0], len(s), n.mean, n.variance, n.eps, n.invert)})",
                                        ("Normalize",)))
register_layer(LRN, lambda n, s: (f"nn.LocalResponseNorm({_args(n.size, alpha=n.alpha * n.size, beta=n.beta, k=n.k)})",
                                  ()))
register_layer(Dropout, lambda d, s: (f"nn.Dropout({'' if d.p == 0.5 else repr(d.p)})", ()))
register_layer(ReLU, _simple("nn.ReLU()"))  # not in place: see layers.ReLU
register_layer(Tanh, _simple("nn.Tanh()"))
register_layer(Sigmoid, _simple("nn.Sigmoid()"))
register_layer(ScaledTanh, lambda t, s: (f"ScaledTanh({t.a!r}, {t.s!r})", ("ScaledTanh",)))
register_layer(Softmax, _simple("nn.Softmax(dim=1)"))
register_layer(LogSoftmax, _simple("nn.LogSoftmax(dim=1)"))
for _cls in (SiLU, Hardswish, Hardsigmoid, ReLU6, Mish):  # torch.nn's module of the same name, no arguments
    register_layer(_cls, _simple(f"nn.{_cls.__name__}()"))
register_layer(GELU, lambda g, s: (f"nn.GELU({'' if g.approximate == 'none' else f'approximate={g.approximate!r}'})",
                                   ()))
register_layer(LeakyReLU, lambda a, s: (f"nn.LeakyReLU({'' if a.slope == 0.01 else repr(a.slope)})", ()))
register_layer(ELU, lambda a, s: (f"nn.ELU({'' if a.alpha == 1.0 else repr(a.alpha)})", ()))
register_layer(PReLU, lambda a, s: (f"nn.PReLU({_args(*(() if a.shared else (s[0],)), init=_unless(a.init, 0.25))})",
                                    ()))
register_layer(Scale, lambda a, s: (f"ScaleShift({a.mul!r}, {a.add!r})", ("ScaleShift",)))
register_layer(LayerNorm, _layer_norm)
register_layer(GroupNorm, _group_norm)
register_layer(ConvTranspose, _conv_transpose)
register_layer(Upsample, _upsample)


# --------------------------------------------------------------------------- composite kinds

KindEmitter = Callable[[Any, Value, "CodeFlow"], Value]
EMITTERS: dict[type, KindEmitter] = {}


def register_emitter(cls: type, emit: KindEmitter) -> None:
    """``emit(node, x, flow) -> output`` writes the code of composite kind ``cls`` through ``flow``
    (for a kind whose ``run`` the generic walk cannot follow)."""
    EMITTERS[cls] = emit


def _kind_name(node: Node) -> str:
    return type(node).__name__


def _run_kind(node: Node, x: Value, flow: CodeFlow, path: str) -> Value:
    """The code of the composite at ``path``: its own emitter, or its ``run`` through the code flow."""
    emit = EMITTERS.get(type(node))
    if emit is not None:
        return emit(node, x, flow)
    kind = KINDS.get(type(node))
    if kind is None:
        raise CnnlabError(f"'{path}' is a {_kind_name(node)}, not a network node the pytorch export "
                          "knows: register its kind in cnnlab.network.KINDS")
    try:
        return kind.run(node, x, flow)
    except AttributeError as e:
        if e.obj is not flow:  # a fault elsewhere, not a flow operation this generator lacks
            raise
        raise CnnlabError(f"the pytorch export cannot write '{path}': a {_kind_name(node)} runs flow.{e.name}, "
                          "which plain code has no rule for; register an emitter for its kind with "
                          "cnnlab.export.pycode.register_emitter") from None


@cache
def _reserved() -> frozenset[str]:
    from torch import nn

    return frozenset(dir(nn.Module)) | {"x", "aux", "self", "torch", "nn", "F"}


def _attribute_ok(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_") \
        and name not in _reserved()


class CodeFlow:
    """The body of one generated class: the modules of its namespace (``init``) and the lines of
    its ``forward``. Implements :class:`cnnlab.network.Flow` with :class:`Value` as the value."""

    def __init__(self, gen: _Generator, prefix: str) -> None:
        self.gen, self.prefix = gen, prefix
        self.init: list[tuple[str, str]] = []
        self.lines: list[str] = []
        self.names: set[str] = set()
        self.aux = False  # the forward collects auxiliary outputs

    def path(self, name: str) -> str:
        return join(self.prefix, name) or "network"

    def ref(self, name: str) -> str:
        return f"self.{name}" if _attribute_ok(name) else f"getattr(self, {name!r})"

    def fresh(self, hint: str) -> str:
        base = re.sub(r"\W", "_", hint)
        if not base.isidentifier() or keyword.iskeyword(base) or base in _reserved():
            base = "out"
        name, i = base, 1
        while name in self.names:
            i += 1
            name = f"{base}{i}"
        self.names.add(name)
        return name

    def chain(self, nodes: tuple[Node, ...], x: Value) -> Value:
        target = None  # this chain's own variable, made at its first module
        for n in nodes:
            if is_inline(n):
                x = _run_kind(n, x, self, self.path(n.name))
                target = None
                continue
            expr, out, takes_aux = self.gen.module(n, x.shape, self.path(n.name))
            if all(name != n.name for name, _ in self.init):  # a module run twice is made once
                self.init.append((n.name, expr))
            if target is None:
                target = self.fresh(n.name if len(nodes) == 1 else "out")
            args = f"{x.expr}, aux" if takes_aux else x.expr
            self.aux |= takes_aux
            self.lines.append(f"{target} = {self.ref(n.name)}({args})")
            x = Value(target, out)
        return x

    def concat(self, xs: list[Value], name: str = "out") -> Value:
        v = self.fresh(name)
        self.lines.append(f"{v} = torch.cat([{', '.join(x.expr for x in xs)}], 1)")
        return Value(v, (sum(x.shape[0] for x in xs), *xs[0].shape[1:]))

    def add(self, body: Value, shortcut: Value, scale: float = 1.0) -> Value:
        v = self.fresh("out")
        term = f"{body.expr} * {scale!r}" if scale != 1.0 else body.expr
        self.lines.append(f"{v} = {shortcut.expr} + {term}")
        return Value(v, body.shape)

    def mul(self, xs: list[Value]) -> Value:
        return self.merge("out", "*", xs)

    def max(self, xs: list[Value], name: str = "out") -> Value:
        """``torch.maximum`` of ``xs``, nested left to right as the built module takes it."""
        v = self.fresh(name)
        expr = xs[0].expr
        for x in xs[1:]:
            expr = f"torch.maximum({expr}, {x.expr})"
        self.lines.append(f"{v} = {expr}")
        return Value(v, _broadcast([x.shape for x in xs]))

    def merge(self, name: str, op: str, xs: list[Value]) -> Value:
        """One variable ``name`` holding ``xs`` joined by ``op`` (``+`` or ``*``, left to right as
        the built module does), its shape broadcast as PyTorch does."""
        v = self.fresh(name)
        self.lines.append(f"{v} = {f' {op} '.join(x.expr for x in xs)}")
        return Value(v, _broadcast([x.shape for x in xs]))

    def side(self, nodes: tuple[Node, ...], x: Value) -> None:
        outer, self.lines = self.lines, []
        y = self.chain(nodes, x)
        inner, self.lines = self.lines, outer
        self.lines.append("if self.training:")
        self.lines += [INDENT + line for line in inner]
        self.lines.append(f"{INDENT}aux.append({y.expr})")
        self.aux = True


def _broadcast(shapes: list[Shape]) -> Shape:
    from ..analysis import broadcast

    return broadcast(shapes) or shapes[0]


def _graph(g: Graph, x: Value, flow: CodeFlow) -> Value:
    """A DAG as straight-line code: one variable per node and per merge, each named after it; a
    merge is ``torch.cat([...], 1)``, ``a + b + ...``, ``a * b * ...`` or ``torch.maximum(a, b)``, written
    where first read."""
    values: dict[str, Value] = {"": x}
    merges = {m.name: m for m in g.merges}

    def value(name: str) -> Value:
        if name not in values:
            m = merges[name]
            xs = [value(v) for v in m.inputs]
            if m.op == "concat":
                values[name] = flow.concat(xs, m.name)
            elif m.op == "max":
                values[name] = flow.max(xs, m.name)
            else:
                values[name] = flow.merge(m.name, "*" if m.op == "mul" else "+", xs)
        return values[name]

    for node, src in zip(g.nodes, g.inputs):
        values[node.name] = flow.chain((node,), value(src))
    return value(g.output or g.nodes[-1].name)


register_emitter(Graph, _graph)


# --------------------------------------------------------------------------- the file


class _Generator:
    def __init__(self) -> None:
        self.classes: dict[str, tuple[str, list[str]]] = {}  # class body -> (name, paths)
        self.counts: dict[str, int] = {}
        self.helpers: set[str] = set()
        self.ordered_dict = False

    def module(self, node: Node, shape: Shape, path: str) -> tuple[str, Shape, bool]:
        """The constructor expression of ``node`` at ``shape``, its output shape, and whether its
        forward takes the list of auxiliary outputs."""
        if isinstance(node, Layer) and node.shares:  # the earlier layer's module, tied to it once all are made
            self.helpers.add("tie_shared")
            return f"Shared({node.shares!r})", node.figures(shape).out, False
        if isinstance(node, Layer):
            emit = LAYER_EMITTERS.get(type(node))
            if emit is None:
                raise CnnlabError(f"layer '{path}' is a {type(node).__name__}, a type the pytorch export cannot "
                                  "write: register it with cnnlab.export.pycode.register_layer")
            expr, helpers = emit(node, shape)
            self.helpers.update(helpers)
            return expr, node.figures(shape).out, False
        flow = CodeFlow(self, path)
        y = _run_kind(node, Value("x", shape), flow, path)
        if type(node) is Sequential and not flow.aux and not any(is_inline(c) for c in node.children):
            return self._sequential(flow.init), y.shape, False
        return f"{self._class(_kind_name(node), flow, y, path)}()", y.shape, flow.aux

    def _sequential(self, init: list[tuple[str, str]]) -> str:
        if [name for name, _ in init] == [str(i) for i in range(len(init))]:
            items = [expr for _, expr in init]
        else:
            self.ordered_dict = True
            items = [f"({name!r}, {expr})" for name, expr in init]
            return "nn.Sequential(OrderedDict([\n" + "".join(f"{INDENT}{_nest(e)},\n" for e in items) + "]))"
        return "nn.Sequential(\n" + "".join(f"{INDENT}{_nest(e)},\n" for e in items) + ")"

    def _class(self, kind: str, flow: CodeFlow, y: Value, path: str) -> str:
        body = _class_body(flow, y, "x: torch.Tensor, aux: list[torch.Tensor]" if flow.aux else "x: torch.Tensor")
        if body not in self.classes:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.classes[body] = (f"{kind}{self.counts[kind]}", [])
        name, paths = self.classes[body]
        paths.append(path)
        return name

    def class_sources(self) -> list[str]:
        out = []
        for body, (name, paths) in self.classes.items():
            where = ", ".join(paths[:4]) + (f" and {len(paths) - 4} more" if len(paths) > 4 else "")
            out.append(f"class {name}(nn.Module):\n{INDENT}\"\"\"{where}.\"\"\"\n\n{body}")
        return out


def _nest(expr: str, depth: int = 1) -> str:
    """A multi-line expression placed ``depth`` levels deep."""
    return expr.replace("\n", "\n" + INDENT * depth)


def _class_body(flow: CodeFlow, y: Value, params: str, returns: str = "torch.Tensor", pre: tuple[str, ...] = (),
                result: str | None = None, post_init: tuple[str, ...] = ()) -> str:
    """``__init__`` (ending with ``post_init``) and ``forward`` of a class; ``forward`` returns
    ``result`` (default: ``y``)."""
    init = [f"{INDENT * 2}super().__init__()"]
    for name, expr in flow.init:
        target = f"self.{name} = {{}}" if _attribute_ok(name) else f"self.add_module({name!r}, {{}})"
        init.append(INDENT * 2 + target.format(_nest(expr, 2)))
    init += [INDENT * 2 + line for line in post_init]
    lines = [*pre, *flow.lines]
    if result is not None:
        lines.append(f"return {result}")
    elif lines and lines[-1].startswith(f"{y.expr} = "):
        lines[-1] = "return " + lines[-1][len(y.expr) + 3:]  # the last assignment is the result
    else:
        lines.append(f"return {y.expr}")
    forward = [f"{INDENT * 2}{line}" for line in lines]
    return (f"{INDENT}def __init__(self) -> None:\n" + "\n".join(init) + "\n\n"
            f"{INDENT}def forward(self, {params}) -> {returns}:\n" + "\n".join(forward) + "\n")


def head_nodes(net: Network, logits: bool) -> tuple[tuple[Node, ...], bool]:
    """The top-level nodes and the negation that :func:`cnnlab.torch_backend.build` uses: the
    training form (``logits``) drops a final Softmax/Sigmoid and negates a final RBF's distances."""
    nodes = list(net.layers)
    negate = False
    if logits and nodes and isinstance(nodes[-1], (Softmax, Sigmoid)):
        nodes.pop()
    if logits and nodes and isinstance(nodes[-1], RBF):
        negate = True
    return tuple(nodes), negate


def class_name(net_name: str) -> str:
    """``resnet18-tv`` -> ``Resnet18Tv``."""
    words = [w for w in re.split(r"[^0-9A-Za-z]+", net_name) if w]
    name = "".join(w[:1].upper() + w[1:] for w in words) or "Network"
    return name if name[0].isalpha() else f"Net{name}"


def python_source(net: Network, input_shape: Shape | None = None, *, logits: bool = False,
                  source: str = "") -> str:
    """The Python file defining ``net``'s module as built at ``input_shape`` (default: the design
    input); ``logits`` as in :func:`cnnlab.torch_backend.build`. ``source`` is named in its docstring."""
    from ..analysis import analyze

    shape = tuple(input_shape or net.input_shape)
    analyze(net, shape)  # an impossible shape fails here, with the analysis' one-line error
    nodes, negate = head_nodes(net, logits)
    gen = _Generator()
    flow = CodeFlow(gen, "")
    y = flow.chain(nodes, Value("x", shape))
    if negate:
        flow.lines.append(f"{y.expr} = -{y.expr}")
    helpers = with_dependencies(gen.helpers)
    top = class_name(net.name)
    names = {name for name, _ in gen.classes.values()} | set(helpers)
    while top in names:
        top += "Net"
    tie = ("tie_shared(self)  # layers that call an earlier layer's module again",) if "tie_shared" in helpers else ()
    if flow.aux:
        body = _class_body(flow, y, "x: torch.Tensor", "tuple[torch.Tensor, ...] | torch.Tensor",
                           ("aux: list[torch.Tensor] = []",), f"({y.expr}, *aux) if aux else {y.expr}", tie)
    else:
        body = _class_body(flow, y, "x: torch.Tensor", post_init=tie)
    doc = _docstring(net, shape, logits, source, flow.aux, top)
    imports = ["from __future__ import annotations", ""]
    if gen.ordered_dict:
        imports += ["from collections import OrderedDict", ""]
    imports += ["import torch"]
    if any(h in ("pad_input", "Subsample2d", "ChannelPad") for h in helpers):
        imports += ["import torch.nn.functional as F"]
    imports += ["from torch import nn"]
    parts = [doc, "\n".join(imports), f"INPUT_SHAPE = {shape!r}  # (C, H, W) it was written for",
             *(HELPERS[h][0] for h in helpers), *gen.class_sources(),
             f"class {top}(nn.Module):\n{INDENT}\"\"\"{net.name}.\"\"\"\n\n{body}"]
    return "\n\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def _docstring(net: Network, shape: Shape, logits: bool, source: str, aux: bool, top: str) -> str:
    size = "x".join(map(str, shape))
    lines = [f'"""{net.name}: the network as a plain PyTorch module, written by `cnnlab export`'
             + (f" from {source}" if source else "") + ".",
             "",
             f"Built for {size} inputs (INPUT_SHAPE); `{top}().load_state_dict(state_dict, strict=True)` takes",
             "the weights of the module cnnlab builds for it."]
    if logits:
        lines.append("It returns logits (scores before any final softmax), as the trained model does.")
    if aux:
        lines.append("In training mode it also returns the auxiliary heads' outputs: (main, *aux).")
    return "\n".join(lines) + '\n"""'
