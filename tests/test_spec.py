"""Spec files (YAML/JSON) describe the same networks as the zoo, and round-trip exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnlab import zoo
from cnnlab.analysis import analyze
from cnnlab.errors import CnnlabError
from cnnlab.network import load_spec, network_from_spec, network_to_spec, save_spec

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_example_spec_matches_zoo_model() -> None:
    spec = analyze(load_spec(EXAMPLES / "lenet-rgb8.yaml"))
    ref = analyze(zoo.get("lenet-rgb8"))
    assert [(ly.name, ly.output_shape, ly.params) for ly in spec.layers] == \
        [(ly.name, ly.output_shape, ly.params) for ly in ref.layers]
    assert spec.totals["params"] == 62958


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "alexnet-mnist", "alexnet-bn-flowers17", "inception-v3", "resnet50"])
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip(tmp_path, name, suffix) -> None:
    net = zoo.get(name)
    path = tmp_path / f"net{suffix}"
    save_spec(net, path)
    back = load_spec(path)
    assert back.layers == net.layers and back.input_shape == net.input_shape
    assert analyze(back).totals == analyze(net).totals


def test_bad_specs_name_the_problem() -> None:
    with pytest.raises(CnnlabError, match="unknown layer type 'Conv3D'"):
        network_from_spec({"input": [1, 8, 8], "layers": [{"type": "Conv3D"}]})
    with pytest.raises(CnnlabError, match="needs 'input'"):
        network_from_spec({"layers": []})
    with pytest.raises(CnnlabError, match="bad fields for Conv"):
        network_from_spec({"input": [1, 8, 8], "layers": [{"type": "Conv", "filterz": 3}]})
    d = network_to_spec(zoo.get("lenet5-relu"))
    d["layers"][1]["name"] = d["layers"][0]["name"]
    with pytest.raises(CnnlabError, match="two children named 'conv1'"):
        network_from_spec(d)


def test_a_transposed_conv_spec_keeps_its_default_output_padding(tmp_path) -> None:
    """output_padding 0 (the default) is a valid value, not a size that must be positive."""
    from cnnlab.analysis import analyze
    from cnnlab.network import load_spec

    p = tmp_path / "up.yaml"
    p.write_text("input: [4, 8, 8]\nlayers:\n- {type: ConvTranspose, name: up, filters: 2, kernel: 2, stride: 2}\n")
    a = analyze(load_spec(p))
    assert a.output_shape == (2, 16, 16) and a.totals["params"] == 4 * 2 * 2 * 2 + 2


def test_a_transposed_conv_output_padding_below_stride_or_dilation(tmp_path) -> None:
    """PyTorch builds a ConvTranspose2d only when output_padding < max(stride, dilation): the analysis says so in
    one line instead of the build failing later."""
    import pytest

    from cnnlab.analysis import analyze
    from cnnlab.errors import CnnlabError
    from cnnlab.network import load_spec

    p = tmp_path / "up.yaml"
    p.write_text("input: [4, 8, 8]\nlayers:\n- {type: ConvTranspose, name: up, filters: 2, kernel: 3, stride: 2, "
                 "output_padding: 1}\n")
    assert analyze(load_spec(p)).output_shape == (2, 18, 18)  # (8 - 1)*2 + 3 + 1
    p.write_text(p.read_text().replace("output_padding: 1", "output_padding: 2"))
    with pytest.raises(CnnlabError, match=r"layer 'up': output_padding 2x2 must be smaller than the stride 2x2 or "
                                          r"the dilation 1x1; give a smaller output_padding"):
        analyze(load_spec(p))
