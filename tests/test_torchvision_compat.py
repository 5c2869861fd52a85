"""The torchvision-layout zoo models have torchvision's exact state_dict (keys, order and shapes),
so a published torchvision weight file loads with ``load_state_dict(strict=True)``, and with
those weights they compute torchvision's function.

Reference: tests/fixtures/torchvision_state_dict_shapes.json, the state_dict() key -> shape of
torchvision 0.29.1 models built with default arguments (torchvision itself is not a dependency).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cnnlab import zoo
from cnnlab.torch_backend import build

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "torchvision_state_dict_shapes.json").read_text())

PAIRS = {"alexnet-tv": "alexnet"}
PAIRS |= {f"vgg{d}{s}": f"vgg{d}{s.replace('-', '_')}" for d in (11, 13, 16, 19) for s in ("", "-bn")}
PAIRS |= {f"resnet{d}-tv": f"resnet{d}" for d in (18, 34, 50, 101, 152)}


def _state_shapes(name: str, **kwargs: int) -> dict[str, list[int]]:
    with torch.device("meta"):
        model = build(zoo.get(name, **kwargs))
    return {k: list(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("ours,theirs", PAIRS.items())
def test_state_dict_keys_and_shapes_equal_torchvision(ours: str, theirs: str) -> None:
    got, ref = _state_shapes(ours), REFERENCE[theirs]
    missing, unexpected = sorted(set(ref) - set(got)), sorted(set(got) - set(ref))
    assert not missing and not unexpected, f"{ours}: missing {missing[:5]}, unexpected {unexpected[:5]}"
    wrong = {k: (got[k], ref[k]) for k in ref if got[k] != ref[k]}
    assert not wrong, f"{ours}: shapes differ: {list(wrong.items())[:5]}"
    assert list(got) == list(ref)  # same order too, as torchvision's own modules register them


@pytest.mark.parametrize("ours,theirs", PAIRS.items())
def test_parameter_count_equals_torchvision(ours: str, theirs: str) -> None:
    from cnnlab.analysis import analyze

    ref = REFERENCE[theirs]
    # Trainable tensors are every entry except BatchNorm's running statistics and counter.
    params = sum(_numel(s) for k, s in ref.items() if not k.endswith(("running_mean", "running_var",
                                                                        "num_batches_tracked")))
    assert analyze(zoo.get(ours)).totals["params"] == params


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def test_other_class_count_changes_only_the_classifier() -> None:
    got, ref = _state_shapes("resnet50-tv", num_classes=10), REFERENCE["resnet50"]
    diff = {k for k in ref if got[k] != ref[k]}
    assert diff == {"fc.weight", "fc.bias"} and got["fc.weight"] == [10, 2048]


# --------------------------------------------------------------------------- same function
# torchvision's ResNet forward, written out with torch.nn.functional from its documented layout
# (7x7/2 conv, BN, ReLU, 3x3/2 max-pool; units conv-BN-ReLU with the stride in the 3x3 conv;
# downsample = 1x1 conv + BN; ReLU after the sum; global average pool; fc), reading only the
# state_dict. If our module computed anything else, torchvision weights would load but mislead.


def _bn(sd: dict[str, torch.Tensor], p: str, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                        training=False, eps=1e-5)


def _reference_resnet(sd: dict[str, torch.Tensor], x: torch.Tensor, units: tuple[int, ...],
                      bottleneck: bool) -> torch.Tensor:
    x = F.relu(_bn(sd, "bn1", F.conv2d(x, sd["conv1.weight"], stride=2, padding=3)))
    x = F.max_pool2d(x, 3, 2, 1)
    for li, n in enumerate(units, start=1):
        for u in range(n):
            p = f"layer{li}.{u}"
            stride = 2 if u == 0 and li > 1 else 1
            if bottleneck:
                y = F.relu(_bn(sd, p + ".bn1", F.conv2d(x, sd[p + ".conv1.weight"])))
                y = F.relu(_bn(sd, p + ".bn2", F.conv2d(y, sd[p + ".conv2.weight"], stride=stride, padding=1)))
                y = _bn(sd, p + ".bn3", F.conv2d(y, sd[p + ".conv3.weight"]))
            else:
                y = F.relu(_bn(sd, p + ".bn1", F.conv2d(x, sd[p + ".conv1.weight"], stride=stride, padding=1)))
                y = _bn(sd, p + ".bn2", F.conv2d(y, sd[p + ".conv2.weight"], padding=1))
            if p + ".downsample.0.weight" in sd:
                x = _bn(sd, p + ".downsample.1", F.conv2d(x, sd[p + ".downsample.0.weight"], stride=stride))
            x = F.relu(x + y)
    return F.linear(x.mean((2, 3)), sd["fc.weight"], sd["fc.bias"])


@pytest.mark.parametrize("name,units,bottleneck", [("resnet18-tv", (2, 2, 2, 2), False),
                                                   ("resnet50-tv", (3, 4, 6, 3), True)])
def test_forward_equals_torchvision_layout(name: str, units: tuple[int, ...], bottleneck: bool) -> None:
    torch.manual_seed(0)
    model = build(zoo.get(name), (3, 64, 64)).eval()
    sd = model.state_dict()
    with torch.no_grad():  # random statistics too, so every BatchNorm matters
        for k, v in sd.items():
            if k.endswith("running_var"):
                v.uniform_(0.5, 1.5)
            elif v.is_floating_point():
                v.normal_(0, 0.05 if v.dim() > 1 else 0.2)
        x = torch.randn(2, 3, 64, 64)
        ours, ref = model(x), _reference_resnet(sd, x, units, bottleneck)
    assert ours.shape == (2, 1000)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_alexnet_tv_figures() -> None:
    from cnnlab.analysis import analyze

    # torchvision's AlexNet documentation: num_params 61100840, GFLOPS 0.71 (multiply-accumulates).
    a = analyze(zoo.get("alexnet-tv"))
    assert a.totals["params"] == 61_100_840 and round(a.totals["macs"] / 1e9, 2) == 0.71
    assert a.layer("features.12").output_shape == (256, 6, 6)  # the adaptive pool is the identity at 224
