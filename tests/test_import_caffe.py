"""Caffe prototxt read into the description: layer structures of the public BVLC/Caffe examples,
written here, with figures derived by hand or taken from cnnlab's own zoo models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab import zoo
from cnnlab.analysis import analyze
from cnnlab.errors import CnnlabError
from cnnlab.importers.caffe import from_prototxt, load_caffe, parse_prototxt
from cnnlab.models import load_model

SRC = str(Path(__file__).resolve().parents[1] / "src")


def conv(name: str, bottom: str, n: int, k: int, s: int = 1, p: int = 0, group: int = 1, bias: bool = True) -> str:
    extra = f" group: {group}" if group > 1 else ""
    extra += "" if bias else " bias_term: false"
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}"\n'
            f"  convolution_param {{ num_output: {n} kernel_size: {k} stride: {s} pad: {p}{extra} }} }}\n")


def relu(name: str, blob: str) -> str:
    return f'layer {{ name: "{name}" type: "ReLU" bottom: "{blob}" top: "{blob}" }}\n'


def pool(name: str, bottom: str, k: int, s: int, p: int = 0, op: str = "MAX") -> str:
    return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{name}"\n'
            f"  pooling_param {{ pool: {op} kernel_size: {k} stride: {s} pad: {p} }} }}\n")


def lrn(name: str, bottom: str) -> str:
    return (f'layer {{ name: "{name}" type: "LRN" bottom: "{bottom}" top: "{name}"\n'
            "  lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }\n")


def fc(name: str, bottom: str, n: int) -> str:
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}"\n'
            f"  inner_product_param {{ num_output: {n} }} }}\n")


def drop(name: str, blob: str) -> str:
    return (f'layer {{ name: "{name}" type: "Dropout" bottom: "{blob}" top: "{blob}"\n'
            "  dropout_param { dropout_ratio: 0.5 } }\n")


# BVLC AlexNet's deploy.prototxt layer structure (conv, relu, norm, pool; grouped conv2/4/5).
ALEXNET = ('name: "AlexNet"\n'
           'layer { name: "data" type: "Input" top: "data" input_param { shape: { dim: 10 dim: 3 dim: 227 dim: 227 } } }\n'
           + conv("conv1", "data", 96, 11, 4) + relu("relu1", "conv1") + lrn("norm1", "conv1") + pool("pool1", "norm1", 3, 2)
           + conv("conv2", "pool1", 256, 5, p=2, group=2) + relu("relu2", "conv2") + lrn("norm2", "conv2")
           + pool("pool2", "norm2", 3, 2)
           + conv("conv3", "pool2", 384, 3, p=1) + relu("relu3", "conv3")
           + conv("conv4", "conv3", 384, 3, p=1, group=2) + relu("relu4", "conv4")
           + conv("conv5", "conv4", 256, 3, p=1, group=2) + relu("relu5", "conv5") + pool("pool5", "conv5", 3, 2)
           + fc("fc6", "pool5", 4096) + relu("relu6", "fc6") + drop("drop6", "fc6")
           + fc("fc7", "fc6", 4096) + relu("relu7", "fc7") + drop("drop7", "fc7")
           + fc("fc8", "fc7", 1000) + 'layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }\n')


def test_parser_reads_the_text_format() -> None:
    msg = parse_prototxt('name: "x"  # a comment\ninput_dim: 1 input_dim: 3\nlayer { name: \'a\' type: "ReLU" '
                         "relu_param: { negative_slope: 0.1 } }\nflag: true")
    assert msg == {"name": ["x"], "input_dim": [1, 3], "flag": [True],
                   "layer": [{"name": ["a"], "type": ["ReLU"], "relu_param": [{"negative_slope": [0.1]}]}]}


def test_alexnet_equals_the_zoo(tmp_path: Path) -> None:
    p = tmp_path / "alexnet.prototxt"
    p.write_text(ALEXNET)
    net = load_model(str(p))
    a, z = analyze(net), analyze(zoo.get("alexnet"))
    assert (a.totals["params"], a.totals["macs"]) == (z.totals["params"], z.totals["macs"]) == (60_965_224, 724_406_816)
    for name in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8"):
        assert a.layer(name).output_shape == z.layer(name).output_shape, name
    assert a.layer("conv2").params == 5 * 5 * 48 * 256 + 256  # two towers: each filter sees 48 maps
    norm = net.layers[2]
    assert (norm.size, norm.alpha, norm.k) == (5, pytest.approx(1e-4 / 5), 1.0)  # Caffe divides alpha by the size


def test_alexnet_adapts_to_a_wide_input(tmp_path: Path) -> None:
    p = tmp_path / "alexnet.prototxt"
    p.write_text(ALEXNET)
    r = subprocess.run([sys.executable, "-m", "cnnlab", "adapt", str(p), "--input", "3x270x480"], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": SRC})
    assert r.returncode == 0, r.stderr
    assert "Verdict" in r.stdout


def test_mnist_lenet(tmp_path: Path) -> None:
    # Caffe's examples/mnist/lenet.prototxt: conv 20 5x5, max pool 2/2, conv 50 5x5, pool, ip 500, relu, ip 10.
    text = ('name: "LeNet"\ninput: "data"\ninput_shape { dim: 64 dim: 1 dim: 28 dim: 28 }\n'
            + conv("conv1", "data", 20, 5) + pool("pool1", "conv1", 2, 2) + conv("conv2", "pool1", 50, 5)
            + pool("pool2", "conv2", 2, 2) + fc("ip1", "pool2", 500) + relu("relu1", "ip1") + fc("ip2", "ip1", 10)
            + 'layer { name: "prob" type: "Softmax" bottom: "ip2" top: "prob" }\n')
    a = analyze(from_prototxt(parse_prototxt(text)))
    # 20*(25+1) + 50*(20*25+1) + (50*4*4+1)*500 + (500+1)*10
    assert a.totals["params"] == 520 + 25_050 + 400_500 + 5_010 == 431_080
    assert a.totals["macs"] == 25 * 20 * 24 * 24 + 500 * 50 * 8 * 8 + 800 * 500 + 500 * 10
    assert a.output_shape == (10,)


def test_googlenet_inception_block_equals_the_zoo() -> None:
    # BVLC GoogLeNet's inception_3a on pool2/3x3_s2 (192x28x28), every conv followed by an in-place ReLU.
    def cr(name: str, bottom: str, n: int, k: int, p: int = 0) -> str:
        return conv(name, bottom, n, k, p=p) + relu(f"{name}_relu", name)

    text = ('name: "block"\ninput: "pool2/3x3_s2"\ninput_dim: 1 input_dim: 192 input_dim: 28 input_dim: 28\n'
            + cr("inception_3a/1x1", "pool2/3x3_s2", 64, 1)
            + cr("inception_3a/3x3_reduce", "pool2/3x3_s2", 96, 1) + cr("inception_3a/3x3", "inception_3a/3x3_reduce", 128, 3, 1)
            + cr("inception_3a/5x5_reduce", "pool2/3x3_s2", 16, 1) + cr("inception_3a/5x5", "inception_3a/5x5_reduce", 32, 5, 2)
            + pool("inception_3a/pool", "pool2/3x3_s2", 3, 1, 1)
            + cr("inception_3a/pool_proj", "inception_3a/pool", 32, 1)
            + 'layer { name: "inception_3a/output" type: "Concat" bottom: "inception_3a/1x1" bottom: "inception_3a/3x3"'
            ' bottom: "inception_3a/5x5" bottom: "inception_3a/pool_proj" top: "inception_3a/output" }\n')
    # Caffe names hold '/', which is fine in a module name; the block reads as a graph.
    a = analyze(from_prototxt(parse_prototxt(text.replace("/", "_"))))
    zoo_net = analyze(zoo.get("googlenet"))
    z = zoo_net.blocks["inception_3a"]
    zoo_macs = sum(s.macs for s in zoo_net.layers if s.name.startswith("inception_3a."))
    assert a.output_shape == z.output_shape == (256, 28, 28)
    assert a.totals["params"] == z.params == 163_696
    # 28*28 * (192*64 + 192*96 + 9*96*128 + 192*16 + 25*16*32 + 192*32)
    assert a.totals["macs"] == zoo_macs == 784 * 163_328 == 128_049_152


def test_resnet_bottleneck_batchnorm_scale_eltwise() -> None:
    def cbs(name: str, bottom: str, n: int, k: int, p: int = 0, act: bool = True) -> str:
        return (conv(name, bottom, n, k, p=p, bias=False)
                + f'layer {{ name: "bn_{name}" type: "BatchNorm" bottom: "{name}" top: "{name}" }}\n'
                + f'layer {{ name: "scale_{name}" type: "Scale" bottom: "{name}" top: "{name}" '
                  "scale_param { bias_term: true } }\n"
                + (relu(f"{name}_relu", name) if act else ""))

    text = ('name: "bottleneck"\ninput: "pool1"\ninput_dim: 1 input_dim: 64 input_dim: 56 input_dim: 56\n'
            + cbs("res2a_branch1", "pool1", 256, 1, act=False)
            + cbs("res2a_branch2a", "pool1", 64, 1) + cbs("res2a_branch2b", "res2a_branch2a", 64, 3, 1)
            + cbs("res2a_branch2c", "res2a_branch2b", 256, 1, act=False)
            + 'layer { name: "res2a" type: "Eltwise" bottom: "res2a_branch1" bottom: "res2a_branch2c" top: "res2a" }\n'
            + relu("res2a_relu", "res2a"))
    net = from_prototxt(parse_prototxt(text))
    a = analyze(net)
    convs = 64 * 256 + 64 * 64 + 9 * 64 * 64 + 64 * 256
    bn_channels = 256 + 64 + 64 + 256
    # Scale's gamma and beta are the parameters; BatchNorm's mean and variance are buffers (Caffe's third
    # blob, the moving-average factor, is one number per layer that PyTorch does not keep).
    assert a.totals["params"] == convs + 2 * bn_channels == 75_008
    assert a.totals["buffers"] == 2 * bn_channels
    assert a.output_shape == (256, 56, 56)
    assert a.layer("bottleneck.bn_res2a_branch2b").type == "BatchNorm"


PRELU = ('name: "prelu"\ninput: "data"\ninput_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
         + conv("conv1", "data", 4, 3, p=1)
         + 'layer { name: "prelu1" type: "PReLU" bottom: "conv1" top: "conv1" }\n'
         + conv("conv2", "conv1", 2, 1)
         + 'layer { name: "prelu2" type: "PReLU" bottom: "conv2" top: "conv2"\n'
           '  prelu_param { channel_shared: true filler { type: "constant" value: 0.1 } } }\n')


def test_prelu_per_channel_and_shared(tmp_path: Path) -> None:
    import torch

    from cnnlab.export.pycode import python_source
    from cnnlab.network import network_from_spec, network_to_spec
    from cnnlab.torch_backend import build

    net = from_prototxt(parse_prototxt(PRELU))
    a = analyze(net)
    # conv1 (3*3*3 + 1) * 4 = 112, a slope per channel: 4; conv2 (4 + 1) * 2 = 10, one shared slope: 1
    assert [(s.name, s.type, s.params) for s in a.layers] == [
        ("conv1", "Conv", 112), ("prelu1", "PReLU", 4), ("conv2", "Conv", 10), ("prelu2", "PReLU", 1)]
    assert a.totals["params"] == 112 + 4 + 10 + 1 == 127
    assert a.layer("prelu1").macs == a.layer("prelu2").macs == 0
    assert a.totals["macs"] == 27 * 4 * 8 * 8 + 4 * 2 * 8 * 8  # the convolutions' only
    model = build(net)
    p1, p2 = model.prelu1, model.prelu2
    assert isinstance(p1, torch.nn.PReLU) and p1.num_parameters == 4 and p2.num_parameters == 1
    assert p1.weight.tolist() == [0.25] * 4  # Caffe's default slope
    assert p2.weight.tolist() == [pytest.approx(0.1)]  # the constant filler's value
    x = torch.tensor([[-2.0, 3.0]]).view(1, 2, 1, 1)
    assert p2(x).flatten().tolist() == [pytest.approx(-0.2), 3.0]  # -2 * 0.1, and 3 kept
    src = python_source(net)
    assert "nn.PReLU(4)" in src and "nn.PReLU(init=0.1)" in src
    back = network_from_spec(json.loads(json.dumps(network_to_spec(net))))
    assert back.layers == net.layers and analyze(back).totals == a.totals


ELTWISE_MAX = ('name: "emax"\ninput: "data"\ninput_dim: 1 input_dim: 2 input_dim: 4 input_dim: 4\n'
               + conv("a", "data", 3, 3, p=1) + conv("b", "data", 3, 1) + conv("c", "data", 3, 1, bias=False)
               + 'layer { name: "m" type: "Eltwise" bottom: "a" bottom: "b" bottom: "c" top: "m"\n'
                 "  eltwise_param { operation: MAX } }\n"
               + relu("m_relu", "m"))


def test_eltwise_max(tmp_path: Path) -> None:
    import torch

    from cnnlab.export.pycode import python_source
    from cnnlab.network import Graph, network_from_spec, network_to_spec
    from cnnlab.torch_backend import build

    net = from_prototxt(parse_prototxt(ELTWISE_MAX))
    g = net.layers[0]
    assert isinstance(g, Graph) and [(m.name, m.op, m.inputs) for m in g.merges] == [("m", "max", ("a", "b", "c"))]
    a = analyze(net)
    # a: (2*3*3 + 1) * 3 = 57; b: (2 + 1) * 3 = 9; c: 2 * 3 = 6; the maximum has no parameters
    assert a.totals["params"] == 57 + 9 + 6 == 72
    assert a.layer("emax.m_relu").input_shape == a.output_shape == (3, 4, 4)
    torch.manual_seed(0)
    model = build(net).eval()
    x = torch.randn(2, 2, 4, 4)
    with torch.no_grad():
        got = model(x)
        ya, yb, yc = (getattr(model.emax, n)(x) for n in "abc")
    want = torch.relu(torch.maximum(torch.maximum(ya, yb), yc))
    assert torch.equal(got, want)
    assert not torch.equal(want, torch.relu(ya)) and not torch.equal(want, torch.relu(yb))  # each branch wins somewhere
    src = python_source(net)
    assert "m = torch.maximum(torch.maximum(a, b), c)" in src
    ns: dict = {}
    exec(compile(src, "emax.py", "exec"), ns)  # noqa: S102 - the exporter's own output
    written = ns["Emax"]().eval()
    written.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(written(x), got)
    back = network_from_spec(json.loads(json.dumps(network_to_spec(net))))
    assert back.layers == net.layers and analyze(back).totals == a.totals
    spec = network_to_spec(net)
    spec["layers"][0]["nodes"][1]["filters"] = 2  # b gives 2 maps: no maximum of 3x4x4 and 2x4x4
    with pytest.raises(CnnlabError, match=r"graph 'emax': cannot take the maximum of 3x4x4, 2x4x4, 3x4x4"):
        analyze(network_from_spec(spec))


def test_cifar10_pooling_rounds_up() -> None:
    # Caffe's cifar10_quick: conv 32 5x5 pad 2, max pool 3/2 -> ceil((32 - 3)/2) + 1 = 16 (PyTorch's floor: 15).
    text = ('name: "cifar"\ninput: "data"\ninput_dim: 1 input_dim: 3 input_dim: 32 input_dim: 32\n'
            + conv("conv1", "data", 32, 5, p=2) + pool("pool1", "conv1", 3, 2) + relu("relu1", "pool1")
            + conv("conv2", "pool1", 32, 5, p=2) + relu("relu2", "conv2") + pool("pool2", "conv2", 3, 2, op="AVE")
            + conv("conv3", "pool2", 64, 5, p=2) + relu("relu3", "conv3") + pool("pool3", "conv3", 3, 2, op="AVE")
            + fc("ip1", "pool3", 64) + fc("ip2", "ip1", 10))
    a = analyze(from_prototxt(parse_prototxt(text)))
    assert [a.layer(n).output_shape for n in ("pool1", "pool2", "pool3")] == [(32, 16, 16), (32, 8, 8), (64, 4, 4)]
    assert a.layer("ip1").params == 64 * 4 * 4 * 64 + 64
    assert any(kind == "ceil" for kind, _ in a.layer("pool1").findings)


@pytest.mark.parametrize("setting", ["round_mode: FLOOR", "ceil_mode: false"])
def test_pooling_told_to_round_down(setting: str) -> None:
    """BVLC Caffe's round_mode FLOOR (DenseNet-121's pool1) and the forks' ceil_mode false (ResNeXt's) round
    down: 112 -> (112 + 2 - 3)/2 + 1 = 56.5 -> 56, where Caffe's default gives 57."""
    head = 'input: "data"\ninput_dim: 1 input_dim: 8 input_dim: 112 input_dim: 112\n'
    down = head + ('layer { name: "pool1" type: "Pooling" bottom: "data" top: "pool1"\n'
                   f"  pooling_param {{ pool: MAX kernel_size: 3 stride: 2 pad: 1 {setting} }} }}\n")
    assert analyze(from_prototxt(parse_prototxt(down))).output_shape == (8, 56, 56)
    up = head + pool("pool1", "data", 3, 2, p=1)
    assert analyze(from_prototxt(parse_prototxt(up))).output_shape == (8, 57, 57)
    with pytest.raises(CnnlabError, match=r"Caffe layer 'pool1': round_mode 'UP' is not CEIL or FLOOR"):
        from_prototxt(parse_prototxt(down.replace(setting, "round_mode: UP")))


def test_train_val_skips_data_and_loss_layers() -> None:
    text = ('name: "tv"\nlayer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TRAIN }\n'
            "  transform_param { crop_size: 24 } }\n"
            + conv("conv1", "data", 8, 5) + fc("ip", "conv1", 10)
            + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }\n'
            + 'layer { name: "acc" type: "Accuracy" bottom: "ip" bottom: "label" top: "acc" }\n')
    net = from_prototxt(parse_prototxt(text))
    assert net.input_shape == (3, 24, 24)
    assert analyze(net).totals["params"] == 8 * 76 + 8 * 20 * 20 * 10 + 10
    assert net.meta["notes"] == ["Data layer 'mnist' skipped", "SoftmaxWithLoss layer 'loss' skipped",
                                 "Accuracy layer 'acc' skipped"]


def vgg16_v1() -> str:
    """VGG-16 (configuration D) in the V1 layout its authors published the deploy file in: ``layers``,
    enum types, ``input_dim``, and ``blobs_lr``/``weight_decay`` multipliers."""
    text = 'name: "VGG_ILSVRC_16_layers"\ninput: "data"\ninput_dim: 10\ninput_dim: 3\ninput_dim: 224\ninput_dim: 224\n'
    blob = "data"
    for stage, (n, width) in enumerate(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)), 1):
        for i in range(1, n + 1):
            name = f"conv{stage}_{i}"
            text += (f'layers {{ bottom: "{blob}" top: "{name}" name: "{name}" type: CONVOLUTION\n'
                     f"  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0\n"
                     f"  convolution_param {{ num_output: {width} pad: 1 kernel_size: 3 }} }}\n"
                     f'layers {{ bottom: "{name}" top: "{name}" name: "relu{stage}_{i}" type: RELU }}\n')
            blob = name
        text += (f'layers {{ bottom: "{blob}" top: "pool{stage}" name: "pool{stage}" type: POOLING\n'
                 f"  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}\n")
        blob = f"pool{stage}"
    for i, n in ((6, 4096), (7, 4096), (8, 1000)):
        text += (f'layers {{ bottom: "{blob}" top: "fc{i}" name: "fc{i}" type: INNER_PRODUCT\n'
                 f"  inner_product_param {{ num_output: {n} }} }}\n")
        blob = f"fc{i}"
        if i < 8:
            text += (f'layers {{ bottom: "{blob}" top: "{blob}" name: "relu{i}" type: RELU }}\n'
                     f'layers {{ bottom: "{blob}" top: "{blob}" name: "drop{i}" type: DROPOUT\n'
                     f"  dropout_param {{ dropout_ratio: 0.5 }} }}\n")
    return text + 'layers { bottom: "fc8" top: "prob" name: "prob" type: SOFTMAX }\n'


def test_v1_vgg16_equals_the_zoo(tmp_path: Path) -> None:
    p = tmp_path / "VGG_ILSVRC_16_layers_deploy.prototxt"
    p.write_text(vgg16_v1())
    a, want = analyze(load_model(str(p))), analyze(zoo.get("vgg16"))
    assert a.input_shape == (3, 224, 224) and a.output_shape == (1000,)
    assert a.totals["params"] == want.totals["params"] == 138_357_544
    assert a.totals["macs"] == want.totals["macs"] == 15_470_264_320
    assert [x.output_shape for x in a.layers if x.kind == "Conv"] == \
        [x.output_shape for x in want.layers if x.kind == "Conv"]


def test_v1_train_val_with_numbered_types() -> None:
    """V1 types may be written as their enum numbers (DATA = 5, CONVOLUTION = 4, INNER_PRODUCT = 14,
    SOFTMAX_LOSS = 21); data and loss layers are skipped as in V2 files."""
    text = ('name: "v1"\nlayers { name: "mnist" type: 5 top: "data" top: "label" transform_param { crop_size: 24 } }\n'
            'layers { name: "conv1" type: 4 bottom: "data" top: "conv1" blobs_lr: 1 '
            "convolution_param { num_output: 8 kernel_size: 5 } }\n"
            'layers { name: "ip" type: INNER_PRODUCT bottom: "conv1" top: "ip" inner_product_param { num_output: 10 } }\n'
            'layers { name: "loss" type: 21 bottom: "ip" bottom: "label" top: "loss" }\n')
    net = from_prototxt(parse_prototxt(text))
    assert net.input_shape == (3, 24, 24)
    assert analyze(net).totals["params"] == 8 * 76 + 8 * 20 * 20 * 10 + 10
    assert net.meta["notes"] == ["Data layer 'mnist' skipped", "SoftmaxWithLoss layer 'loss' skipped"]


@pytest.mark.parametrize(("text", "words"), [
    ('name: "x"\nlayer { name: "a"\n type: "ReLU"', "line 3: a '{' is never closed"),
    # values are checked, never coerced: 8.5 filters is not 8, a word is not a slope
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "c" type: "Convolution" bottom: "d" top: "c" convolution_param { num_output: 8.5 kernel_size: 3 } }',
     "Caffe layer 'c': num_output 8.5 is not an integer"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "r" type: "ReLU" bottom: "d" top: "r" relu_param { negative_slope: abc } }',
     "Caffe layer 'r': negative_slope 'abc' is not a finite number"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "r" type: "ReLU" bottom: "d" top: "r" relu_param { negative_slope: nan } }',
     "Caffe layer 'r': negative_slope nan is not a finite number"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "f" type: "InnerProduct" bottom: "d" top: "f" inner_product_param { num_output: 4 '
     'bias_term: yes } }', "Caffe layer 'f': bias_term 'yes' is not true or false"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "c" type: "Convolution" bottom: "d" top: "c" convolution_param { num_output: 100000000000 '
     'kernel_size: 3 } }', "layer 'c' (Conv): filters must be <= 2,147,483,647, got 100000000000"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\nlayers { name: "a" type: CONVOLUTIONS '
     'bottom: "d" top: "a" }', "V1 layer 'a' has type 'CONVOLUTIONS', not one of caffe.proto's V1 types"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\nlayers { layer { name: "a" type: "conv" } '
     'bottom: "d" top: "a" }', "a V0 prototxt (layers { layer { ... } }); upgrade it with Caffe's"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\nlayers { name: "a" type: RELU bottom: "d" '
     'top: "a" }\nlayer { name: "b" type: "ReLU" bottom: "a" top: "b" }', "both V1 'layers' and V2 'layer' entries"),
    ('name: "x"\ninput_dim: 1\n}', "line 3: expected a field name"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\nlayer { name: "w" type: "Python" '
     'bottom: "d" top: "w" }', "Caffe layer 'w' (Python) is not supported: cnnlab reads Input"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\nlayer { name: "r" type: "ReLU" '
     'bottom: "nowhere" top: "r" }', "reads blob 'nowhere', which no layer before it writes"),
    # A reads B's top and B reads A's: a cycle, which no order of the layers can run
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "a" type: "ReLU" bottom: "b" top: "a" }\nlayer { name: "b" type: "ReLU" bottom: "a" top: "b" }',
     "Caffe layer 'a' reads blob 'b', which is written from its own output (a -> b -> a): the layers form a cycle"),
    # the same through three convolutions, the first also reading the input: a -> b -> c -> a
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "a" type: "Eltwise" bottom: "d" bottom: "c" top: "a" }\n' + conv("b", "a", 3, 1) + conv("c", "b", 3, 1),
     "Caffe layer 'a' reads blob 'c', which is written from its own output (a -> b -> c -> a)"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "r" type: "ReLU" bottom: "late" top: "r" }\n' + conv("late", "d", 3, 1),
     "reads blob 'late', which only a later layer writes; order the layers"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "r" type: "ReLU" bottom { name: "d" } top: "r" }',
     "Caffe layer 'r' has a bottom or top {'name': ['d']} that is not a blob name"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n' + conv("c", "d", 4, 11),
     "layer 'c': output height"),
])
def test_bad_prototxt_one_line(tmp_path: Path, text: str, words: str) -> None:
    p = tmp_path / "bad.prototxt"
    p.write_text(text)
    with pytest.raises(CnnlabError, match=None) as e:
        load_caffe(p)
    assert words in str(e.value) and "\n" not in str(e.value)
    r = subprocess.run([sys.executable, "-m", "cnnlab", "summary", str(p)], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": SRC})
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_two_thousand_layers(tmp_path: Path) -> None:
    """A 2,000-layer file reads whole (its speed is measured by benchmarks/bench_import.py)."""
    body = "".join(conv(f"c{i}", f"c{i - 1}" if i else "data", 8, 3, p=1) + relu(f"r{i}", f"c{i}") for i in range(1000))
    p = tmp_path / "deep.prototxt"
    p.write_text('input: "data"\ninput_dim: 1 input_dim: 8 input_dim: 16 input_dim: 16\n' + body)
    a = analyze(load_caffe(p))
    assert len(a.layers) == 2000 and a.totals["params"] == 1000 * (9 * 8 * 8 + 8)


def test_summary_saves_the_imported_network_as_a_spec(tmp_path: Path, capsys) -> None:
    """A prototxt becomes a cnnlab spec with `summary --save`; the spec reads back to the same figures."""
    from cnnlab.cli import main

    src, spec = tmp_path / "alexnet.prototxt", tmp_path / "alexnet.yaml"
    src.write_text(ALEXNET)
    assert main(["summary", str(src), "--format", "json", "--save", str(spec)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["summary", str(spec), "--format", "json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert first["totals"] == again["totals"] and again["totals"]["params"] == 60_965_224
    assert [r["output_shape"] for r in first["layers"]] == [r["output_shape"] for r in again["layers"]]
    assert main(["summary", "lenet5", "--save", str(tmp_path / "lenet.txt")]) == 2
    assert "a spec file ends in .yaml, .yml or .json" in capsys.readouterr().err


def fire(name: str, bottom: str, s: int, e: int) -> str:
    """SqueezeNet's fire module (Iandola et al. 2016, Table 1): squeeze 1x1, then expand 1x1 and 3x3, concatenated."""
    return (conv(f"{name}/squeeze1x1", bottom, s, 1) + relu(f"{name}/relu_squeeze1x1", f"{name}/squeeze1x1")
            + conv(f"{name}/expand1x1", f"{name}/squeeze1x1", e, 1) + relu(f"{name}/relu_e1", f"{name}/expand1x1")
            + conv(f"{name}/expand3x3", f"{name}/squeeze1x1", e, 3, p=1) + relu(f"{name}/relu_e3", f"{name}/expand3x3")
            + f'layer {{ name: "{name}/concat" type: "Concat" bottom: "{name}/expand1x1" bottom: "{name}/expand3x3" '
            f'top: "{name}/concat" }}\n')


def test_squeezenet_ends_in_a_softmax_over_channels(tmp_path: Path) -> None:
    """SqueezeNet's deploy file ends conv10 (1x1, 1000) -> global average pool -> Softmax on the 1000x1x1
    blob: Caffe's Softmax runs over the channels (axis 1) of any blob, and so does cnnlab's."""
    import torch

    import cnnlab

    text = ('name: "squeeze.net"\ninput: "data"\ninput_dim: 1 input_dim: 3 input_dim: 32 input_dim: 32\n'
            + conv("conv1", "data", 16, 3, 2) + relu("relu_conv1", "conv1") + pool("pool1", "conv1", 3, 2)
            + fire("fire2", "pool1", 4, 8) + conv("conv10", "fire2/concat", 10, 1)
            + 'layer { name: "pool10" type: "Pooling" bottom: "conv10" top: "pool10" '
              "pooling_param { pool: AVE global_pooling: true } }\n"
            + 'layer { name: "prob" type: "Softmax" bottom: "pool10" top: "prob" }\n')
    p = tmp_path / "squeezenet_v1.1_deploy.prototxt"
    p.write_text(text)
    net = load_caffe(p)
    assert net.name == "squeeze_net"  # a '.' separates PyTorch module paths
    a = analyze(net)
    # conv1 3x3x3 -> 16, stride 2: 15x15; pool 3/2 (ceil): 7x7; fire: squeeze 16*4+4 = 68, expand1x1 4*8+8 = 40,
    # expand3x3 36*8+8 = 296 -> 16x7x7; conv10 16*10+10 = 170
    assert a.totals["params"] == (27 * 16 + 16) + 68 + 40 + 296 + 170
    assert a.output_shape == (10, 1, 1)
    module = cnnlab.build(net).eval()
    with torch.no_grad():
        out = module(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10, 1, 1)
    torch.testing.assert_close(out.sum(1), torch.ones(2, 1, 1))


def test_layer_names_that_cannot_name_modules() -> None:
    """Caffe allows any layer name; PyTorch separates module paths with '.', and a module's attributes cannot be
    children: such names become module names ('.' -> '_', an 'x' before a reserved word) and the model builds."""
    import torch

    import cnnlab

    text = ('input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
            + conv("conv.1", "data", 4, 3) + conv("forward", "data", 4, 3)
            + 'layer { name: "sum" type: "Eltwise" bottom: "conv.1" bottom: "forward" top: "sum" }\n'
            + relu("nodes", "sum") + 'layer { name: "flatten" type: "Flatten" bottom: "sum" top: "flatten" }\n')
    net = from_prototxt(parse_prototxt(text), "t.prototxt", "t")
    # 'nodes' is an attribute of cnnlab's own container module; 'flatten' is not, and stays
    assert [n.name for n in net.layers[0].nodes] == ["conv_1", "xforward", "xnodes", "flatten"]
    assert cnnlab.build(net)(torch.zeros(1, 3, 8, 8)).shape == (1, 4 * 6 * 6)
    assert cnnlab.build(net, logits=True)(torch.zeros(1, 3, 8, 8)).shape == (1, 4 * 6 * 6)


def test_input_for_a_train_val_file_that_states_none(tmp_path: Path) -> None:
    """Caffe's MNIST lenet_train_test.prototxt reads an LMDB through Data layers with no crop_size: the file
    does not say the image size, so --input gives it (and without it the error says so)."""
    text = ('name: "LeNet"\nlayer { name: "mnist" type: "Data" top: "data" top: "label" include { phase: TRAIN }\n'
            "  transform_param { scale: 0.00390625 } data_param { batch_size: 64 } }\n"
            + conv("conv1", "data", 20, 5) + pool("pool1", "conv1", 2, 2) + conv("conv2", "pool1", 50, 5)
            + pool("pool2", "conv2", 2, 2) + fc("ip1", "pool2", 500) + relu("relu1", "ip1") + fc("ip2", "ip1", 10)
            + 'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }\n')
    p = tmp_path / "lenet_train_test.prototxt"
    p.write_text(text)
    with pytest.raises(CnnlabError, match=r"no input shape; give it with --input CxHxW"):
        load_caffe(p)
    a = analyze(load_model(str(p), input_shape=(1, 28, 28)))
    # conv1 25*20+20 = 520; conv2 500*50+50 = 25,050; ip1 800*500+500 = 400,500; ip2 5,010: Caffe's 431,080
    assert a.totals["params"] == 431_080
    r = subprocess.run([sys.executable, "-m", "cnnlab", "summary", str(p), "--input", "1x28x28"], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": SRC})
    assert r.returncode == 0, r.stderr
    assert "431,080" in r.stdout and "Note: Data layer 'mnist' skipped" in r.stdout


def test_a_convolutional_classifier_trains_with_num_classes(tmp_path: Path) -> None:
    """A classifier made of a 1x1 conv to 1000 maps, global pooling and Softmax (SqueezeNet's, NIN's) trains on a
    2-class folder with --num-classes 2: the conv gets 2 filters, the 2x1x1 output is flattened to 2 scores, and
    eval and predict read the checkpoint."""
    from PIL import Image

    for k, c in enumerate("ab"):
        (tmp_path / "g" / c).mkdir(parents=True)
        for i in range(6):
            Image.new("L", (28, 28), 20 * i + 120 * k).save(tmp_path / "g" / c / f"{i}.png")
    p = tmp_path / "sq.prototxt"
    p.write_text('name: "sq"\ninput: "data" input_dim: 1 input_dim: 1 input_dim: 28 input_dim: 28\n'
                 + conv("conv1", "data", 8, 3, 2) + relu("relu1", "conv1") + conv("conv10", "conv1", 1000, 1)
                 + 'layer { name: "pool10" type: "Pooling" bottom: "conv10" top: "pool10" '
                   "pooling_param { pool: AVE global_pooling: true } }\n"
                 + 'layer { name: "prob" type: "Softmax" bottom: "pool10" top: "prob" }\n')
    env = {**os.environ, "PYTHONPATH": SRC, "CNNLAB_CACHE": str(tmp_path / "cache")}

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cnnlab", *argv], capture_output=True, text=True, timeout=300,
                              env=env)

    r = cli("train", str(p), "--data", str(tmp_path / "g"), "--epochs", "1", "--no-progress", "--out",
            str(tmp_path / "r"), "--num-classes", "2")
    assert r.returncode == 0, r.stderr
    from cnnlab.train import checkpoint

    ck = checkpoint.load(tmp_path / "r" / "last.pt")
    assert tuple(ck.model["conv10.weight"].shape) == (2, 8, 1, 1)  # conv1 9*8+8 = 80, conv10 8*2+2 = 18
    assert analyze(ck.net).totals["params"] == 98
    r = cli("predict", str(tmp_path / "r" / "last.pt"), str(tmp_path / "g" / "a" / "0.png"), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["class"] in ("a", "b")
    assert cli("eval", str(tmp_path / "r" / "last.pt"), "--data", str(tmp_path / "g")).returncode == 0
    r = cli("train", str(p), "--data", str(tmp_path / "g"), "--epochs", "1", "--out", str(tmp_path / "s"))
    assert r.returncode == 2 and "sq outputs 1000x1x1 values but the data has 2 classes; build it with " \
                                 "--num-classes 2" in r.stderr


def test_fcn_deconvolution_and_crop(tmp_path: Path) -> None:
    """FCN's head (Long et al. 2015; voc-fcn32s deploy layout): scores at 1/2, a Deconvolution (Caffe's
    s(n - 1) + k - 2p) back up, and a Crop to the input's size at an offset, reading the input blob's size."""
    import torch

    import cnnlab

    text = ('input: "data" input_shape { dim: 1 dim: 3 dim: 20 dim: 20 }\n'
            + conv("conv1", "data", 8, 3, p=5) + relu("relu1", "conv1") + pool("pool1", "conv1", 2, 2)
            + conv("score_fr", "pool1", 4, 1)
            + 'layer { name: "upscore" type: "Deconvolution" bottom: "score_fr" top: "upscore" param { lr_mult: 0 }\n'
              "  convolution_param { num_output: 4 bias_term: false kernel_size: 4 stride: 2 } }\n"
            + 'layer { name: "score" type: "Crop" bottom: "upscore" bottom: "data" top: "score" '
              "crop_param { axis: 2 offset: 3 } }\n")
    net = from_prototxt(parse_prototxt(text), "fcn.prototxt", "fcn")
    a = analyze(net)
    # conv1: 20 + 10 - 3 + 1 = 28; pool 14; score_fr 4x14x14; upscore 2*13 + 4 = 30; crop 3 + 20 + 7 = 30
    assert [(x.name, x.output_shape) for x in a.layers] == [  # a chain: the crop reads the input's size only
        ("conv1", (8, 28, 28)), ("relu1", (8, 28, 28)), ("pool1", (8, 14, 14)),
        ("score_fr", (4, 14, 14)), ("upscore", (4, 30, 30)), ("score", (4, 20, 20))]
    assert net.layers[-1].crop == (3, 7, 3, 7)
    # conv1 27*8+8 = 224; score_fr 8*4+4 = 36; upscore 4*4*4*4 = 256 (no bias); MACs of upscore 4*16*4 * 14*14
    assert a.totals["params"] == 224 + 36 + 256
    assert a.layer("upscore").macs == 4 * 4 * 4 * 4 * 14 * 14
    assert cnnlab.build(net)(torch.zeros(1, 3, 20, 20)).shape == (1, 4, 20, 20)
    bad = text.replace("offset: 3", "offset: 12")
    with pytest.raises(CnnlabError, match=r"Caffe layer 'score': cannot cut 20x20 at offset 12, 12 from 4x30x30"):
        from_prototxt(parse_prototxt(bad))


def test_auxiliary_heads_of_a_train_val_file_are_noted() -> None:
    """GoogLeNet's train_val file trains two auxiliary classifiers into their own loss layers: they do not lead
    to the output, are counted (Caffe trains their parameters) and are named in a note."""
    text = ('input: "data"\ninput_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
            + conv("conv1", "data", 4, 3) + fc("aux/fc", "conv1", 5)
            + 'layer { name: "aux/loss" type: "SoftmaxWithLoss" bottom: "aux/fc" bottom: "label" top: "aux/loss" }\n'
            + conv("conv2", "conv1", 4, 3) + fc("main/fc", "conv2", 5)
            + 'layer { name: "main/loss" type: "SoftmaxWithLoss" bottom: "main/fc" bottom: "label" top: "loss" }\n'
            + 'layer { name: "acc1" type: "Accuracy" bottom: "main/fc" bottom: "label" top: "acc1" }\n'
            + 'layer { name: "acc5" type: "Accuracy" bottom: "main/fc" bottom: "label" top: "acc5" }\n')
    net = from_prototxt(parse_prototxt(text), "tv.prototxt", "tv")
    a = analyze(net)
    # conv1 27*4+4 = 112; aux/fc_flatten + aux/fc 144*5+5 = 725; conv2 36*4+4 = 148; main/fc 64*5+5 = 325
    assert a.totals["params"] == 112 + 725 + 148 + 325 and a.output_shape == (5,)
    assert net.meta["notes"] == [
        "SoftmaxWithLoss layers 'aux/loss', 'main/loss' skipped", "Accuracy layers 'acc1', 'acc5' skipped",
        "2 layers (aux/fc_flatten, aux/fc) do not lead to the output main/fc: a train_val file's auxiliary heads; "
        "their parameters are counted, and the built module computes them"]


@pytest.mark.parametrize("excite", ["conv", "fc"])
def test_squeeze_excitation_scale_of_two_bottoms(excite: str) -> None:
    """SE-ResNet's Caffe files (Hu et al. 2018) gate a map with a two-bottom Scale (axis 0): global pooling,
    reduce, ReLU, expand, Sigmoid, then the map times its per-channel weights; as 1x1 convolutions or as
    InnerProducts (whose C weights are reshaped to C x 1 x 1 to broadcast)."""
    import torch

    import cnnlab

    reduce, expand = (conv("se_down", "pool", 2, 1), conv("se_up", "se_down", 8, 1)) if excite == "conv" else \
        (fc("se_down", "pool", 2), fc("se_up", "se_down", 8))
    text = ('input: "data"\ninput_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n' + conv("c", "data", 8, 3, p=1)
            + 'layer { name: "pool" type: "Pooling" bottom: "c" top: "pool" pooling_param { pool: AVE '
              "global_pooling: true } }\n" + reduce + relu("se_relu", "se_down") + expand
            + 'layer { name: "prob" type: "Sigmoid" bottom: "se_up" top: "se_up" }\n'
            + 'layer { name: "gate" type: "Scale" bottom: "c" bottom: "se_up" top: "gate" scale_param { axis: 0 } }\n'
            + 'layer { name: "sum" type: "Eltwise" bottom: "gate" bottom: "c" top: "sum" }\n')
    net = from_prototxt(parse_prototxt(text), "se.prototxt", "se")
    a = analyze(net)
    # c 27*8+8 = 224; reduce 8*2+2 = 18; expand 2*8+8 = 24
    assert a.totals["params"] == 224 + 18 + 24 and a.output_shape == (8, 8, 8)
    module = cnnlab.build(net).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        c = module.se.c(x)
        g = module.se.se_up(torch.relu(module.se.se_down(c.mean((2, 3), keepdim=True)
                                                          if excite == "conv" else c.mean((2, 3)))))
        want = c * torch.sigmoid(g).reshape(2, 8, 1, 1) + c
        torch.testing.assert_close(module(x), want)


def test_kernel_h_and_kernel_w() -> None:
    """Caffe names a kernel's sides kernel_h/kernel_w (Inception-v3's 1x7 and 7x1 convolutions), beside
    stride_h/stride_w and pad_h/pad_w; a 3x5 kernel is not a 1x1."""
    text = ('input: "data"\ninput_dim: 1 input_dim: 4 input_dim: 32 input_dim: 32\n'
            'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
            '  convolution_param { num_output: 8 kernel_h: 3 kernel_w: 5 pad_h: 0 pad_w: 1 stride_h: 1 stride_w: 2 } }\n'
            'layer { name: "p" type: "Pooling" bottom: "c" top: "p"\n'
            "  pooling_param { pool: MAX kernel_h: 2 kernel_w: 3 stride_h: 2 stride_w: 1 } }\n")
    a = analyze(from_prototxt(parse_prototxt(text)))
    # conv: H 32 - 3 + 1 = 30, W (32 + 2 - 5)/2 + 1 = 15 (floor of 15.5); params 4*3*5*8 + 8 = 488
    assert a.layer("c").output_shape == (8, 30, 15) and a.layer("c").params == 488
    # pool 2x3, stride 2x1, rounding up: H ceil(28/2) + 1 = 15, W 15 - 3 + 1 = 13
    assert a.layer("p").output_shape == (8, 15, 13)


def test_senet_axpy_and_reshape() -> None:
    """SENet's own Caffe files: SE-ResNet gates with Axpy (a * x + y: the gate, the map, the shortcut);
    SE-BN-Inception reshapes its C x 1 x 1 gate to C (dim: 0 dim: 0) before a two-bottom Scale."""
    import torch

    import cnnlab

    head = ('input: "data"\ninput_dim: 1 input_dim: 4 input_dim: 6 input_dim: 6\n' + conv("c", "data", 4, 3, p=1)
            + 'layer { name: "pool" type: "Pooling" bottom: "c" top: "pool" pooling_param { pool: AVE '
              "global_pooling: true } }\n" + conv("up", "pool", 4, 1)
            + 'layer { name: "prob" type: "Sigmoid" bottom: "up" top: "up" }\n')
    axpy = head + 'layer { name: "axpy" type: "Axpy" bottom: "up" bottom: "c" bottom: "data" top: "axpy" }\n'
    reshape = head + ('layer { name: "flat" type: "Reshape" bottom: "up" top: "flat" '
                      "reshape_param { shape { dim: 0 dim: 0 } } }\n"
                      'layer { name: "gate" type: "Scale" bottom: "c" bottom: "flat" top: "gate" '
                      "scale_param { axis: 0 bias_term: false } }\n")
    x = torch.randn(2, 4, 6, 6)
    for text, shortcut in ((axpy, x), (reshape, 0)):
        net = from_prototxt(parse_prototxt(text), "se.prototxt", "se")
        a = analyze(net)
        assert a.totals["params"] == (36 * 4 + 4) + (4 * 4 + 4) and a.output_shape == (4, 6, 6)
        module = cnnlab.build(net).eval()
        with torch.no_grad():
            c = module.se.c(x)
            want = c * torch.sigmoid(module.se.up(c.mean((2, 3), keepdim=True))) + shortcut
            torch.testing.assert_close(module(x), want)
    with pytest.raises(CnnlabError, match=r"Caffe layer 'flat': Reshape of 4x6x6 to 6x24 is not supported"):
        from_prototxt(parse_prototxt(head + 'layer { name: "flat" type: "Reshape" bottom: "c" top: "flat" '
                                            "reshape_param { shape { dim: 0 dim: 6 dim: -1 } } }\n"))
