"""HTML report: diagram of sequences, branches, residual sums and aux heads; table; curves."""

from __future__ import annotations

import json
import re

from cnnlab import zoo
from cnnlab.analysis import analyze
from cnnlab.cli import main
from cnnlab.layers import BatchNorm, Conv, Dense, GlobalAvgPool, MaxPool, ReLU
from cnnlab.network import Network, aux, concat, residual, seq
from cnnlab.report import html
from cnnlab.report.diagram import label, svg


def _toy() -> Network:
    block = residual("block", [Conv(name="conv1", filters=8, kernel=3, padding=1), BatchNorm(name="bn1"),
                               ReLU(name="relu1"), Conv(name="conv2", filters=8, kernel=3, padding=1)],
                     post=[ReLU(name="relu")])
    mixed = concat("mixed", seq("b1", Conv(name="conv", filters=4, kernel=1)),
                   seq("b2", Conv(name="reduce", filters=2, kernel=1), Conv(name="conv", filters=6, kernel=3, padding=1)),
                   seq("b3", MaxPool(name="pool", kernel=3, stride=1, padding=1), Conv(name="proj", filters=2, kernel=1)))
    head = aux("aux1", GlobalAvgPool(name="gap"), Dense(name="fc", units=3))
    return Network("toy", (Conv(name="stem", filters=8, kernel=3, padding=1), block, head, mixed,
                           GlobalAvgPool(name="gap"), Dense(name="fc", units=3)), (3, 16, 16))


def test_diagram_has_every_block() -> None:
    net = _toy()
    a = analyze(net)
    s = svg(net, a)
    assert s.startswith("<svg") and s.endswith("</svg>")
    for text in ("block (Residual)", "mixed (Concat)", "aux1 (auxiliary head)", "concat", "stem: Conv 3x3, 8",
                 "b2", "12x16x16"):  # 4 + 6 + 2 channels after the concat
        assert text in s
    # BatchNorm and ReLU fold into the conv box before them.
    assert "conv1: Conv 3x3, 8<tspan class=\"d\"> · BatchNorm, ReLU" in s


def test_labels() -> None:
    a = zoo.get("alexnet")
    layers = {ly.name: ly for ly in a.layers}
    assert label(layers["conv1"]) == "Conv 11x11/4, 96"
    assert label(layers["conv2"]) == "Conv 5x5, 256, groups 2"
    assert label(layers["pool1"]) == "MaxPool 3x3/2"
    assert label(layers["fc6"]) == "Dense 4096"


def test_report_with_curves(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    metrics = [{"epoch": e, "train_loss": 1 / e, "train_acc": 1 - 0.1 / e, "val_loss": 1.2 / e,
                "val_acc": 1 - 0.12 / e, "lr": 0.1, "seconds": 1.0, "images_per_s": 100.0} for e in (1, 2, 3)]
    (run / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "r.html"
    assert main(["report", "alexnet-onetower", "--input", "3x270x480", "--run", str(run), "--out", str(out)]) == 0
    page = out.read_text()
    assert page.count("<svg") == 3  # loss, accuracy, network
    assert "3 epochs · best validation accuracy 0.9600" in page
    assert "95,424,512" in page  # fc6 at 270x480
    assert re.search(r"<li><b>conv1</b>: H: \(270 \+ 2\*0 - 11\)/4 \+ 1 = 65.75", page)
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # self-contained


def test_report_bad_run_dir(tmp_path, capsys) -> None:
    assert main(["report", "lenet5", "--run", str(tmp_path), "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert "no metrics in" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.html").exists()


def test_line_chart_scales_points() -> None:
    s = html.line_chart("t", {"a": [(1, 0.0), (2, 1.0)]}, w=100, h=100)
    # x from 48 (left margin) to 88 (100 - 12); y from 70 (100 - 30) up to 24 (top margin).
    assert 'd="M48.0,70.0 L88.0,24.0"' in s


def test_blocks_and_receptive_field_through_branches() -> None:
    a = analyze(_toy())
    b = a.blocks["mixed"]
    assert (b.type, b.output_shape, b.params) == ("Concat", (12, 16, 16), 36 + 18 + 114 + 18)
    assert a.blocks["block"].params == 584 + 16 + 584
    # The concat's receptive field is its widest branch's: stem 3, two 3x3 convs -> 7, b2's 3x3 -> 9.
    assert a.layer("mixed.b2.conv").rf == ((9, 1), (9, 1))
    assert a.layer("gap").rf == ((9 + 15, 16), (9 + 15, 16))
    assert [d["name"] for d in a.to_dict()["blocks"]][:3] == ["block", "aux1", "mixed"]


def test_figures_are_never_cut_on_a_narrow_terminal() -> None:
    """Long module paths (a transformer's) fold onto a second line; no figure becomes '86,…'."""
    from rich.console import Console
    from torch import nn

    from cnnlab.measure import analyze_module
    from cnnlab.report.text import render_summary

    long = "a_rather_long_module_name_as_transformers_have_them_" * 2
    inner = nn.Sequential()
    inner.add_module(long, nn.Conv2d(3, 64, 3, padding=1))
    model = nn.Sequential()
    model.add_module(long, inner)
    a = analyze_module(model, (3, 64, 64))
    con = Console(width=100, record=True, highlight=False)
    render_summary(a, con=con)
    text = con.export_text()
    # 64*3*3*3 + 64 = 1,792 params; 64*64*64*27 = 7,077,888 MACs; 64x64x64 = 262,144 activations
    for figure in ("1,792", "7,077,888", "262,144", "64x64x64"):
        assert figure in text
    assert "…" not in text


def test_the_diagram_says_what_a_graph_node_reads_and_whose_weights_it_shares(tmp_path) -> None:
    """A graph's boxes stack in one column, so a box that does not read the one above says what it reads;
    a layer that calls an earlier layer's module again names it."""
    from torch import nn

    from cnnlab.importers.caffe import load_caffe
    from cnnlab.report.diagram import tree
    from cnnlab.trace import trace

    p = tmp_path / "m.prototxt"
    p.write_text('input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n'
                 'layer { name: "a" type: "Convolution" bottom: "data" top: "a" convolution_param { num_output: 4 '
                 'kernel_size: 3 pad: 1 } }\n'
                 'layer { name: "b" type: "Convolution" bottom: "data" top: "b" convolution_param { num_output: 4 '
                 'kernel_size: 3 pad: 1 } }\n'
                 'layer { name: "m" type: "Eltwise" bottom: "a" bottom: "b" top: "m" eltwise_param { operation: MAX } }\n'
                 'layer { name: "r" type: "ReLU" bottom: "m" top: "m" }\n')
    net = load_caffe(str(p))
    text = json.dumps(tree(net, analyze(net)))
    # a reads the input right above it; b reads the input too (not a); r reads the maximum of both
    assert '"a: Conv 3x3, 4", "sub": "4x8x8 \\u00b7 112 params"' in text
    assert '"b: Conv 3x3, 4", "sub": "4x8x8 \\u00b7 112 params \\u00b7 <- input"' in text
    assert '"sub": "4x8x8 \\u00b7 <- max(a, b)"' in text

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(self.conv(x))

    net = trace(Twice(), (3, 8, 8))
    text = json.dumps(tree(net, analyze(net)))
    assert '"sub": "3x8x8 \\u00b7 84 params"' in text  # 3*3*3*3 + 3, counted on the first call
    assert '"sub": "3x8x8 \\u00b7 shares conv"' in text
