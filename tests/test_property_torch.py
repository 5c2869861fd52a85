"""Property tests: for random conv and pooling configurations the analysis equals PyTorch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.errors import ShapeError
from cnnlab.layers import AvgPool, Conv, MaxPool


@st.composite
def conv_configs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin = groups * draw(st.integers(1, 3))
    cout = groups * draw(st.integers(1, 3))
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    s = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    hw = (draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    bias = draw(st.booleans())
    return cin, cout, k, s, d, p, groups, hw, bias


@settings(max_examples=150, deadline=None)
@given(conv_configs())
def test_conv_matches_torch(cfg) -> None:
    cin, cout, k, s, d, p, groups, (h, w), bias = cfg
    layer = Conv(name="c", filters=cout, kernel=k, stride=s, padding=p, dilation=d, groups=groups, bias=bias)
    mod = nn.Conv2d(cin, cout, k, s, p, d, groups, bias)
    x = torch.zeros(1, cin, h, w)
    try:
        fig = layer.figures((cin, h, w))
    except ShapeError:
        with pytest.raises(RuntimeError):
            mod(x)
        return
    with FlopCounterMode(display=False) as fc:
        y = mod(x)
    assert tuple(y.shape[1:]) == fig.out
    assert sum(t.numel() for t in mod.parameters()) == fig.params
    assert fc.get_total_flops() == 2 * fig.macs


@st.composite
def pool_configs(draw):
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    s = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    # PyTorch requires padding <= half the (effective) kernel.
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    hw = (draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    return k, s, d, p, hw, draw(st.booleans()), draw(st.sampled_from(["max", "avg"]))


@settings(max_examples=200, deadline=None)
@given(pool_configs())
def test_pool_matches_torch(cfg) -> None:
    k, s, d, p, (h, w), ceil, mode = cfg
    if mode == "avg":
        d = (1, 1)
        layer = AvgPool(name="p", kernel=k, stride=s, padding=p, ceil_mode=ceil)
        mod = nn.AvgPool2d(k, s, p, ceil_mode=ceil)
    else:
        layer = MaxPool(name="p", kernel=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
        mod = nn.MaxPool2d(k, s, p, d, ceil_mode=ceil)
    x = torch.zeros(1, 2, h, w)
    try:
        fig = layer.figures((2, h, w))
    except ShapeError:
        with pytest.raises(RuntimeError):
            mod(x)
        return
    assert tuple(mod(x).shape[1:]) == fig.out
    assert fig.params == 0


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 5), st.integers(1, 4), st.integers(1, 2))
def test_same_padding_matches_tensorflow_rule(h, w, k, s, d) -> None:
    """TensorFlow 'same': output = ceil(n / s); the built module agrees with the analysis."""
    layer = Conv(name="c", filters=2, kernel=k, stride=s, padding="same", dilation=d)
    fig = layer.figures((1, h, w))
    assert fig.out == (2, -(-h // s), -(-w // s))
    y = layer.build((1, h, w))(torch.zeros(1, 1, h, w))
    assert tuple(y.shape[1:]) == fig.out
    pool = MaxPool(name="p", kernel=k, stride=s, padding="same")
    assert tuple(pool.build((1, h, w))(torch.zeros(1, 1, h, w)).shape[1:]) == pool.figures((1, h, w)).out


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 3), st.integers(0, 3), st.integers(1, 2), st.integers(10, 20))
def test_lenet_layers_honour_padding(pt, pl, s, n) -> None:
    """Trainable subsampling and the partial-connection conv build what their arithmetic says."""
    from cnnlab.layers import PartialConv, Subsample
    from cnnlab.zoo.lenet import C3_TABLE

    for layer in (Subsample(name="s", kernel=2, stride=s, padding=(pt, pt + 1, pl, pl)),
                  PartialConv(name="c", filters=16, kernel=5, stride=s, padding=(pt, pt, pl, pl + 1), table=C3_TABLE)):
        shape = (6, n, n + 3)
        y = layer.build(shape)(torch.zeros(1, *shape))
        assert tuple(y.shape[1:]) == layer.figures(shape).out
