"""A training run killed at chosen points (inside an epoch, mid-way through a checkpoint write, between a
finished temporary file and its rename, inside the curves plot) and resumed each time ends exactly where an
uninterrupted run ends, with best.pt, last.pt and metrics.json in agreement and no temporary file left.

Each kill is ``os._exit`` in a child process: no ``finally`` block, no flush, as with ``kill -9``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from cnnlab.train import Recipe, Trainer, checkpoint
from test_train import pattern_set, quiet, state_equal, tiny_net

RECIPE = Recipe(optimizer="sgd", lr=0.05, batch_size=16, epochs=4, schedule="onecycle", weight_decay=5e-4)

CHILD = r"""
import io, os, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from test_fault_injection import RECIPE, data
from test_train import quiet, tiny_net
from cnnlab.train import Trainer, trainer as T

kind, n, out, resume = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] == "1"
count = [0]

def hit():
    count[0] += 1
    return count[0] == n

if kind == "step":  # inside an epoch, before the n-th batch
    batch = T.Trainer._batch
    def _batch(self, *a):
        if hit():
            os._exit(9)
        return batch(self, *a)
    T.Trainer._batch = _batch
elif kind == "save":  # half-way through writing the n-th checkpoint
    save = torch.save
    def half(obj, f, *a, **kw):
        if hasattr(f, "write") and hit():
            buf = io.BytesIO()
            save(obj, buf, *a, **kw)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            os._exit(9)
        return save(obj, f, *a, **kw)
    torch.save = half
elif kind == "replace":  # a temporary file complete, before it replaces the old one
    replace = os.replace
    def before(a, b):
        if hit():
            os._exit(9)
        return replace(a, b)
    os.replace = before
elif kind == "plot":  # inside the curves write
    from matplotlib.figure import Figure
    savefig = Figure.savefig
    def partial(self, path, *a, **kw):
        if hit():
            with open(path, "wb") as f:
                f.write(b"\x89PNG")
            os._exit(9)
        return savefig(self, path, *a, **kw)
    Figure.savefig = partial
train, val = data()
Trainer(tiny_net(), train, val, RECIPE, quiet(out=out, seed=3, resume=resume)).fit()
"""


def data():
    return pattern_set(48), pattern_set(16, seed=1)


def killed(kind: str, n: int, out: Path, resume: bool) -> None:
    src = Path(checkpoint.__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(Path(__file__).parent)]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, kind, str(n), str(out), "1" if resume else "0"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 9, f"{kind} {n}: the kill point was not reached\n{proc.stderr[-2000:]}"


def timeless(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in rows]


def test_killed_and_resumed_runs_end_like_an_uninterrupted_one(tmp_path) -> None:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train, val = data()
        full = tmp_path / "full"
        Trainer(tiny_net(), train, val, RECIPE, quiet(out=full, seed=3)).fit()

        out = tmp_path / "killed"
        killed("step", 5, out, resume=False)   # epoch 2, second batch: epoch 1's files are complete
        killed("save", 2, out, resume=True)    # half of epoch 2's best.pt (or epoch 3's last.pt)
        killed("replace", 3, out, resume=True)  # a finished temporary file not yet renamed
        killed("plot", 1, out, resume=True)    # the curves, after the last epoch's checkpoints
        Trainer(tiny_net(), train, val, RECIPE, quiet(out=out, resume=True)).fit()
    finally:
        torch.set_num_threads(n)

    want_last, want_best = checkpoint.load(full / "last.pt"), checkpoint.load(full / "best.pt")
    last, best = checkpoint.load(out / "last.pt"), checkpoint.load(out / "best.pt")
    assert last.epoch == RECIPE.epochs and state_equal(last.model, want_last.model)
    assert best.epoch == last.best_epoch == want_best.epoch and state_equal(best.model, want_best.model)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == last.metrics and timeless(metrics) == timeless(want_last.metrics)
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG" and (out / "curves.png").stat().st_size > 1000
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "curves.png", "last.pt", "metrics.json"]
