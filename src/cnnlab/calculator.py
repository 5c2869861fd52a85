"""Single-layer calculator: the notebooks' helper functions, done right (non-square kernels and
inputs, height and width kept apart, exact rounding reported)."""

from __future__ import annotations

from typing import Any

from .layers import AvgPool, Conv, Dense, Layer, MaxPool, Shape


def _result(layer: Layer, shape: Shape) -> dict[str, Any]:
    c = layer.figures(shape)
    size = 1
    for d in c.out:
        size *= d
    return {"output_shape": list(c.out), "activation_size": size, "params": c.params, "macs": c.macs,
            "connections": c.connections, "arithmetic": c.notes,
            "findings": [{"kind": k, "detail": d} for k, d in c.findings]}


def conv(input: Shape, kernel: int | tuple[int, int], filters: int, stride: int | tuple[int, int] = 1,
         padding: Any = 0, dilation: int | tuple[int, int] = 1, groups: int = 1, bias: bool = True) -> dict[str, Any]:
    """A convolution on a ``(C, H, W)`` input, e.g. ``conv((3, 32, 32), 5, 8)`` -> 8x28x28, 608 params."""
    layer = Conv(name="conv", filters=filters, kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                 groups=groups, bias=bias)
    return _result(layer, tuple(input))


def pool(input: Shape, kernel: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
         padding: Any = 0, mode: str = "max", ceil_mode: bool = False) -> dict[str, Any]:
    """Max or average pooling; ``stride`` defaults to the kernel; ``ceil_mode`` rounds up (Caffe)."""
    cls = MaxPool if mode == "max" else AvgPool
    return _result(cls(name="pool", kernel=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode), tuple(input))


def dense(inputs: int, units: int, bias: bool = True) -> dict[str, Any]:
    """A fully connected layer from ``inputs`` to ``units``."""
    return _result(Dense(name="dense", units=units, bias=bias), (inputs,))
