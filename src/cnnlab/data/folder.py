"""Image folders: one sub-folder per class, images in any format Pillow reads (PNG, JPEG, ...).

Layouts: ``ROOT/<class>/...``, split into train and held-out images by ``val_fraction`` (per class, seeded,
so every class keeps its share), or ``ROOT/train/<class>/`` with ``ROOT/val/`` and/or ``ROOT/test/`` used
as given. Classes are the sorted sub-folder names; hidden files and folders are ignored.

Size policy: without ``size`` every image must have the same size (mixed sizes are an error that asks for
one); with ``size=(H, W)`` each image is scaled until it covers H x W, keeping its aspect ratio, and
centre-cropped. Channels: 1 when every image is greyscale, else 3 (RGB; palettes expanded, alpha dropped).
Files Pillow cannot read (a stray text file, a truncated JPEG) are skipped with one DataWarning naming them,
as real photo collections often hold a few; a class left with no image is an error.
Decoded splits are cached, keyed by the folder's file names, sizes and times, so a second run skips decoding.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import CnnlabError
from . import sources
from .sources import DataWarning

HELD_OUT = {"train": ("train",), "val": ("val", "valid", "validation", "test"),
            "test": ("test", "val", "valid", "validation")}
_UNREADABLE = (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError)
_GREY = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def _visible(p: Path | str) -> bool:
    return not Path(p).name.startswith(".")


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and _visible(d))


def _files(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.rglob("*") if p.is_file()
                  and all(_visible(q) for q in p.relative_to(class_dir).parts))


def _check_classes(root: Path, dirs: list[Path]) -> None:
    if not dirs:
        raise CnnlabError(f"image folder {root} is empty: it needs one sub-folder of images per class")
    if len(dirs) == 1:
        raise CnnlabError(f"image folder {root} has a single class ('{dirs[0].name}'): a classifier needs at "
                          "least two class sub-folders")


def _listing(root: Path, split: str, val_fraction: float, seed: int) -> tuple[list[str], list[tuple[Path, int]]]:
    """The classes and the (file, label) pairs of ``split``, before any file is opened."""
    train_dir = root / "train"
    held = next((root / d for d in HELD_OUT[split] if (root / d).is_dir()), None) if split != "train" else None
    presplit = train_dir.is_dir() and any((root / d).is_dir() for d in ("val", "valid", "validation", "test"))
    if presplit:
        classes = [d.name for d in _class_dirs(train_dir)]
        _check_classes(train_dir, _class_dirs(train_dir))
        src = train_dir if split == "train" else held
        assert src is not None
        extra = sorted({d.name for d in _class_dirs(src)} - set(classes))
        if extra:
            raise CnnlabError(f"{src} has classes that {train_dir} lacks ({', '.join(extra[:3])}): give both the "
                              "same class sub-folders")
        items = [(f, classes.index(d.name)) for d in _class_dirs(src) for f in _files(d)]
        if not items:
            raise CnnlabError(f"image folder {src} holds no files; put images in its class sub-folders")
        return classes, items
    base = train_dir if train_dir.is_dir() else root
    dirs = _class_dirs(base)
    _check_classes(base, dirs)
    if not 0.0 <= val_fraction < 1.0:
        raise CnnlabError(f"val_fraction {val_fraction} is outside [0, 1): give e.g. 0.1 to hold out 10%")
    items = []
    for label, d in enumerate(dirs):
        files = _files(d)
        if not files:
            raise CnnlabError(f"class folder {d} is empty: add images or remove the folder")
        n = len(files)
        n_val = min(n - 1, max(1, round(n * val_fraction))) if val_fraction > 0 and n > 1 else 0
        perm = np.random.default_rng([seed, label]).permutation(n)
        chosen = perm[n_val:] if split == "train" else perm[:n_val]
        items += [(files[i], label) for i in sorted(chosen)]
    if not items:
        raise CnnlabError(f"val_fraction {val_fraction} holds out no image of {base}: use a fraction > 0, or "
                          "val/ and train/ sub-folders")
    return [d.name for d in dirs], items


def _probe(path: Path) -> tuple[str, tuple[int, int]] | None:
    try:
        with Image.open(path) as im:
            return im.mode, im.size
    except _UNREADABLE:
        return None


def _decode_into(out: np.ndarray, path: Path, mode: str, size: tuple[int, int] | None) -> bool:
    """Decode ``path`` straight into its slot of the batch array, so memory peaks at the data set's size."""
    try:
        with Image.open(path) as im:
            if size is not None:
                im.draft(mode, (size[1], size[0]))  # JPEG: decode at a reduced scale that still covers size
            im = im.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = ImageOps.fit(im, (size[1], size[0]), method=Image.Resampling.BILINEAR)
            a = np.asarray(im)
    except _UNREADABLE:
        return False
    if a.shape[:2] != out.shape[1:]:
        return False
    out[...] = a.reshape(*out.shape[1:], -1).transpose(2, 0, 1)  # HWC -> the CHW slot
    return True


def _warn_skipped(skipped: list[str], root: Path) -> None:
    if skipped:
        shown = ", ".join(skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        warnings.warn(f"skipped {len(skipped)} file(s) in {root} that are not readable images: {shown}",
                      DataWarning, stacklevel=4)


def _cache_path(root: Path, split: str, key: str) -> Path:
    rootkey = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    return sources.cache_dir() / "folders" / f"{root.name}-{rootkey}-{split}-{key}.pt"


def _decode_all(root: Path, classes: list[str], items: list[tuple[Path, int]],
                size: tuple[int, int] | None) -> dict[str, Any]:
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        probes = list(pool.map(_probe, (p for p, _ in items)))
    skipped = [str(p.relative_to(root)) for (p, _), pr in zip(items, probes) if pr is None]
    good = [(it, pr) for it, pr in zip(items, probes) if pr is not None]
    mode = "L" if good and all(pr[0] in _GREY for _, pr in good) else "RGB"
    if size is None:
        sizes = {pr[1]: it[0] for it, pr in reversed(good)}
        if len(sizes) > 1:
            (s1, p1), (s2, p2) = list(sizes.items())[:2]
            raise CnnlabError(f"images in {root} differ in size ({s1[1]}x{s1[0]} in {p1.relative_to(root)}, "
                              f"{s2[1]}x{s2[0]} in {p2.relative_to(root)}): pass a size, e.g. --size 224x224")
        w, h = next(iter(sizes)) if sizes else (1, 1)
    else:
        h, w = size
    c = 1 if mode == "L" else 3
    images = np.empty((len(good), c, h, w), np.uint8)
    with ThreadPoolExecutor(workers) as pool:
        ok = np.fromiter(pool.map(lambda i: _decode_into(images[i], good[i][0][0], mode, size), range(len(good))),
                         bool, len(good))
    skipped += [str(good[i][0][0].relative_to(root)) for i in np.flatnonzero(~ok)]
    labels = np.array([lab for (_, lab), _ in good], np.int64)
    if not ok.all():
        images, labels = images[ok], labels[ok]
    _warn_skipped(skipped, root)
    unreadable = sorted({lab for _, lab in items} - set(labels.tolist()))
    if unreadable:
        raise CnnlabError(f"class '{classes[unreadable[0]]}' in {root} has no readable image: give it PNG or "
                          "JPEG files, or remove its folder")
    return {"images": torch.from_numpy(images), "labels": torch.from_numpy(labels), "classes": classes, "skipped": skipped}


def load(path: str | Path, split: str, size: tuple[int, int] | None = None, val_fraction: float = 0.1,
         seed: int = 0) -> dict[str, Any]:
    """One split of an image folder as images ``(N, C, H, W)`` uint8, labels and class names."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise CnnlabError(f"image folder {path} does not exist: give a folder with one sub-folder per class")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise CnnlabError(f"size {size} is not a valid (height, width): give two positive integers, e.g. 224x224")
    classes, items = _listing(root, split, val_fraction, seed)
    stats = [(str(p.relative_to(root)), lab, st.st_size, st.st_mtime_ns) for p, lab in items if (st := p.stat())]
    h = hashlib.sha1(repr((classes, size, stats)).encode())
    cache = _cache_path(root, split, h.hexdigest()[:16])
    cached = sources.load_tensors(cache)
    if cached is not None:
        _warn_skipped(list(cached.get("skipped", [])), root)
        return cached
    obj = _decode_all(root, classes, items, size)
    if sources.save_tensors(cache, obj):
        for old in cache.parent.glob(cache.name.rsplit("-", 1)[0] + "-*.pt"):
            if old != cache:
                old.unlink(missing_ok=True)
    return obj
