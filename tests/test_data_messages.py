"""A first fetch says what it does: each source tried, a download bar on a terminal, where the data came
from and that its checksums passed; one line per message, and nothing at all when the cache serves."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from cnnlab import data
from cnnlab.data import mnist, sources
from test_data_mnist import fake_mnist
from test_data_sources import server  # noqa: F401 - the local mirror fixture

DEAD = "http://127.0.0.1:9/mnist/"  # nothing listens on the discard port: refused at once


def _said(err: str) -> list[str]:
    """cnnlab's lines on stderr (the local test server logs its requests there too)."""
    return [ln for ln in err.splitlines() if not re.match(r"127\.0\.0\.1 - - ", ln)]


def _md5(b: bytes) -> str:
    return hashlib.md5(b, usedforsecurity=False).hexdigest()


@pytest.fixture
def mirror(server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: F811
    """A local mirror with four small fake MNIST files, behind a dead one; the published MD5s swapped for theirs."""
    url, root = server
    images, labels = fake_mnist(7)
    raw, gz = {}, {}
    for name in mnist.RAW_MD5:
        payload = images if "images" in name else labels
        packed = gzip.compress(payload, mtime=0)
        (root / f"{name}.gz").write_bytes(packed)
        raw[name], gz[name] = _md5(payload), _md5(packed)
    monkeypatch.setattr(mnist, "RAW_MD5", raw)
    monkeypatch.setattr(mnist, "GZ_MD5", gz)
    monkeypatch.setattr(mnist, "MIRRORS", (DEAD, url))
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm: the chain must not reach it
    return url


def test_fetch_says_each_source_then_where_the_data_came_from(mirror: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    train = data.load("mnist", "train")
    assert len(train) == 7
    lines = _said(capsys.readouterr().err)
    cache = tmp_path / "cache" / "mnist"
    assert lines[0] == f"cnnlab: MNIST: not in the cache {cache}; fetching its 4 files (about 11 MB)"
    assert lines[1] == f"cnnlab: MNIST: fetching {DEAD}train-images-idx3-ubyte.gz"
    assert re.fullmatch(rf"cnnlab: MNIST: {re.escape(DEAD)} failed \(.+\); trying the next source", lines[2])
    fetched = [ln.removeprefix(f"cnnlab: MNIST: fetching {mirror}") for ln in lines[3:7]]
    assert fetched == [f"{n}.gz" for n in mnist.RAW_MD5]  # the dead mirror is not tried again
    assert lines[7:] == [f"cnnlab: MNIST: files from {mirror}; MD5 checksums passed; cached in {cache}"]

    data.load("mnist", "test")  # the cache serves: nothing to say
    assert _said(capsys.readouterr().err) == []

    for f in ("test.pt", "train.pt", "t10k-labels-idx1-ubyte"):  # one raw file lost: only it is fetched
        (cache / f).unlink()
    data.load("mnist", "test")
    lines = _said(capsys.readouterr().err)
    assert lines[:2] == [f"cnnlab: MNIST: 1 of its 4 files missing from the cache {cache}; fetching them",
                         f"cnnlab: MNIST: fetching {DEAD}t10k-labels-idx1-ubyte.gz"]
    assert lines[3:] == [f"cnnlab: MNIST: fetching {mirror}t10k-labels-idx1-ubyte.gz",
                         f"cnnlab: MNIST: files from {mirror}; MD5 checksums passed; cached in {cache}"]


def test_a_mirror_serving_a_wrong_file_is_named_and_the_next_one_used(mirror: str, server: tuple[str, Path],  # noqa: F811
                                                                       tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    url, root = server
    bad = root / "bad"
    bad.mkdir()
    for name in mnist.RAW_MD5:
        (bad / f"{name}.gz").write_bytes(gzip.compress(b"not mnist"))
    monkeypatch.setattr(mnist, "MIRRORS", (url + "bad/", url))
    data.load("mnist", "train")
    err = "".join(ln + "\n" for ln in _said(capsys.readouterr().err))
    assert f"cnnlab: MNIST: {url}bad/train-images-idx3-ubyte.gz failed its checksum and was discarded; " \
           "trying the next source\n" in err
    assert err.endswith(f"cnnlab: MNIST: files from {url}; MD5 checksums passed; cached in "
                        f"{tmp_path / 'cache' / 'mnist'}\n")


def test_no_progress_bar_when_stderr_is_not_a_terminal(server: tuple[str, Path], tmp_path: Path,  # noqa: F811
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    url, root = server
    (root / "f.bin").write_bytes(b"x" * 3000)
    assert sources.progress_console() is None  # pytest's captured stderr is no terminal
    sources.download(url + "f.bin", tmp_path / "f.bin", _md5(b"x" * 3000))
    assert _said(capsys.readouterr().err) == []


def test_progress_bar_on_a_terminal_counts_the_bytes(server: tuple[str, Path], tmp_path: Path,  # noqa: F811
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    url, root = server
    payload = b"y" * 5000
    (root / "weights.bin").write_bytes(payload)
    screen = io.StringIO()
    monkeypatch.setattr(sources, "progress_console",
                        lambda: Console(file=screen, force_terminal=True, width=100, color_system=None))
    assert sources.download(url + "weights.bin", tmp_path / "w.bin", _md5(payload)).read_bytes() == payload
    drawn = screen.getvalue()
    assert "weights.bin" in drawn and "5.0/5.0 kB" in drawn
