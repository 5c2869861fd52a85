"""Prepare an image folder for training at disk speed: 'cnnlab data prepare FOLDER --size HxW'.

Every image is decoded once, in parallel worker processes, into a memory-mappable uint8 store (STORE, default
FOLDER.store beside the folder): images, labels, class names, and a manifest with the folder's listing and a
checksum per chunk. Interrupted, the same command resumes; run on a changed folder it rebuilds the chunks whose
files changed; a chunk that no longer matches its checksum is rebuilt. Then:
  cnnlab train MODEL --data STORE     (batches read straight from the memory map)
ImageNet layout (train/ and val/ class folders) keeps val/ as the held-out split; otherwise --val-fraction of
each class is held out (drawn with --seed), exactly as 'train --data FOLDER' would.
"""

from __future__ import annotations

import argparse

from ..errors import CnnlabError
from .train import parse_size

NAME = "data"
HELP = "prepare an image folder as an on-disk store for large-scale training"
ORDER = 39


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    prep = sub.add_parser("prepare", help="decode a folder once into a memory-mappable store",
                          description=(__doc__ or "").strip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    prep.add_argument("folder", metavar="FOLDER", help="image folder, one sub-folder per class (or train/ and val/)")
    prep.add_argument("--size", metavar="HxW", help="scale to cover HxW and centre-crop (needed for mixed sizes; "
                                                    "ImageNet practice: 256x256, then train at 224)")
    prep.add_argument("--out", metavar="STORE", help="the store folder (default FOLDER.store)")
    prep.add_argument("--val-fraction", type=float, default=0.1, metavar="F",
                      help="folders without val/: fraction of each class held out (default 0.1)")
    prep.add_argument("--seed", type=int, default=0, help="seed of the held-out draw (default 0)")
    prep.add_argument("--workers", type=int, metavar="N", help="decoding processes (default: one per core)")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "action", None) != "prepare":
        raise CnnlabError("give an action: 'cnnlab data prepare FOLDER --size HxW'")
    if args.workers is not None and args.workers < 1:
        raise CnnlabError(f"--workers must be >= 1, got {args.workers}")
    from ..data import store

    out = store.prepare(args.folder, args.out, parse_size(args.size), val_fraction=args.val_fraction,
                        seed=args.seed, workers=args.workers)
    m = store.manifest(out)
    (a, b), (c, d) = m["splits"]["train"], m["splits"]["val"]
    h, w = m["size"]
    print(f"store {out}: {b - a:,} training and {d - c:,} held-out images of {m['channels']}x{h}x{w}, "
          f"{len(m['classes'])} classes")
    return 0
