"""The measured path on third-party zoos: every torchvision classification model and timm's families.

For each model (built with random weights) the measured analysis (``cnnlab.analyze_module``, eval mode)
is compared with the module itself: parameters (every registered tensor once), floating buffers,
the output shape of a real forward, and MACs = ``FlopCounterMode`` total / 2 on an eval-mode forward of
one image with gradients enabled (so ``nn.MultiheadAttention`` takes its counted path, not the fused
inference kernel) and SDPA forced to the math backend. Eval mode, as the measured path's default: a
train-mode forward would add GoogLeNet's and Inception v3's auxiliary heads; one image, because work
that does not depend on the batch (Swin v2's position-bias MLP) divides wrongly from a larger batch.
Prints each miss and the exact count. torchvision and timm are not dependencies of cnnlab: a zoo whose
package is missing is reported and skipped (exit 0).

Each model is checked in a process of its own (a model too large for the machine is reported, not fatal).

    python benchmarks/zoo_models.py [--zoo torchvision|timm|both] [--per-family 3] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

TIMM_FAMILIES = ("resnet", "resnext", "seresnet", "efficientnet", "mobilenetv2", "mobilenetv3", "mobilenetv4",
                 "densenet", "regnet", "convnext", "inception_v3", "inception_v4", "inception_resnet_v2", "xception",
                 "vit", "deit", "swin", "mixer", "ghostnet", "dla", "dpn", "hrnet", "nfnet", "levit", "poolformer",
                 "res2net", "resnest", "skresnet")  # SKNet (Li et al. 2019) is timm's skresnet


def reference(model: nn.Module, shape: tuple[int, ...]) -> tuple[int, int, tuple[int, ...], int]:
    """params, buffers, output shape and MACs of ``model`` measured by PyTorch itself."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    buffers = sum(b.numel() for b in {id(b): b for b in model.buffers()}.values() if b.is_floating_point())
    model.eval()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        out = model(torch.randn(1, *shape))
    out = out[0] if isinstance(out, (tuple, list)) else out
    return params, buffers, tuple(out.shape[1:]), fc.get_total_flops() // 2


def torchvision_models() -> Iterator[tuple[str, Callable[[], nn.Module], tuple[int, ...]]]:
    import torchvision

    for name in torchvision.models.list_models(module=torchvision.models):
        size = 299 if name == "inception_v3" else 224
        yield name, lambda n=name: torchvision.models.get_model(n, weights=None), (3, size, size)


def timm_models(per_family: int) -> Iterator[tuple[str, Callable[[], nn.Module], tuple[int, ...]]]:
    import timm

    seen: set[str] = set()
    for fam in TIMM_FAMILIES:
        names = [n for n in timm.list_models(f"{fam}*") if n not in seen][:per_family]
        for name in names:
            seen.add(name)
            cfg = timm.get_pretrained_cfg(name)
            shape = tuple(cfg.input_size) if cfg is not None else (3, 224, 224)
            yield name, lambda n=name: timm.create_model(n, pretrained=False), shape


def check(name: str, build: Callable[[], nn.Module], shape: tuple[int, ...]) -> str | None:
    """None when the measured analysis is exact, else what differs."""
    from cnnlab.measure import analyze_module

    try:
        model = build()
        want = reference(model, shape)
    except Exception as e:  # a model this machine cannot build or run is not a miss of cnnlab's
        return f"skipped: reference failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    try:
        a = analyze_module(model, shape)
    except Exception as e:
        return f"measured path failed: {e}"
    got = (a.totals["params"], a.totals["buffers"], a.output_shape, a.totals["macs"])
    if got == want:
        return None
    keys = ("params", "buffers", "output", "macs")
    return "; ".join(f"{k} {g} vs {w}" for k, g, w in zip(keys, got, want) if g != w)


def isolated(zoo: str, name: str, per_family: int, timeout: float) -> str | None:
    """:func:`check` for one model in a fresh process: a model too large for this machine's memory (some
    timm models run at 518x518) ends that process alone, and nothing one model leaves behind reaches the next."""
    cmd = [sys.executable, "-W", "ignore", os.path.abspath(__file__), "--zoo", zoo, "--per-family", str(per_family),
           "--child", name]
    def limit() -> None:  # a MemoryError in the child, not the kernel's OOM killer picking some other process
        import resource

        cap = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.6)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=limit)
    except subprocess.TimeoutExpired:
        return f"skipped: over {timeout:.0f} s"
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        killed = " (killed: out of memory?)" if proc.returncode < 0 else ""
        return f"skipped: the check failed{killed}: {tail[:200]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["miss"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", choices=("torchvision", "timm", "both"), default="both")
    p.add_argument("--per-family", type=int, default=3, help="timm models per family (default 3)")
    p.add_argument("--only", nargs="*", help="model names to check")
    p.add_argument("--timeout", type=float, default=900, help="seconds per model (default 900)")
    p.add_argument("--child", metavar="NAME", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        for name, build, shape in (torchvision_models() if args.zoo == "torchvision" else
                                   timm_models(args.per_family)):
            if name == args.child:
                print(json.dumps({"miss": check(name, build, shape)}))
                return 0
        raise SystemExit(f"no model {args.child} in {args.zoo}")
    zoos = ("torchvision", "timm") if args.zoo == "both" else (args.zoo,)
    for zoo in zoos:
        if importlib.util.find_spec(zoo) is None:
            print(f"{zoo}: not installed, skipped (pip install {zoo})")
            continue
        models = torchvision_models() if zoo == "torchvision" else timm_models(args.per_family)
        exact = total = skipped = 0
        t = time.perf_counter()
        for name, _build, shape in models:
            if args.only and name not in args.only:
                continue
            miss = isolated(zoo, name, args.per_family, args.timeout)
            if miss is not None and miss.startswith("skipped"):
                skipped += 1
                print(f"  {name}: {miss}", flush=True)
                continue
            total += 1
            exact += miss is None
            if miss is not None:
                print(f"  MISS {name} at {'x'.join(map(str, shape))}: {miss}", flush=True)
        print(f"{zoo}: {exact} of {total} exact, {skipped} skipped ({time.perf_counter() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
