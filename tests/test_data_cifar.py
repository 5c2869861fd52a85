"""CIFAR-10/100 parsers on synthetic files written in both published formats, and the CIFAR source chain."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import os
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab import data
from cnnlab.data import cifar
from cnnlab.errors import CnnlabError

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def synthetic(name: str, split: str, n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per batch file: pixel rows (n x 3072), fine labels, coarse labels."""
    v = cifar.VARIANTS[name]
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, v.num_classes, n),
             rng.integers(0, 20, n)) for _ in v.batches[split]]


def names(name: str) -> list[str]:
    return CIFAR10_NAMES if name == "cifar10" else [f"class_{i:02d}" for i in range(100)]


def write_python(folder: Path, name: str, n: int = 6) -> dict[str, list]:
    """A python-version folder as the authors pickle it: dicts with bytes keys, protocol 2."""
    v = cifar.VARIANTS[name]
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split in v.batches:
        out[split] = synthetic(name, split, n, seed=len(split))
        for (fname, _), (x, fine, coarse) in zip(v.batches[split], out[split]):
            d = {b"batch_label": f"{fname}".encode(), b"data": x, b"filenames": [b"x.png"] * n}
            if name == "cifar10":
                d[b"labels"] = [int(i) for i in fine]
            else:
                d[b"fine_labels"], d[b"coarse_labels"] = [int(i) for i in fine], [int(i) for i in coarse]
            (folder / fname).write_bytes(pickle.dumps(d, protocol=2))
    meta = ({b"label_names": [s.encode() for s in names(name)], b"num_cases_per_batch": n, b"num_vis": 3072}
            if name == "cifar10" else {b"fine_label_names": [s.encode() for s in names(name)],
                                       b"coarse_label_names": [f"super_{i}".encode() for i in range(20)]})
    (folder / v.meta[0]).write_bytes(pickle.dumps(meta, protocol=2))
    return out


def write_binary(folder: Path, name: str, n: int = 6) -> dict[str, list]:
    """A binary-version folder: records of label byte(s) + 3072 pixel bytes, names in a text file."""
    v = cifar.VARIANTS[name]
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split in v.bin_batches:
        out[split] = synthetic(name, split, n, seed=7 + len(split))
        for fname, (x, fine, coarse) in zip(v.bin_batches[split], out[split]):
            labels = [fine[:, None]] if name == "cifar10" else [coarse[:, None], fine[:, None]]
            (folder / fname).write_bytes(np.concatenate([*labels, x], axis=1).astype(np.uint8).tobytes())
    (folder / v.bin_meta).write_text("\n".join(names(name)) + "\n\n")
    return out


def expected(parts: list) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
    return torch.from_numpy(x), torch.from_numpy(np.concatenate([p[1] for p in parts]).astype(np.int64))


def repin(monkeypatch: pytest.MonkeyPatch, name: str, folder: Path, **extra: str) -> None:
    """Make the synthetic python files the 'published' ones, so the chain accepts them."""
    v = cifar.VARIANTS[name]
    md5 = lambda f: hashlib.md5((folder / f).read_bytes()).hexdigest()  # noqa: E731
    batches = {s: tuple((f, md5(f)) for f, _ in fs) for s, fs in v.batches.items()}
    monkeypatch.setitem(cifar.VARIANTS, name, dataclasses.replace(v, batches=batches,
                                                                  meta=(v.meta[0], md5(v.meta[0])), **extra))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_python_format_parses_channel_planar_rows(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = write_python(tmp_path / "py", name)
    repin(monkeypatch, name, tmp_path / "py")
    for split in ("train", "test"):
        got = cifar.read_folder(tmp_path / "py", name, split)
        x, y = expected(parts[split])
        assert got is not None and torch.equal(got["images"], x) and torch.equal(got["labels"], y)
        assert got["classes"] == names(name)
    # Row layout: the first 1024 bytes are the red plane, row-major.
    row = parts["test"][0][0][0]
    assert got["images"][0, 0, 0, 1].item() == row[1] and got["images"][0, 2, 31, 31].item() == row[3071]


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_binary_format_through_load_with_data_dir(tmp_path: Path, name: str) -> None:
    v = cifar.VARIANTS[name]
    parts = write_binary(tmp_path / v.bin_folder, name)
    for split in ("train", "test"):
        got = data.load(name, split, data_dir=tmp_path)
        x, y = expected(parts[split])
        assert torch.equal(got.images, x) and torch.equal(got.labels, y)  # CIFAR-100: the fine label
        assert got.classes == names(name) and got.name == f"{name}/{split}" and got.shape == (3, 32, 32)
        assert len(got) == 6 * len(v.bin_batches[split])


def test_python_batches_that_fail_their_checksum_are_refused(tmp_path: Path) -> None:
    write_python(tmp_path / "cifar-10-batches-py", "cifar10")
    with pytest.raises(data.ChecksumError, match="data_batch_1: MD5 .* expected c99cafc152244af753f735de768cd75f"):
        data.load("cifar10", data_dir=tmp_path)


def test_archive_that_fails_its_checksum_is_refused(tmp_path: Path) -> None:
    write_python(tmp_path / "src" / "cifar-100-python", "cifar100")
    with tarfile.open(tmp_path / "cifar-100-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-100-python", "cifar-100-python")
    with pytest.raises(data.ChecksumError, match="cifar-100-python.tar.gz: MD5 .* expected eb9058c3a382ff"):
        data.load("cifar100", "test", data_dir=tmp_path)


def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return os.system, (f"touch {marker}",)

    with pytest.raises(CnnlabError, match=r"not a CIFAR python batch \(UnpicklingError: refusing to load .*system"):
        cifar.read_python_batch(pickle.dumps({b"data": Evil()}), what="data_batch_1")
    assert not marker.exists()


@pytest.mark.parametrize("payload,label_bytes,message", [
    (b"\x01" * 3072, 1, "3072 bytes is not a whole number of 3073-byte records"),
    (b"\x01" * (2 * 3074 - 5), 2, "not a whole number of 3074-byte records"),
    (b"", 1, "0 bytes"),
])
def test_truncated_binary_batches_are_clear_errors(payload: bytes, label_bytes: int, message: str) -> None:
    with pytest.raises(CnnlabError, match=message):
        cifar.read_binary_batch(payload, label_bytes, "test_batch.bin")


def test_bad_labels_names_and_shapes_are_clear_errors(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    write_binary(folder, "cifar10")
    raw = bytearray((folder / "test_batch.bin").read_bytes())
    raw[0] = 10
    (folder / "test_batch.bin").write_bytes(bytes(raw))
    with pytest.raises(CnnlabError, match="label 10 outside 0-9"):
        data.load("cifar10", "test", data_dir=tmp_path)
    (folder / "batches.meta.txt").write_text("cat\ndog\n")
    with pytest.raises(CnnlabError, match="lists 2 classes, CIFAR-10 has 10"):
        data.load("cifar10", "test", data_dir=tmp_path)
    (folder / "batches.meta.txt").unlink()
    with pytest.raises(CnnlabError, match="batches.meta.txt \\(the class names\\) is missing"):
        data.load("cifar10", "test", data_dir=tmp_path)
    with pytest.raises(CnnlabError, match="expected uint8 data N x 3072"):
        cifar.read_python_batch(pickle.dumps({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(CnnlabError, match="has no 'labels' entry"):
        cifar.read_python_batch(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}))


def test_chain_downloads_verifies_unpacks_and_caches(tmp_path: Path, _cache: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Cold: the 'official' archive from a local mirror, checksummed and unpacked; warm: the parsed cache."""
    www = tmp_path / "www"
    parts = write_python(tmp_path / "src" / "cifar-10-batches-py", "cifar10")
    www.mkdir()
    with tarfile.open(www / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", "cifar-10-batches-py")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/cifar-10-python.tar.gz"
        md5 = hashlib.md5((www / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
        repin(monkeypatch, "cifar10", tmp_path / "src" / "cifar-10-batches-py", url=url, md5=md5)
        test = data.load("cifar10", "test")
    finally:
        httpd.shutdown()
        httpd.server_close()
    x, y = expected(parts["test"])
    assert torch.equal(test.images, x) and torch.equal(test.labels, y) and test.classes == CIFAR10_NAMES
    root = _cache / "cifar10"
    assert sorted(p.name for p in root.iterdir()) == [".lock", "cifar-10-python.tar.gz", "test.pt", "train.pt"]
    train = data.load("cifar10", "train")  # the server is gone: this comes from the cache
    assert torch.equal(train.images, expected(parts["train"])[0])

    # With every source gone, the error says what was tried.
    for f in root.iterdir():
        f.unlink()
    with pytest.raises(CnnlabError, match=r"cannot load CIFAR-10; tried: cache .* \(empty\); http://127\.0\.0\.1:\d+/"
                                          r"cifar-10-python\.tar\.gz \(.*\)\. Fix: download"):
        data.load("cifar10", "val")


def test_pickles_written_before_numpy_2_still_parse() -> None:
    """The published batches name numpy.core.multiarray, which numpy 2 moved to numpy._core."""
    x = np.arange(2 * 3072, dtype=np.uint64).astype(np.uint8).reshape(2, 3072)
    blob = pickle.dumps({b"data": x, b"labels": [3, 1]}, protocol=2)
    legacy = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in legacy
    images, labels = cifar.read_python_batch(legacy)
    assert np.array_equal(images.reshape(2, 3072), x) and labels.tolist() == [3, 1]
