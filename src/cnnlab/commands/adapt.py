"""Adapt a model to a new input size, channel count or class count. Examples:

  cnnlab adapt alexnet-onetower --input 3x270x480 --num-classes 29
  cnnlab adapt lenet5 --input 1x28x28 --apply 1 --check
  cnnlab adapt vgg16 --input 3x32x32 --num-classes 10 --apply 1 --save vgg16-cifar.yaml
  cnnlab adapt alexnet --in-channels 1

The diagnosis compares every layer at the design input and at the new one: divisions that drop
rows or columns, 'same' layers that no longer keep the size, pooling that rounds differently in
floor (PyTorch, TensorFlow) and ceil (Caffe) mode, the first layer whose output vanishes and the
smallest input that works, and every change of parameters or MACs. Fixes come ranked, each with
its parameters, MACs and exact changes; --apply N shows the adapted network.

Exit status 2 when the model cannot run at the input (the fixes are still listed)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import CnnlabError
from ..report._safe import markup
from ._common import add_format_arg, add_input_args, add_model_args, load_network, model_input, print_json

NAME = "adapt"
HELP = "diagnose a model at a new input, channel or class count, and rank concrete fixes"
ORDER = 15


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_input_args(p)
    p.add_argument("--rounding", choices=("floor", "ceil"), default=None,
                   help="pooling rounding: floor (PyTorch, TensorFlow) or ceil (Caffe); default: as the model defines")
    p.add_argument("--apply", metavar="N", help="apply fix N (its rank or name) and show the adapted network")
    p.add_argument("--save", metavar="FILE", help="with --apply: write the adapted network as a YAML/JSON spec")
    p.add_argument("--check", action="store_true",
                   help="with --apply: build the adapted network and train one step on random data at its input")
    add_format_arg(p, ("table", "json"))


def _shape(args: argparse.Namespace, design: tuple[int, ...]) -> tuple[int, int, int]:
    c = args.in_channels
    if c is not None and c < 1:
        raise CnnlabError(f"--in-channels must be >= 1, got {c}")
    if args.input:
        return model_input(args, design)
    if c is None:
        raise CnnlabError("give the new input with --input CxHxW (or only the channels with --in-channels C)")
    return (c, design[1], design[2])


def run(args: argparse.Namespace) -> int:
    from ..adapt import apply, diagnose

    if (args.save or args.check) and not args.apply:
        raise CnnlabError("--save and --check need --apply N: pick a fix first")
    if args.num_classes is not None and args.num_classes < 1:
        raise CnnlabError(f"--num-classes must be >= 1, got {args.num_classes}")
    # The design: the model as published; channels and classes are changes the diagnosis prices.
    net = load_network(argparse.Namespace(**{**vars(args), "num_classes": None, "in_channels": None}))
    report = diagnose(net, _shape(args, net.input_shape), num_classes=args.num_classes, rounding=args.rounding)
    if args.apply:
        digits = args.apply.isascii() and args.apply.isdigit() and len(args.apply) <= 9
        fix = report.fix(int(args.apply) if digits else args.apply)
        return _applied(args, apply(net, fix), fix)
    if args.format == "json":
        print_json(report.to_dict())
    else:
        from ..report.text import console

        render(report, console())
    if report.error:
        sys.stderr.write(f"cnnlab: error: {report.error}\n")
        return 2
    return 0


def _applied(args: argparse.Namespace, net: Any, fix: Any) -> int:
    from ..analysis import analyze
    from ..network import network_to_spec, save_spec

    a = analyze(net)
    trained = None
    if args.check:
        from ..adapt import train_step

        loss, moved = train_step(net)
        trained = {"loss": loss, "weight_change": moved}
    if args.save:
        try:
            save_spec(net, args.save)
        except OSError as e:
            raise CnnlabError(f"cannot write {args.save}: {e.strerror}") from None
    if args.format == "json":
        d = {"model": net.name, "input": list(net.input_shape), "fix": fix.to_dict(), "params": a.totals["params"],
             "macs": a.totals["macs"], "findings": a.findings, "network": network_to_spec(net)}
        if trained:
            d["train_step"] = trained
        print_json(d)
        return 0
    from ..report.text import console, render_summary

    con = console()
    con.print(f"[bold]Fix {fix.id} ({markup(fix.name)})[/]: {markup(fix.description)}", soft_wrap=True)
    for line in fix.changes:
        con.print(f"  - {markup(line)}", soft_wrap=True)
    render_summary(a, con=con)
    if trained:
        con.print(f"One training step at {'x'.join(map(str, net.input_shape))}: loss {trained['loss']:.4f}, "
                  f"weights moved {trained['weight_change']:.4g} in total")
    if args.save:
        con.print(f"Saved the adapted network to {markup(args.save)}")
    return 0


def render(report: Any, con: Any) -> None:
    """The diagnosis as terminal tables: layers side by side, findings, totals, ranked fixes."""
    from rich.table import Table

    from ..layers import fmt_shape

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
