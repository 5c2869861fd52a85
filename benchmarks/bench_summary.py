"""How fast is ``cnnlab summary``? Two measurements on ResNet-152 at 3x224x224:

1. the CLI from a cold process (``cnnlab summary resnet152 --input 3x224x224 --format json``),
   the median of several runs: interpreter start, imports, zoo lookup, analysis, JSON;
2. in the same process, the analysis (description + arithmetic) against torchinfo's ``summary``
   of the built torch module, which runs a real forward pass (only when torchinfo is installed:
   it is in the ``dev`` extra, not a dependency). The arithmetic alone, on a description built
   beforehand as torchinfo gets its module built beforehand, is shown too; the ratio uses the
   whole analysis.

Targets: cold CLI <= 0.3 s; analysis >= 100x faster than torchinfo.

    python benchmarks/bench_summary.py [--runs 7] [--model resnet152] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from _machine import machine  # benchmarks/ is the script's own folder on sys.path

SHAPE = (3, 224, 224)


def cli_command(model: str) -> list[str]:
    """The installed ``cnnlab`` script next to this interpreter, else ``python -m cnnlab``."""
    script = shutil.which("cnnlab", path=os.path.dirname(sys.executable))
    head = [script] if script else [sys.executable, "-m", "cnnlab"]
    return [*head, "summary", model, "--input", "x".join(map(str, SHAPE)), "--format", "json"]


def time_cold_cli(model: str, runs: int, env: dict[str, str] | None = None) -> list[float]:
    cmd = cli_command(model)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)  # warm the file cache (and bytecode)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - t)
    return times


def bytecode_env(tmp: str) -> dict[str, str] | None:
    """Where PYTHONDONTWRITEBYTECODE is set, every cold start compiles cnnlab from source; an
    installed package has its bytecode cached. This environment measures that case too."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return None
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = tmp
    return env


def time_call(fn: Callable[[], Any], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet152")
    p.add_argument("--runs", type=int, default=7, help="runs per measurement; the median is reported")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)

    from cnnlab import zoo
    from cnnlab.analysis import analyze

    res: dict[str, Any] = {"model": args.model, "input": list(SHAPE), "runs": args.runs, "machine": machine()}
    cold = time_cold_cli(args.model, args.runs)
    res["cli_cold_s"] = {"median": statistics.median(cold), "min": min(cold)}
    with tempfile.TemporaryDirectory() as tmp:
        env = bytecode_env(tmp)
        if env is not None:
            cached = time_cold_cli(args.model, args.runs, env)
            res["cli_cold_bytecode_cached_s"] = {"median": statistics.median(cached), "min": min(cached)}

    ours = time_call(lambda: analyze(zoo.get(args.model), SHAPE), max(args.runs, 50))
    res["analysis_s"] = {"median": statistics.median(ours), "min": min(ours)}
    net = zoo.get(args.model)
    arith = time_call(lambda: analyze(net, SHAPE), max(args.runs, 50))
    res["arithmetic_s"] = {"median": statistics.median(arith), "min": min(arith)}

    try:
        import torchinfo
    except ImportError:
        torchinfo = None
        res["torchinfo"] = "torchinfo not installed"
    if torchinfo is not None:
        import torch

        from cnnlab.torch_backend import build

        model = build(zoo.get(args.model), SHAPE).eval()
        torch.set_grad_enabled(False)
        theirs = time_call(lambda: torchinfo.summary(model, input_size=(1, *SHAPE), verbose=0), args.runs)
        res["torchinfo"] = {"version": torchinfo.__version__, "median": statistics.median(theirs), "min": min(theirs)}
        res["speedup"] = statistics.median(theirs) / statistics.median(ours)

    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    m = res["machine"]
    print(f"{args.model} at {'x'.join(map(str, SHAPE))}; {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
          f"torch {m['torch']}, load average {m['load_average'][0]}; medians of {args.runs} runs "
          f"({max(args.runs, 50)} for cnnlab's analysis)")
    for key, label in (("cli_cold_s", "cold CLI (summary --format json)"),
                       ("cli_cold_bytecode_cached_s", "  same, bytecode cached")):
        if key in res:
            c = res[key]
            print(f"  {label:34} {c['median'] * 1e3:8.1f} ms  (min {c['min'] * 1e3:.1f})  "
                  f"target <= 300 ms: {'met' if c['median'] <= 0.3 else 'MISSED'}")
    a, b = res["analysis_s"], res["arithmetic_s"]
    print(f"  cnnlab analysis, in process        {a['median'] * 1e3:8.2f} ms  (min {a['min'] * 1e3:.2f})")
    print(f"    arithmetic alone                 {b['median'] * 1e3:8.2f} ms  (min {b['min'] * 1e3:.2f})")
    if isinstance(res["torchinfo"], str):
        print(f"  {res['torchinfo']}: pip install torchinfo to compare")
    else:
        t = res["torchinfo"]
        print(f"  torchinfo {t['version']} summary           {t['median'] * 1e3:8.1f} ms  (min {t['min'] * 1e3:.1f})")
        print(f"  ratio torchinfo / cnnlab           {res['speedup']:8.0f}x  "
              f"target >= 100x: {'met' if res['speedup'] >= 100 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
