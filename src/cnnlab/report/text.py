"""Terminal tables with rich."""

from __future__ import annotations

import shutil
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..analysis import CONVENTIONS, Analysis
from ..layers import fmt_shape
from ..text import safe_text
from ._safe import markup
from .numbers import count, human


def console() -> Console:
    width = shutil.get_terminal_size((160, 40)).columns if sys.stdout.isatty() else 160
    return Console(width=max(width, 100), highlight=False)


def _bytes(v: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if v < 1024:
            return f"{v:.4g} {unit}"
        v /= 1024
    return f"{v:.4g} PiB"


def summary_table(a: Analysis) -> Table:
    """The layer table. Figures never shrink into an ellipsis: when the terminal is too narrow, the layer
    names fold onto a second line instead (a transformer's module paths are long)."""
    title = f"{markup(a.model)} at input {fmt_shape(a.input_shape)} (C x H x W)"
    rows: list[tuple[str, ...]] = []
    starts: dict[int, list] = {}
    for b in a.blocks.values():
        starts.setdefault(b.start, []).append(b)
    for i, ly in enumerate(a.layers):
        for b in starts.get(i, []):
            rows.append((f"[bold cyan]{'  ' * b.depth}{markup(b.name)}[/]", f"[cyan]{markup(b.type)}[/]",
                         f"[cyan]{fmt_shape(b.output_shape)}[/]", "", f"[cyan]{count(b.params)}[/]", "",
                         f"[cyan]{count(b.macs)}[/]", "", "", ""))
        (rh, jh), (rw, jw) = ly.rf
        flag = " [yellow]![/]" if ly.findings else ""
        name = "  " * ly.depth + markup(ly.name) + (" [dim](aux)[/]" if ly.aux else "") + flag
        rows.append((name, markup(ly.type), fmt_shape(ly.output_shape), count(ly.activation_size), count(ly.params),
                     count(ly.buffers), count(ly.macs), count(ly.connections), f"{rh}x{rw}", f"{jh}x{jw}"))
    tot = a.totals
    last = [("[bold]total[/]", "", fmt_shape(a.output_shape), count(tot["activation_size"]), count(tot["params"]),
             count(tot["buffers"]), count(tot["macs"]), count(tot["connections"]), "", "")]
    if a.aux_totals:
        x = a.aux_totals
        last.append(("[dim]auxiliary heads[/]", "", "", count(x["activation_size"]), count(x["params"]),
                     count(x["buffers"]), count(x["macs"]), count(x["connections"]), "", ""))
    t = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    heads = ("Layer", "Type", "Output", "Activations", "Params", "Buffers", "MACs", "Connections", "RF", "Jump")
    for k, col in enumerate(heads):
        if k == 0:
            t.add_column(col, justify="left", overflow="fold")
            continue
        widest = max([Text.from_markup(r[k]).cell_len for r in rows + last] + [len(col)])
        t.add_column(col, justify="left" if k == 1 else "right", no_wrap=True, min_width=widest)
    for r in rows:
        t.add_row(*r)
    t.add_section()
    for r in last:
        t.add_row(*r)
    return t


def _training(a: Analysis, key: str, note: str = "") -> str:
    """The figure of the module as trained, beside the inference one, when auxiliary heads add to it."""
    return f"; {a.training_totals[key]:,} in training{note}" if a.aux_totals else ""


def render_summary(a: Analysis, explain: bool = False, con: Console | None = None) -> None:
    con = con or console()
    con.print(summary_table(a))
    tot, sp, mem = a.totals, a.split, a.memory
    pct = lambda x, n: f"{100 * x / n:.1f}%" if n else "0%"  # noqa: E731
    con.print(
        f"Params {tot['params']:,} ({human(tot['params'])}{_training(a, 'params', ' with the auxiliary heads')}), "
        f"buffers {tot['buffers']:,}; "
        f"MACs {tot['macs']:,} ({human(tot['macs'])}, {human(2 * tot['macs'])} FLOPs{_training(a, 'macs')})"
    )
    con.print(
        f"Conv vs dense: params {human(sp['conv']['params'])} ({pct(sp['conv']['params'], tot['params'])}) / "
        f"{human(sp['dense']['params'])} ({pct(sp['dense']['params'], tot['params'])}); "
        f"MACs {human(sp['conv']['macs'])} ({pct(sp['conv']['macs'], tot['macs'])}) / "
        f"{human(sp['dense']['macs'])} ({pct(sp['dense']['macs'], tot['macs'])})"
    )
    con.print(
        f"Memory (fp{8 * mem['bytes_per_value']}{', network and auxiliary heads' if a.aux_totals else ''}): "
        f"params {_bytes(mem['param_bytes'])}, "
        f"activations {_bytes(mem['activation_bytes'])} for a batch of {mem['batch']}"
    )
    if "saved_for_backward_bytes" in mem:
        con.print(
            f"Training step (batch {mem['batch']}): gradients {_bytes(mem['gradient_bytes'])}, kept for backward "
            f"{_bytes(mem['saved_for_backward_bytes'])}; with SGD momentum {_bytes(mem['train_sgd_bytes'])}, "
            f"with Adam {_bytes(mem['train_adam_bytes'])}"
        )
    for ly in a.layers:
        if ly.shares:
            con.print(f"[dim]Note: {markup(ly.name)} shares weights with {markup(ly.shares)}: its params are "
                      "counted there, once[/]")
    if a.meta.get("path") == "described":
        con.print(f"Module built in {a.meta['mode']} mode and described")
    if a.meta.get("path") == "measured":
        con.print(f"Measured in {a.meta['mode']} mode ({a.meta['dtype']}); --mode train for training behaviour")
    for n in a.meta.get("notes", []):
        con.print(f"[dim]Note: {markup(str(n))}[/]")
    if a.meta.get("paper"):
        acc = f"; reported: {markup(a.meta['accuracy'])}" if a.meta.get("accuracy") else ""
        con.print(f"[dim]Paper: {markup(a.meta['paper'])} ({markup(a.meta.get('year', ''))}){acc}[/]")
    gone = a.meta.get("unreached")
    if gone:
        names = ", ".join(safe_text(str(m)) for m in gone["modules"][:8]) + (", ..." if len(gone["modules"]) > 8 else "")
        con.print(f"[yellow]Not counted: {gone['params']:,} params and {gone['buffers']:,} buffer values that "
                  f"forward never reaches ({names})[/]")
    if explain:
        con.print()
        con.print("[bold]Arithmetic[/]")
        for ly in a.layers:
            if ly.notes:
                con.print(f"{markup(ly.name)} ({markup(ly.type)} {fmt_shape(ly.input_shape)} -> {fmt_shape(ly.output_shape)})")
                for n in ly.notes:
                    con.print(f"    {markup(n)}")
    findings = a.findings
    if findings:
        con.print()
        con.print(f"[yellow]Findings ({len(findings)})[/]")
        for f in findings:
            con.print(f"  [yellow]![/] {markup(f['layer'])}: {markup(f['detail'])}")
    con.print(f"[dim]{markup(a.meta.get('conventions', CONVENTIONS))}[/]")
