"""Random spec files and command lines, and the checks they must pass: shared by the property
tests (a bounded number of examples) and ``benchmarks/fuzz.py`` (thousands).

The contract: a spec ends either in an analysis equal to the torch forward pass of the built module
or in a one-line ``CnnlabError``; a command line ends in exit 0 or 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from cnnlab.analysis import analyze
from cnnlab.cli import main, make_parser
from cnnlab.errors import CnnlabError
from cnnlab.network import load_spec

# --------------------------------------------------------------------------- values

JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(2**31 - 2, 2**40), st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6), st.sampled_from(["8", "x", "same", "1x2"]),
    st.lists(st.integers(-2, 4), max_size=5), st.dictionaries(st.text(max_size=3), st.integers(0, 3), max_size=2),
)


def _pair(lo: int, hi: int) -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(lo, hi), st.lists(st.integers(lo, hi), min_size=2, max_size=2))


GOOD = {
    "filters": st.integers(1, 6), "units": st.integers(1, 8), "channels": st.integers(1, 8),
    "kernel": _pair(1, 3), "stride": _pair(1, 2), "dilation": _pair(1, 2), "groups": st.integers(1, 2),
    "padding": st.one_of(st.integers(0, 1), st.sampled_from(["same", "valid"]),
                         st.lists(st.integers(0, 1), min_size=2, max_size=2),
                         st.lists(st.integers(0, 1), min_size=4, max_size=4)),
    "output": _pair(1, 3), "bias": st.booleans(), "ceil_mode": st.booleans(), "count_include_pad": st.booleans(),
    "eps": st.floats(1e-6, 0.1), "momentum": st.floats(0, 1), "p": st.floats(0, 0.9), "size": st.integers(1, 5),
    "alpha": st.floats(0, 1e-3), "beta": st.floats(0.5, 1), "k": st.floats(1, 2), "a": st.floats(0.5, 2),
    "s": st.floats(0.1, 1),
    "output_padding": _pair(0, 2), "crop": st.lists(st.integers(0, 2), min_size=4, max_size=4),
    "scale": st.one_of(st.floats(0.5, 2.5), st.sampled_from([2.0, 1.5])), "mode": st.sampled_from(["nearest", "bilinear"]),
    "slope": st.floats(-0.5, 0.5), "shared": st.booleans(), "init": st.floats(-0.5, 0.5),
}

FIELDS: dict[str, tuple[str, ...]] = {
    "Conv": ("filters", "kernel", "stride", "padding", "dilation", "groups", "bias"),
    "MaxPool": ("kernel", "stride", "padding", "ceil_mode"),
    "AvgPool": ("kernel", "stride", "padding", "ceil_mode", "count_include_pad"),
    "Subsample": ("kernel", "stride"),
    "ZeroPad": ("padding",), "ChannelPad": ("channels", "stride"),
    "AdaptiveAvgPool": ("output",), "AdaptiveMaxPool": ("output",), "GlobalAvgPool": (), "Flatten": (),
    "Dense": ("units", "bias"), "RBF": ("units",), "BatchNorm": ("eps", "momentum"),
    "LRN": ("size", "alpha", "beta", "k"), "Dropout": ("p",), "ReLU": (), "Tanh": (), "Sigmoid": (),
    "ScaledTanh": ("a", "s"), "Softmax": (), "LogSoftmax": (),
    "ConvTranspose": ("filters", "kernel", "stride", "output_padding", "dilation", "groups", "bias"),
    "Upsample": ("scale", "mode"), "Crop": ("crop",), "GroupNorm": ("groups",), "PReLU": ("shared", "init"),
    "LeakyReLU": ("slope",), "ELU": ("alpha",), "SiLU": (), "Hardswish": (), "GELU": (),
}
REQUIRED = {"Conv": ("filters",), "ConvTranspose": ("filters",), "Dense": ("units",), "ChannelPad": ("channels",),
            "GroupNorm": ("groups",)}
GOOD_NAMES = st.builds("{}{}".format, st.sampled_from(["a", "conv", "", "[/]", "[/x] broken", "=1", "a|b", "<script>'\"", "ünï"]),
                       st.integers(0, 10**6))
NAMES = st.one_of(GOOD_NAMES, st.sampled_from(["a.b", "forward", "_x", "", "a\x1b[2J", "x" * 300]), st.text(max_size=8))


def names(draw: Any, bad: float) -> str:
    return draw(NAMES if draw(st.floats(0, 1)) < bad else GOOD_NAMES)


@st.composite
def values(draw: Any, key: str, bad: float) -> Any:
    """A good value for ``key`` or, with probability ``bad``, any junk."""
    if draw(st.floats(0, 1)) < bad:
        return draw(JUNK)
    v = draw(GOOD[key]) if key != "stride" else draw(GOOD["stride"])
    if key == "stride" and v == 2 and draw(st.booleans()):
        return None
    return v


VECTOR_KINDS = ["Dense", "RBF", "BatchNorm", "Dropout", "ReLU", "Tanh", "Sigmoid", "ScaledTanh", "Softmax"]
MAP_KINDS = [k for k in FIELDS if k not in ("Dense", "RBF", "Softmax", "Flatten", "GlobalAvgPool")]


@st.composite
def leaf(draw: Any, bad: float, kinds: list[str] | None = None) -> dict[str, Any]:
    kind = draw(st.sampled_from(kinds or sorted(FIELDS)))
    d: dict[str, Any] = {"type": kind}
    for key in FIELDS[kind]:
        if key in REQUIRED.get(kind, ()) or draw(st.integers(0, 2)) == 0:
            d[key] = draw(values(key, bad))
    if draw(st.integers(0, 3)) == 0:
        d["name"] = names(draw, bad)
    if draw(st.floats(0, 1)) < bad / 4:
        d[draw(st.sampled_from(["typo", "type", "name", "kernel"]))] = draw(JUNK)
    return d


@st.composite
def node(draw: Any, depth: int, bad: float, kinds: list[str] | None = None) -> dict[str, Any]:
    if depth <= 0 or draw(st.integers(0, 3)) > 0:
        return draw(leaf(bad, kinds))
    kind = draw(st.sampled_from(["Sequential", "Concat", "Residual", "Aux"]))
    kids = st.lists(node(depth - 1, bad, kinds), min_size=0 if kind == "Sequential" else 1, max_size=3)
    d: dict[str, Any] = {"type": kind}
    if draw(st.booleans()):
        d["name"] = names(draw, bad)
    if kind == "Sequential":
        d["layers"] = draw(kids)
        if draw(st.booleans()):
            d["inline"] = draw(st.booleans())
    elif kind == "Concat":
        d["branches"] = draw(kids)
        if draw(st.booleans()):
            d["inline"] = draw(st.booleans())
    elif kind == "Residual":
        d["body"] = draw(kids)
        if draw(st.booleans()):
            d["shortcut"] = draw(node(depth - 1, bad, kinds))
        if draw(st.booleans()):
            d["post"] = draw(st.lists(leaf(bad, kinds), max_size=1))
        if draw(st.booleans()):
            d["scale"] = draw(st.one_of(st.floats(0, 1), JUNK) if bad else st.floats(0, 1))
    else:
        d["head"] = draw(kids)
    if draw(st.floats(0, 1)) < bad / 4:
        d.pop(draw(st.sampled_from(sorted(d))))
    return d


@st.composite
def spec_texts(draw: Any) -> tuple[str, str]:
    """(file suffix, file text) of a random spec: mostly valid values, some junk, shared subtrees
    written as YAML aliases, JSON with NaN, and random edits of the text."""
    bad = draw(st.sampled_from([0.0, 0.0, 0.0, 0.05, 0.3]))
    if draw(st.integers(0, 2)):  # feature maps, then a Flatten, then vectors: most such networks work
        layers = draw(st.lists(node(3, bad, MAP_KINDS), min_size=1, max_size=5)) + [{"type": "Flatten"}] + \
            draw(st.lists(leaf(bad, VECTOR_KINDS), max_size=3))
    else:
        layers = draw(st.lists(node(3, bad), min_size=1, max_size=6))
    if draw(st.booleans()):  # the same object twice: YAML writes an anchor and an alias
        i = draw(st.integers(0, len(layers) - 1))
        layers.insert(i + 1, {"type": "Sequential", "layers": [layers[i]]})
    shape = [draw(st.integers(1, 4)), draw(st.integers(1, 20)), draw(st.integers(1, 20))]
    d: dict[str, Any] = {"name": draw(st.one_of(st.just("net"), NAMES)), "input": shape, "layers": layers}
    if draw(st.floats(0, 1)) < bad:
        d["input"] = draw(st.one_of(JUNK, st.lists(st.integers(0, 30), max_size=4)))
    if draw(st.booleans()):
        d["meta"] = draw(st.one_of(st.fixed_dictionaries({"paper": st.text(max_size=10), "year": st.integers(1950, 2030)}),
                                   JUNK) if bad else st.just({"paper": "P", "year": 1998}))
    suffix = draw(st.sampled_from(["yaml", "yaml", "json"]))
    text = json.dumps(d) if suffix == "json" else yaml.safe_dump(d, sort_keys=False)
    if bad and draw(st.integers(0, 9)) == 0:  # a small edit of the text: broken syntax, stray anchors
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.text(alphabet="[]{}&*:!-,\"' \n\t0x\x00\x1b|", max_size=4)) + text[i:]
    return suffix, text


# --------------------------------------------------------------------------- spec check


def check_spec(text: str, suffix: str, folder: Path) -> str:
    """Read, analyse and build one spec; returns the outcome, raises AssertionError on a breach."""
    path = folder / f"spec.{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        net = load_spec(path)
    except CnnlabError as e:
        assert "\n" not in str(e), f"multi-line error: {e!r}"
        return "refused when read"
    try:
        a = analyze(net)
    except CnnlabError as e:
        assert "\n" not in str(e), f"multi-line error: {e!r}"
        return "refused by the analysis"
    _match_torch(net, a)
    return "analysis equals torch"


def _match_torch(net: Any, a: Any) -> None:
    """Output shapes of every leaf and the parameter count of the built module equal the analysis."""
    import torch

    from cnnlab.torch_backend import build

    shape = net.input_shape
    with torch.device("meta"):
        model = build(net, shape)
    model.train()
    expected = {ly.name: ly.output_shape for ly in a.layers}
    seen: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: seen.__setitem__(n, tuple(o.shape[1:])))
             for n, m in model.named_modules() if n in expected]
    with torch.no_grad():
        out = model(torch.zeros(2, *shape, device="meta"))
    for h in hooks:
        h.remove()
    out = out[0] if isinstance(out, tuple) else out
    assert tuple(out.shape[1:]) == a.output_shape, (tuple(out.shape), a.output_shape)
    bad = {k: (v, seen.get(k)) for k, v in expected.items() if seen.get(k) != v}
    assert not bad, f"analysis vs forward: {list(bad.items())[:3]}"
    aux = a.aux_totals or {"params": 0}
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == a.totals["params"] + aux["params"], (n_params, a.totals["params"], aux["params"])
    assert all(math.isfinite(v) for v in (a.totals["params"], a.totals["macs"]))


# --------------------------------------------------------------------------- command lines

SMALL_MODELS = ["lenet5", "lenet5-relu", "lenet-rgb8", "mnist-cnn3", "alexnet-onetower", "resnet20", "resnet18",
                "vgg11", "googlenet", "nonexistent", "os:getcwd", "./missing.yaml", "[/]", "-"]
SHAPES = st.one_of(
    st.sampled_from(["1x28x28", "1x32x32", "3x32x32", "3x224x224", "3x227x227", "32x32x3", "1x1x1", "0x3x3",
                     "3x²²⁷x227", "²x2x2", "3x" + "9" * 5000 + "x3", "3x99999x99999", "", "x", "3x3", "a\x1bb"]),
    st.builds(lambda c, h, w: f"{c}x{h}x{w}", st.integers(-1, 4), st.integers(-1, 300), st.integers(-1, 300)),
    st.text(max_size=8),
)
NUMS = st.one_of(st.integers(-2, 12).map(str), st.sampled_from(["²", "9" * 5000, "nan", "inf", "-1", "1.5", "x", ""]))
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(str), NUMS)


def _opts(draw: Any, options: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for opt, strategy in options.items():
        if draw(st.integers(0, 2)) == 0:
            out.append(opt)
            if strategy is not None:
                out.append(draw(strategy))
    return out


MODEL_OPTS = {"--num-classes": NUMS, "--in-channels": NUMS, "--aux": None, "--no-aux": None,
              "--shortcut": st.sampled_from(["A", "b", "C", "D", ""])}


@st.composite
def command_lines(draw: Any, spec_path: str, out_dir: str) -> list[str]:
    """A random command line for ``summary``, ``calc``, ``adapt``, ``zoo`` or ``report``."""
    cmd = draw(st.sampled_from(["summary", "calc", "adapt", "zoo", "report"]))
    model = draw(st.sampled_from([*SMALL_MODELS, spec_path]))
    junk = draw(st.lists(st.sampled_from(["--bogus", "-x", "--", "extra", "--format"]), max_size=1))
    if cmd == "zoo":
        argv = ["zoo", *_opts(draw, {"--format": st.sampled_from(["table", "json", "csv", "x"])})]
    elif cmd == "calc":
        kind = draw(st.sampled_from(["conv", "pool", "dense", "x"]))
        opts = {"conv": {"--input": SHAPES, "--kernel": NUMS, "--filters": NUMS, "--stride": NUMS,
                         "--padding": st.one_of(NUMS, st.sampled_from(["same", "valid", "1x2"])),
                         "--dilation": NUMS, "--groups": NUMS, "--no-bias": None,
                         "--format": st.sampled_from(["table", "json"])},
                "pool": {"--input": SHAPES, "--kernel": NUMS, "--stride": NUMS, "--ceil": None,
                         "--mode": st.sampled_from(["max", "avg", "x"]), "--padding": NUMS},
                "dense": {"--in": NUMS, "--out": NUMS}}.get(kind, {})
        argv = ["calc", kind, *_opts(draw, opts)]
    elif cmd == "summary":
        argv = ["summary", model, *_opts(draw, {"--input": SHAPES, "--layout": st.sampled_from(["chw", "hwc", "x"]),
                                               "--format": st.sampled_from(["table", "json", "csv", "markdown"]),
                                               "--explain": None, "--batch": NUMS,
                                               "--dtype": st.sampled_from(["fp32", "fp16", "x"]), **MODEL_OPTS})]
    elif cmd == "adapt":
        argv = ["adapt", model, *_opts(draw, {"--input": SHAPES, "--apply": NUMS,
                                             "--format": st.sampled_from(["table", "json"]), **MODEL_OPTS})]
    else:
        argv = ["report", model, "--out", f"{out_dir}/r.html",
                *_opts(draw, {"--input": SHAPES, "--run": st.sampled_from([out_dir, "/nonexistent"])})]
    return argv + junk


TRAIN_OPTS = {
    "train": {"--data": st.sampled_from(["mnist", "cifar10", "x"]), "--epochs": NUMS, "--batch-size": NUMS,
              "--lr": FLOATS, "--momentum": FLOATS, "--seed": NUMS, "--size": SHAPES, "--val-fraction": FLOATS,
              "--aux-weight": FLOATS, "--optimizer": st.sampled_from(["sgd", "adam", "x"]), "--resume": None,
              "--weight-decay": FLOATS, "--milestones": st.sampled_from(["30,60", "x", "²"]), "--gamma": FLOATS,
              "--label-smoothing": FLOATS, "--threads": NUMS, "--target-acc": FLOATS, "--recipe": st.text(max_size=5),
              "--device": st.sampled_from(["cpu", "x"])},
    "eval": {"--data": st.sampled_from(["mnist", "x"]), "--split": st.sampled_from(["test", "val", "x"]),
             "--batch-size": NUMS, "--seed": NUMS, "--size": SHAPES, "--format": st.sampled_from(["table", "json", "x"])},
    "predict": {"--top": NUMS, "--device": st.sampled_from(["cpu", "x"]), "--format": st.sampled_from(["json", "x"])},
}


@st.composite
def training_command_lines(draw: Any) -> list[str]:
    """Random ``train``/``eval``/``predict`` command lines, for argument parsing only."""
    cmd = draw(st.sampled_from(sorted(TRAIN_OPTS)))
    pos = [draw(st.sampled_from(["lenet5", "run/best.pt", "x"]))]
    if cmd == "predict":
        pos.append(draw(st.sampled_from(["img.png", "folder"])))
    return [cmd, *pos, *_opts(draw, TRAIN_OPTS[cmd])]


def check_command(argv: list[str]) -> int:
    """Run ``cnnlab ARGV`` in process; the exit code must be 0 or 2 and stderr carry no traceback."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 2
    text = err.getvalue()
    assert rc in (0, 2), (argv, rc, text[-500:])
    assert "Traceback" not in text, (argv, text[-500:])
    if rc == 2:
        assert len(text.strip().splitlines()) <= 1 or "usage:" in text, (argv, text[-500:])
        assert "\x1b" not in text, (argv, text)
    return rc


def check_parse(argv: list[str]) -> int:
    """Parse ``cnnlab ARGV`` without running it: a namespace (0) or a one-line usage error (2)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            make_parser().parse_args(argv)
            rc = 0
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 2
    assert rc in (0, 2), (argv, rc)
    assert "Traceback" not in err.getvalue()
    if rc == 2:
        assert len(err.getvalue().strip().splitlines()) == 1, (argv, err.getvalue())
    return rc
