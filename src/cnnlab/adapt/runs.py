"""The network run at one input, and one diagnosis's context: its runs cached by input."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..analysis import Analysis, LayerStats, analyze
from ..errors import ShapeError
from ..layers import RBF, AdaptiveAvgPool, AdaptiveMaxPool, Axis, Dense, GlobalAvgPool, Layer, Shape
from ..network import Network
from .edits import edited_net
from .results import Edit

ADAPTIVE = (AdaptiveAvgPool, AdaptiveMaxPool)
CLASSIFIERS = (Dense, RBF)  # the layers that can be a classifier


@dataclass
class Run:
    """The network at one input: its analysis (or why it cannot run) and the window axes of every layer."""

    shape: Shape
    a: Analysis | None
    failure: ShapeError | None
    windows: list[tuple[str, Layer, tuple[Axis, Axis]]]

    @property
    def ok(self) -> bool:
        return self.a is not None

    @property
    def error(self) -> str | None:
        return str(self.failure) if self.failure is not None else None

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


def run_at(net: Network, shape: Shape) -> Run:
    try:
        a = analyze(net, shape)
    except ShapeError as e:
        return Run(tuple(shape), None, e, [])
    wins = [(ly.name, ly.layer, ly.axes) for ly in a.layers if ly.axes is not None and ly.layer is not None]
    return Run(tuple(shape), a, None, wins)


@dataclass
class Head:
    """Where the map becomes a vector, and the adaptive pool right before it (if any)."""

    flatten: LayerStats
    pool: LayerStats | None
    dense: list[str]  # dense layers after it, in order; the last is the classifier

    @property
    def fixed(self) -> bool:  # the head's input does not depend on the input size
        return type(self.flatten.layer) is GlobalAvgPool or self.pool is not None


def find_head(a: Analysis) -> Head | None:
    main = a.main
    for i, ly in enumerate(main):
        if len(ly.input_shape) == 3 and len(ly.output_shape) == 1:
            j = i - 1
            while j >= 0 and type(main[j].layer) not in ADAPTIVE and main[j].params == 0 and \
                    main[j].output_shape == main[j].input_shape:
                j -= 1
            pool = main[j] if j >= 0 and type(main[j].layer) in ADAPTIVE else None
            return Head(ly, pool, [m.name for m in main[i + 1:] if type(m.layer) in CLASSIFIERS])
    return None


def pad4(axes: tuple[Axis, Axis]) -> tuple[int, int, int, int]:
    ah, aw = axes
    return (ah.pb, ah.pa, aw.pb, aw.pa)


def compact_pad(p: tuple[int, int, int, int]) -> int | tuple[int, ...]:
    t, b, left, r = p
    if t == b and left == r:
        return t if t == left else (t, left)
    return p


def fmt_pad(p: Any) -> str:
    return str(p) if isinstance(p, (int, str)) else "(" + ", ".join(map(str, p)) + ")"


def n_rows(n: int, axis: int) -> str:
    word = ("row", "column")[axis]
    return f"{n} {word}{'s' if n != 1 else ''}"


def delta(a: int, b: int) -> str:
    return f"{a:,} -> {b:,} ({b - a:+,})"


class Context:
    """Everything one diagnosis needs, with a cache of analysis runs by input."""

    def __init__(self, net: Network, before: Run, shape: Shape, requested: list[Edit]) -> None:
        """``net`` as given, ``before`` its run at the design input (with the requested rounding),
        ``requested`` the edits asked for (rounding, classes) that every fix starts from."""
        self.net, self.before, self.shape, self.requested = net, before, shape, requested
        self.target = edited_net(net, requested)
        self.class_paths = {e.path for e in requested if e.op == "set" and "units" in e.value}
        self.design = net.input_shape
        self._cache: dict[Shape, Run] = {}
        self.ref = self.run((shape[0], *self.design[1:]))
        self.after = self.run(shape)
        base = self.ref if self.ref.ok else self.before
        assert base.a is not None
        self.base = base
        self.base_params = base.totals["params"]
        self.head = find_head(base.a)
        self.period = [max(ly.rf[i][1] for ly in base.a.layers) for i in (0, 1)]

    def run(self, shape: Shape) -> Run:
        shape = tuple(shape)
        if shape not in self._cache:
            self._cache[shape] = run_at(self.target, shape)
        return self._cache[shape]

    def probe(self, axis: int, n: int) -> Run:
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



def edited(c: Context, edits: Iterable[Edit]) -> Network:
    return edited_net(c.net, [*c.requested, *edits])


def repeated_map(r: Run) -> str | None:
    """The adaptive pool before the head, where it enlarges the map it gets (each value repeated)."""
    head = find_head(r.a) if r.a else None
    if head is None or head.pool is None:
        return None
    (_, ih, iw), (_, oh, ow) = head.pool.input_shape, head.pool.output_shape
    return f"{head.pool.name}: repeats a {ih}x{iw} map as {oh}x{ow}" if oh > ih or ow > iw else None
