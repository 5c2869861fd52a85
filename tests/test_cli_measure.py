"""``cnnlab summary FILE.py:NAME``: the lift when it works, the measured path when it does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.commands._common import parse_kwargs
from cnnlab.errors import CnnlabError

NETS = '''
import torch
from torch import nn
import torch.nn.functional as F


class Tutorial(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Transposed(Tutorial):
    """The tutorial net with its last map transposed (H and W swapped) before flattening: the same
    figures, but a permute the description cannot hold."""

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2).permute(0, 1, 3, 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Plain(nn.Module):
    def __init__(self, num_classes, width=8):
        super().__init__()
        self.conv, self.relu, self.flat = nn.Conv2d(3, width, 3), nn.ReLU(), nn.Flatten()
        self.fc = nn.Linear(width * 6 * 6, num_classes)

    def forward(self, x):
        return self.fc(self.flat(self.relu(self.conv(x))))


class Broken(nn.Module):
    def forward(self, x):
        return x + 1.0 + missing_name


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.conv = nn.Embedding(100, 16), nn.Conv2d(3, 16, 3)

    def forward(self, img, ids):
        return self.conv(img).mean((2, 3)) + self.emb(ids).mean(1)


def factory(depth=2):
    return nn.Sequential(*[nn.Linear(4, 4) for _ in range(depth)])
'''


@pytest.fixture
def nets(tmp_path: Path) -> str:
    f = tmp_path / "nets.py"
    f.write_text(NETS)
    return str(f)


def summary_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[dict, str]:
    assert main(["summary", *argv, "--format", "json"]) == 0
    out = capsys.readouterr()
    return json.loads(out.out), out.err


def test_refused_lift_answers_from_the_measured_path(nets: str, capsys: pytest.CaptureFixture[str]) -> None:
    # conv1 (5*5*1*6 + 6) + conv2 (5*5*6*16 + 16) + fc 400*120+120 + 120*84+84 + 84*10+10 = 61,706 params;
    # MACs 25*6*28*28 + 150*16*10*10 + 400*120 + 120*84 + 84*10 = 416,520.
    d, err = summary_json(capsys, f"{nets}:Transposed", "--input", "1x32x32")
    assert d["totals"]["params"] == 61706 and d["totals"]["macs"] == 416520
    assert d["meta"]["path"] == "measured" and d["meta"]["mode"] == "eval"
    assert d["layers"][0]["path"] == "conv1" and d["layers"][0]["depth"] == 0
    assert err.count("\n") == 1 and "cannot be described" in err and "adapt, --explain and the diagram" in err
    assert "permute" in err
    t, err = summary_json(capsys, f"{nets}:Tutorial", "--input", "1x32x32")  # F.max_pool2d is described
    assert t["meta"]["path"] == "described" and err == ""
    assert (t["totals"]["params"], t["totals"]["macs"]) == (61706, 416520)


def test_refusal_names_every_unsupported_node_once(nets: str, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import cnnlab.trace

    class Unliftable(CnnlabError):
        unsupported = {"call_function mul": 3, "call_method permute": 2, "Hardswish": 1}

    def refuse(*args: object, **kwargs: object) -> None:
        raise Unliftable("cannot describe")

    monkeypatch.setattr(cnnlab.trace, "trace", refuse)
    d, err = summary_json(capsys, f"{nets}:Plain", "--input", "3x8x8", "--kwargs", "num_classes=2")
    assert d["meta"]["path"] == "measured"
    assert err == ("cnnlab: Plain cannot be described (call_function mul x3, call_method permute x2, Hardswish): "
                   "answering from the measured path; adapt, --explain and the diagram need the description\n")


def test_lift_when_possible_with_kwargs(nets: str, capsys: pytest.CaptureFixture[str]) -> None:
    d, err = summary_json(capsys, f"{nets}:Plain", "--input", "3x8x8", "--kwargs", "num_classes=10,width=4")
    assert d["meta"] == {"path": "described", "mode": "eval"} and err == ""
    assert d["totals"]["params"] == 4 * 27 + 4 + 144 * 10 + 10
    j, _ = summary_json(capsys, f"{nets}:Plain", "--input", "3x8x8", "--kwargs", '{"num_classes": 10, "width": 4}',
                        "--measured")
    assert j["meta"]["path"] == "measured"
    assert (j["totals"]["params"], j["totals"]["macs"]) == (d["totals"]["params"], d["totals"]["macs"])


def test_factory_arguments_and_user_errors_are_one_line(nets: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", f"{nets}:Plain", "--input", "3x8x8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"cnnlab: error: {nets}:Plain needs arguments num_classes: give them with --kwargs num_classes=... " \
                  "(kwargs= in Python)"
    assert main(["summary", f"{nets}:Broken", "--input", "3x8x8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("cnnlab: error: running Broken.forward on 3x8x8 failed: ")
    line = NETS.splitlines().index("        return x + 1.0 + missing_name") + 1
    assert f"{nets}:{line}: NameError: name 'missing_name' is not defined" in err
    assert "Traceback" not in err


def test_import_error_in_user_file_names_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.py"
    f.write_text("import torch\n\nx = 1 / 0\n")
    assert main(["summary", f"{f}:Net", "--input", "3x8x8"]) == 2
    assert capsys.readouterr().err == f"cnnlab: error: importing {f} failed: {f}:3: ZeroDivisionError: division by zero\n"


def test_several_inputs_mode_and_depth(nets: str, capsys: pytest.CaptureFixture[str]) -> None:
    d, _ = summary_json(capsys, f"{nets}:TwoInputs", "--input", "3x8x8", "--input", "7:int64", "--mode", "train")
    assert d["meta"]["inputs"] == [[3, 8, 8], [7]] and d["meta"]["mode"] == "train"
    assert d["totals"]["params"] == 1600 + 448 and d["totals"]["macs"] == 27 * 16 * 36
    d, _ = summary_json(capsys, "resnet18", "--depth", "1")
    assert [r["name"] for r in d["layers"]][:5] == ["conv1", "bn1", "relu", "maxpool", "layer1"]
    assert d["totals"]["params"] == 11689512


def test_factory_function(nets: str, capsys: pytest.CaptureFixture[str]) -> None:
    d, _ = summary_json(capsys, f"{nets}:factory", "--input", "4", "--kwargs", "depth=3")
    assert d["totals"]["params"] == 3 * 20 and len(d["layers"]) == 3


def test_help_documents_the_module_form(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["summary", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "file.py:NAME" in out and "imports and runs that code" in out
    assert "--kwargs" in out and "--mode" in out and "--depth" in out and "flop_counter" in out


@pytest.mark.parametrize(("text", "want"), [
    ("num_classes=10,aux_logits=False", {"num_classes": 10, "aux_logits": False}),
    ("sizes=(1, 2),name=tiny", {"sizes": (1, 2), "name": "tiny"}),
    ('{"a": [1, 2]}', {"a": [1, 2]}),
])
def test_parse_kwargs(text: str, want: dict) -> None:
    assert parse_kwargs(text) == want


def test_parse_kwargs_refuses_malformed() -> None:
    with pytest.raises(CnnlabError, match="write key=value"):
        parse_kwargs("num_classes")
    with pytest.raises(CnnlabError, match="not valid JSON"):
        parse_kwargs("{oops")
    with pytest.raises(CnnlabError, match="nested too deeply"):
        parse_kwargs('{"a": ' * 5000 + "1" + "}" * 5000)
    deep = "[" * 5000 + "]" * 5000  # beyond Python's parser: kept as the text it is
    assert parse_kwargs(f"a={deep}") == {"a": deep}


def test_report_page_for_a_module(nets: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    measured, described = tmp_path / "tut.html", tmp_path / "plain.html"
    assert main(["report", f"{nets}:Transposed", "--input", "1x32x32", "--out", str(measured)]) == 0
    page = measured.read_text()
    assert "conv1" in page and "61,706" in page
    # measured: no description, so the diagram is one box per row in execution order, no blocks
    rows = page.count("<tr data-i=")
    svg = page[page.index("<svg"):page.index("</svg>")]
    assert rows >= 5 and svg.count('class="n" data-r=') == rows and "(Sequential)" not in svg
    assert main(["report", f"{nets}:Plain", "--input", "3x8x8", "--kwargs", "num_classes=2", "--out",
                 str(described)]) == 0
    assert "<svg" in described.read_text()
