"""An SVG diagram of a network description: sequences stack downwards, Inception branches sit side
by side, residual blocks carry their skip connection, auxiliary heads hang off to the side.

Parameter-free shape-keeping layers (activations, dropout) and BatchNorm are folded into the box of
the layer before them, so a ResNet-152 stays readable."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from ..analysis import Analysis, Block, LayerStats
from ..layers import (
    LRN,
    Activation,
    AdaptiveAvgPool,
    AvgPool,
    BatchNorm,
    Dropout,
    GlobalAvgPool,
    GroupNorm,
    Layer,
    LayerNorm,
    MaxPool,
    ReLU,
    Scale,
    ScaledTanh,
    Sigmoid,
    Softmax,
    Tanh,
    fmt_shape,
    pair,
)
from ..network import Aux, Concat, Graph, Network, Node, Residual, Sequential, inner_prefix, join, kind_of

BOX_W, BOX_H, GAP, PAD = 230, 34, 12, 16
FOLD = (ReLU, Tanh, Sigmoid, ScaledTanh, Dropout, BatchNorm, Softmax, LRN, Activation, Scale, GroupNorm, LayerNorm)
POOLS = (MaxPool, AvgPool, AdaptiveAvgPool, GlobalAvgPool)  # AdaptiveMaxPool is an AdaptiveAvgPool
COLORS = {"conv": "#dbeafe", "dense": "#fde68a", "pool": "#dcfce7", "other": "#f3f4f6"}


@dataclass
class Box:
    """A laid-out piece: its size, SVG fragments relative to (0, 0), and its centre line."""

    w: int
    h: int
    parts: list[str] = field(default_factory=list)

    def at(self, x: int, y: int) -> str:
        return f'<g transform="translate({x},{y})">{"".join(self.parts)}</g>'


def label(layer: Layer) -> str:
    """A short human description: 'Conv 11x11/4, 96', 'MaxPool 3x3/2', 'Dense 4096'."""
    kind = type(layer).__name__
    k = getattr(layer, "kernel", None)
    if k is not None:
        kh, kw = pair(k)
        st = getattr(layer, "stride", None)
        sh, sw = pair(st) if st is not None else (kh, kw)
        text = f"{kind} {kh}x{kw}" + (f"/{sh}" if (sh, sw) != (1, 1) and sh == sw else
                                       f"/{sh}x{sw}" if (sh, sw) != (1, 1) else "")
        f = getattr(layer, "filters", None)
        g = getattr(layer, "groups", 1)
        return text + (f", {f}" if f else "") + (f", groups {g}" if g > 1 else "")
    units = getattr(layer, "units", None)
    return f"{kind} {units}" if units else kind


def _leaf_box(title: str, sub: str, kind: str, tags: list[str]) -> Box:
    fill = COLORS.get(kind, COLORS["other"])
    tag = f" · {', '.join(tags)}" if tags else ""
    return Box(BOX_W, BOX_H, [
        f'<rect width="{BOX_W}" height="{BOX_H}" rx="5" fill="{fill}" stroke="#6b7280"/>',
        f'<text x="8" y="14" class="t">{escape(title)}<tspan class="d">{escape(tag)}</tspan></text>',
        f'<text x="8" y="28" class="d">{escape(sub)}</text>',
    ])


def _arrow(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<path d="M{x1},{y1} L{x2},{y2}" class="e" marker-end="url(#a)"/>'


def _stack(boxes: list[Box]) -> Box:
    if not boxes:
        return Box(0, 0)
    w = max(b.w for b in boxes)
    out, y = Box(w, 0), 0
    for i, b in enumerate(boxes):
        x = (w - b.w) // 2
        out.parts.append(b.at(x, y))
        if i:
            out.parts.append(_arrow(w / 2, y - GAP, w / 2, y))
        y += b.h + GAP
    out.h = y - GAP
    return out


def _frame(inner: Box, title: str) -> Box:
    b = Box(inner.w + 2 * PAD, inner.h + 2 * PAD + 14)
    b.parts.append(f'<rect width="{b.w}" height="{b.h}" rx="8" class="f"/>')
    b.parts.append(f'<text x="8" y="13" class="d">{escape(title)}</text>')
    b.parts.append(inner.at(PAD, PAD + 14))
    return b


class _Layout:
    def __init__(self, stats: dict[str, LayerStats], blocks: dict[str, Block]) -> None:
        self.stats, self.blocks = stats, blocks

    def seq(self, nodes: tuple[Node, ...], prefix: str) -> list[Box]:
        boxes: list[Box] = []
        pending: tuple[str, str, str, list[str]] | None = None
        for n in nodes:
            if isinstance(n, Layer):
                st = self.stats.get(join(prefix, n.name))
                if isinstance(n, FOLD) and pending is not None:
                    pending[3].append(type(n).__name__)
                    continue
                if pending:
                    boxes.append(_leaf_box(*pending))
                kind = "pool" if isinstance(n, POOLS) else n.kind
                sub = fmt_shape(st.output_shape) + (f" · {st.params:,} params" if st.params else "") if st else ""
                pending = (f"{n.name}: {label(n)}", sub, kind, [])
                continue
            if pending:
                boxes.append(_leaf_box(*pending))
                pending = None
            boxes.append(self.node(n, prefix))
        if pending:
            boxes.append(_leaf_box(*pending))
        return boxes

    def node(self, n: Node, prefix: str) -> Box:
        path, sub = join(prefix, n.name), inner_prefix(n, prefix)  # sub: where its children are registered
        if isinstance(n, Sequential):
            return _stack(self.seq(n.children, sub))
        if isinstance(n, Concat):
            cols = [_stack(self.seq(b.children, inner_prefix(b, sub)))
                    if isinstance(b, Sequential) else _stack(self.seq((b,), sub)) for b in n.branches]
            w = sum(c.w for c in cols) + GAP * (len(cols) - 1)
            h = max(c.h for c in cols) + 14
            row, x = Box(w, h + 2 * GAP + 10), 0
            for b, c in zip(n.branches, cols):
                row.parts.append(f'<text x="{x + c.w / 2}" y="9" class="d" text-anchor="middle">{escape(b.name)}</text>')
                row.parts.append(c.at(x, 14))
                row.parts.append(_arrow(x + c.w / 2, c.h + 14, w / 2, h + 2 * GAP))
                x += c.w + GAP
            out = self.blocks.get(path)
            text = f"concat -> {fmt_shape(out.output_shape)}" if out else "concat"
            row.parts.append(f'<text x="{w / 2}" y="{h + 2 * GAP + 10}" class="d" text-anchor="middle">{text}</text>')
            return _frame(row, f"{n.name} (Concat)")
        if isinstance(n, Residual):
            body = _stack(self.seq(n.body, path))
            sc = _stack(self.seq((n.shortcut,), path)) if n.shortcut is not None else None
            w = body.w + GAP + (sc.w if sc else 30)
            inner = Box(w, body.h + 2 * GAP + 10)
            inner.parts.append(body.at(0, 0))
            if sc:
                inner.parts.append(sc.at(body.w + GAP, (body.h - sc.h) // 2))
            else:
                inner.parts.append(f'<path d="M{w - 15},0 L{w - 15},{body.h}" class="e s"/>')
            plus = "+" if n.scale == 1.0 else f"+ x{n.scale:g}"
            inner.parts.append(f'<text x="{body.w / 2}" y="{body.h + 2 * GAP + 8}" class="t" '
                               f'text-anchor="middle">{escape(plus)}</text>')
            post = self.seq(n.post, path)
            return _frame(_stack([inner, *post]), f"{n.name} (Residual)")
        if isinstance(n, Graph):  # layers in execution order (a dense block would be far too wide side by side)
            ops = sorted({m.op for m in n.merges})
            return _frame(_stack(self.seq(n.nodes, path)), f"{n.name} (Graph: {len(n.merges)} merges, {'/'.join(ops)})")
        if isinstance(n, Aux):
            return _frame(_stack(self.seq(n.head, path)), f"{n.name} (auxiliary head)")
        return self.generic(n, sub)

    def generic(self, n: Node, sub: str) -> Box:
        """Any other composite kind: chained parts stack downwards, branches sit side by side."""
        boxes: list[Box] = []
        for part in kind_of(n).parts(n):
            if part.chain:
                boxes += self.seq(part.nodes, sub)
                continue
            cols = [_stack(self.seq((b,), sub)) for b in part.nodes]
            row, x = Box(sum(c.w for c in cols) + GAP * (len(cols) - 1), max(c.h for c in cols)), 0
            for c in cols:
                row.parts.append(c.at(x, 0))
                x += c.w + GAP
            boxes.append(row)
        return _frame(_stack(boxes), f"{n.name} ({type(n).__name__})")


def svg(net: Network, a: Analysis) -> str:
    """The whole diagram as a standalone ``<svg>`` element."""
    lay = _Layout({ly.name: ly for ly in a.layers}, a.blocks)
    inp = _leaf_box("input", f"{fmt_shape(a.input_shape)} (C x H x W)", "other", [])
    body = _stack([inp, *lay.seq(net.layers, "")])
    w, h = body.w + 2 * PAD, body.h + 2 * PAD
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'font-family="system-ui, sans-serif">'
        '<defs><marker id="a" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker></defs>'
        "<style>.t{font-size:11px;fill:#111}.d{font-size:10px;fill:#4b5563}"
        ".e{stroke:#6b7280;fill:none}.s{stroke-dasharray:4 3}.f{fill:none;stroke:#9ca3af;stroke-dasharray:3 3}</style>"
        f"{body.at(PAD, PAD)}</svg>"
    )
