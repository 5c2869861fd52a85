"""List the model zoo: name, paper, year, design input, parameters, MACs and the paper's reported accuracy;
then the other names some models answer to."""

from __future__ import annotations

import argparse

from ._common import add_format_arg, print_json

NAME = "zoo"
HELP = "list the models: paper, year, default input, params, MACs, reported accuracy"
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
                     "params": t["params"], "macs": t["macs"], "accuracy": mi.accuracy, "description": mi.description,
                     "aliases": zoo.aliases(name)})
    if args.format == "json":
        print_json(rows)
        return 0
    from rich.table import Table

    from ..report.text import console

    con = console()
    cells = [[r["name"], str(r["year"]), "x".join(map(str, r["input"])), f"{r['params']:,}", f"{r['macs']:,}"]
             for r in rows]
    heads = ("Model", "Year", "Input", "Params", "MACs")
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    # The figures stay on one line; the two texts share the rest of the width (a border and two
    # spaces of padding per column): the paper cut short, its year being beside it, and the
    # reported accuracy wrapped, so none of it is lost.
    rest = max(con.width - sum(widths) - 3 * (len(heads) + 2) - 1, 16)
    paper_w = rest * 2 // 5
    t = Table(title="cnnlab zoo (inputs are C x H x W; --format json for the full texts)", title_justify="left",
              header_style="bold")
    for h, w in zip(heads, widths):
        t.add_column(h, justify="left" if h in ("Model", "Input") else "right", no_wrap=True, min_width=w)
    t.add_column("Paper / source", width=paper_w, no_wrap=True, overflow="ellipsis")
    t.add_column("Reported", width=rest - paper_w)
    for r, c in zip(rows, cells):
        t.add_row(*c, r["paper"], r["accuracy"] or "-")
    con.print(t)
    for r in rows:
        for other in r["aliases"]:
            con.print(f"{other}: another name for {r['name']}")
    return 0
