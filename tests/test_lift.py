"""Lifting common PyTorch patterns into the description: each small module's analysis equals the
module itself (parameters, output shape, MACs = FlopCounterMode's FLOPs / 2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.adapt import diagnose
from cnnlab.analysis import analyze
from cnnlab.network import Graph, network_from_spec, network_to_spec
from cnnlab.report.diagram import svg
from cnnlab.torch_backend import build
from cnnlab.trace import LiftError, trace


def _measure(model: nn.Module, shape: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        y = model(torch.zeros(1, *shape))
    return tuple(y.shape[1:]), sum(p.numel() for p in model.parameters()), fc.get_total_flops() // 2


def _check(model: nn.Module, shape: tuple[int, int, int]):
    a = analyze(trace(model, shape), shape)
    assert (a.output_shape, a.totals["params"], a.totals["macs"]) == _measure(model, shape)
    return a


class BasicBlock(nn.Module):
    """torchvision's ResNet block: one ReLU module called twice."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + x)


def test_reused_relu_gives_one_row_per_call() -> None:
    a = _check(BasicBlock(8), (8, 10, 10))
    names = [ly.name for ly in a.layers]
    assert names == ["residual1.conv1", "residual1.bn1", "residual1.relu", "residual1.conv2", "residual1.bn2",
                     "relu_2"]
    assert a.totals["params"] == 2 * 8 * 9 * 8 + 4 * 8  # two 3x3 convs, two affine BatchNorms


class SE(nn.Module):
    def __init__(self, c: int, r: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.fc1, self.fc2 = nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1)

    def forward(self, x):
        x = self.conv(x)
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.fc2(F.silu(self.fc1(s))))
        return x * s


def test_squeeze_excitation_is_a_graph_with_a_mul() -> None:
    net = trace(SE(16, 4), (16, 12, 12))
    g = net.layers[-1]
    assert isinstance(g, Graph) and [m.op for m in g.merges] == ["mul"]
    a = _check(SE(16, 4), (16, 12, 12))
    # conv 16*9*16 + 16; fc1 16*4 + 4; fc2 4*16 + 16; MACs: 16*9*16*144 + 64 + 64
    assert a.totals["params"] == 2320 + 68 + 80 and a.totals["macs"] == 331776 + 128
    assert a.layer("graph1.fc2").output_shape == (16, 1, 1) and a.output_shape == (16, 12, 12)
    # conv 3x3, then the global pool sees all 12 positions: 3 + 11 = 14, jump 12
    assert a.layer("graph1.sigmoid1").rf == ((14, 12), (14, 12))


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.norm2, self.conv2 = nn.BatchNorm2d(4 * growth), nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, feats):
        x = torch.cat(feats, 1)
        x = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(x)))


class DenseBlock(nn.Module):
    def __init__(self, n: int, cin: int, growth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(cin + i * growth, growth) for i in range(n))

    def forward(self, x):
        feats = [x]
        for layer in self.layers:
            feats.append(layer(feats))
        return torch.cat(feats, 1)


@pytest.mark.parametrize("n", [1, 4, 17])
def test_dense_block_has_one_row_per_layer(n: int) -> None:
    cin, k = 8, 4
    a = _check(DenseBlock(n, cin, k), (cin, 6, 6))
    assert len(a.layers) == 6 * n  # norm, relu, conv, norm, relu, conv per layer: never 2^n - 1 paths
    # per layer i with c = 8 + 4i inputs: BN 2c + 1x1 conv c*16 + BN 2*16 + 3x3 conv 16*9*4
    assert a.totals["params"] == sum(18 * (cin + i * k) + 32 + 576 for i in range(n))
    assert a.output_shape == (cin + n * k, 6, 6)


class DenseNet121(nn.Module):
    """DenseNet-121's shape (Huang et al. 2017, Table 1): growth 32, blocks 6/12/24/16, compression 0.5."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        stages, c = [], 64
        for i, n in enumerate((6, 12, 24, 16)):
            stages.append(DenseBlock(n, c, 32))
            c += 32 * n
            if i < 3:
                stages.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False),
                                            nn.AvgPool2d(2)))
                c //= 2
        self.features = nn.Sequential(*stages, nn.BatchNorm2d(c))
        self.fc = nn.Linear(c, 1000)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(F.relu(self.features(self.stem(x))), 1)
        return self.fc(torch.flatten(x, 1))


def test_densenet121_shape_is_lifted_with_one_row_per_layer() -> None:
    """Its speed is measured by benchmarks/bench_lift.py."""
    model = DenseNet121()
    a = analyze(trace(model, (3, 224, 224)))
    convs = 1 + 2 * 58 + 3
    assert sum(ly.type == "Conv" for ly in a.layers) == convs == 120
    assert a.totals["params"] == sum(p.numel() for p in model.parameters()) == 7_978_856  # torchvision's count
    assert a.output_shape == (1000,)


class InvertedResidual(nn.Module):
    def __init__(self, c: int, t: int) -> None:
        super().__init__()
        h = c * t
        self.block = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                                   nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.Hardswish(),
                                   nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.block(x)


def test_inverted_residual() -> None:
    a = _check(InvertedResidual(8, 6), (8, 14, 14))
    # 1x1 8->48, depthwise 3x3 on 48, 1x1 48->8, BNs 2*(48+48+8)
    assert a.totals["params"] == 384 + 432 + 384 + 208


def test_flatten_from_dim_two_keeps_channels() -> None:
    class Patches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Conv2d(3, 12, 4, 4)
            self.flat = nn.Flatten(2)
            self.norm = nn.LayerNorm(16)

        def forward(self, x):
            return self.norm(self.flat(self.proj(x))).flatten(1)

    a = _check(Patches(), (3, 16, 16))
    assert a.layer("flat").output_shape == (12, 16) and a.output_shape == (192,)


def test_batchnorm_without_affine_or_running_stats() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, affine=False),
                          nn.BatchNorm2d(8, track_running_stats=False), nn.GroupNorm(2, 8))
    a = _check(model, (3, 8, 8))
    assert [(ly.params, ly.buffers) for ly in a.layers[1:]] == [(0, 16), (16, 0), (16, 0)]
    assert a.totals["buffers"] == sum(b.numel() for k, b in model.named_buffers() if "num_batches" not in k)


def test_unreached_parameters_are_reported() -> None:
    class WithAux(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.aux = nn.Sequential(nn.Linear(10, 5), nn.BatchNorm1d(5))

        def forward(self, x):
            return self.conv(x)

    net = trace(WithAux(), (3, 8, 8))
    assert net.meta["unreached"] == {"params": 55 + 10, "buffers": 10, "modules": ["aux.0", "aux.1"]}
    assert analyze(net).totals["params"] == 3 * 9 * 4 + 4


def test_constant_arithmetic_and_default_arguments() -> None:
    class Shift(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.up = nn.Upsample(scale_factor=2)
            self.t = nn.ConvTranspose2d(4, 2, 2, 2)

        def forward(self, x, mask=None, scale: float = 1.0):
            y = (self.conv(x) + 1.0) / 6 - 0.5
            return self.t(self.up(F.gelu(y * 2) * scale))

    a = _check(Shift(), (3, 10, 10))
    assert a.output_shape == (2, 32, 32)
    assert [ly.type for ly in a.layers].count("Scale") == 5


class TutorialNet(nn.Module):
    """The PyTorch 'Neural Networks' tutorial net."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(16 * 5 * 5, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def test_tutorial_net() -> None:
    a = _check(TutorialNet(), (1, 32, 32))
    assert a.totals["params"] == 61_706  # the tutorial's figure
    assert a.layer("max_pool2d2").output_shape == (16, 5, 5)


def test_all_unsupported_nodes_named_with_counts() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))
            self.act = nn.PReLU()

        def forward(self, x):
            x = x.permute(0, 1, 3, 2).permute(0, 1, 3, 2)
            return self.act(x * self.w)

    with pytest.raises(LiftError) as e:
        trace(Odd(), (3, 8, 8))
    assert e.value.unsupported == {"call_method permute": 2, "module PReLU": 1, "mul with a parameter or buffer": 1}
    assert str(e.value) == ("cannot describe Odd: 4 unsupported nodes: call_method permute x2, "
                            "module PReLU x1, mul with a parameter or buffer x1")


def test_lifted_dag_round_trips_builds_and_adapts() -> None:
    model = DenseBlock(3, 8, 4)
    net = trace(model, (8, 6, 6))
    assert network_from_spec(network_to_spec(net)) == net
    built = build(net).eval()
    assert sum(p.numel() for p in built.parameters()) == sum(p.numel() for p in model.parameters())
    assert tuple(built(torch.zeros(2, 8, 6, 6)).shape) == (2, 20, 6, 6)
    assert "graph1 (Graph: 3 merges, concat)" in svg(net, analyze(net))
    assert diagnose(net, (8, 3, 3)) is not None


def test_summary_text_names_unreached_modules() -> None:
    from rich.console import Console

    from cnnlab.report.text import render_summary

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.aux = nn.Conv2d(3, 4, 3), nn.Linear(10, 5)

        def forward(self, x):
            return self.conv(x)

    con = Console(record=True, width=200)
    render_summary(analyze(trace(Head(), (3, 8, 8))), con=con)
    assert "Not counted: 55 params and 0 buffer values that forward never reaches (aux)" in con.export_text()


def test_a_parameter_tied_between_two_modules_is_refused_not_counted_twice() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
            self.b.weight = self.a.weight  # one tensor, two modules: the description shares whole layers

        def forward(self, x):
            return self.b(self.a(x))

    with pytest.raises(LiftError) as e:
        trace(Tied(), (4, 8, 8))
    assert e.value.unsupported == {"module Conv2d holding a parameter of another module (tied weights)": 2}


class SharedInput(nn.Module):
    """A ReLU whose input is read again by another branch and by the sum: an in-place ReLU in the
    built module would change that value under the other readers (the module's own ReLU is not in
    place, so the value it reads stays as it was)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.relu, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.relu(y) * self.conv2(y) + y


def test_a_value_read_twice_is_not_changed_in_place() -> None:
    m = SharedInput().eval()
    net = trace(m, (3, 8, 8))
    built = build(net).eval()
    ours = m.state_dict()
    # the lifted names nest the layers in blocks; each ends with the module's own name
    built.load_state_dict({k: ours[next(o for o in ours if k == o or k.endswith("." + o))]
                           for k in built.state_dict()}, strict=True)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(built(x), m(x), atol=1e-6)


class Mutates(nn.Module):
    """In-place ops on values read again later: the description computes out of place, so lifting these
    would hand the later readers the unchanged value."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.relu = nn.Conv2d(3, 3, 1), nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        x.mul_(2)                       # x is read again by the sum below
        z = self.relu(y)                # y is read again by the sum below
        w = F.relu(z, inplace=True)     # z is read again
        return w + y + z + x


def test_in_place_ops_on_values_read_again_are_refused_by_the_lift() -> None:
    with pytest.raises(LiftError) as e:
        trace(Mutates(), (3, 8, 8))
    assert e.value.unsupported == {"in-place call_method mul_ on a tensor used again": 1,
                                   "in-place module ReLU on a tensor used again": 1,
                                   "in-place relu on a tensor used again": 1}
    # The measured path runs the module's own ops, so it still answers: one 1x1 conv, 3*3 + 3 = 12
    # parameters, 3*3*64 = 576 MACs at 8x8.
    from cnnlab.measure import analyze_module

    a = analyze_module(Mutates(), (3, 8, 8))
    assert (a.totals["params"], a.totals["macs"], tuple(a.output_shape)) == (12, 576, (3, 8, 8))


class LogSoftmaxNets(nn.Module):
    """pytorch/examples' MNIST head (F.log_softmax over dim 1), and the same over dim -1 of a vector."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 26 * 26, 10)
        self.log_softmax = nn.LogSoftmax(dim=-1)

    def forward(self, x):
        x = self.fc(torch.flatten(F.relu(self.conv(x)), 1))
        if self.how == "function":
            return F.log_softmax(x, dim=1)
        if self.how == "method":
            return x.log_softmax(-1)
        return self.log_softmax(x)


@pytest.mark.parametrize("how", ["function", "method", "module"])
def test_log_softmax_is_lifted(how: str) -> None:
    model = LogSoftmaxNets(how).eval()
    net = trace(model, (1, 28, 28))
    assert type(net.layers[-1]).__name__ == "LogSoftmax"
    a = _check(model, (1, 28, 28))
    assert a.totals["params"] == 40 + 2704 * 10 + 10  # conv 9*4+4; fc 4*26*26*10+10
    x = torch.randn(2, 1, 28, 28)
    module = build(net).eval()
    module.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(x))


class SpatialSoftmax(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return F.softmax(self.conv(x), dim=self.dim)


def test_softmax_over_a_map_s_width_is_not_described_as_over_its_channels() -> None:
    """Softmax over dim -1 of a map normalizes its rows, not its channels: the description refuses it (the
    measured path answers), as it does dim 2; dim 1 is the channels and lifts."""
    assert type(trace(SpatialSoftmax(1), (3, 8, 8)).layers[-1]).__name__ == "Softmax"
    with pytest.raises(LiftError, match=r"softmax over the last dimension of a map x1"):
        trace(SpatialSoftmax(-1), (3, 8, 8))
    with pytest.raises(LiftError, match=r"softmax over dimension 2 x1"):
        trace(SpatialSoftmax(2), (3, 8, 8))
