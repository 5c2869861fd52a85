"""Every worked example of seed 000 ("How to use the parameters in Neural Networks"), reproduced."""

from __future__ import annotations

import pytest

from cnnlab import calculator, zoo
from cnnlab.analysis import analyze


def _hwc(r: dict) -> tuple[tuple[int, int, int], int, int]:
    """The seed's (H, W, C) activation shape, activation size and parameter count."""
    c, h, w = r["output_shape"]
    return (h, w, c), r["activation_size"], r["params"]


def test_valid_same_and_strided_convolutions() -> None:
    assert calculator.conv((1, 6, 6), 3, 1)["output_shape"][1:] == [4, 4]  # dim_valid_convolution -> (4, 4)
    assert calculator.conv((1, 6, 6), 3, 1, padding=1)["output_shape"][1:] == [6, 6]  # same convolution
    assert calculator.conv((1, 7, 7), 3, 1, stride=2)["output_shape"][1:] == [3, 3]  # strided -> (3.0, 3.0)


@pytest.mark.parametrize(
    ("inp", "kernel", "stride", "filters", "shape", "size", "params"),
    [
        ((3, 32, 32), 5, 1, 8, (28, 28, 8), 6272, 608),
        ((3, 39, 39), 3, 1, 10, (37, 37, 10), 13690, 280),
        ((10, 37, 37), 5, 2, 20, (17, 17, 20), 5780, 5020),
        ((20, 17, 17), 5, 2, 40, (7, 7, 40), 1960, 20040),
        ((8, 14, 14), 5, 1, 16, (10, 10, 16), 1600, 3216),
    ],
)
def test_rgb_convolutions(inp, kernel, stride, filters, shape, size, params) -> None:
    assert _hwc(calculator.conv(inp, kernel, filters, stride=stride)) == (shape, size, params)


@pytest.mark.parametrize(
    ("inp", "kernel", "stride", "shape", "size"),
    [((5, 5, 5), 3, 1, (3, 3, 5), 45), ((1000, 7, 7), 2, 2, (3, 3, 1000), 9000),
     ((8, 28, 28), 2, 2, (14, 14, 8), 1568), ((16, 10, 10), 2, 2, (5, 5, 16), 400)],
)
def test_pooling(inp, kernel, stride, shape, size) -> None:
    assert _hwc(calculator.pool(inp, kernel, stride)) == (shape, size, 0)


def test_pool_7x7_drops_a_row_and_says_so() -> None:
    r = calculator.pool((1000, 7, 7), 2, 2)
    assert [f["kind"] for f in r["findings"]] == ["inexact", "inexact"]
    assert "(7 + 2*0 - 2)/2 + 1 = 3.5 -> 3 (floor)" in r["arithmetic"][0]


@pytest.mark.parametrize(("n_in", "n_out", "params"), [(400, 120, 48120), (120, 84, 10164), (84, 10, 850),
                                                        (9216, 4096, 37752832), (4096, 4096, 16781312),
                                                        (4096, 1000, 4097000), (23296, 4096, 95424512)])
def test_fully_connected(n_in, n_out, params) -> None:
    r = calculator.dense(n_in, n_out)
    assert (r["output_shape"], r["activation_size"], r["params"]) == ([n_out], n_out, params)


def test_lenet_like_network_table() -> None:
    a = analyze(zoo.get("lenet-rgb8"))
    rows = [(ly.name, ly.output_shape, ly.activation_size, ly.params) for ly in a.layers
            if ly.type in ("Conv", "MaxPool", "Dense")]
    assert rows == [
        ("conv1", (8, 28, 28), 6272, 608), ("pool1", (8, 14, 14), 1568, 0),
        ("conv2", (16, 10, 10), 1600, 3216), ("pool2", (16, 5, 5), 400, 0),
        ("fc3", (120,), 120, 48120), ("fc4", (84,), 84, 10164), ("fc5", (10,), 10, 850),
    ]
    # "The input layer's shape is (32, 32, 3), the activation size of that layer is 32 * 32 * 3 = 3072":
    # the activation memory counts it beside the layers' outputs.
    assert a.memory["activation_bytes"] == (3072 + a.totals["activation_size"]) * 4


# The two AlexNet tables of seed 000: (H, W, C), activation size, parameters, for operations 1-11.
ALEXNET_227 = [
    ((55, 55, 96), 290400, 34944), ((27, 27, 96), 69984, 0), ((27, 27, 256), 186624, 614656),
    ((13, 13, 256), 43264, 0), ((13, 13, 384), 64896, 885120), ((13, 13, 384), 64896, 1327488),
    ((13, 13, 256), 43264, 884992), ((6, 6, 256), 9216, 0), ((4096,), 4096, 37752832),
    ((4096,), 4096, 16781312), ((1000,), 1000, 4097000),
]
ALEXNET_270x480 = [
    ((65, 118, 96), 736320, 34944), ((32, 58, 96), 178176, 0), ((32, 58, 256), 475136, 614656),
    ((15, 28, 256), 107520, 0), ((15, 28, 384), 161280, 885120), ((15, 28, 384), 161280, 1327488),
    ((15, 28, 256), 107520, 884992), ((7, 13, 256), 23296, 0), ((4096,), 4096, 95424512),
    ((4096,), 4096, 16781312), ((1000,), 1000, 4097000),
]


@pytest.mark.parametrize(("shape", "table"), [((3, 227, 227), ALEXNET_227), ((3, 270, 480), ALEXNET_270x480)])
def test_alexnet_tables(shape, table) -> None:
    a = analyze(zoo.get("alexnet-onetower"), shape)
    rows = []
    for ly in a.layers:
        if ly.type in ("Conv", "MaxPool", "Dense"):
            s = ly.output_shape
            hwc = (s[1], s[2], s[0]) if len(s) == 3 else s
            rows.append((hwc, ly.activation_size, ly.params))
    assert rows == table


def test_alexnet_270x480_flags_dropped_pixels() -> None:
    a = analyze(zoo.get("alexnet-onetower"), (3, 270, 480))
    by_layer = {f["layer"]: f["detail"] for f in a.findings if f["detail"].startswith("H")}
    # conv1: (270 - 11)/4 + 1 = 65.75 -> the last 3 rows are never seen.
    assert "the last 3 input rows are never seen" in by_layer["conv1"]
    assert {f["layer"] for f in a.findings} == {"conv1", "pool1", "pool2", "pool5"}


def test_division_that_skips_only_padding_is_flagged() -> None:
    # (8 + 2*1 - 3)/2 + 1 = 4.5: the half window falls on the bottom padding row, no input is lost.
    r = calculator.conv((1, 8, 8), 3, 2, stride=2, padding=1)
    assert r["output_shape"] == [2, 4, 4]
    assert [f["kind"] for f in r["findings"]] == ["padding", "padding"]
    assert "4.5 -> 4 (floor); the last padding row is never read (no input is lost)" in r["findings"][0]["detail"]
    assert calculator.conv((1, 9, 9), 3, 2, stride=2, padding=1)["findings"] == []  # (9 + 2 - 3)/2 + 1 = 5 exactly


def test_memory_of_the_270x480_alexnet() -> None:
    # Parameters 120,050,024 x 4 bytes; activations are every layer's outputs plus the input
    # (3,946,832 + 3*270*480 values), per image.
    a = analyze(zoo.get("alexnet-onetower"), (3, 270, 480), batch=8, bytes_per_value=2)
    assert a.totals["params"] == 120_050_024 and a.totals["activation_size"] == 3_946_832
    assert a.memory["param_bytes"] == 240_100_048
    assert a.memory["activation_bytes"] == (3_946_832 + 388_800) * 8 * 2
    assert analyze(zoo.get("alexnet-onetower"), (3, 270, 480)).memory["param_bytes"] == 480_200_096
