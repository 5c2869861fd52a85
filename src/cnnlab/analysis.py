"""Layer-by-layer analysis of a network description: pure arithmetic, no tensors.

Conventions (printed under every table):
- shapes are channels-first (C, H, W); vectors are (N,);
- output size floor((n + 2p - d(k-1) - 1)/s) + 1; inexact divisions are reported;
- params are trainable weights + biases; BatchNorm running statistics are buffers;
- MACs are weight multiply-accumulates (conv: kh*kw*Cin/groups*Cout*Hout*Wout, dense: in*out); FLOPs = 2 x MACs;
- connections in LeNet-5's sense: (fan_in + 1) * outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any

from .errors import CnnlabError, ShapeError
from .layers import Axis, Explain, Layer, LayerFigures, Shape, ZeroPad, fmt_shape, resolve_padding
from .network import Network, Node, join, kind_of, share_problem

CONVENTIONS = (
    "Shapes are channels-first: C x H x W (vectors: N). "
    "Output size = floor((n + 2p - d(k-1) - 1)/s) + 1; inexact divisions are flagged. "
    "Params = trainable weights + biases; buffers (BatchNorm running statistics) are shown apart. "
    "MACs = weight multiply-accumulates (conv: kh*kw*Cin/groups*Cout*Hout*Wout; dense: in*out); FLOPs = 2 x MACs. "
    "Connections (LeNet-5's sense) = (fan_in + 1) * outputs. "
    "Receptive field: size and jump (input pixels between neighbouring outputs), H x W."
)

RF = tuple[tuple[int, int], tuple[int, int]]  # per axis (size, jump)


@dataclass(slots=True)
class LayerStats:
    name: str
    type: str
    kind: str
    depth: int
    input_shape: Shape
    output_shape: Shape
    params: int
    buffers: int
    macs: int
    connections: int
    rf: RF
    findings: tuple[tuple[str, str], ...] = ()
    aux: bool = False
    explain: Explain | None = field(default=None, repr=False, compare=False)
    layer: Layer | None = field(default=None, repr=False, compare=False)  # the description's layer
    axes: tuple[Axis, Axis] | None = field(default=None, repr=False, compare=False)  # a window's geometry
    shares: str = ""  # the layer whose weights this one uses (counted there)

    @property
    def notes(self) -> list[str]:
        """The layer's arithmetic written out (``--explain``), formatted on demand."""
        return self.explain() if self.explain is not None else []

    @property
    def activation_size(self) -> int:
        n = 1
        for d in self.output_shape:
            n *= d
        return n

    def to_dict(self) -> dict[str, Any]:
        (rh, jh), (rw, jw) = self.rf
        return {
            "name": self.name, "type": self.type, "output_shape": list(self.output_shape),
            "activation_size": self.activation_size, "params": self.params, "buffers": self.buffers,
            "macs": self.macs, "connections": self.connections,
            "receptive_field": {"size": [rh, rw], "jump": [jh, jw]},
            **({"shares": self.shares} if self.shares else {}),
        }


@dataclass
class Block:
    """A composite node (sequence, concatenation, residual sum, auxiliary head): its output and the
    leaf rows ``layers[start:end]`` inside it."""

    name: str
    type: str
    depth: int
    output_shape: Shape
    start: int
    end: int
    params: int = 0
    macs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "output_shape": list(self.output_shape),
                "params": self.params, "macs": self.macs}


@dataclass
class Analysis:
    model: str
    input_shape: Shape
    layers: list[LayerStats]
    output_shape: Shape
    batch: int = 1
    bytes_per_value: int = 4
    meta: dict[str, Any] = field(default_factory=dict)
    blocks: dict[str, Block] = field(default_factory=dict)  # composite nodes by path, in execution order
    network: Network | None = field(default=None, repr=False, compare=False)  # what was walked, for the diagram

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the HTML report's totals, findings, diagram and table."""
        from .report.notebook import analysis_html

        return analysis_html(self, self.network)

    @property
    def main(self) -> list[LayerStats]:
        return [ly for ly in self.layers if not ly.aux]

    def _sum(self, key: str, aux: bool = False) -> int:
        return sum(getattr(ly, key) for ly in self.layers if ly.aux == aux)

    @property
    def totals(self) -> dict[str, int]:
        return {k: self._sum(k) for k in ("params", "buffers", "macs", "connections", "activation_size")}

    @property
    def aux_totals(self) -> dict[str, int] | None:
        if not any(ly.aux for ly in self.layers):
            return None
        return {k: self._sum(k, aux=True) for k in ("params", "buffers", "macs", "connections", "activation_size")}

    @property
    def training_totals(self) -> dict[str, int]:
        """The module as trained: the network plus its auxiliary heads (``totals`` when it has none),
        what ``sum(p.numel() for p in model.parameters())`` counts."""
        return {k: sum(getattr(ly, k) for ly in self.layers)
                for k in ("params", "buffers", "macs", "connections", "activation_size")}

    @property
    def split(self) -> dict[str, dict[str, int]]:
        """Parameters and MACs of conv layers vs dense layers (seed 003's last row), the rest apart."""
        out: dict[str, dict[str, int]] = {k: {"params": 0, "macs": 0} for k in ("conv", "dense", "other")}
        for ly in self.main:
            out[ly.kind]["params"] += ly.params
            out[ly.kind]["macs"] += ly.macs
        return out

    @property
    def memory(self) -> dict[str, int]:
        """Training memory: weights and the activations of a batch, auxiliary heads included."""
        b = self.bytes_per_value
        t = self.training_totals
        return {
            "bytes_per_value": b, "batch": self.batch,
            "param_bytes": t["params"] * b, "buffer_bytes": t["buffers"] * b,
            "activation_bytes": (t["activation_size"] + _prod(self.input_shape)) * self.batch * b,
        }

    @property
    def findings(self) -> list[dict[str, str]]:
        return [{"layer": ly.name, "kind": k, "detail": d} for ly in self.layers for k, d in ly.findings]

    def layer(self, name: str) -> LayerStats:
        for ly in self.layers:
            if ly.name == name:
                return ly
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": self.model, "input_shape": list(self.input_shape),
            "layers": [ly.to_dict() for ly in self.layers], "totals": self.totals,
            "training_totals": self.training_totals,
            "output_shape": list(self.output_shape), "split": self.split, "memory": self.memory,
            "findings": self.findings, "blocks": [b.to_dict() for b in self.blocks.values()],
        }
        if self.aux_totals:
            d["aux_totals"] = self.aux_totals
        if self.meta:
            d["meta"] = self.meta
        return d


def _prod(s: Shape) -> int:
    n = 1
    for d in s:
        n *= d
    return n


_CONFIG: dict[type, Callable[[Layer], Any]] = {}


def _config(layer: Layer) -> Any:
    """Every field but the name: what a layer's arithmetic depends on (names appear only in errors)."""
    get = _CONFIG.get(type(layer))
    if get is None:
        names = [f.name for f in fields(layer) if f.name != "name"]
        get = _CONFIG[type(layer)] = attrgetter(*names) if names else _no_fields
    return get(layer)


def _no_fields(layer: Layer) -> tuple[()]:
    return ()


def _shared_note(target: str, params: int, explain: Explain | None) -> Explain:
    """The notes of a layer that uses ``target``'s weights: that first, then its arithmetic."""
    first = f"shares weights with {target}: its {params:,} params are counted there, once"
    return lambda: [first, *(explain() if explain is not None else [])]


def _rf_step(rf: RF, step: Any) -> RF:
    if step is None:
        return rf
    ((rh, jh), (rw, jw)), ((kh, sh, _), (kw, sw, _)) = rf, step
    return (rh + (kh - 1) * jh, jh * sh), (rw + (kw - 1) * jw, jw * sw)


def _rf_max(rfs: list[RF]) -> RF:
    """Per axis, the largest receptive field (the first of equals) of parallel paths."""
    best_h, best_w = rfs[0]
    for h, w in rfs[1:]:
        if h[0] > best_h[0]:
            best_h = h
        if w[0] > best_w[0]:
            best_w = w
    return best_h, best_w


class _Walker:
    def __init__(self) -> None:
        self.out: list[LayerStats] = []
        self.blocks: dict[str, Block] = {}
        # Running totals after each row: a block's params and MACs are two subtractions.
        self.cum_params: list[int] = [0]
        self.cum_macs: list[int] = [0]
        self.memo: dict[Any, LayerFigures] = {}
        self.seen: dict[str, tuple[Layer, Shape]] = {}  # every layer so far and its input, for shared weights

    def node(self, node: Node, shape: Shape, rf: RF, prefix: str, depth: int, aux: bool) -> tuple[Shape, RF]:
        path = join(prefix, node.name)
        if isinstance(node, Layer):
            return self.leaf(node, shape, rf, path, depth, aux)
        kind = kind_of(node)
        if kind.inline(node):
            return kind.run(node, (shape, rf), _Flow(self, node, path, prefix, depth, aux))
        block = Block(path, type(node).__name__, depth, shape, len(self.out), 0)
        self.blocks[path] = block
        out, rf = kind.run(node, (shape, rf), _Flow(self, node, path, path, depth + 1, aux))
        block.end = len(self.out)
        block.output_shape = out
        block.params = self.cum_params[block.end] - self.cum_params[block.start]
        block.macs = self.cum_macs[block.end] - self.cum_macs[block.start]
        return out, rf

    def figures(self, layer: Layer, shape: Shape, path: str) -> LayerFigures:
        """``layer.figures(shape)``, once per configuration and input: ResNet-152's 36 middle units
        repeat the same three convolutions, which differ only in their names."""
        key: Any = (type(layer), _config(layer), shape)
        try:
            c = self.memo.get(key)
        except TypeError:  # a field holds something unhashable: no sharing
            c, key = None, None
        if c is not None:
            return c
        try:
            c = layer.figures(shape)
        except ShapeError:
            try:
                layer.with_name(path).figures(shape)  # same error, with the full dotted name
            except ShapeError as e:
                msg = str(e) if str(e).startswith("layer '") else f"layer '{path}' ({type(layer).__name__}): {e}"
                raise ShapeError(msg, layer=path, axis=e.axis, reason=e.reason, hint=e.hint) from None
            raise
        if key is not None:
            self.memo[key] = c
        return c

    def leaf(self, layer: Layer, shape: Shape, rf: RF, path: str, depth: int, aux: bool) -> tuple[Shape, RF]:
        c = self.figures(layer, shape, path)
        rf2 = _rf_step(rf, c.rf)
        if c.rf is None and len(c.out) == 1 and len(shape) == 3:  # flattening: the whole map is seen
            h, w = shape[1], shape[2]
            rf2 = ((rf2[0][0] + (h - 1) * rf2[0][1], rf2[0][1]), (rf2[1][0] + (w - 1) * rf2[1][1], rf2[1][1]))
        params, buffers, explain = c.params, c.buffers, c.explain
        if layer.shares:  # the module of an earlier layer, called again: its weights are counted there
            self.check_share(layer, shape, path)
            params = buffers = 0
            explain = _shared_note(layer.shares, c.params, c.explain)
        self.seen[path] = (layer, shape)
        findings = self.padded_findings(c, shape) if c.findings and self.out else c.findings
        self.out.append(LayerStats(path, type(layer).__name__, layer.kind, depth, shape, c.out, params, buffers,
                                   c.macs, c.connections, rf2, findings, aux, explain, layer, c.axes, layer.shares))
        self.cum_params.append(self.cum_params[-1] + params)
        self.cum_macs.append(self.cum_macs[-1] + c.macs)
        return c.out, rf2

    def padded_findings(self, c: LayerFigures, shape: Shape) -> tuple[tuple[str, str], ...]:
        """A division that drops the last rows of a map padded by the ZeroPad just before (Keras writes a
        padded conv as ZeroPadding2D + a 'valid' conv) drops padding, not input: said as such."""
        prev = self.out[-1]
        if type(prev.layer) is not ZeroPad or prev.output_shape != shape or not c.axes:
            return c.findings
        (_, bottom), (_, right) = resolve_padding(prev.layer.padding, prev.input_shape[1:], (1, 1), (1, 1), (1, 1))
        found = []
        for kind, text in c.findings:
            i = ("H: ", "W: ").index(text[:3]) if text[:3] in ("H: ", "W: ") else None
            if kind == "inexact" and i is not None and 0 < c.axes[i].dropped <= (bottom, right)[i]:
                n, rows = c.axes[i].dropped, ("rows", "columns")[i]
                what = f"{n} {rows} are" if n > 1 else f"{rows[:-1]} is"
                kind, text = "padding", (f"{text.split(';')[0]}; the last {what} never read: padding from "
                                         f"'{prev.name}' (no input is lost)")
            found.append((kind, text))
        return tuple(found)

    def check_share(self, layer: Layer, shape: Shape, path: str) -> None:
        """One module serves ``layer`` and the layer it shares: same type and settings, and an
        input of the same channels (features), so the weights have the same shapes."""
        target, tshape = self.seen.get(layer.shares, (None, ()))
        problem = share_problem(path, layer, target)
        if problem:
            raise CnnlabError(problem)
        if tshape[0] != shape[0] or len(tshape) != len(shape):
            raise ShapeError(f"layer '{path}' shares weights with '{layer.shares}' but reads {fmt_shape(shape)} where "
                             f"'{layer.shares}' reads {fmt_shape(tshape)}, so its weights would have other shapes; "
                             "share only between layers that read as many channels", layer=path, reason="shares")


class _Flow:
    """Shapes and receptive fields through one composite; its children sit under ``sub`` at ``depth``."""

    __slots__ = ("w", "node", "path", "sub", "depth", "aux")

    def __init__(self, w: _Walker, node: Node, path: str, sub: str, depth: int, aux: bool) -> None:
        self.w, self.node, self.path, self.sub, self.depth, self.aux = w, node, path, sub, depth, aux

    def chain(self, nodes: tuple[Node, ...], x: tuple[Shape, RF]) -> tuple[Shape, RF]:
        shape, rf = x
        for ch in nodes:
            shape, rf = self.w.node(ch, shape, rf, self.sub, self.depth, self.aux)
        return shape, rf

    def side(self, nodes: tuple[Node, ...], x: tuple[Shape, RF]) -> None:
        shape, rf = x
        for ch in nodes:
            shape, rf = self.w.node(ch, shape, rf, self.sub, self.depth, True)

    def concat(self, xs: list[tuple[Shape, RF]]) -> tuple[Shape, RF]:
        shapes = [s for s, _ in xs]
        if any(len(s) != 3 for s in shapes) or len({s[1:] for s in shapes}) != 1:
            raise ShapeError(
                f"{type(self.node).__name__.lower()} '{self.path}': branch outputs "
                f"{', '.join(fmt_shape(s) for s in shapes)} differ in H x W; give the branches the same stride "
                "and padding", layer=self.path, reason="concat"
            )
        return (sum(s[0] for s in shapes), *shapes[0][1:]), _rf_max([r for _, r in xs])

    def add(self, body: tuple[Shape, RF], shortcut: tuple[Shape, RF], scale: float = 1.0) -> tuple[Shape, RF]:
        if body[0] != shortcut[0]:
            raise ShapeError(
                f"{type(self.node).__name__.lower()} '{self.path}': the body gives {fmt_shape(body[0])} but the "
                f"shortcut gives {fmt_shape(shortcut[0])}; add a projection shortcut that matches",
                layer=self.path, reason="sum",
            )
        return body[0], _rf_max([body[1], shortcut[1]])

    def mul(self, xs: list[tuple[Shape, RF]]) -> tuple[Shape, RF]:
        out = broadcast([s for s, _ in xs])
        if out is None:
            raise ShapeError(
                f"{type(self.node).__name__.lower()} '{self.path}': cannot multiply "
                f"{' by '.join(fmt_shape(s) for s, _ in xs)}; give the factors equal sizes or size 1 "
                "(a 1x1 map scales the channels)", layer=self.path, reason="mul",
            )
        return out, _rf_max([r for _, r in xs])

    def max(self, xs: list[tuple[Shape, RF]]) -> tuple[Shape, RF]:
        out = broadcast([s for s, _ in xs])
        if out is None:
            raise ShapeError(
                f"{type(self.node).__name__.lower()} '{self.path}': cannot take the maximum of "
                f"{', '.join(fmt_shape(s) for s, _ in xs)}; give the inputs equal sizes or size 1",
                layer=self.path, reason="max",
            )
        return out, _rf_max([r for _, r in xs])


def broadcast(shapes: list[Shape]) -> Shape | None:
    """The shape PyTorch broadcasts ``shapes`` to (aligned on the right), or None if it cannot."""
    n = max(len(s) for s in shapes)
    out: list[int] = []
    for i in range(n):
        sizes = {s[i - n + len(s)] for s in shapes if i - n + len(s) >= 0} - {1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def analyze(net: Network, input_shape: Shape | None = None, *, batch: int = 1, bytes_per_value: int = 4) -> Analysis:
    """Walk the description at ``input_shape`` (default: the design input)."""
    shape = tuple(input_shape or net.input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ShapeError(f"input {fmt_shape(shape)}: give C x H x W with every size >= 1, e.g. 3x224x224",
                         reason="input")
    w = _Walker()
    out: Shape = shape
    rf: RF = ((1, 1), (1, 1))
    for node in net.layers:
        out, rf = w.node(node, out, rf, "", 0, False)
    return Analysis(net.name, shape, w.out, out, batch, bytes_per_value, dict(net.meta), w.blocks, net)


def analyze_until_failure(net: Network, input_shape: Shape) -> list[LayerStats]:
    """The layers that run at ``input_shape`` before the first one that cannot (all of them when
    none fails): what a diagnosis shows where :func:`analyze` raises."""
    w = _Walker()
    out, rf = tuple(input_shape), ((1, 1), (1, 1))
    try:
        for node in net.layers:
            out, rf = w.node(node, out, rf, "", 0, False)
    except ShapeError:
        pass
    return w.out
