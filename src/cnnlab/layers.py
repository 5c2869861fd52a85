"""Layer types: each owns its arithmetic (shape, parameters, MACs, connections, receptive field)
and knows how to build its PyTorch module.

Pure Python: torch is imported only inside ``build``, so analysis never loads it.
Shapes are channels-first: ``(C, H, W)`` for feature maps, ``(N,)`` for vectors.
"""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import ShapeError

Shape = tuple[int, ...]
Pair = tuple[int, int]
# Per spatial axis: (effective kernel, stride, padding before). None: the layer keeps the geometry.
RFStep = tuple[tuple[int, int, int], tuple[int, int, int]]


def pair(v: int | tuple[int, int] | list[int]) -> Pair:
    if type(v) is int:  # the common case first: analysis calls this for every window
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return (v[0], v[1])
    raise ShapeError(f"{v!r} is not a size: give an int or a pair [h, w] of ints")


def fmt_shape(s: Shape) -> str:
    return "x".join(str(d) for d in s)


def scores(s: Shape) -> Shape:
    """A network's output as class scores: a C x 1 x 1 map (a classifier made of a 1x1 conv and global
    pooling, as SqueezeNet's) is C scores; any other shape is itself."""
    return s[:1] if len(s) == 3 and s[1:] == (1, 1) else s


_AxisFields = namedtuple("_AxisFields", "n k s pb pa d ceil span numerator out remainder")


class Axis(_AxisFields):
    """One spatial axis through a sliding window: the seeds' ``(n + 2p - f)/s + 1``, done exactly.

    ``Axis(n, k, s, pb, pa, d=1, ceil=False)``: input size, kernel, stride, padding before and
    after, dilation, rounding. An immutable tuple whose derived values (``span``, the effective
    kernel extent; ``numerator``; ``out``; ``remainder``) are worked out once, on construction:
    the analysis reads them for every window of every layer, and a tuple is several times
    cheaper to make than a frozen dataclass."""

    __slots__ = ()

    def __new__(cls, n: int, k: int, s: int, pb: int, pa: int, d: int = 1, ceil: bool = False) -> Axis:
        span = d * (k - 1) + 1
        q = n + pb + pa - span
        if ceil:  # a partial last window counts (Caffe); it must start inside the input or left padding
            o = -(-q // s) + 1
            if (o - 1) * s >= n + pb:
                o -= 1
            out = max(o, 0)
        else:
            out = q // s + 1 if q >= 0 else 0
        return tuple.__new__(cls, (n, k, s, pb, pa, d, ceil, span, q, out, q % s if q >= 0 else 0))

    @property
    def exact(self) -> bool:
        return self.remainder == 0

    @property
    def dropped(self) -> int:
        """Input rows/columns never covered by any window (floor mode), not counting padding."""
        if self.ceil or self.numerator < 0:
            return 0
        return max(0, self.remainder - self.pa)

    def expr(self) -> str:
        pad = f"2*{self.pb}" if self.pb == self.pa else f"{self.pb} + {self.pa}"
        kern = str(self.k) if self.d == 1 else f"({self.d}*({self.k} - 1) + 1)"
        head = f"({self.n} + {pad} - {kern})/{self.s} + 1"
        q = self.numerator
        exact = q / self.s + 1
        if self.out < 1:
            return f"{head} = {exact:g} < 1"
        if q >= 0 and self.exact:
            return f"{head} = {self.out}"
        mode = "ceil" if self.ceil else "floor"
        return f"{head} = {exact:g} -> {self.out} ({mode})"


Explain = Callable[[], list[str]]


@dataclass(slots=True)
class LayerFigures:
    """What a layer does to the shape that reaches it. ``explain`` writes the arithmetic out as
    text; it runs only when someone reads ``notes`` (--explain, ``cnnlab calc``), so an analysis
    that only counts formats no strings."""

    out: Shape
    params: int = 0
    buffers: int = 0
    macs: int = 0
    connections: int = 0
    rf: RFStep | None = None
    explain: Explain | None = field(default=None, repr=False, compare=False)
    findings: tuple[tuple[str, str], ...] = ()  # (kind, detail)
    axes: tuple[Axis, Axis] | None = None  # a sliding window's geometry, per spatial axis

    @property
    def notes(self) -> list[str]:
        return self.explain() if self.explain is not None else []


def _then(first: Explain | None, more: Explain) -> Explain:
    """Notes of ``first`` followed by those of ``more``."""
    return lambda: (first() if first is not None else []) + more()


def _need_map(layer: Layer, s: Shape) -> tuple[int, int, int]:
    if len(s) != 3:
        raise ShapeError(
            f"layer '{layer.name}' ({type(layer).__name__}) needs a CxHxW feature map but gets "
            f"{fmt_shape(s)}: move it before the Flatten"
        )
    return s  # type: ignore[return-value]


def _need_vector(layer: Layer, s: Shape) -> int:
    if len(s) != 1:
        raise ShapeError(
            f"layer '{layer.name}' ({type(layer).__name__}) needs a vector but gets {fmt_shape(s)}: "
            "add a Flatten (or global pooling) before it"
        )
    return s[0]


def resolve_padding(padding: Any, n: Pair, k: Pair, s: Pair, d: Pair) -> tuple[Pair, Pair]:
    """Padding as ((top, bottom), (left, right)). ``same`` follows TensorFlow: out = ceil(n/s),
    any odd pixel of padding goes after (bottom/right)."""
    if type(padding) is int:
        return (padding, padding), (padding, padding)
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        res = []
        for ni, ki, si, di in zip(n, k, s, d):
            out = -(-ni // si)
            total = max((out - 1) * si + di * (ki - 1) + 1 - ni, 0)
            res.append((total // 2, total - total // 2))
        return res[0], res[1]
    if isinstance(padding, (tuple, list)) and all(isinstance(x, int) and not isinstance(x, bool) for x in padding):
        p = tuple(padding)
        if len(p) == 2:
            return (p[0], p[0]), (p[1], p[1])
        if len(p) == 4:
            return (p[0], p[1]), (p[2], p[3])
    raise ShapeError(f"padding {padding!r}: use an int, [h, w], [top, bottom, left, right], 'same' or 'valid'")


def _check_positive(layer: Layer, what: str, v: Pair) -> None:
    if min(v) < 1:
        raise ShapeError(f"layer '{layer.name}': {what} must be >= 1, got {v[0]}x{v[1]}")


@dataclass(frozen=True, kw_only=True)
class Layer:
    """Base of all leaf layers. ``kind`` sorts layers into the conv-vs-dense split. ``shares`` names
    (by its path) an earlier layer of the same type and configuration whose module this one calls
    again: one set of weights used twice (a shared conv on two branches, a block applied in a loop),
    so its parameters are counted there, once."""

    name: str = ""
    shares: str = ""
    kind: ClassVar[str] = "other"

    def figures(self, s: Shape) -> LayerFigures:
        return LayerFigures(out=s)

    def build(self, s: Shape) -> Any:  # torch.nn.Module
        raise NotImplementedError(f"{type(self).__name__} has no PyTorch builder")

    def with_name(self, name: str) -> Layer:
        from dataclasses import replace

        return replace(self, name=name)


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True, kw_only=True)
class Window(Layer):
    """Layers that slide a window: kernel, stride, padding, dilation and rounding."""

    kernel: int | tuple[int, int] = 1
    stride: int | tuple[int, int] | None = None
    padding: Any = 0
    dilation: int | tuple[int, int] = 1
    ceil_mode: bool = False

    def axes(self, s: Shape) -> tuple[Axis, Axis]:
        c, h, w = _need_map(self, s)
        k1, s1, d1, p1 = self.kernel, self.stride, self.dilation, self.padding
        if s1 is None:
            s1 = k1
        if type(k1) is int and type(s1) is int and type(d1) is int and type(p1) is int and p1 >= 0 \
                and k1 >= 1 and s1 >= 1 and d1 >= 1:  # square and valid, as in most networks: no pairs to unpack
            return Axis(h, k1, s1, p1, p1, d1, self.ceil_mode), Axis(w, k1, s1, p1, p1, d1, self.ceil_mode)
        k, d = pair(self.kernel), pair(self.dilation)
        st = pair(self.stride) if self.stride is not None else k
        if min(k[0], k[1], st[0], st[1], d[0], d[1]) < 1:
            _check_positive(self, "kernel", k)
            _check_positive(self, "stride", st)
            _check_positive(self, "dilation", d)
        ph, pw = resolve_padding(self.padding, (h, w), k, st, d)
        if min(ph[0], ph[1], pw[0], pw[1]) < 0:
            raise ShapeError(f"layer '{self.name}': padding must be >= 0")
        return (Axis(h, k[0], st[0], ph[0], ph[1], d[0], self.ceil_mode),
                Axis(w, k[1], st[1], pw[0], pw[1], d[1], self.ceil_mode))

    def geometry(self, s: Shape, channels: int) -> LayerFigures:
        ah, aw = self.axes(s)
        _, _, sh, pbh, _, _, _, span_h, _, oh, rem_h = ah  # one unpacking: cheaper than ten attribute reads
        _, _, sw, pbw, _, _, _, span_w, _, ow, rem_w = aw
        if oh < 1 or ow < 1:
            for i, (ax, dim) in enumerate(((ah, "height"), (aw, "width"))):
                if ax.out < 1:
                    hint = "use a larger input or less downsampling before it"
                    raise ShapeError(
                        f"layer '{self.name}': output {dim} {ax.expr()}: the {fmt_shape(s)} input is too small "
                        f"for a {ax.span}-wide window; {hint}", layer=self.name, axis=i, reason="too-small", hint=hint,
                    )
        fig = LayerFigures((channels, oh, ow), rf=((span_h, sh, pbh), (span_w, sw, pbw)),
                           explain=lambda: [f"H: {ah.expr()}", f"W: {aw.expr()}"], axes=(ah, aw))
        if rem_h or rem_w:  # every finding below is an inexact division
            fig.findings = self._findings(ah, aw)
        return fig

    @staticmethod
    def _findings(ah: Axis, aw: Axis) -> tuple[tuple[str, str], ...]:
        found = []
        for ax, rows in ((ah, "rows"), (aw, "columns")):
            if ax.dropped:
                what = f"{ax.dropped} input {rows} are" if ax.dropped > 1 else f"input {rows[:-1]} is"
                found.append(
                    ("inexact", f"{'H' if rows == 'rows' else 'W'}: {ax.expr()}; the last {what} never seen")
                )
            elif not ax.exact and ax.ceil:
                found.append(("ceil", f"{'H' if rows == 'rows' else 'W'}: {ax.expr()}; the last window "
                              "hangs over the edge"))
            elif not ax.exact and ax.numerator >= 0:
                found.append(("padding", f"{'H' if rows == 'rows' else 'W'}: {ax.expr()}; the last "
                              + (f"{ax.remainder} padding {rows} are" if ax.remainder > 1 else f"padding {rows[:-1]} is")
                              + " never read (no input is lost)"))
        return tuple(found)

    def check_pool_padding(self, s: Shape) -> None:
        """A pooling window must overlap the input: no side padded by more than half the window."""
        for ax, dim in zip(self.axes(s), ("height", "width")):
            if max(ax.pb, ax.pa) > ax.span // 2:
                raise ShapeError(
                    f"layer '{self.name}': {dim} padding {max(ax.pb, ax.pa)} is more than half the {ax.span}-wide "
                    f"window, so some windows would read only padding; use padding <= {ax.span // 2}"
                )

    def pad4(self, s: Shape) -> Any:
        """Padding in F.pad order (left, right, top, bottom), or 'same' to compute per input."""
        if self.padding == "same":
            return "same"
        ah, aw = self.axes(s)
        return (aw.pb, aw.pa, ah.pb, ah.pa)

    def torch_padding(self, s: Shape) -> tuple[Any, Any]:
        """(symmetric padding for the torch op, extra asymmetric F.pad or None)."""
        ah, aw = self.axes(s)
        same = self.padding == "same"
        if ah.pb == ah.pa and aw.pb == aw.pa and not (same and (ah.s, aw.s) != (1, 1)):
            return (ah.pb, aw.pb), None
        # TensorFlow 'same' with stride > 1 depends on the input size: computed per forward pass.
        return (0, 0), "same" if same else (aw.pb, aw.pa, ah.pb, ah.pa)


@dataclass(frozen=True, kw_only=True)
class Conv(Window):
    """2-D convolution. ``padding`` may be an int, a pair, four sides, 'same' or 'valid'."""

    filters: int
    kernel: int | tuple[int, int] = 3
    stride: int | tuple[int, int] | None = 1
    groups: int = 1
    bias: bool = True
    kind: ClassVar[str] = "conv"

    def _fan_in(self, c: int) -> int:
        k = pair(self.kernel)
        return k[0] * k[1] * (c // self.groups)

    def figures(self, s: Shape) -> LayerFigures:
        c = _need_map(self, s)[0]
        if self.filters < 1 or self.groups < 1 or c % self.groups or self.filters % self.groups:
            raise ShapeError(
                f"layer '{self.name}': {c} input channels and {self.filters} filters must both divide "
                f"into {self.groups} groups"
            )
        fig = self.geometry(s, self.filters)
        _, oh, ow = fig.out
        fan_in = self._fan_in(c)
        params = fig.params = fan_in * self.filters + (self.filters if self.bias else 0)
        macs = fig.macs = fan_in * self.filters * oh * ow
        conns = fig.connections = (fan_in + 1) * self.filters * oh * ow

        def notes() -> list[str]:
            k = pair(self.kernel)
            grp = f"{c}/{self.groups}" if self.groups > 1 else str(c)
            b = " + 1" if self.bias else ""
            return [f"params: ({k[0]}*{k[1]}*{grp}{b}) * {self.filters} = {params:,}",
                    f"MACs: {k[0]}*{k[1]}*{grp} * {self.filters} * {oh}*{ow} = {macs:,}",
                    f"connections: ({k[0]}*{k[1]}*{grp} + 1) * {self.filters} * {oh}*{ow} = {conns:,}"]

        fig.explain = _then(fig.explain, notes)
        return fig

    def build(self, s: Shape) -> Any:
        from . import torch_backend as tb

        sym, extra = self.torch_padding(s)
        return tb.conv2d(s[0], self.filters, pair(self.kernel), pair(self.stride or self.kernel), sym, pair(self.dilation),
                         self.groups, self.bias, extra)


@dataclass(frozen=True, kw_only=True)
class PartialConv(Conv):
    """Convolution where output map j sees only the input maps ``table[j]`` (LeNet-5's C3, Table I)."""

    table: tuple[tuple[int, ...], ...] = ()

    def figures(self, s: Shape) -> LayerFigures:
        c = _need_map(self, s)[0]
        if len(self.table) != self.filters or any(not t or max(t) >= c or min(t) < 0 for t in self.table):
            raise ShapeError(f"layer '{self.name}': the connection table needs {self.filters} rows of input "
                             f"maps in 0..{c - 1}")
        fig = self.geometry(s, self.filters)
        k = pair(self.kernel)
        _, oh, ow = fig.out
        fan_ins = [len(t) * k[0] * k[1] for t in self.table]
        params = fig.params = sum(fan_ins) + (self.filters if self.bias else 0)
        fig.macs = sum(fan_ins) * oh * ow
        conns = fig.connections = sum(f + 1 for f in fan_ins) * oh * ow
        fig.explain = _then(fig.explain, lambda: [
            f"params: sum over maps of (|inputs|*{k[0]}*{k[1]} + 1) = {params:,}",
            f"connections: {params:,} * {oh}*{ow} = {conns:,}"])
        return fig

    def build(self, s: Shape) -> Any:
        from . import torch_backend as tb

        return tb.PartialConv2d(self.table, pair(self.kernel), pair(self.stride or self.kernel), self.bias,
                                pair(self.dilation), self.pad4(s))


@dataclass(frozen=True, kw_only=True)
class MaxPool(Window):
    kernel: int | tuple[int, int] = 2

    def figures(self, s: Shape) -> LayerFigures:
        self.check_pool_padding(s)
        return self.geometry(s, _need_map(self, s)[0])

    def build(self, s: Shape) -> Any:
        from . import torch_backend as tb

        sym, extra = self.torch_padding(s)
        return tb.MaxPool2d(pair(self.kernel), pair(self.stride or self.kernel), sym, pair(self.dilation),
                            self.ceil_mode, extra)


@dataclass(frozen=True, kw_only=True)
class AvgPool(Window):
    """Average pooling; ``count_include_pad=False`` matches TensorFlow's 'same' pooling."""

    kernel: int | tuple[int, int] = 2
    count_include_pad: bool = True

    def figures(self, s: Shape) -> LayerFigures:
        if pair(self.dilation) != (1, 1):
            raise ShapeError(f"layer '{self.name}': average pooling has no dilation")
        self.check_pool_padding(s)
        return self.geometry(s, _need_map(self, s)[0])

    def build(self, s: Shape) -> Any:
        from . import torch_backend as tb

        sym, extra = self.torch_padding(s)
        return tb.AvgPool2d(pair(self.kernel), pair(self.stride or self.kernel), sym, self.ceil_mode,
                            self.count_include_pad, extra)


@dataclass(frozen=True, kw_only=True)
class Subsample(Window):
    """LeNet-5's trainable subsampling: per map, ``w * sum(window) + b`` (S2, S4)."""

    kernel: int | tuple[int, int] = 2

    def figures(self, s: Shape) -> LayerFigures:
        c = _need_map(self, s)[0]
        if self.ceil_mode:
            raise ShapeError(f"layer '{self.name}': trainable subsampling has no ceil mode; pad the input instead")
        fig = self.geometry(s, c)
        k = pair(self.kernel)
        _, oh, ow = fig.out
        n = c * oh * ow
        fig.params = 2 * c
        fig.macs = k[0] * k[1] * n
        conns = fig.connections = (k[0] * k[1] + 1) * n
        fig.explain = _then(fig.explain, lambda: [
            f"params: 2 * {c} (one weight and one bias per map) = {2 * c}",
            f"connections: ({k[0]}*{k[1]} + 1) * {c}*{oh}*{ow} = {conns:,}"])
        return fig

    def build(self, s: Shape) -> Any:
        from . import torch_backend as tb

        return tb.Subsample2d(s[0], pair(self.kernel), pair(self.stride or self.kernel), pair(self.dilation),
                              self.pad4(s))


@dataclass(frozen=True, kw_only=True)
class ZeroPad(Layer):
    """Explicit zero padding: an int, (h, w) or (top, bottom, left, right)."""

    padding: Any = 1

    def figures(self, s: Shape) -> LayerFigures:
        c, h, w = _need_map(self, s)
        (t, b), (left, r) = resolve_padding(self.padding, (h, w), (1, 1), (1, 1), (1, 1))
        return LayerFigures(out=(c, h + t + b, w + left + r), rf=((1, 1, t), (1, 1, left)))

    def build(self, s: Shape) -> Any:
        from torch import nn

        (t, b), (left, r) = resolve_padding(self.padding, s[1:], (1, 1), (1, 1), (1, 1))
        return nn.ZeroPad2d((left, r, t, b))


@dataclass(frozen=True, kw_only=True)
class Crop(Layer):
    """Remove ``crop`` pixels (top, bottom, left, right) from the edges (Keras' Cropping2D)."""

    crop: tuple[int, int, int, int] = (0, 0, 0, 0)

    def figures(self, s: Shape) -> LayerFigures:
        c, h, w = _need_map(self, s)
        t, b, left, r = self.crop
        if min(self.crop) < 0 or h - t - b < 1 or w - left - r < 1:
            raise ShapeError(f"layer '{self.name}': cropping {t}, {b}, {left}, {r} from {fmt_shape(s)} leaves nothing; "
                             "crop less, by non-negative amounts")
        return LayerFigures(out=(c, h - t - b, w - left - r))

    def build(self, s: Shape) -> Any:
        from torch import nn

        t, b, left, r = self.crop
        return nn.ZeroPad2d((-left, -r, -t, -b))  # negative padding crops


@dataclass(frozen=True, kw_only=True)
class AdaptiveAvgPool(Layer):
    """Adaptive average pooling to a fixed ``output`` size (torchvision's ``avgpool``)."""

    output: int | tuple[int, int] = 1
    op: ClassVar[str] = "avg"

    def figures(self, s: Shape) -> LayerFigures:
        c, h, w = _need_map(self, s)
        oh, ow = pair(self.output)
        # Window extents of PyTorch's adaptive pooling: the largest is ceil(n/o) (+1 when o does not divide n).
        kh, kw = -(-h // oh) + (h % oh != 0), -(-w // ow) + (w % ow != 0)
        return LayerFigures(out=(c, oh, ow), rf=((kh, max(h // oh, 1), 0), (kw, max(w // ow, 1), 0)),
                    explain=lambda: [f"H: {h} -> {oh}, W: {w} -> {ow} (adaptive windows up to {kh}x{kw})"])

    def build(self, s: Shape) -> Any:
        from torch import nn

        cls = nn.AdaptiveAvgPool2d if self.op == "avg" else nn.AdaptiveMaxPool2d
        return cls(pair(self.output))


@dataclass(frozen=True, kw_only=True)
class AdaptiveMaxPool(AdaptiveAvgPool):
    op: ClassVar[str] = "max"


@dataclass(frozen=True, kw_only=True)
class GlobalAvgPool(Layer):
    """Mean over the whole map, giving a vector (Keras' GlobalAveragePooling2D)."""

    def figures(self, s: Shape) -> LayerFigures:
        c, h, w = _need_map(self, s)
        return LayerFigures(out=(c,), rf=((h, h, 0), (w, w, 0)), explain=lambda: [f"{c}x{h}x{w} -> {c}"])

    def build(self, s: Shape) -> Any:
        from . import torch_backend as tb

        return tb.GlobalAvgPool()


@dataclass(frozen=True, kw_only=True)
class ChannelPad(Layer):
    """Parameter-free shortcut (ResNet option A, He et al. 2015, Sec. 3.3): subsample by ``stride``
    and zero-pad the channels up to ``channels``."""

    channels: int
    stride: int = 1

    def figures(self, s: Shape) -> LayerFigures:
        c, h, w = _need_map(self, s)
        if self.channels < c or self.stride < 1:
            raise ShapeError(f"layer '{self.name}': can only pad {c} channels up (got {self.channels}) "
                             f"with stride >= 1")
        st = self.stride
        return LayerFigures(out=(self.channels, -(-h // st), -(-w // st)), rf=((1, st, 0), (1, st, 0)),
                    explain=lambda: [f"{c}x{h}x{w} -> every {st}th pixel, channels zero-padded to {self.channels}"])

    def build(self, s: Shape) -> Any:
        from . import torch_backend as tb

        return tb.ChannelPad(self.channels - s[0], self.stride)


# --------------------------------------------------------------------------- shape-keeping layers


@dataclass(frozen=True, kw_only=True)
class Flatten(Layer):
    """Merge the dimensions from ``start_dim`` on (counted as in PyTorch, the batch being dim 0):
    1 gives a vector; 2 turns C x H x W into C x (H*W) (patch embeddings)."""

    start_dim: int = 1

    def figures(self, s: Shape) -> LayerFigures:
        k = self.start_dim - 1
        if not 0 <= k < len(s):
            raise ShapeError(f"layer '{self.name}': cannot flatten {fmt_shape(s)} from dim {self.start_dim}; "
                             f"use a start_dim from 1 to {len(s)}")
        n = math.prod(s[k:])
        return LayerFigures(out=(*s[:k], n),
                            explain=lambda: [f"{' * '.join(map(str, s[k:]))} = {n:,}"] if len(s) > k + 1 else [])

    def build(self, s: Shape) -> Any:
        from torch import nn

        return nn.Flatten(self.start_dim)


@dataclass(frozen=True, kw_only=True)
class Reshape(Layer):
    """A vector to a map of ``shape`` (C, H, W): (C, 1, 1) before a squeeze-excitation gate (Keras'
    ``Reshape((1, 1, C))``), or a generator's first map (DCGAN's Dense -> ``Reshape((7, 7, 256))``).
    ``channels_last``: the vector holds the map in (H, W, C) order, as Keras lays it out. No parameters."""

    shape: tuple[int, ...]
    channels_last: bool = False

    def figures(self, s: Shape) -> LayerFigures:
        if len(s) != 1 or math.prod(s) != math.prod(self.shape) or any(d < 1 for d in self.shape):
            raise ShapeError(f"layer '{self.name}': cannot reshape {fmt_shape(s)} to {fmt_shape(self.shape)}; "
                             "give a vector and a shape with as many values")
        order = " (read as H x W x C)" if self.channels_last else ""
        return LayerFigures(out=tuple(self.shape),
                            explain=lambda: [f"{fmt_shape(s)} -> {fmt_shape(self.shape)}{order}"])

    def build(self, s: Shape) -> Any:
        from torch import nn

        if self.channels_last and len(self.shape) == 3 and self.shape[1:] != (1, 1):
            from .torch_backend import UnflattenChannelsLast

            return UnflattenChannelsLast(tuple(self.shape))
        return nn.Unflatten(1, tuple(self.shape))


@dataclass(frozen=True, kw_only=True)
class Dense(Layer):
    """Fully connected layer."""

    units: int
    bias: bool = True
    kind: ClassVar[str] = "dense"

    def figures(self, s: Shape) -> LayerFigures:
        n = _need_vector(self, s)
        if self.units < 1 or n < 1:
            raise ShapeError(f"layer '{self.name}': inputs and units must be >= 1, got {n} -> {self.units}")
        b = " + 1" if self.bias else ""
        params = n * self.units + (self.units if self.bias else 0)
        return LayerFigures(
            out=(self.units,), params=params, macs=n * self.units, connections=(n + 1) * self.units,
            explain=lambda: [f"params: ({n:,}{b}) * {self.units:,} = {params:,}",
                             f"MACs: {n:,} * {self.units:,} = {n * self.units:,}"],
        )

    def build(self, s: Shape) -> Any:
        from torch import nn

        return nn.Linear(s[0], self.units, bias=self.bias)


@dataclass(frozen=True, kw_only=True)
class RBF(Layer):
    """LeNet-5's Euclidean radial basis output: ``y_i = sum_j (x_j - w_ij)^2``."""

    units: int = 10
    kind: ClassVar[str] = "dense"

    def figures(self, s: Shape) -> LayerFigures:
        n = _need_vector(self, s)
        p = n * self.units
        return LayerFigures(out=(self.units,), params=p, macs=p, connections=p,
                    explain=lambda: [f"params: {n} * {self.units} = {p:,}"])

    def build(self, s: Shape) -> Any:
        from . import torch_backend as tb

        return tb.RBFOutput(s[0], self.units)


@dataclass(frozen=True, kw_only=True)
class BatchNorm(Layer):
    """Batch normalization over channels (maps) or features (vectors): gamma and beta are
    parameters; the running mean and variance are buffers."""

    eps: float = 1e-5
    momentum: float = 0.1
    affine: bool = True  # without it there is no gamma and beta
    track_running_stats: bool = True  # without it there are no running statistics
    center: bool = True  # beta, when affine (Keras' center=False drops it)
    scale: bool = True  # gamma, when affine (Keras' scale=False drops it)

    def figures(self, s: Shape) -> LayerFigures:
        c = s[0]
        kept = [n for n, on in (("gamma", self.scale), ("beta", self.center)) if on and self.affine]
        p, b = len(kept) * c, 2 * c * self.track_running_stats
        what = f"{len(kept)} * {c} ({', '.join(kept)})" if p else "0 (not affine)"
        return LayerFigures(out=s, params=p, buffers=b,
                    explain=lambda: [f"params: {what}; buffers: {'2 * ' + str(c) if b else '0 (batch statistics only)'}"])

    def build(self, s: Shape) -> Any:
        from torch import nn

        cls = nn.BatchNorm2d if len(s) == 3 else nn.BatchNorm1d
        bn = cls(s[0], eps=self.eps, momentum=self.momentum, affine=self.affine,
                 track_running_stats=self.track_running_stats)
        if self.affine and not self.scale:  # batch_norm treats a missing gamma as 1 and beta as 0
            bn.weight = None
        if self.affine and not self.center:
            bn.bias = None
        return bn


@dataclass(frozen=True, kw_only=True)
class Normalize(Layer):
    """Fixed per-channel standardization, ``(x - mean) / max(sqrt(variance), eps)``, as Keras'
    ``Normalization`` computes it (keras.applications' EfficientNet puts one first); ``invert``
    undoes it: ``mean + x * max(sqrt(variance), eps)``. Statistics given here are constants of the
    description, like Scale's. Without them they are buffers filled by the weights: the mean, the
    variance and the count of samples they were computed from (one value, as Keras counts it)."""

    mean: tuple[float, ...] | None = None
    variance: tuple[float, ...] | None = None
    eps: float = 1e-7  # Keras' backend epsilon
    invert: bool = False

    def figures(self, s: Shape) -> LayerFigures:
        c, mean, var = s[0], self.mean, self.variance
        if mean is None and var is None:
            b = 2 * c + 1
            return LayerFigures(out=s, buffers=b, explain=lambda: [f"buffers: 2 * {c} + 1 = {b} (mean, variance, "
                                                                   "count)"])
        if mean is None or var is None:
            raise ShapeError(f"layer '{self.name}': give both mean and variance, or neither (then they are "
                             "buffers loaded with the weights)")
        if len(mean) != c or len(var) != c:
            raise ShapeError(f"layer '{self.name}': {len(mean)} means and {len(var)} variances for {c} channels; "
                             "give one of each per channel")
        if min(var) < 0:
            raise ShapeError(f"layer '{self.name}': variance {min(var)} is negative; give variances >= 0")
        return LayerFigures(out=s, explain=lambda: ["constant mean and variance: no buffers"])

    def build(self, s: Shape) -> Any:
        from . import torch_backend as tb

        return tb.Normalize(s[0], len(s), self.mean, self.variance, self.eps, self.invert)


@dataclass(frozen=True, kw_only=True)
class LRN(Layer):
    """Local response normalization as the AlexNet paper writes it:
    ``b = a / (k + alpha * sum_{size neighbours} a^2)^beta`` (paper: size 5, alpha 1e-4, beta 0.75, k 2)."""

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0

    def figures(self, s: Shape) -> LayerFigures:
        _need_map(self, s)
        return LayerFigures(out=s)

    def build(self, s: Shape) -> Any:
        from torch import nn

        # PyTorch divides alpha by size; scale it back so the formula is the paper's.
        return nn.LocalResponseNorm(self.size, alpha=self.alpha * self.size, beta=self.beta, k=self.k)


@dataclass(frozen=True, kw_only=True)
class Dropout(Layer):
    p: float = 0.5

    def figures(self, s: Shape) -> LayerFigures:
        if not 0 <= self.p < 1:
            raise ShapeError(f"layer '{self.name}': dropout rate must be in [0, 1), got {self.p}")
        return LayerFigures(out=s)

    def build(self, s: Shape) -> Any:
        from torch import nn

        return nn.Dropout(self.p)


@dataclass(frozen=True, kw_only=True)
class ReLU(Layer):
    def build(self, s: Shape) -> Any:
        from torch import nn

        # Not in place: in a concat, a residual sum or a graph, the value a ReLU reads may be read
        # again by another branch, which an in-place ReLU would silently change.
        return nn.ReLU()


@dataclass(frozen=True, kw_only=True)
class Tanh(Layer):
    def build(self, s: Shape) -> Any:
        from torch import nn

        return nn.Tanh()


@dataclass(frozen=True, kw_only=True)
class Sigmoid(Layer):
    def build(self, s: Shape) -> Any:
        from torch import nn

        return nn.Sigmoid()


@dataclass(frozen=True, kw_only=True)
class ScaledTanh(Layer):
    """LeNet-5's squashing function ``A tanh(S a)`` with A = 1.7159, S = 2/3 (LeCun et al. 1998, App. A)."""

    a: float = 1.7159
    s: float = 2 / 3

    def build(self, s: Shape) -> Any:
        from . import torch_backend as tb

        return tb.ScaledTanh(self.a, self.s)


@dataclass(frozen=True, kw_only=True)
class Softmax(Layer):
    """Over the channels: a vector's features, or at each pixel of a map its channels (as Caffe's Softmax
    and a Keras softmax on a channels-last map compute it)."""

    def figures(self, s: Shape) -> LayerFigures:
        return LayerFigures(out=s)

    def build(self, s: Shape) -> Any:
        from torch import nn

        return nn.Softmax(dim=1)


@dataclass(frozen=True, kw_only=True)
class LogSoftmax(Softmax):
    """The log of :class:`Softmax` (what ``F.log_softmax`` gives an ``nll_loss``), over the channels."""

    def build(self, s: Shape) -> Any:
        from torch import nn

        return nn.LogSoftmax(dim=1)


@dataclass(frozen=True, kw_only=True)
class Activation(Layer):
    """An elementwise function with PyTorch's module of the same name and no parameters."""

    def build(self, s: Shape) -> Any:
        from torch import nn

        return getattr(nn, type(self).__name__)()


@dataclass(frozen=True, kw_only=True)
class SiLU(Activation):
    """``x * sigmoid(x)`` (swish; EfficientNet)."""


@dataclass(frozen=True, kw_only=True)
class Hardswish(Activation):
    """``x * relu6(x + 3) / 6`` (MobileNet v3)."""


@dataclass(frozen=True, kw_only=True)
class Hardsigmoid(Activation):
    """``relu6(x + 3) / 6`` (MobileNet v3's squeeze-excitation gate)."""


@dataclass(frozen=True, kw_only=True)
class ReLU6(Activation):
    """``min(max(x, 0), 6)`` (MobileNet v2)."""


@dataclass(frozen=True, kw_only=True)
class Mish(Activation):
    """``x * tanh(softplus(x))``."""


@dataclass(frozen=True, kw_only=True)
class GELU(Activation):
    approximate: str = "none"

    def build(self, s: Shape) -> Any:
        from torch import nn

        return nn.GELU(approximate=self.approximate)


@dataclass(frozen=True, kw_only=True)
class LeakyReLU(Activation):
    slope: float = 0.01

    def build(self, s: Shape) -> Any:
        from torch import nn

        return nn.LeakyReLU(self.slope)


@dataclass(frozen=True, kw_only=True)
class ELU(Activation):
    alpha: float = 1.0

    def build(self, s: Shape) -> Any:
        from torch import nn

        return nn.ELU(self.alpha)


@dataclass(frozen=True, kw_only=True)
class PReLU(Layer):
    """``max(0, x) + a * min(0, x)`` with a learned slope ``a`` per channel, or one for all channels
    (``shared``, Caffe's ``channel_shared``); it starts at ``init`` (0.25: Caffe's default filler and
    PyTorch's). The slopes are parameters; the product is not counted as a MAC, as for the other
    activations."""

    shared: bool = False
    init: float = 0.25

    def figures(self, s: Shape) -> LayerFigures:
        p = 1 if self.shared else s[0]
        return LayerFigures(out=s, params=p,
                            explain=lambda: [f"params: {p:,} ({'one slope shared' if self.shared else 'a slope per channel'})"])

    def build(self, s: Shape) -> Any:
        from torch import nn

        return nn.PReLU(num_parameters=1 if self.shared else s[0], init=self.init)


@dataclass(frozen=True, kw_only=True)
class Scale(Layer):
    """``x * mul + add`` with constants (``x + 1.0``, ``x / 6``): no parameters, no MACs."""

    mul: float = 1.0
    add: float = 0.0

    def build(self, s: Shape) -> Any:
        from . import torch_backend as tb

        return tb.ScaleShift(self.mul, self.add)


@dataclass(frozen=True, kw_only=True)
class LayerNorm(Layer):
    """Normalization over the last ``len(shape)`` dimensions, which must equal ``shape``; gamma
    and beta (when ``affine``; beta only with ``bias``) have that shape."""

    shape: tuple[int, ...]
    eps: float = 1e-5
    affine: bool = True
    bias: bool = True

    def figures(self, s: Shape) -> LayerFigures:
        k = len(self.shape)
        if tuple(s[len(s) - k:]) != tuple(self.shape) or k > len(s):
            raise ShapeError(f"layer '{self.name}': normalizes over {fmt_shape(self.shape)} but gets {fmt_shape(s)}; "
                             "give the shape of the last dimensions")
        n = math.prod(self.shape)
        p = n * (1 + self.bias) if self.affine else 0
        return LayerFigures(out=s, params=p, explain=lambda: [f"params: {p:,} (gamma{', beta' * self.bias})"])

    def build(self, s: Shape) -> Any:
        from torch import nn

        return nn.LayerNorm(list(self.shape), eps=self.eps, elementwise_affine=self.affine, bias=self.bias)


@dataclass(frozen=True, kw_only=True)
class GroupNorm(Layer):
    """Normalization over groups of channels; gamma and beta per channel when ``affine``."""

    groups: int
    eps: float = 1e-5
    affine: bool = True

    def figures(self, s: Shape) -> LayerFigures:
        c = s[0]
        if self.groups < 1 or c % self.groups:
            raise ShapeError(f"layer '{self.name}': {c} channels do not divide into {self.groups} groups; "
                             "use a divisor of the channels")
        p = 2 * c if self.affine else 0
        return LayerFigures(out=s, params=p, explain=lambda: [f"params: {p:,} (gamma, beta)"])

    def build(self, s: Shape) -> Any:
        from torch import nn

        return nn.GroupNorm(self.groups, s[0], eps=self.eps, affine=self.affine)


@dataclass(frozen=True, kw_only=True)
class ConvTranspose(Layer):
    """Transposed convolution: ``out = (n - 1)s - 2p + d(k - 1) + output_padding + 1``. Each input
    pixel spreads a kernel, so MACs = Cin * Cout/groups * kh*kw * Hin*Win."""

    filters: int
    kernel: int | tuple[int, int] = 2
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    output_padding: int | tuple[int, int] = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    bias: bool = True
    kind: ClassVar[str] = "conv"

    def figures(self, s: Shape) -> LayerFigures:
        c, h, w = _need_map(self, s)
        if self.filters < 1 or self.groups < 1 or c % self.groups or self.filters % self.groups:
            raise ShapeError(f"layer '{self.name}': {c} input channels and {self.filters} filters must both divide "
                             f"into {self.groups} groups")
        k, st, p, op, d = (pair(v) for v in (self.kernel, self.stride, self.padding, self.output_padding,
                                             self.dilation))
        if any(o >= max(si, di) for o, si, di in zip(op, st, d)):  # PyTorch's own rule: the extra rows are new
            raise ShapeError(f"layer '{self.name}': output_padding {op[0]}x{op[1]} must be smaller than the stride "
                             f"{st[0]}x{st[1]} or the dilation {d[0]}x{d[1]}; give a smaller output_padding")
        oh, ow = ((n - 1) * si - 2 * pi + di * (ki - 1) + oi + 1 for n, ki, si, pi, oi, di in
                  zip((h, w), k, st, p, op, d))
        if oh < 1 or ow < 1:
            raise ShapeError(f"layer '{self.name}': output {oh}x{ow} from {fmt_shape(s)}; use less padding")
        fan = k[0] * k[1] * (self.filters // self.groups)
        params = c * fan + (self.filters if self.bias else 0)
        macs = c * fan * h * w
        return LayerFigures(out=(self.filters, oh, ow), params=params, macs=macs,
                            connections=(c * fan + self.filters) * h * w,
                            explain=lambda: [f"H: ({h} - 1)*{st[0]} - 2*{p[0]} + {d[0]}*({k[0]} - 1) + {op[0]} + 1 = {oh}",
                                             f"W: ({w} - 1)*{st[1]} - 2*{p[1]} + {d[1]}*({k[1]} - 1) + {op[1]} + 1 = {ow}",
                                             f"params: {c}*{k[0]}*{k[1]}*{self.filters // self.groups}"
                                             f"{' + ' + str(self.filters) if self.bias else ''} = {params:,}",
                                             f"MACs: {c}*{k[0]}*{k[1]}*{self.filters // self.groups} * {h}*{w} = {macs:,}"])

    def build(self, s: Shape) -> Any:
        from torch import nn

        return nn.ConvTranspose2d(s[0], self.filters, pair(self.kernel), pair(self.stride), pair(self.padding),
                                  pair(self.output_padding), self.groups, self.bias, pair(self.dilation))


@dataclass(frozen=True, kw_only=True)
class Upsample(Layer):
    """Resize by ``scale`` (output floor(n * scale), as PyTorch) or to ``size``: no parameters."""

    scale: float | tuple[float, float] | None = 2.0
    size: int | tuple[int, int] | None = None
    mode: str = "nearest"
    align_corners: bool | None = None

    def _out(self, h: int, w: int) -> tuple[int, int]:
        if self.size is not None:
            return pair(self.size)
        sh, sw = self.scale if isinstance(self.scale, tuple) else (self.scale, self.scale)
        if sh is None or sw is None:
            raise ShapeError(f"layer '{self.name}': give a scale or a size")
        return math.floor(h * sh), math.floor(w * sw)

    def figures(self, s: Shape) -> LayerFigures:
        c, h, w = _need_map(self, s)
        oh, ow = self._out(h, w)
        if oh < 1 or ow < 1:
            raise ShapeError(f"layer '{self.name}': resizing {fmt_shape(s)} gives {oh}x{ow}; use a larger scale")
        return LayerFigures(out=(c, oh, ow), explain=lambda: [f"{h}x{w} -> {oh}x{ow} ({self.mode})"])

    def build(self, s: Shape) -> Any:
        from torch import nn

        if self.size is not None:
            return nn.Upsample(size=pair(self.size), mode=self.mode, align_corners=self.align_corners)
        return nn.Upsample(scale_factor=self.scale, mode=self.mode, align_corners=self.align_corners)


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (Conv, PartialConv, MaxPool, AvgPool, Subsample, ZeroPad, Crop, ChannelPad, AdaptiveAvgPool, AdaptiveMaxPool,
                GlobalAvgPool, Flatten, Reshape, Dense, RBF, BatchNorm, Normalize, LRN, Dropout, ReLU, Tanh, Sigmoid, ScaledTanh,
                Softmax, LogSoftmax, SiLU, Hardswish, Hardsigmoid, ReLU6, Mish, GELU, LeakyReLU, ELU, PReLU, Scale,
                LayerNorm, GroupNorm, ConvTranspose, Upsample)
}
