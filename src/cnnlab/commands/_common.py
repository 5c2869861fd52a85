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


def add_input_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--input", metavar="CxHxW", required=required,
                   help="input shape, channels first (e.g. 3x227x227)")
    p.add_argument("--layout", choices=("chw", "hwc"), default="chw",
                   help="how --input is written: chw (default, 3x227x227) or hwc (227x227x3, as the notebooks write it)")


def add_format_arg(p: argparse.ArgumentParser, choices: tuple[str, ...] = FORMATS) -> None:
    p.add_argument("--format", choices=choices, default="table", help="output format (default: table)")


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="a zoo name (see 'cnnlab zoo') or a YAML/JSON spec file; a zoo name wins over a "
                   "file of the same name unless the argument has a .yaml/.yml/.json suffix or a path separator "
                   "(./NAME); file.py:Class or package.module:Class imports and runs that Python code")
    p.add_argument("--num-classes", type=int, metavar="N", help="classes of the output layer")
    p.add_argument("--in-channels", type=int, metavar="C", help="input channels the model is built for")
    p.add_argument("--aux", action=argparse.BooleanOptionalAction, default=None,
                   help="include auxiliary classifiers (models that have them)")
    p.add_argument("--shortcut", type=str.upper, choices=("A", "B", "C"), metavar="A|B|C",
                   help="ResNet shortcuts (He et al. 2015, Sec. 3.3): A zero-pads the identity, B projects where "
                   "the shape changes, C projects in every unit (zoo ResNets)")


def looks_like_spec(model: str) -> bool:
    """Whether MODEL names a spec file rather than a zoo model: a zoo name wins over a file of the
    same name in the working directory unless the argument has a spec suffix or a path separator."""
    import os

    from .. import zoo

    if model.lower().endswith((".yaml", ".yml", ".json")):
        return True
    if model in zoo.names():
        return any(sep and sep in model for sep in (os.sep, os.altsep))
    from pathlib import Path

    return Path(model).is_file()


def load_network(args: argparse.Namespace) -> Any:
    """The network named by MODEL: a spec file when it looks like one, else a zoo model."""

    from .. import zoo
    from ..network import load_spec

    model = args.model
    shortcut = getattr(args, "shortcut", None)
    spec = looks_like_spec(model)
    if shortcut is not None and (spec or ":" in model):
        raise CnnlabError(f"--shortcut applies to the zoo's ResNets, not to {model}: a spec file or a module "
                          "keeps the shortcuts it describes")
    if spec:
        return load_spec(model)
    if ":" in model:
        return _trace_module(model, getattr(args, "input", None), getattr(args, "layout", "chw"))
    kw: dict[str, Any] = {}
    if shortcut is not None:
        if "shortcut" not in _builder_parameters(model):
            takers = [n for n in zoo.names() if "shortcut" in _builder_parameters(n)]
            raise CnnlabError(f"model '{model}' has no shortcut option: --shortcut applies to the ResNets "
                              f"({', '.join(takers[:3])}, ...: {len(takers)} models)")
        kw["shortcut"] = shortcut
    for opt, key in (("num_classes", "num_classes"), ("in_channels", "in_channels"), ("aux", "aux_logits")):
        v = getattr(args, opt, None)
        if v is not None:
            if isinstance(v, int) and not isinstance(v, bool) and v < 1:
                raise CnnlabError(f"--{opt.replace('_', '-')} must be >= 1, got {v}")
            kw[key] = v
    return zoo.get(model, **kw)


def _builder_parameters(name: str) -> Any:
    """The parameters the registered builder of zoo model ``name`` takes (for options that only
    some models have)."""
    import inspect

    from .. import zoo

    return inspect.signature(zoo.info(name).fn).parameters


def _trace_module(ref: str, input_text: str | None, layout: str) -> Any:
    """``pkg.module:Class`` or ``file.py:Class`` -> instantiate with no arguments and trace it."""
    import importlib
    import importlib.util
    from pathlib import Path

    from ..trace import trace

    where, _, attr = ref.rpartition(":")
    if not input_text:
        raise CnnlabError(f"tracing {ref} needs --input CxHxW (a module has no design input)")
    try:
        if where.endswith(".py"):
            spec = importlib.util.spec_from_file_location(Path(where).stem, where)
            if spec is None or spec.loader is None or not Path(where).is_file():
                raise ImportError(f"no file {where}")
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(where)
        obj = getattr(mod, attr)
    except (ImportError, AttributeError) as e:
        raise CnnlabError(f"cannot load {ref}: {e}; give file.py:Class or package.module:Class") from None
    from torch import nn

    model = obj if isinstance(obj, nn.Module) else obj()  # an instance, a class or a factory function
    return trace(model, parse_shape(input_text, layout), name=attr)
