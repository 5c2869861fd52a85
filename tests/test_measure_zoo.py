"""Both paths agree: every zoo model, built on the meta device and measured, gives the description's
output shape, parameters, buffers and MACs."""

from __future__ import annotations

import pytest
import torch

from cnnlab import zoo
from cnnlab.analysis import analyze
from cnnlab.measure import analyze_module
from cnnlab.torch_backend import build


@pytest.mark.parametrize("name", zoo.names())
def test_measured_equals_described(name: str) -> None:
    net = zoo.get(name)
    described = analyze(net)
    with torch.device("meta"):
        model = build(net)
    measured = analyze_module(model, net.input_shape)
    assert measured.output_shape == described.output_shape
    # the module holds its auxiliary heads: what the description counts as trained
    assert measured.totals["params"] == described.training_totals["params"]
    assert measured.totals["buffers"] == described.training_totals["buffers"]
    assert measured.totals["macs"] == described.totals["macs"]  # eval mode: the heads do not run
