"""The front door: ``import cnnlab`` is a regular, torch-free package exporting the public API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import cnnlab
from cnnlab import zoo
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.network import save_spec

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, *, path: list[str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(path)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, check=False)


def test_version_is_the_single_source_of_the_package_version() -> None:
    assert cnnlab.__version__.count(".") == 2 and all(p.isdigit() for p in cnnlab.__version__.split("."))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "cnnlab.__version__"}


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"cnnlab {cnnlab.__version__}"


def test_public_names_resolve_to_their_modules() -> None:
    from cnnlab import adapt, analysis, models

    assert set(cnnlab.__all__) == {"__version__", "analyze", "build", "diagnose", "apply", "load_model",
                                   "list_models", "fit", "analyze_module", "export_model", "load_keras",
                                   "load_caffe", "CnnlabError"}
    assert cnnlab.analyze is analysis.analyze and cnnlab.diagnose is adapt.diagnose and cnnlab.apply is adapt.apply
    assert cnnlab.load_model is models.load_model
    from cnnlab.importers import caffe, keras

    assert cnnlab.load_keras is keras.load_keras and cnnlab.load_caffe is caffe.load_caffe
    from cnnlab import torch_backend

    assert cnnlab.build is torch_backend.build
    from cnnlab.errors import CnnlabError

    assert cnnlab.CnnlabError is CnnlabError  # what every one-line error raises, to catch in a notebook
    assert cnnlab.list_models() == zoo.names() and "lenet5" in cnnlab.list_models()
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        cnnlab.nope  # noqa: B018


def test_analyze_from_the_front_door() -> None:
    a = cnnlab.analyze(cnnlab.load_model("alexnet-onetower"), (3, 270, 480))
    assert a.totals["params"] == 62378344 - 37752832 + 95424512
    # LeCun et al. 1998, Section II.B: 340,908 connections
    assert cnnlab.analyze(cnnlab.load_model("lenet5")).totals["connections"] == 340_908


def test_import_cnnlab_does_not_import_torch() -> None:
    code = ("import sys, cnnlab; print(cnnlab.__version__, cnnlab.analyze.__module__, cnnlab.load_model.__module__); "
            "print(any(m == 'torch' or m.startswith('torch.') for m in sys.modules))")
    r = _python(code)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    assert first == f"{cnnlab.__version__} cnnlab.analysis cnnlab.models" and second == "False"


def test_a_stray_cnnlab_folder_on_sys_path_does_not_merge_in(tmp_path: Path) -> None:
    stray = tmp_path / "stray" / "cnnlab"
    stray.mkdir(parents=True)
    (stray / "bogus.py").write_text("HERE = True\n")
    code = ("import importlib.util, json, cnnlab; "
            "print(json.dumps([cnnlab.__file__, importlib.util.find_spec('cnnlab.bogus') is None]))")
    r = _python(code, path=[str(tmp_path / "stray"), str(ROOT / "src")], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    where, no_bogus = json.loads(r.stdout)
    assert Path(where) == Path(cnnlab.__file__) and no_bogus


# load_model: every kind of reference, and its one-line errors


def test_load_model_zoo_name_with_options() -> None:
    net = cnnlab.load_model("resnet20", num_classes=7, in_channels=1, shortcut="B")
    a = cnnlab.analyze(net)
    assert net.name == "resnet20" and a.input_shape == (1, 32, 32) and a.output_shape == (7,)
    # option B adds the two projection shortcuts (tests/test_cli.py): 2,752 weights at 10 classes, 3 channels
    base = cnnlab.analyze(cnnlab.load_model("resnet20")).totals["params"]
    assert cnnlab.analyze(cnnlab.load_model("resnet20", shortcut="B")).totals["params"] == base + 2_752


def test_load_model_spec_file(tmp_path: Path) -> None:
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"lenet{suffix}"
        save_spec(zoo.get("lenet5", num_classes=3), path)
        net = cnnlab.load_model(str(path))
        assert cnnlab.analyze(net).output_shape == (3,)
        assert cnnlab.analyze(net).totals == cnnlab.analyze(zoo.get("lenet5", num_classes=3)).totals


def test_load_model_traces_a_module_file(tmp_path: Path) -> None:
    f = tmp_path / "tiny_net.py"
    f.write_text("from torch import nn\n\n"
                 "class Tiny(nn.Sequential):\n"
                 "    def __init__(self):\n"
                 "        super().__init__(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 24 * 24, 10))\n")
    net = cnnlab.load_model(f"{f}:Tiny", input_shape=(1, 28, 28))
    a = cnnlab.analyze(net)
    assert net.name == "Tiny" and a.output_shape == (10,)
    assert a.totals["params"] == 1 * 25 * 4 + 4 + 4 * 24 * 24 * 10 + 10


@pytest.mark.parametrize("ref, kw, message", [
    ("lenet", {}, "unknown model 'lenet': did you mean"),
    ("lenet5", {"num_classes": 0}, "--num-classes must be >= 1, got 0"),
    ("alexnet", {"shortcut": "B"}, "model 'alexnet' has no shortcut option"),
    ("nowhere.yaml", {}, "cannot read spec file nowhere.yaml: No such file or directory"),
    ("no_such_file.py:Net", {"input_shape": (3, 8, 8)}, "cannot load no_such_file.py:Net"),
    ("cnnlab.zoo:Nope", {"input_shape": (3, 8, 8)}, "cannot load cnnlab.zoo:Nope"),
    ("mod.py:Net", {}, "tracing mod.py:Net needs --input CxHxW (input_shape=(C, H, W) in Python)"),
    ("mod.py:Net", {"input_shape": (3, 0, 8)}, "input_shape (3, 0, 8): give (C, H, W) as three positive integers"),
    ("", {}, "give a zoo name, a YAML/JSON spec file or file.py:NAME"),
])
def test_load_model_errors_are_one_line(ref: str, kw: dict, message: str) -> None:
    with pytest.raises(CnnlabError) as e:
        cnnlab.load_model(ref, **kw)
    assert message in str(e.value) and "\n" not in str(e.value)


# zoo.get: the caller's wrong arguments are a user error, a builder's own TypeError is a bug


def test_zoo_get_refuses_arguments_the_builder_does_not_take() -> None:
    with pytest.raises(CnnlabError) as e:
        zoo.get("lenet5", widht=3)
    msg = str(e.value)
    assert msg.startswith("model 'lenet5': ") and "'widht'" in msg and "num_classes" in msg and "\n" not in msg


def test_zoo_get_lets_a_bug_inside_a_builder_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(num_classes: int = 10) -> None:
        return len(num_classes)  # type: ignore[arg-type]  # a TypeError raised by the builder's own code

    monkeypatch.setitem(zoo._REGISTRY, "broken-net", zoo.ModelInfo("broken-net", broken, "p", 2000, (1, 8, 8)))
    with pytest.raises(TypeError, match="has no len"):
        zoo.get("broken-net")
    with pytest.raises(CnnlabError, match="model 'broken-net'"):
        zoo.get("broken-net", depth=3)


def test_every_zoo_model_is_named_in_the_module_that_registers_it() -> None:
    """Models registered in loops stay greppable: each name is written out in its module's source."""
    import inspect
    import re

    missing = []
    for name in zoo.names():
        source = inspect.getsource(sys.modules[zoo.info(name).fn.__module__])
        if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", source):
            missing.append(name)
    assert not missing, f"write these names in their zoo module (a docstring table will do): {missing}"
