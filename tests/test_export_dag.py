"""The pytorch export of lifted modules: DAGs (DenseNet's shared concatenations, squeeze-excitation's
``mul``) and every layer type, checked against cnnlab's built module in a child interpreter where
cnnlab cannot be imported; ONNX, TorchScript and the command line on one lifted DAG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.export.helpers import HELPERS, with_dependencies
from cnnlab.export.pycode import LAYER_EMITTERS, python_source
from cnnlab.layers import (
    ELU,
    GELU,
    LAYER_TYPES,
    LRN,
    RBF,
    AdaptiveAvgPool,
    AdaptiveMaxPool,
    AvgPool,
    BatchNorm,
    ChannelPad,
    Conv,
    ConvTranspose,
    Crop,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    GroupNorm,
    Hardsigmoid,
    Hardswish,
    Layer,
    LayerNorm,
    LeakyReLU,
    LogSoftmax,
    MaxPool,
    Mish,
    Normalize,
    PartialConv,
    PReLU,
    ReLU,
    ReLU6,
    Reshape,
    Scale,
    ScaledTanh,
    Sigmoid,
    SiLU,
    Softmax,
    Subsample,
    Tanh,
    Upsample,
    ZeroPad,
)
from cnnlab.models import load_model
from cnnlab.network import Graph, Network, Residual, iter_leaves
from cnnlab.torch_backend import build
from cnnlab.trace import trace
from test_export import cli, load_file, top_class, without_cnnlab

# --------------------------------------------------------------------------- every layer type

# One instance of each layer type with its non-default settings, and the input it is tried on.
SAMPLES: dict[type[Layer], tuple[Layer, tuple[int, ...]]] = {
    Crop: (Crop(crop=(1, 0, 2, 1)), (3, 6, 7)),
    Reshape: (Reshape(shape=(4, 2, 3), channels_last=True), (24,)),  # a Keras (H, W, C) layout
    Conv: (Conv(filters=4, kernel=3, stride=2, padding=(0, 1, 1, 0), groups=2, bias=False), (4, 7, 7)),
    PartialConv: (PartialConv(filters=3, table=((0, 1), (1, 2), (0, 1, 2)), kernel=3), (3, 6, 6)),
    MaxPool: (MaxPool(kernel=3, stride=2, padding="same"), (3, 8, 8)),
    AvgPool: (AvgPool(kernel=3, stride=1, padding=1, count_include_pad=False), (3, 6, 6)),
    Subsample: (Subsample(kernel=2), (3, 6, 6)),
    ZeroPad: (ZeroPad(padding=(1, 2, 0, 3)), (2, 4, 4)),
    ChannelPad: (ChannelPad(channels=6, stride=2), (2, 5, 5)),
    AdaptiveAvgPool: (AdaptiveAvgPool(output=(2, 3)), (3, 7, 7)),
    AdaptiveMaxPool: (AdaptiveMaxPool(output=2), (3, 7, 7)),
    GlobalAvgPool: (GlobalAvgPool(), (3, 4, 4)),
    Flatten: (Flatten(start_dim=2), (3, 4, 5)),
    Dense: (Dense(units=5, bias=False), (7,)),
    RBF: (RBF(units=4), (6,)),
    BatchNorm: (BatchNorm(eps=1e-3, momentum=0.3, affine=False), (3, 4, 4)),
    LRN: (LRN(size=3, alpha=2e-4, beta=0.5, k=1.5), (5, 4, 4)),
    Dropout: (Dropout(p=0.25), (3, 4, 4)),
    ReLU: (ReLU(), (3, 4, 4)),
    Tanh: (Tanh(), (3, 4, 4)),
    Sigmoid: (Sigmoid(), (3, 4, 4)),
    ScaledTanh: (ScaledTanh(a=1.5, s=0.5), (3, 4, 4)),
    Softmax: (Softmax(), (6,)),
    LogSoftmax: (LogSoftmax(), (3, 4, 5)),  # over the channels of a map
    SiLU: (SiLU(), (3, 4, 4)),
    Hardswish: (Hardswish(), (3, 4, 4)),
    Hardsigmoid: (Hardsigmoid(), (3, 4, 4)),
    ReLU6: (ReLU6(), (3, 4, 4)),
    Mish: (Mish(), (3, 4, 4)),
    GELU: (GELU(approximate="tanh"), (3, 4, 4)),
    LeakyReLU: (LeakyReLU(slope=0.2), (3, 4, 4)),
    ELU: (ELU(alpha=0.5), (3, 4, 4)),
    PReLU: (PReLU(init=0.1), (3, 4, 4)),
    Scale: (Scale(mul=1 / 6, add=0.5), (3, 4, 4)),
    Normalize: (Normalize(mean=(0.5, -1.0, 2.0), variance=(4.0, 0.25, 1.0), eps=1e-3, invert=True), (3, 4, 4)),
    LayerNorm: (LayerNorm(shape=(4, 5), eps=1e-6, bias=False), (3, 4, 5)),
    GroupNorm: (GroupNorm(groups=2, eps=1e-4), (6, 3, 3)),
    ConvTranspose: (ConvTranspose(filters=4, kernel=3, stride=2, padding=1, output_padding=1, groups=2), (2, 4, 4)),
    Upsample: (Upsample(scale=(2.0, 1.5), mode="bilinear", align_corners=True), (3, 4, 4)),
}


def test_every_layer_type_has_an_emitter() -> None:
    """A layer type added to LAYER_TYPES without an emitter (or a sample here) fails this test."""
    assert set(SAMPLES) == set(LAYER_TYPES.values())
    missing = sorted(cls.__name__ for cls in LAYER_TYPES.values() if cls not in LAYER_EMITTERS)
    assert missing == []


def _helper_namespace() -> dict[str, Any]:
    ns: dict[str, Any] = {"torch": torch, "nn": nn, "F": F}
    for name in with_dependencies(set(HELPERS)):
        exec(HELPERS[name][0], ns)  # noqa: S102 - the generator's own helper sources
    return ns


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.__name__)
def test_each_emitted_layer_computes_what_the_built_one_does(cls: type[Layer]) -> None:
    """The constructor expression the export writes takes the built layer's state_dict with
    strict=True and gives its output (training mode for the batch-statistics layers)."""
    layer, shape = SAMPLES[cls]
    expr, helpers = LAYER_EMITTERS[cls](layer, shape)
    assert set(helpers) <= set(HELPERS)
    torch.manual_seed(0)
    built = layer.build(shape)
    for name, buf in built.named_buffers():
        if name.endswith("running_var"):
            buf.uniform_(0.5, 2.0)  # statistics that are not the identity
        elif name.endswith("running_mean"):
            buf.normal_()
    mod = eval(expr, _helper_namespace())  # noqa: S307 - the generator's own expression
    mod.load_state_dict(built.state_dict(), strict=True)
    x = torch.randn(3, *shape)
    with torch.no_grad():
        for train in (False, True):
            torch.manual_seed(1)
            want = built.train(train)(x.clone())
            torch.manual_seed(1)
            got = mod.train(train)(x.clone())
            assert got.shape == want.shape == (3, *layer.figures(shape).out)
            assert (got - want).abs().max().item() <= 1e-6, expr


def test_emitted_layers_spell_out_their_settings() -> None:
    def expr(cls: type[Layer]) -> str:
        layer, shape = SAMPLES[cls]
        return LAYER_EMITTERS[cls](layer, shape)[0]

    assert expr(BatchNorm) == "nn.BatchNorm2d(3, eps=0.001, momentum=0.3, affine=False)"
    assert expr(Flatten) == "nn.Flatten(2)"
    assert expr(LayerNorm) == "nn.LayerNorm([4, 5], eps=1e-06, bias=False)"
    assert expr(GroupNorm) == "nn.GroupNorm(2, 6, eps=0.0001)"
    assert expr(ConvTranspose) == "nn.ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2)"
    assert expr(Upsample) == "nn.Upsample(scale_factor=(2.0, 1.5), mode='bilinear', align_corners=True)"
    assert expr(GELU) == "nn.GELU(approximate='tanh')" and expr(LeakyReLU) == "nn.LeakyReLU(0.2)"
    assert expr(ELU) == "nn.ELU(0.5)" and expr(ReLU6) == "nn.ReLU6()" and expr(SiLU) == "nn.SiLU()"
    assert expr(Scale) == "ScaleShift(0.16666666666666666, 0.5)"
    assert expr(PReLU) == "nn.PReLU(3, init=0.1)"
    assert LAYER_EMITTERS[PReLU](PReLU(shared=True), (3, 4, 4))[0] == "nn.PReLU()"
    assert LAYER_EMITTERS[Flatten](Flatten(), (3, 4, 4))[0] == "nn.Flatten()"


# --------------------------------------------------------------------------- lifted modules


class DenseBlock(nn.Module):
    """DenseNet's block (Huang et al. 2017): each layer reads the concatenation of all before it."""

    def __init__(self, c: int = 4, growth: int = 3, n: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(c + i * growth), nn.ReLU(), nn.Conv2d(c + i * growth, growth, 3, padding=1))
            for i in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats, 1)


class SEBlock(nn.Module):
    """Squeeze-excitation as in MobileNet v3: SiLU features scaled by a hard-sigmoid gate."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.SiLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(8, 4, 1)
        self.fc2 = nn.Conv2d(4, 8, 1)
        self.gate = nn.Hardsigmoid()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv(x))
        s = self.gate(self.fc2(F.relu(self.fc1(self.pool(x)))))
        return self.head(x * s)


class InvertedResidual(nn.Module):
    """MobileNet v2's block (Sandler et al. 2018): expand, depthwise, project; ReLU6; identity sum."""

    def __init__(self, c: int = 6, t: int = 4) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(c, c * t, 1, bias=False), nn.BatchNorm2d(c * t), nn.ReLU6(),
            nn.Conv2d(c * t, c * t, 3, padding=1, groups=c * t, bias=False), nn.BatchNorm2d(c * t), nn.ReLU6(),
            nn.Conv2d(c * t, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class TokenBlock(nn.Module):
    """Patch tokens normalized by LayerNorm over flatten(2), after a GroupNorm'd convolution, with
    the other activations and constant arithmetic on the way."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.gn = nn.GroupNorm(4, 8)
        self.act = nn.Mish()
        self.norm = nn.LayerNorm(16, eps=1e-6)
        self.gelu = nn.GELU(approximate="tanh")
        self.fc = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.act(self.gn(self.conv(x))), 0.2)
        t = self.norm(y.flatten(2))
        t = F.elu(self.gelu(t) / 6 + 1.0, 0.5)
        return self.fc(t.flatten(1))


class Decoder(nn.Module):
    """Upsampling paths joined by a channel concatenation: a transposed convolution and a resize."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)
        self.resize = nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False)
        self.mix = nn.Conv2d(7, 2, 1)
        self.act = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.mix(torch.cat([self.up(x), self.resize(x)], 1)))


class PlainBN(nn.Module):
    """Batch normalization without gamma and beta."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4, affine=False)
        self.bn2 = nn.BatchNorm2d(4, momentum=0.2, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.bn2(self.bn(self.conv(x))))


LIFTED: dict[str, tuple[type[nn.Module], tuple[int, int, int]]] = {
    "dense": (DenseBlock, (4, 8, 8)), "se": (SEBlock, (3, 8, 8)), "inverted": (InvertedResidual, (6, 8, 8)),
    "tokens": (TokenBlock, (3, 8, 8)), "decoder": (Decoder, (4, 5, 5)), "plain_bn": (PlainBN, (3, 6, 6)),
}


def lifted(key: str) -> tuple[Network, tuple[int, int, int]]:
    cls, shape = LIFTED[key]
    torch.manual_seed(0)
    return trace(cls().eval(), shape, key), shape


def built(net: Network, shape: tuple[int, ...]) -> nn.Module:
    """cnnlab's module for ``net`` with norm parameters and running statistics away from their
    initial identity, so a misplaced one shows in the outputs."""
    torch.manual_seed(0)
    model = build(net, shape)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
                if m.weight is not None:
                    m.weight.uniform_(0.5, 1.5)
                if m.bias is not None:
                    m.bias.normal_(0, 0.1)
        for name, buf in model.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                buf.normal_()
    return model.eval()


def test_the_lifted_modules_hold_the_kinds_they_are_here_for() -> None:
    kinds = {key: {type(n) for n in lifted(key)[0].layers} for key in LIFTED}
    assert Graph in kinds["dense"] and Graph in kinds["se"] and Residual in kinds["inverted"]
    dense = next(n for n in lifted("dense")[0].layers if isinstance(n, Graph))
    assert [m.op for m in dense.merges] == ["concat"] * 4 and len(dense.nodes) == 12  # each layer once
    se = next(n for n in lifted("se")[0].layers if isinstance(n, Graph))
    assert [m.op for m in se.merges] == ["mul"]
    types = {type(layer) for key in LIFTED for _, layer in iter_leaves(lifted(key)[0].layers)}
    assert {SiLU, Hardsigmoid, ReLU6, LayerNorm, GroupNorm, ConvTranspose, Upsample, Mish, GELU, LeakyReLU, ELU,
            Scale, Hardswish, Flatten} <= types
    plain = [layer for _, layer in iter_leaves(lifted("plain_bn")[0].layers) if isinstance(layer, BatchNorm)]
    assert [b.affine for b in plain] == [False, True]


def test_graphs_read_as_straight_line_code() -> None:
    src = python_source(lifted("dense")[0])
    assert "concat1 = torch.cat([x, layers_0_2], 1)" in src
    assert "return torch.cat([x, layers_0_2, layers_1_2, layers_2_2, layers_3_2], 1)" in src
    assert src.count("self.layers_3_2 = nn.Conv2d(13, 3, 3, padding=1)") == 1
    src = python_source(lifted("se")[0])
    assert "gate = self.gate(fc2)\n        return x * gate" in src
    assert "self.gate = nn.Hardsigmoid()" in src and "self.act = nn.SiLU()" in src
    src = python_source(lifted("tokens")[0])
    assert "nn.LayerNorm([16], eps=1e-06)" in src and "nn.Flatten(2)" in src and "ScaleShift(" in src


def test_lifted_modules_export_and_match_without_cnnlab(tmp_path: Path) -> None:
    """Each generated file imports where cnnlab cannot, takes the built module's weights with
    strict=True and gives its eval-mode outputs within 1e-5."""
    cases = {}
    for key in LIFTED:
        net, shape = lifted(key)
        source = python_source(net)
        assert "cnnlab" not in source.split('"""', 2)[2]
        (tmp_path / f"{key}.py").write_text(source)
        model = built(net, shape)
        x = torch.randn(4, *shape)
        with torch.no_grad():
            y = model(x)
        assert y.isfinite().all() and y.abs().max().item() > 0.01
        torch.save({"state": model.state_dict(), "x": x, "y": y}, tmp_path / f"{key}.io")
        cases[key] = top_class(source)
    child = without_cnnlab(
        "import importlib.util, json, sys, torch\n"
        f"cases = json.loads({json.dumps(cases)!r})\n"
        "for key, cls in cases.items():\n"
        "    spec = importlib.util.spec_from_file_location(key, key + '.py')\n"
        "    mod = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(mod)\n"
        "    io = torch.load(key + '.io')\n"
        "    m = getattr(mod, cls)().eval()\n"
        "    m.load_state_dict(io['state'], strict=True)\n"
        "    with torch.no_grad():\n"
        "        y = m(io['x'])\n"
        "    print(key, tuple(y.shape) == tuple(io['y'].shape), (y - io['y']).abs().max().item())\n"
        "print('cnnlab' in sys.modules and sys.modules['cnnlab'] is not None)\n", tmp_path)
    assert child.returncode == 0, child.stderr[-2000:]
    lines = child.stdout.split("\n")
    assert lines[-2] == "False"
    got = {k: (same, float(diff)) for k, same, diff in (ln.split() for ln in lines[:-2])}
    assert sorted(got) == sorted(LIFTED)
    for key, (same, diff) in got.items():
        assert same == "True" and diff <= 1e-5, (key, diff)


# --------------------------------------------------------------------------- onnx, torchscript, command line


def test_se_graph_through_onnx_matches_onnxruntime(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    from cnnlab.export.formats import to_onnx

    net, shape = lifted("se")
    model = built(net, shape)
    to_onnx(model, shape, tmp_path / "se.onnx")
    onnx.checker.check_model(onnx.load(str(tmp_path / "se.onnx")))
    session = ort.InferenceSession(str(tmp_path / "se.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(3, *shape)
    with torch.no_grad():
        want = model(x).numpy()
    got = session.run(None, {"input": x.numpy()})[0]
    assert got.shape == want.shape == (3, 5)
    assert np.abs(got - want).max() <= 1e-4


SE_FILE = '''
import torch
import torch.nn.functional as F
from torch import nn


class SEBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1 = nn.Conv2d(8, 4, 1)
        self.fc2 = nn.Conv2d(4, 8, 1)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = F.silu(self.conv(x))
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return self.head((x * s).mean((2, 3)))
'''


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "pytorch"])
def test_a_lifted_dag_exports_from_the_command_line(fmt: str, capsys, tmp_path: Path) -> None:
    """``cnnlab export file.py:NAME`` on a squeeze-excitation DAG. The command builds fresh weights;
    seeded alike, load_model and build here make the same ones to compare against."""
    (tmp_path / "se.py").write_text(SE_FILE)
    ref, shape = f"{tmp_path / 'se.py'}:SEBlock", (3, 8, 8)
    out = tmp_path / ("exported." + {"onnx": "onnx", "torchscript": "pt", "pytorch": "py"}[fmt])
    torch.manual_seed(0)
    rc, text, err = cli(capsys, "export", ref, "--input", "3x8x8", "--format", fmt, "--out", out)
    assert rc == 0 and "Traceback" not in err, err  # torch may warn that torch.jit is deprecated
    assert out.is_file() and out.name in text
    torch.manual_seed(0)
    net = load_model(ref, input_shape=shape)
    model = build(net, shape).eval()
    assert any(isinstance(n, Graph) for n in net.layers)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        want = model(x)
        if fmt == "pytorch":  # the file holds no weights: it takes cnnlab's
            assert "return x * " in out.read_text()
            mod = getattr(load_file(out), top_class(out.read_text()))().eval()
            mod.load_state_dict(model.state_dict(), strict=True)
            got = mod(x)
        elif fmt == "torchscript":
            got = torch.jit.load(str(out))(x)
        else:
            import onnxruntime as ort

            session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
            got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    assert got.shape == want.shape == (2, 5)
    assert (got - want).abs().max().item() <= (1e-4 if fmt == "onnx" else 1e-5)
