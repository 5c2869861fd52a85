"""Training throughput, images/s: seed 003's LeNet (lenet5-relu) on MNIST, batch 128, Adam 1e-3.

Three loops train the same architecture on the same images, in this process, interleaved round by
round so that load from other processes falls on all three alike:

  trainer     cnnlab's Trainer (recipe lenet-keras): uint8 batches sliced in memory, converted per batch
  hand        a hand-written in-memory loop: the whole set converted to float once, index, step
  dataloader  the tutorial style: a per-sample Dataset (PIL image -> ToTensor -> Normalize, as
              torchvision's MNIST in PyTorch's MNIST example) behind DataLoader(batch_size=128, shuffle=True)

Each timed pass covers model construction through the last optimizer step over --images images.
Prints the median images/s of each and the ratios trainer/hand and trainer/dataloader.

    .venv/bin/python benchmarks/bench_train.py [--rounds 5] [--images 30720]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def lenet() -> nn.Module:
    """seed 003's Keras LeNet, written out by hand."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def run_trainer(images: torch.Tensor, labels: torch.Tensor, seed: int) -> float:
    from cnnlab import zoo
    from cnnlab.data import ImageSet
    from cnnlab.train import Options, Trainer, get_recipe

    t = time.perf_counter()
    data = ImageSet(images, labels, [str(i) for i in range(10)], "mnist")
    recipe = get_recipe("lenet-keras").with_overrides(epochs=1)
    Trainer(zoo.get("lenet5-relu"), data, None, recipe, Options(progress=False, seed=seed, log=lambda s: None)).fit()
    return len(images) / (time.perf_counter() - t)


def run_hand(images: torch.Tensor, labels: torch.Tensor, seed: int) -> float:
    t = time.perf_counter()
    torch.manual_seed(seed)
    model = lenet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = images.float().div_(255)
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 128):
        idx = perm[i:i + 128]
        loss = F.cross_entropy(model(x[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return len(images) / (time.perf_counter() - t)


class TutorialMNIST(torch.utils.data.Dataset):
    """Per-sample access as torchvision's MNIST does it (a PIL image from the uint8 tensor), then the
    transform of PyTorch's MNIST example: ToTensor() and Normalize((0.1307,), (0.3081,))."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.data, self.targets = images[:, 0], labels

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        img, target = self.data[i], int(self.targets[i])
        img = Image.fromarray(img.numpy(), mode="L")
        x = torch.from_numpy(np.array(img, np.uint8, copy=True)).view(28, 28, 1).permute(2, 0, 1).contiguous()
        x = x.float().div(255)  # ToTensor
        return (x - 0.1307) / 0.3081, target  # Normalize


def run_dataloader(images: torch.Tensor, labels: torch.Tensor, seed: int) -> float:
    t = time.perf_counter()
    torch.manual_seed(seed)
    model = lenet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(TutorialMNIST(images, labels), batch_size=128, shuffle=True)
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return len(images) / (time.perf_counter() - t)


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        cpu = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--images", type=int, default=30720, help="images per timed pass (default 30720 = 240 batches)")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice, one per core)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from cnnlab.data import load

    train = load("mnist", "train")
    images, labels = train.images[: args.images].clone(), train.labels[: args.images].clone()
    runs = {"trainer": run_trainer, "hand": run_hand, "dataloader": run_dataloader}
    print(machine())
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for fn in runs.values():  # warm-up: allocator, kernels, imports
        fn(images[:2560], labels[:2560], 0)
    speeds: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for k in order:
            speeds[k].append(runs[k](images, labels, r))
        print(f"round {r + 1}: " + "  ".join(f"{k} {speeds[k][-1]:,.0f}" for k in runs))
    med = {k: statistics.median(v) for k, v in speeds.items()}
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("median images/s: " + "  ".join(f"{k} {v:,.0f}" for k, v in med.items()))
    print(f"trainer / hand-written loop: {med['trainer'] / med['hand']:.2f}x")
    print(f"trainer / DataLoader loop:   {med['trainer'] / med['dataloader']:.2f}x")


if __name__ == "__main__":
    main()
