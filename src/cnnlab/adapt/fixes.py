"""Candidate fixes: each a concrete change to the input or the layers, still unpriced."""

from __future__ import annotations

from ..layers import AdaptiveAvgPool, AdaptiveMaxPool, AvgPool, Dense, Flatten, Shape, ZeroPad, fmt_shape
from ..network import join
from .edits import apply_edit, leaves
from .results import PADDABLE, POOLS, Candidate, Edit, Finding
from .runs import Context, Run, compact_pad, edited, fmt_pad, n_rows, pad4, repeated_map, run_at


def _cand(name: str, description: str, changes: list[str], edits: list[Edit], shape: Shape) -> Candidate:
    return Candidate(name, description, tuple(changes), tuple(edits), tuple(shape))


def _resize_changes(c: Context, size: tuple[int, int]) -> list[str]:
    how = [f"{'pad' if m > n else 'crop'} {n_rows(abs(m - n), i)}"
           for i, (n, m) in enumerate(zip(c.shape[1:], size)) if m != n]
    return [f"input: {c.shape[1]}x{c.shape[2]} -> {size[0]}x{size[1]} ({', '.join(how)}; or resize)"]


def _fix_input_design(c: Context) -> Candidate | None:
    size = c.design[1:]
    if tuple(size) == c.shape[1:]:
        return None
    (h, w), (hd, wd) = c.shape[1:], size
    note = f"; the aspect ratio changes from {w / h:.2f} to {wd / hd:.2f}" if abs(w / h - wd / hd) > 0.01 else ""
    return _cand("input-design", f"resize the input to {hd}x{wd}, the design size{note}",
            [f"input: resize {h}x{w} -> {hd}x{wd}"], [], (c.shape[0], hd, wd))


def _fix_input_clean(c: Context, up_only: bool = False) -> Candidate | None:
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
    return _cand("input-clean" if clean else "input-valid", f"{verb} the input to {h}x{w}, the nearest size {what}",
            _resize_changes(c, (h, w)), [], (c.shape[0], h, w))


def _fix_pad_first(c: Context) -> Candidate | None:
    """The input is too small: pad it inside the network, in the first layer when it can."""
    sizes = [c.nearest(i, up_only=True) or c.min_valid(i) for i in (0, 1)]
    if None in sizes:
        return None
    eh, ew = (m - n for m, n in zip(sizes, c.shape[1:]))  # type: ignore[operator]
    first = c.target.layers[0]
    extra = (eh // 2, eh - eh // 2, ew // 2, ew - ew // 2)
    if type(first) in PADDABLE and first.padding not in ("same",):
        old = pad4(first.axes(c.shape))
        new = compact_pad(tuple(a + b for a, b in zip(old, extra)))  # type: ignore[arg-type]
        return _cand("pad-first", f"pad the input inside '{first.name}' so it sees {sizes[0]}x{sizes[1]}",
                [f"{first.name}: padding {fmt_pad(compact_pad(old))} -> {fmt_pad(new)}"],
                [Edit("set", first.name, {"padding": new})], c.shape)
    names = set(leaves(c.target))
    name = next(n for n in ("pad_input", "pad_input_0", "pad_input_1") if n not in names)
    pad = compact_pad(extra)
    return _cand("pad-first", f"zero-pad the input inside the network to {sizes[0]}x{sizes[1]}",
            [f"insert {name}: ZeroPad {fmt_pad(pad)}"], [Edit("prepend", value=ZeroPad(name=name, padding=pad))],
            c.shape)


def _fix_pad_layers(c: Context) -> Candidate | None:
    """Give each layer that drops pixels the extra padding that makes its division exact."""
    net, done, changes, edits = c.target, set(), [], []
    for _ in range(len(c.after.windows) + 1):
        r = run_at(net, c.shape)
        if not r.ok:
            return None
        dropping = {p for p, _, _ in r.drops()}
        todo = [(p, axes) for p, layer, axes in r.windows
                if p in dropping and p not in done and type(layer) in PADDABLE and layer.padding != "same"]
        if not todo:
            break
        path, axes = todo[0]
        old = pad4(axes)
        new = list(old)
        for i, ax in enumerate(axes):
            if ax.dropped:
                e = ax.s - ax.remainder
                new[2 * i] += e // 2
                new[2 * i + 1] += e - e // 2
        pad = compact_pad(tuple(new))  # type: ignore[arg-type]
        edit = Edit("set", path, {"padding": pad})
        net = apply_edit(net, edit)
        done.add(path)
        edits.append(edit)
        changes.append(f"{path}: padding {fmt_pad(compact_pad(old))} -> {fmt_pad(pad)} (top, bottom, left, right)")
    if not edits:
        return None
    return _cand("pad-layers", "pad the layers that drop pixels so every division is exact", changes, edits, c.shape)


def _fix_ceil(c: Context) -> Candidate | None:
    pools = [p for p, ly, _ in c.after.windows if type(ly) in POOLS and not ly.ceil_mode]  # type: ignore[attr-defined]
    dropping = {p for p, _, _ in c.after.drops()}
    if not dropping.intersection(pools):
        return None
    return _cand("ceil-pools", "round pooling up (ceil mode, as Caffe) so each pool's last window covers the edge",
            [f"{p}: ceil_mode False -> True" for p in pools], [Edit("set", p, {"ceil_mode": True}) for p in pools],
            c.shape)


def _fix_adaptive(c: Context, r: Run) -> Candidate | None:
    """Pool the final map to the designed size, so the head keeps its designed input."""
    h = c.head
    if h is None or h.fixed or type(h.flatten.layer) is not Flatten or not r.ok:
        return None
    now = r.by_name()[h.flatten.name].input_shape
    want = h.flatten.input_shape
    if now == want:
        return None
    names = set(leaves(c.target))
    prefix = h.flatten.name.rpartition(".")[0]
    name = next(n for n in ("avgpool", "adaptive_pool", "adaptive_pool_0")
                if join(prefix, n) not in names)
    layer = AdaptiveAvgPool(name=name, output=(want[1], want[2]))
    return _cand("adaptive-pool", f"insert adaptive average pooling to {want[1]}x{want[2]} before '{h.flatten.name}', "
                             f"so the head sees the designed {fmt_shape(want)} map",
            [f"insert {name}: AdaptiveAvgPool {now[1]}x{now[2]} -> {want[1]}x{want[2]}"],
            [Edit("insert", h.flatten.name, layer)], r.shape)


def _fix_global_pool(c: Context) -> Candidate | None:
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
    layer = p.layer if p else None
    if p is None or type(layer) not in POOLS or p.output_shape[1:] != (1, 1):
        return None
    new = AdaptiveAvgPool(name=layer.name, output=1) if type(layer) is AvgPool else \
        AdaptiveMaxPool(name=layer.name, output=1)
    kind = "average" if type(layer) is AvgPool else "max"
    (_, ih, iw) = p.input_shape
    return _cand("global-pool", f"make '{p.name}' global {kind} pooling: its fixed window covers the whole "
                           f"{ih}x{iw} map only at the design input",
            [f"{p.name}: {type(layer).__name__} {fmt_pad(layer.kernel)} -> Adaptive{type(layer).__name__} 1x1"],
            [Edit("replace", p.name, new)], c.shape)


def _fix_head(c: Context, r: Run) -> Candidate | None:
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
        if units > width and type(lv[d]) is Dense:
            changes.append(f"{d}: {units:,} -> {width:,} units (no wider than its {width:,} inputs)")
            edits.append(Edit("set", d, {"units": width}))
            units = width
        width = units
    f0 = h.flatten.output_shape[0]
    if not edits:
        if n == f0:
            return None
        first = h.dense[0]
        return _cand("head", f"keep every layer and retrain the head at the new flatten size: '{first}' takes {n:,} "
                        f"inputs ({fmt_shape(flat.input_shape)}) instead of {f0:,}",
                [f"{first}: {f0:,} -> {n:,} inputs (new weights)"], [], r.shape)
    return _cand("head", f"resize the dense head to the {n:,}-value flatten (hidden layers no wider than their input)",
            changes, edits, r.shape)


def _fix_channels(c: Context) -> Candidate | None:
    cd, cn = c.design[0], c.shape[0]
    if cd == cn:
        return None
    how = ("repeat the single channel" if cn == 1 else "convert to luminance" if cd == 1
           else f"map the {cn} channels")
    return _cand("match-channels", f"feed {cd} channels ({how}) so the first layer keeps its designed weights",
            [f"input: {cn} -> {cd} channels ({how})"], [], (cd, *c.shape[1:]))


def size_problem(c: Context, findings: list[Finding]) -> bool:
    return not c.after.ok or bool(c.new_drops) or any(f.kind in ("same", "head", "upsample") for f in findings)


def candidates(c: Context, findings: list[Finding]) -> list[Candidate]:
    channels = _fix_channels(c)
    if not size_problem(c, findings):
        return [channels] if channels else []
    out: list[Candidate | None]
    if not c.after.ok:
        small = c.after.failure is not None and c.after.failure.reason == "too-small"
        geometry = [_fix_pad_first(c) if small else None, _fix_input_clean(c, up_only=small)]
        out = [*geometry, _fix_input_design(c), _fix_global_pool(c)]
    else:
        geometry = [_fix_pad_layers(c), _fix_input_clean(c), _fix_ceil(c)]
        out = [*geometry, _fix_input_design(c), _fix_global_pool(c), _fix_adaptive(c, c.after), _fix_head(c, c.after)]
    for g in geometry:
        if g is None:
            continue
        r = run_at(edited(c, [*g.edits, Edit("input", value=g.input)]), g.input)
        # a geometry that drops nothing, plus the designed head: designed weights too
        a = _fix_adaptive(c, r) if not r.drops() or g.name == "input-valid" else None
        # a geometry whose map is smaller than the head's pooled map: a head sized to it repeats nothing
        h = _fix_head(c, r) if repeated_map(r) else None
        out += [g.then(x) for x in (a, h) if x and x.edits]
    size = [x for x in out if x]
    if channels is None:
        return size
    # the designed first layer at the new size: kept only where it keeps every designed weight (see rank)
    both = [Candidate(f"{channels.name}+{x.name}", f"{channels.description}; {x.description}",
                      channels.changes + x.changes, x.edits, (channels.input[0], *x.input[1:])) for x in size]
    return [channels, *size, *both]
