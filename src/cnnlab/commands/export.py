"""Export a model or a trained checkpoint: ONNX (opset 18, dynamic batch axis, checked with
onnx.checker), TorchScript (torch.jit.trace; torch.jit.load reads it without cnnlab), or one plain
PyTorch source file defining the network's nn.Module with the description's layer names (a
checkpoint's trained weights go beside it as FILE.pt). Files are written atomically."""

from __future__ import annotations

import argparse

from ..errors import CnnlabError
from ._common import add_input_args, add_model_args, model_input, parse_shape

NAME = "export"
HELP = "export a model or checkpoint to ONNX, TorchScript or PyTorch source"
ORDER = 45


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p, "MODEL|CHECKPOINT", "a zoo name, a YAML/JSON spec file, file.py:NAME, or a .pt checkpoint "
                   "written by 'cnnlab train'")
    p.add_argument("--format", choices=("onnx", "torchscript", "pytorch"),
                   help="what to write (default: from --out's suffix: .onnx, .pt, .py)")
    p.add_argument("--out", metavar="FILE", required=True, help="the file to write")
    add_input_args(p)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..export import export_model, is_checkpoint
    from ..export.formats import SUFFIXES

    fmt = args.format or SUFFIXES.get(Path(args.out).suffix.lower())
    if fmt is None:
        raise CnnlabError(f"--out {args.out}: give --format onnx|torchscript|pytorch (or name the file "
                          ".onnx, .pt or .py)")
    shape = None
    if args.input:
        if is_checkpoint(args.model) or ":" in args.model:
            shape = parse_shape(args.input, args.layout)
        else:
            from ._common import load_network

            shape = model_input(args, load_network(args).input_shape)
    done = export_model(args.model, fmt, args.out, input_shape=shape, num_classes=args.num_classes,
                        in_channels=args.in_channels, aux=args.aux, shortcut=args.shortcut)
    for note in done.notes:
        print(note)
    return 0
