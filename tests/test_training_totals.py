"""Auxiliary heads in the totals: ``totals`` is the inference network, ``training_totals`` the module
a user trains (network plus heads), in the JSON, the text summary, the HTML report and the memory."""

from __future__ import annotations

import json

import pytest
import torch

from cnnlab import zoo
from cnnlab.analysis import analyze
from cnnlab.cli import main
from cnnlab.report.html import render
from cnnlab.torch_backend import build

# torchvision: GoogLeNet 6,624,904 without its heads, 13,004,888 with them; Inception-v3 23,834,568
# and 27,161,264 (Inception_V3_Weights.IMAGENET1K_V1's num_params counts the aux head).
TRAINING = {"googlenet-tv": (6_624_904, 13_004_888), "inception-v3": (23_834_568, 27_161_264)}


@pytest.mark.parametrize("name", sorted(TRAINING))
def test_training_totals_with_aux_heads(name: str) -> None:
    a = analyze(zoo.get(name, aux_logits=True))
    assert (a.totals["params"], a.training_totals["params"]) == TRAINING[name]
    assert a.aux_totals is not None
    assert a.training_totals == {k: a.totals[k] + a.aux_totals[k] for k in a.totals}
    with torch.device("meta"):
        model = build(zoo.get(name, aux_logits=True))
    assert sum(p.numel() for p in model.parameters()) == TRAINING[name][1]


def test_training_totals_without_heads_are_the_totals() -> None:
    a = analyze(zoo.get("googlenet-tv"))
    assert a.aux_totals is None and a.training_totals == a.totals
    assert a.to_dict()["training_totals"] == a.totals


def test_memory_counts_the_heads() -> None:
    a = analyze(zoo.get("inception-v3", aux_logits=True), batch=2)
    plain = analyze(zoo.get("inception-v3"), batch=2)
    assert a.memory["param_bytes"] == 27_161_264 * 4
    assert plain.memory["param_bytes"] == 23_834_568 * 4
    # The head's activations (pool, 1x1 conv, 5x5 conv, fc: one set per image) come on top.
    extra = a.aux_totals["activation_size"] if a.aux_totals else 0
    assert extra > 0 and a.memory["activation_bytes"] - plain.memory["activation_bytes"] == extra * 2 * 4


def _summary(capsys, *argv: str) -> str:
    assert main(["summary", *argv]) == 0
    return capsys.readouterr().out


def test_json_has_training_totals(capsys) -> None:
    d = json.loads(_summary(capsys, "googlenet-tv", "--aux", "--format", "json"))
    assert d["totals"]["params"] == 6_624_904
    assert d["training_totals"]["params"] == 13_004_888
    assert d["aux_totals"]["params"] == 13_004_888 - 6_624_904
    assert d["memory"]["param_bytes"] == 13_004_888 * 4


def test_text_summary_prints_both(capsys) -> None:
    out = _summary(capsys, "googlenet-tv", "--aux")
    line = next(x for x in out.splitlines() if x.startswith("Params "))
    assert line.startswith("Params 6,624,904 (6.62M; 13,004,888 in training with the auxiliary heads)")
    assert "network and auxiliary heads" in out
    out = _summary(capsys, "googlenet-tv")
    assert "in training" not in out and "auxiliary heads" not in out


def test_html_report_prints_both() -> None:
    net = zoo.get("inception-v3", aux_logits=True)
    html = render(net, analyze(net))
    assert "23,834,568 · training, with auxiliary heads: 27,161,264" in html
    plain = zoo.get("inception-v3")
    assert "training, with auxiliary heads" not in render(plain, analyze(plain))
