"""Adapting networks to new inputs: seed 000's AlexNet on 270x480 game frames, LeNet-5 on raw
MNIST, VGG16 on CIFAR, ResNet50 anywhere, inputs that are too small, channel and class changes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cnnlab import zoo
from cnnlab.adapt import apply, diagnose, train_step
from cnnlab.analysis import analyze
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.layers import Conv, Dense, Flatten, MaxPool
from cnnlab.network import Network, load_spec
from verify import verify

ALEXNET_PARAMS = 62_378_344  # one-tower AlexNet at 3x227x227, 1000 classes
FRAME = (3, 270, 480)  # seed 000's game frames, channels first


@pytest.fixture(scope="module")
def alex() -> tuple:
    net = zoo.get("alexnet-onetower")
    return net, diagnose(net, FRAME)


def _rows(report) -> dict:
    return {r["layer"]: r for r in report.layers}


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["adapt", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


# --------------------------------------------------------------------------- AlexNet, seed 000


def test_alexnet_seed_table(alex: tuple) -> None:
    _, r = alex
    rows = _rows(r)
    # Seed 000's adapted table, (H, W, C) there, (C, H, W) here; parameters as the seed prints them.
    seed = {
        "conv1": ((96, 65, 118), 34_944), "pool1": ((96, 32, 58), 0), "conv2": ((256, 32, 58), 614_656),
        "pool2": ((256, 15, 28), 0), "conv3": ((384, 15, 28), 885_120), "conv4": ((384, 15, 28), 1_327_488),
        "conv5": ((256, 15, 28), 884_992), "pool5": ((256, 7, 13), 0), "fc6": ((4096,), 95_424_512),
        "fc7": ((4096,), 16_781_312), "fc8": ((1000,), 4_097_000),
    }
    for name, (shape, params) in seed.items():
        assert tuple(rows[name]["shape"]) == shape, name
        assert rows[name]["params"] == params, name
    assert rows["flatten"]["shape"] == [23_296]  # the seed's activation size after pool5: 7*13*256
    # and its 227x227 table on the design side
    assert rows["conv1"]["design_shape"] == [96, 55, 55] and rows["pool5"]["design_shape"] == [256, 6, 6]
    assert rows["fc6"]["design_params"] == 37_752_832
    assert r.before == {"params": ALEXNET_PARAMS, "macs": 1_135_256_096}
    assert r.after["params"] == ALEXNET_PARAMS - 37_752_832 + 95_424_512 == 120_050_024


def test_alexnet_dropped_pixels(alex: tuple) -> None:
    _, r = alex
    inexact = [(f.layer, f.detail.split(";")[0][0], f.detail) for f in r.findings if f.kind == "inexact"]
    # conv1: (270-11)/4 = 64.75 -> 3 rows lost; (480-11)/4 = 117.25 -> 1 column; then the pools
    assert [(layer, axis) for layer, axis, _ in inexact] == [
        ("conv1", "H"), ("conv1", "W"), ("pool1", "W"), ("pool2", "H"), ("pool2", "W"), ("pool5", "W")]
    assert "65.75 -> 65 (floor); the last 3 rows are never seen (exact at the design input)" in inexact[0][2]
    assert "the last column is never seen" in inexact[1][2]
    head = [f for f in r.findings if f.kind == "head"]
    assert head[0].layer == "flatten" and "23,296 values instead of the designed 256x6x6 = 9,216" in head[0].detail
    fc6 = [f for f in r.findings if f.layer == "fc6"]
    assert fc6[0].kind == "params" and "37,752,832 -> 95,424,512 (+57,671,680)" in fc6[0].detail
    assert not any(f.kind == "same" for f in r.findings)  # stride-1 padded convs keep their size, as the seed checks
    assert r.verdict.startswith("needs a fix: 6 divisions drop input pixels")


def test_alexnet_best_fix_keeps_designed_parameters(alex: tuple) -> None:
    net, r = alex
    best = r.fixes[0]
    assert best.params == ALEXNET_PARAMS and best.keeps_weights and best.remaining == ()
    assert best.input == FRAME  # the frames go in untouched
    adapted = apply(net, best)
    a = analyze(adapted)
    assert a.input_shape == FRAME and a.totals["params"] == ALEXNET_PARAMS
    assert a.layer("fc6").params == 37_752_832 and a.layer("avgpool").output_shape == (256, 6, 6)
    assert not [f for f in a.findings if f["kind"] == "inexact"]
    verify(adapted, FRAME)  # the built module agrees with the arithmetic, asymmetric padding included


def test_alexnet_fixes_ranked_and_priced(alex: tuple) -> None:
    net, r = alex
    assert [f.id for f in r.fixes] == list(range(1, len(r.fixes) + 1))
    by = {f.name: f for f in r.fixes}
    # (a) nearest clean size: 32k + 35 per axis (227 = 32*6 + 35): 259 and 483
    clean = by["input-clean"]
    assert clean.input == (3, 259, 483) and clean.params == ALEXNET_PARAMS - 37_752_832 + (256 * 7 * 14 * 4096 + 4096)
    assert "crop 11 rows, pad 3 columns" in clean.changes[0]
    # (b) padding: conv1 gains 1 row and 3 columns, pool1 and pool5 one each; the map becomes 8x14
    pad = apply(net, by["pad-layers"])
    assert analyze(pad).layer("pool5").output_shape == (256, 8, 14)
    assert by["pad-layers"].params == ALEXNET_PARAMS - 37_752_832 + (256 * 8 * 14 * 4096 + 4096) == 142_070_120
    assert "conv1: padding 0 -> (0, 1, 1, 2)" in by["pad-layers"].changes[0]
    # (c) adaptive pooling alone keeps the parameters but leaves the dropped pixels
    assert by["adaptive-pool"].params == ALEXNET_PARAMS and len(by["adaptive-pool"].remaining) == 6
    # (d) the head at the new flatten size is the network unchanged
    assert by["head"].params == r.after["params"] and by["head"].macs == r.after["macs"]
    assert by["input-design"].input == (3, 227, 227) and by["input-design"].macs == r.before["macs"]
    # ranked: no fix that drops pixels comes before one that does not
    drops = [bool(f.remaining) for f in r.fixes]
    assert drops == sorted(drops)
    for f in r.fixes:  # every fix's figures are the analysis of the network it returns
        t = analyze(apply(net, f)).totals
        assert (t["params"], t["macs"]) == (f.params, f.macs), f.name


def test_rounding_floor_vs_ceil(alex: tuple) -> None:
    net, r = alex
    assert r.rounding == "floor (PyTorch, TensorFlow)"
    rounding = {f.layer: f.detail for f in r.findings if f.kind == "rounding"}
    assert rounding["pool1"] == "floor (PyTorch, TensorFlow) gives 32x58, ceil (Caffe) gives 32x59"
    assert rounding["pool5"] == "floor (PyTorch, TensorFlow) gives 7x13, ceil (Caffe) gives 7x14"
    assert r.other_rounding["params"] == 142_070_120  # Caffe: 8x14 before the head
    caffe = diagnose(net, FRAME, rounding="ceil")
    assert caffe.rounding == "ceil (Caffe)" and caffe.before == r.before  # 227 divides exactly either way
    assert _rows(caffe)["pool5"]["shape"] == [256, 8, 14] and caffe.after["params"] == 142_070_120
    assert any(f.kind == "ceil" and f.layer == "pool1" for f in caffe.findings)
    assert [f.layer for f in caffe.findings if f.kind == "inexact"] == ["conv1", "conv1"]  # convs always floor


def test_seed_classes_29(alex: tuple) -> None:
    net, _ = alex
    r = diagnose(net, FRAME, num_classes=29)
    cls = [f for f in r.findings if f.kind == "classes"]
    assert cls[0].layer == "fc8" and "1,000 -> 29 classes: params 4,097,000 -> 118,813 (-3,978,187)" in cls[0].detail
    assert r.after["params"] == 120_050_024 - 4_097_000 + 4096 * 29 + 29 == 116_071_837
    assert r.fixes[0].params == ALEXNET_PARAMS - 4_097_000 + 118_813 and r.fixes[0].keeps_weights
    assert analyze(apply(net, r.fixes[0])).output_shape == (29,)
    # the published model is `before`; the verdict names the 29-class figures as such
    assert r.before["params"] == ALEXNET_PARAMS
    assert "the head's input changes (58,400,157 -> 116,071,837 params with 29 classes; the published model " \
           "has 62,378,344)" in r.verdict
    # fc8 is new in every fix: no fix claims plain designed weights
    assert r.fixes[0].new_weights == ("fc8",) and r.fixes[0].weights == "designed except fc8"
    by = {f.name: f for f in r.fixes}
    assert by["head"].new_weights == ("fc6", "fc8") and by["head"].weights == "new: fc6, fc8"
    assert all("fc8" in f.new_weights for f in r.fixes)


# --------------------------------------------------------------------------- other models


def test_lenet5_on_raw_mnist() -> None:
    net = zoo.get("lenet5")
    r = diagnose(net, (1, 28, 28))
    assert r.after is None and r.min_input == (1, 32, 32)
    assert "layer 'c5'" in r.error and "smallest input that works is 1x32x32" in r.error
    assert [f.kind for f in r.findings] == ["too-small"] and r.findings[0].layer == "c5"
    assert [f.name for f in r.fixes] == ["pad-first", "input-clean"]
    assert r.fixes[0].changes == ("c1: padding 0 -> 2",) and r.fixes[1].input == (1, 32, 32)
    adapted = apply(net, r.fixes[0])
    a = analyze(adapted)
    assert a.input_shape == (1, 28, 28) and a.layer("c1").output_shape == (6, 28, 28)
    assert a.totals["params"] == 60_840 and a.layer("c5").output_shape == (120, 1, 1)
    loss, moved = train_step(adapted)
    assert loss == loss and moved > 0  # finite loss, the weights moved
    with pytest.raises(CnnlabError, match="c5"):
        analyze(net, (1, 31, 31))  # 32 really is the smallest


def test_too_small_shows_the_layers_that_run() -> None:
    r = diagnose(zoo.get("lenet5"), (1, 28, 28))
    rows = _rows(r)
    # 28 - 4 = 24, /2 = 12, 12 - 4 = 8, /2 = 4: every layer up to s4 runs, c5's 5x5 window does not fit 4x4
    assert [(n, rows[n]["shape"], rows[n]["params"]) for n in ("c1", "s2", "c3", "s4")] == [
        ("c1", [6, 24, 24], 156), ("s2", [6, 12, 12], 12), ("c3", [16, 8, 8], 1_516), ("s4", [16, 4, 4], 32)]
    assert rows["c1"]["macs"] == 6 * 24 * 24 * 25 == 86_400
    assert [n for n, row in rows.items() if row["fails"]] == ["c5"]
    assert rows["c5"]["shape"] is None and rows["f6"]["shape"] is None and rows["f6"]["params"] is None


def test_cli_table_marks_the_failing_layer(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _cli(capsys, "lenet5", "--input", "1x28x28")
    assert rc == 2
    lines = {ln.split()[1]: ln for ln in out.splitlines() if ln.startswith("│ ")}
    assert "6x24x24" in lines["c1"] and "16x4x4" in lines["s4"] and "fails" in lines["c5"]
    assert "fails" not in lines["f6"]


def test_vgg16_on_cifar() -> None:
    net = zoo.get("vgg16")
    r = diagnose(net, (3, 32, 32), num_classes=10)
    rows = _rows(r)
    assert rows["features.30"]["shape"] == [512, 1, 1] and rows["features.30"]["design_shape"] == [512, 7, 7]
    up = [f for f in r.findings if f.kind == "upsample"]
    assert up[0].layer == "avgpool" and "turns a 1x1 map into 7x7" in up[0].detail
    assert r.after["params"] == 138_357_544 - 4_097_000 + 40_970  # the 7x7 copy keeps fc6 at 102.8M
    head = r.fixes[0]
    assert head.name == "head" and head.input == (3, 32, 32)
    # 14,714,688 conv parameters + 512-512-10 head
    assert head.params == 14_714_688 + 2 * (512 * 512 + 512) + 512 * 10 + 10 == 15_245_130
    assert "classifier.0: 4,096 -> 512 units (no wider than its 512 inputs)" in head.changes
    design = next(f for f in r.fixes if f.name == "input-design")
    assert "input: upsampled 49.0x in area" in design.remaining
    adapted = apply(net, head)
    assert analyze(adapted).layer("avgpool").output_shape == (512, 1, 1)
    loss, moved = train_step(adapted)
    assert loss == loss and moved > 0


def test_resnet50_needs_no_fix() -> None:
    net = zoo.get("resnet50")
    r = diagnose(net, (3, 300, 500))
    assert r.fixes == [] and r.verdict.startswith("no fix needed: 'avgpool' pools any map to the 2,048 values")
    assert r.before["params"] == r.after["params"] == 25_557_032
    assert not [f for f in r.findings if f.kind in ("inexact", "head", "params")]
    # the 1x1 stride-2 shortcuts skip rows by design: reported, not counted as a problem
    assert any(f.kind == "skip" and f.layer == "layer3.0.downsample.0" for f in r.findings)


def test_grayscale_into_alexnet() -> None:
    net = zoo.get("alexnet")
    r = diagnose(net, (1, 227, 227))
    ch = [f for f in r.findings if f.kind == "channels"]
    assert [f.layer for f in ch] == ["conv1"] and "params 34,944 -> 11,712 (-23,232)" in ch[0].detail
    assert r.before["params"] == 60_965_224 and r.after["params"] == 60_965_224 - 23_232
    assert [f.name for f in r.fixes] == ["match-channels"]
    assert r.fixes[0].input == (3, 227, 227) and r.fixes[0].params == 60_965_224 and r.fixes[0].keeps_weights
    # the size needs nothing, the channels do: the verdict says which, and what fix 1 keeps
    assert r.verdict == ("the size needs no fix: the input has the design size; 3 -> 1 input channels give conv1 "
                         "new weights: params 34,944 -> 11,712 (-23,232); fix 1 (match-channels) feeds 3 channels "
                         "and keeps the designed weights (60,965,224 params)")
    r = diagnose(net, (3, 227, 227), num_classes=29)
    assert r.fixes == [] and r.verdict == ("no fix needed: the input has the design size; the class change gives "
                                           "fc8 new weights: params 4,097,000 -> 118,813 (-3,978,187)")


def test_vgg16_too_small_best_fix_leaves_nothing_flagged() -> None:
    net = zoo.get("vgg16")
    r = diagnose(net, (3, 16, 16))  # 4 halvings leave 1x1; features.30 cannot halve it: 32x32 is the least
    best = r.fixes[0]
    assert best.name == "pad-first+head" and best.remaining == () and best.input == (3, 16, 16)
    assert best.changes[:2] == ("insert pad_input: ZeroPad 8", "avgpool: output 7x7 -> 1x1 (no repeated values)")
    # 14,714,688 conv parameters + 512-512-1000 head
    assert best.params == 14_714_688 + 2 * (512 * 512 + 512) + 512 * 1_000 + 1_000 == 15_753_000
    assert best.new_weights == ("classifier.0", "classifier.3", "classifier.6") and not best.keeps_weights
    pad = next(f for f in r.fixes if f.name == "pad-first")  # designed weights, but the head sees 49 copies
    assert pad.keeps_weights and pad.params == 138_357_544
    assert pad.remaining == ("avgpool: repeats a 1x1 map as 7x7",)
    assert pad.description.endswith("(leaves avgpool: repeats a 1x1 map as 7x7)")
    a = analyze(apply(net, best))
    assert a.layer("features.30").output_shape == (512, 1, 1) and a.totals["params"] == 15_753_000
    verify(apply(net, best), (3, 16, 16))


def test_grayscale_frames_keep_the_designed_weights() -> None:
    net = zoo.get("alexnet-onetower")
    r = diagnose(net, (1, 270, 480))
    best = r.fixes[0]
    assert best.name == "match-channels+pad-layers+adaptive-pool" and best.input == FRAME
    assert best.params == ALEXNET_PARAMS and best.keeps_weights and best.remaining == () and best.weights == "designed"
    assert best.changes[0] == "input: 1 -> 3 channels (repeat the single channel)"
    a = analyze(apply(net, best))
    assert a.input_shape == FRAME and a.totals["params"] == ALEXNET_PARAMS and a.layer("conv1").params == 34_944
    assert not [f for f in a.findings if f["kind"] == "inexact"]
    by = {f.name: f for f in r.fixes}
    # the same geometry on one channel: conv1 3*11*11*96 + 96 -> 1*11*11*96 + 96 weights, retrained
    assert by["pad-layers+adaptive-pool"].params == ALEXNET_PARAMS - 23_232
    assert by["pad-layers+adaptive-pool"].new_weights == ("conv1",)
    assert by["match-channels"].remaining and by["match-channels"].params == 120_050_024
    # only channel combinations that keep every designed weight are offered
    assert all(f.keeps_weights for f in r.fixes if f.name.startswith("match-channels+"))
    assert [f.keeps_weights for f in r.fixes[:3]] == [True, True, True]


def test_fixed_global_window_becomes_global_pooling() -> None:
    net = zoo.get("resnet20-v2")
    r = diagnose(net, (3, 16, 16))  # its 8x8 average pool needs an 8x8 map: 32x32 inputs and up
    assert r.after is None and "'avgpool'" in r.error and r.min_input == (3, 29, 29)
    fix = r.fixes[0]
    assert fix.name == "global-pool" and fix.input == (3, 16, 16) and fix.params == r.before["params"]
    assert fix.changes == ("avgpool: AvgPool 8 -> AdaptiveAvgPool 1x1",)
    verify(apply(net, fix), (3, 16, 16))


def test_same_layer_that_stops_keeping_the_size() -> None:
    # a strided pool that keeps a 1x1 map at the design input halves a larger one
    net = Network("tiny", (Conv(name="conv", filters=4, kernel=1), MaxPool(name="pool", kernel=3, stride=2, padding=1),
                           Flatten(name="flatten"), Dense(name="fc", units=2)), (1, 1, 1))
    r = diagnose(net, (1, 8, 8))
    same = [f for f in r.findings if f.kind == "same"]
    assert [f.layer for f in same] == ["pool"] and same[0].detail.endswith("now 8x8 -> 4x4")
    assert r.fixes[0].name == "adaptive-pool" and r.fixes[0].params == r.before["params"] == 8 + 10


# --------------------------------------------------------------------------- command line


def test_cli_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _cli(capsys, "alexnet-onetower", "--input", "3x270x480", "--format", "json")
    d = json.loads(out)
    assert rc == 0
    assert {"model", "design_input", "input", "findings", "before", "after", "fixes"} <= set(d)
    assert d["model"] == "alexnet-onetower" and d["design_input"] == [3, 227, 227] and d["input"] == [3, 270, 480]
    assert all(set(f) == {"layer", "kind", "detail"} for f in d["findings"])
    assert d["before"] == {"params": ALEXNET_PARAMS, "macs": 1_135_256_096} and d["after"]["params"] == 120_050_024
    assert [f["id"] for f in d["fixes"]] == list(range(1, len(d["fixes"]) + 1))
    assert {"id", "description", "params", "macs", "input"} <= set(d["fixes"][0])
    assert d["fixes"][0]["params"] == ALEXNET_PARAMS and d["fixes"][0]["input"] == [3, 270, 480]


def test_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _cli(capsys, "alexnet-onetower", "--input", "270x480x3", "--layout", "hwc")
    assert rc == 0
    assert "96x65x118" in out and "95,424,512" in out and "Fixes, best first" in out
    assert "floor (PyTorch, TensorFlow)" in out and "pad-layers+adaptive-pool" in out
    flat = next(ln for ln in out.splitlines() if ln.startswith("│ flatten"))
    assert "9,216" in flat and "23,296" in flat and "9216" not in flat  # 256x6x6 and 256x7x13


def test_cli_too_small_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for fmt in ("table", "json"):
        rc, out, err = _cli(capsys, "alexnet-onetower", "--input", "3x50x50", "--format", fmt)
        assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
        assert "layer 'pool5'" in err and "smallest input that works is 3x67x67" in err
    assert "after" not in json.loads(out) and json.loads(out)["min_input"] == [3, 67, 67]
    analyze(zoo.get("alexnet-onetower"), (3, 67, 67))  # 67 = 32 + 35 runs; 66 does not
    with pytest.raises(CnnlabError, match="pool5"):
        analyze(zoo.get("alexnet-onetower"), (3, 66, 66))


def test_smallest_input_keeps_the_axis_that_works(capsys: pytest.CaptureFixture[str]) -> None:
    net = zoo.get("alexnet")
    r = diagnose(net, (3, 60, 400))  # only the height is short: 67 = 32 + 35 rows reach pool5
    assert r.min_input == (3, 67, 400) and r.min_input_any == (3, 67, 67)
    assert "the smallest input that works is 3x67x400 (height 60 -> 67; the smallest of all is 3x67x67)" in r.error
    analyze(net, (3, 67, 400))
    with pytest.raises(CnnlabError, match="pool5"):
        analyze(net, (3, 66, 400))
    assert diagnose(net, (3, 400, 20)).min_input == (3, 400, 67)
    rc, out, err = _cli(capsys, "alexnet", "--input", "3x60x400", "--format", "json")
    assert rc == 2 and "3x67x400" in err
    assert json.loads(out)["min_input"] == [3, 67, 400] and json.loads(out)["min_input_any"] == [3, 67, 67]


def test_cli_in_channels_and_classes(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _cli(capsys, "alexnet", "--in-channels", "1", "--num-classes", "29", "--format", "json")
    d = json.loads(out)
    assert rc == 0 and d["input"] == [1, 227, 227]
    assert d["after"]["params"] == 60_965_224 - 23_232 - 4_097_000 + 118_813
    assert {f["kind"] for f in d["findings"]} == {"channels", "classes"}


def test_cli_apply_save_check(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    spec = tmp_path / "lenet-mnist.yaml"
    rc, out, _ = _cli(capsys, "lenet5", "--input", "1x28x28", "--apply", "1", "--save", str(spec), "--check",
                      "--format", "json")
    d = json.loads(out)
    assert rc == 0 and d["fix"]["name"] == "pad-first" and d["input"] == [1, 28, 28] and d["params"] == 60_840
    assert d["train_step"]["weight_change"] > 0
    loaded = load_spec(spec)
    assert loaded.input_shape == (1, 28, 28) and analyze(loaded).totals["params"] == 60_840
    rc, out, _ = _cli(capsys, str(spec), "--input", "1x28x28", "--format", "json")  # the spec is now the design
    assert rc == 0 and json.loads(out)["fixes"] == [] and json.loads(out)["verdict"].startswith("no fix needed")


@pytest.mark.parametrize("argv, message", [
    (["lenet5", "--input", "1x28x28", "--apply", "9"], "no fix '9'"),
    (["alexnet", "--input", "3x227x227", "--in-channels", "1"], "give the channels once"),
    (["alexnet"], "give the new input with --input"),
    (["alexnet", "--input", "3x227x227", "--num-classes", "0"], "--num-classes must be >= 1"),
    (["alexnet", "--input", "3x227x227", "--save", "x.yaml"], "need --apply"),
    (["alexnet", "--input", "3x227"], "malformed --input"),
])
def test_cli_bad_input(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    rc, _, err = _cli(capsys, *argv)
    assert rc == 2 and message in err and err.count("\n") == 1


def test_python_bad_input() -> None:
    with pytest.raises(CnnlabError, match="C x H x W"):
        diagnose(zoo.get("alexnet"), (3, 0, 5))
    with pytest.raises(CnnlabError, match="no dense output layer"):
        diagnose(zoo.get("alexnet").__class__("convs", zoo.get("alexnet").layers[:3], (3, 227, 227)),
                 (3, 227, 227), num_classes=5)


def test_diagnosis_does_not_import_torch() -> None:
    code = ("import sys; from cnnlab import zoo; from cnnlab.adapt import diagnose, apply; "
            "r = diagnose(zoo.get('alexnet-onetower'), (3, 270, 480)); apply(zoo.get('alexnet-onetower'), r.fixes[0]); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_alexnet_fix_trains_at_frame_size(alex: tuple) -> None:
    net, _ = alex
    r = diagnose(net, FRAME, num_classes=29)
    loss, moved = train_step(apply(net, r.fixes[0]), batch=1)
    assert loss == loss and moved > 0


def test_a_module_adapts_from_the_input_it_was_made_for(tmp_path, capsys) -> None:
    """A module has no design input: --design gives it, --input is the new one (not both the same)."""
    (tmp_path / "net.py").write_text(
        "from torch import nn\n\n\n"
        "def Net(num_classes: int = 10) -> nn.Module:\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "                         nn.Linear(8, num_classes))\n")
    ref = f"{tmp_path / 'net.py'}:Net"
    assert main(["adapt", ref, "--design", "3x33x33", "--input", "3x32x32", "--kwargs", "num_classes=4",
                 "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    # 3x3 stride 2 without padding: (33 - 3)/2 + 1 = 16 exactly; (32 - 3)/2 + 1 = 15.5 -> 15, a row dropped.
    assert d["design_input"] == [3, 33, 33] and d["input"] == [3, 32, 32]
    conv = d["layers"][0]
    assert conv["design_shape"] == [8, 16, 16] and conv["shape"] == [8, 15, 15]
    # 8*3*3*3 + 8 = 224 conv params; the dense layer 8*4 + 4 = 36 (num_classes=4 reached the factory)
    assert conv["params"] == 224 and d["layers"][-1]["params"] == 36
    assert main(["adapt", ref, "--input", "3x32x32"]) == 2
    assert "--design CxHxW" in capsys.readouterr().err
    assert main(["adapt", "lenet5", "--design", "1x32x32", "--input", "1x28x28"]) == 2
    assert "--design applies to a module" in capsys.readouterr().err


def test_a_keras_file_of_unknown_size_adapts_from_its_design(tmp_path, capsys) -> None:
    """Input(shape=(None, None, 3)): --design gives the size it was made for, --input the new one."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("Keras runs on PyTorch here")
    # Named layers: Keras' automatic names count up process-wide, and other tests expect theirs.
    inp = keras.Input((None, None, 3), name="img")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(keras.layers.Conv2D(4, 3, strides=2, name="conv")(inp))
    p = tmp_path / "k.json"
    p.write_text(keras.Model(inp, keras.layers.Dense(2, name="fc")(x), name="tiny").to_json())
    assert main(["adapt", str(p), "--design", "3x33x33", "--input", "3x32x32", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    # 3x3 stride 2: (33 - 3)/2 + 1 = 16 at the design, (32 - 3)/2 + 1 = 15.5 -> 15 at the new input
    assert d["design_input"] == [3, 33, 33] and d["layers"][0]["design_shape"] == [4, 16, 16]
    assert d["layers"][0]["shape"] == [4, 15, 15]
    assert main(["adapt", str(p), "--input", "3x32x32"]) == 2
    assert "--design CxHxW with adapt" in capsys.readouterr().err
