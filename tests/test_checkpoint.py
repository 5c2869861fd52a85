"""The checkpoint format: one owner, checked on reading, atomic on writing; crafted files refused in one line."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.train import Recipe, Trainer, checkpoint
from cnnlab.train.checkpoint import VERSION, Checkpoint
from test_train import pattern_set, quiet, tiny_net


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A two-epoch run of the tiny network: last.pt, best.pt, metrics.json."""
    out = tmp_path_factory.mktemp("run")
    Trainer(tiny_net(), pattern_set(64), pattern_set(32, seed=1), Recipe(optimizer="sgd", lr=0.05, batch_size=16,
            epochs=2), quiet(out=out, seed=5)).fit()
    return out


def raw(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_round_trip_and_the_keys(trained) -> None:
    ck = checkpoint.load(trained / "last.pt")
    assert (ck.epoch, ck.seed, ck.classes, ck.recipe["optimizer"]) == (2, 5, ["c0", "c1", "c2", "c3"], "sgd")
    state = ck.to_state()
    assert state["format"] == "cnnlab-checkpoint" and state["version"] == VERSION
    assert set(state) == set(raw(trained / "last.pt"))
    again = Checkpoint.from_state(state, "x")
    assert (again.epoch, again.best_epoch, again.metrics) == (ck.epoch, ck.best_epoch, ck.metrics)
    net, model, prep = again.rebuild()
    assert net.name == "tiny" and not model.training and prep.input_shape == (1, 12, 12)
    assert all(torch.equal(v, ck.model[k]) for k, v in model.state_dict().items())


def crafted(trained: Path, tmp_path: Path, change) -> Path:
    state = raw(trained / "last.pt")
    change(state)
    p = tmp_path / "crafted.pt"
    torch.save(state, p)
    return p


def _self_loop(s: dict) -> None:
    loop = {"type": "Sequential", "name": "s", "layers": []}
    loop["layers"].append(loop)
    s["network"]["layers"] = [loop]


def _other_network(s: dict) -> None:
    s["network"] = {"name": "wide", "input": [1, 12, 12], "layers": [
        {"type": "Conv", "name": "conv", "filters": 6, "kernel": 5, "padding": 2}, {"type": "Flatten", "name": "f"},
        {"type": "Dense", "name": "fc", "units": 4}]}


def _residual_scale(s: dict) -> None:
    s["network"]["layers"] = [{"type": "Residual", "name": "r", "scale": "abc",
                               "body": [{"type": "ReLU", "name": "relu"}]}, *s["network"]["layers"]]


CRAFTED = [
    (lambda s: s.pop("preprocess"), "'preprocess' is missing"),
    (lambda s: s.pop("network"), "'network' is missing"),
    (lambda s: s.update(version=99), "format version 99 is not 1"),
    (lambda s: s.update(version="1"), "format version '1' is not 1"),
    (lambda s: s.update(classes="abcd"), "'classes' is a str, not a list"),
    (lambda s: s.update(classes=[f"k{i}" for i in range(10)]), "names 10 classes but its network outputs 4 values"),
    (lambda s: s["trainer"].update(epoch="2"), "'trainer.epoch' is a str, not a int"),
    (lambda s: s["model"].update({"conv.weight": torch.zeros(6, 1, 5, 5)}),
     "conv.weight is 6x1x5x5 in the file, 6x1x3x3 in the network"),
    (lambda s: s["model"].pop("fc.bias"), "weights missing for fc.bias"),
    (_other_network, "its weights do not fit its network"),
    (_self_loop, "layers nested more than 100 levels deep"),
    (_residual_scale, "Residual field 'scale' must be a finite number, got 'abc'"),
    # a forged input size: refused by arithmetic, before a 240 GB dense layer is allocated
    (lambda s: s["preprocess"].update(data_shape=[1, 100000, 100000]),
     "parameters at its 1x100000x100000 input, the file holds"),
    (lambda s: s["preprocess"].update(scale="abc"), "bad 'preprocess': scale is not a float tensor"),
    (lambda s: s["preprocess"].update(scale=torch.ones(3, 1, 1)), "scale has shape (3, 1, 1)"),
    (lambda s: s["preprocess"].update(shift=torch.full((1, 1, 1), float("nan"))), "shift holds NaN"),
    (lambda s: s["preprocess"].update(mode="zscore"), "mode 'zscore' is not one of"),
    (lambda s: s["preprocess"].update(pad=[0, 0, -1, 0]), "pad [0, 0, -1, 0] is not four integers >= 0"),
]


@pytest.mark.parametrize("change,what", CRAFTED)
def test_crafted_checkpoints_are_refused_in_one_line(trained, tmp_path, change, what) -> None:
    p = crafted(trained, tmp_path, change)
    with pytest.raises(CnnlabError) as e:
        checkpoint.load(p)
    msg = str(e.value)
    assert msg.startswith(f"{p} is not a valid cnnlab checkpoint: ") and what in msg and "\n" not in msg


def test_crafted_checkpoint_through_predict(trained, tmp_path, capsys) -> None:
    p = crafted(trained, tmp_path, lambda s: s.update(classes=[f"k{i}" for i in range(10)]))
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (12, 12)).save(img)
    rc, out, err = cli(capsys, "predict", p, img)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "is not a valid cnnlab checkpoint: it names 10 classes but its network outputs 4 values" in err


def test_nan_weights_are_refused_by_predict_and_eval(trained, tmp_path, capsys) -> None:
    p = crafted(trained, tmp_path, lambda s: s["model"]["fc.weight"].fill_(float("nan")))
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (12, 12)).save(img)
    rc, out, err = cli(capsys, "predict", p, img)
    assert rc == 2 and "nan%" not in out and "holds NaN or infinite weights (fc.weight)" in err
    rc, out, err = cli(capsys, "eval", p, "--data", tmp_path / "nowhere")
    assert rc == 2 and out == "" and "holds NaN or infinite weights (fc.weight)" in err
    assert len(err.strip().splitlines()) == 1


def test_save_is_atomic_and_cleans_up_on_a_full_disk(trained, tmp_path, monkeypatch) -> None:
    ck = checkpoint.load(trained / "last.pt")
    dst = tmp_path / "last.pt"
    checkpoint.save(dst, ck)
    before = dst.read_bytes()

    def full(obj, f, *a, **kw):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(CnnlabError, match=r"^cannot write .*last.pt: No space left on device$"):
        checkpoint.save(dst, ck)
    assert dst.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]

    def interrupted(obj, f, *a, **kw):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(dst, ck)
    assert dst.read_bytes() == before and not (tmp_path / "last.pt.tmp").exists()


def test_metrics_json_agrees_with_the_checkpoints(trained) -> None:
    last, best = checkpoint.load(trained / "last.pt"), checkpoint.load(trained / "best.pt")
    assert json.loads((trained / "metrics.json").read_text()) == last.metrics
    assert best.epoch == last.best_epoch and checkpoint.epoch_of(trained / "best.pt") == best.epoch
    assert checkpoint.epoch_of(trained / "missing.pt") is None
