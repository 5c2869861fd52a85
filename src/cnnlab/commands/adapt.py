"""Adapt a model to a new input size, channel count or class count. Examples:

  cnnlab adapt alexnet-onetower --input 3x270x480 --num-classes 29
  cnnlab adapt lenet5 --input 1x28x28 --apply 1 --check
  cnnlab adapt vgg16 --input 3x32x32 --num-classes 10 --apply 1 --save vgg16-cifar.yaml
  cnnlab adapt torchvision.models:alexnet --design 3x224x224 --input 3x270x480
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
from ._common import add_format_arg, add_input_args, add_model_args, model_input, parse_kwargs, parse_shape, print_json

NAME = "adapt"
HELP = "diagnose a model at a new input, channel or class count, and rank concrete fixes"
ORDER = 15


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_input_args(p)
    p.add_argument("--design", metavar="CxHxW",
                   help="MODEL file.py:NAME or package.module:NAME: the input it was made for (a module has no design "
                        "input of its own; e.g. 3x224x224 for torchvision's classifiers); --input is the new one")
    p.add_argument("--kwargs", metavar="K=V,...", help="arguments for a module's class or factory (file.py:NAME)")
    p.add_argument("--rounding", choices=("floor", "ceil"), default=None,
                   help="pooling rounding: floor (PyTorch, TensorFlow) or ceil (Caffe); default: as the model defines")
    p.add_argument("--apply", metavar="N", help="apply fix N (its rank or name) and show the adapted network")
    p.add_argument("--save", metavar="FILE", help="with --apply: write the adapted network as a YAML/JSON spec")
    p.add_argument("--check", action="store_true",
                   help="with --apply: build the adapted network and train one step on random data at its input")
    p.add_argument("--weights", metavar="FILE",
                   help="with --apply: trained weights of the model (.pth/.pt, .safetensors or a cnnlab checkpoint); "
                        "the adapted network keeps every tensor whose shape stays")
    p.add_argument("--save-weights", metavar="OUT",
                   help="with --weights: write the adapted network's weights (.pth/.pt or .safetensors)")
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


def _design(args: argparse.Namespace) -> tuple[int, int, int] | None:
    """The input a module is traced at: ``--design`` (``--input`` is what it is adapted to)."""
    from ..usermodule import is_module_ref

    if not is_module_ref(args.model):
        from ..models import is_spec

        if args.kwargs or (args.design and not is_spec(args.model)):
            raise CnnlabError(f"--{'kwargs' if args.kwargs else 'design'} applies to a module (file.py:NAME)"
                              f"{'' if args.kwargs else ' or a Keras file of unknown input size'}; {args.model} has "
                              "its own design input and options")
        # A Keras file may leave its input size unknown: --design gives it (a file that fixes it must agree).
        return parse_shape(args.design, args.layout, "--design") if args.design else None
    if not args.design:
        raise CnnlabError(f"give the input {args.model} was made for with --design CxHxW (e.g. --design 3x224x224): "
                          "a module has no design input of its own, and --input is the new one")
    return parse_shape(args.design, args.layout, "--design")


def run(args: argparse.Namespace) -> int:
    from ..adapt import apply, diagnose
    from ..models import load_model

    if (args.save or args.check or args.weights) and not args.apply:
        raise CnnlabError("--save, --check and --weights need --apply N: pick a fix first")
    if args.save_weights and not args.weights:
        raise CnnlabError("--save-weights needs --weights FILE: the trained weights to carry over")
    if args.num_classes is not None and args.num_classes < 1:
        raise CnnlabError(f"--num-classes must be >= 1, got {args.num_classes}")
    # The design: the model as published; channels and classes are changes the diagnosis prices.
    net = load_model(args.model, aux=args.aux, shortcut=args.shortcut, input_shape=_design(args),
                     kwargs=parse_kwargs(args.kwargs) or None)
    report = diagnose(net, _shape(args, net.input_shape), num_classes=args.num_classes, rounding=args.rounding)
    if args.apply:
        digits = args.apply.isascii() and args.apply.isdigit() and len(args.apply) <= 9
        fix = report.fix(int(args.apply) if digits else args.apply)
        return _applied(args, apply(net, fix), fix)
    if args.format == "json":
        print_json(report.to_dict())
    else:
        from ..report.adapt import render_report
        from ..report.text import console

        render_report(report, console())
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
    kept = _carry_weights(args, net) if args.weights else None
    if args.format == "json":
        d = {"model": net.name, "input": list(net.input_shape), "fix": fix.to_dict(), "params": a.totals["params"],
             "macs": a.totals["macs"], "findings": a.findings, "network": network_to_spec(net)}
        if trained:
            d["train_step"] = trained
        if kept is not None:
            d["weights"] = {"kept": kept.taken, "new": kept.new, "dropped": kept.skipped,
                            "saved": args.save_weights}
        print_json(d)
        return 0
    from ..report.adapt import render_applied
    from ..report.text import console

    render_applied(fix, a, console(), trained=trained, saved=args.save)
    if kept is not None:
        print(_weights_text(kept, args.save_weights))
    return 0


def _carry_weights(args: argparse.Namespace, net: Any) -> Any:
    """The adapted module with every tensor of the file whose name and shape it still has."""
    from ..torch_backend import build
    from ..train.weights import load_weights, read_weights, save_weights

    state = read_weights(args.weights)
    model = build(net)
    kept = load_weights(model, state, args.weights, partial=True, net_name=net.name)
    if args.save_weights:
        save_weights(args.save_weights, model.state_dict())
    return kept


def _weights_text(kept: Any, out: str | None) -> str:
    from ..train.weights import layers_of

    lines = [f"weights: kept {len(kept.taken)} of {len(kept.taken) + len(kept.new)} tensors from {kept.source}"]
    if kept.new:
        lines.append(f"  new (initialized, to train): {', '.join(layers_of(kept.new))}")
    if kept.skipped:
        lines.append(f"  the file's tensors left out (no such layer, or another shape): {', '.join(layers_of(kept.skipped))}")
    if out:
        lines.append(f"  wrote {out}")
    return "\n".join(lines)
