"""CIFAR-10 and CIFAR-100, in both formats the authors publish.

python version: one pickled dict per batch (``b'data'``: uint8 N x 3072, ``b'labels'`` or, for CIFAR-100,
``b'fine_labels'``) and a meta pickle with the class names. binary version: fixed-size records of the label
byte(s) (CIFAR-100: coarse, then fine) and 3072 pixel bytes, with the class names in a text file. Rows are
channel-planar (1024 red, 1024 green, 1024 blue bytes), so they reshape straight to ``(3, 32, 32)``.

Python batches are unpickled only after their published MD5 matched, and then with an unpickler that
accepts nothing but numpy arrays. The binary batch files have no published per-file checksum: inside
``--data-dir`` they are checked by record size and label range (their archive is MD5-checked).
"""

from __future__ import annotations

import importlib
import io
import pickle
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CnnlabError
from . import sources
from .sources import Attempts, ChecksumError, DataWarning

PIXELS = 3 * 32 * 32
_FIX = "delete it and let cnnlab fetch the data again, or pass --data-dir with the original files"
_DIR_FIX = "replace it with the original file, or leave out --data-dir to let cnnlab fetch the data"


@dataclass(frozen=True)
class Variant:
    """Where one CIFAR set lives and what its files are called, in both formats."""

    title: str
    num_classes: int
    url: str
    archive: str
    md5: str
    folder: str
    batches: dict[str, tuple[tuple[str, str], ...]]  # split -> (file, md5), python version
    meta: tuple[str, str]
    labels_key: bytes
    names_key: bytes
    bin_archive: str
    bin_md5: str
    bin_folder: str
    bin_batches: dict[str, tuple[str, ...]]
    bin_meta: str
    label_bytes: int


VARIANTS = {
    "cifar10": Variant(
        "CIFAR-10", 10, "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py",
        {"train": (("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                   ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                   ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                   ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                   ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb")),
         "test": (("test_batch", "40351d587109b95175f43aff81a1287e"),)},
        ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"), b"labels", b"label_names",
        "cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", "cifar-10-batches-bin",
        {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
        "batches.meta.txt", 1),
    "cifar100": Variant(
        "CIFAR-100", 100, "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python",
        {"train": (("train", "16019d7e3df5f24257cddd939b257f8d"),),
         "test": (("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),)},
        ("meta", "7973b15100ade9c7d40fb424638fde48"), b"fine_labels", b"fine_label_names",
        "cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8", "cifar-100-binary",
        {"train": ("train.bin",), "test": ("test.bin",)}, "fine_label_names.txt", 2),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, bytes and numpy arrays; refuses every other class a pickle may name."""

    _ALLOWED = {"_reconstruct", "ndarray", "dtype", "scalar"}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 spells bytes when written by Python 3
            return super().find_class(module, name)
        if module.split(".")[0] != "numpy" or name not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        for mod in (module.replace("numpy.core", "numpy._core"), module):  # files written before numpy 2
            try:
                return getattr(importlib.import_module(mod), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"cannot find {module}.{name}")


def _unpickle(data: bytes, what: str) -> dict[Any, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:
        raise CnnlabError(f"{what} is not a CIFAR python batch ({type(e).__name__}: {e}); {_FIX}") from e
    if not isinstance(obj, dict):
        raise CnnlabError(f"{what} is not a CIFAR python batch (holds a {type(obj).__name__}); {_FIX}")
    return obj


def _get(obj: dict[Any, Any], key: bytes, what: str) -> Any:
    for k in (key, key.decode()):
        if k in obj:
            return obj[k]
    raise CnnlabError(f"{what} has no '{key.decode()}' entry; {_FIX}")


def read_python_batch(data: bytes, labels_key: bytes = b"labels", what: str = "CIFAR batch") -> tuple[np.ndarray,
                                                                                                     np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels from one pickled batch."""
    obj = _unpickle(data, what)
    x = np.asarray(_get(obj, b"data", what))
    y = np.asarray(_get(obj, labels_key, what), dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != PIXELS or len(y) != len(x):
        raise CnnlabError(f"{what}: expected uint8 data N x {PIXELS} and N labels, got {x.dtype} "
                          f"{'x'.join(map(str, x.shape))} and {len(y)} labels; {_FIX}")
    return x.reshape(-1, 3, 32, 32), y


def read_python_meta(data: bytes, names_key: bytes, what: str = "CIFAR meta") -> list[str]:
    names = _get(_unpickle(data, what), names_key, what)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def read_binary_batch(data: bytes, label_bytes: int = 1, what: str = "CIFAR batch") -> tuple[np.ndarray,
                                                                                             np.ndarray]:
    """Images and labels from fixed-size records; with two label bytes (CIFAR-100) the second, fine one."""
    record = label_bytes + PIXELS
    if not data or len(data) % record:
        raise CnnlabError(f"{what} is truncated or not a CIFAR binary batch: {len(data)} bytes is not a whole "
                          f"number of {record}-byte records; {_FIX}")
    rows = np.frombuffer(data, np.uint8).reshape(-1, record)
    return rows[:, label_bytes:].reshape(-1, 3, 32, 32), rows[:, label_bytes - 1].astype(np.int64)


def read_binary_meta(data: bytes) -> list[str]:
    return [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]


def _assemble(parts: list[tuple[np.ndarray, np.ndarray]], classes: list[str], v: Variant,
              what: str) -> dict[str, Any]:
    if len(classes) != v.num_classes:
        raise CnnlabError(f"{what}: the class-name file lists {len(classes)} classes, {v.title} has "
                          f"{v.num_classes}; {_FIX}")
    y = np.concatenate([p[1] for p in parts])
    if len(y) and (y.min() < 0 or y.max() >= v.num_classes):
        raise CnnlabError(f"{what}: label {int(y.max())} outside 0-{v.num_classes - 1}; {_FIX}")
    x = np.concatenate([p[0] for p in parts])
    return {"images": torch.from_numpy(x), "labels": torch.from_numpy(y), "classes": classes}


def _verified(path: Path, md5: str) -> bytes:
    data = path.read_bytes()
    sources.check_md5(sources.md5_bytes(data), md5, str(path), _FIX)
    return data


def read_folder(folder: Path, name: str, split: str) -> dict[str, Any] | None:
    """One split from an extracted folder in either format; None when the folder holds neither."""
    v = VARIANTS[name]
    what = f"{v.title} {split} in {folder}"
    if all((folder / f).is_file() for f, _ in v.batches[split]):
        meta = folder / v.meta[0]
        if not meta.is_file():
            raise CnnlabError(f"{what}: {meta.name} (the class names) is missing; copy it next to the batches")
        parts = [read_python_batch(_verified(folder / f, md5), v.labels_key, str(folder / f))
                 for f, md5 in v.batches[split]]
        return _assemble(parts, read_python_meta(_verified(meta, v.meta[1]), v.names_key, str(meta)), v, what)
    if all((folder / f).is_file() for f in v.bin_batches[split]):
        meta = folder / v.bin_meta
        if not meta.is_file():
            raise CnnlabError(f"{what}: {meta.name} (the class names) is missing; copy it next to the batches")
        parts = [read_binary_batch((folder / f).read_bytes(), v.label_bytes, str(folder / f))
                 for f in v.bin_batches[split]]
        return _assemble(parts, read_binary_meta(meta.read_bytes()), v, what)
    return None


def read_archive(archive: Path, md5: str, name: str, workdir: Path | None = None) -> dict[str, dict[str, Any]]:
    """Both splits from an official archive, refused unless its MD5 matches; unpacked to a temporary folder."""
    v = VARIANTS[name]
    sources.check_md5(sources.md5_file(archive), md5, str(archive), _FIX)
    with tempfile.TemporaryDirectory(prefix=".unpack-", dir=workdir) as tmp:
        sources.extract(archive, Path(tmp))
        for folder in (Path(tmp) / v.folder, Path(tmp) / v.bin_folder):
            if folder.is_dir():
                splits = {s: read_folder(folder, name, s) for s in v.batches}
                if all(splits.values()):
                    return splits  # type: ignore[return-value]
    raise CnnlabError(f"{archive} does not hold the {v.title} batches; {_FIX}")


def _from_data_dir(data_dir: Path, name: str, split: str) -> dict[str, Any] | None:
    try:
        return _read_data_dir(data_dir, name, split)
    except CnnlabError as e:  # the user's own file: to be replaced by them, not fetched again
        raise type(e)(str(e).replace(_FIX, _DIR_FIX)) from None


def _read_data_dir(data_dir: Path, name: str, split: str) -> dict[str, Any] | None:
    v = VARIANTS[name]
    for folder in (data_dir, data_dir / v.folder, data_dir / v.bin_folder):
        if folder.is_dir() and (found := read_folder(folder, name, split)) is not None:
            return found
    for archive, md5 in ((v.archive, v.md5), (v.bin_archive, v.bin_md5)):
        if (data_dir / archive).is_file():
            return read_archive(data_dir / archive, md5, name)[split]
    return None


def load(name: str, split: str, data_dir: Path | None = None) -> dict[str, Any]:
    """One split of ``cifar10`` or ``cifar100`` through the source chain: --data-dir, cache, official site."""
    v = VARIANTS[name]
    attempts = Attempts(v.title)
    if data_dir is not None:
        found = _from_data_dir(data_dir, name, split)
        if found is not None:
            return found
        attempts.note(f"--data-dir {data_dir}", f"no {v.folder}/, {v.bin_folder}/, {v.archive} or {v.bin_archive}")
    root = sources.cache_dir() / name
    cached = sources.load_tensors(root / f"{split}.pt")
    if cached is not None:
        return cached
    attempts.note(f"cache {root}", "empty")
    root = sources.work_dir(root)
    with sources.locked(root):
        cached = sources.load_tensors(root / f"{split}.pt")
        if cached is not None:
            return cached
        archive = root / v.archive
        if archive.is_file() and sources.md5_file(archive) != v.md5:
            warnings.warn(f"{archive} failed its checksum; fetching it again", DataWarning, stacklevel=2)
            archive.unlink()
        fetched = not archive.is_file()
        if fetched:
            sources.say(f"{v.title}: not in the cache {root}; fetching {v.url}")
            try:
                sources.download(v.url, archive, v.md5)
            except (OSError, ChecksumError) as e:
                attempts.note(v.url, sources.short_reason(e))
                raise attempts.error(f"download {v.url} (MD5 {v.md5}) yourself and pass its folder with "
                                     "--data-dir") from None
        splits = read_archive(archive, v.md5, name, workdir=root)
        for s, obj in splits.items():
            sources.save_tensors(root / f"{s}.pt", obj)
        if fetched:
            sources.say(f"{v.title}: archive from {v.url}; MD5 checksum passed; cached in {root}")
    return splits[split]
