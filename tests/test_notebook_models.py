"""A model written in a Jupyter notebook (``cnnlab summary notebook.ipynb:Net``): the notebook's definitions
load as a module, and its experiment (data loading, training loops, magics) does not run."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli_train import colour_folder, colour_image, one_thread, run  # noqa: F401

# The PyTorch "Training a classifier" tutorial's layout: imports with IPython magics, data loading, the
# network, a training loop. A cell that would leave a file behind shows whether the experiment ran.
CELLS = [
    "%matplotlib inline\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
    "import not_installed_plots as plots  # a package this environment lacks",
    "!pip install something\nloader = torch.utils.data.DataLoader(list(range(8)), batch_size=4)\n"
    "classes = ('plane', 'car', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')\nHIDDEN = 120",
    "class Net(nn.Module):\n"
    "    def __init__(self, num_classes=len(classes)):\n"
    "        super().__init__()\n"
    "        self.conv1 = nn.Conv2d(3, 6, 5)\n"
    "        self.pool = nn.MaxPool2d(2, 2)\n"
    "        self.conv2 = nn.Conv2d(6, 16, 5)\n"
    "        self.fc1 = nn.Linear(16 * 5 * 5, HIDDEN)\n"
    "        self.fc2 = nn.Linear(HIDDEN, 84)\n"
    "        self.fc3 = nn.Linear(84, num_classes)\n\n"
    "    def forward(self, x):\n"
    "        x = self.pool(F.relu(self.conv1(x)))\n"
    "        x = self.pool(F.relu(self.conv2(x)))\n"
    "        x = torch.flatten(x, 1)\n"
    "        x = F.relu(self.fc1(x))\n"
    "        return self.fc3(F.relu(self.fc2(x)))\n\n"
    "net = Net()\nopen(MARK, 'w').write('the experiment ran')",
    "%%time\nfor epoch in range(2):\n    pass",
    "for epoch in range(2):\n    open(MARK, 'w').write('training ran')",
    "class Broken(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.fc = nn.Linear(4, undefined_width)",
]


def notebook(path: Path, cells: list[str]) -> Path:
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
          "cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# CIFAR-10\n", "MARK = 'x'"]}]
          + [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
              "source": c.splitlines(True)} for c in cells]}
    path.write_text(json.dumps(nb))
    return path


def test_summary_of_a_notebook_net(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    nb = notebook(tmp_path / "cifar10_tutorial.ipynb", [f"MARK = {str(tmp_path / 'ran')!r}", *CELLS])
    rc, out, err = run(capsys, "summary", f"{nb}:Net", "--input", "3x32x32", "--format", "json")
    assert rc == 0, err
    totals = json.loads(out)["totals"]
    # conv1 75*6+6 = 456; conv2 150*16+16 = 2,416; fc1 400*120+120 = 48,120; fc2 120*84+84 = 10,164; fc3 850
    assert totals["params"] == 62_006
    assert not (tmp_path / "ran").exists()  # neither `net = Net()` nor the training loops ran


def test_errors_name_the_cell(tmp_path, capsys) -> None:
    nb = notebook(tmp_path / "nb.ipynb", ["MARK = 'x'", *CELLS])
    rc, out, err = run(capsys, "summary", f"{nb}:Broken", "--input", "3x32x32")
    assert rc == 2 and err.count("\n") == 1, err
    assert f"{nb}, cell 7:4: NameError: name 'undefined_width' is not defined" in err
    calls = notebook(tmp_path / "calls.ipynb", ["import torch\nfrom torch import nn", "CLASSES = list(range(5))",
                                                "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()"
                                                "\n        self.fc = nn.Linear(3, len(CLASSES))"])
    rc, out, err = run(capsys, "summary", f"{calls}:Net", "--input", "3x8x8")
    assert rc == 2 and err.count("\n") == 1, err
    assert ("NameError: name 'CLASSES' is not defined; calls.ipynb, cell 2, sets it by calling code, which loading a "
            "notebook's definitions does not run: give it a plain value there (numbers, strings, lists of them)") in err
    bad = notebook(tmp_path / "bad.ipynb", ["import torch", "def f(:\n    pass"])
    rc, out, err = run(capsys, "summary", f"{bad}:f", "--input", "3x32x32")
    assert rc == 2 and "bad.ipynb, cell 2, line 1: invalid syntax; fix the cell or give a .py file" in err, err
    (tmp_path / "not.ipynb").write_text("[1, 2]")
    rc, out, err = run(capsys, "summary", f"{tmp_path / 'not.ipynb'}:Net", "--input", "3x32x32")
    assert rc == 2 and "not.ipynb is not a Jupyter notebook (TypeError); give a .ipynb file" in err, err


def test_train_and_predict_a_notebook_net(tmp_path, capsys) -> None:
    """num_classes comes from the data; the checkpoint names the notebook, so predict builds the net again."""
    data = colour_folder(tmp_path / "colours", per_class=6)
    nb = notebook(tmp_path / "nb.ipynb", [f"MARK = {str(tmp_path / 'ran')!r}", *CELLS])
    rc, out, err = run(capsys, "train", f"{nb}:Net", "--data", data, "--size", "32x32", "--epochs", "1",
                       "--no-progress", "--out", tmp_path / "r")
    assert rc == 0, err
    from cnnlab.train import checkpoint

    ck = checkpoint.load(tmp_path / "r" / "last.pt")
    assert ck.source.ref == f"{nb.resolve()}:Net" and ck.source.kwargs == {"num_classes": 3}
    assert tuple(ck.model["fc3.weight"].shape) == (3, 84)
    colour_image((200, 30, 30), 999).save(tmp_path / "red.png")
    rc, out, err = run(capsys, "predict", tmp_path / "r" / "last.pt", tmp_path / "red.png", "--format", "json")
    assert rc == 0, err
    assert json.loads(out)[0]["class"] in ("red", "green", "blue")
    assert not (tmp_path / "ran").exists()
