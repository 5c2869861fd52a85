"""Verification harness: the analysis of a network equals a real forward pass of its built module."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.analysis import analyze
from cnnlab.network import Network
from cnnlab.torch_backend import build


def verify(net: Network, shape: tuple[int, ...], batch: int = 2, device: str = "meta") -> None:
    """Every leaf layer's output shape (forward hooks), parameter and buffer counts, and total MACs
    (conv/linear FLOPs of ``FlopCounterMode`` / 2) must equal the analysis."""
    a = analyze(net, shape)
    with torch.device(device):
        model = build(net, shape)
    model.train()  # auxiliary heads run only in training mode
    expected = {ly.name: ly.output_shape for ly in a.layers}
    seen: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name, mod in model.named_modules():
        if name in expected:
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape[1:]))))
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(batch, *shape, device=device))
    for h in hooks:
        h.remove()
    missing = set(expected) - set(seen)
    assert not missing, f"{net.name}: no module ran for {sorted(missing)[:5]}"
    bad = {k: (expected[k], seen[k]) for k in expected if expected[k] != seen[k]}
    assert not bad, f"{net.name} at {shape}: analysis vs forward differ: {list(bad.items())[:5]}"
    aux = a.aux_totals or {"params": 0, "buffers": 0, "macs": 0}
    n_params = sum(p.numel() for p in model.parameters())
    param_names = {k for k, _ in model.named_parameters()}
    n_buffers = sum(b.numel() for k, b in model.state_dict().items()
                    if not k.endswith("num_batches_tracked") and k not in param_names)
    assert n_params == a.totals["params"] + aux["params"], (net.name, n_params, a.totals["params"], aux["params"])
    assert n_buffers == a.totals["buffers"] + aux["buffers"], (net.name, n_buffers, a.totals["buffers"])
    assert fc.get_total_flops() == 2 * batch * (a.totals["macs"] + aux["macs"]), (
        net.name, fc.get_total_flops() // (2 * batch), a.totals["macs"] + aux["macs"])
