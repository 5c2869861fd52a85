"""train -> eval -> predict through the CLI on a tiny generated image folder; bad input; torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.train import checkpoint

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, tmp_path):
    """Tiny models run fastest on one thread; the folder cache stays inside the test."""
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def colour_image(rgb: tuple[int, int, int], seed: int, size: int = 20) -> Image.Image:
    g = np.random.default_rng(seed)
    a = np.clip(np.array(rgb)[None, None, :] + g.integers(-40, 40, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(a, "RGB")


def colour_folder(root: Path, per_class: int = 20) -> Path:
    for k, (name, rgb) in enumerate(COLOURS.items()):
        d = root / name
        d.mkdir(parents=True)
        for i in range(per_class):
            colour_image(rgb, 100 * k + i).save(d / f"{i:03d}.png")
    return root


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


TRAIN = ("train", "lenet-rgb8", "--size", "32x32", "--batch-size", "16", "--no-progress")


def test_train_eval_predict_round_trip(tmp_path, capsys) -> None:
    data = colour_folder(tmp_path / "colours")
    out = tmp_path / "run"
    rc, text, err = run(capsys, *TRAIN, "--data", data, "--epochs", "6", "--lr", "3e-3", "--out", out)
    assert rc == 0, err
    assert "lenet-rgb8 on colours" in text and "input 3x32x32" in text
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["val_acc"] == 1.0 and rows[-1]["train_loss"] < rows[0]["train_loss"]
    for f in ("curves.png", "last.pt", "best.pt"):
        assert (out / f).stat().st_size > 0

    rc, text, err = run(capsys, "eval", out / "best.pt", "--data", data, "--size", "32x32", "--split", "val",
                        "--format", "json")
    res = json.loads(text)
    assert rc == 0 and set(res) == {"top1", "top5", "loss", "n"}
    assert res["n"] == 6 and res["top1"] == 1.0 and res["top5"] == 1.0
    best = min(rows, key=lambda r: r["val_loss"])
    assert res["loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    assert (out / "confusion-val.png").read_bytes()[:4] == b"\x89PNG"

    rc, text, _ = run(capsys, "eval", out / "best.pt", "--data", data, "--size", "32x32", "--split", "val")
    assert rc == 0 and "top-1 accuracy  100.00%" in text

    images = []
    for k, (name, rgb) in enumerate(COLOURS.items()):
        p = tmp_path / f"new_{name}.png"
        colour_image(rgb, 999 + k, size=48).save(p)  # another size: predict resizes like the loader
        images.append(p)
    rc, text, err = run(capsys, "predict", out / "best.pt", *images, "--format", "json")
    assert rc == 0, err
    preds = json.loads(text)
    assert [p["class"] for p in preds] == list(COLOURS)
    assert all(0.5 < p["probability"] <= 1.0 for p in preds)
    rc, text, _ = run(capsys, "predict", out / "best.pt", images[0], "--top", "3")
    assert rc == 0 and text.split()[:2] == ["new_red.png", "red"]


def test_unknown_data_set(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    rc, _, err = run(capsys, "train", "lenet5-relu", "--data", "mnsit", "--out", out)
    assert rc == 2 and "unknown data set 'mnsit'" in err and "mnist" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_batch_size_zero_fails_before_reading_data(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    rc, _, err = run(capsys, "train", "lenet5-relu", "--data", tmp_path / "nowhere", "--batch-size", "0",
                     "--out", out)
    assert rc == 2 and err.strip() == "cnnlab: error: --batch-size must be >= 1, got 0"
    assert not out.exists()


def test_single_class_folder(tmp_path, capsys) -> None:
    d = tmp_path / "one" / "cat"
    d.mkdir(parents=True)
    for i in range(4):
        colour_image((100, 100, 100), i).save(d / f"{i}.png")
    rc, _, err = run(capsys, *TRAIN, "--data", tmp_path / "one", "--out", tmp_path / "run")
    assert rc == 2 and "class" in err and len(err.strip().splitlines()) == 1


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, capsys) -> None:
    data = colour_folder(tmp_path / "colours", per_class=8)
    out = tmp_path / "run"
    rc, _, err = run(capsys, *TRAIN, "--data", data, "--epochs", "1", "--out", out)
    assert rc == 0, err
    before = (out / "last.pt").read_bytes()
    rows = (out / "metrics.json").read_text()
    rc, _, err = run(capsys, *TRAIN, "--data", data, "--epochs", "3", "--lr", "1e30", "--out", out, "--resume")
    assert rc == 2
    assert "loss became NaN/inf at epoch 2" in err and f"last good checkpoint {out / 'last.pt'} (epoch 1)" in err
    assert (out / "last.pt").read_bytes() == before and (out / "metrics.json").read_text() == rows
    assert checkpoint.load(out / "last.pt").epoch == 1


def test_train_refuses_to_overwrite_a_run(tmp_path, capsys) -> None:
    data = colour_folder(tmp_path / "colours", per_class=8)
    out = tmp_path / "run"
    assert run(capsys, *TRAIN, "--data", data, "--epochs", "1", "--out", out)[0] == 0
    best, rows = (out / "best.pt").read_bytes(), (out / "metrics.json").read_text()
    rc, _, err = run(capsys, *TRAIN, "--data", data, "--epochs", "1", "--lr", "1e-6", "--out", out)
    assert rc == 2 and "already holds a run" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "best.pt").read_bytes() == best and (out / "metrics.json").read_text() == rows
    rc, _, err = run(capsys, *TRAIN, "--data", data, "--epochs", "1", "--out", out, "--overwrite")
    assert rc == 0, err


def test_eval_and_predict_refuse_bad_files(tmp_path, capsys) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    rc, _, err = run(capsys, "eval", junk, "--data", "mnist")
    assert rc == 2 and "not a readable checkpoint" in err
    rc, _, err = run(capsys, "predict", tmp_path / "missing.pt", junk)
    assert rc == 2 and "no checkpoint at" in err


def test_resume_continues_with_the_checkpoint_recipe(tmp_path, capsys) -> None:
    data = colour_folder(tmp_path / "colours", per_class=8)
    out = tmp_path / "run"
    assert run(capsys, *TRAIN, "--data", data, "--epochs", "1", "--optimizer", "sgd", "--lr", "0.02",
               "--out", out)[0] == 0
    rc, _, err = run(capsys, *TRAIN, "--data", data, "--epochs", "2", "--out", out, "--resume")
    assert rc == 0, err
    ck = checkpoint.load(out / "last.pt")
    assert ck.epoch == 2 and ck.recipe["optimizer"] == "sgd" and ck.recipe["lr"] == 0.02
    rc, _, err = run(capsys, *TRAIN, "--data", data, "--epochs", "3", "--optimizer", "adam", "--out", out, "--resume")
    assert rc == 2 and "does not fit optimizer 'adam'" in err


def test_torchrun_two_processes_match_one(tmp_path, capsys) -> None:
    """DDP over 2 gloo processes, each half of every batch, ends where one process with the whole
    batch ends (lenet-rgb8 has no BatchNorm or dropout, so the gradients are the same mean)."""
    data = colour_folder(tmp_path / "colours", per_class=16)
    args = [*TRAIN, "--data", data, "--epochs", "1", "--optimizer", "sgd", "--lr", "0.05"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CNNLAB_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "cnnlab", *map(str, args), "--out", str(tmp_path / "ddp")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "x 2 processes" in proc.stdout
    assert run(capsys, *args, "--out", tmp_path / "one")[0] == 0
    a, b = (checkpoint.load(tmp_path / d / "last.pt") for d in ("ddp", "one"))
    for k in a.model:
        assert torch.allclose(a.model[k], b.model[k], atol=1e-5), k
    ra, rb = (json.loads((tmp_path / d / "metrics.json").read_text())[0] for d in ("ddp", "one"))
    assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-4)
    assert ra["val_loss"] == pytest.approx(rb["val_loss"], rel=1e-4) and ra["val_acc"] == rb["val_acc"]


def _recipe(tmp_path, *argv: str):
    from cnnlab.cli import make_parser
    from cnnlab.commands.train import recipe_from_args

    args = make_parser().parse_args(["train", "lenet5", "--data", "mnist", *argv])
    return recipe_from_args(args, tmp_path / "run")


def test_schedule_options_reach_the_recipe(tmp_path) -> None:
    from cnnlab.errors import CnnlabError
    from cnnlab.train.recipes import scheduled_lr

    r = _recipe(tmp_path, "--optimizer", "sgd", "--lr", "0.1", "--schedule", "step", "--step-epochs", "2",
                "--gamma", "0.5")
    assert [scheduled_lr(r, e * 10, 10) for e in range(6)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    r = _recipe(tmp_path, "--lr", "1", "--schedule", "multistep", "--milestones", "2,4")
    assert [scheduled_lr(r, e, 1) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    r = _recipe(tmp_path, "--recipe", "lenet-keras", "--plateau", "4", "--plateau-factor", "0.5", "--monitor", "val_acc")
    assert (r.plateau, r.plateau_patience, r.plateau_factor, r.monitor, r.optimizer) == (True, 4, 0.5, "val_acc", "adam")
    assert _recipe(tmp_path, "--recipe", "alexnet-paper", "--plateau", "0").plateau is False
    for bad, msg in ((["--milestones", "4,2"], "increasing epochs"), (["--gamma", "2"], "--gamma must be in"),
                     (["--plateau", "-1"], "--plateau must be >= 0")):
        with pytest.raises(CnnlabError, match=msg):
            _recipe(tmp_path, *bad)
