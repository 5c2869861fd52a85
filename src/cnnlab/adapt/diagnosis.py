"""The diagnosis: the network at its design input against the new one, layer by layer, with
findings, the ranked fixes and a verdict."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..analysis import Analysis, LayerStats, analyze_until_failure
from ..errors import CnnlabError
from ..layers import Conv, Shape, fmt_shape, scores
from ..network import Network
from .edits import apply_edit, edited_net, leaves
from .fixes import candidates, size_problem
from .ranking import rank
from .results import POOLS, ROUNDING, Edit, Finding, Fix, Report
from .runs import CLASSIFIERS, Context, delta, find_head, n_rows, run_at


def _classes_edits(net: Network, a: Analysis, num_classes: int) -> list[Edit]:
    """Resize the classifier of the main path and of every auxiliary head."""
    groups: list[list[LayerStats]] = [[]]
    last_aux = False
    for ly in a.layers:
        if ly.aux != last_aux and ly.aux:
            groups.append([])
        last_aux = ly.aux
        (groups[-1] if ly.aux else groups[0]).append(ly)
    edits = []
    for g in groups:
        outs = [ly for ly in g if type(ly.layer) in CLASSIFIERS]
        if outs and getattr(outs[-1].layer, "units", num_classes) != num_classes:
            edits.append(Edit("set", outs[-1].name, {"units": num_classes}))
    if not any(type(ly.layer) in CLASSIFIERS for ly in groups[0]):
        # A convolutional classifier (a 1x1 conv to C maps, then global pooling: SqueezeNet, NIN) is the
        # last layer with weights when its filters give the output's C.
        weighted = [ly for ly in groups[0] if ly.params]
        last = weighted[-1] if weighted else None
        if last is None or not isinstance(last.layer, Conv) or scores(a.output_shape) != (last.layer.filters,):
            raise CnnlabError(f"{net.name} has no dense output layer to resize to {num_classes} classes; "
                              "leave --num-classes out")
        if last.layer.filters != num_classes:
            edits.append(Edit("set", last.name, {"filters": num_classes}))
    return edits


def with_classes(net: Network, num_classes: int) -> Network:
    """``net`` with its classifier (the last dense layer of the main path and of each auxiliary head) resized
    to ``num_classes`` outputs: a model file made for another class count, trained on this data."""
    from ..analysis import analyze

    return edited_net(net, _classes_edits(net, analyze(net), num_classes))


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


def _findings(c: Context, num_classes: int | None, class_paths: set[str]) -> list[Finding]:
    out: list[Finding] = []
    bef = c.before.by_name()
    ref = c.ref.by_name()
    for p in sorted(class_paths):
        if p in ref:
            out.append(Finding(p, "classes", f"{bef[p].output_shape[0]:,} -> {num_classes:,} classes: params "
                                             f"{delta(bef[p].params, ref[p].params)}"))
    if c.shape[0] != c.design[0]:
        if not c.ref.ok:
            out.append(Finding("", "channels", f"{c.design[0]} -> {c.shape[0]} input channels does not run: "
                                               f"{c.ref.error}"))
        for name, ly in ref.items():
            b = bef.get(name)
            if b and name not in class_paths and (b.params, b.macs) != (ly.params, ly.macs):
                out.append(Finding(name, "channels", f"{c.design[0]} -> {c.shape[0]} input channels: params "
                                                     f"{delta(b.params, ly.params)}, MACs {delta(b.macs, ly.macs)}"))
    if not c.after.ok:
        return out
    out += _geometry_findings(c)
    base = c.base.by_name()
    for name, ly in c.after.by_name().items():
        b = base.get(name)
        if b is None:
            continue
        if b.params != ly.params:
            out.append(Finding(name, "params", f"params {delta(b.params, ly.params)}; MACs {delta(b.macs, ly.macs)}"))
        elif b.macs != ly.macs:
            out.append(Finding(name, "macs", f"MACs {delta(b.macs, ly.macs)}"))
    return out


def _geometry_findings(c: Context) -> list[Finding]:
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
                    lost = n_rows(ax.dropped, i) + " are" if ax.dropped > 1 else ("row", "column")[i] + " is"
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


def _head_findings(c: Context) -> list[Finding]:
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


def _check_shape(shape: Any) -> Shape:
    s = tuple(shape)
    if len(s) != 3 or not all(isinstance(v, int) and v >= 1 for v in s):
        raise CnnlabError(f"input {s}: give C x H x W as three integers >= 1, e.g. (3, 270, 480)")
    return s


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
    before = run_at(edited_net(net, rounding_edits), net.input_shape)
    if before.a is None:
        raise CnnlabError(f"{net.name} does not run at its own design input: {before.error}")
    class_edits = _classes_edits(net, before.a, num_classes) if num_classes is not None else []
    c = Context(net, before, shape, [*rounding_edits, *class_edits])
    findings = _findings(c, num_classes, {e.path for e in class_edits})
    error = min_input = min_any = None
    if not c.after.ok:
        failure = c.after.failure
        assert failure is not None
        small = failure.reason == "too-small"
        mins = [c.min_valid(i) for i in (0, 1)] if small else [None, None]
        if None not in mins and any(m > n for m, n in zip(mins, shape[1:])):
            min_input, min_any, least = _smallest(c, mins)  # type: ignore[arg-type]
            error = (f"{net.name} cannot take {fmt_shape(shape)}: {failure.problem}; the smallest input "
                     f"that works is {fmt_shape(min_input)}{least}")
            findings.append(Finding(failure.layer or "", "too-small", error))
        else:
            error = f"{net.name} cannot take {fmt_shape(shape)}: {c.after.error}"
            findings.append(Finding("", "error", error))
    fixes = rank(c, candidates(c, findings))
    other = _other_rounding(c)
    return Report(
        model=net.name, design_input=net.input_shape, input=shape, rounding=_rounding_name(c.target),
        findings=findings, before=c.before.totals, after=c.after.totals if c.after.ok else None, fixes=fixes,
        layers=_layer_rows(c), verdict=_verdict(c, findings, fixes, error), error=error, min_input=min_input,
        min_input_any=min_any,
        other_rounding=other,
    )


def _smallest(c: Context, mins: list[int]) -> tuple[Shape, Shape, str]:
    """The smallest input that works with the least change to the given one (an axis that is long
    enough keeps its size), the smallest of all, and a note naming the raised axes."""
    ch, sizes = c.shape[0], c.shape[1:]
    least = (ch, *(max(m, n) for m, n in zip(mins, sizes)))
    anywhere = (ch, *mins)
    if least == anywhere or not c.run(least).ok:  # the axes never interact, so the second cannot happen
        return anywhere, anywhere, ""
    raised = [f"{('height', 'width')[i]} {n} -> {m}" for i, (m, n) in enumerate(zip(mins, sizes)) if m > n]
    return least, anywhere, f" ({', '.join(raised)}; the smallest of all is {fmt_shape(anywhere)})"


def _other_rounding(c: Context) -> dict[str, Any] | None:
    pools = [p for p, ly in leaves(c.target).items() if type(ly) in POOLS]
    if not pools:
        return None
    ceil = {ly.ceil_mode for p, ly in leaves(c.target).items() if p in pools}  # type: ignore[attr-defined]
    if len(ceil) > 1:
        return None
    mode = "floor" if ceil == {True} else "ceil"
    net = c.target
    for p in pools:
        net = apply_edit(net, Edit("set", p, {"ceil_mode": mode == "ceil"}))
    r = run_at(net, c.shape)
    if r.ok and c.after.ok and r.totals == c.after.totals:
        return None
    d: dict[str, Any] = {"mode": ROUNDING[mode]}
    if r.ok:
        d |= r.totals
        d["output_before_head"] = list(find_head(r.a).flatten.input_shape) if r.a and find_head(r.a) else None
    else:
        d["error"] = r.failure.problem if r.failure is not None else ""
    return d


def _layer_rows(c: Context) -> list[dict[str, Any]]:
    """Both inputs side by side; when the new input fails, the layers before the failing one
    (``fails``) still show their real figures and the layers after it show none."""
    now = c.after.by_name() if c.after.ok else {ly.name: ly for ly in analyze_until_failure(c.target, c.shape)}
    failing = c.after.failure.layer if c.after.failure is not None else None
    rows = []
    for ly in c.before.a.layers if c.before.a else []:
        n = now.get(ly.name)
        rows.append({"layer": ly.name, "type": ly.type, "design_shape": list(ly.output_shape),
                     "shape": list(n.output_shape) if n else None, "design_params": ly.params,
                     "params": n.params if n else None, "design_macs": ly.macs, "macs": n.macs if n else None,
                     "fails": ly.name == failing})
    return rows


def _verdict(c: Context, findings: list[Finding], fixes: list[Fix], error: str | None) -> str:
    if error:
        best = f"; fix {fixes[0].id} ({fixes[0].name}): {fixes[0].description}" if fixes else ""
        return error + best
    kinds = {f.kind for f in findings}
    if not size_problem(c, findings):
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


def _requested_words(c: Context) -> str:
    """The channel and class changes asked for, in words: '1 input channel and 29 classes'."""
    words = []
    if c.shape[0] != c.design[0]:
        words.append(f"{c.shape[0]} input channel{'s' if c.shape[0] != 1 else ''}")
    units = {e.value["units"] for e in c.requested if e.op == "set" and "units" in e.value}
    words += [f"{n:,} classes" for n in units]
    return " and ".join(words)


def _requested_changes(c: Context, findings: list[Finding]) -> list[str]:
    """What the channel and class changes cost at the design size: the layers that need new weights."""
    bef, ref = c.before.by_name(), c.ref.by_name()
    out = []
    for kind, what in (("channels", f"{c.design[0]} -> {c.shape[0]} input channels"), ("classes", "the class change")):
        names = [f.layer for f in findings if f.kind == kind and f.layer in ref]
        if names:
            p0, p1 = sum(bef[n].params for n in names), sum(ref[n].params for n in names)
            out.append(f"{what} give{'s' if kind == 'classes' else ''} {', '.join(names)} new weights: "
                       f"params {delta(p0, p1)}")
    return out
