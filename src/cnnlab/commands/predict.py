"""Classify image files with a trained checkpoint: the most likely classes and their probabilities.

Each image is read with Pillow, converted to the checkpoint's channels (grey or RGB) and resized
as the image-folder loader does (scale to cover, centre crop) to the size the model was trained
on. Digits for an MNIST model should be light on a dark background, as MNIST's are."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CnnlabError
from ._common import print_json

if TYPE_CHECKING:
    import torch

NAME = "predict"
HELP = "classify image files with a checkpoint"
ORDER = 42


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt file written by 'cnnlab train'")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, ...)")
    p.add_argument("--top", type=int, default=1, metavar="K", help="show the K most likely classes (default 1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")


def read_image(path: str, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """One image as uint8 (C, H, W), converted and sized as the model's training images were."""
    import torch

    from ..data.images import read_image as decode

    a = decode(path, channels, size)
    t = torch.from_numpy(a.copy())
    return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1).contiguous()


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise CnnlabError(f"--top must be >= 1, got {args.top}")
    import torch

    from ..train import checkpoint
    from ..train.trainer import resolve_device

    ck = checkpoint.load(args.checkpoint)
    ck.check_finite(args.checkpoint)
    _, model, prep = ck.rebuild()
    classes = ck.classes
    c, h, w = prep.data_shape
    batch = torch.stack([read_image(p, c, (h, w)) for p in args.images])
    device = resolve_device(args.device)
    model.to(device)
    with torch.inference_mode():
        probs = model(prep.to(device)(batch.to(device))).float().softmax(1).cpu()
    k = min(args.top, len(classes))
    top = probs.topk(k, 1)
    rows = [{"image": p, "predictions": [{"class": classes[int(i)], "probability": float(v)}
                                         for v, i in zip(top.values[n], top.indices[n])]}
            for n, p in enumerate(args.images)]
    if args.format == "json":
        print_json(rows if k > 1 else [{"image": r["image"], **r["predictions"][0]} for r in rows])
        return 0
    width = max(len(Path(p).name) for p in args.images)
    for r in rows:
        preds = "  ".join(f"{q['class']} {q['probability']:.1%}" for q in r["predictions"])
        print(f"{Path(r['image']).name:<{width}}  {preds}")
    return 0
