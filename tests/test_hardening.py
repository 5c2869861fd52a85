"""Hostile and careless input: spec files, names and command-line values end in a one-line error
or in output that shows the text without running it (HTML, terminal, CSV, Markdown)."""

from __future__ import annotations

import json
import re
import warnings

import pytest

from cnnlab.cli import main
from cnnlab.commands._common import parse_pair, parse_shape
from cnnlab.errors import CnnlabError
from cnnlab.network import load_spec, network_from_spec
from cnnlab.report._safe import markup, safe_text
from cnnlab.validate import RESERVED_NAMES

SCRIPT = "<script>alert('x')</script>\"'"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc: int, err: str) -> None:
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "\x1b" not in err and "\x07" not in err


def spec(layers: str, head: str = "name: t\ninput: [1, 8, 8]\n") -> str:
    return head + "layers:\n" + layers


# --------------------------------------------------------------------------- HTML (item 1)


def test_html_report_escapes_every_text_field(capsys, tmp_path) -> None:
    meta = {k: f"{k}{SCRIPT}" for k in ("paper", "year", "description", "accuracy", "source")}
    d = {"name": f"net{SCRIPT}", "input": [1, 8, 8], "meta": meta,
         "layers": [{"type": "Conv", "name": f"conv{SCRIPT}", "filters": 2, "kernel": 3, "stride": 2},
                    {"type": "Sequential", "name": f"block{SCRIPT}", "layers": [{"type": "ReLU", "name": f"r{SCRIPT}"}]},
                    {"type": "Flatten"}, {"type": "Dense", "name": f"fc{SCRIPT}", "units": 3}]}
    path = tmp_path / "evil.json"
    path.write_text(json.dumps(d))
    out = tmp_path / "r.html"
    rc, _, err = run(capsys, "report", str(path), "--out", str(out))
    assert rc == 0, err
    page = out.read_text()
    # The report's own scripts only: as many as in the report of the same network with plain names.
    plain = json.loads(json.dumps(d).replace(SCRIPT.replace('"', '\\"'), ""))
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    rc, _, err = run(capsys, "report", str(tmp_path / "plain.json"), "--out", str(tmp_path / "p.html"))
    assert rc == 0, err
    assert page.lower().count("<script") == (tmp_path / "p.html").read_text().lower().count("<script") >= 1
    # Names reach the page's data block as JSON with every "<" escaped (no way out of the <script>), and
    # everywhere else as HTML text.
    data = re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', page, re.S)
    assert data and all("<" not in block for block in data)
    def code(html: str) -> list[str]:  # the report's script, its random container id set aside
        return re.findall(r"<script>(.*?)</script>", re.sub(r"cnnlab-[0-9a-f]+", "ID", html), re.S)

    assert code(page) == code((tmp_path / "p.html").read_text())  # no name reaches the code
    outside = re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S)
    assert "alert('x')" not in outside and "\"'" not in outside
    # The text is shown, escaped: the name, the paper and year, each layer and the finding on conv.
    assert page.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&#x27;") >= 6
    for field in ("net", "paper", "year", "conv", "fc"):
        assert f"{field}&lt;script&gt;" in page


def test_html_escape_writes_control_characters_out() -> None:
    from cnnlab.report.html import escape

    assert escape("a\x1b[2Jb<i>") == "a\\x1b[2Jb&lt;i&gt;"
    assert escape(1998) == "1998"


# --------------------------------------------------------------------------- terminal, CSV, Markdown (item 3)


def test_safe_text_escapes_control_and_format_characters() -> None:
    assert safe_text("x\x1b]0;title\x07y") == "x\\x1b]0;title\\x07y"
    assert safe_text("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert safe_text("\u202eevil\x9b") == "\\u202eevil\\x9b"
    assert safe_text("Mixed_5b · ünïcode") == "Mixed_5b · ünïcode"
    assert markup("[/x] broken [/]") == "\\[/x] broken \\[/]"


def test_summary_table_shows_hostile_names_literally(capsys, tmp_path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(spec("  - {type: Conv, name: '[/]', filters: 2, kernel: 3}\n"
                         "  - {type: ReLU, name: '[/x] broken'}\n  - {type: Flatten, name: '[bold]f'}\n",
                         head='name: "evil\\e]0;pwned\\a\\e[2J"\ninput: [1, 8, 8]\n'
                              'meta: {paper: "[/]\\e[2J", year: "[red]"}\n'))
    rc, out, err = run(capsys, "summary", str(path))
    assert rc == 0, err
    assert "\x1b" not in out and "\x07" not in out
    assert "evil\\x1b]0;pwned\\x07\\x1b[2J" in out
    assert "[/x] broken" in out and "[bold]f" in out and "[/]" in out and "[red]" in out


def test_adapt_table_shows_markup_names_literally(capsys, tmp_path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(spec("  - {type: Conv, name: '[/x] broken', filters: 2, kernel: 3}\n  - {type: Flatten}\n"
                         "  - {type: Dense, name: '[/]', units: 2}\n"))
    rc, out, err = run(capsys, "adapt", str(path), "--input", "1x10x10")
    assert rc == 0, err
    assert "[/x] broken" in out and "[/]" in out


def test_errors_and_warnings_are_one_escaped_line(capsys, tmp_path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(spec('  - {type: ReLU, name: "a\\e[2J"}\n'))
    rc, _, err = run(capsys, "summary", str(path))
    one_line_error(rc, err)
    assert "'a\\x1b[2J' cannot name a module" in err
    from cnnlab import cli

    cli._warning(UserWarning("skipped evil\ncnnlab: error: FAKE MESSAGE.png"), UserWarning, "f.py", 1)
    _, err = capsys.readouterr()
    assert err == "cnnlab: warning: skipped evil\\ncnnlab: error: FAKE MESSAGE.png\n"


def test_csv_neutralises_formulas_and_markdown_escapes_pipes(capsys, tmp_path) -> None:
    path = tmp_path / "t.yaml"
    names = ['=HYPERLINK("http://x","click")', "+1", "-1", "@SUM(A1)", "a|b"]
    layers = "".join(f"  - {{type: ReLU, name: '{n}'}}\n" for n in names)
    path.write_text(spec(layers + "  - {type: Flatten, name: 'x | y'}\n"))
    rc, out, err = run(capsys, "summary", str(path), "--format", "csv")
    assert rc == 0, err
    import csv
    import io

    rows = list(csv.reader(io.StringIO(out)))
    cells = [r[0] for r in rows[1:-1]]
    assert cells == ["'" + n for n in names[:4]] + ["a|b", "x | y"]
    assert not any(c[:1] in "=+-@" for r in rows for c in r if c)
    rc, out, err = run(capsys, "summary", str(path), "--format", "markdown")
    assert rc == 0, err
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert "| a\\|b |" in out and "| x \\| y |" in out
    assert all(line.replace("\\|", "").count("|") == 11 for line in table[:8])


# --------------------------------------------------------------------------- YAML and JSON (items 5, 8, 16)


BOMB = "\n".join(
    [f"  {c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")])


@pytest.mark.parametrize("where", ["meta", "meta.paper", "layers"])
def test_alias_bomb_is_refused_fast(tmp_path, where) -> None:
    head = "  a: &a [x, x, x, x, x, x, x, x, x]\n" + BOMB + "\n"
    if where == "meta":
        text = "name: t\ninput: [1, 8, 8]\nlayers: [{type: ReLU}]\nmeta:\n" + head
    elif where == "meta.paper":
        text = "name: t\ninput: [1, 8, 8]\nlayers: [{type: ReLU}]\nx:\n" + head + "meta: {paper: *i}\n"
    else:
        text = "name: t\ninput: [1, 8, 8]\nx:\n" + head + "layers: *i\n"
    assert len(text) < 1000
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    with pytest.raises(CnnlabError, match="aliases expand to more than 1,000,000 nodes"):
        load_spec(path)


@pytest.mark.parametrize(("meta", "needle"), [
    ("[1, 2]", "'meta' must be a mapping"),
    ("{paper: {a: {b: {c: 1}}}}", "'meta' may hold text"),
    ("{paper: " + "x" * 10_001 + "}", "longer than 10000 characters"),
    ("{year: .nan}", "finite numbers"),
    ("{n: [" + ", ".join(["1"] * 1001) + "]}", "more than 1000 entries"),
])
def test_bad_metadata_is_refused(tmp_path, meta, needle) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(f"input: [1, 8, 8]\nlayers: [{{type: ReLU}}]\nmeta: {meta}\n")
    with pytest.raises(CnnlabError, match=needle):
        load_spec(path)


def test_metadata_of_an_adapted_network_loads(tmp_path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("input: [1, 8, 8]\nlayers: [{type: ReLU}]\n"
                    "meta: {paper: P, year: 1998, date: 2020-01-02, adapted: {fix: f, changes: [a, b]}}\n")
    meta = load_spec(path).meta
    assert meta == {"paper": "P", "year": 1998, "date": "2020-01-02", "adapted": {"fix": "f", "changes": ["a", "b"]}}


@pytest.mark.parametrize(("text", "suffix", "needle"), [
    (spec("  - {type: Flatten, type: ReLU}\n"), "yaml", "duplicate key 'type' \\(line 4\\)"),
    ("name: a\nname: b\ninput: [1, 8, 8]\nlayers: [{type: ReLU}]\n", "yaml", "duplicate key 'name'"),
    ('{"input": [1, 8, 8], "input": [1, 9, 9], "layers": [{"type": "ReLU"}]}', "json", "duplicate key 'input'"),
    ('{"input": [1, 8, 8], "layers": [{"type": "Dropout", "p": NaN}]}', "json", "NaN is not a number"),
    ('{"input": [1, 8, 8], "layers": [{"type": "Dense", "units": Infinity}]}', "json", "Infinity is not a number"),
    ('{"input": [1, 8, 8], "layers": ' + "[" * 3000 + "]" * 3000 + "}", "json", "nested too deeply"),
    ("input: [1, 8, 8]\nlayers: " + "[" * 3000 + "]" * 3000 + "\n", "yaml", "nested more than 200 levels"),
    ("input: [1, 8, 8]\nlayers: &a [{type: Sequential, layers: *a}]\n", "yaml", "a cycle"),
    ("input: [1, 8, 8]\nlayers: [{type: Residual, body: &b [{type: Sequential, layers: [*b]}]}]\n", "yaml",
     "a cycle"),
    ("input: [1, 8, 8]\nlayers: [{type: Dropout, p: .inf}]\n", "yaml", "p must be a finite number"),
])
def test_malformed_files_are_refused(tmp_path, text, suffix, needle) -> None:
    path = tmp_path / f"s.{suffix}"
    path.write_text(text)
    with pytest.raises(CnnlabError, match=needle):
        load_spec(path)


def test_deep_nesting_of_layers_is_refused() -> None:
    node: dict = {"type": "ReLU"}
    for _ in range(150):
        node = {"type": "Sequential", "layers": [node]}
    with pytest.raises(CnnlabError, match="nested more than 100 levels"):
        network_from_spec({"input": [1, 8, 8], "layers": [node]})


def test_non_utf8_spec_is_one_line(capsys, tmp_path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"name: \xff\xfe\ninput: [1, 8, 8]\nlayers: [{type: ReLU}]\n")
    rc, _, err = run(capsys, "summary", str(path))
    one_line_error(rc, err)
    assert "not UTF-8 text (byte 6)" in err


# Every value from issue 13 items 8 and 16: refused when the file is read, naming the field.
BAD_VALUES = [
    ("input: '1x28x28'", "[{type: ReLU}]", "'input' must be \\[C, H, W\\]"),
    ("input: null", "[{type: ReLU}]", "'input' must be \\[C, H, W\\]"),
    ("input: [1, 28.7, 28]", "[{type: ReLU}]", "'input' must be \\[C, H, W\\]"),
    ("input: [1, 0, 28]", "[{type: ReLU}]", "'input' must be \\[C, H, W\\]"),
    ("input: [1, 8, 8]", "[{type: Conv, filters: '8'}]", "conv1' \\(Conv\\): filters must be a positive integer, got '8'"),
    ("input: [1, 8, 8]", "[{type: Flatten}, {type: Dense, units: ten}]", "units must be a positive integer, got 'ten'"),
    ("input: [1, 8, 8]", "[{type: Dropout, p: '0.5'}]", "p must be a finite number, got '0.5'"),
    ("input: [1, 8, 8]", "[{type: Conv, filters: 2, groups: '1'}]", "groups must be a positive integer"),
    ("input: [1, 8, 8]", "[{type: ChannelPad, channels: '4'}]", "channels must be a positive integer"),
    ("input: [1, 8, 8]", "[{type: Residual, body: [{type: ReLU}], scale: abc}]", "'scale' must be a finite number"),
    ("input: [1, 8, 8]", "[{type: ReLU, name: 123}]", "name 123 must be a string"),
    ("input: [1, 8, 8]", "[{type: [Flatten]}]", "'type' must be a layer type name"),
    ("input: [1, 8, 8]", "[{type: Concat}]", "Concat needs 'branches'"),
    ("input: [1, 8, 8]", "[{type: Concat, branches: []}]", "Concat needs 'branches'"),
    ("input: [1, 8, 8]", "[{type: AdaptiveAvgPool, output: 0}]", "output must be >= 1, got 0"),
    ("input: [1, 8, 8]", "[{type: AdaptiveAvgPool, output: -1}]", "output must be >= 1, got -1"),
    ("input: [1, 8, 8]", "[{type: AdaptiveAvgPool, output: [2, 0]}]", "\\(2, 0\\) is not a size"),
    ("input: [1, 8, 8]", "[{type: BatchNorm, eps: x}]", "eps must be a finite number, got 'x'"),
    ("input: [1, 8, 8]", "[{type: BatchNorm, eps: 0}]", "eps must be in \\(0, inf\\)"),
    ("input: [1, 8, 8]", "[{type: BatchNorm, momentum: 2}]", "momentum must be in \\[0, 1\\]"),
    ("input: [1, 8, 8]", "[{type: LRN, size: 0}]", "size must be >= 1, got 0"),
    ("input: [1, 8, 8]", "[{type: Flatten}, {type: Dense, units: 2.0}]", "units must be a positive integer, got 2.0"),
    ("input: [1, 8, 8]", "[{type: Flatten}, {type: Dense, units: 10.5}]", "units must be a positive integer, got 10.5"),
    ("input: [1, 8, 8]", "[{type: Flatten}, {type: Dense, units: true}]", "units must be a positive integer, got True"),
    ("input: [1, 8, 8]", "[{type: Flatten}, {type: RBF, units: -1}]", "units must be >= 1, got -1"),
    ("input: [1, 8, 8]", "[{type: ZeroPad, padding: -20}]", "padding -20: use an int >= 0"),
    ("input: [1, 8, 8]", "[{type: Conv, filters: " + "9" * 5000 + "}]", "Exceeds the limit \\(4300 digits\\)"),
    ("input: [1, 8, 8]", "[{type: Conv, filters: 99999999999}]", "filters must be <= 2,147,483,647"),
    ("input: [1, 8, 8]", "[{type: Conv, filters: 2, bias: 'no'}]", "bias must be true or false"),
    ("input: [1, 8, 8]", "[{type: Dropout, p: 1.0}]", "p must be in \\[0, 1\\)"),
    ("input: [1, 8, 8]", "[{type: ReLU, name: 'a.b'}]", "cannot name a module"),
    ("input: [1, 8, 8]", "[{type: ReLU, name: forward}]", "cannot name a module"),
    ("input: [1, 8, 8]", "[{type: Sequential, layers: [], inline: 1}]", "'inline' must be true or false"),
    ("input: [1, 8, 8]", "[{type: Sequential, layerz: []}]", "unknown field 'layerz'"),
    ("input: [1, 8, 8]\nlayerz: 1", "[{type: ReLU}]", "unknown top-level key 'layerz'"),
    ("input: [1, 8, 8]", "[]", "'layers' must be a non-empty list"),
    ("input: [1, 8, 8]", "[{type: Conv}]", "missing required field 'filters'"),
]


@pytest.mark.parametrize(("head", "layers", "needle"), BAD_VALUES)
def test_bad_values_are_refused_when_read(capsys, tmp_path, head, layers, needle) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"{head}\nlayers: {layers}\n")
    with pytest.raises(CnnlabError, match=needle):
        load_spec(path)
    rc, _, err = run(capsys, "summary", str(path))
    one_line_error(rc, err)


def test_good_values_still_load(tmp_path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("input: [1, 12, 12]\nlayers:\n"
                    "  - {type: Conv, filters: 4, kernel: [3, 1], padding: [1, 0], stride: 1, dilation: 1}\n"
                    "  - {type: ZeroPad, padding: [0, 1, 2, 3]}\n  - {type: BatchNorm, eps: 1, momentum: 0}\n"
                    "  - {type: LRN, k: 2}\n  - {type: AdaptiveAvgPool, output: [2, 3]}\n"
                    "  - {type: Conv, filters: 2, kernel: 1, padding: same}\n  - {type: Flatten}\n"
                    "  - {type: Dropout, p: 0}\n  - {type: Dense, units: 10, bias: false}\n")
    net = load_spec(path)
    from cnnlab.analysis import analyze

    a = analyze(net)
    assert a.output_shape == (10,)
    assert a.totals["params"] == (3 * 4 + 4) + 2 * 4 + (4 * 2 + 2) + 12 * 10


def test_reserved_names_cover_torch_module_attributes() -> None:
    from torch import nn

    public = {n for n in dir(nn.Module()) if not n.startswith("_")}
    assert public <= RESERVED_NAMES


# --------------------------------------------------------------------------- command line (items 7, 19)


@pytest.mark.parametrize("text", ["3x²²⁷x227", "²x2x2", "3x" + "9" * 5000 + "x2", "3x99999999999x2", "3x-1x2",
                                  "3x٣x2"])
def test_parse_shape_refuses_unicode_digits_and_huge_sizes(text) -> None:
    with pytest.raises(CnnlabError, match="--input"):
        parse_shape(text)


@pytest.mark.parametrize("text", ["²", "²x2", "9" * 5000, "1x2x3", "", "x"])
def test_parse_pair_refuses_unicode_digits_and_huge_sizes(text) -> None:
    with pytest.raises(CnnlabError, match="--kernel"):
        parse_pair(text, "--kernel")


def test_parse_pair_reads_ints_and_pairs() -> None:
    assert parse_pair("5", "--kernel") == 5 and parse_pair("1x7", "--kernel") == (1, 7)
    assert parse_pair(" 3 ", "--kernel") == 3


@pytest.mark.parametrize("argv", [
    ["summary", "lenet5", "--input", "3x²²⁷x227"],
    ["summary", "lenet5", "--input", "1x" + "9" * 5000 + "x28"],
    ["calc", "conv", "--input", "3x²²⁷x227", "--kernel", "3", "--filters", "2"],
    ["calc", "conv", "--input", "3x32x32", "--kernel", "²", "--filters", "2"],
    ["adapt", "lenet5", "--input", "1x28x28", "--apply", "²"],
    ["adapt", "lenet5", "--input", "1x28x28", "--apply", "9" * 5000],
])
def test_unicode_and_huge_numbers_are_one_line(capsys, argv) -> None:
    rc, _, err = run(capsys, *argv)
    one_line_error(rc, err)


def test_unknown_option_points_to_the_subcommand_help(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["summary", "lenet5", "--bogus"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --bogus" in err and "see 'cnnlab summary --help'" in err
    assert len(err.strip().splitlines()) == 1


def test_zoo_name_wins_over_a_file_of_that_name(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lenet5").write_text("not a spec: [")
    rc, out, err = run(capsys, "summary", "lenet5", "--format", "json")
    assert rc == 0, err
    assert json.loads(out)["totals"]["params"] > 0
    rc, _, err = run(capsys, "summary", "./lenet5")
    one_line_error(rc, err)
    assert "not valid YAML" in err
    with warnings.catch_warnings():
        from cnnlab.cli import make_parser

        helptext = make_parser()._subparsers._group_actions[0].choices["summary"].format_help()
    assert "a zoo name wins over a file of the same name" in " ".join(helptext.split())


def test_every_zoo_model_passes_the_spec_checks() -> None:
    """The checks refuse nothing a real network uses: every zoo model round-trips through JSON."""
    from cnnlab import zoo
    from cnnlab.network import network_to_spec

    for name in zoo.names():
        net = zoo.get(name)
        back = network_from_spec(json.loads(json.dumps(network_to_spec(net))), name)
        assert back.layers == net.layers and back.input_shape == net.input_shape, name


def test_conv_without_stride_builds_as_analysed() -> None:
    """``stride: null`` means 'the kernel' for every window layer, in the analysis and in torch alike."""
    import torch

    from cnnlab.analysis import analyze
    from cnnlab.torch_backend import build

    net = network_from_spec({"input": [1, 9, 9], "layers": [{"type": "Conv", "filters": 2, "kernel": 3,
                                                             "stride": None}]})
    assert analyze(net).output_shape == (2, 3, 3)
    assert tuple(build(net)(torch.zeros(1, 1, 9, 9)).shape) == (1, 2, 3, 3)


def test_residual_children_named_like_module_attributes_build() -> None:
    """A residual's default shortcut name ('shortcut') and children called body or post build."""
    import torch

    from cnnlab.torch_backend import build

    net = network_from_spec({"input": [2, 4, 4], "layers": [
        {"type": "Residual", "body": [{"type": "Conv", "name": "post", "filters": 2, "kernel": 1},
                                      {"type": "ReLU", "name": "body"}],
         "shortcut": {"type": "Conv", "filters": 2, "kernel": 1}, "scale": 0.5}]})
    model = build(net)
    assert "0.shortcut.weight" in model.state_dict() or any(k.endswith("shortcut.weight") for k in model.state_dict())
    assert tuple(model(torch.zeros(1, 2, 4, 4)).shape) == (1, 2, 4, 4)


@pytest.mark.parametrize("padding", [[1, 0, 0, 1], "same"])
def test_ceil_mode_with_one_sided_padding_is_refused(padding) -> None:
    """Found by benchmarks/fuzz.py: MaxPool 3/3, ceil, padding (0, 1) on 18 columns: 6 or 7 outputs."""
    layers = [{"type": "MaxPool", "kernel": 3, "padding": padding, "ceil_mode": True}]
    with pytest.raises(CnnlabError, match="ceil_mode with padding .* is ambiguous"):
        network_from_spec({"input": [1, 7, 18], "layers": layers})
    layers[0]["ceil_mode"] = False
    network_from_spec({"input": [1, 7, 18], "layers": layers})


@pytest.mark.parametrize("size", ["\u00b2x2", "2x\u00b2", "9" * 5000 + "x2", "0x5", "3x3x3"])
def test_train_size_takes_ascii_whole_numbers(size: str, capsys, tmp_path) -> None:
    rc, _, err = run(capsys, "train", "lenet5", "--data", "mnist", "--size", size, "--out", str(tmp_path / "r"))
    assert rc == 2 and err.count("\n") == 1 and "malformed --size" in err and len(err) < 200


def test_a_network_too_large_for_memory_is_refused_before_building(tmp_path, capsys, monkeypatch) -> None:
    """A mistyped width (10,000,000 filters) gives weights no machine holds: building refuses it in one line
    instead of the allocator's traceback. The check counts params + buffers at 4 bytes each."""
    from cnnlab import memory
    from cnnlab.models import load_model
    from cnnlab.torch_backend import build

    spec = tmp_path / "wide.yaml"
    spec.write_text("input: [3, 8, 8]\nlayers:\n- {type: Conv, name: c, filters: 10000000, kernel: 3}\n"
                    "- {type: Flatten}\n- {type: Dense, units: 2}\n")
    # conv 27 * 1e7 + 1e7 = 280,000,000; dense 36e7 * 2 + 2 = 720,000,002
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 30)
    with pytest.raises(CnnlabError, match=r"^wide's 1,000,000,002 weights \(float32\) needs 3.7 GiB of memory but only "
                                          r"1.0 GiB is available; check the layer widths of the model$"):
        build(load_model(str(spec)))
    data = tmp_path / "d"
    from PIL import Image

    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (100 * i, 0, 0)).save(data / c / f"{i}.png")
    rc, out, err = run(capsys, "train", str(spec), "--data", str(data), "--epochs", "1", "--out", str(tmp_path / "r"))
    one_line_error(rc, err)
    assert "wide's 1,000,000,002 weights (float32) needs 3.7 GiB of memory" in err
