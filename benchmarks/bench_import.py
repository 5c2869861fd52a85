"""How fast are Caffe and Keras models read? Four generated files of 2,000 layers each:

1. a Caffe prototxt chain of 3x3 convolutions, each followed by an in-place ReLU;
2. a Caffe prototxt of residual blocks (conv, ReLU, conv, Eltwise SUM, ReLU): a graph of 400 sums;
3. a Keras Sequential JSON chain of Conv2D + ReLU;
4. a Keras Functional JSON of the same residual blocks (Conv2D, ReLU, Conv2D, Add, ReLU).

Each is read from disk and analysed (``load_model`` + ``analyze``, the work of ``cnnlab summary``
without the printing) in the same process; the best and the median of several runs are reported.
A sum is a merge of the graph, not a layer of the analysis: the residual files analyse 1,600 of their 2,000.
Target: each under 1 s (the tests assert it for the chains).

    python benchmarks/bench_import.py [--layers 2000] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import machine  # benchmarks/ is the script's own folder on sys.path

CHANNELS, SIZE = 8, 16


def caffe_conv(name: str, bottom: str) -> str:
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}"\n'
            f"  convolution_param {{ num_output: {CHANNELS} kernel_size: 3 pad: 1 }} }}\n")


def caffe_relu(name: str, blob: str) -> str:
    return f'layer {{ name: "{name}" type: "ReLU" bottom: "{blob}" top: "{blob}" }}\n'


def caffe_chain(layers: int) -> str:
    head = f'name: "chain"\ninput: "data"\ninput_shape {{ dim: 1 dim: {CHANNELS} dim: {SIZE} dim: {SIZE} }}\n'
    return head + "".join(caffe_conv(f"c{i}", f"c{i - 1}" if i else "data") + caffe_relu(f"r{i}", f"c{i}")
                          for i in range(layers // 2))


def caffe_residual(layers: int) -> str:
    out = [f'name: "residual"\ninput: "data"\ninput_shape {{ dim: 1 dim: {CHANNELS} dim: {SIZE} dim: {SIZE} }}\n']
    x = "data"
    for i in range(layers // 5):
        out += [caffe_conv(f"a{i}", x), caffe_relu(f"ra{i}", f"a{i}"), caffe_conv(f"b{i}", f"a{i}"),
                f'layer {{ name: "s{i}" type: "Eltwise" bottom: "{x}" bottom: "b{i}" top: "s{i}" }}\n',
                caffe_relu(f"rs{i}", f"s{i}")]
        x = f"s{i}"
    return "".join(out)


def keras_conv(name: str) -> dict[str, Any]:
    return {"class_name": "Conv2D", "name": name, "config": {"name": name, "filters": CHANNELS, "kernel_size": [3, 3],
                                                            "padding": "same", "activation": "linear"}}


def keras_input() -> dict[str, Any]:
    return {"class_name": "InputLayer", "name": "in", "inbound_nodes": [],
            "config": {"name": "in", "batch_shape": [None, SIZE, SIZE, CHANNELS]}}


def keras_chain(layers: int) -> dict[str, Any]:
    entries = [keras_input()]
    for i in range(layers // 2):
        entries += [keras_conv(f"c{i}"), {"class_name": "ReLU", "name": f"r{i}", "config": {"name": f"r{i}"}}]
    return {"class_name": "Sequential", "config": {"name": "chain", "layers": entries}}


def _reads(entry: dict[str, Any], *sources: str) -> dict[str, Any]:
    """``entry`` called on the outputs of ``sources`` (Keras 3's inbound_nodes)."""
    tensors = [{"class_name": "__keras_tensor__", "config": {"shape": [None, SIZE, SIZE, CHANNELS],
                                                             "keras_history": [s, 0, 0]}} for s in sources]
    return {**entry, "inbound_nodes": [{"args": [tensors] if len(tensors) > 1 else tensors, "kwargs": {}}]}


def keras_residual(layers: int) -> dict[str, Any]:
    entries = [keras_input()]
    x = "in"
    for i in range(layers // 5):
        entries += [_reads(keras_conv(f"a{i}"), x),
                    _reads({"class_name": "ReLU", "name": f"ra{i}", "config": {"name": f"ra{i}"}}, f"a{i}"),
                    _reads(keras_conv(f"b{i}"), f"ra{i}"),
                    _reads({"class_name": "Add", "name": f"s{i}", "config": {"name": f"s{i}"}}, x, f"b{i}"),
                    _reads({"class_name": "ReLU", "name": f"rs{i}", "config": {"name": f"rs{i}"}}, f"s{i}")]
        x = f"rs{i}"
    return {"class_name": "Functional", "config": {"name": "residual", "layers": entries,
                                                   "input_layers": ["in", 0, 0], "output_layers": [x, 0, 0]}}


def time_read(path: Path, runs: int) -> dict[str, Any]:
    from cnnlab.analysis import analyze
    from cnnlab.models import load_model

    times, a = [], None
    for _ in range(runs):
        t = time.perf_counter()
        a = analyze(load_model(str(path)))
        times.append(time.perf_counter() - t)
    assert a is not None
    return {"best_s": min(times), "median_s": statistics.median(times), "layers": len(a.layers),
            "params": a.totals["params"], "bytes": path.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=2000, help="layers per file (a multiple of 10; default 2000)")
    p.add_argument("--runs", type=int, default=5, help="runs per file; the best and the median are reported")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    if args.layers < 10 or args.layers % 10 or args.runs < 1:
        p.error("--layers must be a positive multiple of 10 and --runs at least 1")

    res: dict[str, Any] = {"layers": args.layers, "runs": args.runs, "machine": machine(), "files": {}}
    with tempfile.TemporaryDirectory() as tmp:
        files = {"caffe chain (conv + in-place ReLU)": ("chain.prototxt", caffe_chain(args.layers)),
                 "caffe residual (Eltwise SUM graph)": ("residual.prototxt", caffe_residual(args.layers)),
                 "keras Sequential chain (Conv2D + ReLU)": ("chain.json", json.dumps(keras_chain(args.layers))),
                 "keras Functional residual (Add graph)": ("residual.json", json.dumps(keras_residual(args.layers)))}
        for label, (name, text) in files.items():
            path = Path(tmp) / name
            path.write_text(text)
            res["files"][label] = time_read(path, args.runs)

    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    m = res["machine"]
    print(f"{args.layers:,}-layer files read and analysed; {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
          f"torch {m['torch']}, load average {m['load_average'][0]}; best and median of {args.runs} runs")
    for label, r in res["files"].items():
        print(f"  {label:40} {r['best_s'] * 1e3:8.1f} ms  (median {r['median_s'] * 1e3:.1f}; {r['layers']:,} "
              f"layers analysed, {r['params']:,} params, {r['bytes']:,} bytes)  target < 1 s: "
              f"{'met' if r['best_s'] < 1 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
