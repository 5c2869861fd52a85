"""Classify image files with a trained checkpoint: the most likely classes and their probabilities.

Each image is read with Pillow, converted to the checkpoint's channels (grey or RGB) and resized
as the image-folder loader does (scale to cover, centre crop) to the size the model was trained
on. Digits for an MNIST model should be light on a dark background, as MNIST's are."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CnnlabError
from ..text import safe_text
from ._common import print_json
from .evaluate import add_pretrained_args, check_pretrained_args

if TYPE_CHECKING:
    import torch

NAME = "predict"
HELP = "classify image files with a checkpoint"
ORDER = 42


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a .pt file written by 'cnnlab train', or with --weights a model (zoo name or spec)")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, ...) or a prepared store (its held-out images)")
    p.add_argument("--top", type=int, default=1, metavar="K", help="show the K most likely classes (default 1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    add_pretrained_args(p)
    g = p.add_argument_group("image size, with --weights (a checkpoint carries its own)")
    g.add_argument("--size", metavar="HxW", help="resize to HxW (scale to cover, centre crop); default: the "
                   "model's design input")
    g.add_argument("--crop", metavar="HxW", help="then keep the centre HxW (e.g. --size 256x256 --crop 224x224)")
    g.add_argument("--classes", metavar="FILE", help="class names, one a line, in output order (default: numbers)")


def read_image(path: str, channels: int, size: tuple[int, int], crop: tuple[int, int] | None = None) -> torch.Tensor:
    """One image as uint8 (C, H, W), converted and sized as the model's training images were:
    resized to ``size`` (scale to cover, centre crop), then cut to its centre ``crop``."""
    import torch

    from ..data.images import read_image as decode
    from ..train.preprocess import center_crop

    a = decode(path, channels, size)
    t = torch.from_numpy(a.copy())
    t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)
    return (center_crop(t, crop) if crop else t).contiguous()


def _pretrained(args: argparse.Namespace) -> tuple[Any, Any, list[str]]:
    """Module, input map and class names for ``predict MODEL --weights FILE``."""
    from ..train.weights import head_of, pretrained
    from .train import parse_size

    size, crop = parse_size(args.size), parse_size(args.crop, "--crop")
    if crop is not None and (size is None or crop[0] > size[0] or crop[1] > size[1]):
        raise CnnlabError("--crop needs a --size at least as large, e.g. --size 256x256 --crop 224x224")
    names = _class_names(args.classes) if args.classes else None
    num_classes = args.num_classes or (len(names) if names else None)
    _, model, prep = pretrained(args.checkpoint, args.weights, num_classes=num_classes, size=crop or size,
                                resize=size if crop else None, normalize=args.normalize or "imagenet",
                                partial=args.partial)
    head = head_of(model)
    outputs = int(next(p for n, p in model.named_parameters() if n.startswith(head + ".")).shape[0])
    if names is not None and len(names) != outputs:
        raise CnnlabError(f"--classes {args.classes} names {len(names)} classes but the model has {outputs} outputs")
    return model, prep, names or [str(i) for i in range(outputs)]


def _class_names(path: str) -> list[str]:
    try:
        names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise CnnlabError(f"cannot read --classes {path}: {getattr(e, 'strerror', None) or e}") from None
    if not names:
        raise CnnlabError(f"--classes {path} names no class: give one name a line")
    return names


def inputs(paths: list[str], channels: int, size: tuple[int, int], chunk: int = 256, *,
           read_size: tuple[int, int] | None = None, crop: tuple[int, int] | None = None
           ) -> tuple[list[str], Iterator[torch.Tensor]]:
    """The names and batches to classify: image files, and for a prepared store its held-out images (its
    training images when it holds none), read from its memory map ``chunk`` at a time. Files are decoded at
    ``read_size`` (default ``size``) and cut to their centre ``crop``, as the training images were; a store at
    ``read_size`` is cut chunk by chunk."""
    import torch

    from ..data import store
    from ..train.preprocess import center_crop

    names: list[str] = []
    parts: list[tuple[Any, int, int, bool]] = []  # (stacked files or a store's images, start, stop, cut to crop)
    files: list[torch.Tensor] = []
    for p in paths:
        if not store.is_store(p):
            files.append(read_image(p, channels, read_size or size, crop))
            names.append(p)
            continue
        m = store.manifest(p)
        split = "val" if m["splits"]["val"][1] > m["splits"]["val"][0] else "train"
        lo, hi = m["splits"][split]
        data = store.load(p, split)
        held = tuple(data["images"].shape[1:])
        cut = crop is not None and held == (channels, *(read_size or size))
        if held != (channels, *size) and not cut:
            want = f"--size {read_size[0]}x{read_size[1]} or " if crop is not None and read_size else ""
            raise CnnlabError(f"store {p} holds {'x'.join(map(str, held))} images but the model takes "
                              f"{channels}x{size[0]}x{size[1]}: prepare a store with {want}--size {size[0]}x{size[1]}")
        if files:
            parts.append((torch.stack(files), 0, len(files), False))
            files = []
        names += [f"{p}/{e[0]}" for e in m["files"][lo:hi]]
        parts += [(data["images"], i, min(i + chunk, hi - lo), cut) for i in range(0, hi - lo, chunk)]
    if files:
        parts.append((torch.stack(files), 0, len(files), False))
    return names, ((center_crop(t[a:b], crop) if cut and crop else t[a:b]).clone() for t, a, b, cut in parts)


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise CnnlabError(f"--top must be >= 1, got {args.top}")
    import torch

    from ..train import checkpoint
    from ..train.trainer import resolve_device

    check_pretrained_args(args)
    if not args.weights and (args.size or args.crop or args.classes):
        raise CnnlabError("--size, --crop and --classes: only for a model with --weights FILE; a checkpoint "
                          "carries its own")
    if args.weights:
        model, prep, classes = _pretrained(args)
    else:
        ck = checkpoint.load(args.checkpoint)
        ck.check_finite(args.checkpoint)
        _, model, prep = ck.rebuild(args.checkpoint)
        classes = ck.classes
    c, h, w = prep.data_shape
    crop = (h, w) if prep.resize else None
    names, batches = inputs(args.images, c, (h, w), read_size=prep.read_size, crop=crop)
    device = resolve_device(args.device)
    model.to(device)
    prep_dev = prep.to(device)
    with torch.inference_mode():
        probs = torch.cat([model(prep_dev(b.to(device))).float().softmax(1).cpu() for b in batches])
    k = min(args.top, len(classes))
    top = probs.topk(k, 1)
    rows = [{"image": p, "predictions": [{"class": classes[int(i)], "probability": float(v)}
                                         for v, i in zip(top.values[n], top.indices[n])]}
            for n, p in enumerate(names)]
    if args.format == "json":
        print_json(rows if k > 1 else [{"image": r["image"], **r["predictions"][0]} for r in rows])
        return 0
    shown = [safe_text(Path(p).name) for p in names]  # names from files and checkpoints: escaped
    width = max(map(len, shown))
    for name, r in zip(shown, rows):
        preds = "  ".join(f"{safe_text(q['class'])} {q['probability']:.1%}" for q in r["predictions"])
        print(f"{name:<{width}}  {preds}")
    return 0
