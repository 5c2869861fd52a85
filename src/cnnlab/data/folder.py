"""Image folders: one sub-folder per class, images in any format Pillow reads (PNG, JPEG, ...).

Layouts: ``ROOT/<class>/...``, split into train and held-out images by ``val_fraction`` (per class, seeded,
so every class keeps its share), or ``ROOT/train/<class>/`` with ``ROOT/val/`` and/or ``ROOT/test/`` used
as given. Classes are the sorted sub-folder names; hidden files and folders are ignored.

Size policy: without ``size`` every image must have the same size (mixed sizes are an error that asks for
one); with ``size=(H, W)`` each image is scaled until it covers H x W, keeping its aspect ratio, and
centre-cropped. Channels: 1 when every image is greyscale, else 3 (RGB; palettes expanded, alpha dropped;
16-bit greyscale scaled to 8 bits). Channels and size are decided once over the whole folder, so train and
held-out splits always agree. ``val_fraction=0`` trains on every image and leaves the held-out split empty.
Links are followed only while they stay inside the folder; links leading out are skipped with one warning.
Names in messages have control characters escaped. Files Pillow cannot read (a stray text file, a truncated
JPEG, a decompression bomb) are skipped with one DataWarning naming them, as real photo collections often hold
a few; a class left with no image is an error. The decoded size is checked against free memory first.
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
from PIL import Image

from ..errors import CnnlabError
from ..memory import check_fits
from ..text import safe_text
from . import sources
from .images import GREY, UNREADABLE, fit
from .sources import DataWarning

HELD_OUT = {"train": ("train",), "val": ("val", "valid", "validation", "test"),
            "test": ("test", "val", "valid", "validation")}
_SEED_RANGE = 2**64  # seeds are taken modulo 2**64, as torch.manual_seed does, so -1 is a valid seed
_WORKERS = min(8, os.cpu_count() or 1)
_warned: set[str] = set()  # warnings about the folder itself, given once per process (train and val both list it)
_surveys: dict[str, tuple[str, tuple[int, int] | None, dict[Path, Any]]] = {}


def _visible(p: Path | str) -> bool:
    return not Path(p).name.startswith(".")


def _show(p: Path, root: Path) -> str:
    """A path for a message: relative to the folder when inside it, control characters escaped."""
    return safe_text(str(p.relative_to(root) if p.is_relative_to(root) else p))


class _Tree:
    """The folder's class folders and files; a link is followed only when it stays inside the folder, so a link
    to a system directory or file is never read (they are collected for one warning instead)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.outside: list[Path] = []
        self._files: dict[Path, list[Path]] = {}

    def _inside(self, p: Path) -> bool:
        if p.is_symlink() and not p.resolve().is_relative_to(self.root):
            if p not in self.outside:
                self.outside.append(p)
            return False
        return True

    def is_dir(self, p: Path) -> bool:
        return p.is_dir() and self._inside(p)

    def class_dirs(self, base: Path) -> list[Path]:
        return sorted(d for d in base.iterdir() if _visible(d) and self.is_dir(d))

    def files(self, class_dir: Path) -> list[Path]:
        if class_dir not in self._files:
            out: list[Path] = []
            seen: set[Path] = set()
            stack = [class_dir]
            while stack:
                d = stack.pop()
                if (real := d.resolve()) in seen:  # a link back up the tree is walked once
                    continue
                seen.add(real)
                for e in d.iterdir():
                    if _visible(e) and self._inside(e):
                        if e.is_dir():
                            stack.append(e)
                        elif e.is_file():
                            out.append(e)
            self._files[class_dir] = sorted(out)
        return self._files[class_dir]

    def warn_outside(self) -> None:
        if not self.outside:
            return
        shown = [f"{_show(p, self.root)} -> {safe_text(str(p.resolve()))}" for p in sorted(self.outside)[:3]]
        more = f" and {len(self.outside) - 3} more" if len(self.outside) > 3 else ""
        msg = (f"skipped {len(self.outside)} link(s) in {safe_text(str(self.root))} that lead outside it: "
               f"{', '.join(shown)}{more}")
        if msg not in _warned:
            _warned.add(msg)
            warnings.warn(msg, DataWarning, stacklevel=4)


def _check_classes(root: Path, dirs: list[Path]) -> None:
    if not dirs:
        raise CnnlabError(f"image folder {safe_text(str(root))} is empty: it needs one sub-folder of images per "
                          "class")
    if len(dirs) == 1:
        raise CnnlabError(f"image folder {safe_text(str(root))} has a single class ('{safe_text(dirs[0].name)}'): "
                          "a classifier needs at least two class sub-folders")


def _listing(tree: _Tree, split: str, val_fraction: float,
             seed: int) -> tuple[list[str], list[tuple[Path, int]]]:
    """The classes and the (file, label) pairs of ``split``, before any file is opened."""
    root = tree.root
    train_dir = root / "train"
    held = (next((root / d for d in HELD_OUT[split] if tree.is_dir(root / d)), None)
            if split != "train" else None)
    presplit = tree.is_dir(train_dir) and any(tree.is_dir(root / d) for d in ("val", "valid", "validation", "test"))
    if presplit:
        dirs = tree.class_dirs(train_dir)
        _check_classes(train_dir, dirs)
        classes = [d.name for d in dirs]
        src = train_dir if split == "train" else held
        assert src is not None
        extra = sorted({d.name for d in tree.class_dirs(src)} - set(classes))
        if extra:
            raise CnnlabError(f"{_show(src, root)} has classes that {_show(train_dir, root)} lacks "
                              f"({', '.join(safe_text(e) for e in extra[:3])}): give both the same class sub-folders")
        items = [(f, classes.index(d.name)) for d in tree.class_dirs(src) for f in tree.files(d)]
        if not items:
            raise CnnlabError(f"image folder {safe_text(str(src))} holds no files; put images in its class "
                              "sub-folders")
        return classes, items
    base = train_dir if tree.is_dir(train_dir) else root
    dirs = tree.class_dirs(base)
    _check_classes(base, dirs)
    if not 0.0 <= val_fraction < 1.0:
        raise CnnlabError(f"val_fraction {val_fraction} is outside [0, 1): give e.g. 0.1 to hold out 10%, or 0 to "
                          "train on every image without validation")
    items = []
    for label, d in enumerate(dirs):
        files = tree.files(d)
        if not files:
            raise CnnlabError(f"class folder {safe_text(str(d))} is empty: add images or remove the folder")
        n = len(files)
        n_val = min(n - 1, max(1, round(n * val_fraction))) if val_fraction > 0 and n > 1 else 0
        perm = np.random.default_rng([seed % _SEED_RANGE, label]).permutation(n)
        chosen = perm[n_val:] if split == "train" else perm[:n_val]
        items += [(files[i], label) for i in sorted(chosen)]
    if not items and val_fraction > 0:
        raise CnnlabError(f"val_fraction {val_fraction} holds out no image of {safe_text(str(base))} (every class "
                          "has one image): add images, use val/ and train/ sub-folders, or give 0 for no validation")
    return [d.name for d in dirs], items


def _probe(path: Path) -> tuple[str, tuple[int, int]] | None:
    try:
        with Image.open(path) as im:
            return im.mode, im.size
    except UNREADABLE:
        return None


def _decode_into(out: np.ndarray, path: Path, mode: str, size: tuple[int, int] | None) -> bool:
    """Decode ``path`` straight into its slot of the batch array, so memory peaks at the data set's size."""
    try:
        with Image.open(path) as im:
            a = fit(im, mode, size)
    except UNREADABLE:
        return False
    if a.shape[:2] != out.shape[1:]:
        return False
    out[...] = a.reshape(*out.shape[1:], -1).transpose(2, 0, 1)  # HWC -> the CHW slot
    return True


def _warn_skipped(skipped: list[str], root: Path) -> None:
    if skipped:
        names = [safe_text(s) for s in skipped[:3]]
        shown = ", ".join(names) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        warnings.warn(f"skipped {len(skipped)} file(s) in {safe_text(str(root))} that are not readable images: "
                      f"{shown}", DataWarning, stacklevel=4)


def _cache_path(root: Path, split: str, key: str) -> Path:
    rootkey = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    return sources.cache_dir() / "folders" / f"{root.name}-{rootkey}-{split}-{key}.pt"


def _stats(root: Path, paths: list[Path]) -> list[tuple[str, int, int]]:
    return [(str(p.relative_to(root)), st.st_size, st.st_mtime_ns) for p in paths if (st := p.stat())]


def _all_files(tree: _Tree, val_fraction: float, seed: int) -> list[Path]:
    """Every file any split of the folder reads: the channel count and size are decided over all of them."""
    found: set[Path] = set()
    for split in HELD_OUT:
        found.update(p for p, _ in _listing(tree, split, val_fraction, seed)[1])
    return sorted(found)


def _survey(root: Path, files: list[Path], size: tuple[int, int] | None,
            key: str) -> tuple[str, tuple[int, int] | None, dict[Path, Any]]:
    """The folder's mode (``L`` when every readable image is greyscale, else ``RGB``), its common ``(H, W)``
    when no size is given, and each file's probe; decided once for the whole folder so splits agree."""
    if key in _surveys:
        return _surveys[key]
    with ThreadPoolExecutor(_WORKERS) as pool:
        probes = dict(zip(files, pool.map(_probe, files)))
    good = [(p, pr) for p, pr in probes.items() if pr is not None]
    mode = "L" if good and all(pr[0] in GREY for _, pr in good) else "RGB"
    hw = None
    if size is None and good:
        sizes = {pr[1]: p for p, pr in reversed(good)}
        if len(sizes) > 1:
            (s1, p1), (s2, p2) = list(sizes.items())[:2]
            raise CnnlabError(f"images in {safe_text(str(root))} differ in size ({s1[1]}x{s1[0]} in "
                              f"{_show(p1, root)}, {s2[1]}x{s2[0]} in {_show(p2, root)}): pass a size, e.g. "
                              "--size 224x224")
        w, h = next(iter(sizes))
        hw = (h, w)
    _surveys.clear()  # one folder's survey is kept: the train and val loads of one run share it
    _surveys[key] = (mode, hw, probes)
    return mode, hw, probes


def _decode_all(root: Path, classes: list[str], items: list[tuple[Path, int]], mode: str,
                hw: tuple[int, int], size: tuple[int, int] | None, probes: dict[Path, Any]) -> dict[str, Any]:
    skipped = [str(p.relative_to(root)) for p, _ in items if probes.get(p) is None]
    good = [(p, lab) for p, lab in items if probes.get(p) is not None]
    c, (h, w) = (1 if mode == "L" else 3), hw
    biggest = max((probes[p][1][0] * probes[p][1][1] for p, _ in good), default=0)
    scratch = min(_WORKERS, len(good)) * (4 * biggest + 2 * c * h * w)  # each thread's decoded and fitted image
    check_fits(len(good) * c * h * w + scratch,
               f"decoding {len(good):,} images of {safe_text(root.name)} at {h}x{w}x{c}",
               "pass a smaller --size" if size else "pass a smaller size, e.g. --size 224x224")
    images = np.empty((len(good), c, h, w), np.uint8)
    with ThreadPoolExecutor(_WORKERS) as pool:
        ok = np.fromiter(pool.map(lambda i: _decode_into(images[i], good[i][0], mode, size), range(len(good))),
                         bool, len(good))
    skipped += [str(good[i][0].relative_to(root)) for i in np.flatnonzero(~ok)]
    labels = np.array([lab for _, lab in good], np.int64)
    if not ok.all():
        images, labels = images[ok], labels[ok]
    _warn_skipped(skipped, root)
    unreadable = sorted({lab for _, lab in items} - set(labels.tolist()))
    if unreadable:
        raise CnnlabError(f"class '{safe_text(classes[unreadable[0]])}' in {safe_text(str(root))} has no readable "
                          "image: give it PNG or JPEG files, or remove its folder")
    return {"images": torch.from_numpy(images), "labels": torch.from_numpy(labels), "classes": classes,
            "skipped": skipped}


def load(path: str | Path, split: str, size: tuple[int, int] | None = None, val_fraction: float = 0.1,
         seed: int = 0) -> dict[str, Any]:
    """One split of an image folder as images ``(N, C, H, W)`` uint8, labels and class names.

    With ``val_fraction=0`` (and no held-out sub-folder) the held-out split is empty, shaped like the train split.
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise CnnlabError(f"image folder {safe_text(str(path))} does not exist: give a folder with one sub-folder "
                          "per class")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise CnnlabError(f"size {size} is not a valid (height, width): give two positive integers, e.g. 224x224")
    tree = _Tree(root)
    classes, items = _listing(tree, split, val_fraction, seed)
    everything = _all_files(tree, val_fraction, seed)
    tree.warn_outside()
    folder_key = hashlib.sha1(repr((str(root), size, _stats(root, everything))).encode()).hexdigest()
    labelled = [(str(p.relative_to(root)), lab) for p, lab in items]
    cache = _cache_path(root, split, hashlib.sha1(repr((classes, labelled, folder_key)).encode()).hexdigest()[:16])
    cached = sources.load_tensors(cache)
    if cached is not None:
        _warn_skipped(list(cached.get("skipped", [])), root)
        return cached
    mode, hw, probes = _survey(root, everything, size, folder_key)
    obj = _decode_all(root, classes, items, mode, size or hw or (1, 1), size, probes)
    if sources.save_tensors(cache, obj):
        for old in cache.parent.glob(cache.name.rsplit("-", 1)[0] + "-*.pt"):
            if old != cache:
                old.unlink(missing_ok=True)
    return obj
