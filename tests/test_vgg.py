"""VGG configurations A-E (Simonyan & Zisserman 2014, Table 1) against the paper's Table 2 and
torchvision's published figures."""

from __future__ import annotations

import pytest

from cnnlab import zoo
from cnnlab.analysis import analyze
from cnnlab.errors import CnnlabError

# Exact parameter counts: torchvision's model documentation (num_params) for A, B, D, E and their
# _bn forms. C is D with the last conv of stacks 3-5 at 1x1 instead of 3x3 (Table 1): 8 weights
# fewer per input-output channel pair. A-LRN adds no parameters (LRN has none).
C_PARAMS = 138_357_544 - 8 * (256 * 256 + 2 * 512 * 512)
EXACT = {
    "vgg11": 132_863_336, "vgg11-lrn": 132_863_336, "vgg13": 133_047_848, "vgg16-c": C_PARAMS,
    "vgg16": 138_357_544, "vgg19": 143_667_240,
    "vgg11-bn": 132_868_840, "vgg11-lrn-bn": 132_868_840, "vgg13-bn": 133_053_736,
    "vgg16-c-bn": C_PARAMS + 2 * (64 * 2 + 128 * 2 + 256 * 3 + 512 * 6),  # gamma and beta per conv filter
    "vgg16-bn": 138_365_992, "vgg19-bn": 143_678_248,
}
# Table 2 of the paper: "Number of parameters (in millions)" for A, A-LRN, B, C, D, E.
TABLE2_MILLIONS = {"vgg11": 133, "vgg11-lrn": 133, "vgg13": 133, "vgg16-c": 134, "vgg16": 138, "vgg19": 144}
# torchvision's documented GFLOPS at 224x224 (they are multiply-accumulates, 1e9).
TV_GMACS = {"vgg11": 7.61, "vgg13": 11.31, "vgg16": 15.47, "vgg19": 19.63}
WEIGHT_LAYERS = {"vgg11": 11, "vgg11-lrn": 11, "vgg13": 13, "vgg16-c": 16, "vgg16": 16, "vgg19": 19}


@pytest.mark.parametrize("name", EXACT)
def test_exact_parameter_count(name: str) -> None:
    assert analyze(zoo.get(name)).totals["params"] == EXACT[name]


@pytest.mark.parametrize("name", TABLE2_MILLIONS)
def test_parameter_count_rounds_to_table2(name: str) -> None:
    assert round(analyze(zoo.get(name)).totals["params"] / 1e6) == TABLE2_MILLIONS[name]


@pytest.mark.parametrize("name", TV_GMACS)
def test_macs_equal_torchvision(name: str) -> None:
    for variant in (name, f"{name}-bn"):  # BatchNorm adds no weight multiply-accumulates
        assert round(analyze(zoo.get(variant)).totals["macs"] / 1e9, 2) == TV_GMACS[name]


@pytest.mark.parametrize("name", WEIGHT_LAYERS)
def test_weight_layer_count_is_the_name(name: str) -> None:
    a = analyze(zoo.get(name))
    assert sum(ly.type in ("Conv", "Dense") for ly in a.layers) == WEIGHT_LAYERS[name]
    assert a.output_shape == (1000,) and a.layer("features.0").output_shape == (64, 224, 224)


def test_configuration_c_has_its_1x1_convs_where_table1_puts_them() -> None:
    a = analyze(zoo.get("vgg16-c"))
    convs = [ly for ly in a.layers if ly.type == "Conv"]
    ones = [i for i, ly in enumerate(convs) if ly.params == ly.input_shape[0] * ly.output_shape[0] + ly.output_shape[0]]
    assert ones == [6, 9, 12]  # the third conv of stacks 3, 4 and 5
    assert [convs[i].output_shape for i in ones] == [(256, 56, 56), (512, 28, 28), (512, 14, 14)]


def test_a_lrn_normalises_after_the_first_conv() -> None:
    a = analyze(zoo.get("vgg11-lrn"))
    assert [ly.type for ly in a.layers[:4]] == ["Conv", "ReLU", "LRN", "MaxPool"]
    assert sum(ly.type == "LRN" for ly in a.layers) == 1


def test_feature_maps_halve_five_times_to_7x7() -> None:
    a = analyze(zoo.get("vgg16"))
    pools = [ly.output_shape for ly in a.layers if ly.type == "MaxPool"]
    assert pools == [(64, 112, 112), (128, 56, 56), (256, 28, 28), (512, 14, 14), (512, 7, 7)]
    assert a.layer("flatten").output_shape == (25088,)


def test_adaptive_pool_keeps_the_classifier_at_other_sizes() -> None:
    # torchvision's minimum input is 32x32: five halvings leave 1x1, pooled back up to 7x7.
    small = analyze(zoo.get("vgg16"), (3, 32, 32))
    assert small.totals["params"] == EXACT["vgg16"]
    assert small.layer("features.30").output_shape == (512, 1, 1)
    with pytest.raises(CnnlabError, match="features.30"):
        analyze(zoo.get("vgg16"), (3, 31, 31))


def test_class_and_channel_counts() -> None:
    a = analyze(zoo.get("vgg16", num_classes=10, in_channels=1), (1, 224, 224))
    assert a.output_shape == (10,)
    assert a.totals["params"] == EXACT["vgg16"] - 990 * (4096 + 1) - 2 * 64 * 9


def test_bad_configuration_is_a_one_line_error() -> None:
    with pytest.raises(CnnlabError, match="configuration 'F'.*A, B, C, D, E"):
        zoo.get("vgg16", config="F")
    with pytest.raises(CnnlabError, match="num_classes"):
        zoo.get("vgg11", num_classes=0)


def test_metadata() -> None:
    mi = zoo.info("vgg16")
    assert (mi.year, mi.input) == (2014, (3, 224, 224)) and "Simonyan" in mi.paper
    assert "27.0%" in (mi.accuracy or "")
    assert zoo.get("vgg19").meta["accuracy"] == zoo.info("vgg19").accuracy
