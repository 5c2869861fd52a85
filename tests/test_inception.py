"""The Inception family against its papers and reference implementations: exact parameter counts and
MACs, the papers' grid sizes and widths, torchvision state_dict compatibility, a real training step."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cnnlab import zoo
from cnnlab.analysis import analyze
from cnnlab.errors import CnnlabError
from cnnlab.network import Residual, children
from cnnlab.torch_backend import build
from verify import verify

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "torchvision_inception.json").read_text())

# name -> (params, MACs) without auxiliary heads, at the default input (224 or 299).
COUNTS = {
    # Keras-Hub preset inception_v1_imagenet: "params": 6998552 (the Caffe BVLC layout: biases, no BatchNorm).
    "googlenet": (6_998_552, 1_582_671_872),
    # torchvision GoogLeNet_Weights.IMAGENET1K_V1: num_params 6624904, GFLOPS 1.50 (its "FLOPs" are MACs).
    "googlenet-tv": (6_624_904, 1_498_376_192),
    # Ioffe & Szegedy 2015, Appendix: the first layer a separable 7x7/2 convolution, depth multiplier 8.
    "bn-inception": (11_278_528, 1_948_605_440),
    # pytorchcv (osmr/imgclsmob) bninception, the Caffe port: 11,295,240 (plain 7x7, a bias on every conv).
    "bn-inception-caffe": (11_295_240, 2_032_600_064),
    # torchvision Inception_V3_Weights.IMAGENET1K_V1: num_params 27161264 with the aux head, GFLOPS 5.71;
    # timm's inception_v3 (no aux head) has 23.8M.
    "inception-v3": (23_834_568, 5_713_216_096),
    # Keras-Hub preset inception_v4_imagenet and pytorchcv inceptionv4: 42,679,816; timm model card: 12.3 GMACs.
    "inception-v4": (42_679_816, 12_253_974_624),
    # The papers' figures (see test_facenet_inception_resnet_v1 for the 23,995,624 some ports count).
    "inception-resnet-v1": (22_756_328, 6_206_361_696),
    # Figures 15-19 as drawn; no reference implementation builds it (see test_inception_resnet_cost).
    "inception-resnet-v2-paper": (32_433_928, 9_257_953_632),
    # pytorchcv inceptionresnetv2: 55,843,464 (timm / Cadene build the same network); timm model card: 13.2 GMACs.
    "inception-resnet-v2": (55_843_464, 13_155_794_016),
}

# name -> (params, MACs) of the auxiliary heads alone.
AUX = {
    # Section 5: 1x1 conv 128 (+bias), FC 1024, FC 1000 on 4x4 maps after 4a (512 ch) and 4d (528 ch).
    "googlenet": (sum(c * 128 + 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000 for c in (512, 528)),
                  sum(c * 128 * 16 + 2048 * 1024 + 1024 * 1000 for c in (512, 528))),
    # torchvision: 13,004,888 parameters with both heads (the fixture's googlenet_aux shapes).
    "googlenet-tv": (13_004_888 - 6_624_904, 8_372_224),
    # torchvision: 27,161,264 - 23,834,568.
    "inception-v3": (27_161_264 - 23_834_568, 5_683_200),
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_params_and_macs(name: str) -> None:
    a = analyze(zoo.get(name))
    assert (a.totals["params"], a.totals["macs"]) == COUNTS[name]
    assert a.aux_totals is None  # heads are off by default


@pytest.mark.parametrize("name", sorted(AUX))
def test_harness_with_aux_heads(name: str) -> None:
    """test_verify builds the defaults (no heads); the heads get the same check, at two sizes."""
    net = zoo.get(name, aux_logits=True)
    c, h, w = net.input_shape
    for shape in ((c, h, w), (c, h + 32, w + 48)):
        verify(net, shape)


@pytest.mark.parametrize("name", sorted(AUX))
def test_aux_heads_counted_apart(name: str) -> None:
    a = analyze(zoo.get(name, aux_logits=True))
    assert (a.totals["params"], a.totals["macs"]) == COUNTS[name]
    assert a.aux_totals is not None
    assert (a.aux_totals["params"], a.aux_totals["macs"]) == AUX[name]


def test_reference_figures() -> None:
    """Cross-checks that the table above cannot get by rounding."""
    # torchvision's documented GFLOPS (MACs, to two decimals).
    assert round(COUNTS["googlenet-tv"][1] / 1e9, 2) == 1.50
    assert round(COUNTS["inception-v3"][1] / 1e9, 2) == 5.71
    # timm's model cards give GMACs to one decimal.
    assert round(COUNTS["inception-v4"][1] / 1e9, 1) == 12.3
    assert round(COUNTS["inception-resnet-v2"][1] / 1e9, 1) == 13.2
    # pytorchcv's bninception gives every convolution a bias (Caffe conversion) and a plain 7x7 first
    # layer; BN-Inception as published drops the biases (BatchNorm's beta takes their place) and makes
    # the first layer separable. Otherwise the networks are the same.
    a = analyze(zoo.get("bn-inception"))
    conv_biases = sum(ly.output_shape[0] for ly in a.layers if ly.type == "Conv" and ly.name != "conv1_depthwise")
    plain, separable = 7 * 7 * 3 * 64, 7 * 7 * 1 * 24 + 24 * 64  # 9,408 and 1,176 + 1,536
    assert a.totals["params"] - separable + plain + conv_biases == COUNTS["bn-inception-caffe"][0] == 11_295_240
    # MACs at 112x112: (9,408 - 2,712) * 112 * 112 = 83,994,624 fewer than the Caffe port.
    assert COUNTS["bn-inception-caffe"][1] - a.totals["macs"] == (plain - separable) * 112 * 112 == 83_994_624


def test_inception_resnet_v2_names() -> None:
    """The bare name is the released network; "-tf" is another name for it; the figures' reconstruction
    is "-paper". An alias adds no row to the zoo and builds the network under its registered name."""
    assert zoo.get("inception-resnet-v2-tf") == zoo.get("inception-resnet-v2")
    assert zoo.get("inception-resnet-v2-tf").name == "inception-resnet-v2"
    a = analyze(zoo.get("inception-resnet-v2-tf"))
    assert (a.totals["params"], a.totals["macs"]) == COUNTS["inception-resnet-v2"]
    assert "inception-resnet-v2-tf" not in zoo.names() and "inception-resnet-v2-paper" in zoo.names()
    assert zoo.aliases("inception-resnet-v2") == ["inception-resnet-v2-tf"] and zoo.aliases("inception-v4") == []
    assert zoo.info("inception-resnet-v2-tf") is zoo.info("inception-resnet-v2")
    assert zoo.info("inception-resnet-v2-paper").accuracy is None  # no trained network of that shape
    assert zoo.get("inception-resnet-v2-tf", num_classes=10).layers[-2].units == 10
    desc = zoo.info("inception-resnet-v2-paper").description
    assert "1154" in desc and "1152" in desc and "2048" in desc and "2144" in desc


def test_alias_is_a_close_match_and_cannot_shadow() -> None:
    with pytest.raises(CnnlabError, match="inception-resnet-v2-tf"):
        zoo.info("inception-resnet-v2-tff")
    with pytest.raises(ValueError, match="registered twice"):
        zoo.alias("inception-v4", "inception-resnet-v2")
    with pytest.raises(ValueError, match="no model"):
        zoo.alias("inception-v9", "inception-v8")


def test_keras_counts_inception_resnet_v2_without_gamma() -> None:
    """Keras/TF report 55,813,192 trainable parameters: TF-Slim's BatchNorm has a beta but no gamma,
    one weight per BatchNorm channel fewer than the PyTorch ports' affine BatchNorm."""
    a = analyze(zoo.get("inception-resnet-v2"))
    gammas = sum(ly.output_shape[0] for ly in a.layers if ly.type == "BatchNorm")
    assert gammas == 30_272
    assert a.totals["params"] - gammas == 55_813_192


def test_facenet_inception_resnet_v1() -> None:
    """Ports counting 23,995,624 build FaceNet's Inception-ResNet-v1: Figure 15 plus a sixth
    Inception-ResNet-C block, then 1792 -> 512 (no bias) with an affine BatchNorm before the classes."""
    a = analyze(zoo.get("inception-resnet-v1"))
    c_block = a.blocks["inception_resnet_c5"].params
    fc = a.layer("fc").params
    assert fc == 1792 * 1000 + 1000
    facenet = a.totals["params"] + c_block - fc + 1792 * 512 + 2 * 512 + 512 * 1000 + 1000
    assert facenet == 23_995_624


def test_bn_inception_first_layer() -> None:
    """Appendix: "separable convolution with depth multiplier 8 on the first convolutional layer":
    7x7/2 depthwise (3 -> 24, one group per input channel), then 1x1 to 64, no biases, nothing between."""
    layers = analyze(zoo.get("bn-inception")).layers
    first = [(ly.name, ly.type, ly.output_shape, ly.params, ly.macs) for ly in layers[:4]]
    assert first == [
        ("conv1_depthwise", "Conv", (24, 112, 112), 7 * 7 * 24, 7 * 7 * 24 * 112 * 112),
        ("conv1", "Conv", (64, 112, 112), 24 * 64, 24 * 64 * 112 * 112),
        ("bn1", "BatchNorm", (64, 112, 112), 128, 0),
        ("relu1", "ReLU", (64, 112, 112), 0, 0),
    ]
    assert zoo.get("bn-inception").layers[0].groups == 3
    # One input channel: still 8 maps per channel.
    assert analyze(zoo.get("bn-inception", in_channels=1)).layers[0].output_shape == (8, 112, 112)
    caffe = analyze(zoo.get("bn-inception-caffe")).layers
    assert (caffe[0].name, caffe[0].params) == ("conv1", 7 * 7 * 3 * 64 + 64)
    convs = [ly for ly in caffe if ly.type == "Conv"]
    assert all(ly.params == ly.macs // (ly.output_shape[1] * ly.output_shape[2]) + ly.output_shape[0]
               for ly in convs)  # weights + one bias per filter, everywhere
    desc = zoo.info("bn-inception").description
    assert all(m in desc for m in ("3c", "4c", "4d", "4e")) and "filter columns are followed" in desc


def _shapes(fixture: dict[str, list[int]], params_only: bool) -> int:
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(math.prod(s) for k, s in fixture.items() if not (params_only and k.endswith(buffers)))


@pytest.mark.parametrize("name, key, aux_logits", [
    ("googlenet-tv", "googlenet", False), ("googlenet-tv", "googlenet_aux", True),
    ("inception-v3", "inception_v3_noaux", False), ("inception-v3", "inception_v3", True),
])
def test_counts_agree_with_torchvision_fixture(name: str, key: str, aux_logits: bool) -> None:
    a = analyze(zoo.get(name, aux_logits=aux_logits))
    aux = a.aux_totals or {"params": 0, "buffers": 0}
    assert a.totals["params"] + aux["params"] == _shapes(FIXTURE[key], params_only=True)
    n_tracked = sum(k.endswith("num_batches_tracked") for k in FIXTURE[key])
    assert a.totals["buffers"] + aux["buffers"] == _shapes(FIXTURE[key], False) - _shapes(FIXTURE[key], True) - n_tracked


def _state_dict_shapes(name: str, aux_logits: bool) -> dict[str, list[int]]:
    net = zoo.get(name, aux_logits=aux_logits)
    with torch.device("meta"):
        model = build(net)
    return {k: list(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("key, aux_logits", [("googlenet", False), ("googlenet_aux", True)])
def test_googlenet_tv_state_dict_is_torchvisions(key: str, aux_logits: bool) -> None:
    ours = _state_dict_shapes("googlenet-tv", aux_logits)
    assert ours == FIXTURE[key]
    # Same order too, except that torchvision registers aux1/aux2 after inception5b while here
    # each head sits where it reads its features.
    assert [k for k in ours if not k.startswith("aux")] == [k for k in FIXTURE[key] if not k.startswith("aux")]


@pytest.mark.parametrize("key, aux_logits", [("inception_v3_noaux", False), ("inception_v3", True)])
def test_inception_v3_state_dict_is_torchvisions(key: str, aux_logits: bool) -> None:
    ours = _state_dict_shapes("inception-v3", aux_logits)
    assert ours == FIXTURE[key] and list(ours) == list(FIXTURE[key])  # keys, shapes and order


def _outputs(name: str, **kw: bool) -> dict[str, tuple[int, ...]]:
    return {ly.name: ly.output_shape for ly in analyze(zoo.get(name, **kw)).layers}


def _block_outputs(name: str, blocks: list[str], **kw: bool) -> dict[str, tuple[int, ...]]:
    """Shape flowing out of each named top-level block (the input of the layer after it)."""
    layers = analyze(zoo.get(name, **kw)).layers
    out: dict[str, tuple[int, ...]] = {}
    for b in blocks:
        idx = max(i for i, ly in enumerate(layers) if ly.name.startswith(b + ".") and not ly.aux)
        nxt = next(ly for ly in layers[idx + 1:] if not ly.aux)
        out[b] = nxt.input_shape
    return out


def test_googlenet_table1_grid() -> None:
    # Table 1, output size column.
    want = {"inception_3a": (256, 28, 28), "inception_3b": (480, 28, 28), "inception_4a": (512, 14, 14),
            "inception_4b": (512, 14, 14), "inception_4c": (512, 14, 14), "inception_4d": (528, 14, 14),
            "inception_4e": (832, 14, 14), "inception_5a": (832, 7, 7), "inception_5b": (1024, 7, 7)}
    assert _block_outputs("googlenet", list(want)) == want
    out = _outputs("googlenet", aux_logits=True)
    assert (out["pool1"], out["conv2"], out["pool4"], out["avgpool"]) == ((64, 56, 56), (192, 56, 56),
                                                                          (832, 7, 7), (1024, 1, 1))
    # Section 5: the auxiliary average pool gives 4x4x512 after (4a) and 4x4x528 after (4d).
    assert (out["aux1.pool"], out["aux2.pool"]) == ((512, 4, 4), (528, 4, 4))
    # The 5x5 branch is 5x5 with a bias (torchvision's variant has a 3x3 there, and BatchNorm).
    conv = next(ly for ly in analyze(zoo.get("googlenet")).layers if ly.name == "inception_3a.branch5x5.conv2")
    assert conv.params == (5 * 5 * 16 + 1) * 32


def test_bn_inception_figure5_grid() -> None:
    # Figure 5's output sizes. Its filter columns give 4c and 4d a 128-wide pool projection, so they
    # put out 160+160+160+128 = 608 and 96+192+192+128 = 608 maps where the size column says 576,
    # and 4e passes 608 through: 192+256+608 = 1056 (the Caffe BN-Inception has the same widths).
    want = {"inception_3a": (256, 28, 28), "inception_3b": (320, 28, 28), "inception_3c": (576, 14, 14),
            "inception_4a": (576, 14, 14), "inception_4b": (576, 14, 14), "inception_4c": (608, 14, 14),
            "inception_4d": (608, 14, 14), "inception_4e": (1056, 7, 7), "inception_5a": (1024, 7, 7),
            "inception_5b": (1024, 7, 7)}
    assert _block_outputs("bn-inception", list(want)) == want


def test_inception_v3_grid() -> None:
    # Table 1's input sizes: 35x35x288 into the 17x17 stage, 17x17x768, 8x8x1280, 8x8x2048 pooled.
    blocks = ["Mixed_5d", "Mixed_6a", "Mixed_6e", "Mixed_7a", "Mixed_7c"]
    assert _block_outputs("inception-v3", blocks) == {
        "Mixed_5d": (288, 35, 35), "Mixed_6a": (768, 17, 17), "Mixed_6e": (768, 17, 17),
        "Mixed_7a": (1280, 8, 8), "Mixed_7c": (2048, 8, 8)}
    out = _outputs("inception-v3", aux_logits=True)
    assert out["AuxLogits.pool"] == (768, 5, 5) and out["AuxLogits.conv1.conv"] == (768, 1, 1)


@pytest.mark.parametrize("name, stem, red_a, red_b", [
    ("inception-v4", (384, 35, 35), (1024, 17, 17), (1536, 8, 8)),         # Figures 3, 7, 8, 9
    ("inception-resnet-v1", (256, 35, 35), (896, 17, 17), (1792, 8, 8)),   # Figures 14, 7, 12, 15
    ("inception-resnet-v2-paper", (384, 35, 35), (1152, 17, 17), (2144, 8, 8)),  # Figures 3, 7, 18, 15
    ("inception-resnet-v2", (320, 35, 35), (1088, 17, 17), (2080, 8, 8)),
])
def test_inception_v4_family_grid(name: str, stem: tuple[int, ...], red_a: tuple[int, ...],
                                  red_b: tuple[int, ...]) -> None:
    assert _block_outputs(name, ["stem", "reduction_a", "reduction_b"]) == {
        "stem": stem, "reduction_a": red_a, "reduction_b": red_b}


def test_inception_v4_stem_figure3() -> None:
    blocks = ["stem.mixed1", "stem.mixed2", "stem.mixed3"]
    layers = analyze(zoo.get("inception-v4")).layers
    first = {b: next(i for i, ly in enumerate(layers) if ly.name.startswith(b + ".")) for b in blocks}
    # The input of each filter concat's first layer is the previous stage's output.
    assert [layers[first[b]].input_shape for b in blocks] == [(64, 147, 147), (160, 73, 73), (192, 71, 71)]


@pytest.mark.parametrize("name, klmn", [
    # Table 1 of the Inception-v4 paper: the k, l, m, n filter banks of Reduction-A.
    ("inception-v4", (192, 224, 256, 384)),
    ("inception-resnet-v1", (192, 192, 256, 384)),
    ("inception-resnet-v2-paper", (256, 256, 384, 384)),
    ("inception-resnet-v2", (256, 256, 384, 384)),
])
def test_reduction_a_table1(name: str, klmn: tuple[int, int, int, int]) -> None:
    out = _outputs(name)
    klm = tuple(out[f"reduction_a.branch3x3dbl.conv{i}"][0] for i in (1, 2, 3))
    assert (*klm, out["reduction_a.branch3x3.conv1"][0]) == klmn


@pytest.mark.parametrize("name, blocks", [
    ("inception-resnet-v1", (5, 10, 5)), ("inception-resnet-v2-paper", (5, 10, 5)),  # Figure 15
    ("inception-resnet-v2", (10, 20, 10)),
])
def test_residual_blocks_and_scaling(name: str, blocks: tuple[int, int, int]) -> None:
    net = zoo.get(name)
    res = [n for n in net.layers if isinstance(n, Residual)]
    by_grid = [[r for r in res if r.name.startswith(f"inception_resnet_{g}")] for g in "abc"]
    assert tuple(len(g) for g in by_grid) == blocks
    # Section 3.3: residuals scaled "between 0.1 and 0.3" (0.17, 0.10, 0.20 in the TF-Slim release);
    # the release's very last block is unscaled and has no ReLU.
    scales = [{r.scale for r in g} for g in by_grid]
    if name == "inception-resnet-v2":
        assert scales[:2] == [{0.17}, {0.10}] and by_grid[2][-1].scale == 1.0 and not by_grid[2][-1].post
        assert {r.scale for r in by_grid[2][:-1]} == {0.20}
    else:
        assert scales == [{0.17}, {0.10}, {0.20}]
    # The closing 1x1 "Linear" convolution: bias, no BatchNorm, no activation before the sum.
    last = res[0].body[-1]
    assert type(last).__name__ == "Conv" and last.bias and [type(c).__name__ for c in children(res[0])][-1] == "ReLU"


def test_inception_resnet_cost() -> None:
    """Section 3.2: Inception-ResNet-v1 costs about as much as Inception-v3. As drawn (5/10/5 blocks)
    Inception-ResNet-v2 is cheaper than Inception-v4 (0.76x); the released 10/20/10 network matches it."""
    macs = {n: COUNTS[n][1] for n in COUNTS}
    assert 1.0 < macs["inception-resnet-v1"] / macs["inception-v3"] < 1.1
    assert round(macs["inception-resnet-v2-paper"] / macs["inception-v4"], 2) == 0.76
    assert 1.0 < macs["inception-resnet-v2"] / macs["inception-v4"] < 1.1
    assert round(macs["inception-v4"] / 1e9, 2) == 12.25


def test_hierarchical_names() -> None:
    names = {ly.name for ly in analyze(zoo.get("inception-v4")).layers}
    assert {"stem.conv1", "inception_a1.branch3x3.conv2", "inception_c3.branch3x3dbl.split.b.conv1",
            "reduction_b.branch7x7x3.conv4"} <= names
    names = {ly.name for ly in analyze(zoo.get("googlenet")).layers}
    assert {"inception_3a.branch5x5.conv2", "inception_5b.branch_pool.pool"} <= names


# Every model trains: a real forward and backward pass, batch of 2, default input, CPU.
TRAIN = [("googlenet", True), ("googlenet-tv", True), ("bn-inception", False), ("bn-inception-caffe", False),
         ("inception-v3", True), ("inception-v4", False), ("inception-resnet-v1", False),
         ("inception-resnet-v2", False), ("inception-resnet-v2-paper", False)]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core runner (pytest -n 2) a second thread per worker only
    contends, and made these passes several times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
@pytest.mark.parametrize("name, with_aux", TRAIN)
def test_forward_backward(name: str, with_aux: bool, one_thread: None) -> None:
    torch.manual_seed(0)
    net = zoo.get(name, num_classes=10, **({"aux_logits": True} if with_aux else {}))
    model = build(net, logits=True).train()
    x = torch.randn(2, *net.input_shape)
    y = torch.tensor([3, 7])
    t = time.perf_counter()
    out = model(x)
    outs = out if isinstance(out, tuple) else (out,)
    assert len(outs) == 1 + (2 if name.startswith("googlenet") and with_aux else int(with_aux))
    assert all(o.shape == (2, 10) for o in outs)
    loss = outs[0].new_zeros(())
    for i, o in enumerate(outs):  # auxiliary losses weighted 0.3 (GoogLeNet, Section 5)
        loss = loss + (1.0 if i == 0 else 0.3) * torch.nn.functional.cross_entropy(o, y)
    loss.backward()
    elapsed = time.perf_counter() - t
    assert torch.isfinite(loss)
    missing = [k for k, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing[:5]  # every branch and head is wired into the loss
    model.eval()
    with torch.no_grad():
        assert model(x[:1]).shape == (1, 10)  # auxiliary heads are silent at inference
    print(f"{name}: forward+backward {elapsed:.1f}s")


def test_zoo_command_and_summary_know_the_alias(capsys) -> None:
    from cnnlab.cli import main

    assert main(["zoo", "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["inception-resnet-v2"]["aliases"] == ["inception-resnet-v2-tf"]
    assert "inception-resnet-v2-tf" not in rows
    assert (rows["inception-resnet-v2-paper"]["params"], rows["bn-inception"]["params"]) == (32_433_928, 11_278_528)
    assert main(["zoo"]) == 0
    assert "inception-resnet-v2-tf: another name for inception-resnet-v2" in capsys.readouterr().out
    assert main(["summary", "inception-resnet-v2-tf", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["model"], d["totals"]["params"]) == ("inception-resnet-v2", 55_843_464)
