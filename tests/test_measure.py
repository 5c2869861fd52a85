"""The measured path (cnnlab.measure): small modules with figures derived by hand."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.errors import CnnlabError
from cnnlab.measure import UNKNOWN_RF, analyze_module


def row(a, name):
    return next(ly for ly in a.layers if ly.name == name)


def flop_counter_macs(model: nn.Module, *xs: torch.Tensor) -> int:
    """The reference: FlopCounterMode's total / 2 on a train-mode forward with SDPA forced to math."""
    model.train()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        model(*xs)
    return fc.get_total_flops() // 2


class TutorialNet(nn.Module):
    """The PyTorch 'Neural Networks' tutorial net."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class ExamplesMnist(nn.Module):
    """The pytorch/examples MNIST net."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def test_tutorial_net() -> None:
    a = analyze_module(TutorialNet(), (1, 32, 32))
    # conv1 6*(25+1), conv2 16*(6*25+1), fc 400*120+120, 120*84+84, 84*10+10
    assert [row(a, n).params for n in ("conv1", "conv2", "fc1", "fc2", "fc3")] == [156, 2416, 48120, 10164, 850]
    assert a.totals["params"] == 61706 == sum(p.numel() for p in TutorialNet().parameters())
    # conv1 25*6*28*28, conv2 25*6*16*10*10, fc 400*120 + 120*84 + 84*10
    assert row(a, "conv1").macs == 117600 and row(a, "conv2").macs == 240000
    assert a.totals["macs"] == 117600 + 240000 + 48000 + 10080 + 840
    assert row(a, "conv2").output_shape == (16, 10, 10) and a.output_shape == (10,)
    # F.max_pool2d gets rows of its own; receptive field 5 -> 6 (pool 2) -> 14 -> 16, jump 4; flatten sees 5x5
    pools = [ly for ly in a.layers if ly.type == "max_pool2d"]
    assert [p.rf for p in pools] == [((6, 2), (6, 2)), ((16, 4), (16, 4))]
    assert row(a, "fc1").rf == ((16 + 4 * 4, 4), (32, 4))
    assert a.meta["mode"] == "eval"


def test_examples_mnist_net() -> None:
    a = analyze_module(ExamplesMnist(), (1, 28, 28))
    assert a.totals["params"] == 320 + 18496 + 9216 * 128 + 128 + 1290 == 1199882
    # 9*32*26*26 + 9*32*64*24*24 + 9216*128 + 128*10
    assert a.totals["macs"] == 194688 + 10616832 + 1179648 + 1280
    assert row(a, "max_pool2d").output_shape == (64, 12, 12)
    assert a.output_shape == (10,)


def test_se_block_sees_the_whole_map() -> None:
    class SE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.reduce, self.expand = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = F.adaptive_avg_pool2d(x, 1)
            return x * torch.sigmoid(self.expand(F.relu(self.reduce(s))))

    a = analyze_module(SE(), (16, 8, 8))
    assert a.totals["params"] == 16 * 4 + 4 + 4 * 16 + 16 == 148
    assert a.totals["macs"] == 64 + 64  # two 1x1 convs on a 1x1 map
    assert a.output_shape == (16, 8, 8)
    assert row(a, "mul").rf == ((8, 1), (8, 1))  # the scale comes from the whole 8x8 map


def test_depthwise_separable() -> None:
    m = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                      nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16))
    a = analyze_module(m, (8, 16, 16))
    assert [ly.name for ly in a.layers] == ["0", "1", "2", "3", "4"]
    assert a.totals["params"] == 72 + 16 + 128 + 32
    assert a.totals["buffers"] == 16 + 32  # running mean and variance; num_batches_tracked left out
    assert row(a, "0").macs == 9 * 8 * 256 and row(a, "3").macs == 8 * 16 * 256
    assert row(a, "4").rf == ((3, 1), (3, 1))
    assert any("num_batches_tracked" in n for n in a.meta["notes"])


class InvertedResidual(nn.Module):
    def __init__(self, c: int = 8, t: int = 6) -> None:
        super().__init__()
        h = c * t
        self.block = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                                   nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                                   nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def test_inverted_residual() -> None:
    a = analyze_module(InvertedResidual(), (8, 8, 8))
    assert a.totals["params"] == 384 + 96 + 432 + 96 + 384 + 16
    assert a.totals["buffers"] == 96 + 96 + 16
    assert a.totals["macs"] == (384 + 432 + 384) * 64
    assert a.layers[-1].name == "add" and a.layers[-1].rf == ((3, 1), (3, 1))
    assert [ly.depth for ly in a.layers[:2]] == [1, 1]


class DenseBlock(nn.Module):
    def __init__(self, n: int, c0: int = 8, k: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(c0 + i * k), nn.ReLU(), nn.Conv2d(c0 + i * k, k, 3, padding=1, bias=False))
            for i in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats, 1)


def test_dense_block_one_row_per_layer() -> None:
    a = analyze_module(DenseBlock(4), (8, 8, 8))
    inputs = 8 + 12 + 16 + 20  # the channels each layer reads
    assert a.totals["params"] == 9 * 4 * inputs + 2 * inputs
    assert a.totals["buffers"] == 2 * inputs
    assert a.totals["macs"] == 9 * 4 * 64 * inputs
    assert a.output_shape == (24, 8, 8)
    assert len(a.layers) == 3 * 4 + 5  # bn, relu, conv per layer and five concatenations
    big = analyze_module(DenseBlock(17), (8, 8, 8))
    assert len(big.layers) == 3 * 17 + 18  # grows with layers, never with paths
    assert big.totals["params"] == sum(p.numel() for p in DenseBlock(17).parameters())


def test_shared_module_one_row_per_call_params_once() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(8, 8)
            self.b = self.a

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.a(x)))

    a = analyze_module(Shared(), (8,))
    assert [ly.name for ly in a.layers] == ["a#1", "relu", "a#2"]
    assert [ly.params for ly in a.layers] == [72, 0, 0]
    assert a.totals["macs"] == 2 * 64
    assert any(n.startswith("shared: a, b") for n in a.meta["notes"])
    assert row(a, "a#1").findings[0][0] == "repeated"


def test_tied_weights_counted_once() -> None:
    class TinyLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.head = nn.Linear(8, 10, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.emb(ids))

    a = analyze_module(TinyLM(), (5,), input_dtypes=[torch.long])
    assert a.totals["params"] == 80 == sum(p.numel() for p in TinyLM().parameters())
    assert [ly.params for ly in a.layers] == [80, 0]
    assert a.totals["macs"] == 5 * 8 * 10 and a.output_shape == (5, 10)
    assert any(n.startswith("tied: emb.weight, head.weight") for n in a.meta["notes"])


def test_permute_layernorm_block() -> None:
    class ConvNeXtBlock(nn.Module):
        def __init__(self, c: int = 8) -> None:
            super().__init__()
            self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
            self.norm = nn.LayerNorm(c)
            self.fc1, self.act, self.fc2 = nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.dw(x).permute(0, 2, 3, 1)
            y = self.fc2(self.act(self.fc1(self.norm(y))))
            return x + y.permute(0, 3, 1, 2)

    a = analyze_module(ConvNeXtBlock(), (8, 14, 14))
    assert a.totals["params"] == 400 + 16 + 288 + 264
    assert a.totals["macs"] == 49 * 8 * 196 + 2 * 196 * 8 * 32
    assert row(a, "norm").output_shape == (14, 14, 8)
    assert row(a, "dw").rf == ((7, 1), (7, 1))
    assert row(a, "norm").rf == UNKNOWN_RF  # after a permute the path is not geometric


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class TinyViT(nn.Module):
    def __init__(self, d: int = 32, heads: int = 4, mha: bool = False) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, 4)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, 17, d))
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True) if mha else Attention(d, heads)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.head = nn.Linear(d, 10)
        self.mha = mha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        y = self.norm1(x)
        x = x + (self.attn(y, y, y)[0] if self.mha else self.attn(y))
        x = x + self.mlp(self.norm2(x))
        return self.head(x[:, 0])


# patch 3*16*32 MACs at 16 positions; qkv 17*32*96; QK^T and AV 2*4*17*17*8; proj 17*32*32; MLP 2*17*32*64; head 320
VIT_MACS = 24576 + 52224 + 18496 + 17408 + 69632 + 320
VIT_PARAMS = 1568 + 32 + 544 + 64 + 3168 + 1056 + 64 + 2112 + 2080 + 330


@pytest.mark.parametrize("mha", [False, True])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_attention_and_patch_embedding(mha: bool, mode: str) -> None:
    model = TinyViT(mha=mha)
    a = analyze_module(model, (3, 16, 16), mode=mode)
    assert a.totals["params"] == VIT_PARAMS == sum(p.numel() for p in model.parameters())
    assert a.totals["macs"] == VIT_MACS  # attention counted in eval too (MultiheadAttention's fast path)
    assert a.output_shape == (10,)
    assert len({ly.name for ly in a.layers}) == len(a.layers)  # two bmm in one module: bmm#1, bmm#2
    assert model.training is True  # the module's own mode is restored
    assert flop_counter_macs(model, torch.randn(2, 3, 16, 16)) == 2 * VIT_MACS


class FlattenFrom2(nn.Module):
    def __init__(self, flat: nn.Module | None = None) -> None:
        super().__init__()
        self.conv, self.fc, self.flat = nn.Conv2d(3, 4, 1), nn.Linear(25, 2), flat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.fc(self.flat(x) if self.flat is not None else x.flatten(2))


@pytest.mark.parametrize("flat", [None, nn.Flatten(2)])
def test_flatten_from_dim_2(flat: nn.Module | None) -> None:
    a = analyze_module(FlattenFrom2(flat), (3, 5, 5))
    assert a.output_shape == (4, 2)
    assert a.totals["params"] == 16 + 52 and a.totals["macs"] == 3 * 4 * 25 + 4 * 25 * 2


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_affine_less_batchnorm(mode: str) -> None:
    a = analyze_module(nn.Sequential(nn.BatchNorm2d(8, affine=False), nn.BatchNorm2d(8, track_running_stats=False)),
                       (8, 4, 4), mode=mode)
    assert [(ly.params, ly.buffers) for ly in a.layers] == [(0, 16), (16, 0)]


def test_unused_parameters_are_counted_and_noted() -> None:
    class WithAux(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.aux = nn.Linear(4, 4), nn.Linear(4, 100)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    a = analyze_module(WithAux(), (4,))
    assert a.totals["params"] == 20 + 500
    assert a.totals["macs"] == 16
    last = a.layers[-1]
    assert (last.name, last.params, last.findings[0][0]) == ("aux", 500, "unused")
    assert any("never reaches" in n for n in a.meta["notes"])


def test_extra_forward_arguments() -> None:
    class Masked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            return self.fc(x if mask is None else x * mask)

    plain = analyze_module(Masked(), (4,))
    masked = analyze_module(Masked(), (4,), kwargs={"mask": torch.ones(1, 4)})
    assert plain.totals["macs"] == masked.totals["macs"] == 12
    assert [ly.name for ly in masked.layers] == ["mul", "fc"]


def test_several_inputs_and_dtype() -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(6, 2), nn.Linear(3, 2)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(y)

    a = analyze_module(Two(), [(6,), (3,)], dtype=torch.float16, batch=4)
    assert a.totals["macs"] == 12 + 6 and a.output_shape == (2,)
    assert a.meta["inputs"] == [[6], [3]] and a.meta["dtype"] == "float16"
    assert a.memory["param_bytes"] == (14 + 8) * 2 and a.memory["adam_bytes"] == 2 * 22 * 2


def test_memory_of_a_training_step() -> None:
    a = analyze_module(nn.Sequential(nn.Linear(10, 10), nn.ReLU()), (10,), mode="train", batch=4)
    m = a.memory
    assert m["param_bytes"] == m["gradient_bytes"] == m["sgd_momentum_bytes"] == 110 * 4
    assert m["adam_bytes"] == 2 * 440
    # kept for backward: the input (for the weight's gradient) and the ReLU's output, each 4 x 10 fp32
    assert m["saved_for_backward_bytes"] == 2 * 160
    assert m["train_adam_bytes"] == 440 + 440 + 880 + 320


def test_depth_folds_rows_into_ancestors() -> None:
    m = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU()))
    a = analyze_module(m, (3, 8, 8), depth=1)
    assert [(ly.name, ly.type, ly.params, ly.macs) for ly in a.layers] == [
        ("0", "Sequential", 112, 108 * 36), ("1", "Sequential", 148, 144 * 16)]
    assert a.layers[1].output_shape == (4, 4, 4) and a.layers[1].rf == ((5, 1), (5, 1))
    assert len(analyze_module(m, (3, 8, 8)).layers) == 4


def test_json_keeps_the_summary_contract() -> None:
    from cnnlab import analyze, zoo
    from cnnlab.report.formats import to_csv, to_json, to_markdown

    measured = to_json(analyze_module(TutorialNet(), (1, 32, 32)))
    described = to_json(analyze(zoo.get("lenet5-relu")))
    assert set(measured["layers"][0]) == set(described["layers"][0]) | {"path", "depth"}
    assert set(described) <= set(measured) | {"meta"}
    assert "Measured on fake tensors" in measured["conventions"]
    json.dumps(measured)
    a = analyze_module(TutorialNet(), (1, 32, 32))
    assert to_csv(a).splitlines()[1].startswith("conv1,Conv2d,6x28x28,4704,156,0,117600")
    assert "| conv1 | Conv2d |" in to_markdown(a)


def test_html_and_table_reports(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    from cnnlab.report import html
    from cnnlab.report.text import render_summary

    a = analyze_module(TutorialNet(), (1, 32, 32))
    page = html.render(None, a)
    assert "conv1" in page and "Measured on fake tensors" in page
    con = Console(width=200, record=True)
    render_summary(a, con=con)
    text = con.export_text()
    assert "Measured in eval mode" in text and "with Adam" in text


def test_errors_are_one_line() -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("no good")

    with pytest.raises(CnnlabError, match=r"test_measure\.py:\d+: ValueError: no good"):
        analyze_module(Broken(), (3,))
    with pytest.raises(CnnlabError, match="Linear.forward on 5 failed"):
        analyze_module(nn.Linear(4, 2), (5,))
    with pytest.raises(CnnlabError, match="mode 'test'"):
        analyze_module(nn.Linear(4, 2), (4,), mode="test")
    with pytest.raises(CnnlabError, match="input shape"):
        analyze_module(nn.Linear(4, 2), [(4, 0)])


def test_value_dependent_forward_says_why() -> None:
    class Peeks(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if x.sum().item() > 0 else x

    with pytest.raises(CnnlabError, match=r"test_measure\.py:\d+: .*the measured path runs on shapes only"):
        analyze_module(Peeks(), (3,))


def test_front_door_export() -> None:
    import cnnlab

    assert cnnlab.analyze_module is analyze_module


def test_large_input_stays_cheap() -> None:
    big = analyze_module(InvertedResidual(), (8, 2048, 2048))
    assert big.totals["macs"] == 1200 * 2048 * 2048  # nothing is allocated: only shapes travel
