"""Training from a prepared store vs from memory: prepare speed, training and data-path images/s, peak memory.

Builds a synthetic folder of JPEG images (10 classes, 160x160 photos-like noise, made by this script), prepares
it at --size (default 128x128) with one worker per core, then in this process, interleaved round by round so
that load from other processes falls on both alike:

  train      images/s of the Trainer on --model over the first --train-images images, from the store's memory
             map and from the same images copied into memory (goal: store >= 0.9x memory)
  data path  images/s of one epoch's batches alone: gather by the shuffled order, copy to the device, flip,
             normalize (goal: >= 3x what the model consumes)

With --crop N both train on, and the data path cuts, random-resized NxN crops of the stored images (flipped
with p=0.5) in place of the plain flip: ``train --crop NxN --crop-mode random``.

and in fresh processes, the peak RssAnon (the process's own memory; the page cache is the kernel's) of reading
every batch of one epoch plus training --train-images images, from the store and from memory, for each count in
--rss-images (goal: the store's peak does not grow with the data set).

    .venv/bin/python benchmarks/bench_store.py [--images 50000] [--rss-images 10000,50000] [--rounds 3] [--crop 112]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def make_folder(root: Path, n: int, classes: int = 10, side: int = 160) -> None:
    """``n`` JPEGs of smooth random colour fields (JPEG-sized like photos, a few KB each), spread over classes."""
    from PIL import Image

    if (root / ".done").is_file() and json.loads((root / ".done").read_text()) == n:
        return
    shutil.rmtree(root, ignore_errors=True)
    g = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c:02d}").mkdir(parents=True)
    for i in range(n):
        small = g.integers(0, 255, (10, 10, 3), dtype=np.uint8)
        im = Image.fromarray(small, "RGB").resize((side, side), Image.Resampling.BILINEAR)
        im.save(root / f"class{i % classes:02d}" / f"{i:06d}.jpg", quality=85)
    (root / ".done").write_text(json.dumps(n))


def anon_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def data_path(images, labels, batch: int, mapped: bool, crop: int | None = None) -> float:
    """images/s of gathering, copying, flipping (or cutting random-resized ``crop`` squares) and normalizing every
    batch of one shuffled epoch."""
    import torch

    from cnnlab.data.augment import hflip, random_resized_crop
    from cnnlab.train.trainer import gather, to_device

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(images), generator=g)
    t = time.perf_counter()
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        x = to_device(gather(images, idx, mapped), device)
        to_device(labels[idx], device)
        x = random_resized_crop(x, (crop, crop), generator=g) if crop else hflip(x, 0.5, g)
        x = x.float().mul_(1 / 255).sub_(0.5)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(order) / (time.perf_counter() - t)


def train(data, model: str, batch: int, crop: int | None = None) -> float:
    """images/s of one epoch of the Trainer (flip augmentation, or random-resized ``crop`` squares; SGD) on ``data``."""
    from cnnlab.data.augment import preset
    from cnnlab.models import load_model
    from cnnlab.train import Options, Trainer
    from cnnlab.train.recipes import Recipe

    net = load_model(model, num_classes=len(data.classes), in_channels=3)
    recipe = Recipe(name="bench", epochs=1, batch_size=batch, lr=0.01, optimizer="sgd", normalize="scale",
                    crop_mode="random" if crop else "center")
    aug = preset("cifar")
    t = time.perf_counter()
    Trainer(net, data, None, recipe, Options(progress=False, log=lambda s: None, augment=aug,
                                             crop=(crop, crop) if crop else None)).fit()
    return len(data) / (time.perf_counter() - t)


def child_rss(store: Path, count: int, kind: str, model: str, train_images: int, batch: int,
              crop: int | None = None) -> None:
    """In a fresh process: peak RssAnon growth over one data-path epoch of ``count`` images plus training."""
    import torch

    from cnnlab.data import ImageSet, load

    peak = [0]

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], anon_bytes())
            time.sleep(0.002)

    threading.Thread(target=sample, daemon=True).start()
    time.sleep(0.05)
    base = anon_bytes()
    s = load(str(store), "train")
    images, labels = s.images[:count], s.labels[:count]
    if kind == "memory":
        images = images.clone()
    data_path(images, labels, batch, kind == "store", crop)
    sub = ImageSet(images[:train_images], labels[:train_images], s.classes, "bench", mapped=kind == "store")
    train(sub, model, batch, crop)
    time.sleep(0.05)
    print(json.dumps({"peak_growth": peak[0] - base, "data_bytes": images.nbytes}))
    del torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--rss-images", default="10000,50000")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--model", default="resnet18-tv")
    ap.add_argument("--train-images", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--crop", type=int, metavar="N", help="train on random-resized NxN crops (N <= --size)")
    ap.add_argument("--work", default="benchmarks/.store-bench")
    ap.add_argument("--child", nargs=2, metavar=("COUNT", "KIND"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = Path(a.work)
    folder, store_dir = work / "folder", work / f"folder-{a.size}.store"
    if a.child:
        child_rss(store_dir, int(a.child[0]), a.child[1], a.model, a.train_images, a.batch, a.crop)
        return

    import torch

    from cnnlab.data import ImageSet, load, store

    t = time.perf_counter()
    make_folder(folder, a.images)
    made = time.perf_counter() - t
    disk = sum(p.stat().st_size for p in folder.rglob("*.jpg"))
    shutil.rmtree(store_dir, ignore_errors=True)
    t = time.perf_counter()
    store.prepare(folder, store_dir, (a.size, a.size), val_fraction=0.0, log=lambda s: None)
    prep_s = time.perf_counter() - t
    print(f"folder: {a.images:,} JPEGs, {disk / 2**20:,.0f} MiB on disk (made in {made:.0f} s); store "
          f"{(store_dir / 'images.u8').stat().st_size / 2**20:,.0f} MiB")
    print(f"prepare: {a.images / prep_s:,.0f} images/s with {os.cpu_count()} workers ({prep_s:.1f} s)")

    s = load(str(store_dir), "train")
    n = min(a.train_images, len(s))
    mapped = ImageSet(s.images[:n], s.labels[:n], s.classes, "store", mapped=True)
    memory = ImageSet(s.images[:n].clone(), s.labels[:n].clone(), s.classes, "memory")
    res: dict[str, list[float]] = {"train store": [], "train memory": [], "data store": [], "data memory": []}
    all_memory = s.images.clone()
    for _ in range(a.rounds):
        res["train store"].append(train(mapped, a.model, a.batch, a.crop))
        res["train memory"].append(train(memory, a.model, a.batch, a.crop))
        res["data store"].append(data_path(s.images, s.labels, a.batch, True, a.crop))
        res["data memory"].append(data_path(all_memory, s.labels, a.batch, False, a.crop))
    del all_memory
    med = {k: statistics.median(v) for k, v in res.items()}
    what = f"random-resized {a.crop}x{a.crop} crops of {a.size}x{a.size}" if a.crop else f"{a.size}x{a.size}"
    print(f"training {a.model} at {what}, batch {a.batch}, {n:,} images, median of {a.rounds}:")
    print(f"  from the store   {med['train store']:9,.1f} images/s")
    print(f"  from memory      {med['train memory']:9,.1f} images/s   store/memory {med['train store'] / med['train memory']:.2f}x")
    print(f"data path only, one epoch of {len(s):,} images:")
    print(f"  from the store   {med['data store']:9,.0f} images/s   {med['data store'] / med['train store']:.1f}x what "
          "the model consumes")
    print(f"  from memory      {med['data memory']:9,.0f} images/s")
    print("peak RssAnon growth (data-path epoch + training), fresh process each:")
    for count in (int(c) for c in a.rss_images.split(",")):
        count = min(count, len(s))
        row = []
        for kind in ("store", "memory"):
            out = subprocess.run([sys.executable, __file__, "--work", str(work), "--size", str(a.size), "--model",
                                  a.model, "--train-images", str(a.train_images), "--batch", str(a.batch),
                                  *(["--crop", str(a.crop)] if a.crop else []), "--child", str(count), kind],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            row.append(f"{kind} {r['peak_growth'] / 2**20:,.0f} MiB")
        print(f"  {count:>7,} images ({r['data_bytes'] / 2**20:,.0f} MiB of pixels): {', '.join(row)}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch "
          f"{torch.__version__}, {'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}")


if __name__ == "__main__":
    main()
