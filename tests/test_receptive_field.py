"""Receptive fields of the zoo's networks against published figures.

Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional Neural Networks" (Distill, 2019),
Table 1: the receptive field of the last feature map, before global pooling and classifiers, of
TF-Slim's releases of the same architectures.
"""

from __future__ import annotations

import pytest

from cnnlab import zoo
from cnnlab.analysis import analyze


def _rf(name: str, block: str) -> tuple[int, int]:
    """The widest receptive field, per axis, of the layers in ``block`` (a concat's is its widest branch's)."""
    rows = [ly for ly in analyze(zoo.get(name)).layers if ly.name == block or ly.name.startswith(block + ".")]
    return max(ly.rf[0][0] for ly in rows), max(ly.rf[1][0] for ly in rows)


@pytest.mark.parametrize(
    ("name", "block", "size"),
    [
        ("alexnet", "pool5", 195),
        ("vgg16", "features.30", 212),  # pool5
        ("resnet50", "layer4", 483),
        ("resnet101", "layer4", 1027),
        ("resnet152", "layer4", 1507),
        ("inception-v3", "Mixed_7c", 1311),
        ("inception-v4", "inception_c3", 2071),
        ("inception-resnet-v2-tf", "conv_7b", 3039),
    ],
)
def test_published_receptive_fields(name: str, block: str, size: int) -> None:
    assert _rf(name, block) == (size, size)


def test_jump_and_a_growing_field() -> None:
    a = analyze(zoo.get("alexnet-onetower"))
    # conv1 11x11/4, pool1 3x3/2 -> 11 + 2*4 = 19, conv2 5x5 -> 19 + 4*8 = 51, pool2 -> 51 + 2*8 = 67.
    assert [a.layer(n).rf[0] for n in ("conv1", "pool1", "conv2", "pool2")] == [(11, 4), (19, 8), (51, 8), (67, 16)]


def test_a_division_that_drops_only_explicit_padding_says_so(tmp_path) -> None:
    """Keras writes a padded conv as ZeroPadding2D(3) + a 'valid' 7x7 stride-2 conv (ResNet50's stem): the row the
    division drops is the last padding row, not input, as with the conv's own padding 3."""
    from cnnlab.analysis import analyze
    from cnnlab.network import load_spec

    p = tmp_path / "stem.yaml"
    p.write_text("input: [3, 224, 224]\nlayers:\n- {type: ZeroPad, name: pad, padding: 3}\n"
                 "- {type: Conv, name: conv1, filters: 8, kernel: 7, stride: 2}\n")
    a = analyze(load_spec(p))
    assert a.layer("conv1").findings == (
        ("padding", "H: (230 + 2*0 - 7)/2 + 1 = 112.5 -> 112 (floor); the last row is never read: padding from 'pad' "
                    "(no input is lost)"),
        ("padding", "W: (230 + 2*0 - 7)/2 + 1 = 112.5 -> 112 (floor); the last column is never read: padding from "
                    "'pad' (no input is lost)"))
    p.write_text(p.read_text().replace("padding: 3}", "padding: [4, 0, 4, 0]}"))  # 228: nothing padded below or right
    a = analyze(load_spec(p))
    assert [k for k, _ in a.layer("conv1").findings] == ["inexact", "inexact"]
    assert a.layer("conv1").findings[0][1].endswith("the last input row is never seen")
