"""How long does lifting and analysing a densely connected module take, and does it grow with layers or paths?

DenseNet-121's shape (the module of tests/test_lift.py: 120 convolutions, concatenations of every earlier
layer, so 2^n paths through an n-layer block) is lifted with torch.fx and analysed; then single dense blocks
of 12, 24 and 48 layers, whose path counts grow as 2^n, show the time growing with the layers only.
CPU time (the process's own), best of ``--runs``. Target: DenseNet-121 well under a second.

    python benchmarks/bench_lift.py [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _machine import machine  # noqa: E402

from cnnlab.analysis import analyze  # noqa: E402
from cnnlab.trace import trace  # noqa: E402
from test_lift import DenseBlock, DenseNet121  # noqa: E402


def best(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    m = machine()
    print(f"lift + analysis, CPU seconds, best of {args.runs}; {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
          f"torch {m['torch']}, load average {m['load_average'][0]}")
    model = DenseNet121()
    rows = len(analyze(trace(model, (3, 224, 224))).layers)
    t = best(lambda: analyze(trace(model, (3, 224, 224))), args.runs)
    print(f"  DenseNet-121 shape at 3x224x224: {t:.3f} s, {rows} rows  target < 1 s: {'met' if t < 1 else 'missed'}")
    for n in (12, 24, 48):
        block = DenseBlock(n, 16, 8)
        rows = len(analyze(trace(block, (16, 8, 8))).layers)
        t = best(lambda b=block: analyze(trace(b, (16, 8, 8))), args.runs)
        print(f"  dense block of {n:2d} layers (2^{n} paths): {t:.3f} s, {rows} rows, {1000 * t / n:.1f} ms per layer")


if __name__ == "__main__":
    main()
