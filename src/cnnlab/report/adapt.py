"""The adaptation as terminal tables: the diagnosis (layers at both inputs, findings, ranked
fixes, verdict) and an applied fix."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from ..adapt import Fix, Report
from ..analysis import Analysis
from ..layers import fmt_shape
from ._safe import markup
from .text import render_summary


def render_report(report: Report, con: Console) -> None:
    """The diagnosis as terminal tables: layers side by side, findings, totals, ranked fixes."""
    def n(v: int | None) -> str:
        return "-" if v is None else f"{v:,}" if v else "0"

    def shp(s: list[int]) -> str:  # a flat vector reads like the other counts: 9,216
        return f"{s[0]:,}" if len(s) == 1 else fmt_shape(s)

    d, i = fmt_shape(report.design_input), fmt_shape(report.input)
    con.print(f"[bold]{markup(report.model)}[/]: design input {d} -> {i} (C x H x W); pooling rounds {report.rounding}",
              soft_wrap=True)
    t = Table(title_justify="left", header_style="bold")
    for col in ("Layer", "Type", f"Output @ {d}", f"Output @ {i}", "Params", "Params (new)", "MACs", "MACs (new)"):
        t.add_column(col, justify="left" if col in ("Layer", "Type") else "right", no_wrap=True)
    flagged = {f.layer for f in report.findings if f.kind not in ("macs", "params")}
    prev: tuple[Any, Any] = (None, None)
    for r in report.layers:  # layers that keep the shape and have no weights (ReLU, LRN, ...) are left out
        passive = (r["design_shape"], r["shape"]) == prev and not r["design_params"] and not r["params"]
        prev = (r["design_shape"], r["shape"])
        if passive and r["layer"] not in flagged:
            continue
        shape = shp(r["shape"]) if r["shape"] else "[red]fails[/]" if r.get("fails") else "-"
        changed = r["shape"] and (r["shape"] != r["design_shape"] or r["params"] != r["design_params"])
        name = markup(r["layer"]) + (" [yellow]![/]" if r["layer"] in flagged else "")
        t.add_row(name, markup(r["type"]), shp(r["design_shape"]), f"[yellow]{shape}[/]" if changed else shape,
                  n(r["design_params"]), n(r["params"]), n(r["design_macs"]), n(r["macs"]))
    after = report.after or {}
    t.add_section()
    t.add_row("[bold]total[/]", "", "", "", n(report.before["params"]), n(after.get("params")),
              n(report.before["macs"]), n(after.get("macs")))
    con.print(t)
    shown = [f for f in report.findings if f.kind != "macs"]
    macs = sum(1 for f in report.findings if f.kind == "macs")
    if shown or macs:
        con.print("[bold]Findings[/]")
        for f in shown:
            con.print(f"  {markup(f.layer or '-')} [dim]{f.kind}[/]: {markup(f.detail)}", soft_wrap=True, highlight=False)
        if macs:
            con.print(f"  MACs change in {macs} more layers (in the table)")
    o = report.other_rounding
    if o:
        tail = f"params {n(o.get('params'))}, MACs {n(o.get('macs'))}" if "params" in o else o.get("error", "")
        con.print(f"With {o['mode']} rounding instead: {markup(tail)}", soft_wrap=True)
    if report.fixes:
        ft = Table(title="Fixes, best first (--apply N)", title_justify="left", header_style="bold")
        for col in ("#", "Fix", "Input", "Params", "MACs", "Weights", "Changes"):
            ft.add_column(col, justify="right" if col in ("#", "Params", "MACs") else "left",
                          no_wrap=col not in ("Weights", "Changes"))
        for f in report.fixes:
            left = "; ".join(f.remaining)
            ft.add_row(str(f.id), markup(f.name), fmt_shape(f.input), n(f.params), n(f.macs),
                       markup(f.weights),
                       "\n".join(markup(c) for c in f.changes) + (f"\n[dim]leaves: {markup(left)}[/]" if left else ""))
        con.print(ft)
    con.print(f"[bold]Verdict[/]: {markup(report.verdict)}", soft_wrap=True)


def render_applied(fix: Fix, a: Analysis, con: Console, *, trained: dict[str, float] | None = None,
                   saved: str | None = None) -> None:
    """The fix, its changes, the adapted network's summary, the training check and where it was saved."""
    con.print(f"[bold]Fix {fix.id} ({markup(fix.name)})[/]: {markup(fix.description)}", soft_wrap=True)
    for line in fix.changes:
        con.print(f"  - {markup(line)}", soft_wrap=True)
    render_summary(a, con=con)
    if trained:
        shape = "x".join(map(str, a.input_shape))
        con.print(f"One training step at {shape}: loss {trained['loss']:.4f}, "
                  f"weights moved {trained['weight_change']:.4g} in total")
    if saved:
        con.print(f"Saved the adapted network to {markup(saved)}")
