"""The interactive HTML report without a browser: escaping, ids, the embedded data, file size."""

from __future__ import annotations

import json
import re

from cnnlab import zoo
from cnnlab.analysis import analyze
from cnnlab.layers import Conv, Dense, GlobalAvgPool
from cnnlab.network import Network, concat, seq
from cnnlab.report import diagram, html
from cnnlab.report.script import JS

BAD = '<img src=x onerror="alert(1)"></script><!--\u2028&'


def _hostile() -> Network:
    return Network(BAD, (Conv(name=BAD, filters=4, kernel=3),
                         concat("mix", seq("a", Conv(name="c", filters=2, kernel=1)),
                                seq(BAD, Conv(name="c", filters=2, kernel=1))),
                         GlobalAvgPool(name="gap"), Dense(name="fc", units=2)), (3, 8, 8))


def _data(page: str) -> dict:
    m = re.search(r'<script type="application/json" class="cl-data">(.*?)</script>', page, re.S)
    assert m
    return json.loads(m.group(1))


def test_script_json_cannot_end_its_element() -> None:
    s = html.script_json({"n": BAD})
    assert "<" not in s and ">" not in s and "&" not in s and "\u2028" not in s
    assert json.loads(s) == {"n": BAD}


def test_hostile_names_are_escaped_everywhere() -> None:
    net = _hostile()
    page = html.render(net, analyze(net))
    assert "<img" not in page and "alert(1)\"></script>" not in page
    # The only script ends are the two real ones; no comment opens anywhere.
    assert page.count("</script>") == 2 and "<!--" not in page
    assert _data(page)["layers"][0]["n"] == BAD
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page  # title, table, diagram


def test_the_script_has_no_markup_that_ends_it_and_no_address() -> None:
    assert "</script" not in JS.lower() and "<!--" not in JS and "http" not in JS


def test_fragment_ids_are_unique_and_scoped() -> None:
    net = zoo.get("lenet5")
    a = analyze(net)
    one, two = html.fragment(net, a), html.fragment(net, a)
    ids = re.findall(r'\bid="([^"]+)"', one + two)
    assert len(ids) == 4 and len(set(ids)) == 4  # a container and an arrow marker each
    uid = re.match(r'<div class="cnnlab" id="(cnnlab-[0-9a-f]{10})">', one).group(1)
    assert f'marker id="{uid}-a"' in one and f'url(#{uid}-a)' in one
    assert not one.startswith("<!doctype") and "<body" not in one
    css = re.search(r"<style>(.*?)</style>", one, re.S).group(1)
    selectors = [sel.strip() for r in re.findall(r"([^{}]+)\{[^{}]*\}", css) for sel in r.split(",")]
    assert len(selectors) > 40 and all(sel.startswith(".cnnlab") for sel in selectors), selectors


def test_large_networks_open_collapsed_small_ones_open() -> None:
    small, big = zoo.get("alexnet"), zoo.get("googlenet")
    d_small = _data(html.render(small, analyze(small)))
    d_big = _data(html.render(big, analyze(big)))
    assert d_small["collapsed"] == []
    assert len(d_big["collapsed"]) == 9 and "inception_3a" in d_big["collapsed"]
    assert ["inception_3a", 10, 23] in d_big["frames"]  # rows 10..22: the module's 13 layers
    page = html.render(big, analyze(big), collapsed=False)
    assert _data(page)["collapsed"] == [] and '<g class="n b"' not in page


def test_collapsed_block_box_carries_its_rows_and_summary() -> None:
    net = zoo.get("googlenet")
    a = analyze(net)
    s = diagram.svg(net, a, collapsed={"inception_3a"})
    rows = " ".join(map(str, range(10, 23)))
    assert f'<g class="n b" data-r="{rows}" data-b="inception_3a">' in s
    assert "▸ inception_3a (Concat)" in s and "256x28x28 · 163,696 params · 128M MACs" in s
    assert "▾ inception_3b (Concat)" in s  # the others stay open


def test_leaf_boxes_name_their_table_rows() -> None:
    net = zoo.get("lenet5-relu")
    a = analyze(net)
    s = diagram.svg(net, a)
    names = [ly.name for ly in a.layers]
    # conv1 and the ReLU folded into its box are rows 0 and 1.
    assert names[:2] == ["conv1", "relu1"] and '<g class="n" data-r="0 1">' in s
    covered = sorted(int(i) for r in re.findall(r'data-r="([^"]+)"', s) for i in r.split())
    assert covered == list(range(len(a.layers)))  # every row has exactly one box


def test_deep_reports_stay_under_a_megabyte() -> None:
    for model in ("inception-v4", "resnet152"):
        net = zoo.get(model)
        page = html.render(net, analyze(net))
        assert len(page.encode()) < 1_000_000, model
        assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
