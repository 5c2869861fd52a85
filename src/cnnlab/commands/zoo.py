"""List the model zoo: name, paper, year, design input, parameters and MACs."""

from __future__ import annotations

import argparse

from ._common import add_format_arg, print_json

NAME = "zoo"
HELP = "list the models: paper, year, default input, params, MACs"
ORDER = 5


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_format_arg(p, ("table", "json"))


def run(args: argparse.Namespace) -> int:
    from .. import zoo
    from ..analysis import analyze

    rows = []
    for name in zoo.names():
        mi = zoo.info(name)
        t = analyze(zoo.get(name)).totals
        rows.append({"name": name, "paper": mi.paper, "year": mi.year, "input": list(mi.input),
                     "params": t["params"], "macs": t["macs"], "accuracy": mi.accuracy, "description": mi.description})
    if args.format == "json":
        print_json(rows)
        return 0
    from rich.table import Table

    from ..report.text import console

    t = Table(title="cnnlab zoo (inputs are C x H x W)", title_justify="left", header_style="bold")
    for col in ("Model", "Year", "Input", "Params", "MACs", "Paper / source"):
        t.add_column(col, justify="right" if col in ("Params", "MACs", "Year") else "left")
    for r in rows:
        t.add_row(r["name"], str(r["year"]), "x".join(map(str, r["input"])), f"{r['params']:,}", f"{r['macs']:,}",
                  r["paper"])
    console().print(t)
    return 0
