"""Training, resume and evaluation under bad options, interrupted writes and full disks: one line, nothing lost."""

from __future__ import annotations

import errno
import json
import shutil

import pytest
import torch

from cnnlab.train import Recipe, Trainer, checkpoint
from test_cli_train import TRAIN, colour_folder, run
from test_train import pattern_set, quiet, state_equal, tiny_net


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("opts,msg", [
    (("--momentum", "-1"), "--momentum must be in [0, 1), got -1.0"),
    (("--momentum", "5"), "--momentum must be in [0, 1), got 5.0"),
    (("--momentum", "nan"), "--momentum must be in [0, 1), got nan"),
    (("--aux-weight", "nan"), "--aux-weight must be a number >= 0, got nan"),
    (("--aux-weight", "-5"), "--aux-weight must be a number >= 0, got -5.0"),
    (("--seed", "99999999999999999999"), "--seed must be an integer in [0, 2**63), got 99999999999999999999"),
    (("--seed", "-1"), "--seed must be an integer in [0, 2**63), got -1"),
])
def test_bad_training_options_fail_in_one_line_before_any_data(tmp_path, capsys, opts, msg) -> None:
    out = tmp_path / "run"
    rc, _, err = run(capsys, *TRAIN, "--data", tmp_path / "nowhere", "--optimizer", "sgd", *opts, "--out", out)
    assert rc == 2 and one_line(err) == f"cnnlab: error: {msg}" and not out.exists()


def test_out_is_checked_before_the_data(tmp_path, capsys, monkeypatch) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    nowhere = tmp_path / "nowhere"  # reading it would fail: the out check must come first
    rc, _, err = run(capsys, *TRAIN, "--data", nowhere, "--out", afile)
    assert rc == 2 and "--out" in one_line(err) and "is a file, not a folder" in err
    rc, _, err = run(capsys, *TRAIN, "--data", nowhere, "--out", afile / "run")
    assert rc == 2 and f"{afile} is a file, so the folder cannot be made there" in one_line(err)
    monkeypatch.setattr("os.access", lambda path, mode: False)  # a read-only mount (root ignores chmod)
    rc, _, err = run(capsys, *TRAIN, "--data", nowhere, "--out", tmp_path / "ro" / "run")
    assert rc == 2 and f"{tmp_path} is not writable" in one_line(err)


def test_resume_restores_a_best_pt_lost_in_its_first_write(tmp_path, capsys) -> None:
    data = colour_folder(tmp_path / "colours", per_class=8)
    out = tmp_path / "run"
    assert run(capsys, *TRAIN, "--data", data, "--epochs", "1", "--out", out)[0] == 0
    (out / "best.pt").unlink()  # killed during its first write: a 0-byte temporary file, no best.pt
    (out / "best.pt.tmp").write_bytes(b"")
    (out / "curves.tmp.png").write_bytes(b"")
    rc, text, err = run(capsys, *TRAIN, "--data", data, "--epochs", "1", "--out", out, "--resume")
    assert rc == 0, err
    assert "nothing to do" in text and f"restored {out / 'best.pt'} from last.pt (epoch 1)" in text
    assert "wrote" not in text  # nothing new was trained
    assert not list(out.glob("*.tmp*")) and checkpoint.load(out / "best.pt").epoch == 1
    rc, text, err = run(capsys, "eval", out / "best.pt", "--data", data, "--size", "32x32", "--split", "val")
    assert rc == 0, err


def test_resume_replaces_a_stale_best_pt(tmp_path) -> None:
    train, val = pattern_set(64), pattern_set(32, seed=1)
    recipe = Recipe(optimizer="sgd", lr=0.05, batch_size=16, epochs=1)
    Trainer(tiny_net(), train, val, recipe, quiet(out=tmp_path)).fit()
    old = (tmp_path / "best.pt").read_bytes()
    Trainer(tiny_net(), train, val, recipe.with_overrides(epochs=2), quiet(out=tmp_path, resume=True)).fit()
    last = checkpoint.load(tmp_path / "last.pt")
    assert last.best_epoch == 2  # epoch 2 improved, so best.pt was rewritten...
    (tmp_path / "best.pt").write_bytes(old)  # ...but the kill came during that write
    logs: list[str] = []
    opts = quiet(out=tmp_path, resume=True)
    opts.log = logs.append
    Trainer(tiny_net(), train, val, recipe.with_overrides(epochs=2), opts).fit()
    assert checkpoint.load(tmp_path / "best.pt").epoch == 2
    assert (tmp_path / "best.pt").read_bytes() == (tmp_path / "last.pt").read_bytes()
    assert any("restored" in line for line in logs)


def test_resume_takes_the_seed_from_the_checkpoint(tmp_path) -> None:
    train, val = pattern_set(96), pattern_set(32, seed=1)
    recipe = Recipe(optimizer="sgd", lr=0.05, batch_size=16, epochs=3, schedule="onecycle")
    full = Trainer(tiny_net(), train, val, recipe, quiet(seed=3))
    full.fit()

    def stop(row: dict) -> None:
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_net(), train, val, recipe, quiet(out=tmp_path, seed=3, on_epoch=stop)).fit()
    resumed = Trainer(tiny_net(), train, val, recipe, quiet(out=tmp_path, resume=True))  # no seed given
    assert resumed.seed == 3
    resumed.fit()
    assert state_equal(full.model.state_dict(), resumed.model.state_dict())


def test_eval_and_resume_use_the_split_seed_of_the_checkpoint(tmp_path, capsys) -> None:
    data = colour_folder(tmp_path / "colours", per_class=10)
    out = tmp_path / "run"
    rc, _, err = run(capsys, *TRAIN, "--data", data, "--epochs", "1", "--seed", "7", "--val-fraction", "0.2",
                     "--out", out)
    assert rc == 0, err
    row = json.loads((out / "metrics.json").read_text())[0]
    rc, text, err = run(capsys, "eval", out / "best.pt", "--data", data, "--size", "32x32", "--split", "val",
                        "--format", "json")
    res = json.loads(text)
    assert rc == 0 and res["n"] == 6 and res["loss"] == pytest.approx(row["val_loss"], rel=1e-5)
    rc, seven, _ = run(capsys, "eval", out / "best.pt", "--data", data, "--size", "32x32", "--split", "val",
                       "--seed", "7", "--format", "json")
    assert rc == 0 and seven == text
    from cnnlab.data import load

    a, b = (load(str(data), "val", size=(32, 32), val_fraction=0.2, seed=s) for s in (7, 0))
    assert not torch.equal(a.images, b.images)  # seed 0, the old default, would evaluate other images
    rc, _, err = run(capsys, *TRAIN, "--data", data, "--epochs", "2", "--val-fraction", "0.2", "--out", out,
                     "--resume")
    assert rc == 0, err
    assert checkpoint.load(out / "last.pt").seed == 7


def test_resume_refusals_name_the_cause(tmp_path, capsys) -> None:
    data = colour_folder(tmp_path / "colours", per_class=8)
    out = tmp_path / "run"
    assert run(capsys, *TRAIN, "--data", data, "--epochs", "1", "--out", out)[0] == 0  # Adam, the default
    rc, _, err = run(capsys, *TRAIN, "--data", data, "--recipe", "mnist-fast", "--out", out, "--resume")
    assert rc == 2 and "does not fit optimizer 'sgd' (it was trained with 'adam')" in one_line(err)
    two = tmp_path / "two"
    shutil.copytree(data, two)
    shutil.rmtree(two / "blue")
    rc, _, err = run(capsys, *TRAIN, "--data", two, "--epochs", "2", "--out", out, "--resume")
    assert rc == 2 and "was trained on 3 classes but the data has 2" in one_line(err)
    assert "different network" not in err


def test_a_full_disk_stops_in_one_line_and_keeps_last_pt(tmp_path, capsys, monkeypatch) -> None:
    data = colour_folder(tmp_path / "colours", per_class=8)
    out = tmp_path / "run"
    save = checkpoint.torch.save

    def fills_up(obj, f, *a, **kw):
        if str(getattr(f, "name", "")).endswith("best.pt.tmp"):  # epoch 1's best.pt, after its last.pt
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        save(obj, f, *a, **kw)

    monkeypatch.setattr(checkpoint.torch, "save", fills_up)
    rc, _, err = run(capsys, *TRAIN, "--data", data, "--epochs", "2", "--out", out)
    line = one_line(err)
    assert rc == 2 and f"cannot write {out / 'best.pt'}: No space left on device" in line
    assert f"{out / 'last.pt'} holds the last complete epoch" in line
    assert checkpoint.load(out / "last.pt").epoch == 1 and not (out / "best.pt").exists()
    assert not list(out.glob("*.tmp*"))

    monkeypatch.setattr(checkpoint.torch, "save", save)
    from matplotlib.figure import Figure

    def no_room(self, path, *a, **kw):
        open(path, "wb").close()  # matplotlib leaves the 0-byte file it opened
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", no_room)
    rc, _, err = run(capsys, *TRAIN, "--data", data, "--epochs", "1", "--out", out, "--overwrite")
    assert rc == 2 and f"cannot write {out / 'curves.png'}: No space left on device" in one_line(err)
    assert checkpoint.load(out / "last.pt").epoch == 1 and not list(out.glob("*.tmp*"))


def test_eval_confusion_paths(tmp_path, capsys, monkeypatch) -> None:
    nowhere = tmp_path / "nowhere"
    ck = tmp_path / "missing.pt"  # the path is checked before the checkpoint and the data
    for bad, msg in ((tmp_path / "no" / "cm.png", f"no folder {tmp_path / 'no'}"), (tmp_path, "is a folder"),
                     (tmp_path / "cm.txt", "unsupported image type '.txt'")):
        rc, _, err = run(capsys, "eval", ck, "--data", nowhere, "--confusion", bad)
        assert rc == 2 and msg in one_line(err)

    data = colour_folder(tmp_path / "colours", per_class=8)
    out = tmp_path / "run"
    assert run(capsys, *TRAIN, "--data", data, "--epochs", "1", "--out", out)[0] == 0

    def read_only(*a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("cnnlab.train.plots.plot_confusion", read_only)
    rc, text, err = run(capsys, "eval", out / "best.pt", "--data", data, "--size", "32x32", "--split", "val")
    assert rc == 2 and "top-1 accuracy" in text  # the result is printed before the image fails
    assert f"cannot write the confusion matrix {out / 'confusion-val.png'}: Permission denied" in one_line(err)


def test_learning_rate_is_schedule_times_plateau_floored_at_min_lr() -> None:
    from cnnlab.train.recipes import learning_rate, scheduled_lr

    r = Recipe(lr=0.1, schedule="step", step_epochs=1, gamma=0.5, min_lr=0.02)
    assert [learning_rate(r, e * 10, 10) for e in range(4)] == pytest.approx([0.1, 0.05, 0.025, 0.02])
    assert learning_rate(r, 0, 10, plateau_scale=0.1) == pytest.approx(0.02)
    assert learning_rate(r, 0, 10, plateau_scale=0.5) == pytest.approx(0.05)
    keras = Recipe(lr=1e-3, schedule="keras-resnet", epochs=200)
    assert scheduled_lr(keras, 81, 1) == pytest.approx(1e-4) and scheduled_lr(keras, 181, 1) == pytest.approx(5e-7)
    assert keras.with_plateau(3, 0.5) == keras.with_overrides(plateau=True, plateau_patience=3, plateau_factor=0.5)
    assert keras.with_plateau(None) == keras and keras.with_plateau(0).plateau is False
