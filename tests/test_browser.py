"""The interactive report in a real browser: Debian's chromium, driven by Playwright.

Without chromium the tests skip, saying so, except on CI (``CI=true``), where they fail: the CI
script installs it. Screenshots land in a temporary folder, printed at the start of the run."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cnnlab import zoo
from cnnlab.analysis import analyze
from cnnlab.cli import main
from cnnlab.layers import Conv, Dense, GlobalAvgPool
from cnnlab.network import Network, concat, seq
from cnnlab.report import html

CHROMIUM = os.environ.get("CNNLAB_CHROMIUM", "/usr/bin/chromium")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        _unavailable(f"no chromium at {CHROMIUM}: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("report-screenshots")
    print(f"\nreport screenshots: {d}")
    return d


class Page:
    """A report opened in a fresh page, every console error and uncaught exception kept."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        start = time.perf_counter()
        self.page.goto(path.as_uri())
        self.page.wait_for_selector(".cnnlab[data-ready]")
        self.seconds = time.perf_counter() - start

    def boxes(self) -> int:
        return self.page.locator(".cl-dg .n").count()

    def detail(self) -> str:
        return self.page.locator(".cl-det").inner_text()

    def row_names(self) -> list[str]:
        return [s.strip() for s in self.page.locator(".cl-tw tbody tr td:first-child").all_inner_texts()]


def _report(tmp_path: Path, model: str, *extra: str) -> Path:
    out = tmp_path / f"{model}.html"
    assert main(["report", model, "--out", str(out), *extra]) == 0
    return out


def test_lenet_with_a_run(browser: Any, shots: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    run.joinpath("metrics.json").write_text(json.dumps(
        [{"epoch": e, "train_loss": 0.5 / e, "train_acc": 1 - 0.05 / e, "val_loss": 0.6 / e, "val_acc": 1 - 0.06 / e}
         for e in (1, 2, 3)]))
    p = Page(browser, _report(tmp_path, "lenet5-relu", "--run", str(run)))
    page = p.page
    assert page.locator("svg").count() == 3  # loss, accuracy, network
    assert "3 epochs · best validation accuracy 0.9800" in page.inner_text("body")

    # Diagram -> table: conv2's box selects conv2's row and shows its arithmetic.
    page.locator(".cl-dg .n", has_text="conv2: Conv 5x5, 16").click()
    assert page.locator(".cl-tw tr.sel td:first-child").inner_text().strip() == "conv2"
    assert "H: (12 + 2*0 - 5)/1 + 1 = 8" in p.detail()
    assert "params: (5*5*6 + 1) * 16 = 2,416" in p.detail()
    # Table -> diagram: hovering fc1's row previews it and rings its box; the ReLU after fc1 rings the same box.
    page.locator(".cl-tw tbody tr", has_text="fc1").hover()
    assert page.locator(".cl-dg .n.hl").text_content().startswith("fc1: Dense 120")
    assert "params: (256 + 1) * 120 = 30,840" in p.detail()
    page.locator(".cl-tw tbody tr", has_text="relu3").click()
    assert page.locator(".cl-dg .n.sel").text_content().startswith("fc1: Dense 120")

    # Sort by parameters, largest first, then back to network order.
    page.locator(".cl-tw thead th", has_text="Params").click()
    assert p.row_names()[:3] == ["fc1", "fc2", "conv2"]
    page.locator(".cl-tw thead th", has_text="Params").click()
    assert p.row_names()[-1] == "fc1"
    page.locator(".cl-tw thead th", has_text="Layer").click()
    assert p.row_names()[:2] == ["conv1", "relu1"]
    # Filter.
    page.fill(".cl-q", "conv")
    assert page.locator(".cl-tw tbody tr:visible").count() == 2
    assert page.locator(".cl-shown").inner_text() == "2 of 13 layers"
    page.fill(".cl-q", "")
    page.locator(".cl-dg .n", has_text="conv1").click()
    page.screenshot(path=str(shots / "lenet5-relu.png"), full_page=True)
    assert p.errors == []


def test_googlenet_blocks_collapse_and_expand(browser: Any, shots: Path, tmp_path: Path) -> None:
    p = Page(browser, _report(tmp_path, "googlenet"))
    page = p.page
    closed = p.boxes()
    assert page.locator(".cl-dg .n.b").count() == 9  # the nine Inception modules, folded
    page.locator(".cl-dg .n.b", has_text="inception_3a (Concat)").click()
    # The module's box gives way to its seven: 1x1 | 1x1, 3x3 | 1x1, 5x5 | pool, 1x1 (each ReLU folded).
    assert p.boxes() == closed - 1 + 7
    assert page.locator(".cl-dg .tg", has_text="inception_3a (Concat)").count() == 1
    page.locator(".cl-dg .n", has_text="conv2: Conv 3x3, 128").click()
    assert p.detail().startswith("inception_3a.branch3x3.conv2 Conv · 96x28x28 -> 128x28x28 · 110,720 params")
    assert "MACs: 3*3*96 * 128 * 28*28 = 86,704,128" in p.detail()
    page.screenshot(path=str(shots / "googlenet-3a-open.png"))
    page.locator(".cl-dg .tg", has_text="inception_3a (Concat)").click()
    assert p.boxes() == closed
    page.click(".cl-ctl button[data-a=expand]")
    assert page.locator(".cl-dg .n.b").count() == 0
    page.click(".cl-ctl button[data-a=collapse]")
    assert p.boxes() == closed
    assert p.errors == []


def test_inception_v4_opens_fast_and_reveals_a_layer_from_the_table(browser: Any, shots: Path, tmp_path: Path) -> None:
    path = _report(tmp_path, "inception-v4")
    assert path.stat().st_size < 1_000_000
    p = Page(browser, path)
    page = p.page
    # Best of three opens, so that a busy machine's scheduling is not counted as the report's time.
    best = min([p.seconds] + [Page(browser, path).seconds for _ in range(2)])
    print(f"inception-v4 opened in {best:.2f} s (benchmarks/bench_report.py measures it)")
    assert page.locator(".cl-dg .tg").count() == 0  # every block collapsed
    page.screenshot(path=str(shots / "inception-v4.png"))
    # A layer deep inside a folded module: selecting its row opens the module and rings its box.
    page.fill(".cl-q", "inception_b3.branch7x7dbl")
    page.locator(".cl-tw tbody tr:visible").first.click()
    name = page.locator(".cl-tw tr.sel td:first-child").inner_text().strip()
    assert name.startswith("inception_b3.branch7x7dbl")
    assert page.locator(".cl-dg .tg", has_text="inception_b3 (Concat)").count() == 1
    assert page.locator(".cl-dg .n.sel").count() == 1
    assert "params:" in p.detail() and "MACs:" in p.detail()
    page.screenshot(path=str(shots / "inception-v4-b3-open.png"))
    assert p.errors == []


def test_resnet152_zoom_and_pan(browser: Any, shots: Path, tmp_path: Path) -> None:
    p = Page(browser, _report(tmp_path, "resnet152"))
    page = p.page
    page.click(".cl-ctl button[data-a=expand]")
    svg = page.locator(".cl-dg svg")
    w0 = float(svg.get_attribute("width"))
    page.click(".cl-ctl button[data-a=in]")
    page.click(".cl-ctl button[data-a=in]")
    assert float(svg.get_attribute("width")) == pytest.approx(w0 * 1.5625, abs=1)
    assert page.locator(".cl-zoom").inner_text() == "156%"
    dg = page.locator(".cl-dg")
    top = dg.evaluate("e => e.scrollTop")
    box = dg.bounding_box()
    page.mouse.move(box["x"] + 4, box["y"] + 600)  # the padding: background, not a layer box
    page.mouse.down()
    page.mouse.move(box["x"] + 4, box["y"] + 40, steps=5)
    page.mouse.up()
    assert dg.evaluate("e => e.scrollTop") > top + 200  # dragged up: the diagram moved down the network
    page.click(".cl-ctl button[data-a=fit]")
    assert float(svg.get_attribute("width")) <= dg.evaluate("e => e.clientWidth")
    page.screenshot(path=str(shots / "resnet152-fit.png"))
    page.click(".cl-ctl button[data-a=collapse]")
    page.screenshot(path=str(shots / "resnet152.png"))
    assert p.errors == []


def test_hostile_names_stay_text(browser: Any, tmp_path: Path) -> None:
    bad = '<img src=x onerror="window.pwned=1"></script><!--'
    net = Network(bad, (Conv(name=bad, filters=4, kernel=3),
                        concat("mix", seq("a", Conv(name="c", filters=2, kernel=1)),
                               seq("b", Conv(name="c", filters=2, kernel=1))),
                        GlobalAvgPool(name="gap"), Dense(name="fc", units=2)), (3, 8, 8))
    path = tmp_path / "bad.html"
    html.write(path, html.render(net, analyze(net), collapsed=True))
    p = Page(browser, path)
    page = p.page
    page.locator(".cl-dg .n.b").click()  # redrawn by the script from the embedded tree
    page.locator(".cl-tw tbody tr").first.click()
    assert page.evaluate("window.pwned") is None
    assert bad in p.detail()
    assert page.locator(".cl-dg img, .cnnlab img").count() == 0
    assert p.errors == []


def test_two_reports_on_one_page_do_not_meet(browser: Any, tmp_path: Path) -> None:
    net = zoo.get("lenet5")
    a = analyze(net)
    frag = html.fragment(net, a) + html.fragment(net, a)
    path = tmp_path / "two.html"
    path.write_text(f"<!doctype html><meta charset='utf-8'><body>{frag}</body>")
    p = Page(browser, path)
    page = p.page
    assert page.locator(".cnnlab[data-ready]").count() == 2
    page.locator(".cnnlab").nth(1).locator(".cl-tw tbody tr").nth(0).click()
    assert page.locator(".cnnlab").nth(0).locator(".sel").count() == 0
    assert page.locator(".cnnlab").nth(1).locator(".cl-dg .n.sel").count() == 1
    assert p.errors == []


def test_chromium_path_is_the_distributions() -> None:
    """The tests drive the distribution's chromium, not a browser Playwright downloads."""
    assert CHROMIUM == "/usr/bin/chromium" or "CNNLAB_CHROMIUM" in os.environ
    assert shutil.which("chromium") in (None, "/usr/bin/chromium", CHROMIUM)
