"""The seed notebooks in examples/notebooks, executed on a real Jupyter kernel (nbclient + ipykernel):
every cell's own assertions must hold, and their outputs carry the figures and the rich display."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "examples" / "notebooks"
SRC = Path(__file__).resolve().parents[1] / "src"


def execute(name: str, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Run the notebook in ``cwd`` (its runs/ folder lands there); the outputs of every code cell."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # small models on a shared machine: one thread is fastest
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return [c.outputs for c in nb.cells if c.cell_type == "code"]


def text(outputs: list) -> str:
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)


def html(outputs: list) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in outputs)


def test_every_notebook_is_tested_and_listed_in_the_readme() -> None:
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == sorted(CHECKS)
    readme = (NOTEBOOKS.parents[1] / "README.md").read_text()
    for n in names:
        assert f"examples/notebooks/{n}" in readme


def check_seed000(cells: list) -> None:
    assert "3.5 -> 3 (floor)" in text(cells[0])
    assert '<div class="cnnlab-nb">' in html(cells[1]) and "62,378,344" in html(cells[1])
    assert "FC1 at 270x480: 95,424,512 parameters; whole network 120,050,024" in text(cells[2])
    h = html(cells[3])
    assert "pad-layers+adaptive-pool" in h and "95,424,512" in h and "Verdict" in h
    assert "fix 1 (pad-layers+adaptive-pool): 62,378,344 parameters, no pixel dropped" in text(cells[4])


def check_seed001_004(cells: list) -> None:
    h = html(cells[0])
    assert "norm1" in h and "LRN" in h and "60,965,224" in h
    assert "w after two steps: 0.8980051 (by hand 0.8980051)" in text(cells[1])


def check_seed002(cells: list) -> None:
    acc = float(re.search(r"after a twentieth of an epoch: ([\d.]+)%", text(cells[1])).group(1))
    assert acc >= 80
    assert "<svg" in html(cells[1]) and "mnist-cnn3 on mnist" in html(cells[1])  # the run's curves
    assert "top-1 accuracy" in html(cells[2]) and "Confusion matrix" in html(cells[2])


def check_seed003_lenet(cells: list) -> None:
    assert "340,908" in html(cells[0]) and "60,840" in html(cells[0])
    assert "lenet5-relu on mnist" in html(cells[1]) and "finished" in html(cells[1])
    assert float(re.search(r"LeNet-5 test accuracy ([\d.]+)%", text(cells[2])).group(1)) >= 98.5


def check_seed003_zoo(cells: list) -> None:
    assert "conv layers hold 6.0% of the parameters and do 94.8% of the MACs" in text(cells[0])
    assert "vgg16       138,357,544 parameters" in text(cells[1])
    g = html(cells[1])
    assert g.count("<details class='block'>") == 9 and "inception_4e" in g  # nine collapsed Inception modules
    assert html(cells[2]).count("<details class='block'>") == 4  # ResNet-50's four stages
    assert "Keras CIFAR ResNet notebook" in text(cells[3])
    assert re.search(r"\d+ of 16 images changed", text(cells[4]))
    assert any("image/png" in o.get("data", {}) for o in cells[5])


CHECKS = {
    "seed000-parameters-and-adapting-alexnet.ipynb": check_seed000,
    "seed001-004-alexnet-lrn-and-sgd.ipynb": check_seed001_004,
    "seed002-simple-mnist-cnn.ipynb": check_seed002,
    "seed003-lenet5-trained.ipynb": check_seed003_lenet,
    "seed003-zoo-and-cifar-resnet.ipynb": check_seed003_zoo,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_notebook_runs_and_checks_its_seed(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cells = execute(name, tmp_path, monkeypatch)
    assert not [o for c in cells for o in c if o.get("output_type") == "error"]
    CHECKS[name](cells)
