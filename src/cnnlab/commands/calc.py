"""Single-layer calculator. Examples:

  cnnlab calc conv --input 3x32x32 --kernel 5 --filters 8
  cnnlab calc conv --input 3x270x480 --kernel 11 --stride 4 --filters 96
  cnnlab calc pool --input 96x55x55 --kernel 3 --stride 2
  cnnlab calc dense --in 9216 --out 4096

Kernels, strides and padding take N or HxW (e.g. 1x7); padding also takes same or valid."""

from __future__ import annotations

import argparse

from ._common import add_format_arg, parse_pair, parse_shape, print_json

NAME = "calc"
HELP = "one conv, pool or dense layer: output shape, size, params, MACs, connections"
ORDER = 20


def _padding(text: str) -> object:
    return text if text in ("same", "valid") else parse_pair(text, "--padding")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="layer", metavar="LAYER", required=True, parser_class=type(p))
    c = sub.add_parser("conv", help="convolution")
    c.add_argument("--input", required=True, metavar="CxHxW")
    c.add_argument("--layout", choices=("chw", "hwc"), default="chw")
    c.add_argument("--kernel", required=True, metavar="K|KHxKW")
    c.add_argument("--filters", type=int, required=True)
    c.add_argument("--stride", default="1", metavar="S|SHxSW")
    c.add_argument("--padding", default="0", metavar="P|PHxPW|same|valid")
    c.add_argument("--dilation", default="1")
    c.add_argument("--groups", type=int, default=1)
    c.add_argument("--no-bias", action="store_true")
    add_format_arg(c, ("table", "json"))
    q = sub.add_parser("pool", help="max or average pooling")
    q.add_argument("--input", required=True, metavar="CxHxW")
    q.add_argument("--layout", choices=("chw", "hwc"), default="chw")
    q.add_argument("--kernel", required=True)
    q.add_argument("--stride", default=None, help="default: the kernel")
    q.add_argument("--padding", default="0")
    q.add_argument("--mode", choices=("max", "avg"), default="max")
    q.add_argument("--ceil", action="store_true", help="round up (Caffe) instead of down (PyTorch, TensorFlow)")
    add_format_arg(q, ("table", "json"))
    d = sub.add_parser("dense", help="fully connected layer")
    d.add_argument("--in", dest="inputs", type=int, required=True, metavar="N")
    d.add_argument("--out", dest="units", type=int, required=True, metavar="M")
    d.add_argument("--no-bias", action="store_true")
    add_format_arg(d, ("table", "json"))


def run(args: argparse.Namespace) -> int:
    from .. import calculator

    if args.layer == "conv":
        r = calculator.conv(parse_shape(args.input, args.layout), parse_pair(args.kernel, "--kernel"), args.filters,
                      parse_pair(args.stride, "--stride"), _padding(args.padding),
                      parse_pair(args.dilation, "--dilation"), args.groups, not args.no_bias)
    elif args.layer == "pool":
        stride = parse_pair(args.stride, "--stride") if args.stride else None
        r = calculator.pool(parse_shape(args.input, args.layout), parse_pair(args.kernel, "--kernel"), stride,
                      _padding(args.padding), args.mode, args.ceil)
    else:
        r = calculator.dense(args.inputs, args.units, not args.no_bias)
    if args.format == "json":
        print_json({k: r[k] for k in ("output_shape", "activation_size", "params", "macs", "connections")}
                   | {"arithmetic": r["arithmetic"], "findings": r["findings"]})
        return 0
    shape = "x".join(map(str, r["output_shape"]))
    print(f"{'output shape':16} {shape} ({'C x H x W' if len(r['output_shape']) == 3 else 'N'})")
    for k in ("activation_size", "params", "macs", "connections"):
        print(f"{k.replace('_', ' '):16} {r[k]:,}")
    for line in r["arithmetic"]:
        print(f"  {line}")
    for f in r["findings"]:
        print(f"  ! {f['detail']}")
    return 0
