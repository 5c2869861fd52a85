"""Source text of the small modules a generated PyTorch file defines for itself when the network
needs them: the layers ``torch.nn`` lacks (LeNet-5's subsampling and RBF output, asymmetric or
TensorFlow 'same' padding, ...). Each computes what its counterpart in
:mod:`cnnlab.torch_backend` computes, with the same parameter names, so a state_dict moves across.
"""

from __future__ import annotations

import inspect

from .. import torch_backend

# name -> (source, names of the helpers it uses)
HELPERS: dict[str, tuple[str, tuple[str, ...]]] = {}


def _helper(name: str, source: str, *needs: str) -> None:
    HELPERS[name] = (source.strip("\n"), needs)


def with_dependencies(names: set[str]) -> list[str]:
    """``names`` and every helper they use, each after the helpers it needs."""
    order: list[str] = []

    def visit(n: str) -> None:
        if n not in order:
            for dep in HELPERS[n][1]:
                visit(dep)
            order.append(n)

    for n in sorted(names):
        visit(n)
    return order


_helper("pad_input", '''
def pad_input(x: torch.Tensor, pad: tuple[int, int, int, int] | str, kernel: int | tuple[int, int],
              stride: int | tuple[int, int], dilation: int | tuple[int, int], value: float = 0.0) -> torch.Tensor:
    """Pad (left, right, top, bottom), or TensorFlow's 'same': output ceil(n / stride), any odd
    pixel of padding after."""
    if pad == "same":
        sides = []
        pairs = [v if isinstance(v, tuple) else (v, v) for v in (kernel, stride, dilation)]
        for n, k, s, d in zip(x.shape[-2:], *pairs):
            total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
            sides.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = sides
        pad = (left, right, top, bottom)
    return F.pad(x, pad, value=value) if any(pad) else x
''')

_helper("Conv2dPad", '''
class Conv2dPad(nn.Conv2d):
    """A convolution padded on each side apart (or TensorFlow 'same' at any input)."""

    def __init__(self, *args, pad: tuple[int, int, int, int] | str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pad_input(x, self.pad, self.kernel_size, self.stride, self.dilation))
''', "pad_input")

_helper("MaxPool2dPad", '''
class MaxPool2dPad(nn.MaxPool2d):
    """Max pooling padded on each side apart (or TensorFlow 'same'); padding never wins a max."""

    def __init__(self, *args, pad: tuple[int, int, int, int] | str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(pad_input(x, self.pad, self.kernel_size, self.stride, self.dilation, float("-inf")))
''', "pad_input")

_helper("AvgPool2dPad", '''
class AvgPool2dPad(nn.AvgPool2d):
    """Average pooling padded on each side apart (or TensorFlow 'same'); without
    count_include_pad each window averages only the input it covers."""

    def __init__(self, *args, pad: tuple[int, int, int, int] | str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size, self.stride
        y = super().forward(pad_input(x, self.pad, k, s, (1, 1)))
        if self.count_include_pad:
            return y
        return y / super().forward(pad_input(torch.ones_like(x[:1, :1]), self.pad, k, s, (1, 1)))
''', "pad_input")

_helper("PartialConv2d", '''
class PartialConv2d(nn.Module):
    """Output map j sees only the input maps table[j] (LeNet-5's C3): output maps grouped by how
    many inputs they see, one grouped convolution per group."""

    def __init__(self, table: tuple[tuple[int, ...], ...], kernel: tuple[int, int], stride: tuple[int, int],
                 bias: bool, dilation: tuple[int, int], pad: tuple[int, int, int, int] | str) -> None:
        super().__init__()
        self.pad = pad
        by_size: dict[int, list[int]] = {}
        for j, inputs in enumerate(table):
            by_size.setdefault(len(inputs), []).append(j)
        self.sizes = sorted(by_size)
        self.convs = nn.ModuleList()
        order: list[int] = []
        for n in self.sizes:
            outs = by_size[n]
            self.register_buffer(f"idx{n}", torch.tensor([i for j in outs for i in table[j]]), persistent=False)
            self.convs.append(nn.Conv2d(n * len(outs), len(outs), kernel, stride, dilation=dilation,
                                        groups=len(outs), bias=bias))
            order += outs
        self.register_buffer("inverse", torch.argsort(torch.tensor(order)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.convs[0]
        x = pad_input(x, self.pad, c.kernel_size, c.stride, c.dilation)
        ys = [conv(x[:, getattr(self, f"idx{n}")]) for n, conv in zip(self.sizes, self.convs)]
        return torch.cat(ys, 1)[:, self.inverse]
''', "pad_input")

_helper("Subsample2d", '''
class Subsample2d(nn.Module):
    """LeNet-5's trainable subsampling: per map, weight * sum(window) + bias."""

    def __init__(self, channels: int, kernel: tuple[int, int], stride: tuple[int, int],
                 dilation: tuple[int, int], pad: tuple[int, int, int, int] | str) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), 1.0 / (kernel[0] * kernel[1])))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.kernel, self.stride, self.dilation, self.pad = kernel, stride, dilation, pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_input(x, self.pad, self.kernel, self.stride, self.dilation)
        w = self.weight.view(-1, 1, 1, 1).expand(-1, 1, *self.kernel)
        return F.conv2d(x, w, self.bias, self.stride, dilation=self.dilation, groups=x.shape[1])
''', "pad_input")


# Modules that need nothing beyond torch are written once, in cnnlab.torch_backend, and copied from there.
for _cls in (torch_backend.RBFOutput, torch_backend.ScaledTanh, torch_backend.ChannelPad, torch_backend.GlobalAvgPool,
             torch_backend.ScaleShift, torch_backend.Normalize, torch_backend.Shared,
             torch_backend.UnflattenChannelsLast):
    _helper(_cls.__name__, inspect.getsource(_cls))
_helper("tie_shared", inspect.getsource(torch_backend.tie_shared), "Shared")
