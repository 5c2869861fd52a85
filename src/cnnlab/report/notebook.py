"""HTML fragments for Jupyter's rich display (``_repr_html_``): an analysis, an adaptation report,
a training history and an evaluation, drawn with the HTML report's own pieces (cards, SVG diagram,
curves) inside one scoped ``<div>``, so the report's styles never leak into the notebook page.

Large networks stay readable: the totals come first and every top-level block (an Inception
module, a residual stage) is a ``<details>`` element, collapsed until opened. Every name is
escaped: a model, layer or class name may come from an untrusted file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from ..analysis import CONVENTIONS, Analysis, LayerStats
from ..layers import fmt_shape
from .html import CSS, curves
from .numbers import count, human

if TYPE_CHECKING:
    from ..adapt import Report
    from ..network import Network

SCOPE = "cnnlab-nb"
EXTRA_CSS = """
body{margin:8px 0;max-width:none}
details{margin:6px 0} summary{cursor:pointer;font-size:13px}
summary b{font-weight:600} .sub{color:#6b7280;font-size:12px}
.blocks details>table{margin-left:16px}
td.hot{color:#fff}
"""


def scoped_css(css: str) -> str:
    """``css`` with every selector placed under ``.cnnlab-nb`` (``body`` becomes the scope itself)."""
    out = []
    for sel, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        parts = []
        for s in sel.split(","):
            s = s.strip()
            parts.append(f".{SCOPE}" if s == "body" else f".{SCOPE} {s}")
        out.append(f"{','.join(parts)}{{{body}}}")
    return "\n".join(out)


def wrap(inner: str) -> str:
    """One self-contained fragment: the scoped style sheet and the content."""
    return f'<div class="{SCOPE}"><style>{scoped_css(CSS + EXTRA_CSS)}</style>{inner}</div>'


def _cards(cards: Sequence[tuple[str, str, str]]) -> str:
    return "<div class='cards'>" + "".join(
        f"<div class='card'><span>{escape(k)}</span><b>{escape(v)}</b><span>{escape(s)}</span></div>"
        for k, v, s in cards) + "</div>"


HEAD = ("<tr><th>Layer</th><th>Type</th><th>Output</th><th>Activations</th><th>Params</th><th>Buffers</th>"
        "<th>MACs</th><th>Connections</th><th>RF</th><th>Jump</th></tr>")


def _row(ly: LayerStats, depth: int) -> str:
    (rh, jh), (rw, jw) = ly.rf
    title = "; ".join(d for _, d in ly.findings)
    attrs = f' class="find" title="{escape(title)}"' if ly.findings else ""
    name = "&nbsp;" * 2 * max(0, ly.depth - depth) + escape(ly.name) + (" (aux)" if ly.aux else "")
    return (f"<tr{attrs}><td>{name}</td><td>{escape(ly.type)}</td><td>{fmt_shape(ly.output_shape)}</td>"
            f"<td>{count(ly.activation_size)}</td><td>{count(ly.params)}</td><td>{count(ly.buffers)}</td>"
            f"<td>{count(ly.macs)}</td><td>{count(ly.connections)}</td><td>{rh}x{rw}</td><td>{jh}x{jw}</td></tr>")


def layer_blocks(a: Analysis) -> str:
    """The layer table, split at the top-level blocks: loose layers in plain tables, each block a
    collapsed ``<details>`` whose summary gives its output, parameters and MACs."""
    tops = sorted((b for b in a.blocks.values() if b.depth == 0), key=lambda b: b.start)
    parts: list[str] = []
    loose: list[str] = []

    def flush() -> None:
        if loose:
            parts.append(f"<table><thead>{HEAD}</thead><tbody>{''.join(loose)}</tbody></table>")
            loose.clear()

    i = 0
    for b in tops:
        loose += [_row(ly, 0) for ly in a.layers[i:b.start]]
        flush()
        rows = "".join(_row(ly, 1) for ly in a.layers[b.start:b.end])
        parts.append(f"<details class='block'><summary><b>{escape(b.name)}</b> <span class='sub'>{escape(b.type)} · "
                     f"{b.end - b.start} layers · output {fmt_shape(b.output_shape)} · {count(b.params)} params · "
                     f"{count(b.macs)} MACs</span></summary><table><thead>{HEAD}</thead><tbody>{rows}</tbody></table>"
                     "</details>")
        i = b.end
    loose += [_row(ly, 0) for ly in a.layers[i:]]
    flush()
    return "".join(parts)


def analysis_html(a: Analysis, net: Network | None = None, metrics: list[dict[str, Any]] | None = None) -> str:
    """Totals, findings, (curves), the diagram and the layer table of one analysis."""
    t, sp, tr = a.totals, a.split, a.training_totals
    meta = a.meta
    paper = f" · {meta.get('paper')} ({meta.get('year', '')})" if meta.get("paper") else ""
    train = (lambda k: f" · training, with auxiliary heads: {tr[k]:,}") if a.aux_totals else (lambda k: "")
    parts = [f"<h1>{escape(a.model)}</h1><div class='meta'>input {fmt_shape(a.input_shape)} (C x H x W) · output "
             f"{fmt_shape(a.output_shape)} · {len(a.layers)} layers{escape(paper)}</div>",
             _cards([("parameters", human(t["params"]), f"{t['params']:,}{train('params')}"),
                     ("MACs", human(t["macs"]), f"{human(2 * t['macs'])} FLOPs{train('macs')}"),
                     ("buffers", human(t["buffers"]), "BatchNorm statistics"),
                     ("conv / dense params", f"{human(sp['conv']['params'])} / {human(sp['dense']['params'])}",
                      f"{sp['conv']['params']:,} / {sp['dense']['params']:,}"),
                     ("activations", human(t["activation_size"]), f"{a.memory['activation_bytes'] / 2**20:.1f} MiB fp32"),
                     ("output", fmt_shape(a.output_shape), "")])]
    fs = a.findings
    if fs:
        items = "".join(f"<li><b>{escape(f['layer'])}</b>: {escape(f['detail'])}</li>" for f in fs)
        parts.append(f"<details{' open' if len(fs) <= 8 else ''}><summary><b>Findings ({len(fs)})</b></summary>"
                     f"<ul>{items}</ul></details>")
    if metrics:
        parts.append(history_body(metrics))
    if net is not None:
        from .diagram import svg

        parts.append(f"<details><summary><b>Diagram</b></summary><div class='diagram'>{svg(net, a)}</div></details>")
    parts.append(f"<details open class='blocks'><summary><b>Layers</b> <span class='sub'>{len(a.layers)} rows; "
                 f"total {t['params']:,} params, {t['macs']:,} MACs, {t['connections']:,} connections</span></summary>{layer_blocks(a)}</details>")
    parts.append(f"<div class='conv'>{escape(CONVENTIONS)}</div>")
    return wrap("".join(parts))


def history_body(history: list[dict[str, Any]], status: str = "") -> str:
    """Curves and the epoch table of a run (unwrapped, for embedding)."""
    if not history:
        return f"<div class='meta'>{escape(status or 'no epoch finished yet')}</div>"
    vals = [(m.get("val_acc"), m["epoch"]) for m in history if m.get("val_acc") is not None]
    best = max(vals, default=None)
    last = history[-1]
    line = (f"{len(history)} epoch{'s' if len(history) != 1 else ''} · last train loss {last['train_loss']:.4f}, "
            f"accuracy {last['train_acc']:.2%}")
    if best:
        line += f" · best validation accuracy {best[0]:.2%} (epoch {best[1]})"
    rows = "".join(
        f"<tr><td>{m['epoch']}</td><td>{m['train_loss']:.4f}</td><td>{m['train_acc']:.2%}</td>"
        f"<td>{'' if m.get('val_loss') is None else format(m['val_loss'], '.4f')}</td>"
        f"<td>{'' if m.get('val_acc') is None else format(m['val_acc'], '.2%')}</td>"
        f"<td>{m.get('lr', 0):.3g}</td><td>{m.get('seconds', 0):.1f}</td></tr>" for m in history)
    return (f"<div class='meta'>{escape(status + ' · ' if status else '')}{line}</div>"
            f"<div class='flex'>{curves(history)}</div>"
            "<details><summary><b>Epochs</b></summary><table><thead><tr><th>Epoch</th><th>Train loss</th>"
            "<th>Train acc</th><th>Val loss</th><th>Val acc</th><th>LR</th><th>Seconds</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></details>")


def history_html(history: list[dict[str, Any]], title: str, status: str = "") -> str:
    """A training run: its title, a status line, the loss and accuracy curves, the epochs."""
    return wrap(f"<h2>{escape(title)}</h2>{history_body(history, status)}")


def confusion_table(matrix: Any, classes: Sequence[str]) -> str:
    """Counts with cells shaded by their share of the true class's row."""
    m = [[int(v) for v in row] for row in matrix.tolist()]
    head = "".join(f"<th>{escape(str(c))}</th>" for c in classes)
    body = []
    for name, row in zip(classes, m):
        total = max(1, sum(row))
        cells = []
        for v in row:
            share = v / total
            hot = " class='hot'" if share > 0.5 else ""
            cells.append(f"<td{hot} style='background:rgba(37,99,235,{share:.2f})'>{v}</td>")
        body.append(f"<tr><th>{escape(str(name))}</th>{''.join(cells)}</tr>")
    return (f"<table class='confusion'><thead><tr><th>true \\ predicted</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def evaluation_html(title: str, top1: float, top5: float, loss: float, n: int, matrix: Any = None,
                    classes: Sequence[str] = ()) -> str:
    """Top-1, top-5, loss and (up to 30 classes) the confusion matrix."""
    parts = [f"<h2>{escape(title)}</h2>",
             _cards([("top-1 accuracy", f"{top1:.2%}", f"{round(top1 * n):,} of {n:,} images"),
                     ("top-5 accuracy", f"{top5:.2%}", ""), ("loss", f"{loss:.4f}", "cross-entropy")])]
    if matrix is not None and 0 < len(classes) <= 30:
        parts.append(f"<details open><summary><b>Confusion matrix</b></summary>{confusion_table(matrix, classes)}"
                     "</details>")
    return wrap("".join(parts))


def report_html(r: Report) -> str:
    """An adaptation diagnosis: the change of input, totals before and after, findings, ranked fixes,
    the verdict and the layers at both inputs."""
    def n(v: int | None) -> str:
        return "-" if v is None else f"{v:,}"

    after = r.after or {}
    parts = [f"<h1>{escape(r.model)}</h1><div class='meta'>design input {fmt_shape(r.design_input)} → "
             f"{fmt_shape(r.input)} (C x H x W) · pooling rounds {escape(r.rounding)}</div>",
             _cards([("parameters", f"{n(after.get('params'))}", f"at the design input {n(r.before['params'])}"),
                     ("MACs", f"{n(after.get('macs'))}", f"at the design input {n(r.before['macs'])}")]),
             f"<p><b>Verdict</b>: {escape(r.verdict)}</p>"]
    if r.error:
        parts.append(f"<p class='meta'>{escape(r.error)}</p>")
    if r.findings:
        items = "".join(f"<li><b>{escape(f.layer or '-')}</b> <span class='sub'>{escape(f.kind)}</span>: "
                        f"{escape(f.detail)}</li>" for f in r.findings)
        parts.append(f"<details open><summary><b>Findings ({len(r.findings)})</b></summary><ul>{items}</ul></details>")
    if r.fixes:
        rows = "".join(
            f"<tr><td>{f.id}</td><td>{escape(f.name)}</td><td>{fmt_shape(f.input)}</td><td>{f.params:,}</td>"
            f"<td>{f.macs:,}</td><td>{escape(f.weights)}</td><td style='white-space:normal;text-align:left'>"
            f"{'<br>'.join(escape(c) for c in f.changes)}"
            f"{'<br><i>leaves: ' + escape('; '.join(f.remaining)) + '</i>' if f.remaining else ''}</td></tr>"
            for f in r.fixes)
        parts.append("<h2>Fixes, best first</h2><table><thead><tr><th>#</th><th>Fix</th><th>Input</th><th>Params</th>"
                     f"<th>MACs</th><th>Weights</th><th>Changes</th></tr></thead><tbody>{rows}</tbody></table>")
    rows = "".join(
        f"<tr><td>{escape(str(x['layer']))}</td><td>{escape(str(x['type']))}</td>"
        f"<td>{fmt_shape(x['design_shape']) if x.get('design_shape') else '-'}</td>"
        f"<td>{fmt_shape(x['shape']) if x.get('shape') else 'fails' if x.get('fails') else '-'}</td>"
        f"<td>{n(x.get('design_params'))}</td><td>{n(x.get('params'))}</td></tr>" for x in r.layers)
    d, i = fmt_shape(r.design_input), fmt_shape(r.input)
    parts.append(f"<details><summary><b>Layers at both inputs</b> <span class='sub'>{len(r.layers)} rows</span>"
                 f"</summary><table><thead><tr><th>Layer</th><th>Type</th><th>Output @ {d}</th><th>Output @ {i}</th>"
                 f"<th>Params</th><th>Params (new)</th></tr></thead><tbody>{rows}</tbody></table></details>")
    return wrap("".join(parts))
