"""Write a self-contained HTML report: the network diagram, the layer table, findings and, with
--run DIR (a 'cnnlab train --out DIR' folder), the training curves."""

from __future__ import annotations

import argparse

from ._common import add_input_args, add_model_args, load_network, model_input

NAME = "report"
HELP = "self-contained HTML page: diagram, table, findings, training curves"
ORDER = 60


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_input_args(p)
    p.add_argument("--run", metavar="DIR", help="a training output folder with metrics.json, for the curves")
    p.add_argument("--out", metavar="FILE", default=None, help="output file (default: MODEL.html)")
    p.add_argument("--kwargs", metavar="K=V,...", help="arguments for a module's class or factory (file.py:NAME): "
                   "num_classes=10,aux_logits=False or a JSON object")
    p.add_argument("--mode", choices=("eval", "train"), default="eval",
                   help="mode a module is built and measured in (default eval)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..analysis import analyze
    from ..report import html
    from ..report._safe import safe_text
    from ..usermodule import is_module_ref

    if is_module_ref(args.model):  # lifted when possible, else measured (a page without the diagram)
        from .summary import module_analysis

        opts = argparse.Namespace(**vars(args), batch=1, dtype="fp32", depth=None, explain=False)
        opts.input = [args.input] if args.input else None
        net, a = module_analysis(opts)
    else:
        if args.kwargs:
            from ..errors import CnnlabError

            raise CnnlabError("--kwargs applies to a module (file.py:NAME); a zoo model takes --num-classes, "
                              "--in-channels, --aux")
        net = load_network(args)
        shape = model_input(args, net.input_shape) if args.input else net.input_shape
        a = analyze(net, shape)
    metrics = html.load_metrics(args.run) if args.run else None
    out = Path(args.out or f"{Path(a.model).name}.html")
    html.write(out, html.render(net, a, metrics))
    print(f"wrote {safe_text(out)} ({out.stat().st_size:,} bytes)")
    return 0
