"""One atomic writer for every file cnnlab writes, and the report command's --out and --run checks."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_path, tmp_path, write_text


def test_atomic_path_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    write_text(target, "new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_a_failed_write_is_one_line_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "last.pt"
    write_text(target, "kept")

    def full_disk(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.replace", full_disk)
    with pytest.raises(CnnlabError, match=r"^cannot write .*last.pt: No space left on device$"):
        write_text(target, "new")
    assert target.read_text() == "kept" and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_targets_that_cannot_be_files(tmp_path: Path) -> None:
    with pytest.raises(CnnlabError, match="it is a directory; give a file name"):
        write_text(tmp_path, "x")
    with pytest.raises(CnnlabError, match=r"no directory .*missing; create it first"):
        write_text(tmp_path / "missing" / "r.html", "x")
    assert not (tmp_path / "missing").exists()  # never created behind the user's back


def test_image_temporaries_keep_their_suffix() -> None:
    # matplotlib picks the format from the suffix; the trainer's leftover cleanup knows these names
    assert tmp_path(Path("run/curves.png")).name == "curves.tmp.png"
    assert tmp_path(Path("run/best.pt")).name == "best.pt.tmp"


def _err(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


def test_report_out_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _err(capsys, "report", "lenet5", "--out", str(tmp_path))
    assert rc == 2 and err.count("\n") == 1 and "it is a directory" in err
    assert [p.name for p in tmp_path.iterdir()] == []  # no 'adir.tmp' left behind
    rc, err = _err(capsys, "report", "lenet5", "--out", str(tmp_path / "a" / "b" / "r.html"))
    assert rc == 2 and err.count("\n") == 1 and "create it first" in err and not (tmp_path / "a").exists()
    rc, err = _err(capsys, "report", "lenet5", "--out", "/proc/cnnlab-report.html")  # a place nobody may write
    assert rc == 2 and err.count("\n") == 1 and err.startswith("cnnlab: error: cannot write /proc/cnnlab-report.html")


@pytest.mark.parametrize("records, problem", [
    ({"epoch": 1}, "should hold a list"),
    ([["epoch", 1]], "record 1 is not an object"),
    ([{"train_loss": 0.5}], "record 1 has no epoch number"),
    ([{"epoch": 1, "train_loss": 0.5}, {"epoch": "2", "train_loss": 0.4}], "record 2 has no epoch number"),
    ([{"epoch": 1, "train_loss": "low"}], "record 1 has a train_loss that is not a finite number"),
    ([{"epoch": 1, "val_acc": float("nan")}], "record 1 has a val_acc that is not a finite number"),
    ([{"epoch": 1, "num_classes": 0}], "num_classes that is not a positive integer"),
])
def test_report_run_with_malformed_metrics(records: object, problem: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps(records))
    rc, err = _err(capsys, "report", "lenet5", "--run", str(tmp_path), "--out", str(tmp_path / "r.html"))
    assert rc == 2 and err.count("\n") == 1 and problem in err
    assert not (tmp_path / "r.html").exists()


def test_report_run_with_good_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"epoch": e, "train_loss": 1 / e, "train_acc": 0.9, "val_loss": None, "val_acc": None, "lr": 0.1}
            for e in (1, 2)]
    (tmp_path / "metrics.json").write_text(json.dumps(rows))
    assert main(["report", "lenet5", "--run", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 0
    assert "<svg" in (tmp_path / "r.html").read_text()
