"""Analyze a network layer by layer without running it: output shape, activation size, parameters,
buffers, MACs, connections and receptive field of every layer, with totals, the conv-vs-dense
split and memory. --explain shows each layer's arithmetic.

MODEL is a zoo name, a YAML/JSON spec, a Keras model (.keras, legacy .h5, or model.to_json() in a
.json), a Caffe .prototxt, a training checkpoint, or your own PyTorch module written file.py:NAME, nb.ipynb:NAME or
package.module:NAME (an nn.Module instance, a class, or a factory; --kwargs go to the latter two).
Warning: a module reference imports and runs that code, as 'python file.py' would.

A module is first lifted into the description (what adapt, --explain and the diagram need); when
that is not possible, or with --depth or --measured, it is measured instead: run once on fake
tensors (no arithmetic, no activation memory), every aten op counted. Measured MACs: conv and
dense as below, plus mm/bmm/addmm/baddbmm/matmul and attention (QK^T and AV, whichever kernel
runs): torch.utils.flop_counter's total / 2 on a train-mode forward with SDPA on the math backend
(attention is counted in eval mode too, where nn.MultiheadAttention's fast path hides it from
FlopCounterMode). The module is built in eval mode unless --mode train.

  cnnlab summary resnet50 --input 3x1024x1024
  cnnlab summary mynet.py:Net --input 1x28x28
  cnnlab summary torchvision.models:resnet50 --kwargs num_classes=10 --input 3x224x224
  cnnlab summary clip.py:TextImage --input 3x224x224 --input 77:int64 --depth 2"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import (
    add_format_arg,
    add_input_args,
    add_model_args,
    load_network,
    model_input,
    parse_dims,
    parse_kwargs,
    print_json,
)

NAME = "summary"
HELP = "analyze a model layer by layer (no tensors, any input size; your own nn.Module too)"
ORDER = 10

BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp64": 8}
TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp64": "float64", "float32": "float32",
                "float16": "float16", "bfloat16": "bfloat16", "float64": "float64", "int64": "int64", "long": "int64",
                "int32": "int32", "int": "int32", "bool": "bool"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_input_args(p, several=True)
    add_format_arg(p)
    p.add_argument("--explain", action="store_true", help="show each layer's arithmetic and every inexact division")
    p.add_argument("--batch", type=int, default=1, help="batch size for activation memory (default 1)")
    p.add_argument("--dtype", choices=tuple(BYTES), default="fp32",
                   help="bytes per value for memory; a measured module runs in this floating type (default fp32)")
    p.add_argument("--kwargs", metavar="K=V,...", help="arguments for a module's class or factory: "
                   "num_classes=10,aux_logits=False or a JSON object")
    p.add_argument("--mode", choices=("eval", "train"), default="eval",
                   help="mode a module is built and measured in (default eval)")
    p.add_argument("--depth", type=int, metavar="N",
                   help="measured rows: fold modules deeper than N levels into their ancestor, as torchinfo does")
    p.add_argument("--measured", action="store_true",
                   help="answer from the measured path even when the model has a description")
    p.add_argument("--save", metavar="FILE", help="also write the model's description as a YAML/JSON spec (a Keras, "
                   "Caffe or lifted PyTorch model becomes a cnnlab spec file)")


def _note(text: str) -> None:
    sys.stderr.write(f"cnnlab: {text}\n")


def _measure(args: argparse.Namespace, model: Any, shapes: list[tuple[int, ...]], kinds: list[str | None],
             name: str) -> Any:
    import torch

    from ..measure import analyze_module

    dtypes = [getattr(torch, TORCH_DTYPES[k]) if k else None for k in kinds]
    return analyze_module(model, shapes, mode=args.mode, dtype=getattr(torch, TORCH_DTYPES[args.dtype]),
                          batch=args.batch, depth=args.depth, input_dtypes=dtypes, name=name)


def _unsupported(e: BaseException) -> str:
    """What keeps a module from the description: every unsupported node kind with its count, else the reason."""
    groups = getattr(e, "unsupported", None)
    if groups:
        return ", ".join(f"{k} x{n}" if n > 1 else k for k, n in sorted(groups.items(), key=lambda kv: -kv[1]))
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def module_analysis(args: argparse.Namespace) -> tuple[Any, Any]:
    """A user's module: its description and analysis when it can be lifted, else (None, measured analysis)."""
    from ..analysis import analyze
    from ..errors import CnnlabError
    from ..usermodule import load_module

    if not args.input:
        raise CnnlabError(f"{args.model} needs --input (e.g. --input 3x224x224): a module has no design input")
    parsed = [parse_dims(t) for t in args.input]
    shapes, kinds = [s for s, _ in parsed], [k for _, k in parsed]
    model = load_module(args.model, parse_kwargs(args.kwargs))
    model.train(args.mode == "train")
    name = args.model.rpartition(":")[2]
    liftable = (len(shapes) == 1 and len(shapes[0]) == 3 and kinds[0] is None and args.depth is None
                and not getattr(args, "measured", False))
    if liftable:
        from ..trace import trace

        try:
            net = trace(model, shapes[0], name=name)
            a = analyze(net, shapes[0], batch=args.batch, bytes_per_value=BYTES[args.dtype])
        except Exception as e:  # the lift is refused (or fails): the measured path answers
            _note(f"{name} cannot be described ({_unsupported(e)}): answering from the measured path; "
                  "adapt, --explain and the diagram need the description")
        else:
            a.meta.update({"path": "described", "mode": args.mode})
            return net, a
    if args.explain:
        _note("--explain needs the description: the measured path shows no arithmetic")
    return None, _measure(args, model, shapes, kinds, name)


def run(args: argparse.Namespace) -> int:
    from ..analysis import analyze
    from ..errors import CnnlabError
    from ..usermodule import is_module_ref

    if args.batch < 1:
        raise CnnlabError(f"--batch must be >= 1, got {args.batch}")
    if args.depth is not None and args.depth < 1:
        raise CnnlabError(f"--depth must be >= 1, got {args.depth}")
    if args.save and not args.save.lower().endswith((".yaml", ".yml", ".json")):
        raise CnnlabError(f"--save {args.save}: a spec file ends in .yaml, .yml or .json")
    if is_module_ref(args.model):
        net, a = module_analysis(args)
    else:
        if args.kwargs:
            raise CnnlabError("--kwargs applies to a module (file.py:NAME); a zoo model takes --num-classes, "
                              "--in-channels, --aux")
        if args.input and len(args.input) > 1:
            raise CnnlabError(f"{args.model} takes one input: give --input once")
        args.input = args.input[0] if args.input else None
        net = load_network(args)
        shape = model_input(args, net.input_shape) if args.input else net.input_shape
        if args.depth is not None or args.measured:
            import torch

            from ..torch_backend import build

            analyze(net, shape)  # an impossible shape fails here, in one line
            with torch.device("meta"):
                model = build(net, shape)
            a = _measure(args, model, [tuple(shape)], [None], net.name)
        else:
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
    if args.save:
        if net is None:
            raise CnnlabError(f"{args.model} has no description (it was answered from the measured path): "
                              "nothing to save as a spec")
        from ..network import save_spec
        from ..text import safe_text

        save_spec(net, args.save)
        _note(f"wrote the description of {safe_text(net.name)} to {safe_text(args.save)}")
    return 0

