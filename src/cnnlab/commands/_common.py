"""Argument helpers shared by the commands."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from ..errors import CnnlabError

FORMATS = ("table", "json", "csv", "markdown")


def parse_shape(text: str, layout: str = "chw", what: str = "--input") -> tuple[int, int, int]:
    """``3x227x227`` -> (3, 227, 227); with ``layout='hwc'``, ``227x227x3`` -> (3, 227, 227)."""
    parts = [p for p in re.split(r"[x,×\s]+", text.strip().lower()) if p]
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        ex = "227x227x3" if layout == "hwc" else "3x227x227"
        raise CnnlabError(f"malformed {what} '{text}': give {'H x W x C' if layout == 'hwc' else 'C x H x W'} "
                          f"as three positive integers, e.g. {ex}")
    a, b, c = (int(p) for p in parts)
    shape = (c, a, b) if layout == "hwc" else (a, b, c)
    if min(shape) < 1:
        raise CnnlabError(f"{what} '{text}': every size must be >= 1")
    return shape


def model_input(args: argparse.Namespace, design: tuple[int, ...]) -> tuple[int, int, int]:
    """``--input`` for a model whose design input is ``design``; refuses an input written H x W x C
    without ``--layout hwc`` (its last size equal to the model's channels, its first not)."""
    shape = parse_shape(args.input, args.layout)
    c = design[0]
    if args.layout == "chw" and shape[0] != c and shape[2] == c:
        raise CnnlabError(f"--input {args.input} is read channels-first as {shape[0]} channels of "
                          f"{shape[1]}x{shape[2]}, but the model takes {c}: write {c}x{shape[0]}x{shape[1]} "
                          "or add --layout hwc")
    ic = getattr(args, "in_channels", None)
    if ic is not None and ic != shape[0]:
        raise CnnlabError(f"--input {args.input} has {shape[0]} channels but --in-channels says {ic}: "
                          "give the channels once")
    return shape


def parse_pair(text: str, what: str) -> int | tuple[int, int]:
    """``5`` -> 5, ``5x3`` -> (5, 3) (height x width)."""
    parts = [p for p in re.split(r"[x,×]", str(text).strip().lower()) if p]
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) not in (1, 2):
        raise CnnlabError(f"malformed {what} '{text}': give an integer or HxW, e.g. 3 or 1x7")
    return vals[0] if len(vals) == 1 else (vals[0], vals[1])


def add_input_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--input", metavar="CxHxW", required=required,
                   help="input shape, channels first (e.g. 3x227x227)")
    p.add_argument("--layout", choices=("chw", "hwc"), default="chw",
                   help="how --input is written: chw (default, 3x227x227) or hwc (227x227x3, as the notebooks write it)")


def add_format_arg(p: argparse.ArgumentParser, choices: tuple[str, ...] = FORMATS) -> None:
    p.add_argument("--format", choices=choices, default="table", help="output format (default: table)")


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def add_model_args(p: argparse.ArgumentParser, metavar: str = "MODEL",
                   help: str = "a zoo name (see 'cnnlab zoo') or a YAML/JSON spec file") -> None:
    p.add_argument("model", metavar=metavar, help=help)
    p.add_argument("--num-classes", type=int, metavar="N", help="classes of the output layer")
    p.add_argument("--in-channels", type=int, metavar="C", help="input channels the model is built for")
    p.add_argument("--aux", action=argparse.BooleanOptionalAction, default=None,
                   help="include auxiliary classifiers (models that have them)")
    p.add_argument("--shortcut", type=str.upper, choices=("A", "B", "C"), metavar="A|B|C",
                   help="ResNet shortcuts (He et al. 2015, Sec. 3.3): A zero-pads the identity, B projects where "
                   "the shape changes, C projects in every unit (zoo ResNets)")


def load_network(args: argparse.Namespace) -> Any:
    """The network named by MODEL and its options (see :func:`cnnlab.models.load_model`)."""
    from ..models import load_model

    return load_model(args.model, num_classes=getattr(args, "num_classes", None),
                      in_channels=getattr(args, "in_channels", None), aux=getattr(args, "aux", None),
                      shortcut=getattr(args, "shortcut", None), input_shape=trace_input(args))


def trace_input(args: argparse.Namespace) -> tuple[int, int, int] | None:
    """``--input`` when MODEL is a module to trace (which has no design input of its own), else None."""
    from ..models import is_spec

    text = getattr(args, "input", None)
    if not text or ":" not in args.model or is_spec(args.model):
        return None
    return parse_shape(text, getattr(args, "layout", "chw"))
