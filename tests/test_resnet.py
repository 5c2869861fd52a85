"""ResNet family: He et al. 2015 (ImageNet Table 1, CIFAR-10 Sec. 4.2 / Table 6), torchvision's
v1.5 layout, the pre-activation units of He et al. 2016, and the Keras CIFAR-10 example's
``resnet_v2``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cnnlab import zoo
from cnnlab.analysis import Analysis, analyze
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.network import Residual, Sequential
from verify import verify

DEPTHS = (18, 34, 50, 101, 152)
UNITS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3),
         200: (3, 24, 36, 3)}
# torchvision's model documentation, num_params. The stride placement does not change them, so the
# paper layout has the same counts.
IMAGENET_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
# Table 1 of the paper: "FLOPs" 1.8, 3.6, 3.8, 7.6, 11.3 x 10^9, which are multiply-adds.
TABLE1_GMACS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}
# torchvision's documented GFLOPS (also multiply-accumulates) for the v1.5 layout at 224x224.
TV_GMACS = {18: 1.81, 34: 3.66, 50: 4.09, 101: 7.8, 152: 11.51}


def _a(name: str, **kw: object) -> Analysis:
    return analyze(zoo.get(name, **kw))


def _params_of(a: Analysis, *types: str) -> int:
    return sum(ly.params for ly in a.layers if ly.type in types)


# --------------------------------------------------------------------------- ImageNet


@pytest.mark.parametrize("depth", DEPTHS)
def test_imagenet_exact_parameter_counts(depth: int) -> None:
    assert _a(f"resnet{depth}").totals["params"] == IMAGENET_PARAMS[depth]
    assert _a(f"resnet{depth}-tv").totals["params"] == IMAGENET_PARAMS[depth]


@pytest.mark.parametrize("depth", DEPTHS)
def test_paper_layout_macs_match_table1(depth: int) -> None:
    # Table 1 prints one decimal; our exact counts agree to within that last digit (1.814, 3.664,
    # 3.858, 7.570 and 11.282 x 10^9: the paper rounds ResNet-34 and -50 down).
    macs = _a(f"resnet{depth}").totals["macs"]
    assert abs(macs / 1e9 - TABLE1_GMACS[depth]) < 0.1


@pytest.mark.parametrize("depth", DEPTHS)
def test_torchvision_layout_macs_match_torchvision(depth: int) -> None:
    assert round(_a(f"resnet{depth}-tv").totals["macs"] / 1e9, 2) == TV_GMACS[depth]


@pytest.mark.parametrize("depth", DEPTHS)
def test_v15_moves_the_stride_into_the_3x3(depth: int) -> None:
    paper, tv = _a(f"resnet{depth}"), _a(f"resnet{depth}-tv")
    if depth < 50:  # basic units have no 1x1 conv: both layouts are the same network
        assert paper.totals["macs"] == tv.totals["macs"]
        return
    assert paper.layer("layer2.0.conv1").output_shape == (128, 28, 28)
    assert tv.layer("layer2.0.conv1").output_shape == (128, 56, 56)
    # The first 1x1 conv of stages 2-4 runs at twice the resolution: 4x the positions, 3x extra.
    extra = 3 * (256 * 128 * 28 * 28 + 512 * 256 * 14 * 14 + 1024 * 512 * 7 * 7)
    assert tv.totals["macs"] - paper.totals["macs"] == extra


def test_stage_shapes_follow_table1() -> None:
    a = _a("resnet50")
    assert a.layer("maxpool").output_shape == (64, 56, 56)
    outs = [a.blocks[f"layer{i}"].output_shape for i in range(1, 5)]
    assert outs == [(256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)]
    assert a.output_shape == (1000,)


def test_shortcut_options_a_b_c() -> None:
    b = _a("resnet34").totals["params"]
    # Option A: the three projections (1x1 conv + BN) where the shape changes become zero-padding.
    projections = sum(c * 2 * c + 2 * (2 * c) for c in (64, 128, 256))
    a = _a("resnet34", shortcut="A")
    assert a.totals["params"] == b - projections == 21_623_848
    assert a.layer("layer2.0.downsample").type == "ChannelPad" and a.layer("layer2.0.downsample").params == 0
    # Option C: every other unit gets a square projection too.
    square = sum(n * (c * c + 2 * c) for n, c in ((3, 64), (3, 128), (5, 256), (2, 512)))
    assert _a("resnet34", shortcut="C").totals["params"] == b + square


def _units(name: str) -> list[Residual]:
    return [u for node in zoo.get(name).layers if isinstance(node, Sequential)
            for u in node.children if isinstance(u, Residual)]


def _v2_bn_channels(depth: int) -> int:
    """Channels normalised by the pre-activation network: the stem's BatchNorm, then per unit one
    BatchNorm before each conv, except before the first conv of a stage's first unit, whose input
    went through the stage's shared BN-ReLU (stages 2-4) or the stem's (stage 1)."""
    bottleneck = depth >= 50
    cin, channels = 64, 64
    for i, (n, w) in enumerate(zip(UNITS[depth], (64, 128, 256, 512))):
        out = 4 * w if bottleneck else w
        channels += cin if i else 0  # the shared pre-activation of stages 2-4
        first = w + (w if bottleneck else 0)  # no BN-ReLU of its own: its input is pre-activated
        channels += first + (n - 1) * (out + first)
        cin = out
    return channels + cin  # the BN-ReLU after the last sum (Identity Mappings, Sec. 4.1)


def _conv_dense_params(depth: int) -> int:
    """Table 1 counted by hand: bias-free convs (7x7 stem; 3x3 pairs, or 1x1-3x3-1x1 bottlenecks
    four times wider at the output), a 1x1 projection where the shape changes (option B), and the
    1000-way classifier with biases."""
    bottleneck = depth >= 50
    total, cin = 7 * 7 * 3 * 64, 64
    for i, (n, w) in enumerate(zip(UNITS[depth], (64, 128, 256, 512))):
        out = 4 * w if bottleneck else w
        for u in range(n):
            c = cin if u == 0 else out
            total += c * w + 9 * w * w + w * out if bottleneck else 9 * c * w + 9 * w * out
        if i > 0 or cin != out:
            total += cin * out
        cin = out
    return total + cin * 1000 + 1000


@pytest.mark.parametrize("depth", (*DEPTHS, 200))
def test_preactivation_changes_only_the_batchnorms(depth: int) -> None:
    v2 = _a(f"resnet{depth}-v2")
    if depth in IMAGENET_PARAMS:  # same convolutions and classifier as the 2015 network
        v1 = _a(f"resnet{depth}")
        assert _params_of(v2, "Conv", "Dense") == _params_of(v1, "Conv", "Dense")
        assert v2.totals["macs"] == v1.totals["macs"]
    channels = _v2_bn_channels(depth)
    assert _params_of(v2, "BatchNorm") == 2 * channels
    assert _params_of(v2, "Conv", "Dense") + 2 * channels == v2.totals["params"]


# Pre-activation totals: the 2015 network's convolutions and classifier plus gamma and beta of the
# pre-activation BatchNorms. From torchvision's v1 counts: v1 - v1's BatchNorms (one after every
# conv, projections included) + v2's, e.g. ResNet-18: 11,689,512 - 2 * 4,800 + 2 * 3,904 = 11,687,720;
# ResNet-50: 25,557,032 - 2 * 26,560 + 2 * 22,720 = 25,549,352. ResNet-200 (no torchvision count):
# 64,497,832 conv and classifier weights + 2 * 84,160 = 64,666,152. The same totals come from
# summing numel() over the built torch modules' parameters.
V2_PARAMS = {18: 11_687_720, 34: 21_795_880, 50: 25_549_352, 101: 44_541_480, 152: 60_185_128, 200: 64_666_152}


@pytest.mark.parametrize("depth", (*DEPTHS, 200))
def test_preactivation_exact_parameter_counts(depth: int) -> None:
    assert _a(f"resnet{depth}-v2").totals["params"] == V2_PARAMS[depth]
    assert V2_PARAMS[depth] == _conv_dense_params(depth) + 2 * _v2_bn_channels(depth)
    if depth in IMAGENET_PARAMS:
        v1_bn = IMAGENET_PARAMS[depth] - _conv_dense_params(depth)
        assert V2_PARAMS[depth] == IMAGENET_PARAMS[depth] - v1_bn + 2 * _v2_bn_channels(depth)


def test_preactivation_keeps_the_shortcut_path_clean() -> None:
    assert all(u.post == () for u in _units("resnet50-v2"))  # nothing after the addition
    assert all(len(u.post) == 1 and u.post[0].name == "relu3" for u in _units("resnet50"))
    names = [ly.name for ly in _a("resnet50-v2").layers]
    assert names[-5:] == ["bn_final", "relu_final", "avgpool", "flatten", "fc"]
    assert "layer2.preact_bn" in names and "layer2.0.bn1" not in names and "layer2.1.bn1" in names


# --------------------------------------------------------------------------- CIFAR-10


def _cifar_params(n: int, projections: bool = False) -> int:
    """Sec. 4.2 counted by hand: 3x3 convs without biases, each followed by BatchNorm (gamma,
    beta), 16-32-64 filters, a 64 -> 10 classifier; option B adds 1x1 conv + BN projections."""
    convs = 9 * 3 * 16
    bns = 2 * 16
    cin = 16
    for w in (16, 32, 64):
        convs += 9 * (cin * w + w * w) + (n - 1) * 2 * 9 * w * w
        bns += n * 2 * 2 * w
        if projections and cin != w:
            convs += cin * w
            bns += 2 * w
        cin = w
    return convs + bns + 64 * 10 + 10


# Table 6: "# params" 0.27M, 0.46M, 0.66M, 0.85M, 1.7M, 19.4M.
TABLE6 = {20: (0.27, 2), 32: (0.46, 2), 44: (0.66, 2), 56: (0.85, 2), 110: (1.7, 1), 1202: (19.4, 1)}


@pytest.mark.parametrize("depth", TABLE6)
def test_cifar_parameter_counts(depth: int) -> None:
    params = _a(f"resnet{depth}").totals["params"]
    assert params == _cifar_params((depth - 2) // 6)
    millions, digits = TABLE6[depth]
    assert round(params / 1e6, digits) == millions


def test_cifar_exact_counts() -> None:
    # The same counts as independent PyTorch reimplementations of the CIFAR ResNets report.
    assert [_a(f"resnet{d}").totals["params"] for d in (20, 32, 44, 56, 110)] == [
        269_722, 464_154, 658_586, 853_018, 1_727_962]


def test_cifar_option_b_projections() -> None:
    a = _a("resnet20", shortcut="B")
    assert a.totals["params"] == _cifar_params(3, projections=True) == 269_722 + 16 * 32 + 64 + 32 * 64 + 128
    assert a.layer("layer3.0.downsample.0").output_shape == (64, 8, 8)


def test_cifar_option_b_runs_as_analysed() -> None:
    verify(zoo.get("resnet20", shortcut="B"), (3, 32, 32))


def test_cifar_shapes_and_channels() -> None:
    a = _a("resnet56")
    assert [a.blocks[f"layer{i}"].output_shape for i in (1, 2, 3)] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert sum(ly.type == "Conv" for ly in a.layers) + 1 == 56  # 6n + 2 weight layers, fc included
    assert a.layer("layer2.0.downsample").output_shape == (32, 16, 16)  # option A: zero-padded identity
    gray = analyze(zoo.get("resnet20", in_channels=1, num_classes=100), (1, 32, 32))
    assert gray.totals["params"] == 269_722 - 2 * 9 * 16 + 90 * 65


# The Keras example's model.summary() for resnet_v2 with n = 3 (ResNet29v2): "Trainable params:
# 843,786, Non-trainable params: 5,216" (the non-trainable ones are BatchNorm moving mean/variance).
KERAS29 = (843_786, 5_216)
# Every further n adds one identity unit per stage: BN-ReLU-conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1,
# with biases, for (channels, width) = (64, 16), (128, 64), (256, 128).
PER_N = sum(2 * c + (c * w + w) + 2 * w + (9 * w * w + w) + 2 * w + (w * c + c) for c, w in
            ((64, 16), (128, 64), (256, 128)))
PER_N_BUFFERS = sum(2 * c + 4 * w for c, w in ((64, 16), (128, 64), (256, 128)))


@pytest.mark.parametrize("depth", (20, 29, 56, 110, 164, 1001))
def test_keras_v2_parameter_counts(depth: int) -> None:
    n = (depth - 2) // 9
    t = _a(f"resnet{depth}-v2").totals
    assert (t["params"], t["buffers"]) == (KERAS29[0] + (n - 3) * PER_N, KERAS29[1] + (n - 3) * PER_N_BUFFERS)


def test_keras_v2_layout() -> None:
    a = _a("resnet56-v2")
    names = {ly.name for ly in a.layers}
    assert "layer1.0.bn1" not in names and "layer2.0.bn1" in names  # only the first unit skips BN-ReLU
    assert a.layer("layer2.0.downsample").params == 64 * 128 + 128  # biased 1x1 projection, no BN
    assert a.layer("layer3.0.conv1").output_shape == (128, 8, 8)  # stride 2 in the first 1x1 conv
    assert a.layer("avgpool").output_shape == (256, 1, 1) and a.output_shape == (10,)


# --------------------------------------------------------------------------- any input size


def test_resnet50_at_4096_is_pure_arithmetic(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "resnet50", "--input", "3x4096x4096", "--format", "json"]) == 0
    big = json.loads(capsys.readouterr().out)
    small = _a("resnet50")
    assert big["output_shape"] == [1000]
    layers = {ly["name"]: ly for ly in big["layers"]}
    assert layers["layer4.2.conv3"]["output_shape"] == [2048, 128, 128]
    # Every map is 4096/224 = 128/7 times larger per side (224 = 7 * 32, 4096 = 128 * 32), so the
    # conv MACs grow by exactly (128/7)^2; the classifier's 2048 * 1000 stay.
    fc = 2048 * 1000
    assert (big["totals"]["macs"] - fc) * 7 * 7 == (small.totals["macs"] - fc) * 128 * 128
    assert big["totals"]["params"] == IMAGENET_PARAMS[50]


def test_huge_input_summary_never_loads_torch() -> None:
    code = ("import sys, io, contextlib\nfrom cnnlab.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    rc = main(['summary', 'resnet50', '--input', '3x4096x4096', '--format', 'json'])\n"
            "print(rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["0", "False"], out.stderr


# --------------------------------------------------------------------------- errors and metadata


@pytest.mark.parametrize("name,kwargs,message", [
    ("resnet20", {"depth": 21}, "not 6n \\+ 2"),
    ("resnet56-v2", {"depth": 57}, "not 9n \\+ 2"),
    ("resnet50", {"depth": 42}, "no ImageNet ResNet of depth 42"),
    ("resnet50", {"shortcut": "D"}, "shortcut 'D' does not exist"),
    ("resnet18-tv", {"num_classes": 0}, "num_classes and in_channels must be >= 1"),
])
def test_bad_arguments_are_one_line_errors(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(CnnlabError, match=message) as e:
        zoo.get(name, **kwargs)
    assert "\n" not in str(e.value)


def test_metadata() -> None:
    m = zoo.get("resnet50").meta
    assert m["year"] == 2015 and "Deep Residual Learning" in m["paper"] and "22.85%" in m["accuracy"]
    assert "76.13%" in zoo.info("resnet50-tv").accuracy and zoo.info("resnet50-tv").input == (3, 224, 224)
    assert zoo.info("resnet110").input == (3, 32, 32) and "6.43%" in zoo.info("resnet110").accuracy
    assert zoo.info("resnet152-v2").year == 2016 and "Identity Mappings" in zoo.info("resnet152-v2").paper
    assert "Keras" in zoo.info("resnet29-v2").paper
