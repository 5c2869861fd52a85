"""Data sets in memory: MNIST, CIFAR-10/100 and image folders, as uint8 tensors the trainer batches directly.

A whole data set sits in one ``(N, C, H, W)`` uint8 tensor (MNIST: 47 MB, CIFAR-10: 154 MB), so a batch
is a slice or an index, augmentation runs batched on tensors (see :mod:`cnnlab.data.augment`), and no
per-sample Python loop stands between the disk and the model. Importing this package does not import
torch; loading does.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CnnlabError
from .sources import ChecksumError, DataWarning, cache_dir

if TYPE_CHECKING:
    import torch

NAMED = ("mnist", "cifar10", "cifar100")
SPLITS = ("train", "test", "val")

__all__ = ["NAMED", "ChecksumError", "DataWarning", "ImageSet", "cache_dir", "load"]


@dataclass
class ImageSet:
    """Images ``(N, C, H, W)`` uint8, contiguous, with int64 labels indexing ``classes``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str = ""
    mapped: bool = False  # images are mapped from a prepared store on disk, not held in memory

    def __post_init__(self) -> None:
        import torch

        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise CnnlabError(f"ImageSet images must be uint8 (N, C, H, W), got {self.images.dtype} "
                              f"{tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise CnnlabError(f"ImageSet has {len(self.images)} images but labels of shape {tuple(self.labels.shape)}")
        self.images = self.images.contiguous()
        self.labels = self.labels.to(torch.int64)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        """One image's ``(C, H, W)``: the input shape a model for this set is built for."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _split(split: str) -> str:
    s = split.lower()
    if s not in SPLITS:
        raise CnnlabError(f"unknown split '{split}': use train, test or val")
    return s


def load(source: str, split: str = "train", *, data_dir: str | Path | None = None,
         size: tuple[int, int] | None = None, val_fraction: float = 0.1, seed: int = 0) -> ImageSet:
    """Load one split of a data set into memory.

    ``source``: ``mnist`` | ``cifar10`` | ``cifar100`` | a path to an image folder (one sub-folder per class) |
    a store made by :func:`cnnlab.data.store.prepare` (its own split; ``val_fraction`` and ``seed`` unused).
    ``split``: ``train`` | ``test`` | ``val``. For an image folder ``val`` and ``test`` are its held-out
    images (``val/`` or ``test/`` sub-folders when present, else ``val_fraction`` of each class, drawn with
    ``seed``); the named sets publish no validation split, so there ``val`` is their test split.
    ``data_dir``: where to look first for the named sets' original files. ``size``: ``(H, W)`` for image
    folders (scale to cover, centre crop); ignored by the named sets, whose size is fixed.
    """
    s = _split(split)
    name = source.lower() if isinstance(source, str) else ""
    ddir = None
    if data_dir is not None:
        ddir = Path(data_dir).expanduser()
        if not ddir.is_dir():
            raise CnnlabError(f"--data-dir {data_dir} is not a folder: give the folder holding the data set's files")
    if name in NAMED:
        named_split = "train" if s == "train" else "test"
        if name == "mnist":
            from . import mnist

            obj = mnist.load(named_split, ddir)
        else:
            from . import cifar

            obj = cifar.load(name, named_split, ddir)
        return ImageSet(obj["images"], obj["labels"], list(obj["classes"]), f"{name}/{named_split}")
    path = Path(str(source)).expanduser()
    from . import store

    if store.is_store(path):
        obj = store.load(path, s, size=size)
        return ImageSet(obj["images"], obj["labels"], list(obj["classes"]), f"{path.resolve().name}/{s}",
                        mapped=True)
    if not path.is_dir():
        close = difflib.get_close_matches(name, NAMED, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise CnnlabError(f"unknown data set '{source}': {hint}use mnist, cifar10, cifar100 or the path of an "
                          "image folder")
    from . import folder

    obj = folder.load(path, s, size=size, val_fraction=val_fraction, seed=seed)
    return ImageSet(obj["images"], obj["labels"], list(obj["classes"]), f"{path.resolve().name}/{s}")
