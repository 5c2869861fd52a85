"""Tracing a user's nn.Module gives a description whose analysis matches the module itself."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab import zoo
from cnnlab.analysis import analyze
from cnnlab.errors import CnnlabError
from cnnlab.network import Concat, Residual
from cnnlab.torch_backend import build
from cnnlab.trace import trace


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) \
            if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.down(x))


class Mixed(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(cin, 8, 1)
        self.b2 = nn.Sequential(nn.Conv2d(cin, 4, 1), nn.ReLU(), nn.Conv2d(4, 8, (1, 7), padding=(0, 3)))
        self.b3 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, 4, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x)], 1)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
        self.layer1 = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2))
        self.mixed = Mixed(32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(20, 10)

    def forward(self, x):
        x = self.mixed(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def _measure(model: nn.Module, shape: tuple[int, int, int]) -> tuple[tuple[int, ...], int, int]:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        y = model(torch.zeros(1, *shape))
    return tuple(y.shape[1:]), sum(p.numel() for p in model.parameters()), fc.get_total_flops() // 2


@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 45, 61)])
def test_custom_module(shape) -> None:
    model = Net()
    net = trace(model, shape)
    kinds = [type(n).__name__ for n in net.layers]
    assert kinds.count("Residual") == 2 and kinds.count("Concat") == 1
    a = analyze(net, shape)
    out, params, macs = _measure(model, shape)
    assert (a.output_shape, a.totals["params"], a.totals["macs"]) == (out, params, macs)
    assert a.totals["buffers"] == 2 * (16 + 16 + 32 + 32 + 32)  # running mean + var of five BatchNorms
    res = [n for n in net.layers if isinstance(n, Residual)]
    assert res[0].shortcut is None and res[1].shortcut is not None  # identity, then a projection
    assert isinstance(net.layers[[type(n) for n in net.layers].index(Concat)], Concat)


@pytest.mark.parametrize("name", ["alexnet", "lenet5-relu", "alexnet-bn-flowers17", "alexnet-mnist", "mnist-cnn3"])
def test_round_trip_through_torch(name) -> None:
    net = zoo.get(name)
    a = analyze(net)
    b = analyze(trace(build(net), net.input_shape))
    assert (b.output_shape, b.totals) == (a.output_shape, a.totals)


def test_untraceable_operations_are_named() -> None:
    class Odd(nn.Module):
        def forward(self, x):
            return x.permute(0, 1, 3, 2)

    with pytest.raises(CnnlabError, match=r"1 unsupported node: call_method permute x1"):
        trace(Odd(), (3, 8, 8))
    with pytest.raises(CnnlabError, match="module PReLU x1"):
        trace(nn.Sequential(nn.Conv2d(3, 4, 3), nn.PReLU()), (3, 8, 8))


def test_cli_traces_a_module_file(tmp_path, capsys) -> None:
    import json

    from cnnlab.cli import main

    f = tmp_path / "mynet.py"
    f.write_text("from torch import nn\n\n"
                 "def Tiny():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30 * 30, 5))\n")
    assert main(["summary", f"{f}:Tiny", "--input", "3x32x32", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["model"] == "Tiny" and d["totals"]["params"] == 3 * 9 * 8 + 8 + 8 * 30 * 30 * 5 + 5
    assert main(["summary", f"{f}:Tiny"]) == 2
    assert "needs --input" in capsys.readouterr().err
    assert main(["summary", f"{f}:Nope", "--input", "3x32x32"]) == 2
