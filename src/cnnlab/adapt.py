"""Adapt a network to a new input size, channel count or class count.

A network designed for one input runs quietly wrong on another: strides drop the last rows,
the dense head grows with the flattened map, a small input makes a layer's output vanish.
:func:`diagnose` compares the network at its design input with the network at the new input,
layer by layer, and prices concrete fixes with the same analysis; :func:`apply` turns a fix
into the adapted :class:`Network`. Pure arithmetic: torch is imported only by :func:`train_step`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .analysis import Analysis, LayerStats, analyze, analyze_until_failure
from .errors import CnnlabError, ShapeError
from .layers import (
    AdaptiveAvgPool,
    AdaptiveMaxPool,
    AvgPool,
    Axis,
    Conv,
    Layer,
    MaxPool,
    PartialConv,
    Shape,
    Subsample,
    Window,
    ZeroPad,
    fmt_shape,
)
from .network import Aux, Concat, Network, Node, Residual, Sequential, network_to_spec

ROUNDING = {"floor": "floor (PyTorch, TensorFlow)", "ceil": "ceil (Caffe)"}
POOLS = (MaxPool, AvgPool)  # the layers whose rounding mode is selectable (their builders honour ceil_mode)
PADDABLE = (Conv, PartialConv, MaxPool, AvgPool, Subsample)  # exact types whose builders honour any padding
ADAPTIVE = ("AdaptiveAvgPool", "AdaptiveMaxPool")
UPSAMPLE_AREA = 1.5  # a fix that enlarges the input area beyond this invents pixels


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Finding:
    layer: str
    kind: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"layer": self.layer, "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class Edit:
    """One change: ``input`` (value: C, H, W), ``set`` (value: fields of the layer at ``path``),
    ``replace`` (value: the layer that takes its place), ``insert`` (value: a layer placed before
    ``path``) or ``prepend`` (a layer placed first)."""

    op: str
    path: str = ""
    value: Any = None


@dataclass(frozen=True)
class Fix:
    """A ranked option: what it changes, what it costs, and what it leaves unsolved."""

    id: int
    name: str
    description: str
    changes: tuple[str, ...]
    input: Shape
    params: int
    macs: int
    remaining: tuple[str, ...]
    keeps_weights: bool  # every designed weight fits, the resized class layers aside
    edits: tuple[Edit, ...] = field(repr=False, default=())
    new_weights: tuple[str, ...] = ()  # layers whose weights a trained design cannot give, class layers included

    @property
    def weights(self) -> str:
        """Where the weights come from, naming the layers that need new ones."""
        if not self.new_weights:
            return "designed"
        more = len(self.new_weights) - 2
        names = ", ".join(self.new_weights[:2]) + (f" and {more} more" if more > 0 else "")
        return f"designed except {names}" if self.keeps_weights else f"new: {names}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description, "params": self.params,
                "macs": self.macs, "input": list(self.input), "changes": list(self.changes),
                "remaining": list(self.remaining), "keeps_weights": self.keeps_weights, "weights": self.weights,
                "new_weights": list(self.new_weights)}


@dataclass
class Report:
    """The diagnosis. ``after`` is the network run unchanged at the new input (None when it cannot)."""

    model: str
    design_input: Shape
    input: Shape
    rounding: str
    findings: list[Finding]
    before: dict[str, int]
    after: dict[str, int] | None
    fixes: list[Fix]
    layers: list[dict[str, Any]]
    verdict: str
    error: str | None = None
    min_input: Shape | None = None  # the least change to ``input`` that runs
    min_input_any: Shape | None = None  # the smallest input that runs at all
    other_rounding: dict[str, Any] | None = None

    def fix(self, key: int | str) -> Fix:
        """A fix by rank (1 = best) or by name."""
        for f in self.fixes:
            if key in (f.id, f.name, str(f.id)):
                return f
        span = f"1-{len(self.fixes)}" if self.fixes else "none"
        raise CnnlabError(f"no fix '{key}' for {self.model} at {fmt_shape(self.input)} (fixes: {span}); "
                          "run 'cnnlab adapt' without --apply to list them")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": self.model, "design_input": list(self.design_input), "input": list(self.input),
            "rounding": self.rounding, "verdict": self.verdict,
            "findings": [f.to_dict() for f in self.findings], "before": self.before,
        }
        if self.after is not None:
            d["after"] = self.after
        if self.error:
            d["error"] = self.error
        if self.min_input:
            d["min_input"] = list(self.min_input)
        if self.min_input_any:
            d["min_input_any"] = list(self.min_input_any)
        if self.other_rounding:
            d["other_rounding"] = self.other_rounding
        d["fixes"] = [f.to_dict() for f in self.fixes]
        d["layers"] = self.layers
        return d


# --------------------------------------------------------------------------- editing the tree

Rewriter = Callable[[str, Layer], tuple[Layer, ...]]


def _rewrite(nodes: tuple[Node, ...], prefix: str, fn: Rewriter, in_sequence: bool = True) -> tuple[Node, ...]:
    """Map every leaf (by its analysis path) to zero or more layers; paths follow :mod:`analysis`."""
    out: list[Node] = []
    for n in nodes:
        path = f"{prefix}.{n.name}" if prefix else n.name
        if isinstance(n, Layer):
            new = fn(path, n)
            if len(new) != 1 and not in_sequence:
                raise CnnlabError(f"cannot insert a layer at '{path}': it is a branch, not a step of a sequence")
            out.extend(new)
        elif isinstance(n, Sequential):
            out.append(replace(n, children=_rewrite(n.children, prefix if n.inline else path, fn)))
        elif isinstance(n, Concat):
            out.append(replace(n, branches=_rewrite(n.branches, prefix if n.inline else path, fn, False)))
        elif isinstance(n, Residual):
            sc = _rewrite((n.shortcut,), path, fn, False)[0] if n.shortcut is not None else None
            out.append(replace(n, body=_rewrite(n.body, path, fn), shortcut=sc, post=_rewrite(n.post, path, fn)))
        elif isinstance(n, Aux):
            out.append(replace(n, head=_rewrite(n.head, path, fn)))
    return tuple(out)


def leaves(net: Network) -> dict[str, Layer]:
    """Every leaf layer by its dotted path, in description order."""
    found: dict[str, Layer] = {}
    _rewrite(net.layers, "", lambda p, ly: found.__setitem__(p, ly) or (ly,))
    return found


def _apply_edit(net: Network, e: Edit) -> Network:
    if e.op == "input":
        return replace(net, input_shape=tuple(e.value))
    if e.op == "prepend":
        return replace(net, layers=(e.value, *net.layers))
    hit: list[str] = []

    def fn(path: str, layer: Layer) -> tuple[Layer, ...]:
        if path != e.path:
            return (layer,)
        hit.append(path)
        if e.op == "set":
            return (replace(layer, **e.value),)
        return (e.value,) if e.op == "replace" else (e.value, layer)

    layers = _rewrite(net.layers, "", fn)
    if not hit:
        raise CnnlabError(f"{net.name} has no layer '{e.path}': this fix was made for another network")
    return replace(net, layers=layers)


def apply(net: Network, fix: Fix) -> Network:
    """The adapted network: ``net`` with every edit of ``fix``; its ``input_shape`` is the input
    it now takes, so ``analyze(apply(net, fix))`` runs at that input."""
    for e in fix.edits:
        net = _apply_edit(net, e)
    meta = {**net.meta, "adapted": {"fix": fix.name, "changes": list(fix.changes)}}
    return replace(net, meta=meta)


# --------------------------------------------------------------------------- one analysis run


@dataclass
class _Run:
    """The network at one input: its analysis (or the error) and the window axes of every layer."""

    shape: Shape
    a: Analysis | None
    error: str | None
    windows: list[tuple[str, Layer, tuple[Axis, Axis]]]

    @property
    def ok(self) -> bool:
        return self.a is not None

    def drops(self, axis: int | None = None) -> list[tuple[str, int, Axis]]:
        """(layer, axis, Axis) where a window never sees real input rows it could have covered."""
        return [(p, i, ax) for p, _, axes in self.windows for i, ax in enumerate(axes)
                if ax.dropped and ax.span >= ax.s and axis in (None, i)]

    def by_name(self) -> dict[str, LayerStats]:
        return {ly.name: ly for ly in self.a.layers} if self.a else {}

    @property
    def totals(self) -> dict[str, int]:
        assert self.a is not None
        t = self.a.totals
        return {"params": t["params"], "macs": t["macs"]}


def _failing_layer(error: str | None) -> str | None:
    m = re.search(r"layer '([^']+)'", error or "")
    return m.group(1) if m else None


def _run(net: Network, shape: Shape) -> _Run:
    try:
        a = analyze(net, shape)
    except ShapeError as e:
        return _Run(tuple(shape), None, str(e), [])
    lv = leaves(net)
    wins = [(ly.name, lv[ly.name], lv[ly.name].axes(ly.input_shape))  # type: ignore[attr-defined]
            for ly in a.layers if isinstance(lv.get(ly.name), Window)]
    return _Run(tuple(shape), a, None, wins)


@dataclass
class _Head:
    """Where the map becomes a vector, and the adaptive pool right before it (if any)."""

    flatten: LayerStats
    pool: LayerStats | None
    dense: list[str]  # dense layers after it, in order; the last is the classifier

    @property
    def fixed(self) -> bool:  # the head's input does not depend on the input size
        return self.flatten.type == "GlobalAvgPool" or self.pool is not None


def _head(a: Analysis) -> _Head | None:
    main = a.main
    for i, ly in enumerate(main):
        if len(ly.input_shape) == 3 and len(ly.output_shape) == 1:
            j = i - 1
            while j >= 0 and main[j].type not in ADAPTIVE and main[j].params == 0 and \
                    main[j].output_shape == main[j].input_shape:
                j -= 1
            pool = main[j] if j >= 0 and main[j].type in ADAPTIVE else None
            return _Head(ly, pool, [m.name for m in main[i + 1:] if m.type in ("Dense", "RBF")])
    return None


def _pad4(axes: tuple[Axis, Axis]) -> tuple[int, int, int, int]:
    ah, aw = axes
    return (ah.pb, ah.pa, aw.pb, aw.pa)


def _compact(p: tuple[int, int, int, int]) -> int | tuple[int, ...]:
    t, b, left, r = p
    if t == b and left == r:
        return t if t == left else (t, left)
    return p


def _fmt_pad(p: Any) -> str:
    return str(p) if isinstance(p, (int, str)) else "(" + ", ".join(map(str, p)) + ")"


def _rows(n: int, axis: int) -> str:
    word = ("row", "column")[axis]
    return f"{n} {word}{'s' if n != 1 else ''}"


def _delta(a: int, b: int) -> str:
    return f"{a:,} -> {b:,} ({b - a:+,})"


# --------------------------------------------------------------------------- the diagnosis


class _Ctx:
    """Everything one diagnosis needs, with a cache of analysis runs by input."""

    def __init__(self, net: Network, before: _Run, shape: Shape, requested: list[Edit]) -> None:
        """``net`` as given, ``before`` its run at the design input (with the requested rounding),
        ``requested`` the edits asked for (rounding, classes) that every fix starts from."""
        self.net, self.before, self.shape, self.requested = net, before, shape, requested
        self.target = _edited_net(net, requested)
        self.class_paths = {e.path for e in requested if e.op == "set" and "units" in e.value}
        self.design = net.input_shape
        self._cache: dict[Shape, _Run] = {}
        self.ref = self.run((shape[0], *self.design[1:]))
        self.after = self.run(shape)
        base = self.ref if self.ref.ok else self.before
        assert base.a is not None
        self.base = base
        self.base_params = base.totals["params"]
        self.head = _head(base.a)
        self.period = [max(ly.rf[i][1] for ly in base.a.layers) for i in (0, 1)]

    def run(self, shape: Shape) -> _Run:
        shape = tuple(shape)
        if shape not in self._cache:
            self._cache[shape] = _run(self.target, shape)
        return self._cache[shape]

    def probe(self, axis: int, n: int) -> _Run:
        """The target with axis ``axis`` at ``n`` and the other at its design size (which works:
        the two axes never interact, so this isolates one axis)."""
        size = list(self.design[1:])
        size[axis] = n
        return self.run((self.shape[0], *size))

    @property
    def new_drops(self) -> list[tuple[str, int, Axis]]:
        """Dropped pixels at the new input that the design input does not drop."""
        old = {(p, i) for p, i, _ in self.base.drops()}
        return [d for d in self.after.drops() if d[:2] not in old]

    def nearest(self, axis: int, up_only: bool = False, clean: bool = True) -> int | None:
        """The size nearest the input on ``axis`` where the network runs (and, if ``clean``, drops
        nothing); sizes repeat their behaviour with the total stride, so two periods suffice."""
        n = self.shape[1 + axis]
        limit = 2 * self.period[axis] + 2
        order = [n + d for d in range(limit + 1)] if up_only else \
            [m for d in range(limit + 1) for m in ((n + d, n - d) if d else (n,))]
        for m in order:
            if m >= 1:
                r = self.probe(axis, m)
                if r.ok and not (clean and r.drops(axis)):
                    return m
        return None

    def min_valid(self, axis: int) -> int | None:
        """The smallest size on ``axis`` that runs (validity grows with the size)."""
        hi = max(self.shape[1 + axis], self.design[1 + axis])  # the design size works
        if not self.probe(axis, hi).ok:
            return None
        lo = 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.probe(axis, mid).ok:
                hi = mid
            else:
                lo = mid + 1
        return lo


def _classes_edits(net: Network, a: Analysis, num_classes: int) -> list[Edit]:
    """Resize the classifier of the main path and of every auxiliary head."""
    groups: list[list[LayerStats]] = [[]]
    last_aux = False
    for ly in a.layers:
        if ly.aux != last_aux and ly.aux:
            groups.append([])
        last_aux = ly.aux
        (groups[-1] if ly.aux else groups[0]).append(ly)
    lv = leaves(net)
    edits = []
    for g in groups:
        outs = [ly.name for ly in g if ly.type in ("Dense", "RBF")]
        if outs and getattr(lv[outs[-1]], "units", num_classes) != num_classes:
            edits.append(Edit("set", outs[-1], {"units": num_classes}))
    if not any(ly.type in ("Dense", "RBF") for ly in groups[0]):
        raise CnnlabError(f"{net.name} has no dense output layer to resize to {num_classes} classes; "
                          "leave --num-classes out")
    return edits


def _rounding_edits(net: Network, rounding: str | None) -> list[Edit]:
    if rounding is None:
        return []
    if rounding not in ROUNDING:
        raise CnnlabError(f"rounding '{rounding}': use floor (PyTorch, TensorFlow) or ceil (Caffe)")
    want = rounding == "ceil"
    return [Edit("set", p, {"ceil_mode": want}) for p, ly in leaves(net).items()
            if type(ly) in POOLS and ly.ceil_mode != want]  # type: ignore[attr-defined]


def _rounding_name(net: Network) -> str:
    modes = {ly.ceil_mode for ly in leaves(net).values() if type(ly) in POOLS}  # type: ignore[attr-defined]
    if len(modes) > 1:
        return "mixed, as the model defines (convolutions always floor)"
    return ROUNDING["ceil" if modes == {True} else "floor"]


def _findings(c: _Ctx, num_classes: int | None, class_paths: set[str]) -> list[Finding]:
    out: list[Finding] = []
    bef = c.before.by_name()
    ref = c.ref.by_name()
    for p in sorted(class_paths):
        if p in ref:
            out.append(Finding(p, "classes", f"{bef[p].output_shape[0]:,} -> {num_classes:,} classes: params "
                                             f"{_delta(bef[p].params, ref[p].params)}"))
    if c.shape[0] != c.design[0]:
        if not c.ref.ok:
            out.append(Finding("", "channels", f"{c.design[0]} -> {c.shape[0]} input channels does not run: "
                                               f"{c.ref.error}"))
        for name, ly in ref.items():
            b = bef.get(name)
            if b and name not in class_paths and (b.params, b.macs) != (ly.params, ly.macs):
                out.append(Finding(name, "channels", f"{c.design[0]} -> {c.shape[0]} input channels: params "
                                                     f"{_delta(b.params, ly.params)}, MACs {_delta(b.macs, ly.macs)}"))
    if not c.after.ok:
        return out
    out += _geometry_findings(c)
    base = c.base.by_name()
    for name, ly in c.after.by_name().items():
        b = base.get(name)
        if b is None:
            continue
        if b.params != ly.params:
            out.append(Finding(name, "params", f"params {_delta(b.params, ly.params)}; MACs {_delta(b.macs, ly.macs)}"))
        elif b.macs != ly.macs:
            out.append(Finding(name, "macs", f"MACs {_delta(b.macs, ly.macs)}"))
    return out


def _geometry_findings(c: _Ctx) -> list[Finding]:
    """Dropped pixels, broken 'same' layers, rounding differences and the head, at the new input."""
    out: list[Finding] = []
    design_drops = {(p, i) for p, i, _ in c.base.drops()}
    keep_size = {p for p, _, (ah, aw) in c.base.windows if (ah.out, aw.out) == (ah.n, aw.n)}
    for path, layer, axes in c.after.windows:
        for i, ax in enumerate(axes):
            hw = "HW"[i]
            if ax.dropped:
                if ax.span < ax.s:
                    out.append(Finding(path, "skip", f"{hw}: {ax.expr()}; a {ax.span}-wide window with stride {ax.s} "
                                                     f"skips {('rows', 'columns')[i]} by design"))
                else:
                    when = "as at the design input" if (path, i) in design_drops else "exact at the design input"
                    lost = _rows(ax.dropped, i) + " are" if ax.dropped > 1 else ("row", "column")[i] + " is"
                    out.append(Finding(path, "inexact", f"{hw}: {ax.expr()}; the last {lost} never seen ({when})"))
            elif ax.ceil and not ax.exact:
                out.append(Finding(path, "ceil", f"{hw}: {ax.expr()}; the last window hangs over the edge"))
        ah, aw = axes
        if path in keep_size and (ah.out, aw.out) != (ah.n, aw.n):
            out.append(Finding(path, "same", f"kept H x W at the design input, now {ah.n}x{aw.n} -> {ah.out}x{aw.out}"))
        if type(layer) in POOLS:
            oh, ow = replace(layer, ceil_mode=not layer.ceil_mode).axes((1, ah.n, aw.n))  # type: ignore[attr-defined]
            if (oh.out, ow.out) != (ah.out, aw.out):
                fl, ce = ((oh.out, ow.out), (ah.out, aw.out)) if ah.ceil else ((ah.out, aw.out), (oh.out, ow.out))
                out.append(Finding(path, "rounding", f"floor (PyTorch, TensorFlow) gives {fl[0]}x{fl[1]}, "
                                                     f"ceil (Caffe) gives {ce[0]}x{ce[1]}"))
    out += _head_findings(c)
    return out


def _head_findings(c: _Ctx) -> list[Finding]:
    h = c.head
    if h is None or c.after.a is None:
        return []
    now = c.after.by_name()
    f0, f1 = h.flatten, now[h.flatten.name]
    out: list[Finding] = []
    if h.pool is not None:
        p1 = now[h.pool.name]
        (_, ih, iw), (_, oh, ow) = p1.input_shape, p1.output_shape
        if oh > ih or ow > iw:
            out.append(Finding(p1.name, "upsample", f"turns a {ih}x{iw} map into {oh}x{ow}: each value is repeated "
                                                    f"about {oh * ow // (ih * iw)} times, so the head keeps "
                                                    f"{sum(now[d].params for d in h.dense):,} parameters for "
                                                    f"{p1.input_shape[0] * ih * iw:,} distinct values"))
    if f0.input_shape != f1.input_shape:
        n0, n1 = f0.output_shape[0], f1.output_shape[0]
        first = h.dense[0] if h.dense else "the head"
        out.append(Finding(f1.name, "head", f"gets {fmt_shape(f1.input_shape)} = {n1:,} values instead of the designed "
                                            f"{fmt_shape(f0.input_shape)} = {n0:,}: {first} is resized and its "
                                            "designed weights no longer fit"))
    return out


# --------------------------------------------------------------------------- fixes

Candidate = tuple[str, str, list[str], list[Edit], Shape]  # name, description, changes, edits, input


def _resize_changes(c: _Ctx, size: tuple[int, int]) -> list[str]:
    how = [f"{'pad' if m > n else 'crop'} {_rows(abs(m - n), i)}"
           for i, (n, m) in enumerate(zip(c.shape[1:], size)) if m != n]
    return [f"input: {c.shape[1]}x{c.shape[2]} -> {size[0]}x{size[1]} ({', '.join(how)}; or resize)"]


def _fix_input_design(c: _Ctx) -> Candidate | None:
    size = c.design[1:]
    if tuple(size) == c.shape[1:]:
        return None
    (h, w), (hd, wd) = c.shape[1:], size
    note = f"; the aspect ratio changes from {w / h:.2f} to {wd / hd:.2f}" if abs(w / h - wd / hd) > 0.01 else ""
    return ("input-design", f"resize the input to {hd}x{wd}, the design size{note}",
            [f"input: resize {h}x{w} -> {hd}x{wd}"], [], (c.shape[0], hd, wd))


def _fix_input_clean(c: _Ctx, up_only: bool = False) -> Candidate | None:
    clean = True
    sizes = [c.nearest(i, up_only) for i in (0, 1)]
    if None in sizes and not c.after.ok:  # no clean size near: at least one that runs
        clean, sizes = False, [c.nearest(i, up_only, clean=False) for i in (0, 1)]
    if None in sizes or tuple(sizes) == c.shape[1:]:
        return None
    h, w = sizes  # type: ignore[misc]
    verb = "pad" if h >= c.shape[1] and w >= c.shape[2] else "crop" if h <= c.shape[1] and w <= c.shape[2] \
        else "crop/pad"
    what = "every layer divides exactly" if clean else "the network runs"
    return ("input-clean" if clean else "input-valid", f"{verb} the input to {h}x{w}, the nearest size {what}",
            _resize_changes(c, (h, w)), [], (c.shape[0], h, w))


def _fix_pad_first(c: _Ctx) -> Candidate | None:
    """The input is too small: pad it inside the network, in the first layer when it can."""
    sizes = [c.nearest(i, up_only=True) or c.min_valid(i) for i in (0, 1)]
    if None in sizes:
        return None
    eh, ew = (m - n for m, n in zip(sizes, c.shape[1:]))  # type: ignore[operator]
    first = c.target.layers[0]
    extra = (eh // 2, eh - eh // 2, ew // 2, ew - ew // 2)
    if type(first) in PADDABLE and first.padding not in ("same",):
        old = _pad4(first.axes(c.shape))
        new = _compact(tuple(a + b for a, b in zip(old, extra)))  # type: ignore[arg-type]
        return ("pad-first", f"pad the input inside '{first.name}' so it sees {sizes[0]}x{sizes[1]}",
                [f"{first.name}: padding {_fmt_pad(_compact(old))} -> {_fmt_pad(new)}"],
                [Edit("set", first.name, {"padding": new})], c.shape)
    names = set(leaves(c.target))
    name = next(n for n in ("pad_input", "pad_input_0", "pad_input_1") if n not in names)
    pad = _compact(extra)
    return ("pad-first", f"zero-pad the input inside the network to {sizes[0]}x{sizes[1]}",
            [f"insert {name}: ZeroPad {_fmt_pad(pad)}"], [Edit("prepend", value=ZeroPad(name=name, padding=pad))],
            c.shape)


def _fix_pad_layers(c: _Ctx) -> Candidate | None:
    """Give each layer that drops pixels the extra padding that makes its division exact."""
    net, done, changes, edits = c.target, set(), [], []
    for _ in range(len(c.after.windows) + 1):
        r = _run(net, c.shape)
        if not r.ok:
            return None
        dropping = {p for p, _, _ in r.drops()}
        todo = [(p, axes) for p, layer, axes in r.windows
                if p in dropping and p not in done and type(layer) in PADDABLE and layer.padding != "same"]
        if not todo:
            break
        path, axes = todo[0]
        old = _pad4(axes)
        new = list(old)
        for i, ax in enumerate(axes):
            if ax.dropped:
                e = ax.s - ax.remainder
                new[2 * i] += e // 2
                new[2 * i + 1] += e - e // 2
        pad = _compact(tuple(new))  # type: ignore[arg-type]
        edit = Edit("set", path, {"padding": pad})
        net = _apply_edit(net, edit)
        done.add(path)
        edits.append(edit)
        changes.append(f"{path}: padding {_fmt_pad(_compact(old))} -> {_fmt_pad(pad)} (top, bottom, left, right)")
    if not edits:
        return None
    return ("pad-layers", "pad the layers that drop pixels so every division is exact", changes, edits, c.shape)


def _fix_ceil(c: _Ctx) -> Candidate | None:
    pools = [p for p, ly, _ in c.after.windows if type(ly) in POOLS and not ly.ceil_mode]  # type: ignore[attr-defined]
    dropping = {p for p, _, _ in c.after.drops()}
    if not dropping.intersection(pools):
        return None
    return ("ceil-pools", "round pooling up (ceil mode, as Caffe) so each pool's last window covers the edge",
            [f"{p}: ceil_mode False -> True" for p in pools], [Edit("set", p, {"ceil_mode": True}) for p in pools],
            c.shape)


def _fix_adaptive(c: _Ctx, r: _Run) -> Candidate | None:
    """Pool the final map to the designed size, so the head keeps its designed input."""
    h = c.head
    if h is None or h.fixed or h.flatten.type != "Flatten" or not r.ok:
        return None
    now = r.by_name()[h.flatten.name].input_shape
    want = h.flatten.input_shape
    if now == want:
        return None
    names = set(leaves(c.target))
    prefix = h.flatten.name.rpartition(".")[0]
    name = next(n for n in ("avgpool", "adaptive_pool", "adaptive_pool_0")
                if (f"{prefix}.{n}" if prefix else n) not in names)
    layer = AdaptiveAvgPool(name=name, output=(want[1], want[2]))
    return ("adaptive-pool", f"insert adaptive average pooling to {want[1]}x{want[2]} before '{h.flatten.name}', "
                             f"so the head sees the designed {fmt_shape(want)} map",
            [f"insert {name}: AdaptiveAvgPool {now[1]}x{now[2]} -> {want[1]}x{want[2]}"],
            [Edit("insert", h.flatten.name, layer)], r.shape)


def _fix_global_pool(c: _Ctx) -> Candidate | None:
    """A fixed pooling window that is global only at the design input (GoogLeNet's 7x7, the CIFAR
    ResNets' 8x8) becomes global pooling at any input."""
    h = c.head
    if h is None or h.fixed or c.base.a is None:
        return None
    main = c.base.a.main
    i = main.index(h.flatten) - 1
    while i >= 0 and main[i].params == 0 and main[i].output_shape == main[i].input_shape:
        i -= 1
    p = main[i] if i >= 0 else None
    layer = leaves(c.target).get(p.name) if p else None
    if p is None or type(layer) not in POOLS or p.output_shape[1:] != (1, 1):
        return None
    new = AdaptiveAvgPool(name=layer.name, output=1) if type(layer) is AvgPool else \
        AdaptiveMaxPool(name=layer.name, output=1)
    kind = "average" if type(layer) is AvgPool else "max"
    (_, ih, iw) = p.input_shape
    return ("global-pool", f"make '{p.name}' global {kind} pooling: its fixed window covers the whole "
                           f"{ih}x{iw} map only at the design input",
            [f"{p.name}: {type(layer).__name__} {_fmt_pad(layer.kernel)} -> Adaptive{type(layer).__name__} 1x1"],
            [Edit("replace", p.name, new)], c.shape)


def _fix_head(c: _Ctx, r: _Run) -> Candidate | None:
    """Size the dense head to the map the run ``r`` gives (hidden layers no wider than their input)."""
    h = c.head
    if h is None or not r.ok or not h.dense:
        return None
    now = r.by_name()
    changes, edits = [], []
    flat = now[h.flatten.name]
    n = flat.output_shape[0]
    if h.pool is not None:
        p = now[h.pool.name]
        (ch, ih, iw), (_, oh, ow) = p.input_shape, p.output_shape
        if oh > ih or ow > iw:
            out = (min(oh, ih), min(ow, iw))
            changes.append(f"{p.name}: output {oh}x{ow} -> {out[0]}x{out[1]} (no repeated values)")
            edits.append(Edit("set", p.name, {"output": out}))
            n = ch * out[0] * out[1]
    lv = leaves(c.target)
    width = n
    for d in h.dense[:-1]:
        units = lv[d].units  # type: ignore[attr-defined]
        if units > width and type(lv[d]).__name__ == "Dense":
            changes.append(f"{d}: {units:,} -> {width:,} units (no wider than its {width:,} inputs)")
            edits.append(Edit("set", d, {"units": width}))
            units = width
        width = units
    f0 = h.flatten.output_shape[0]
    if not edits:
        if n == f0:
            return None
        first = h.dense[0]
        return ("head", f"keep every layer and retrain the head at the new flatten size: '{first}' takes {n:,} "
                        f"inputs ({fmt_shape(flat.input_shape)}) instead of {f0:,}",
                [f"{first}: {f0:,} -> {n:,} inputs (new weights)"], [], r.shape)
    return ("head", f"resize the dense head to the {n:,}-value flatten (hidden layers no wider than their input)",
            changes, edits, r.shape)


def _fix_channels(c: _Ctx) -> Candidate | None:
    cd, cn = c.design[0], c.shape[0]
    if cd == cn:
        return None
    how = ("repeat the single channel" if cn == 1 else "convert to luminance" if cd == 1
           else f"map the {cn} channels")
    return ("match-channels", f"feed {cd} channels ({how}) so the first layer keeps its designed weights",
            [f"input: {cn} -> {cd} channels ({how})"], [], (cd, *c.shape[1:]))


def _size_problem(c: _Ctx, findings: list[Finding]) -> bool:
    return not c.after.ok or bool(c.new_drops) or any(f.kind in ("same", "head", "upsample") for f in findings)


def _then(g: Candidate, a: Candidate) -> Candidate:
    return (f"{g[0]}+{a[0]}", f"{g[1]}; then {a[1]}", g[2] + a[2], g[3] + a[3], a[4])


def _candidates(c: _Ctx, findings: list[Finding]) -> list[Candidate]:
    channels = _fix_channels(c)
    if not _size_problem(c, findings):
        return [channels] if channels else []
    out: list[Candidate | None]
    if not c.after.ok:
        small = bool(re.search(r"< 1\b", c.after.error or ""))
        geometry = [_fix_pad_first(c) if small else None, _fix_input_clean(c, up_only=small)]
        out = [*geometry, _fix_input_design(c), _fix_global_pool(c)]
    else:
        geometry = [_fix_pad_layers(c), _fix_input_clean(c), _fix_ceil(c)]
        out = [*geometry, _fix_input_design(c), _fix_global_pool(c), _fix_adaptive(c, c.after), _fix_head(c, c.after)]
    for g in geometry:
        if g is None:
            continue
        r = _run(_edited(c, g[3] + [Edit("input", value=g[4])]), g[4])
        # a geometry that drops nothing, plus the designed head: designed weights too
        a = _fix_adaptive(c, r) if not r.drops() or g[0] == "input-valid" else None
        # a geometry whose map is smaller than the head's pooled map: a head sized to it repeats nothing
        h = _fix_head(c, r) if _repeats(r) else None
        out += [_then(g, x) for x in (a, h) if x and x[3]]
    size = [x for x in out if x]
    if channels is None:
        return size
    # the designed first layer at the new size: kept only where it keeps every designed weight (see _rank)
    both = [(f"{channels[0]}+{x[0]}", f"{channels[1]}; {x[1]}", channels[2] + x[2], x[3], (channels[4][0], *x[4][1:]))
            for x in size]
    return [channels, *size, *both]


def _edited_net(net: Network, edits: Iterable[Edit]) -> Network:
    for e in edits:
        net = _apply_edit(net, e)
    return net


def _edited(c: _Ctx, edits: Iterable[Edit]) -> Network:
    return _edited_net(c.net, [*c.requested, *edits])


def _price(c: _Ctx, cand: Candidate) -> tuple[tuple[Any, ...], Fix] | None:
    name, desc, changes, own, shape = cand
    edits = (*c.requested, *own, Edit("input", value=shape))
    net = _edited(c, [*own, Edit("input", value=shape)])
    r = _run(net, shape)
    if not r.ok:
        return None
    assert r.a is not None
    remaining = [f"{p}: {'HW'[i]} drops {_rows(ax.dropped, i)}" for p, i, ax in r.drops()]
    repeats = _repeats(r)
    if repeats:
        remaining.append(repeats)
    area = shape[1] * shape[2] / (c.shape[1] * c.shape[2])
    if area > UPSAMPLE_AREA:
        remaining.append(f"input: upsampled {area:.1f}x in area")
    enlarges = area > UPSAMPLE_AREA or bool(repeats)
    params, macs = r.totals["params"], r.totals["macs"]
    design = c.before.by_name()
    new = tuple(ly.name for ly in r.a.layers if ly.params and (ly.name not in design or
                                                               design[ly.name].params != ly.params))
    keeps = not set(new) - c.class_paths
    if remaining:
        desc += f" (leaves {', '.join(remaining)})"
    distortion = sum(abs(m - n) / n for m, n in zip(shape[1:], c.shape[1:]))
    key = (len(r.drops()), enlarges, not keeps, round(abs(params - c.base_params) / max(c.base_params, 1), 6),
           round(distortion, 6), len(changes), macs)
    return key, Fix(0, name, desc, tuple(changes), tuple(shape), params, macs, tuple(remaining), keeps, edits, new)


def _repeats(r: _Run) -> str | None:
    """The adaptive pool before the head, where it enlarges the map it gets (each value repeated)."""
    head = _head(r.a) if r.a else None
    if head is None or head.pool is None:
        return None
    (_, ih, iw), (_, oh, ow) = head.pool.input_shape, head.pool.output_shape
    return f"{head.pool.name}: repeats a {ih}x{iw} map as {oh}x{ow}" if oh > ih or ow > iw else None


def _rank(c: _Ctx, cands: list[Candidate]) -> list[Fix]:
    priced = [p for p in (_price(c, x) for x in cands) if p]
    priced.sort(key=lambda kf: kf[0])
    seen: set[str] = set()
    fixes: list[Fix] = []
    for _, f in priced:
        if "+" in f.name and f.name.startswith("match-channels") and not f.keeps_weights:
            continue  # the channel change in a fix that retrains anyway: the same fix without it is listed
        sig = json.dumps([list(f.input), network_to_spec(_edited(c, f.edits))["layers"]], default=str)
        if sig not in seen:
            seen.add(sig)
            fixes.append(replace(f, id=len(fixes) + 1))
    return fixes


# --------------------------------------------------------------------------- entry points


def _check_shape(shape: Any) -> Shape:
    s = tuple(shape)
    if len(s) != 3 or not all(isinstance(v, int) and v >= 1 for v in s):
        raise CnnlabError(f"input {s}: give C x H x W as three integers >= 1, e.g. (3, 270, 480)")
    return s


def _short(msg: str) -> str:
    return re.split(r"; use a larger input", msg)[0]


def diagnose(net: Network, shape: Shape, *, num_classes: int | None = None, rounding: str | None = None) -> Report:
    """Compare ``net`` at its design input with ``net`` at ``shape`` (C, H, W; a different C is a
    channel change), with the classifier resized to ``num_classes`` and pooling rounded ``floor`` or
    ``ceil`` (None: as the model defines). Fixes come ranked: runs, drops no pixels, invents no
    pixels, keeps every designed weight (the class layer aside), stays nearest the designed parameter count,
    changes the input least, changes fewest layers, fewest MACs."""
    shape = _check_shape(shape)
    if num_classes is not None and num_classes < 1:
        raise CnnlabError(f"num_classes must be >= 1, got {num_classes}")
    rounding_edits = _rounding_edits(net, rounding)
    before = _run(_edited_net(net, rounding_edits), net.input_shape)
    if before.a is None:
        raise CnnlabError(f"{net.name} does not run at its own design input: {before.error}")
    class_edits = _classes_edits(net, before.a, num_classes) if num_classes is not None else []
    c = _Ctx(net, before, shape, [*rounding_edits, *class_edits])
    findings = _findings(c, num_classes, {e.path for e in class_edits})
    error = min_input = min_any = None
    if not c.after.ok:
        small = bool(re.search(r"< 1\b", c.after.error or ""))
        mins = [c.min_valid(i) for i in (0, 1)] if small else [None, None]
        if None not in mins and any(m > n for m, n in zip(mins, shape[1:])):
            min_input, min_any, least = _smallest(c, mins)  # type: ignore[arg-type]
            error = (f"{net.name} cannot take {fmt_shape(shape)}: {_short(c.after.error or '')}; the smallest input "
                     f"that works is {fmt_shape(min_input)}{least}")
            findings.append(Finding(_failing_layer(c.after.error) or "", "too-small", error))
        else:
            error = f"{net.name} cannot take {fmt_shape(shape)}: {c.after.error}"
            findings.append(Finding("", "error", error))
    fixes = _rank(c, _candidates(c, findings))
    other = _other_rounding(c)
    return Report(
        model=net.name, design_input=net.input_shape, input=shape, rounding=_rounding_name(c.target),
        findings=findings, before=c.before.totals, after=c.after.totals if c.after.ok else None, fixes=fixes,
        layers=_layer_rows(c), verdict=_verdict(c, findings, fixes, error), error=error, min_input=min_input,
        min_input_any=min_any,
        other_rounding=other,
    )


def _smallest(c: _Ctx, mins: list[int]) -> tuple[Shape, Shape, str]:
    """The smallest input that works with the least change to the given one (an axis that is long
    enough keeps its size), the smallest of all, and a note naming the raised axes."""
    ch, sizes = c.shape[0], c.shape[1:]
    least = (ch, *(max(m, n) for m, n in zip(mins, sizes)))
    anywhere = (ch, *mins)
    if least == anywhere or not c.run(least).ok:  # the axes never interact, so the second cannot happen
        return anywhere, anywhere, ""
    raised = [f"{('height', 'width')[i]} {n} -> {m}" for i, (m, n) in enumerate(zip(mins, sizes)) if m > n]
    return least, anywhere, f" ({', '.join(raised)}; the smallest of all is {fmt_shape(anywhere)})"


def _other_rounding(c: _Ctx) -> dict[str, Any] | None:
    pools = [p for p, ly in leaves(c.target).items() if type(ly) in POOLS]
    if not pools:
        return None
    ceil = {ly.ceil_mode for p, ly in leaves(c.target).items() if p in pools}  # type: ignore[attr-defined]
    if len(ceil) > 1:
        return None
    mode = "floor" if ceil == {True} else "ceil"
    net = c.target
    for p in pools:
        net = _apply_edit(net, Edit("set", p, {"ceil_mode": mode == "ceil"}))
    r = _run(net, c.shape)
    if r.ok and c.after.ok and r.totals == c.after.totals:
        return None
    d: dict[str, Any] = {"mode": ROUNDING[mode]}
    if r.ok:
        d |= r.totals
        d["output_before_head"] = list(_head(r.a).flatten.input_shape) if r.a and _head(r.a) else None
    else:
        d["error"] = _short(r.error or "")
    return d


def _layer_rows(c: _Ctx) -> list[dict[str, Any]]:
    """Both inputs side by side; when the new input fails, the layers before the failing one
    (``fails``) still show their real figures and the layers after it show none."""
    now = c.after.by_name() if c.after.ok else {ly.name: ly for ly in analyze_until_failure(c.target, c.shape)}
    failing = None if c.after.ok else _failing_layer(c.after.error)
    rows = []
    for ly in c.before.a.layers if c.before.a else []:
        n = now.get(ly.name)
        rows.append({"layer": ly.name, "type": ly.type, "design_shape": list(ly.output_shape),
                     "shape": list(n.output_shape) if n else None, "design_params": ly.params,
                     "params": n.params if n else None, "design_macs": ly.macs, "macs": n.macs if n else None,
                     "fails": ly.name == failing})
    return rows


def _verdict(c: _Ctx, findings: list[Finding], fixes: list[Fix], error: str | None) -> str:
    if error:
        best = f"; fix {fixes[0].id} ({fixes[0].name}): {fixes[0].description}" if fixes else ""
        return error + best
    kinds = {f.kind for f in findings}
    if not _size_problem(c, findings):
        h = c.head
        if h and h.fixed and c.shape[1:] != c.design[1:]:
            why = (f"'{(h.pool or h.flatten).name}' pools any map to the {h.flatten.output_shape[0]:,} values "
                   "the head expects, and no layer drops input pixels")
        elif c.shape[1:] == c.design[1:]:
            why = "the input has the design size"
        else:
            why = "every division is exact and the head keeps its designed size"
        channels = next((f for f in fixes if f.name == "match-channels"), None)
        changes = "".join(f"; {x}" for x in _requested_changes(c, findings))
        if channels is None:
            return f"no fix needed: {why}{changes}"
        but = f" except {', '.join(channels.new_weights)}" if channels.new_weights else ""
        return (f"the size needs no fix: {why}{changes}; fix {channels.id} (match-channels) feeds {c.design[0]} "
                f"channels and keeps the designed weights{but} ({channels.params:,} params)")
    problems = []
    if c.new_drops:
        problems.append(f"{len(c.new_drops)} divisions drop input pixels")
    if "head" in kinds or "upsample" in kinds:
        note = ""
        if c.base_params != c.before.totals["params"]:
            note = f" with {_requested_words(c)}; the published model has {c.before.totals['params']:,}"
        problems.append(f"the head's input changes ({c.base_params:,} -> {c.after.totals['params']:,} params{note})"
                        if "head" in kinds else "the final map is upsampled to fit the head")
    if "same" in kinds:
        problems.append("'same' layers no longer keep the size")
    best = f"; best fix {fixes[0].id} ({fixes[0].name}): {fixes[0].description}" if fixes else ""
    return "needs a fix: " + ", ".join(problems) + best


def _requested_words(c: _Ctx) -> str:
    """The channel and class changes asked for, in words: '1 input channel and 29 classes'."""
    words = []
    if c.shape[0] != c.design[0]:
        words.append(f"{c.shape[0]} input channel{'s' if c.shape[0] != 1 else ''}")
    units = {e.value["units"] for e in c.requested if e.op == "set" and "units" in e.value}
    words += [f"{n:,} classes" for n in units]
    return " and ".join(words)


def _requested_changes(c: _Ctx, findings: list[Finding]) -> list[str]:
    """What the channel and class changes cost at the design size: the layers that need new weights."""
    bef, ref = c.before.by_name(), c.ref.by_name()
    out = []
    for kind, what in (("channels", f"{c.design[0]} -> {c.shape[0]} input channels"), ("classes", "the class change")):
        names = [f.layer for f in findings if f.kind == kind and f.layer in ref]
        if names:
            p0, p1 = sum(bef[n].params for n in names), sum(ref[n].params for n in names)
            out.append(f"{what} give{'s' if kind == 'classes' else ''} {', '.join(names)} new weights: "
                       f"params {_delta(p0, p1)}")
    return out


def train_step(net: Network, shape: Shape | None = None, *, batch: int = 2, seed: int = 0) -> tuple[float, float]:
    """Build ``net`` for training and take one SGD step on random data at ``shape`` (default: its
    input): the proof that an adapted network trains. Returns (loss, total absolute weight change)."""
    import torch
    import torch.nn.functional as F

    from .torch_backend import build

    torch.manual_seed(seed)
    shape = tuple(shape or net.input_shape)
    model = build(net, shape, logits=True).train()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    out = model(torch.randn(batch, *shape))
    outs = out if isinstance(out, tuple) else (out,)
    loss = torch.zeros(())
    for i, y in enumerate(outs):
        if y.shape[1] == 1:
            part = F.binary_cross_entropy_with_logits(y[:, 0], torch.randint(0, 2, (batch,)).float())
        else:
            part = F.cross_entropy(y, torch.randint(0, y.shape[1], (batch,)))
        loss = loss + (part if i == 0 else 0.3 * part)
    opt.zero_grad()
    loss.backward()
    opt.step()
    moved = sum(float((p.detach() - b).abs().sum()) for p, b in zip(model.parameters(), before))
    return float(loss.detach()), moved
