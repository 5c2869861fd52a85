"""Time to 99.0% and to 99.4% MNIST test accuracy from a cold start, data loading included.

Each run is a fresh process, ``cnnlab train ... --target-acc A``, timed from the moment it is
started: Python start-up, imports, reading MNIST from the cache (``cnnlab.data``), building the
model, training and evaluating the 10,000 test images after every epoch all count. The time to
the target is when the epoch line that first reaches it is printed (before the checkpoint and
curves are written). The named data sets validate on their test split, so val_acc is test accuracy.

  99.0%: seed 003's LeNet (lenet5-relu), recipe mnist-fast (SGD + Nesterov, one-cycle rate)
  99.4%: a small conv net with BatchNorm (written below as a network spec), mnist-fast with the
         'mnist' augmentation and more epochs

    .venv/bin/python benchmarks/bench_mnist_time.py [--threads N] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnlab.layers import BatchNorm, Conv, Dense, Flatten, MaxPool, ReLU
from cnnlab.network import Network, save_spec

CNNLAB = [sys.executable, "-m", "cnnlab"]


def mnist_bn_net(widths: tuple[int, int, int] = (16, 32, 64), hidden: int = 0) -> Network:
    """Three conv3x3-BatchNorm-ReLU-maxpool blocks (28 -> 14 -> 7 -> 3) and a linear classifier:
    about 5x LeNet's multiply-adds, and BatchNorm lets it take a one-cycle rate of 0.1 from step one."""
    layers: list = []
    for i, f in enumerate(widths, start=1):
        layers += [Conv(name=f"conv{i}", filters=f, kernel=3, padding=1, bias=False), BatchNorm(name=f"bn{i}"),
                   ReLU(name=f"relu{i}"), MaxPool(name=f"pool{i}", kernel=2)]
    layers += [Flatten(name="flatten")]
    if hidden:
        layers += [Dense(name="fc1", units=hidden), ReLU(name="relu_fc1")]
    layers += [Dense(name="fc", units=10)]
    return Network("mnist-bn", tuple(layers), (1, 28, 28))


def timed_run(model: str, extra: list[str], target: float, threads: int | None, out: Path) -> dict:
    cmd = [*CNNLAB, "train", model, "--data", "mnist", "--target-acc", str(target), "--out", str(out),
           "--no-progress", *extra]
    if threads:
        cmd += ["--threads", str(threads)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    epochs: list[tuple[float, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("epoch "):
            epochs.append((time.perf_counter() - t0, line.strip()))
    rc = proc.wait()
    total = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read() if proc.stderr else ''}")
    rows = json.loads((out / "metrics.json").read_text())
    hit = next((i for i, r in enumerate(rows) if r["val_acc"] >= target), None)
    shown = [a for a in cmd[3:] if a not in ("--no-progress", str(out))]
    shown.remove("--out")
    return {"command": "cnnlab " + " ".join(shown), "rows": rows, "epoch_times": [t for t, _ in epochs],
            "time_to_target": epochs[hit][0] if hit is not None else None,
            "acc": rows[hit]["val_acc"] if hit is not None else rows[-1]["val_acc"], "process_s": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, help="passed to cnnlab train --threads (default: torch's choice)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--only", choices=("99.0", "99.4"), help="run one target only")
    args = ap.parse_args()
    import torch
    from bench_train import machine

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{machine()}, load average {os.getloadavg()[0]:.2f}")
    subprocess.run([*CNNLAB, "eval", "--help"], capture_output=True, check=True)  # warm the file cache
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "mnist-bn.json"
        save_spec(mnist_bn_net(), spec)
        runs = [("99.0", "lenet5-relu", ["--recipe", "mnist-fast", "--epochs", "3"], 0.990),
                ("99.4", str(spec), ["--recipe", "mnist-fast", "--epochs", "6", "--augment", "mnist"], 0.994)]
        for label, model, extra, target in runs:
            if args.only and args.only != label:
                continue
            for k in range(args.repeat):
                r = timed_run(model, extra, target, args.threads, Path(tmp) / f"run-{label}-{k}")
                accs = " ".join(f"{row['val_acc']:.2%}" for row in r["rows"])
                got = (f"{r['time_to_target']:.1f} s" if r["time_to_target"] is not None
                       else f"not reached in {r['process_s']:.1f} s")
                print(f"{label}%: {got}  (test accuracy by epoch: {accs}; whole process {r['process_s']:.1f} s)")
                print(f"    {r['command'].replace(str(spec), 'mnist-bn.json')}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
