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
from ._common import print_json

if TYPE_CHECKING:
    import torch

NAME = "predict"
HELP = "classify image files with a checkpoint"
ORDER = 42


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a .pt file written by 'cnnlab train'")
    p.add_argument("images", metavar="IMAGE", nargs="+",
                   help="image files (PNG, JPEG, ...) or a prepared store (its held-out images)")
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


def inputs(paths: list[str], channels: int, size: tuple[int, int],
           chunk: int = 256) -> tuple[list[str], Iterator[torch.Tensor]]:
    """The names and batches to classify: image files, and for a prepared store its held-out images (its
    training images when it holds none), read from its memory map ``chunk`` at a time."""
    import torch

    from ..data import store

    names: list[str] = []
    parts: list[tuple[Any, int, int]] = []  # (a stacked batch of files or a store's images, start, stop)
    files: list[torch.Tensor] = []
    for p in paths:
        if not store.is_store(p):
            files.append(read_image(p, channels, size))
            names.append(p)
            continue
        m = store.manifest(p)
        split = "val" if m["splits"]["val"][1] > m["splits"]["val"][0] else "train"
        lo, hi = m["splits"][split]
        data = store.load(p, split)
        if tuple(data["images"].shape[1:]) != (channels, *size):
            raise CnnlabError(f"store {p} holds {'x'.join(map(str, data['images'].shape[1:]))} images but the model "
                              f"takes {channels}x{size[0]}x{size[1]}: prepare a store with --size {size[0]}x{size[1]}")
        if files:
            parts.append((torch.stack(files), 0, len(files)))
            files = []
        names += [f"{p}/{e[0]}" for e in m["files"][lo:hi]]
        parts += [(data["images"], i, min(i + chunk, hi - lo)) for i in range(0, hi - lo, chunk)]
    if files:
        parts.append((torch.stack(files), 0, len(files)))
    return names, (t[a:b].clone() for t, a, b in parts)


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
    names, batches = inputs(args.images, c, (h, w))
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
    width = max(len(Path(p).name) for p in names)
    for r in rows:
        preds = "  ".join(f"{q['class']} {q['probability']:.1%}" for q in r["predictions"])
        print(f"{Path(r['image']).name:<{width}}  {preds}")
    return 0
