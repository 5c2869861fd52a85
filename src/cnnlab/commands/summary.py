"""Analyze a network layer by layer without running it: output shape, activation size, parameters,
buffers, MACs, connections and receptive field of every layer, with totals, the conv-vs-dense
split and memory. --explain shows each layer's arithmetic."""

from __future__ import annotations

import argparse

from ._common import add_format_arg, add_input_args, add_model_args, load_network, model_input, print_json

NAME = "summary"
HELP = "analyze a model layer by layer (no tensors, any input size)"
ORDER = 10

BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp64": 8}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_input_args(p)
    add_format_arg(p)
    p.add_argument("--explain", action="store_true", help="show each layer's arithmetic and every inexact division")
    p.add_argument("--batch", type=int, default=1, help="batch size for activation memory (default 1)")
    p.add_argument("--dtype", choices=tuple(BYTES), default="fp32", help="bytes per value for memory (default fp32)")


def run(args: argparse.Namespace) -> int:
    from ..analysis import analyze
    from ..errors import CnnlabError

    net = load_network(args)
    shape = model_input(args, net.input_shape) if args.input else net.input_shape
    if args.batch < 1:
        raise CnnlabError(f"--batch must be >= 1, got {args.batch}")
    a = analyze(net, shape, batch=args.batch, bytes_per_value=BYTES[args.dtype])
    if args.format == "json":
        from ..report.formats import to_json

        print_json(to_json(a))
    elif args.format == "csv":
        from ..report.formats import to_csv

        print(to_csv(a), end="")
    elif args.format == "markdown":
        from ..report.formats import to_markdown

        print(to_markdown(a))
    else:
        from ..report.text import render_summary

        render_summary(a, explain=args.explain)
    return 0
