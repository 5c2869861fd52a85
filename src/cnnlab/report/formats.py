"""Machine-readable forms of an analysis: JSON (the stable contract), CSV and Markdown."""

from __future__ import annotations

import csv
import io
from typing import Any

from ..analysis import CONVENTIONS, Analysis
from ..layers import fmt_shape
from ._safe import safe_text

COLUMNS = ("name", "type", "output_shape", "activation_size", "params", "buffers", "macs", "connections",
           "rf_size", "rf_jump")


def to_json(a: Analysis) -> dict[str, Any]:
    d = a.to_dict()
    meta = dict(d.pop("meta", {}))
    d["conventions"] = meta.pop("conventions", CONVENTIONS)
    if meta:
        d["meta"] = meta
    return d


def _rows(a: Analysis) -> list[list[Any]]:
    rows = []
    for ly in a.layers:
        (rh, jh), (rw, jw) = ly.rf
        rows.append([ly.name, ly.type, fmt_shape(ly.output_shape), ly.activation_size, ly.params, ly.buffers,
                     ly.macs, ly.connections, f"{rh}x{rw}", f"{jh}x{jw}"])
    return rows


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\|<>`*[]"})


def csv_cell(v: Any) -> Any:
    """A text cell that a spreadsheet will not run as a formula (OWASP: a leading ``'`` on cells that
    start with = + - @ tab or CR); numbers pass unchanged."""
    if not isinstance(v, str):
        return v
    return "'" + v if v.startswith(_FORMULA_START) else v


def md_text(v: Any) -> str:
    """Text for a Markdown table cell: one line, with ``|`` and markup characters escaped."""
    return safe_text(v).translate(_MD_SPECIAL)


def to_csv(a: Analysis) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    w.writerows([csv_cell(v) for v in r] for r in _rows(a))
    t = a.totals
    w.writerow(["total", "", fmt_shape(a.output_shape), t["activation_size"], t["params"], t["buffers"], t["macs"],
                t["connections"], "", ""])
    return buf.getvalue()


def to_markdown(a: Analysis) -> str:
    head = ["Layer", "Type", "Output (CxHxW)", "Activations", "Params", "Buffers", "MACs", "Connections",
            "RF", "Jump"]
    lines = [f"**{md_text(a.model)}** at input {fmt_shape(a.input_shape)} (C x H x W)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in _rows(a):
        lines.append("| " + " | ".join(f"{v:,}" if isinstance(v, int) else md_text(v) for v in r) + " |")
    t = a.totals
    lines.append(f"| **total** | | {fmt_shape(a.output_shape)} | {t['activation_size']:,} | {t['params']:,} | "
                 f"{t['buffers']:,} | {t['macs']:,} | {t['connections']:,} | | |")
    sp = a.split
    lines += ["", "| Split | Params | MACs |", "|---|---|---|"]
    for k in ("conv", "dense", "other"):
        lines.append(f"| {k} | {sp[k]['params']:,} ({_pct(sp[k]['params'], t['params'])}) | "
                     f"{sp[k]['macs']:,} ({_pct(sp[k]['macs'], t['macs'])}) |")
    lines += ["", f"_{a.meta.get('conventions', CONVENTIONS)}_", ""]
    return "\n".join(lines)


def _pct(x: int, total: int) -> str:
    return f"{100 * x / total:.1f}%" if total else "0.0%"
