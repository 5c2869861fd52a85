"""Export: PyTorch source for every zoo model, ONNX and TorchScript files that run without cnnlab,
checkpoints with their trained weights, one-line refusals and atomic files."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.export import export_model
from cnnlab.export.formats import ONNX_OPSET, to_onnx, to_torchscript
from cnnlab.export.pycode import EMITTERS, python_source, register_emitter
from cnnlab.layers import AvgPool, BatchNorm, Conv, Dense, Dropout, Flatten, GlobalAvgPool, Layer, MaxPool, ReLU
from cnnlab.network import KINDS, Kind, Network, Part, aux, concat, residual, seq
from cnnlab.torch_backend import build
from cnnlab.train import Recipe, Trainer
from test_train import pattern_set, quiet, tiny_net

# Run first in a child interpreter: `import cnnlab` then fails, whatever sys.path holds.
NO_CNNLAB = ("import sys\nsys.modules['cnnlab'] = None\n"
             "try:\n    import cnnlab\nexcept ImportError:\n    pass\nelse:\n    sys.exit('cnnlab is importable')\n")


def without_cnnlab(code: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", NO_CNNLAB + code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def load_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def top_class(source: str) -> str:
    return re.findall(r"^class (\w+)\(nn\.Module\)", source, re.M)[-1]


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _code(source: str) -> str:
    """The source without the lines that name the input size it was written for."""
    return "\n".join(ln for ln in source.splitlines() if not ln.startswith(("INPUT_SHAPE", "Built for")))


def small_input(net: Network) -> tuple[int, ...]:
    """The smallest square input at which the generated module is the same code as at the design
    input (so the same module and weights), else the design input."""
    design = _code(python_source(net))
    c, h, w = net.input_shape
    for s in (32, 48, 64, 96, 128, 160):
        if s >= min(h, w):
            break
        try:
            if _code(python_source(net, (c, s, s))) == design:
                return (c, s, s)
        except CnnlabError:
            continue
    return net.input_shape


# --------------------------------------------------------------------------- pytorch source


@pytest.mark.slow
def test_pytorch_source_for_every_zoo_model(tmp_path) -> None:
    """Every zoo model's generated file imports in a fresh interpreter without cnnlab (one child
    process imports them all), its module takes the weights of cnnlab's built module with
    ``strict=True``, and its outputs equal cnnlab's within 1e-5 (max abs difference) in training
    mode (batch statistics, auxiliary heads, the same dropout masks) and in eval mode (where the
    untrained running statistics keep it finite: not in the deepest ResNets).

    Outputs are compared at batch 2 at the smallest input (32..160 square) at which the generated
    code is identical to the design input's (global pooling makes most ImageNet models the same
    module at 32x32); models whose layers depend on the input size (a fixed-size map flattened into a
    dense layer: AlexNet, LeNet-5, the paper's GoogLeNet after its 7x7 average pool) are compared at
    their design input. This keeps all 59 models within a few
    minutes on two CPU cores."""
    torch.set_num_threads(1)
    names = cnnlab.list_models()
    assert len(names) >= 50
    files: dict[str, tuple[Path, tuple[int, ...]]] = {}
    for i, name in enumerate(names):
        net = cnnlab.load_model(name)
        path = tmp_path / f"m{i}.py"
        path.write_text(python_source(net))
        files[name] = (path, small_input(net))
    assert files["resnet50-tv"][1] == (3, 32, 32) and files["alexnet"][1] == (3, 227, 227)

    listing = json.dumps({n: str(p) for n, (p, _) in files.items()})
    child = without_cnnlab(
        "import importlib.util, json, re\n"
        f"files = json.loads({listing!r})\n"
        "for name, path in files.items():\n"
        "    spec = importlib.util.spec_from_file_location('m', path)\n"
        "    mod = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(mod)\n"
        "    assert 'cnnlab' not in open(path).read().split('\"\"\"', 2)[2], name\n"
        "    cls = re.findall(r'^class (\\w+)\\(nn\\.Module\\)', open(path).read(), re.M)[-1]\n"
        "    assert isinstance(getattr(mod, cls), type), name\n"
        "print(len(files), 'imported', sorted(m for m, v in sys.modules.items() if m.startswith('cnnlab') and v))\n",
        tmp_path)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.strip() == f"{len(names)} imported []"

    finite = 0
    for name, (path, shape) in files.items():
        torch.manual_seed(0)
        ref = build(cnnlab.load_model(name), shape)
        source = path.read_text()
        mod = getattr(load_file(path), top_class(source))()
        mod.load_state_dict(ref.state_dict(), strict=True)
        x = torch.randn(2, *shape)
        with torch.no_grad():
            for train in (True, False):
                torch.manual_seed(1)  # the same dropout masks: both run the same operations in the same order
                want = ref.train(train)(x)
                torch.manual_seed(1)
                got = mod.train(train)(x)
                want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
                if not train and not all(bool(w.isfinite().all()) for w in want):
                    continue  # untrained statistics: a very deep ResNet overflows in eval mode
                finite += not train
                assert len(got) == len(want) and all(bool(w.isfinite().all()) for w in want), name
                for g, w in zip(got, want):
                    assert g.shape == w.shape and (g - w).abs().max().item() <= 1e-5, name
        del ref, mod
    assert finite >= len(names) - 5


def test_generated_resnet_reads_like_torchvision(tmp_path) -> None:
    """Layers as attributes named as in the description, the residual sum spelled out, one class
    per distinct block."""
    src = python_source(cnnlab.load_model("resnet18-tv"))
    assert "import cnnlab" not in src and "from cnnlab" not in src
    assert "self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)" in src
    assert "self.fc = nn.Linear(512, 1000)" in src
    assert "downsample = self.downsample(x)\n        out2 = downsample + out\n        return self.relu2(out2)" in src
    assert "self.layer1 = nn.Sequential(\n            Residual1(),\n            Residual1(),\n        )" in src
    # layer1.0/1.1 share a class; layer2..4 each have a downsampling first block and a plain second one
    assert len(re.findall(r"^class Residual\d+\(nn\.Module\)", src, re.M)) == 7
    assert top_class(src) == "Resnet18Tv"


def _custom_net() -> Network:
    """Every composite kind: named and numbered children, an inline concat, a scaled residual with
    a projection shortcut and a post activation, and an auxiliary head inside a sequence."""
    block = residual("block", [Conv(name="0", filters=8, kernel=3, padding=1), BatchNorm(name="1")],
                     shortcut=Conv(name="proj", filters=8, kernel=1, bias=False), post=[ReLU(name="act")], scale=0.2)
    mixed = seq("mixed",
                concat("cat", Conv(filters=4, kernel=1), seq("b", Conv(name="reduce", filters=2, kernel=1),
                                                            Conv(name="conv", filters=4, kernel=3, padding="same")),
                       MaxPool(kernel=3, stride=1, padding=1), inline=True),
                Conv(name="mix", filters=8, kernel=1))
    side = aux("aux1", GlobalAvgPool(name="pool"), Dense(name="fc", units=3))
    stage = seq("stage", block, side, Conv(name="down", filters=8, kernel=3, stride=2, padding="same"))
    return Network("custom net", (Conv(name="stem", filters=6, kernel=3), mixed, stage,
                                  AvgPool(name="pool", kernel=3, stride=2, padding="same", count_include_pad=False),
                                  Flatten(name="flat"), Dropout(name="drop", p=0.1), Dense(name="fc", units=3)),
                   (3, 17, 17))


def test_every_composite_kind_in_eval_and_training(tmp_path) -> None:
    net = _custom_net()
    src = python_source(net)
    path = tmp_path / "custom.py"
    path.write_text(src)
    assert "torch.cat([branch1, b, branch2], 1)" in src
    assert "out2 = proj + out * 0.2" in src
    assert "self.add_module('0', nn.Conv2d(8, 8, 3, padding=1))" in src
    assert "if self.training:" in src and "aux.append(" in src
    mod = load_file(path).CustomNet()
    torch.manual_seed(0)
    ref = build(net)
    mod.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(4, 3, 17, 17)
    with torch.no_grad():
        assert (mod.eval()(x) - ref.eval()(x)).abs().max().item() <= 1e-5
        torch.manual_seed(1)
        want = ref.train()(x)
        torch.manual_seed(1)
        got = mod.train()(x)
    assert isinstance(got, tuple) and len(got) == len(want) == 2
    for g, w in zip(got, want):
        assert g.shape == w.shape and (g - w).abs().max().item() <= 1e-5


def test_training_form_drops_softmax_and_negates_rbf(tmp_path) -> None:
    """A checkpoint's module is the training form: the generated file follows it."""
    net = cnnlab.load_model("lenet5")
    torch.manual_seed(0)
    ref = build(net, logits=True).eval()
    path = tmp_path / "lenet5.py"
    path.write_text(python_source(net, logits=True))
    mod = load_file(path).Lenet5().eval()
    mod.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(mod(x), ref(x))
        assert (mod(x) <= 0).all()  # negated distances


USER_MODULE = """
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn(self.conv(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = Block(8)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x):
        return self.head(self.block(self.stem(x)))
"""


def test_an_imported_module_exports_from_the_command_line(capsys, tmp_path) -> None:
    (tmp_path / "mynet.py").write_text(USER_MODULE)
    ref = f"{tmp_path / 'mynet.py'}:Net"
    rc, out, err = cli(capsys, "export", ref, "--input", "3x16x16", "--out", tmp_path / "gen.py")
    assert rc == 0 and "gen.py: class Net(nn.Module)" in out, err
    src = (tmp_path / "gen.py").read_text()
    assert "return x + out" in src  # the traced residual sum, written out
    torch.manual_seed(0)
    built = build(cnnlab.load_model(ref, input_shape=(3, 16, 16))).eval()
    mod = load_file(tmp_path / "gen.py").Net().eval()
    mod.load_state_dict(built.state_dict(), strict=True)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert (mod(x) - built(x)).abs().max().item() <= 1e-6
    rc, _, err = cli(capsys, "export", ref, "--out", tmp_path / "gen2.py")
    assert rc == 2 and "needs --input" in err and err.count("\n") == 1


# --------------------------------------------------------------------------- kinds and layers


@dataclass(frozen=True)
class Twice:
    """A composite kind the tests register: its body applied two times."""

    name: str
    body: tuple


def test_unknown_kind_is_refused_in_one_line_and_an_emitter_makes_it_known(monkeypatch, tmp_path) -> None:
    """A new kind whose ``run`` uses a flow operation the analysis has (``repeat``) but the code
    flow lacks: refused, naming the node, until its emitter is registered."""
    from cnnlab import analysis

    node = Twice("twice", (Conv(name="conv", filters=3, kernel=3, padding=1),))
    net = Network("twice-net", (node, Flatten(name="flat")), (3, 6, 6))
    monkeypatch.setattr(analysis._Flow, "repeat", lambda f, nodes, x, k: f.chain(nodes * k, x), raising=False)
    monkeypatch.setitem(KINDS, Twice, Kind(lambda n: (Part("body", n.body),),
                                           lambda n, x, f: f.repeat(n.body, x, 2)))
    with pytest.raises(CnnlabError) as e:
        python_source(net)
    msg = str(e.value)
    assert "\n" not in msg and "'twice'" in msg and "flow.repeat" in msg and "register_emitter" in msg

    def twice(n: Twice, x, flow):
        return flow.chain(n.body, flow.chain(n.body, x))

    register_emitter(Twice, twice)
    try:
        src = python_source(net)
    finally:
        del EMITTERS[Twice]
    assert "conv = self.conv(x)\n        return self.conv(conv)" in src
    assert src.count("self.conv = nn.Conv2d(3, 3, 3, padding=1)") == 1


def test_unknown_layer_type_is_refused_in_one_line() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Mystery(Layer):
        pass

    net = Network("m", (Conv(name="c", filters=2, kernel=1), Mystery(name="odd")), (1, 4, 4))
    with pytest.raises(CnnlabError, match=r"layer 'odd' is a Mystery.*register_layer") as e:
        python_source(net)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- onnx


def _onnx_round_trip(name: str, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    net = cnnlab.load_model(name)
    torch.manual_seed(0)
    model = build(net).eval()
    out = tmp_path / f"{name}.onnx"
    done = to_onnx(model, net.input_shape, out)
    assert f"opset {ONNX_OPSET}" in done.notes[0] and out.is_file()
    assert not list(tmp_path.glob(".*.tmp"))
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version == ONNX_OPSET
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch axis
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 4):
        x = torch.randn(batch, *net.input_shape)
        with torch.no_grad():
            want = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == want.shape
        # float32 kernels differ in summation order: within 1e-4 of the output's scale
        assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max())), name


@pytest.mark.parametrize("name", ["lenet5-relu", "resnet18-tv"])
def test_onnx_matches_torch_at_batch_1_and_4(name, tmp_path) -> None:
    _onnx_round_trip(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["googlenet-tv", "inception-v3"])
def test_onnx_matches_torch_for_the_inception_models(name, tmp_path) -> None:
    """The torch.export-based exporter takes 15-60 s for these on two CPU cores."""
    _onnx_round_trip(name, tmp_path)


def test_onnx_from_the_command_line_states_the_opset(capsys, tmp_path) -> None:
    rc, out, err = cli(capsys, "export", "lenet5-relu", "--format", "onnx", "--out", tmp_path / "l.onnx")
    assert rc == 0, err
    assert f"ONNX opset {ONNX_OPSET}, dynamic batch axis" in out and "checked with onnx.checker" in out
    assert err == ""


def test_a_failed_check_keeps_the_old_file(monkeypatch, tmp_path, capsys) -> None:
    import onnx

    out = tmp_path / "l.onnx"
    out.write_text("old")

    def invalid(*a, **kw):
        raise onnx.checker.ValidationError("Nodes in a graph must be topologically sorted")

    monkeypatch.setattr(onnx.checker, "check_model", invalid)
    rc, _, err = cli(capsys, "export", "lenet5-relu", "--out", out)
    assert rc == 2 and err.count("\n") == 1 and "topologically sorted" in err
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["l.onnx"]


# --------------------------------------------------------------------------- torchscript and checkpoints


def test_torchscript_reloads_without_cnnlab(capsys, tmp_path) -> None:
    """LeNet-5's own layers (partial connections, subsampling, RBF) and a ResNet traced at --input."""
    cases = []
    for name, shape in (("lenet5", (1, 32, 32)), ("resnet18-tv", (3, 64, 64))):
        out = tmp_path / f"{name}.pt"
        args = ["--input", "x".join(map(str, shape))] if name == "resnet18-tv" else []
        rc, text, err = cli(capsys, "export", name, "--format", "torchscript", "--out", out, *args)
        assert rc == 0 and "torch.jit.load" in text, err
        cases.append((out, shape))
    for out, shape in cases:  # the same weights through cnnlab's trace, to compare against
        traced = torch.jit.load(str(out))
        x = torch.randn(3, *shape)
        with torch.no_grad():
            torch.save({"x": x, "y": traced(x)}, out.with_suffix(".io"))
    child = without_cnnlab(
        "import torch\n"
        f"for path in {[str(o) for o, _ in cases]!r}:\n"
        "    m = torch.jit.load(path)\n"
        "    io = torch.load(path[:-3] + '.io')\n"
        "    print((m(io['x']) - io['y']).abs().max().item())\n", tmp_path)
    assert child.returncode == 0, child.stderr[-2000:]
    assert [float(v) for v in child.stdout.split()] == [0.0, 0.0]


def test_torchscript_equals_the_built_module(tmp_path) -> None:
    net = cnnlab.load_model("lenet5")
    torch.manual_seed(0)
    model = build(net).eval()
    to_torchscript(model, net.input_shape, tmp_path / "l.pt")
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        assert (torch.jit.load(str(tmp_path / "l.pt"))(x) - model(x)).abs().max().item() <= 1e-6


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    Trainer(tiny_net(), pattern_set(64), pattern_set(32, seed=1),
            Recipe(optimizer="sgd", lr=0.05, batch_size=16, epochs=1), quiet(out=out, seed=5)).fit()
    return out / "last.pt"


def test_checkpoint_exports_its_trained_weights(trained, tmp_path, capsys) -> None:
    from cnnlab.train import checkpoint

    net, model, prep = checkpoint.load(trained).rebuild()
    fresh = build(net, logits=True).state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in model.state_dict().items())  # trained, not initial
    x = torch.rand(5, *prep.input_shape)
    with torch.no_grad():
        want = model(x)
    torch.save({"x": x, "y": want}, tmp_path / "io.pt")
    rc, out, err = cli(capsys, "export", trained, "--format", "pytorch", "--out", tmp_path / "tiny.py")
    assert rc == 0, err
    assert "tiny.pt: its weights" in out and "it returns logits" in out
    rc, out, err = cli(capsys, "export", trained, "--format", "torchscript", "--out", tmp_path / "tiny_ts.pt")
    assert rc == 0, err
    child = without_cnnlab(
        "import torch\n"
        "from tiny import Tiny\n"
        "m = Tiny().eval()\n"
        "m.load_state_dict(torch.load('tiny.pt', weights_only=True), strict=True)\n"
        "io = torch.load('io.pt')\n"
        "with torch.no_grad():\n"
        "    print((m(io['x']) - io['y']).abs().max().item())\n"
        "    print((torch.jit.load('tiny_ts.pt')(io['x']) - io['y']).abs().max().item())\n", tmp_path)
    assert child.returncode == 0, child.stderr[-2000:]
    assert [float(v) for v in child.stdout.split()] == [0.0, 0.0]


def test_checkpoint_refuses_model_options_and_a_mismatched_input(trained, tmp_path, capsys) -> None:
    rc, _, err = cli(capsys, "export", trained, "--num-classes", "3", "--out", tmp_path / "t.py")
    assert rc == 2 and "--num-classes does not apply to a checkpoint" in err and err.count("\n") == 1
    rc, _, err = cli(capsys, "export", trained, "--input", "1x20x20", "--out", tmp_path / "t.py")
    assert rc == 2 and "weights do not fit its network at --input 1x20x20" in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("argv, words", [
    (["lenet5-relu", "--format", "keras"], "invalid choice: 'keras'"),
    (["lenet5-relu", "--out", "{tmp}/missing/l.onnx"], "no directory"),
    (["lenet5-relu", "--out", "{tmp}/l.zip"], "give --format"),
    (["lenet5-relu", "--format", "pytorch", "--out", "{tmp}/l.txt"], "give a .py file name"),
    (["lenet5-relu", "--input", "1x4x4", "--out", "{tmp}/l.onnx"], "too small"),
    (["{tmp}/weights.pt", "--out", "{tmp}/l.onnx"], "not a valid cnnlab checkpoint"),
    (["{tmp}/absent.pt", "--out", "{tmp}/l.onnx"], "no checkpoint at"),
    (["no-such-model", "--out", "{tmp}/l.onnx"], "no-such-model"),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, tmp_path, capsys) -> None:
    torch.save({"conv.weight": torch.zeros(2, 1, 3, 3)}, tmp_path / "weights.pt")
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "l.onnx")]
    with pytest.raises(SystemExit) if "keras" in words else _no_exit() as e:
        rc = main(["export", *args])
    _, err = capsys.readouterr()
    code = e.value.code if "keras" in words else rc
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.pt"]


class _no_exit:
    value = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False


def test_export_model_is_on_the_front_door() -> None:
    assert cnnlab.export_model is export_model
    with pytest.raises(CnnlabError, match="unknown export format 'tflite'"):
        export_model("lenet5-relu", "tflite", "x.tflite")
