"""One walker: a composite kind registered once is handled by analysis, diagram, torch build and
adapt, and the path rule is written in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cnnlab.adapt import apply, diagnose, leaves
from cnnlab.analysis import analyze
from cnnlab.errors import CnnlabError, ShapeError
from cnnlab.layers import Conv, Dense, Flatten, MaxPool, ReLU
from cnnlab.network import KINDS, Flow, Kind, Network, Node, Part, map_leaves, seq
from cnnlab.report.diagram import svg

SRC = Path(__file__).resolve().parent.parent / "src" / "cnnlab"


@dataclass(frozen=True)
class SumBranches:
    """A toy composite: parallel branches on one input, summed."""

    name: str
    branches: tuple[Node, ...]


def _sum(n: SumBranches, x: Any, f: Flow) -> Any:
    outs = [f.chain((b,), x) for b in n.branches]
    y = outs[0]
    for o in outs[1:]:
        y = f.add(o, y)
    return y


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Network:
    monkeypatch.setitem(KINDS, SumBranches, Kind(lambda n: (Part("branches", n.branches, chain=False),), _sum))
    fuse = SumBranches("fuse", (seq("a", Conv(name="c1", filters=8, kernel=3, padding=1), ReLU(name="r")),
                                Conv(name="b", filters=8, kernel=1)))
    return Network("toy", (Conv(name="stem", filters=8, kernel=3, padding=1), fuse, MaxPool(name="pool", kernel=2),
                           Flatten(name="flat"), Dense(name="fc", units=10)), (3, 16, 16))


def test_analysis_walks_the_toy_kind(toy: Network) -> None:
    a = analyze(toy)
    assert [ly.name for ly in a.layers] == ["stem", "fuse.a.c1", "fuse.a.r", "fuse.b", "pool", "flat", "fc"]
    # stem 3*9*8+8 = 224; c1 8*9*8+8 = 584; b 8*8+8 = 72; fc 8*8*8*10+10 = 5130
    assert a.totals["params"] == 224 + 584 + 72 + 5130
    fuse = a.blocks["fuse"]
    assert (fuse.type, fuse.output_shape, fuse.params) == ("SumBranches", (8, 16, 16), 584 + 72)
    assert a.layer("fuse.a.c1").depth == 2 and a.layer("fuse.b").depth == 1
    assert a.output_shape == (10,)


def test_analysis_checks_the_toy_sum(toy: Network) -> None:
    bad = SumBranches("fuse", (Conv(name="a", filters=8, kernel=3), Conv(name="b", filters=8, kernel=1)))
    with pytest.raises(ShapeError) as e:
        analyze(Network("bad", (bad,), (3, 16, 16)))
    assert str(e.value) == ("sumbranches 'fuse': the body gives 8x16x16 but the shortcut gives 8x14x14; "
                            "add a projection shortcut that matches")
    assert (e.value.layer, e.value.reason) == ("fuse", "sum")


def test_diagram_draws_the_toy_kind(toy: Network) -> None:
    out = svg(toy, analyze(toy))
    assert "fuse (SumBranches)" in out
    assert "c1: " in out and "b: " in out


def test_torch_build_matches_the_analysis(toy: Network) -> None:
    torch = pytest.importorskip("torch")
    from cnnlab.torch_backend import build

    a = analyze(toy)
    model = build(toy).eval()
    y = model(torch.zeros(2, 3, 16, 16))
    assert tuple(y.shape[1:]) == a.output_shape
    assert sum(p.numel() for p in model.parameters()) == a.totals["params"]
    weighted = {k.rpartition(".")[0] for k in model.state_dict()}
    assert weighted == {ly.name for ly in a.layers if ly.params}


def test_adapt_handles_the_toy_kind(toy: Network) -> None:
    assert list(leaves(toy)) == ["stem", "fuse.a.c1", "fuse.a.r", "fuse.b", "pool", "flat", "fc"]
    report = diagnose(toy, (3, 20, 20))
    assert report.after is not None and report.fixes
    assert any(f.kind == "head" and f.layer == "flat" for f in report.findings)
    fixed = apply(toy, report.fix(1))
    assert analyze(fixed).layer("fc").params == 5130  # the best fix keeps the designed head
    with pytest.raises(CnnlabError, match="cannot insert a layer at 'fuse.b': it is a branch"):
        map_leaves(toy.layers, lambda p, ly: (ReLU(name="x"), ly) if p == "fuse.b" else (ly,))
    inserted = map_leaves(toy.layers, lambda p, ly: (ReLU(name="x"), ly) if p == "fuse.a.r" else (ly,))
    assert list(leaves(Network("t", inserted, (3, 16, 16))))[1:4] == ["fuse.a.c1", "fuse.a.x", "fuse.a.r"]


def test_too_small_error_is_structured() -> None:
    net = Network("t", (Conv(name="c", filters=4, kernel=5), seq("s", MaxPool(name="p", kernel=(2, 9)))), (1, 9, 9))
    with pytest.raises(ShapeError) as e:
        analyze(net)
    err = e.value
    assert (err.layer, err.axis, err.reason) == ("s.p", 1, "too-small")
    assert str(err).startswith("layer 's.p': output width (5 + 2*0 - 9)/9 + 1 = 0.555556 < 1")
    assert str(err) == f"{err.problem}; use a larger input or less downsampling before it"


def _sources() -> list[tuple[Path, str]]:
    return [(p, p.read_text()) for p in sorted(SRC.rglob("*.py"))]


def test_the_path_rule_is_written_once() -> None:
    join = re.compile(r'f"\{(\w+)\}\.\{[\w.]+\}" if \1 else')
    hits = [(p.relative_to(SRC).as_posix(), m.group(0)) for p, text in _sources() for m in join.finditer(text)]
    assert hits == [("network.py", 'f"{prefix}.{name}" if prefix else')]
    # nothing else builds a dotted path from a prefix or reads whether a node is inline
    other = re.compile(r'f"\{(prefix|base|path|sub)\}\.|\.inline\b(?!\()')
    assert [p.name for p, text in _sources() if p.name != "network.py" and other.search(text)] == []
