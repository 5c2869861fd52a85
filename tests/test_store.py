"""Prepared stores: prepare, resume after a kill, change and corruption detection, training from the memory map
(equal to training from memory), bounded memory, bad input, and a two-node torchrun run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.data import load, store
from cnnlab.errors import CnnlabError
from cnnlab.train import checkpoint

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
TRAIN = ("train", "lenet-rgb8", "--batch-size", "16", "--no-progress", "--epochs", "2", "--optimizer", "sgd",
         "--lr", "0.05")
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def colour_image(rgb: tuple[int, int, int], seed: int, size: int = 20) -> Image.Image:
    g = np.random.default_rng(seed)
    a = np.clip(np.array(rgb)[None, None, :] + g.integers(-40, 40, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(a, "RGB")


def colour_folder(root: Path, per_class: int = 20, classes: dict = COLOURS) -> Path:
    for k, (name, rgb) in enumerate(classes.items()):
        d = root / name
        d.mkdir(parents=True)
        for i in range(per_class):
            colour_image(rgb, 100 * k + i).save(d / f"{i:03d}.png")
    return root


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def files_of(s: Path) -> dict[str, object]:
    """A store's content: bytes of its data files, its manifest, and its chunk records as a dict."""
    return {"images": (s / store.IMAGES).read_bytes(), "labels": (s / store.LABELS).read_bytes(),
            "manifest": (s / store.MANIFEST).read_bytes(), "chunks": json.loads((s / store.CHUNKS).read_text())}


def quiet(_: str) -> None:
    pass


def test_prepare_holds_the_folder_loader_images_and_split(tmp_path) -> None:
    data = colour_folder(tmp_path / "colours")
    s = store.prepare(data, tmp_path / "st", (16, 16), chunk=8, workers=2, log=quiet)
    m = store.manifest(s)
    assert (m["count"], m["channels"], m["size"], m["chunk"]) == (60, 3, [16, 16], 8)
    assert m["splits"] == {"train": [0, 54], "val": [54, 60]}
    assert len(json.loads((s / store.CHUNKS).read_text())) == 8
    assert (s / store.IMAGES).stat().st_size == 60 * 3 * 16 * 16
    for split in ("train", "val"):
        a, b = load(str(s), split), load(str(data), split, size=(16, 16))
        assert a.mapped and not b.mapped
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.classes == b.classes


def test_killed_prepare_resumes_to_the_same_store(tmp_path) -> None:
    data = colour_folder(tmp_path / "colours")
    script = textwrap.dedent("""
        import os, signal, sys
        from cnnlab.data import store
        done = []
        def stop(k):
            done.append(k)
            if len(done) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        store.prepare(sys.argv[1], sys.argv[2], (16, 16), chunk=8, workers=2, on_chunk=stop)
    """)
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", script, str(data), str(killed)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert len(json.loads((killed / store.CHUNKS).read_text())) == 3
    with pytest.raises(CnnlabError, match=r"incomplete \(3 of 8 chunks\).*cnnlab data prepare"):
        load(str(killed), "train")
    said: list[str] = []
    store.prepare(data, killed, (16, 16), chunk=8, workers=2, log=said.append)
    assert said[0] == f"resuming {killed}: 3 of 8 chunks are done" and said[1].startswith("preparing killed: decoded")
    whole = store.prepare(data, tmp_path / "whole", (16, 16), chunk=8, workers=2, log=quiet)
    a, b = files_of(killed), files_of(whole)
    assert a == b
    assert len(a["images"]) == 60 * 768


def test_corrupt_chunk_is_found_never_trained_on_and_rebuilt(tmp_path, capsys) -> None:
    data = colour_folder(tmp_path / "colours")
    s = store.prepare(data, tmp_path / "st", (16, 16), chunk=8, workers=1, log=quiet)
    before = files_of(s)
    with open(s / store.IMAGES, "r+b") as f:  # one byte of image 21: chunk 2
        f.seek(21 * 768 + 100)
        byte = f.read(1)
        f.seek(21 * 768 + 100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(CnnlabError, match=r"chunk 2 of store .* is corrupt .*cnnlab data prepare"):
        load(str(s), "train")
    rc, out, err = run(capsys, *TRAIN, "--data", s, "--out", tmp_path / "run")
    assert rc == 2 and err.count("\n") == 1 and "chunk 2 of store" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "last.pt").exists()
    said: list[str] = []
    store.prepare(data, s, (16, 16), chunk=8, workers=1, log=said.append)
    assert said == [f"1 chunk(s) of {s} do not match their checksum (chunk 2): rebuilding them",
                    "preparing st: decoded 8 images"]
    assert files_of(s) == before


def test_changed_folder_is_detected_and_its_chunks_rebuilt(tmp_path) -> None:
    data = colour_folder(tmp_path / "colours")
    s = store.prepare(data, tmp_path / "st", (16, 16), chunk=8, workers=1, log=quiet)
    old = files_of(s)
    colour_image((0, 0, 0), 999).save(data / "blue" / "003.png")  # same name, new pixels
    said: list[str] = []
    rebuilt: list[int] = []
    store.prepare(data, s, (16, 16), chunk=8, workers=1, log=said.append, on_chunk=rebuilt.append)
    assert "differs from the store" in said[0] and "its files changed" in said[0]
    assert said[1:] == ["preparing st: decoded 8 images"]
    assert len(rebuilt) == 1  # only the chunk holding the changed image
    fresh = store.prepare(data, tmp_path / "fresh", (16, 16), chunk=8, workers=1, log=quiet)
    assert files_of(s) == files_of(fresh) and files_of(s)["images"] != old["images"]
    (data / "red" / "000.png").unlink()  # a removed file shifts the images after it
    store.prepare(data, s, (16, 16), chunk=8, workers=1, log=quiet)
    assert store.manifest(s)["count"] == 59
    assert torch.equal(load(str(s), "train").images, load(str(data), "train", size=(16, 16)).images)


def test_training_from_a_store_equals_training_from_memory(tmp_path, capsys) -> None:
    data = colour_folder(tmp_path / "colours")
    rc, out, err = run(capsys, "data", "prepare", data, "--size", "32x32", "--out", tmp_path / "st")
    assert rc == 0, err
    assert out.strip() == f"store {tmp_path / 'st'}: 54 training and 6 held-out images of 3x32x32, 3 classes"
    assert run(capsys, *TRAIN, "--data", tmp_path / "st", "--out", tmp_path / "a", "--augment", "cifar")[0] == 0
    assert run(capsys, *TRAIN, "--data", data, "--size", "32x32", "--out", tmp_path / "b", "--augment",
               "cifar")[0] == 0
    a, b = (checkpoint.load(tmp_path / d / "last.pt") for d in ("a", "b"))
    assert a.model.keys() == b.model.keys()
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)
    ra, rb = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("a", "b"))
    assert [(r["train_loss"], r["val_loss"], r["val_acc"]) for r in ra] == \
        [(r["train_loss"], r["val_loss"], r["val_acc"]) for r in rb]
    rc, out, err = run(capsys, "eval", tmp_path / "a" / "last.pt", "--data", tmp_path / "st", "--split", "val",
                       "--format", "json")
    assert rc == 0, err
    assert json.loads(out)["n"] == 6 and json.loads(out)["loss"] == pytest.approx(ra[-1]["val_loss"], rel=1e-5)


def test_imagenet_layout_validates_on_val(tmp_path) -> None:
    colour_folder(tmp_path / "net" / "train", per_class=6)
    for k, (name, rgb) in enumerate(COLOURS.items()):
        (tmp_path / "net" / "val" / name).mkdir(parents=True)
        for i in range(2):
            colour_image(rgb, 50 + 10 * k + i).save(tmp_path / "net" / "val" / name / f"v{i}.png")
    s = store.prepare(tmp_path / "net", None, (16, 16), log=quiet)
    assert s == tmp_path / "net.store"
    assert store.manifest(s)["splits"] == {"train": [0, 18], "val": [18, 24]}
    val = load(str(s), "val")
    assert val.labels.tolist() == [0, 0, 1, 1, 2, 2]  # blue, green, red: sorted class names
    assert torch.equal(val.images, load(str(tmp_path / "net"), "val", size=(16, 16)).images)


def test_bad_input_is_one_line(tmp_path, capsys) -> None:
    data = colour_folder(tmp_path / "colours")
    s = tmp_path / "st"
    assert run(capsys, "data", "prepare", data, "--size", "32x32", "--out", s)[0] == 0

    def fails(*argv: object) -> str:
        rc, _, err = run(capsys, *argv)
        assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        return err

    assert "holds 32x32 images but the run asks for --size 64x64" in fails(*TRAIN, "--data", s, "--size", "64x64",
                                                                          "--out", tmp_path / "r0")
    other = colour_folder(tmp_path / "other", classes={"cyan": (0, 200, 200), "magenta": (200, 0, 200),
                                                       "yellow": (200, 200, 0)})
    assert run(capsys, "data", "prepare", other, "--size", "32x32", "--out", tmp_path / "st2")[0] == 0
    assert run(capsys, *TRAIN, "--data", s, "--out", tmp_path / "r1", "--epochs", "1")[0] == 0
    assert "other classes" in fails("eval", tmp_path / "r1" / "last.pt", "--data", tmp_path / "st2")
    assert "other classes" in fails(*TRAIN, "--data", tmp_path / "st2", "--out", tmp_path / "r1", "--resume")
    (s / store.MANIFEST).rename(s / "moved.json")
    assert "is not a prepared store (no readable manifest.json)" in fails(*TRAIN, "--data", s, "--out",
                                                                         tmp_path / "r2")
    assert "unknown data set" in fails(*TRAIN, "--data", tmp_path / "nowhere", "--out", tmp_path / "r2")
    (s / "moved.json").rename(s / store.MANIFEST)
    with open(s / store.IMAGES, "r+b") as f:
        f.truncate(1000)
    assert "is truncated" in fails(*TRAIN, "--data", s, "--out", tmp_path / "r3")
    mixed = colour_folder(tmp_path / "mixed", per_class=2)
    colour_image((1, 2, 3), 7, size=24).save(mixed / "red" / "big.png")
    assert "differ in size" in fails("data", "prepare", mixed)
    assert "give an action" in fails("data")
    assert "already a prepared store" in fails("data", "prepare", s)
    assert "holding other files" in fails("data", "prepare", data, "--size", "32x32", "--out", mixed)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_with_torchrun_match_one_process(tmp_path, capsys) -> None:
    """Two torchrun "nodes" on one machine (c10d rendezvous, gloo, CPU), each reading its shard of every epoch's
    order from the same store, end with the weights of one process running the same global batch."""
    data = colour_folder(tmp_path / "colours", per_class=16)
    s = tmp_path / "st"
    assert run(capsys, "data", "prepare", data, "--size", "32x32", "--out", s)[0] == 0
    args = [*TRAIN, "--data", s, "--epochs", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    port = free_port()
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(r),
                               "--nproc_per_node", "1", "--rdzv-backend", "c10d", "--rdzv-id", "store-test",
                               "--rdzv-endpoint", f"127.0.0.1:{port}", "-m", "cnnlab", *map(str, args), "--out",
                               str(tmp_path / "ddp")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for r in (0, 1)]
    outs = [p.communicate(timeout=240) for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], [o[1][-2000:] for o in outs]
    assert sum("x 2 processes" in o[0] for o in outs) == 1  # only global rank 0 speaks
    assert run(capsys, *args, "--out", tmp_path / "one")[0] == 0
    a, b = (checkpoint.load(tmp_path / d / "last.pt") for d in ("ddp", "one"))
    for k in a.model:
        assert torch.allclose(a.model[k], b.model[k], atol=1e-5), k

    ra, rb = (json.loads((tmp_path / d / "metrics.json").read_text())[0] for d in ("ddp", "one"))
    assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-4)
    assert ra["val_loss"] == pytest.approx(rb["val_loss"], rel=1e-4) and ra["val_acc"] == rb["val_acc"]


RSS_SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    import torch
    from cnnlab.data import load
    from cnnlab.models import load_model
    from cnnlab.train import Options, Trainer
    from cnnlab.train.recipes import Recipe

    def anon():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    torch.set_num_threads(1)
    peak = [0]
    def sample():
        while True:
            peak[0] = max(peak[0], anon())
            time.sleep(0.002)
    threading.Thread(target=sample, daemon=True).start()
    time.sleep(0.05)
    base = anon()
    side = int(sys.argv[2])
    train = load(sys.argv[1], "train", size=(side, side), val_fraction=0.0)
    recipe = Recipe(name="rss", epochs=1, batch_size=32, lr=0.01, optimizer="sgd", normalize="scale")
    net = load_model("lenet-rgb8", num_classes=len(train.classes), in_channels=3)
    Trainer(net, train, None, recipe, Options(progress=False, log=lambda s: None)).fit()
    time.sleep(0.05)
    print(json.dumps({"growth": peak[0] - base, "bytes": train.images.nbytes, "mapped": train.mapped}))
""")


def test_training_from_a_store_keeps_memory_bounded(tmp_path) -> None:
    """Peak RssAnon (the process's own memory, the page cache aside) while one epoch reads a whole store does not
    grow with the store: 10x the images (88 MB more) add less than a quarter of that, while in memory they add their
    own size. glibc's malloc is held at a fixed mmap threshold: its default one adapts as batches are freed and
    leaves heap fragments that grow with the number of steps (9 MB over 63 steps here), which is not the store's."""
    g = np.random.default_rng(0)
    for k in range(2):
        for name in ("small", "large"):
            (tmp_path / name / f"c{k}").mkdir(parents=True)
        for i in range(1000):
            a = (g.integers(0, 255, (12, 12, 3), dtype=np.uint8) + 40 * k).astype(np.uint8)
            im = Image.fromarray(a, "RGB").resize((64, 64))
            for name, n in (("small", 100), ("large", 1000)):
                if i < n:
                    im.save(tmp_path / name / f"c{k}" / f"{i:04d}.jpg", quality=80)
    results = {}
    for name in ("small", "large"):
        s = store.prepare(tmp_path / name, tmp_path / f"{name}.store", (128, 128), val_fraction=0.0, log=quiet)
        for kind, source in (("store", s), ("memory", tmp_path / name)):
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
            proc = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(source), "128"], capture_output=True,
                                  text=True, timeout=300, env=env)
            assert proc.returncode == 0, proc.stderr[-2000:]
            results[kind, name] = json.loads(proc.stdout.strip().splitlines()[-1])
    extra = results["store", "large"]["bytes"] - results["store", "small"]["bytes"]
    assert extra == 1800 * 3 * 128 * 128  # 88 MB more images
    assert results["store", "large"]["mapped"] and not results["memory", "large"]["mapped"]
    budget = extra // 4
    assert results["store", "large"]["growth"] - results["store", "small"]["growth"] < budget, results
    assert results["memory", "large"]["growth"] - results["memory", "small"]["growth"] > extra - budget, results


def test_predict_reads_a_store(tmp_path, capsys) -> None:
    data = colour_folder(tmp_path / "colours")
    s = tmp_path / "st"
    assert run(capsys, "data", "prepare", data, "--size", "32x32", "--out", s)[0] == 0
    assert run(capsys, *TRAIN, "--data", s, "--out", tmp_path / "r", "--epochs", "6", "--lr", "0.1")[0] == 0
    one = str(data / "red" / "001.png")
    rc, out, err = run(capsys, "predict", tmp_path / "r" / "last.pt", s, one, "--format", "json")
    assert rc == 0, err
    rows = json.loads(out)
    held = [e[0] for e in store.manifest(s)["files"][54:]]
    assert [r["image"] for r in rows] == [f"{s}/{h}" for h in held] + [one]
    assert [r["class"] for r in rows] == [h.split("/")[0] for h in held] + ["red"]


def test_a_folder_too_large_for_memory_is_prepared_first(tmp_path, capsys, monkeypatch) -> None:
    """With less memory than the decoded folder (184 KB here, 100 KB available), train prepares a store in the
    cache, says so, and trains from it; the weights equal those of training from the folder in memory."""
    from cnnlab import memory

    data = colour_folder(tmp_path / "colours")
    assert run(capsys, *TRAIN, "--data", data, "--size", "32x32", "--out", tmp_path / "mem")[0] == 0
    monkeypatch.setattr(memory, "available_bytes", lambda: 100_000)
    monkeypatch.setattr(memory, "check_fits", lambda *a: None)  # the model's 244 KiB of weights would not fit either
    rc, out, err = run(capsys, *TRAIN, "--data", data, "--size", "32x32", "--out", tmp_path / "big")
    assert rc == 0, err
    where = store.default_location(data, (32, 32))
    assert where.is_relative_to(tmp_path / "cache")
    assert f"colours decodes to about 180.0 KiB, more than fits in the 97.7 KiB of memory available: preparing the " \
           f"store {where} first" in out
    assert store.manifest(where)["count"] == 60
    a, b = (checkpoint.load(tmp_path / d / "last.pt") for d in ("mem", "big"))
    assert all(torch.equal(a.model[k], b.model[k]) for k in a.model)


def mapped_file(t: torch.Tensor) -> str | None:
    """The file whose memory map holds ``t``'s first byte (from /proc/self/maps); None for the process's own memory."""
    addr = t.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        lo, hi = (int(v, 16) for v in parts[0].split("-"))
        if lo <= addr < hi:
            return parts[5].strip() if len(parts) > 5 else None
    return None


def test_random_resized_crops_train_from_the_store_map_and_eval_cuts_the_centre(tmp_path, capsys,
                                                                                 monkeypatch) -> None:
    """A store at 32x32 trains a model at 24x24: random-resized crops cut from batches gathered through the memory
    map (the same weights as from the folder in memory, the same again when rerun); eval and predict cut the centre
    of each batch and find what a centre-cropped copy in memory gives."""
    from dataclasses import replace

    import cnnlab.train.trainer as trainer_module
    from cnnlab.train import Trainer

    data = colour_folder(tmp_path / "colours")
    s = tmp_path / "st"
    assert run(capsys, "data", "prepare", data, "--size", "32x32", "--out", s)[0] == 0
    images_file = str((s / store.IMAGES).resolve())
    held: list[tuple] = []
    fit = Trainer.fit

    def spy(self: Trainer) -> list:
        held.append((tuple(self.images.shape), mapped_file(self.images), self.mapped))
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", spy)
    crop = [*TRAIN, "--epochs", "1", "--crop", "24x24"]
    rc, out, err = run(capsys, *crop, "--crop-mode", "random", "--data", s, "--out", tmp_path / "a")
    assert rc == 0, err
    assert "54 training images" in out and "input 3x32x32 (random-resized 24x24 crops of 32x32, padded)" in out
    assert held[-1] == ((54, 3, 32, 32), images_file, True)  # the whole store, still its map: nothing was copied
    assert run(capsys, *crop, "--crop-mode", "random", "--data", s, "--out", tmp_path / "again")[0] == 0
    assert run(capsys, *crop, "--crop-mode", "random", "--data", data, "--size", "32x32", "--out",
               tmp_path / "memory")[0] == 0
    assert held[-1][0] == (54, 3, 32, 32) and held[-1][2] is False and held[-1][1] != images_file
    rc, out, err = run(capsys, *crop, "--data", s, "--out", tmp_path / "centre")
    assert rc == 0, err
    assert "(centre 24x24 crops of 32x32, padded)" in out and held[-1][1] == images_file
    a, again, memory, centre = (checkpoint.load(tmp_path / d / "last.pt") for d in ("a", "again", "memory", "centre"))
    assert a.recipe["crop_mode"] == "random" and centre.recipe["crop_mode"] == "center"
    assert a.preprocess.resize == (32, 32) and a.preprocess.data_shape == (3, 24, 24)
    assert all(torch.equal(a.model[k], again.model[k]) and torch.equal(a.model[k], memory.model[k]) for k in a.model)
    assert not all(torch.equal(a.model[k], centre.model[k]) for k in a.model)  # the crops are not the centre's

    given: list[tuple] = []
    evaluate = trainer_module.evaluate

    def spy_eval(model, images, *args, **kw):  # type: ignore[no-untyped-def]
        given.append((tuple(images.shape), mapped_file(images)))
        return evaluate(model, images, *args, **kw)

    monkeypatch.setattr(trainer_module, "evaluate", spy_eval)
    rc, out, err = run(capsys, "eval", tmp_path / "a" / "last.pt", "--data", s, "--split", "val", "--format", "json",
                       "--batch-size", "4")
    assert rc == 0, err
    res = json.loads(out)
    assert given == [((6, 3, 32, 32), images_file)]  # the held-out images reach evaluation whole, from the map
    # The centre 24x24 of 32x32 is rows and columns 4-27 ((32 - 24) / 2 = 4), copied into memory.
    val = load(str(s), "val")
    copy = val.images[:, :, 4:28, 4:28].clone()
    _, model, prep = a.rebuild()
    ref = evaluate(model, copy, val.labels, replace(prep, resize=None), torch.device("cpu"), batch_size=4)
    assert res["n"] == 6 and res["top1"] == ref["top1"] and res["top5"] == ref["top5"]
    assert res["loss"] == pytest.approx(ref["loss"], rel=1e-6)
    assert res["loss"] == pytest.approx(a.metrics[-1]["val_loss"], rel=1e-5)  # training validated the same way
    rc, out, err = run(capsys, "eval", tmp_path / "a" / "last.pt", "--data", data, "--split", "val", "--format",
                       "json")
    assert rc == 0, err
    assert json.loads(out)["loss"] == pytest.approx(ref["loss"], rel=1e-6)  # the folder, read at 32x32 and cut

    rc, out, err = run(capsys, "predict", tmp_path / "a" / "last.pt", s, "--format", "json", "--top", "3")
    assert rc == 0, err
    with torch.no_grad():
        probs = model(replace(prep, resize=None)(copy)).softmax(1)
    for row, p in zip(json.loads(out), probs):
        got = {q["class"]: q["probability"] for q in row["predictions"]}
        assert all(got[c] == pytest.approx(float(p[i]), abs=1e-5) for i, c in enumerate(a.classes))

    def fails(*argv: object) -> str:
        rc, _, err = run(capsys, *argv)
        assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        return err

    assert "--crop 40x40 is larger than the store's 32x32 images" in fails(*TRAIN, "--data", s, "--crop", "40x40",
                                                                          "--out", tmp_path / "r0")
    assert "--crop 20x20: the model was trained on 24x24 inputs" in fails(
        "eval", tmp_path / "a" / "last.pt", "--data", s, "--crop", "20x20")
    with pytest.raises(SystemExit, match="2"):
        main([*TRAIN, "--data", str(s), "--crop-mode", "diagonal"])
    assert "--crop-mode: invalid choice: 'diagonal' (choose from 'center', 'random')" in capsys.readouterr().err
