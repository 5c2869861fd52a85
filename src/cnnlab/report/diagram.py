"""An SVG diagram of a network description: sequences stack downwards, Inception branches sit side
by side, residual blocks carry their skip connection, auxiliary heads hang off to the side.

Parameter-free shape-keeping layers (activations, dropout) and BatchNorm are folded into the box of
the layer before them, so a ResNet-152 stays readable.

The layout is done in two steps: ``tree`` reads the description once into plain nested dicts
(leaves, stacks, branch rows, residual sums and collapsible frames, each leaf knowing its table
rows), and ``render`` draws that tree with some frames collapsed. The interactive report draws the
same tree again in the browser (``diagram.js``) when a block is collapsed or expanded; this module's
drawing is what a reader without scripts sees."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

from ..analysis import Analysis, LayerStats
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
    Normalize,
    ReLU,
    Scale,
    ScaledTanh,
    Sigmoid,
    Softmax,
    Tanh,
    fmt_shape,
    pair,
)
from ..network import Aux, Concat, Graph, Network, Node, Residual, Sequential, inner_prefix, is_inline, join, kind_of
from .numbers import human

BOX_W, BOX_H, GAP, PAD = 230, 34, 12, 16
FOLD = (ReLU, Tanh, Sigmoid, ScaledTanh, Dropout, BatchNorm, Softmax, LRN, Activation, Scale, Normalize, GroupNorm,
        LayerNorm)
POOLS = (MaxPool, AvgPool, AdaptiveAvgPool, GlobalAvgPool)  # AdaptiveMaxPool is an AdaptiveAvgPool
COLORS = {"conv": "#dbeafe", "dense": "#fde68a", "pool": "#dcfce7", "other": "#f3f4f6", "block": "#ede9fe"}
STYLE = (".t{font-size:11px;fill:#111}.d{font-size:10px;fill:#4b5563}"
         ".e{stroke:#6b7280;fill:none}.s{stroke-dasharray:4 3}.f{fill:none;stroke:#9ca3af;stroke-dasharray:3 3}")

Tree = dict[str, Any]


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


# --- description -> tree ---------------------------------------------------------------------------

def _leaf(title: str, sub: str, kind: str, rows: list[int]) -> Tree:
    return {"t": "l", "title": title, "sub": sub, "kind": kind, "tags": [], "rows": rows}


class _Tree:
    def __init__(self, a: Analysis) -> None:
        self.a = a
        self.index: dict[str, int] = {ly.name: i for i, ly in enumerate(a.layers)}
        self.stats: dict[str, LayerStats] = {ly.name: ly for ly in a.layers}

    def seq(self, nodes: tuple[Node, ...], prefix: str) -> list[Tree]:
        out: list[Tree] = []
        pending: Tree | None = None
        for n in nodes:
            if isinstance(n, Layer):
                path = join(prefix, n.name)
                st, row = self.stats.get(path), self.index.get(path)
                rows = [row] if row is not None else []
                if isinstance(n, FOLD) and pending is not None:
                    pending["tags"].append(type(n).__name__)
                    pending["rows"] += rows
                    continue
                if pending:
                    out.append(pending)
                kind = "pool" if isinstance(n, POOLS) else n.kind
                sub = fmt_shape(st.output_shape) + (f" · {st.params:,} params" if st.params else "") + (
                    f" · shares {st.shares}" if st.shares else "") if st else ""
                pending = _leaf(f"{n.name}: {label(n)}", sub, kind, rows)
                continue
            if pending:
                out.append(pending)
                pending = None
            out.append(self.node(n, prefix))
        if pending:
            out.append(pending)
        return out

    def frame(self, inner: Tree, n: Node, path: str) -> Tree:
        """A titled frame; one that is a block of the analysis can be collapsed to a summary box."""
        f: Tree = {"t": "f", "title": f"{n.name} ({type(n).__name__})", "inner": inner}
        if isinstance(n, Aux):
            f["title"] = f"{n.name} (auxiliary head)"
        b = self.a.blocks.get(path)
        if b is not None and b.end > b.start:
            f.update(id=path, rows=[b.start, b.end],
                     sum=f"{fmt_shape(b.output_shape)} · {b.params:,} params · {human(b.macs)} MACs")
        return f

    def node(self, n: Node, prefix: str) -> Tree:
        path, sub = join(prefix, n.name), inner_prefix(n, prefix)  # sub: where its children are registered
        if isinstance(n, Sequential):
            inner: Tree = {"t": "s", "items": self.seq(n.children, sub)}
            return inner if is_inline(n) else self.frame(inner, n, path)
        if isinstance(n, Concat):
            cols = [[b.name, {"t": "s", "items": self.seq(b.children, inner_prefix(b, sub))
                              if isinstance(b, Sequential) else self.seq((b,), sub)}] for b in n.branches]
            out = self.a.blocks.get(path)
            text = f"concat -> {fmt_shape(out.output_shape)}" if out else "concat"
            return self.frame({"t": "c", "cols": cols, "text": text}, n, path)
        if isinstance(n, Residual):
            res = {"t": "r", "body": {"t": "s", "items": self.seq(n.body, path)},
                   "sc": {"t": "s", "items": self.seq((n.shortcut,), path)} if n.shortcut is not None else None,
                   "plus": "+" if n.scale == 1.0 else f"+ x{n.scale:g}"}
            return self.frame({"t": "s", "items": [res, *self.seq(n.post, path)]}, n, path)
        if isinstance(n, Graph):  # layers in execution order (a dense block would be far too wide side by side)
            f = self.frame({"t": "s", "items": self.graph_items(n, path)}, n, path)
            f["title"] = f"{n.name} (Graph: {len(n.merges)} merges, {'/'.join(sorted({m.op for m in n.merges}))})"
            return f
        if isinstance(n, Aux):
            return self.frame({"t": "s", "items": self.seq(n.head, path)}, n, path)
        return self.generic(n, path, sub)

    def graph_items(self, g: Graph, path: str) -> list[Tree]:
        """A graph's nodes in execution order; a node that does not read the one drawn above it says what it
        reads (``<- a``, ``<- max(a, b)``), since the boxes stack in one column."""
        merges = {m.name: m for m in g.merges}

        def named(v: str) -> str:
            m = merges.get(v)
            return f"{m.op}({', '.join(named(x) for x in m.inputs)})" if m else v or "input"

        items: list[Tree] = []
        prev = ""
        for node, src in zip(g.nodes, g.inputs):
            if src == prev and items and isinstance(node, FOLD) and items[-1]["t"] == "l":
                row = self.index.get(join(path, node.name))
                items[-1]["tags"].append(type(node).__name__)
                items[-1]["rows"] += [row] if row is not None else []
            else:
                part = self.seq((node,), path)
                if src != prev and part and part[0]["t"] in ("l", "f"):
                    key = "sub" if part[0]["t"] == "l" else "title"
                    part[0][key] = f"{part[0].get(key, '')} · <- {named(src)}".lstrip(" ·")
                items += part
            prev = node.name
        return items

    def generic(self, n: Node, path: str, sub: str) -> Tree:
        """Any other composite kind: chained parts stack downwards, branches sit side by side."""
        items: list[Tree] = []
        for part in kind_of(n).parts(n):
            if part.chain:
                items += self.seq(part.nodes, sub)
            else:
                items.append({"t": "w", "items": [{"t": "s", "items": self.seq((b,), sub)} for b in part.nodes]})
        return self.frame({"t": "s", "items": items}, n, path)


def tree(net: Network, a: Analysis) -> Tree:
    """The diagram as plain data (JSON-ready): the input box, then the network."""
    inp = _leaf("input", f"{fmt_shape(a.input_shape)} (C x H x W)", "other", [])
    return {"t": "s", "items": [inp, *_Tree(a).seq(net.layers, "")]}


def flat_tree(a: Analysis) -> Tree:
    """A measured analysis has rows but no description: one box per row, in execution order."""
    inp = _leaf("input", f"{fmt_shape(a.input_shape)} (C x H x W)", "other", [])
    return {"t": "s", "items": [inp, *(
        _leaf(f"{ly.name}: {ly.type}", fmt_shape(ly.output_shape) + (f" · {ly.params:,} params" if ly.params else ""),
              ly.kind, [i]) for i, ly in enumerate(a.layers))]}


def frames(t: Tree) -> list[Tree]:
    """Every collapsible frame of a tree, outermost first."""
    out: list[Tree] = []
    stack = [t]
    while stack:
        n = stack.pop()
        if n["t"] == "f" and "id" in n:
            out.append(n)
        kids = [n.get("inner"), n.get("body"), n.get("sc"), *n.get("items", ()), *(c[1] for c in n.get("cols", ()))]
        stack += [k for k in reversed(kids) if k]
    return out


# --- tree -> SVG -----------------------------------------------------------------------------------

def _arrow(x1: float, y1: float, x2: float, y2: float, marker: str) -> str:
    return f'<path d="M{x1},{y1} L{x2},{y2}" class="e" marker-end="url(#{marker})"/>'


def _leaf_box(title: str, sub: str, kind: str, tags: list[str], attrs: str = "") -> Box:
    fill = COLORS.get(kind, COLORS["other"])
    tag = f" · {', '.join(tags)}" if tags else ""
    return Box(BOX_W, BOX_H, [
        f"<g{attrs}>" if attrs else "",
        f'<rect width="{BOX_W}" height="{BOX_H}" rx="5" fill="{fill}" stroke="#6b7280"/>',
        f'<text x="8" y="14" class="t">{escape(title)}<tspan class="d">{escape(tag)}</tspan></text>',
        f'<text x="8" y="28" class="d">{escape(sub)}</text>',
        "</g>" if attrs else "",
    ])


class _Draw:
    def __init__(self, collapsed: set[str], marker: str) -> None:
        self.collapsed, self.marker = collapsed, marker

    def stack(self, boxes: list[Box]) -> Box:
        if not boxes:
            return Box(0, 0)
        w = max(b.w for b in boxes)
        out, y = Box(w, 0), 0
        for i, b in enumerate(boxes):
            out.parts.append(b.at((w - b.w) // 2, y))
            if i:
                out.parts.append(_arrow(w / 2, y - GAP, w / 2, y, self.marker))
            y += b.h + GAP
        out.h = y - GAP
        return out

    def box(self, t: Tree) -> Box:
        kind = t["t"]
        if kind == "l":
            rows = " ".join(map(str, t["rows"]))
            return _leaf_box(t["title"], t["sub"], t["kind"], t["tags"], f' class="n" data-r="{rows}"' if rows else "")
        if kind == "s":
            return self.stack([self.box(i) for i in t["items"]])
        if kind == "w":
            cols = [self.box(i) for i in t["items"]]
            row, x = Box(sum(c.w for c in cols) + GAP * (len(cols) - 1), max(c.h for c in cols)), 0
            for c in cols:
                row.parts.append(c.at(x, 0))
                x += c.w + GAP
            return row
        if kind == "c":
            return self.concat(t)
        if kind == "r":
            return self.residual(t)
        return self.frame(t)

    def concat(self, t: Tree) -> Box:
        cols = [(name, self.box(c)) for name, c in t["cols"]]
        w = sum(c.w for _, c in cols) + GAP * (len(cols) - 1)
        h = max(c.h for _, c in cols) + 14
        row, x = Box(w, h + 2 * GAP + 10), 0
        for name, c in cols:
            row.parts.append(f'<text x="{x + c.w / 2}" y="9" class="d" text-anchor="middle">{escape(name)}</text>')
            row.parts.append(c.at(x, 14))
            row.parts.append(_arrow(x + c.w / 2, c.h + 14, w / 2, h + 2 * GAP, self.marker))
            x += c.w + GAP
        row.parts.append(f'<text x="{w / 2}" y="{h + 2 * GAP + 10}" class="d" text-anchor="middle">'
                         f'{escape(t["text"])}</text>')
        return row

    def residual(self, t: Tree) -> Box:
        body = self.box(t["body"])
        sc = self.box(t["sc"]) if t["sc"] else None
        w = body.w + GAP + (sc.w if sc else 30)
        inner = Box(w, body.h + 2 * GAP + 10)
        inner.parts.append(body.at(0, 0))
        if sc:
            inner.parts.append(sc.at(body.w + GAP, (body.h - sc.h) // 2))
        else:
            inner.parts.append(f'<path d="M{w - 15},0 L{w - 15},{body.h}" class="e s"/>')
        inner.parts.append(f'<text x="{body.w / 2}" y="{body.h + 2 * GAP + 8}" class="t" '
                           f'text-anchor="middle">{escape(t["plus"])}</text>')
        return inner

    def frame(self, t: Tree) -> Box:
        fid = t.get("id")
        data = f' data-b="{escape(fid)}"' if fid else ""
        if fid in self.collapsed:
            rows = " ".join(map(str, range(*t["rows"])))
            return _leaf_box(f"▸ {t['title']}", t["sum"], "block", [], f' class="n b" data-r="{rows}"{data}')
        inner = self.box(t["inner"])
        b = Box(inner.w + 2 * PAD, inner.h + 2 * PAD + 14)
        b.parts.append(f'<rect width="{b.w}" height="{b.h}" rx="8" class="f"/>')
        if fid:
            b.parts.append(f'<g class="tg"{data}><rect width="{b.w}" height="18" fill="transparent"/>'
                           f'<text x="8" y="13" class="d">▾ {escape(t["title"])}</text></g>')
        else:
            b.parts.append(f'<text x="8" y="13" class="d">{escape(t["title"])}</text>')
        b.parts.append(inner.at(PAD, PAD + 14))
        return b


def render(t: Tree, collapsed: set[str] | None = None, uid: str = "") -> str:
    """A tree as a standalone ``<svg>`` element, the frames named in ``collapsed`` drawn as one box;
    ``uid`` keeps the arrow marker's id apart from other diagrams on the same page."""
    marker = f"{uid}-a" if uid else "a"
    body = _Draw(collapsed or set(), marker).box(t)
    w, h = body.w + 2 * PAD, body.h + 2 * PAD
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'font-family="system-ui, sans-serif">'
        f'<defs><marker id="{marker}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker></defs>'
        f'<style>{STYLE}</style><g class="root">{body.at(PAD, PAD)}</g></svg>'
    )


def svg(net: Network, a: Analysis, collapsed: set[str] | None = None, uid: str = "") -> str:
    """The whole diagram as a standalone ``<svg>`` element, every block expanded unless named."""
    return render(tree(net, a), collapsed, uid)
