"""Shared weights in the description: a layer that calls an earlier layer's module again
(``shares``) gets its own row (shapes, MACs, receptive field) but no parameters of its own, so
totals, the conv-vs-dense split and memory count the weights once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.adapt import diagnose
from cnnlab.adapt.edits import apply
from cnnlab.analysis import analyze
from cnnlab.cli import main
from cnnlab.errors import CnnlabError, ShapeError
from cnnlab.export.pycode import class_name, python_source
from cnnlab.layers import Conv
from cnnlab.measure import analyze_module
from cnnlab.models import load_model
from cnnlab.network import Network, iter_leaves, load_spec, network_from_spec, network_to_spec, save_spec
from cnnlab.torch_backend import build
from cnnlab.trace import trace
from cnnlab.usermodule import load_module

CONV = {"type": "Conv", "filters": 8, "kernel": 3, "padding": 1}
# One 3x3 conv, 8 -> 8 channels, run twice on an 8x8 map: 8*8*9 + 8 = 584 params (once),
# 3*3*8 * 8 * 8*8 = 36,864 MACs per call.
TWICE = {"name": "twice", "input": [8, 8, 8],
         "layers": [{**CONV, "name": "a"}, {"type": "ReLU", "name": "relu"}, {**CONV, "name": "b", "shares": "a"}]}


def _with_b(**changes: object) -> dict:
    return {**TWICE, "layers": [*TWICE["layers"][:2], {**TWICE["layers"][2], **changes}]}


def test_a_shared_conv_has_a_row_per_call_and_its_params_once() -> None:
    a = analyze(network_from_spec(TWICE))
    assert [(ly.name, ly.params, ly.macs) for ly in a.layers] == [("a", 584, 36_864), ("relu", 0, 0),
                                                                  ("b", 0, 36_864)]
    assert a.totals["params"] == 584 and a.totals["macs"] == 2 * 36_864
    assert a.split["conv"] == {"params": 584, "macs": 2 * 36_864}
    assert a.memory["param_bytes"] == 584 * 4
    # the second call sees 3 + 2 = 5 input pixels per axis, with its own output and activations
    assert a.layer("b").rf == ((5, 1), (5, 1)) and a.layer("b").output_shape == (8, 8, 8)
    assert a.layer("b").notes[0] == "shares weights with a: its 584 params are counted there, once"
    assert a.layer("b").to_dict()["shares"] == "a" and "shares" not in a.layer("a").to_dict()


def test_a_block_counts_the_shared_weights_once() -> None:
    spec = {"input": [8, 8, 8], "layers": [{"type": "Sequential", "name": "block", "layers": TWICE["layers"][:2]},
                                           {**CONV, "name": "again", "shares": "block.a"}]}
    a = analyze(network_from_spec(spec))
    assert a.blocks["block"].params == 584 and a.totals["params"] == 584
    assert a.layer("again").params == 0 and a.layer("again").macs == 36_864


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_sharing_survives_a_round_trip(tmp_path: Path, suffix: str) -> None:
    net = network_from_spec(TWICE)
    save_spec(net, tmp_path / f"twice{suffix}")
    assert "shares" in (tmp_path / f"twice{suffix}").read_text()
    back = load_spec(tmp_path / f"twice{suffix}")
    assert back.layers == net.layers and back.layers[2].shares == "a"
    assert network_to_spec(back)["layers"][2]["shares"] == "a"
    assert "shares" not in network_to_spec(back)["layers"][0]


@pytest.mark.parametrize(("changes", "words"), [
    ({"shares": "c"}, "layer 'b' shares weights with 'c', but no layer of that path runs before it"),
    ({"shares": "b"}, "layer 'b' shares weights with 'b', but no layer of that path runs before it"),
    ({"filters": 16}, "layer 'b' shares weights with 'a' but its filters is 16 where 'a' has 8"),
    ({"type": "MaxPool", "kernel": 2, "filters": None}, "layer 'b' (MaxPool) shares weights with 'a', a Conv"),
    ({"shares": 3}, "layer 'b' (Conv): shares must be a string, got 3"),
])
def test_a_bad_share_is_refused_on_reading(changes: dict, words: str) -> None:
    layer = {k: v for k, v in {**TWICE["layers"][2], **changes}.items() if v is not None}
    with pytest.raises(CnnlabError) as e:
        network_from_spec({**TWICE, "layers": [*TWICE["layers"][:2], layer]})
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_later_target_is_refused() -> None:
    spec = {**TWICE, "layers": [{**CONV, "name": "b", "shares": "a"}, {**CONV, "name": "a"}]}
    with pytest.raises(CnnlabError, match="layer 'b' shares weights with 'a', but no layer of that path runs before"):
        network_from_spec(spec)


def test_a_share_whose_weights_would_differ_in_shape_is_refused_by_the_analysis() -> None:
    # b reads the 16 channels of c: its weights would be 3*3*16*8, a's are 3*3*8*8
    spec = {**TWICE, "layers": [{**CONV, "name": "a"}, {**CONV, "name": "c", "filters": 16},
                                {**CONV, "name": "b", "shares": "a"}]}
    with pytest.raises(ShapeError) as e:
        analyze(network_from_spec(spec))
    assert str(e.value) == ("layer 'b' shares weights with 'a' but reads 16x8x8 where 'a' reads 8x8x8, so its weights "
                            "would have other shapes; share only between layers that read as many channels")


def test_a_bad_share_on_the_command_line_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps(_with_b(shares="nowhere")))
    assert main(["summary", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert "shares weights with 'nowhere'" in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_the_summary_notes_where_the_weights_are_counted(tmp_path: Path, capsys) -> None:
    (tmp_path / "twice.json").write_text(json.dumps(TWICE))
    assert main(["summary", str(tmp_path / "twice.json")]) == 0
    out = capsys.readouterr().out
    assert "Note: b shares weights with a: its params are counted there, once" in out
    assert "Params 584 (584)" in out


# --------------------------------------------------------------------------- the built and the exported module


def test_the_built_module_holds_the_weights_once_and_both_calls_train_them() -> None:
    net = network_from_spec(TWICE)
    model = build(net)
    assert sum(p.numel() for p in model.parameters()) == 584
    assert list(model.state_dict()) == ["a.weight", "a.bias"]
    # the same network written with two separate convs holding equal weights: the shared weight's
    # gradient is the sum of the two convs' gradients (one per call)
    two = build(network_from_spec({**TWICE, "layers": TWICE["layers"][:2] + [{**CONV, "name": "b"}]}))
    two.load_state_dict({**model.state_dict(), "b.weight": model.a.weight.detach(), "b.bias": model.a.bias.detach()})
    x = torch.randn(2, 8, 8, 8)
    model(x).square().sum().backward()
    two(x).square().sum().backward()
    assert torch.allclose(model.a.weight.grad, two.a.weight.grad + two.b.weight.grad, atol=1e-4)
    before = model.a.weight.detach().clone()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(model.a.weight, before) and model.b.owner is model.a


def test_the_measured_built_module_has_the_description_s_rows() -> None:
    net = network_from_spec(TWICE)
    measured = analyze_module(build(net), (8, 8, 8))
    described = analyze(net)
    assert [(ly.name, ly.params, ly.macs) for ly in measured.layers] == \
        [(ly.name, ly.params, ly.macs) for ly in described.layers]


def test_the_exported_source_shares_as_the_built_module_does() -> None:
    net = network_from_spec(TWICE)
    source = python_source(net)
    assert "self.b = Shared('a')" in source and "tie_shared(self)" in source
    namespace: dict = {}
    exec(compile(source, "twice.py", "exec"), namespace)
    model, exported = build(net).eval(), namespace["Twice"]().eval()
    exported.load_state_dict(model.state_dict(), strict=True)
    assert list(exported.state_dict()) == ["a.weight", "a.bias"]
    assert sum(p.numel() for p in exported.parameters()) == 584
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        assert torch.allclose(exported(x), model(x), atol=1e-6)


# --------------------------------------------------------------------------- lifted modules

TWICE_FILE = '''
import torch
from torch import nn


class Twice(nn.Module):
    """One conv applied twice in sequence."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.conv(torch.relu(self.conv(x)))
'''


class Branches(nn.Module):
    """One conv on two branches merged by add. With ``pooled_first`` forward runs it on the pooled
    branch first, which the description places second (a residual's shortcut runs after its body)."""

    def __init__(self, pooled_first: bool) -> None:
        super().__init__()
        self.conv, self.pool, self.pooled_first = nn.Conv2d(8, 8, 3, padding=1), nn.MaxPool2d(3, 1, 1), pooled_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooled_first:
            y = self.conv(self.pool(x))
            return self.conv(x) + y
        return self.conv(x) + self.conv(self.pool(x))


def _lifted_matches(module: nn.Module, net: Network) -> None:
    """The description counts what the module holds and runs (584 params once, 2 * 36,864 MACs; the
    pooling and the sum add none); the built and the exported module compute what the module does."""
    shape = (8, 8, 8)
    described, measured = analyze(net), analyze_module(module, shape)
    assert (described.totals["params"], described.totals["macs"], described.output_shape) == \
        (measured.totals["params"], measured.totals["macs"], measured.output_shape) == (584, 73_728, shape)
    built = build(net).eval()
    assert sum(p.numel() for p in built.parameters()) == 584
    assert len(built.state_dict()) == 2  # one conv: weight and bias
    mine = module.state_dict()
    built.load_state_dict({k: mine["conv." + k.rpartition(".")[2]] for k in built.state_dict()}, strict=True)
    namespace: dict = {}
    exec(compile(python_source(net), "lifted.py", "exec"), namespace)
    exported = namespace[class_name(net.name)]().eval()
    exported.load_state_dict(built.state_dict(), strict=True)
    assert sum(p.numel() for p in exported.parameters()) == 584
    x = torch.randn(2, *shape)
    with torch.no_grad():
        want = module.eval()(x)
        assert torch.allclose(built(x), want, atol=1e-5) and torch.allclose(exported(x), want, atol=1e-5)


def test_a_conv_applied_twice_lifts_from_a_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "twice.py").write_text(TWICE_FILE)
    ref = f"{tmp_path / 'twice.py'}:Twice"
    net = load_model(ref, input_shape=(8, 8, 8))
    assert [(ly.name, ly.shares) for _, ly in iter_leaves(net.layers)] == [("conv", ""), ("relu1", ""),
                                                                          ("conv_2", "conv")]
    _lifted_matches(load_module(ref), net)
    assert main(["summary", ref, "--input", "8x8x8", "--save", str(tmp_path / "twice.yaml")]) == 0
    out = capsys.readouterr().out
    assert "described" in out and "Note: conv_2 shares weights with conv" in out and "Params 584 (584)" in out
    assert load_spec(tmp_path / "twice.yaml").layers == net.layers


@pytest.mark.parametrize("pooled_first", [False, True])
def test_a_conv_shared_by_two_branches_lifts(pooled_first: bool) -> None:
    module = Branches(pooled_first)
    net = trace(module, (8, 8, 8))
    convs = [(path, ly.shares) for path, ly in iter_leaves(net.layers) if isinstance(ly, Conv)]
    # the body (the unpooled branch) runs first in the description: it holds the weights
    first = "residual1.conv_2" if pooled_first else "residual1.conv"
    assert convs[0] == (first, "") and convs[1][1] == first
    _lifted_matches(module, net)


def test_a_block_applied_three_times_shares_each_of_its_layers() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.bn(self.conv(x)))

    class Loop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Block()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for _ in range(3):
                x = self.block(x)
            return x

    module = Loop()
    a = analyze(trace(module, (8, 8, 8)))
    # 584 (conv) + 16 (BatchNorm's gamma and beta) once; the conv's 36,864 MACs three times
    assert [ly.params for ly in a.layers] == [584, 16, 0] + [0, 0, 0] * 2
    assert [ly.shares for ly in a.layers if ly.shares] == ["block_conv", "block_bn"] * 2
    assert (a.totals["params"], a.totals["buffers"], a.totals["macs"]) == (600, 16, 3 * 36_864)
    measured = analyze_module(module, (8, 8, 8))
    assert (measured.totals["params"], measured.totals["buffers"], measured.totals["macs"]) == (600, 16, 3 * 36_864)


def test_adapt_changes_a_shared_module_at_every_call() -> None:
    """At 8x4x4 two unpadded 3x3 convs leave nothing (4 -> 2 -> 0): a fix that pads the first conv
    pads the second too (one module), and every fix still analyses."""
    spec = {"name": "s", "input": [8, 16, 16],
            "layers": [{"type": "Conv", "name": "a", "filters": 8}, {"type": "ReLU", "name": "r"},
                       {"type": "Conv", "name": "b", "shares": "a", "filters": 8}, {"type": "Flatten", "name": "f"},
                       {"type": "Dense", "name": "fc", "units": 4}]}
    net = network_from_spec(spec)
    report = diagnose(net, (8, 4, 4), num_classes=10)
    padded = [f for f in report.fixes if any(e.op == "set" and e.path == "a" for e in f.edits)
              and all(e.op != "insert" for e in f.edits)]
    assert padded and report.fixes
    for fix in report.fixes:
        adapted = apply(net, fix)
        analyze(adapted)
        a, b = adapted.layers[0], adapted.layers[2]
        assert b.shares == "a" and b.padding == a.padding
    a = analyze(apply(net, padded[0]))
    # padding (0, 1) per axis: 4 + 1 - 3 + 1 = 3, then 3 + 1 - 3 + 1 = 2; the head reads 8*2*2 = 32
    assert a.output_shape == (10,) and a.layer("b").output_shape == (8, 2, 2)
    assert a.totals["params"] == 584 + 32 * 10 + 10
