"""Prepared stores: an image folder decoded once into an on-disk, memory-mappable uint8 array.

A folder too large for memory (ImageNet: 1.28M images, 250 GB at 256x256) cannot be decoded into one tensor.
``prepare`` decodes it once, in worker processes, into ``STORE/images.u8`` (``(N, C, H, W)`` uint8, training
images first, then held-out ones), ``labels.npy``, ``manifest.json`` (classes, size, split, and the source
listing: path, bytes and mtime of every file) and ``chunks.json`` (for every chunk of images: a key of its
files' listing and the CRC-32 of its bytes). A chunk counts as done only once its bytes are flushed and its
checksum recorded (``chunks.json`` is replaced atomically), so an interrupted prepare resumes at the first
missing chunk; a chunk whose files changed, or whose bytes no longer match their checksum, is rebuilt. Training
maps the file (``load``): batches are gathered from the page cache, never copied whole, and every chunk of the
split is checked against its checksum first, so a corrupt chunk is never trained on.

Workers import numpy and Pillow only; the listing reuses the folder loader's rules (classes, links, splits).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import shutil
import sys
import warnings
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CnnlabError
from ..text import safe_text
from . import sources
from .images import GREY, read_image
from .sources import DataWarning

FORMAT = 1
MANIFEST, CHUNKS, IMAGES, LABELS = "manifest.json", "chunks.json", "images.u8", "labels.npy"
CHUNK_BYTES = 64 << 20  # images per chunk: about 64 MiB, so a rebuilt chunk costs seconds, a checksum ~50 ms
SPLITS = ("train", "val")


def is_store(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a store's files (a damaged one too, so it is reported as such)."""
    return any((Path(path) / f).is_file() for f in (MANIFEST, CHUNKS, IMAGES))


def default_location(folder: str | Path, size: tuple[int, int] | None) -> Path:
    """Where ``train --data FOLDER`` keeps the store of a folder too large for memory: in the cache."""
    root = Path(folder).expanduser().resolve()
    key = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    tag = f"{size[0]}x{size[1]}" if size else "native"
    return sources.cache_dir() / "stores" / f"{root.name}-{key}-{tag}"


def estimated_bytes(folder: str | Path, size: tuple[int, int] | None) -> tuple[int, int]:
    """(images, bytes of one decoded image) of a folder, counting 3 channels and, without ``size``, the first
    readable image's size."""
    from PIL import Image

    root = Path(folder).expanduser()
    files = [p for p in root.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.parts[-2:])]
    if size is None:
        for p in files:
            try:
                with Image.open(p) as im:
                    size = (im.size[1], im.size[0])
                break
            except (OSError, ValueError):
                continue
    h, w = size or (0, 0)
    return len(files), 3 * h * w


def too_large(folder: str | Path, size: tuple[int, int] | None, store: Path | None = None) -> bool:
    """True when the folder's decoded images would not fit in the memory available now, but a store of them
    would: one image fits in memory and the store on the disk holding ``store``. Otherwise the in-memory loader
    runs and says what does not fit."""
    from ..memory import available_bytes

    avail = available_bytes()
    if avail is None:
        return False
    n, per = estimated_bytes(folder, size)
    if n * per <= avail * 0.8 or per * 5 > avail:
        return False
    place = Path(store) if store is not None else sources.cache_dir()
    while not place.exists() and place != place.parent:
        place = place.parent
    return shutil.disk_usage(place).free > n * per


# --- the listing --------------------------------------------------------------------------------------------

def _listing(root: Path, val_fraction: float, seed: int) -> tuple[list[str], list[tuple[Path, int]], int]:
    """Classes, the (file, label) pairs of train then held-out images in the folder loader's order, and the
    number of training images."""
    from . import folder

    tree = folder._Tree(root)
    classes, train = folder._listing(tree, "train", val_fraction, seed)
    _, val = folder._listing(tree, "val", val_fraction, seed)
    tree.warn_outside()
    return classes, train + val, len(train)


def _entry(root: Path, p: Path, label: int) -> list[Any]:
    st = p.stat()
    return [str(p.relative_to(root)), st.st_size, st.st_mtime_ns, label]


def _survey(root: Path, paths: list[Path], size: tuple[int, int] | None) -> tuple[str, tuple[int, int], list[bool]]:
    """The folder's mode (L when every readable image is greyscale), its (H, W), and which files are readable."""
    from . import folder

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        probes = list(pool.map(folder._probe, paths))
    good = [pr for pr in probes if pr is not None]
    if not good:
        raise CnnlabError(f"image folder {safe_text(str(root))} holds no readable image: give it PNG or JPEG files")
    mode = "L" if all(pr[0] in GREY for pr in good) else "RGB"
    if size is None:
        sizes = {pr[1]: p for p, pr in zip(paths, probes) if pr is not None}
        if len(sizes) > 1:
            (s1, p1), (s2, p2) = list(sizes.items())[:2]
            raise CnnlabError(f"images in {safe_text(str(root))} differ in size ({s1[1]}x{s1[0]} in "
                              f"{safe_text(str(p1.relative_to(root)))}, {s2[1]}x{s2[0]} in "
                              f"{safe_text(str(p2.relative_to(root)))}): pass a size, e.g. --size 256x256")
        w, h = next(iter(sizes))
        size = (h, w)
    return mode, size, [pr is not None for pr in probes]


# --- files of a store ---------------------------------------------------------------------------------------

def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, obj: Any) -> None:
    sources.atomic_write(path, json.dumps(obj, separators=(",", ":")).encode())


def _chunk_key(entries: list[list[Any]]) -> str:
    return hashlib.sha1(json.dumps(entries).encode()).hexdigest()[:16]


def _image_bytes(m: dict[str, Any]) -> int:
    return int(m["channels"] * m["size"][0] * m["size"][1])


def _chunk_range(m: dict[str, Any], k: int) -> tuple[int, int]:
    return k * m["chunk"], min(m["count"], (k + 1) * m["chunk"])


def _crc(path: Path, offset: int, nbytes: int) -> int:
    """CRC-32 of ``nbytes`` at ``offset``, read through a memory map: no buffer is allocated (the pages belong to
    the page cache), and zlib releases the GIL, so threads check chunks in parallel. -1 when the file is short."""
    if nbytes == 0:
        return 0
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size < offset + nbytes:
            return -1
        with mmap.mmap(f.fileno(), offset + nbytes - start, access=mmap.ACCESS_READ, offset=start) as mm:
            view = memoryview(mm)
            try:
                return zlib.crc32(view[offset - start:])
            finally:
                view.release()


def _worker_init() -> None:
    """Worker: end with the process that started it (Linux), so a killed prepare leaves no decoders behind."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before the line above ran
            os._exit(1)


def _decode_chunk(images: str, start: int, paths: list[str], channels: int,
                  size: tuple[int, int]) -> tuple[int, str | None]:
    """Worker: decode ``paths`` into their slots of ``images`` from slot ``start``, flush, return the chunk's CRC
    (or the first file that would not decode)."""
    h, w = size
    per = channels * h * w
    with open(images, "r+b") as f:
        for i, p in enumerate(paths):
            try:
                a = read_image(p, channels, size)
            except CnnlabError as e:
                return 0, str(e)
            if a.shape[:2] != (h, w):
                return 0, f"{safe_text(p)} decoded to {a.shape[1]}x{a.shape[0]}, not {w}x{h}"
            a = a.reshape(h, w, -1).transpose(2, 0, 1)
            f.seek((start + i) * per)
            f.write(np.ascontiguousarray(a).tobytes())
        f.flush()
        os.fsync(f.fileno())
    return _crc(Path(images), start * per, len(paths) * per), None


# --- prepare ------------------------------------------------------------------------------------------------

def prepare(folder: str | Path, out: str | Path | None = None, size: tuple[int, int] | None = None, *,
            val_fraction: float = 0.1, seed: int = 0, workers: int | None = None, chunk: int | None = None,
            log: Callable[[str], None] = sources.say, on_chunk: Callable[[int], None] | None = None) -> Path:
    """Decode ``folder`` into the store ``out`` (default: beside the folder, ``FOLDER.store``); returns ``out``.

    Idempotent: chunks already done and intact are kept, so a second call after an interruption resumes, and a
    call on a finished store only checks it. ``chunk`` images per chunk (default about 64 MiB);
    ``on_chunk(k)`` runs after chunk ``k`` is recorded.
    """
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise CnnlabError(f"image folder {safe_text(str(folder))} does not exist: give a folder with one sub-folder "
                          "per class")
    if is_store(root):
        raise CnnlabError(f"{safe_text(str(folder))} is already a prepared store: train on it with --data")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise CnnlabError(f"size {size} is not a valid (height, width): give two positive integers, e.g. 256x256")
    store = Path(out).expanduser() if out is not None else root.with_name(root.name + ".store")
    if store.exists() and not store.is_dir():
        raise CnnlabError(f"--out {safe_text(str(store))} is a file: give a folder for the store")
    if store.is_dir() and not is_store(store) and any(p.name != ".lock" for p in store.iterdir()):
        raise CnnlabError(f"--out {safe_text(str(store))} is a folder holding other files: give a new or empty folder "
                          "for the store")
    if store.resolve().is_relative_to(root):
        raise CnnlabError(f"--out {safe_text(str(store))} is inside the folder it would hold: put it elsewhere")
    with sources.locked(store):
        return _prepare(root, store, size, val_fraction, seed, workers, chunk, log, on_chunk)


def _prepare(root: Path, store: Path, size: tuple[int, int] | None, val_fraction: float, seed: int,
             workers: int | None, chunk: int | None, log: Callable[[str], None],
             on_chunk: Callable[[int], None] | None) -> Path:
    classes, items, n_train = _listing(root, val_fraction, seed)
    entries = [_entry(root, p, lab) for p, lab in items]
    old = _read_json(store / MANIFEST)
    same_source = (isinstance(old, dict) and old.get("format") == FORMAT and old.get("source") == str(root)
                   and old.get("classes") == classes and old.get("val_fraction") == val_fraction
                   and old.get("seed") == seed and old.get("asked_size") == (list(size) if size else None))
    changed = not (same_source and old["files"] == entries)
    if not changed:
        m = old
    else:
        mode, hw, readable = _survey(root, [p for p, _ in items], size)
        skipped = [e[0] for e, ok in zip(entries, readable) if not ok]
        if skipped:
            more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
            warnings.warn(f"skipped {len(skipped)} file(s) in {safe_text(str(root))} that are not readable images: "
                          f"{', '.join(safe_text(s) for s in skipped[:3])}{more}", DataWarning, stacklevel=3)
        n_train -= sum(not ok for ok in readable[:n_train])
        entries = [e for e, ok in zip(entries, readable) if ok]
        channels = 1 if mode == "L" else 3
        per = channels * hw[0] * hw[1]
        m = {"format": FORMAT, "kind": "cnnlab-store", "source": str(root), "classes": classes,
             "asked_size": list(size) if size else None, "size": list(hw), "channels": channels,
             "val_fraction": val_fraction, "seed": seed, "count": len(entries),
             "splits": {"train": [0, n_train], "val": [n_train, len(entries)]},
             "chunk": chunk or max(1, CHUNK_BYTES // per), "skipped": skipped, "files": entries}
        changed = isinstance(old, dict)
        if changed:
            reason = ("its files changed" if same_source and old.get("size") == m["size"]
                      and old.get("channels") == m["channels"] else "it was prepared from other data or settings")
            log(f"{safe_text(str(root))} differs from the store {safe_text(str(store))} ({reason}): changed chunks "
                "are rebuilt")
            if old.get("size") != m["size"] or old.get("channels") != m["channels"] or old.get("chunk") != m["chunk"]:
                (store / CHUNKS).unlink(missing_ok=True)
        _write_json(store / MANIFEST, m)
    labels = np.array([e[3] for e in m["files"]], np.int64)
    with sources.atomic_path(store / LABELS) as tmp, open(tmp, "wb") as f:
        np.save(f, labels)
    _fill(root, store, m, workers, log, on_chunk, changed)
    return store


def _fill(root: Path, store: Path, m: dict[str, Any], workers: int | None, log: Callable[[str], None],
          on_chunk: Callable[[int], None] | None, changed: bool) -> None:
    """Decode every chunk that is missing, stale or corrupt."""
    per, images = _image_bytes(m), store / IMAGES
    total = m["count"] * per
    if not images.exists() or images.stat().st_size != total:
        with open(images, "ab") as f:
            f.truncate(total)  # sparse until written
    n_chunks = -(-m["count"] // m["chunk"])
    keys = [_chunk_key(m["files"][slice(*_chunk_range(m, k))]) for k in range(n_chunks)]
    recorded = _read_json(store / CHUNKS)
    done: dict[str, list[Any]] = recorded if isinstance(recorded, dict) else {}
    done = {k: v for k, v in done.items() if k.isdigit() and int(k) < n_chunks and v[0] == keys[int(k)]}
    bad = _corrupt(store, m, {int(k): v[1] for k, v in done.items()})
    if bad:
        log(f"{len(bad)} chunk(s) of {safe_text(str(store))} do not match their checksum (chunk "
            f"{', '.join(map(str, bad[:5]))}): rebuilding them")
        for k in bad:
            done.pop(str(k))
    _write_json(store / CHUNKS, done)
    todo = [k for k in range(n_chunks) if str(k) not in done]
    if not todo:
        return
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    if len(todo) < n_chunks and not (changed or bad):
        log(f"resuming {safe_text(str(store))}: {n_chunks - len(todo)} of {n_chunks} chunks are done")
    c, size = m["channels"], tuple(m["size"])
    failed: list[str] = []
    with _bar(f"preparing {store.name}", m["count"], log) as advance, \
            ProcessPoolExecutor(n_workers, get_context("spawn"), _worker_init) as pool:
        futures = {pool.submit(_decode_chunk, str(images), _chunk_range(m, k)[0],
                               [str(root / e[0]) for e in m["files"][slice(*_chunk_range(m, k))]], c, size): k
                   for k in todo}
        for fut in as_completed(futures):
            k = futures[fut]
            try:
                crc, err = fut.result()
            except BrokenProcessPool:
                raise CnnlabError(f"a decoding worker of {safe_text(str(store))} died (out of memory, or killed): run "
                                  "'cnnlab data prepare' again, with fewer --workers if memory is short (finished "
                                  "chunks are kept)") from None
            if err is not None:
                failed.append(err)
                continue
            done[str(k)] = [keys[k], crc]
            _write_json(store / CHUNKS, done)
            lo, hi = _chunk_range(m, k)
            advance(hi - lo)
            if on_chunk is not None:
                on_chunk(k)
    if failed:
        raise CnnlabError(f"{failed[0]}; {len(failed)} chunk(s) of {safe_text(str(store))} are not done: replace or "
                          "remove the file and run 'cnnlab data prepare' again (finished chunks are kept)")


def _corrupt(store: Path, m: dict[str, Any], crcs: dict[int, int]) -> list[int]:
    """The chunks (among ``crcs``) whose bytes no longer match their recorded CRC-32."""
    per, images = _image_bytes(m), store / IMAGES
    ks = sorted(crcs)

    def check(k: int) -> bool:
        lo, hi = _chunk_range(m, k)
        return _crc(images, lo * per, (hi - lo) * per) != crcs[k]

    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        return [k for k, bad in zip(ks, pool.map(check, ks)) if bad]


@contextlib.contextmanager
def _bar(label: str, total: int, log: Callable[[str], None]) -> Any:
    """A rich bar of images decoded on a terminal; one line at the end otherwise."""
    console = sources.progress_console()
    if console is None:
        count = [0]
        yield lambda n: count.__setitem__(0, count[0] + n)
        log(f"{label}: decoded {count[0]:,} images")
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("images"),
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


# --- reading ------------------------------------------------------------------------------------------------

def manifest(store: str | Path) -> dict[str, Any]:
    """The store's manifest, checked; a one-line error when it is missing, unreadable or incomplete."""
    path = Path(store).expanduser()
    fix = f"prepare it with 'cnnlab data prepare FOLDER --out {safe_text(str(path))}'"
    m = _read_json(path / MANIFEST)
    if not isinstance(m, dict) or m.get("kind") != "cnnlab-store":
        raise CnnlabError(f"{safe_text(str(path))} is not a prepared store (no readable {MANIFEST}): {fix}")
    if m.get("format") != FORMAT:
        raise CnnlabError(f"store {safe_text(str(path))} has format {m.get('format')}, this cnnlab reads {FORMAT}: "
                          f"{fix}")
    images = path / IMAGES
    want = m["count"] * _image_bytes(m)
    have = images.stat().st_size if images.is_file() else -1
    if have != want:
        raise CnnlabError(f"store {safe_text(str(path))} is truncated ({IMAGES}: {max(have, 0):,} of {want:,} bytes): "
                          f"{fix} again")
    chunks = _read_json(path / CHUNKS)
    n_chunks = -(-m["count"] // m["chunk"])
    if not isinstance(chunks, dict) or len(chunks) < n_chunks:
        done = len(chunks) if isinstance(chunks, dict) else 0
        raise CnnlabError(f"store {safe_text(str(path))} is incomplete ({done} of {n_chunks} chunks): run "
                          f"'cnnlab data prepare {safe_text(m.get('source', 'FOLDER'))} --out {safe_text(str(path))}' "
                          "to finish it")
    return m


def load(store: str | Path, split: str, size: tuple[int, int] | None = None, verify: bool = True) -> dict[str, Any]:
    """One split of a store: ``images`` a uint8 tensor mapped from disk (copy-on-write: a write never reaches the file), ``labels``,
    ``classes``. Every chunk the split touches is checked against its CRC-32 first (``verify``)."""
    import torch

    path = Path(store).expanduser()
    m = manifest(path)
    h, w = m["size"]
    if size is not None and tuple(size) != (h, w):
        raise CnnlabError(f"store {safe_text(str(path))} holds {h}x{w} images but the run asks for --size "
                          f"{size[0]}x{size[1]}: drop --size, or prepare a store at that size")
    name = "train" if split == "train" else "val"
    lo, hi = m["splits"][name]
    if verify:
        first, last = lo // m["chunk"], max(lo, hi - 1) // m["chunk"]
        recorded = _read_json(path / CHUNKS)
        crcs = {k: recorded[str(k)][1] for k in range(first, last + 1) if hi > lo}
        bad = _corrupt(path, m, crcs)
        if bad:
            raise CnnlabError(f"chunk {bad[0]} of store {safe_text(str(path))} is corrupt ({len(bad)} chunk(s) do not "
                              f"match their checksum): run 'cnnlab data prepare {safe_text(m['source'])} --out "
                              f"{safe_text(str(path))}' to rebuild them")
    shape = (m["count"], m["channels"], h, w)
    mapped = np.memmap(path / IMAGES, np.uint8, "c", shape=shape) if m["count"] else np.zeros(shape, np.uint8)
    labels = np.load(path / LABELS)
    if labels.shape != (m["count"],):
        raise CnnlabError(f"store {safe_text(str(path))} has {len(labels)} labels for {m['count']} images: prepare it "
                          "again")
    return {"images": torch.from_numpy(mapped)[lo:hi], "labels": torch.from_numpy(labels[lo:hi].copy()),
            "classes": list(m["classes"]), "val_fraction": m["val_fraction"], "seed": m["seed"]}
