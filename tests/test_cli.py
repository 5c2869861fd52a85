"""The CLI contract: JSON shapes, one-line errors with exit code 2, and a torch-free summary path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cnnlab.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_summary_json_contract(capsys) -> None:
    rc, out, _ = run(capsys, "summary", "alexnet-onetower", "--input", "3x270x480", "--format", "json")
    d = json.loads(out)
    assert rc == 0
    assert d["model"] == "alexnet-onetower" and d["input_shape"] == [3, 270, 480]
    keys = {"name", "type", "output_shape", "activation_size", "params", "buffers", "macs", "connections",
            "receptive_field"}
    assert all(keys <= set(ly) for ly in d["layers"])
    fc6 = next(ly for ly in d["layers"] if ly["name"] == "fc6")
    assert fc6["params"] == 95424512 and fc6["output_shape"] == [4096]
    conv1 = d["layers"][0]
    assert conv1["output_shape"] == [96, 65, 118]
    assert conv1["receptive_field"] == {"size": [11, 11], "jump": [4, 4]}
    assert set(d["totals"]) == {"params", "buffers", "macs", "connections", "activation_size"}
    assert d["totals"]["params"] == 62378344 - 37752832 + 95424512


def test_summary_hwc_layout(capsys) -> None:
    _, out, _ = run(capsys, "summary", "alexnet", "--input", "227x227x3", "--layout", "hwc", "--format", "json")
    assert json.loads(out)["input_shape"] == [3, 227, 227]


def test_summary_table_states_layout_and_conventions(capsys) -> None:
    rc, out, _ = run(capsys, "summary", "lenet5", "--explain")
    out = " ".join(out.split())
    assert rc == 0
    assert "(C x H x W)" in out and "FLOPs = 2 x MACs" in out
    assert "(32 + 2*0 - 5)/1 + 1 = 28" in out


@pytest.mark.parametrize("fmt", ["csv", "markdown"])
def test_summary_csv_markdown(capsys, fmt) -> None:
    rc, out, _ = run(capsys, "summary", "lenet5-relu", "--format", fmt)
    assert rc == 0 and "44426" in out.replace(",", "")


def test_calc_conv_json_contract(capsys) -> None:
    rc, out, _ = run(capsys, "calc", "conv", "--input", "3x32x32", "--kernel", "5", "--stride", "1", "--padding", "0",
                     "--filters", "8", "--format", "json")
    d = json.loads(out)
    assert rc == 0
    assert (d["output_shape"], d["activation_size"], d["params"]) == ([8, 28, 28], 6272, 608)
    assert d["macs"] == 5 * 5 * 3 * 8 * 28 * 28 and d["connections"] == 608 * 28 * 28


def test_calc_non_square(capsys) -> None:
    # The notebook's dim_rgb_convolution mixes up height and width; a 1x7 kernel on 17x17 keeps H and shrinks W.
    _, out, _ = run(capsys, "calc", "conv", "--input", "8x17x20", "--kernel", "1x7", "--filters", "4", "--format", "json")
    assert json.loads(out)["output_shape"] == [4, 17, 14]


def test_calc_pool_and_dense(capsys) -> None:
    _, out, _ = run(capsys, "calc", "pool", "--input", "96x55x55", "--kernel", "3", "--stride", "2", "--format", "json")
    assert json.loads(out)["output_shape"] == [96, 27, 27]
    _, out, _ = run(capsys, "calc", "pool", "--input", "1x8x8", "--kernel", "3", "--stride", "2", "--ceil",
                    "--format", "json")
    assert json.loads(out)["output_shape"] == [1, 4, 4]  # (8-3)/2+1 = 3.5 -> 4 in ceil mode
    _, out, _ = run(capsys, "calc", "dense", "--in", "400", "--out", "120", "--format", "json")
    assert json.loads(out)["params"] == 48120


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["summary", "alexnett"], "unknown model 'alexnett': did you mean alexnet"),
        (["summary", "alexnet", "--input", "3x227"], "malformed --input '3x227'"),
        (["summary", "alexnet", "--input", "3xAx227"], "malformed --input"),
        (["calc", "conv", "--input", "3x5x5", "--kernel", "7", "--filters", "2"], "too small"),
        (["calc", "conv", "--input", "3x32x32", "--kernel", "3", "--stride", "0", "--filters", "2"], "stride must be >= 1"),
        (["calc", "pool", "--input", "3x32x32", "--kernel", "2", "--stride", "-1"], "stride must be >= 1"),
        (["summary", "alexnet", "--input", "3x60x60"], "layer 'pool5'"),
        (["summary", "alexnet", "--num-classes", "0"], "--num-classes must be >= 1"),
        (["summary", "missing.yaml"], "cannot read spec file"),
        (["summary", "alexnet", "--input", "227x227x3"], "write 3x227x227 or add --layout hwc"),
        (["adapt", "alexnet-onetower", "--input", "270x480x3"], "write 3x270x480 or add --layout hwc"),
        (["summary", "alexnet", "--input", "3x227x227", "--in-channels", "1"], "give the channels once"),
        (["calc", "dense", "--in", "-3", "--out", "5"], "inputs and units must be >= 1, got -3 -> 5"),
        (["calc", "dense", "--in", "0", "--out", "5"], "inputs and units must be >= 1"),
        (["calc", "pool", "--input", "1x8x8", "--kernel", "3", "--padding", "5"], "use padding <= 1"),
        (["calc", "conv", "--input", "1x8x8", "--kernel", "3", "--filters", "0"], "must both divide"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, needle) -> None:
    rc, out, err = run(capsys, *argv)
    assert rc == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("field", "needle"),
    [
        ("kernel: abc", "layer 'conv1' (Conv): 'abc' is not a size"),
        ("kernel: [3, 3, 3]", "(3, 3, 3) is not a size"),
        ("padding: foo", "padding 'foo': use an int"),
        ("stride: 0", "stride must be >= 1"),
    ],
)
def test_bad_spec_values_are_one_line_exit_2(capsys, tmp_path, field, needle) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"input: [1, 8, 8]\nlayers:\n  - {{type: Conv, filters: 2, {field}}}\n")
    rc, _, err = run(capsys, "summary", str(spec))
    assert rc == 2 and needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_hwc_layout_reads_the_notebooks_order(capsys) -> None:
    _, out, _ = run(capsys, "summary", "alexnet-onetower", "--input", "270x480x3", "--layout", "hwc", "--format", "json")
    d = json.loads(out)
    assert d["input_shape"] == [3, 270, 480]
    assert d["layers"][0]["output_shape"] == [96, 65, 118]  # seed 000: (65, 118, 96) after conv1


def test_explain_prints_arithmetic_and_findings(capsys) -> None:
    rc, out, _ = run(capsys, "summary", "alexnet-onetower", "--input", "3x270x480", "--explain")
    assert rc == 0
    assert "H: (270 + 2*0 - 11)/4 + 1 = 65.75 -> 65 (floor)" in out
    assert "params: (11*11*3 + 1) * 96 = 34,944" in out
    assert "conv1: H: (270 + 2*0 - 11)/4 + 1 = 65.75 -> 65 (floor); the last 3 input rows are never seen" in out


def test_zoo_lists_every_model_with_its_figures(capsys) -> None:
    from cnnlab import zoo

    rc, out, _ = run(capsys, "zoo")
    assert rc == 0
    for name in zoo.names():
        assert name in out
    assert "62,378,344" in out and "60,965,224" in out and "Krizhevsky" in out


def test_zoo_json_rows(capsys) -> None:
    rc, out, _ = run(capsys, "zoo", "--format", "json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rc == 0
    assert all({"name", "paper", "year", "input", "params", "macs", "accuracy"} <= set(r) for r in rows.values())
    r50 = rows["resnet50"]
    # Parameters as torchvision's documentation counts them; top-1 error from Table 3 of He et al. 2015.
    assert (r50["year"], r50["input"], r50["params"]) == (2015, [3, 224, 224], 25_557_032)
    assert "Deep Residual Learning" in r50["paper"] and "22.85%" in r50["accuracy"]
    # LeNet-5's layers in LeCun et al. 1998: C1 156 + S2 12 + C3 1,516 + S4 32 + C5 48,120 + F6 10,164
    # + RBF 840 parameters; 0.95% test error without distortions.
    le = rows["lenet5"]
    assert (le["year"], le["input"], le["params"]) == (1998, [1, 32, 32], 156 + 12 + 1516 + 32 + 48120 + 10164 + 840)
    assert "LeCun" in le["paper"] and "0.95%" in le["accuracy"]
    assert rows["alexnet-onetower"]["accuracy"] is None  # registered without a reported figure: null, not a guess


def test_zoo_table_reports_accuracy_within_160_columns(capsys) -> None:
    rc, out, _ = run(capsys, "zoo")
    assert rc == 0
    header = next(line for line in out.splitlines() if "Model" in line)
    assert "Reported" in header and "Paper" in header
    assert max(len(line) for line in out.splitlines()) <= 160
    r50 = next(line for line in out.splitlines() if line.startswith("│ resnet50 "))
    assert "25,557,032" in r50 and "22.85%" in r50


def test_summary_names_the_paper_and_year(capsys) -> None:
    rc, out, _ = run(capsys, "summary", "resnet50")
    assert rc == 0
    assert "Paper: He et al., Deep Residual Learning for Image Recognition (2015)" in out
    assert "22.85%" in out


def _params(capsys, *argv: str) -> int:
    rc, out, _ = run(capsys, "summary", *argv, "--format", "json")
    assert rc == 0
    return json.loads(out)["totals"]["params"]


def test_shortcut_option(capsys) -> None:
    # resnet20 with option A has 269,722 parameters (tests/test_resnet.py). B adds a 1x1 conv and a
    # BatchNorm where the shape changes: 16*32 + 2*32 + 32*64 + 2*64 = 2,752. C adds one to every
    # unit: 3 * (16*16 + 2*16) + (16*32 + 2*32) + 2 * (32*32 + 2*32) + (32*64 + 2*64) + 2 * (64*64 + 2*64)
    # = 14,240.
    assert _params(capsys, "resnet20") == _params(capsys, "resnet20", "--shortcut", "A") == 269_722
    assert _params(capsys, "resnet20", "--shortcut", "B") == 269_722 + 2_752 == 272_474
    assert _params(capsys, "resnet20", "--shortcut", "c") == 269_722 + 14_240 == 283_962
    # The ImageNet networks use B: A drops their three projections (tests/test_resnet.py).
    assert _params(capsys, "resnet34", "--shortcut", "A") == 21_623_848


def test_shortcut_option_refused_where_there_is_none(capsys, tmp_path) -> None:
    from cnnlab import zoo
    from cnnlab.network import save_spec

    rc, out, err = run(capsys, "summary", "alexnet", "--shortcut", "B")
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "'alexnet' has no shortcut option" in err
    spec = tmp_path / "lenet.json"
    save_spec(zoo.get("lenet5"), spec)
    rc, _, err = run(capsys, "summary", str(spec), "--shortcut", "A")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--shortcut" in err
    with pytest.raises(SystemExit) as e:
        main(["summary", "resnet20", "--shortcut", "D"])
    assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_argparse_errors_are_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["summary", "alexnet", "--format", "xml"])
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_summary_path_never_imports_torch() -> None:
    code = ("import sys; from cnnlab.cli import main; main(['summary', 'alexnet', '--format', 'json']); "
            "sys.stderr.write(str(any(m == 'torch' or m.startswith('torch.') for m in sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stderr.strip() == "False"


def test_summary_importtime_has_no_torch() -> None:
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "cnnlab", "summary", "alexnet", "--format", "json"],
                       capture_output=True, text=True, check=True)
    imported = [line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if "|" in line]
    assert "cnnlab.analysis" in imported
    assert not [m for m in imported if m == "torch" or m.startswith("torch.")]
