"""The measured path (``cnnlab.analyze_module``) against ``torchinfo.summary`` in the same run.

1. ResNet-50 (the zoo's, built as a torch module) and a ViT-B/16-shaped module at 3x224x224:
   median time of each; target: the measured path >= 5x faster;
2. ResNet-50 at 3x1024x1024: target >= 50x (torchinfo runs the real forward);
3. peak resident memory of a fresh process measuring ResNet-50 at 4096x4096 and at 224x224
   (fake tensors: no activation is allocated); target: within 100 MB.

torchinfo is in the ``dev`` extra. Figures depend on the machine and its load; the script prints both.

    python benchmarks/bench_measure.py [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)


class Block(nn.Module):
    def __init__(self, d: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, mlp), nn.GELU(), nn.Linear(mlp, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.self_attention(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class ViT(nn.Module):
    """ViT-B/16's shape (Dosovitskiy et al. 2021, Table 1): patch 16, width 768, 12 layers, 12 heads, MLP 3072."""

    def __init__(self, image: int = 224, patch: int = 16, d: int = 768, layers: int = 12, heads: int = 12,
                 mlp: int = 3072, classes: int = 1000) -> None:
        super().__init__()
        n = (image // patch) ** 2
        self.conv_proj = nn.Conv2d(3, d, patch, patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embedding = nn.Parameter(torch.zeros(1, n + 1, d))
        self.layers = nn.Sequential(*[Block(d, heads, mlp) for _ in range(layers)])
        self.ln = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embedding
        return self.head(self.ln(self.layers(x))[:, 0])


def resnet50() -> nn.Module:
    from cnnlab import zoo
    from cnnlab.torch_backend import build

    return build(zoo.get("resnet50")).eval()


def median_time(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def versus(name: str, model: nn.Module, shape: tuple[int, int, int], runs: int) -> dict[str, Any]:
    import torchinfo

    from cnnlab.measure import analyze_module

    analyze_module(model, shape)  # first call: imports and fake-tensor setup
    ours = median_time(lambda: analyze_module(model, shape), runs)
    with torch.no_grad():
        theirs = median_time(lambda: torchinfo.summary(model, input_size=(1, *shape), verbose=0), max(1, runs // 2))
    a = analyze_module(model, shape)
    return {"model": name, "input": "x".join(map(str, shape)), "measured_s": round(ours, 4),
            "torchinfo_s": round(theirs, 4), "speedup": round(theirs / ours, 1),
            "params": a.totals["params"], "macs": a.totals["macs"]}


PEAK = """
import resource, sys
sys.path.insert(0, {src!r})
from cnnlab.measure import analyze_module
from cnnlab import zoo
from cnnlab.torch_backend import build
model = build(zoo.get("resnet50")).eval()
analyze_module(model, (3, {n}, {n}))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def peak_bytes(n: int) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK.format(src=SRC, n=n)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    try:
        import torchinfo  # noqa: F401
    except ImportError:
        print("torchinfo is not installed (pip install -e '.[dev]'): nothing to compare against")
        return 0
    torch.manual_seed(0)
    r50, vit = resnet50(), ViT().eval()
    rows = [versus("resnet50", r50, (3, 224, 224), args.runs), versus("vit_b_16", vit, (3, 224, 224), args.runs),
            versus("resnet50", r50, (3, 1024, 1024), 1)]
    small, big = peak_bytes(224), peak_bytes(4096)
    result = {"versus_torchinfo": rows, "peak_rss_224": small, "peak_rss_4096": big,
              "peak_difference_mb": round((big - small) / 2**20, 1), "cpus": os.cpu_count(),
              "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for r in rows:
        target = 50 if r["input"] == "3x1024x1024" else 5
        print(f"{r['model']:9} {r['input']:>12}: measured {r['measured_s'] * 1e3:8.1f} ms, torchinfo "
              f"{r['torchinfo_s'] * 1e3:9.1f} ms: {r['speedup']:6.1f}x (target >= {target}x); "
              f"{r['params']:,} params, {r['macs']:,} MACs")
    print(f"peak RSS measuring resnet50: {small / 2**20:.0f} MB at 224x224, {big / 2**20:.0f} MB at 4096x4096: "
          f"{result['peak_difference_mb']} MB apart (target <= 100 MB)")
    print(f"machine: {result['cpus']} CPUs, load average {result['load']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
