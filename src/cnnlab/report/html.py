"""A self-contained HTML page: the network diagram, its layer table, findings and, for a training
run, its loss and accuracy curves. No external assets: one file to mail or archive."""

from __future__ import annotations

import json
import math
import secrets
from html import escape as _html_escape
from pathlib import Path
from typing import Any

from ..analysis import CONVENTIONS, Analysis
from ..errors import CnnlabError
from ..files import write_text
from ..layers import fmt_shape
from ..network import Network
from . import diagram
from ._safe import safe_text
from .numbers import count, human
from .script import JS


def escape(v: Any) -> str:
    """Any value as HTML text: control characters written out, markup characters and both quote
    kinds escaped, so text from a spec, checkpoint or metrics file is shown and never run."""
    return _html_escape(safe_text(v), quote=True)

CSS = """
.cnnlab{font-family:system-ui,sans-serif;color:#111;font-size:14px}
.cnnlab h1{font-size:22px;margin:0 0 4px}.cnnlab h2{font-size:16px;margin:28px 0 8px}
.cnnlab .meta{color:#4b5563;font-size:13px}
.cnnlab .cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.cnnlab .card{border:1px solid #e5e7eb;border-radius:8px;padding:10px 14px;min-width:150px}
.cnnlab .card b{display:block;font-size:18px}
.cnnlab .card span{font-size:12px;color:#6b7280}
.cnnlab table{border-collapse:collapse;font-size:12px}
.cnnlab th,.cnnlab td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
.cnnlab th:first-child,.cnnlab td:first-child,.cnnlab th:nth-child(2),.cnnlab td:nth-child(2){text-align:left}
.cnnlab tr.find td:first-child{color:#b45309}
.cnnlab .flex{display:flex;gap:32px;align-items:flex-start;flex-wrap:wrap}
.cnnlab .cl-net{display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap}
.cnnlab .cl-dgw{flex:0 1 auto;min-width:280px;max-width:min(100%,760px)}
.cnnlab .cl-dg{overflow:auto;max-height:85vh;border:1px solid #eee;border-radius:8px;padding:8px;cursor:grab}
.cnnlab .cl-dg.cl-drag{cursor:grabbing;user-select:none}
.cnnlab .cl-side{flex:1 1 560px;min-width:0}
.cnnlab .cl-tw{overflow:auto;max-height:70vh;border:1px solid #eee;border-radius:8px}
.cnnlab .cl-tw thead th{position:sticky;top:0;background:#f9fafb;cursor:pointer;user-select:none}
.cnnlab .cl-tw thead th[aria-sort=ascending]::after{content:" \\25b2"}
.cnnlab .cl-tw thead th[aria-sort=descending]::after{content:" \\25bc"}
.cnnlab .cl-tw tfoot td{border-top:2px solid #d1d5db;background:#f9fafb}
.cnnlab .cl-tw tbody tr{cursor:pointer}
.cnnlab .cl-tw tr.hl td{background:#fef3c7}.cnnlab .cl-tw tr.sel td{background:#fde2e2}
.cnnlab .cl-ctl{display:flex;gap:6px;align-items:center;margin:0 0 6px;font-size:12px;flex-wrap:wrap}
.cnnlab .cl-ctl button{font:inherit;padding:2px 8px;border:1px solid #d1d5db;border-radius:6px;background:#fff;cursor:pointer}
.cnnlab .cl-det{border:1px solid #e5e7eb;border-radius:8px;padding:8px 12px;margin:0 0 8px;font-size:12px;height:132px;overflow:auto;resize:vertical}
.cnnlab .cl-det pre{white-space:pre-wrap;margin:4px 0;font-size:12px}
.cnnlab .cl-det ul{margin:4px 0;padding-left:18px;color:#b45309}
.cnnlab .cl-dg .n,.cnnlab .cl-dg .tg{cursor:pointer}
.cnnlab .cl-dg .n.hl>rect{stroke:#d97706;stroke-width:2.5}
.cnnlab .cl-dg .n.sel>rect{stroke:#dc2626;stroke-width:3}
.cnnlab .conv{font-size:12px;color:#6b7280;margin-top:24px}
@media print{
.cnnlab *{-webkit-print-color-adjust:exact;print-color-adjust:exact}
.cnnlab .cl-ctl,.cnnlab .cl-det{display:none}
.cnnlab .cl-net{display:block}
.cnnlab .cl-dg,.cnnlab .cl-tw{max-height:none;overflow:visible;border:0;padding:0}
.cnnlab .cl-dg svg{max-width:100%;height:auto}
.cnnlab .cl-tw thead th{position:static}
.cnnlab .cl-tw tr{break-inside:avoid}
.cnnlab .cl-tw tr.hl td,.cnnlab .cl-tw tr.sel td{background:none}
.cnnlab h2{break-after:avoid}
}
"""
PAGE_CSS = "body{margin:24px;max-width:1400px}"
COLLAPSE_ABOVE = 60  # networks with more rows than this open with every block collapsed


def _legend_rows(names: list[str], x0: float, x1: float) -> list[list[tuple[float, str]]]:
    """Legend entries packed left to right in rows between ``x0`` and ``x1`` (about 5.6 px a character)."""
    rows: list[list[tuple[float, str]]] = [[]]
    x = x0
    for name in names:
        width = 22 + 5.6 * len(name)
        if rows[-1] and x + width > x1:
            rows.append([])
            x = x0
        rows[-1].append((x, name))
        x += width + 10
    return rows


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], w: int = 420, h: int = 240,
               guides: dict[str, float] | None = None) -> str:
    """A small SVG line chart with axes, dashed horizontal ``guides`` and a legend in rows below the
    ``w`` x ``h`` chart, where it cannot cover the curves."""
    guides = guides or {}
    pts = [p for s in series.values() for p in s]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0 = min([p[1] for p in pts] + list(guides.values()))
    y1 = max([p[1] for p in pts] + list(guides.values()))
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    ml, mr, mt, mb = 48, 12, 24, 30
    colors = ["#2563eb", "#dc2626", "#059669", "#d97706"]
    entries = [(name, colors[i % len(colors)], False) for i, name in enumerate(series)]
    entries += [(name, "#6b7280", True) for name in guides]
    rows = _legend_rows([e[0] for e in entries], ml, w - mr)

    def sx(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * (w - ml - mr)

    def sy(y: float) -> float:
        return h - mb - (y - y0) / (y1 - y0) * (h - mt - mb)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 6 + 13 * len(rows)}" '
           'font-family="system-ui" font-size="10">',
           f'<text x="{ml}" y="14" font-size="12" font-weight="600">{escape(title)}</text>',
           f'<path d="M{ml},{mt} L{ml},{h - mb} L{w - mr},{h - mb}" stroke="#9ca3af" fill="none"/>']
    placed = [(x, h + 4 + 13 * r, name) for r, row in enumerate(rows) for x, name in row]
    for (x, y, name), (_, c, dashed) in zip(placed, entries):
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        out.append(f'<path d="M{x:.1f},{y - 3} l16,0" stroke="{c}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{x + 20:.1f}" y="{y}" fill="{c}">{escape(name)}</text>')
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        out.append(f'<text x="{ml - 4}" y="{sy(yv) + 3:.1f}" text-anchor="end" fill="#6b7280">{yv:.3g}</text>')
    out.append(f'<text x="{ml}" y="{h - 12}" fill="#6b7280">epoch {x0:g}</text>')
    out.append(f'<text x="{w - mr}" y="{h - 12}" text-anchor="end" fill="#6b7280">{x1:g}</text>')
    for name, yv in guides.items():
        out.append(f'<path d="M{ml},{sy(yv):.1f} L{w - mr},{sy(yv):.1f}" stroke="#6b7280" stroke-width="1" '
                   f'stroke-dasharray="4 3"><title>{escape(name)}</title></path>')
    for i, (_name, s) in enumerate(series.items()):
        c = colors[i % len(colors)]
        d = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y) in enumerate(s))
        out.append(f'<path d="{d}" stroke="{c}" stroke-width="2" fill="none"/>')
        out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{c}"/>' for x, y in s]
    out.append("</svg>")
    return "".join(out)


def load_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    p = Path(run_dir) / "metrics.json"
    try:
        data = json.loads(p.read_text())
    except OSError:
        raise CnnlabError(f"no metrics in {run_dir}: expected {p} written by 'cnnlab train --out DIR'") from None
    except json.JSONDecodeError as e:
        raise CnnlabError(f"{p} is not valid JSON ({e.msg}); re-run training or pass another --run") from None
    if not isinstance(data, list):
        raise CnnlabError(f"{p} should hold a list of per-epoch records")
    for i, row in enumerate(data):
        problem = _bad_record(row)
        if problem:
            raise CnnlabError(f"{p}: record {i + 1} {problem}; re-run training or pass another --run")
    return data


_CURVE_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "label_smoothing")


def _bad_record(row: Any) -> str:
    """What is wrong with one metrics.json record ('' when nothing): the curves read these keys."""
    if not isinstance(row, dict):
        return "is not an object"
    epoch = row.get("epoch")
    if type(epoch) is not int or epoch < 1:
        return f"has no epoch number (got {safe_text(repr(epoch))[:40]})"
    for k in _CURVE_KEYS:
        v = row.get(k)
        if v is not None and (type(v) not in (int, float) or not math.isfinite(v)):
            return f"has a {k} that is not a finite number (got {safe_text(repr(v))[:40]})"
    k = row.get("num_classes")
    if k is not None and (type(k) is not int or k < 1):
        return f"has a num_classes that is not a positive integer (got {safe_text(repr(k))[:40]})"
    return ""


def curves(metrics: list[dict[str, Any]], label_smoothing: float | None = None,
           num_classes: int | None = None) -> str:
    """Loss and accuracy charts; a label-smoothed training loss is named as such, with its floor."""
    from ..train.plots import loss_setup, smoothing_floor, train_loss_label

    def series(key: str) -> list[tuple[float, float]]:
        return [(m["epoch"], m[key]) for m in metrics if m.get(key) is not None]

    ls, k = loss_setup(metrics, label_smoothing, num_classes)
    note = train_loss_label(ls)
    loss = {f"train ({note})" if note else "train": series("train_loss"),
            "validation (plain cross-entropy)" if note else "validation": series("val_loss")}
    guides = {f"least training loss with smoothing ({smoothing_floor(ls, k):.2f})": smoothing_floor(ls, k)} \
        if note and k else {}
    return line_chart("loss", loss, guides=guides) + \
        line_chart("accuracy", {"train": series("train_acc"), "validation": series("val_acc")})


def script_json(data: Any) -> str:
    """JSON that is safe inside ``<script>``: no ``</script>``, ``<!--`` or line separators can end
    or bend the element, whatever names a spec or checkpoint carries."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for ch, sub in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, sub)
    return text


def _data(a: Analysis, t: diagram.Tree, collapsed: set[str]) -> dict[str, Any]:
    """What the script needs beyond the markup: the diagram tree, each layer's arithmetic and
    findings, and the figures the table sorts by."""
    layers, keys = [], []
    for ly in a.layers:
        (rh, jh), (rw, jw) = ly.rf
        layers.append({"n": ly.name, "ty": ly.type, "notes": ly.notes, "f": [d for _, d in ly.findings],
                       "io": f"{fmt_shape(ly.input_shape)} -> {fmt_shape(ly.output_shape)}"})
        keys.append([ly.activation_size, ly.params, ly.buffers, ly.macs, ly.connections, rh * rw, jh * jw])
    return {"tree": t, "collapsed": sorted(collapsed), "layers": layers, "k": keys,
            "frames": [[f["id"], *f["rows"]] for f in diagram.frames(t)]}


def fragment(net: Network | None, a: Analysis, metrics: list[dict[str, Any]] | None = None, *,
             collapsed: bool | None = None, uid: str | None = None) -> str:
    """The report as one ``<div class="cnnlab">`` with its style and script inside: what a notebook
    cell displays and what ``render`` wraps in a page. ``collapsed`` opens every block collapsed
    (default: when the network has more than ``COLLAPSE_ABOVE`` rows); ``uid``, the container's id,
    is random by default so two reports on one page never share an id."""
    uid = uid or f"cnnlab-{secrets.token_hex(5)}"
    t, sp = a.totals, a.split
    meta = a.meta
    paper = f"{escape(meta.get('paper', ''))} ({escape(meta.get('year', ''))})" if meta.get("paper") else ""
    tr = a.training_totals
    train = (lambda k: f" · training, with auxiliary heads: {tr[k]:,}") if a.aux_totals else (lambda k: "")
    cards = [("parameters", human(t["params"]), f"{t['params']:,}{train('params')}"),
             ("MACs", human(t["macs"]), f"{human(2 * t['macs'])} FLOPs{train('macs')}"),
             ("buffers", human(t["buffers"]), "BatchNorm statistics"),
             ("conv / dense params", f"{human(sp['conv']['params'])} / {human(sp['dense']['params'])}", ""),
             ("activations", human(t["activation_size"]),
              f"{a.memory['activation_bytes'] / 2**20:.1f} MiB fp32{' in training' if a.aux_totals else ''}"),
             ("output", fmt_shape(a.output_shape), "")]
    rows = []
    for i, ly in enumerate(a.layers):
        (rh, jh), (rw, jw) = ly.rf
        cls = ' class="find"' if ly.findings else ""
        name = "&nbsp;" * 2 * ly.depth + escape(ly.name) + (" (aux)" if ly.aux else "")
        rows.append(f'<tr data-i="{i}"{cls}><td>{name}</td><td>{escape(ly.type)}</td><td>{fmt_shape(ly.output_shape)}</td>'
                    f"<td>{count(ly.activation_size)}</td><td>{count(ly.params)}</td><td>{count(ly.buffers)}</td>"
                    f"<td>{count(ly.macs)}</td><td>{count(ly.connections)}</td><td>{rh}x{rw}</td><td>{jh}x{jw}</td></tr>")
    total = (f"<tr><td><b>total</b></td><td></td><td>{fmt_shape(a.output_shape)}</td>"
             f"<td>{count(t['activation_size'])}</td><td><b>{count(t['params'])}</b></td><td>{count(t['buffers'])}</td>"
             f"<td><b>{count(t['macs'])}</b></td><td>{count(t['connections'])}</td><td></td><td></td></tr>")
    findings = "".join(f"<li><b>{escape(f['layer'])}</b>: {escape(f['detail'])}</li>" for f in a.findings)
    tree = diagram.tree(net, a) if net is not None else diagram.flat_tree(a)  # measured: the rows in order
    if collapsed is None:
        collapsed = len(a.layers) > COLLAPSE_ABOVE
    shut = {f["id"] for f in diagram.frames(tree)} if collapsed else set()
    parts = [
        f'<div class="cnnlab" id="{uid}"><style>{CSS}</style>',
        f"<h1>{escape(a.model)}</h1><div class='meta'>input {fmt_shape(a.input_shape)} (C x H x W)"
        f"{' · ' + paper if paper else ''}</div>",
        "<div class='cards'>" + "".join(f"<div class='card'><span>{k}</span><b>{escape(v)}</b><span>{escape(s)}</span></div>"
                                        for k, v, s in cards) + "</div>",
    ]
    if metrics:
        last = metrics[-1]
        best = max((m.get("val_acc") or 0 for m in metrics), default=0)
        parts.append(f"<h2>Training</h2><div class='meta'>{len(metrics)} epochs · best validation accuracy "
                     f"{best:.4f} · last train loss {last.get('train_loss', float('nan')):.4f}</div>")
        parts.append(f"<div class='flex'>{curves(metrics)}</div>")
    parts += [
        "<h2>Network</h2><div class='cl-net'><div class='cl-dgw'><div class='cl-ctl'>"
        "<button data-a='out' title='zoom out'>&minus;</button><span class='cl-zoom'>100%</span>"
        "<button data-a='in' title='zoom in (or ctrl + wheel)'>+</button><button data-a='fit'>fit</button>"
        "<button data-a='expand'>expand all</button><button data-a='collapse'>collapse all</button>"
        "<span class='meta'>click a block's title to fold it; drag to pan</span></div>",
        f"<div class='cl-dg'>{diagram.render(tree, shut, uid)}</div></div>",
        "<div class='cl-side'><div class='cl-det'></div><div class='cl-ctl'>"
        "<input class='cl-q' type='search' placeholder='filter by name or type' aria-label='filter layers'>"
        "<label><input class='cl-fo' type='checkbox'> findings only</label><span class='cl-shown meta'></span></div>"
        "<div class='cl-tw'><table><thead><tr><th>Layer</th><th>Type</th><th>Output</th><th>Activations</th>"
        "<th>Params</th><th>Buffers</th><th>MACs</th><th>Connections</th><th>RF</th><th>Jump</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody><tfoot>{total}</tfoot></table></div></div></div>",
    ]
    if findings:
        parts.append(f"<h2>Findings</h2><ul>{findings}</ul>")
    parts.append(f"<div class='conv'>{escape(a.meta.get('conventions', CONVENTIONS))}</div>")
    parts.append(f'<script type="application/json" class="cl-data">{script_json(_data(a, tree, shut))}</script>')
    parts.append(f'<script>{JS}(document.getElementById("{uid}"));</script></div>')
    return "".join(parts)


def render(net: Network | None, a: Analysis, metrics: list[dict[str, Any]] | None = None, *,
           collapsed: bool | None = None) -> str:
    """The report as a standalone page (``fragment`` in a document of its own)."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(a.model)} — cnnlab</title>"
            f"<style>{PAGE_CSS}</style></head><body>{fragment(net, a, metrics, collapsed=collapsed)}</body></html>")


def write(path: str | Path, html: str) -> None:
    """Write the page atomically; a missing folder or a folder in the file's place is one line."""
    write_text(path, html)
