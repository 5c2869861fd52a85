"""Real data: MNIST through the source chain, seed 003's LeNet for one epoch, >= 97% test accuracy."""

from __future__ import annotations

import pytest

from cnnlab import zoo
from cnnlab.data import load
from cnnlab.train import Options, Trainer, checkpoint, evaluate, get_recipe


@pytest.fixture
def one_thread():
    """LeNet is too small to gain from a second thread, and loses badly when the suite's other worker
    competes for the same two cores."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_lenet5_relu_one_epoch_on_mnist(tmp_path, one_thread) -> None:
    train, test = load("mnist", "train"), load("mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    recipe = get_recipe("mnist-fast").with_overrides(epochs=1)
    hist = Trainer(zoo.get("lenet5-relu"), train, test, recipe,
                   Options(out=tmp_path, progress=False, log=lambda s: None)).fit()
    assert len(hist) == 1 and hist[0]["val_acc"] >= 0.97
    _, model, prep = checkpoint.load(tmp_path / "best.pt").rebuild()
    import torch

    res = evaluate(model, test.images, test.labels, prep, torch.device("cpu"))
    assert res["n"] == 10000 and res["top1"] == pytest.approx(hist[0]["val_acc"]) and res["top1"] >= 0.97
