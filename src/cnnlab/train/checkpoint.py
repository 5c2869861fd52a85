"""Checkpoints that rebuild their model alone: the network spec, the input map, the classes, the
weights, and the optimizer and schedule state that ``--resume`` needs. Written atomically (a
temporary file, then ``os.replace``), so a crash mid-write never destroys the last good one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import CnnlabError
from ..network import Network, network_from_spec
from .preprocess import Preprocess

FORMAT = "cnnlab-checkpoint"


def save(path: Path, state: dict[str, Any]) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "version": 1, **state}, tmp)
    os.replace(tmp, path)


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (plain tensors and containers only: nothing in it can run code)."""
    p = Path(path)
    if not p.is_file():
        raise CnnlabError(f"no checkpoint at {p}")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a file that is not a checkpoint
        raise CnnlabError(f"{p} is not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise CnnlabError(f"{p} is not a cnnlab checkpoint")
    return ck


def rebuild(ck: dict[str, Any]) -> tuple[Network, torch.nn.Module, Preprocess]:
    """The network, its module with the saved weights (eval mode) and the input map."""
    from ..torch_backend import build

    net = network_from_spec(ck["network"], "checkpoint")
    prep = Preprocess.from_state(ck["preprocess"])
    model = build(net, prep.input_shape, logits=True)
    model.load_state_dict(ck["model"])
    return net, model.eval(), prep
