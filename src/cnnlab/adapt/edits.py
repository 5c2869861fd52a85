"""Editing the description: a fix's edits applied along the network's one walker."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from ..errors import CnnlabError
from ..layers import Layer
from ..network import Network, iter_leaves, map_leaves
from .results import Edit, Fix


def leaves(net: Network) -> dict[str, Layer]:
    """Every leaf layer by its dotted path, in description order."""
    return dict(iter_leaves(net.layers))


def one_module(net: Network, path: str) -> set[str]:
    """``path`` and every layer that runs the same module (shared weights): a change of settings
    applies to all of them, or they could no longer share it."""
    layers = leaves(net)

    def owner(p: str) -> str:
        seen: set[str] = set()
        while p in layers and layers[p].shares and p not in seen:
            seen.add(p)
            p = layers[p].shares
        return p

    first = owner(path)
    return {p for p in layers if p == path or owner(p) == first}


def apply_edit(net: Network, e: Edit) -> Network:
    if e.op == "input":
        return replace(net, input_shape=tuple(e.value))
    if e.op == "prepend":
        return replace(net, layers=(e.value, *net.layers))
    hit: list[str] = []
    same = one_module(net, e.path) if e.op == "set" else {e.path}

    def fn(path: str, layer: Layer) -> tuple[Layer, ...]:
        if path not in same:
            return (layer,)
        hit.append(path)
        if e.op == "set":
            return (replace(layer, **e.value),)
        return (e.value,) if e.op == "replace" else (e.value, layer)

    layers = map_leaves(net.layers, fn)
    if not hit:
        raise CnnlabError(f"{net.name} has no layer '{e.path}': this fix was made for another network")
    return replace(net, layers=layers)


def apply(net: Network, fix: Fix) -> Network:
    """The adapted network: ``net`` with every edit of ``fix``; its ``input_shape`` is the input
    it now takes, so ``analyze(apply(net, fix))`` runs at that input."""
    for e in fix.edits:
        net = apply_edit(net, e)
    meta = {**net.meta, "adapted": {"fix": fix.name, "changes": list(fix.changes)}}
    return replace(net, meta=meta)



def edited_net(net: Network, edits: Iterable[Edit]) -> Network:
    for e in edits:
        net = apply_edit(net, e)
    return net
