"""Argument helpers shared by the commands."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from ..errors import CnnlabError

FORMATS = ("table", "json", "csv", "markdown")
MAX_SIZE = 2**31 - 1  # a size on the command line: ASCII digits, at most ten of them
_INT = re.compile(r"[0-9]{1,10}")


def parse_shape(text: str, layout: str = "chw", what: str = "--input") -> tuple[int, int, int]:
    """``3x227x227`` -> (3, 227, 227); with ``layout='hwc'``, ``227x227x3`` -> (3, 227, 227)."""
    parts = [p for p in re.split(r"[x,×\s]+", text.strip().lower()) if p]
    if len(parts) != 3 or not all(_INT.fullmatch(p) for p in parts):
        ex = "227x227x3" if layout == "hwc" else "3x227x227"
        raise CnnlabError(f"malformed {what} '{text}': give {'H x W x C' if layout == 'hwc' else 'C x H x W'} "
                          f"as three positive integers, e.g. {ex}")
    a, b, c = (int(p) for p in parts)
    shape = (c, a, b) if layout == "hwc" else (a, b, c)
    if min(shape) < 1 or max(shape) > MAX_SIZE:
        raise CnnlabError(f"{what} '{text}': every size must be between 1 and {MAX_SIZE:,}")
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
    parts = [p.strip() for p in re.split(r"[x,×]", str(text).strip().lower()) if p.strip()]
    vals = [int(p) for p in parts if _INT.fullmatch(p) or re.fullmatch(r"-[0-9]{1,9}", p)]
    if len(vals) not in (1, 2) or len(vals) != len(parts):
        raise CnnlabError(f"malformed {what} '{text}': give an integer or HxW, e.g. 3 or 1x7")
    return vals[0] if len(vals) == 1 else (vals[0], vals[1])


def add_input_args(p: argparse.ArgumentParser, required: bool = False, several: bool = False) -> None:
    if several:
        p.add_argument("--input", metavar="CxHxW", action="append",
                       help="input shape, channels first (e.g. 3x227x227); repeat it for a module with several "
                       "inputs (--input 3x224x224 --input 77:int64, a suffix giving an input's dtype)")
    else:
        p.add_argument("--input", metavar="CxHxW", required=required,
                       help="input shape, channels first (e.g. 3x227x227)")
    p.add_argument("--layout", choices=("chw", "hwc"), default="chw",
                   help="how --input is written: chw (default, 3x227x227) or hwc (227x227x3, as the notebooks write it)")


INT_DTYPES = ("int64", "long", "int32", "int", "bool")


def parse_dims(text: str) -> tuple[tuple[int, ...], str | None]:
    """``3x224x224`` -> ((3, 224, 224), None); ``77:int64`` -> ((77,), 'int64'): a module input of any rank."""
    dims, _, dtype = text.partition(":")
    parts = [p for p in re.split(r"[x,×\s]+", dims.strip().lower()) if p]
    if not parts or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise CnnlabError(f"malformed --input '{text}': give sizes >= 1 without the batch, e.g. 3x224x224 or 77")
    if dtype and dtype not in INT_DTYPES + ("fp32", "fp16", "bf16", "fp64", "float32", "float16", "bfloat16",
                                            "float64"):
        raise CnnlabError(f"--input '{text}': unknown dtype '{dtype}'; give int64, int32, bool, fp32, fp16, bf16 "
                          "or fp64")
    return tuple(int(p) for p in parts), dtype or None


def parse_kwargs(text: str | None) -> dict[str, Any]:
    """``num_classes=10,aux_logits=False`` or a JSON object -> keyword arguments (values read as Python
    literals where they are, else kept as strings)."""
    import ast

    if not text:
        return {}
    text = text.strip()
    if text.startswith("{"):
        try:
            out = json.loads(text)
        except json.JSONDecodeError as e:
            raise CnnlabError(f"--kwargs is not valid JSON ({e.msg} at column {e.colno}); "
                              "write a JSON object or key=value,key=value") from None
        except RecursionError:
            raise CnnlabError("--kwargs JSON is nested too deeply; give plain values") from None
        if not isinstance(out, dict):
            raise CnnlabError("--kwargs JSON must be an object, e.g. {\"num_classes\": 10}")
        return out
    out: dict[str, Any] = {}
    depth, start, items = 0, 0, []
    for i, ch in enumerate(text + ","):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise CnnlabError(f"--kwargs item '{item.strip()}': write key=value, e.g. num_classes=10,aux_logits=False")
        try:
            out[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError, RecursionError, MemoryError):
            out[key] = value.strip()
    return out


def add_format_arg(p: argparse.ArgumentParser, choices: tuple[str, ...] = FORMATS) -> None:
    p.add_argument("--format", choices=choices, default="table", help="output format (default: table)")


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def add_model_args(p: argparse.ArgumentParser, metavar: str = "MODEL",
                   help: str = "a zoo name (see 'cnnlab zoo') or a YAML/JSON spec file; a zoo name wins over a file of "
                   "the same name unless the argument has a .yaml/.yml/.json suffix or a path separator (./NAME); "
                   "file.py:Class or package.module:Class imports and runs that Python code") -> None:
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
    """``--input`` when MODEL is a module to trace (which has no design input of its own) or a model
    file (a Keras input may leave its size unknown; a file that fixes it keeps it), else None."""
    from ..models import is_spec

    text = getattr(args, "input", None)
    if not text or ":" not in args.model and not is_spec(args.model):
        return None
    return parse_shape(text, getattr(args, "layout", "chw"))
