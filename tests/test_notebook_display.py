"""Rich display in Jupyter (``_repr_html_``) and training from Python (``cnnlab.fit``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.data import ImageSet
from cnnlab.errors import CnnlabError
from cnnlab.layers import Conv, Dense, Flatten, ReLU
from cnnlab.network import Network
from cnnlab.report.notebook import SCOPE, scoped_css


def test_analysis_html_puts_totals_first_and_collapses_every_block() -> None:
    a = cnnlab.analyze(cnnlab.load_model("googlenet"))
    h = a._repr_html_()
    assert h.startswith(f'<div class="{SCOPE}">') and h.endswith("</div>")
    assert h.index("6,998,552") < h.index("<table")  # the totals card comes before any table
    blocks = re.findall(r"<details class='block'><summary><b>([^<]+)</b>", h)
    assert len(blocks) == 9 and blocks[0] == "inception_3a" and blocks[-1] == "inception_5b"
    assert "<details><summary><b>Diagram</b></summary><div class='diagram'><svg" in h  # collapsed, not open
    assert h.count("<tr") == len(a.layers) + blocks.count("x") + h.count("<thead>")  # every layer row, once
    assert not repr(a).startswith("<") and SCOPE not in repr(a)  # repr stays plain text


def test_a_network_displays_as_its_analysis_at_the_design_input() -> None:
    net = cnnlab.load_model("lenet5")
    h = net._repr_html_()
    assert "340,908 connections" in h and "60,840" in h and "<svg" in h
    assert SCOPE not in repr(net)


def test_styles_stay_inside_the_fragment() -> None:
    css = scoped_css("body{margin:0} h1{x:1} th,td{y:2}")
    assert css.splitlines() == [f".{SCOPE}{{margin:0}}", f".{SCOPE} h1{{x:1}}", f".{SCOPE} th,.{SCOPE} td{{y:2}}"]
    h = cnnlab.analyze(cnnlab.load_model("lenet5"))._repr_html_()
    style = h[h.index("<style>"):h.index("</style>")]
    rules = re.findall(r"([^{}]+)\{", style[len("<style>"):])
    assert rules and all(r.strip().startswith(f".{SCOPE}") for r in rules)


def test_hostile_names_are_escaped() -> None:
    bad = "<img src=x onerror=alert(1)>"
    net = Network(bad, (Conv(name="c<u>1", filters=4, kernel=3), ReLU(name="r1"), Flatten(name="f"),
                        Dense(name=bad, units=2)), (1, 8, 8))
    h = net._repr_html_()
    assert "<img" not in h and "<u>" not in h
    assert "&lt;img src=x onerror=alert(1)&gt;" in h and "c&lt;u&gt;1" in h


def test_adaptation_report_html() -> None:
    r = cnnlab.diagnose(cnnlab.load_model("alexnet-onetower"), (3, 270, 480))
    h = r._repr_html_()
    assert "design input 3x227x227 → 3x270x480" in h and "120,050,024" in h
    assert h.index("Verdict") < h.index("Fixes, best first") < h.index("Layers at both inputs")
    assert "<td>1</td><td>pad-layers+adaptive-pool</td><td>3x270x480</td><td>62,378,344</td>" in h
    assert "<td>fc6</td><td>Dense</td><td>4096</td><td>4096</td><td>37,752,832</td><td>95,424,512</td>" in h


def _sets(n: int = 96) -> tuple[ImageSet, ImageSet]:
    """Two classes a small network tells apart at once: dark images and bright ones."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    images = (torch.rand(n, 1, 28, 28, generator=g) * 60 + labels[:, None, None, None] * 180).to(torch.uint8)
    return (ImageSet(images, labels, ["dark", "bright"], "toy/train"),
            ImageSet(images[:32].clone(), labels[:32].clone(), ["dark", "bright"], "toy/val"))


def test_fit_returns_a_run_that_evaluates_predicts_and_displays(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    train, val = _sets()
    run = cnnlab.fit("lenet5-relu", (train, val), recipe="default", epochs=2, out=tmp_path / "r", batch_size=32,
                     progress=False, display=False)
    lines = capsys.readouterr().out.splitlines()  # outside a notebook: the trainer's line per epoch
    assert [ln.split("  ")[0] for ln in lines] == ["epoch 1/2", "epoch 2/2"] and "val loss" in lines[1]
    assert [m["epoch"] for m in run.history] == [1, 2] and run.status == "finished"
    assert run.best_checkpoint == tmp_path / "r" / "best.pt" and run.best_checkpoint.is_file()
    assert run.history[-1]["val_acc"] == 1.0  # dark against bright
    ev = run.evaluate(val)
    assert (ev.n, ev.top1) == (32, 1.0) and ev.confusion.tolist() == [[16, 0], [0, 16]]
    assert "<td class='hot' style='background:rgba(37,99,235,1.00)'>16</td>" in ev._repr_html_()
    assert repr(ev) == "lenet5-relu on toy/val: top-1 100.00%, top-5 100.00%, loss " + f"{ev.loss:.4f} on 32 images"
    pred = run.predict(val.images[:3], top=2)
    assert [p[0][0] for p in pred] == ["dark", "bright", "dark"]
    assert all(p[0][1] >= p[1][1] and p[0][1] + p[1][1] == pytest.approx(1, abs=1e-5) for p in pred)
    h = run._repr_html_()
    assert "lenet5-relu on toy/train" in h and h.count("<svg") == 2 and "best validation accuracy 100.00% (epoch" in h
    assert repr(run).startswith("Run(lenet5-relu on toy/train: 2 epochs, best validation accuracy 100.00%")
    with pytest.raises(CnnlabError, match=r"trained on given ImageSets: pass evaluate\(data=...\)"):
        run.evaluate()


def test_fit_redraws_one_notebook_output_after_every_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    IPython = pytest.importorskip("IPython")
    ipy_display = pytest.importorskip("IPython.display")

    shown: list[str] = []

    class Handle:
        def update(self, obj) -> None:  # noqa: ANN001
            shown.append(obj.data)

    class Kernel:
        kernel = object()

    monkeypatch.setattr(IPython, "get_ipython", lambda: Kernel())
    monkeypatch.setattr(ipy_display, "display", lambda obj, display_id=False: Handle())
    train, val = _sets()
    cnnlab.fit("lenet5-relu", (train, val), recipe="default", epochs=2, out=None, batch_size=32)
    assert len(shown) == 3  # after epochs 1 and 2, then the final figures
    assert "training: epoch 1 of 2" in shown[0] and shown[0].count("<circle") < shown[1].count("<circle")
    assert "finished" in shown[2]


def test_fit_refuses_unknown_options_and_bad_subsets() -> None:
    train, val = _sets()
    with pytest.raises(CnnlabError, match="fit\\(\\) got unknown option\\(s\\) learning_rate: recipe fields are"):
        cnnlab.fit("lenet5-relu", (train, val), learning_rate=0.1)
    with pytest.raises(CnnlabError, match="subset must be an integer >= 2, got 1"):
        cnnlab.fit("lenet5-relu", (train, val), subset=1)
    with pytest.raises(CnnlabError, match="give a zoo name, a spec file"):
        cnnlab.fit(42, (train, val))
