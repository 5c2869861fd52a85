"""Evaluate a checkpoint on a data set: top-1 and top-5 accuracy, mean loss, and a confusion
matrix PNG. Evaluation runs in chunks (--batch-size), so memory stays bounded on any set size.
The checkpoint carries the network, the input map and the classes; nothing else is needed."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import CnnlabError
from ..text import safe_text
from ._common import print_json
from .train import add_data_args, add_weights_args, parse_size

NAME = "eval"
HELP = "evaluate a checkpoint: top-1, top-5, loss, confusion matrix"
ORDER = 41


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a .pt file written by 'cnnlab train', or with --weights a model (zoo name or spec)")
    add_data_args(p)
    add_pretrained_args(p)
    p.add_argument("--split", choices=("test", "val", "train"), default="test",
                   help="which split (default test; an image folder's held-out images for test/val)")
    p.add_argument("--val-fraction", type=float, metavar="F",
                   help="image folders without val/: fraction held out (default: the checkpoint's, else 0.1)")
    p.add_argument("--seed", type=int, help="the split seed (default: the seed the checkpoint was trained with)")
    p.add_argument("--batch-size", type=int, default=1000, help="images per evaluation chunk (default 1000)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--confusion", metavar="PNG",
                   help="confusion matrix image (default: confusion-SPLIT.png beside the checkpoint)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")


def add_pretrained_args(p: argparse.ArgumentParser) -> None:
    """Options for a model with published weights instead of a checkpoint (eval, predict)."""
    g = p.add_argument_group("a model with published weights, instead of a checkpoint")
    add_weights_args(g)
    g.add_argument("--num-classes", type=int, metavar="N", help="with --weights: classes of the output layer")
    g.add_argument("--normalize", choices=("imagenet", "scale"),
                   help="with --weights: the input map the weights were trained with (default imagenet)")


def check_pretrained_args(args: argparse.Namespace) -> None:
    """The --weights options are refused beside a checkpoint, which carries its own."""
    given = [o for o, v in (("--partial", args.partial), ("--num-classes", args.num_classes),
                            ("--normalize", args.normalize)) if v]
    if given and not args.weights:
        raise CnnlabError(f"{', '.join(given)}: only for a model with --weights FILE; a checkpoint carries its own "
                          "classes and input map")


def _pretrained(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """Network, module, input map and data for ``eval MODEL --weights FILE``."""
    from ..data import load
    from ..train.trainer import check_seed
    from ..train.weights import pretrained

    size, crop = parse_size(args.size), parse_size(args.crop, "--crop")
    if crop is not None and (size is None or crop[0] > size[0] or crop[1] > size[1]):
        raise CnnlabError("--crop needs a --size at least as large, e.g. --size 256x256 --crop 224x224")
    fraction = args.val_fraction if args.val_fraction is not None else 0.1
    data = load(args.data, args.split, data_dir=args.data_dir, size=size, val_fraction=fraction,
                seed=check_seed(args.seed or 0))
    num_classes = args.num_classes or len(data.classes)
    if num_classes != len(data.classes):
        raise CnnlabError(f"--num-classes {num_classes} but {args.data} has {len(data.classes)} classes: the model "
                          "must answer in the data's classes")
    net, model, prep = pretrained(args.checkpoint, args.weights, num_classes=num_classes,
                                  size=crop or tuple(data.images.shape[2:]), resize=size if crop else None,
                                  normalize=args.normalize or "imagenet", partial=args.partial)
    return net, model, prep, data


def cut_to(prep: Any, crop: tuple[int, int], size: tuple[int, int]) -> Any:
    """The input map for images held at ``size``, which it cuts to their centre ``crop`` batch by batch: a store is
    read through its memory map, never cropped whole."""
    h, w = prep.data_shape[1:]
    if tuple(crop) != (h, w):
        raise CnnlabError(f"--crop {crop[0]}x{crop[1]}: the model was trained on {h}x{w} inputs; give --crop {h}x{w} "
                          "or leave it out")
    return prep.reading(size)


CONFUSION_FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def confusion_path(args: argparse.Namespace) -> Path:
    """Where the confusion matrix goes, checked before any data is read."""
    if not args.confusion:
        return Path(args.weights or args.checkpoint).with_name(f"confusion-{args.split}.png")
    png = Path(args.confusion)
    if png.is_dir():
        raise CnnlabError(f"--confusion {png} is a folder: give a file name, e.g. {png / 'confusion.png'}")
    if png.suffix.lower() not in CONFUSION_FORMATS:
        raise CnnlabError(f"--confusion {png}: unsupported image type '{png.suffix}'; end the name in "
                          f"{', '.join(CONFUSION_FORMATS)}")
    if not png.parent.is_dir():
        raise CnnlabError(f"--confusion {png}: no folder {png.parent}; create it or give another path")
    return png


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise CnnlabError(f"--batch-size must be >= 1, got {args.batch_size}")
    check_pretrained_args(args)
    png = confusion_path(args)
    from ..data import load
    from ..train import checkpoint
    from ..train.trainer import check_seed, evaluate, resolve_device

    if args.weights:
        net, model, prep, data = _pretrained(args)
        classes = data.classes
    else:
        ck = checkpoint.load(args.checkpoint)
        ck.check_finite(args.checkpoint)
        net, model, prep = ck.rebuild(args.checkpoint)
        seed = check_seed(args.seed if args.seed is not None else ck.seed)
        fraction = args.val_fraction if args.val_fraction is not None else ck.val_fraction or 0.1
        from ..data.store import is_store

        size = parse_size(args.size) or (None if is_store(args.data) else prep.read_size)
        data = load(args.data, args.split, data_dir=args.data_dir, size=size, val_fraction=fraction, seed=seed)
        crop = parse_size(args.crop, "--crop") or (prep.data_shape[1:] if prep.resize and not args.size else None)
        if crop is not None:
            prep = cut_to(prep, crop, tuple(data.images.shape[2:]))
        classes = ck.classes
    c, h, w = prep.data_shape
    shape = tuple(data.images.shape[1:])
    if shape != (c, h, w) and not (prep.resize and shape == (c, *prep.resize)):
        raise CnnlabError(f"{args.data} images are {'x'.join(map(str, data.images.shape[1:]))} but the model was "
                          f"trained on {c}x{h}x{w}")
    if len(data.classes) != len(classes):
        raise CnnlabError(f"{args.data} has {len(data.classes)} classes, the checkpoint {len(classes)}")
    if data.mapped and data.classes != classes:
        raise CnnlabError(f"store {args.data} has other classes ({', '.join(data.classes[:4])}, ...) than the "
                          f"checkpoint ({', '.join(classes[:4])}, ...): evaluate on the data it was trained on")
    if len(data) == 0:
        raise CnnlabError(f"the {args.split} split of {args.data} is empty")
    device = resolve_device(args.device)
    res = evaluate(model.to(device), data.images, data.labels, prep.to(device), device, batch_size=args.batch_size,
                   confusion=len(classes))
    # The result is printed before the matrix is drawn: a failed image write must not lose it.
    if args.format == "json":
        print_json({"top1": res["top1"], "top5": res["top5"], "loss": res["loss"], "n": res["n"]})
    else:
        where = safe_text(f"{net.name} ({Path(args.weights or args.checkpoint).name}) on {data.name}")
        print(f"{where}, {res['n']:,} images")
        print(f"  top-1 accuracy  {res['top1']:.2%}")
        print(f"  top-5 accuracy  {res['top5']:.2%}")
        print(f"  loss            {res['loss']:.4f}")
    from ..train.plots import plot_confusion

    try:
        plot_confusion(res["confusion"], classes, png, f"{net.name} on {data.name}: top-1 {res['top1']:.2%}")
    except OSError as e:
        raise CnnlabError(f"cannot write the confusion matrix {png}: {e.strerror or e}; give another --confusion") \
            from None
    if args.format != "json":
        print(f"  confusion matrix: {safe_text(png)}")
    return 0
