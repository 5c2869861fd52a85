"""Evaluate a checkpoint on a data set: top-1 and top-5 accuracy, mean loss, and a confusion
matrix PNG. Evaluation runs in chunks (--batch-size), so memory stays bounded on any set size.
The checkpoint carries the network, the input map and the classes; nothing else is needed."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CnnlabError
from ._common import print_json
from .train import add_data_args, parse_size

NAME = "eval"
HELP = "evaluate a checkpoint: top-1, top-5, loss, confusion matrix"
ORDER = 41


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt file written by 'cnnlab train'")
    add_data_args(p)
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


CONFUSION_FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def confusion_path(args: argparse.Namespace) -> Path:
    """Where the confusion matrix goes, checked before any data is read."""
    if not args.confusion:
        return Path(args.checkpoint).with_name(f"confusion-{args.split}.png")
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
    png = confusion_path(args)
    from ..data import load
    from ..train import checkpoint
    from ..train.trainer import check_seed, evaluate, resolve_device

    ck = checkpoint.load(args.checkpoint)
    ck.check_finite(args.checkpoint)
    net, model, prep = ck.rebuild()
    c, h, w = prep.data_shape
    from ..data.store import is_store

    size = parse_size(args.size) or (None if is_store(args.data) else (h, w))
    seed = check_seed(args.seed if args.seed is not None else ck.seed)
    fraction = args.val_fraction if args.val_fraction is not None else ck.val_fraction or 0.1
    data = load(args.data, args.split, data_dir=args.data_dir, size=size, val_fraction=fraction, seed=seed)
    if tuple(data.images.shape[1:]) != (c, h, w):
        raise CnnlabError(f"{args.data} images are {'x'.join(map(str, data.images.shape[1:]))} but the model was "
                          f"trained on {c}x{h}x{w}")
    classes = ck.classes
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
        print(f"{net.name} ({Path(args.checkpoint).name}) on {data.name}, {res['n']:,} images")
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
        print(f"  confusion matrix: {png}")
    return 0
