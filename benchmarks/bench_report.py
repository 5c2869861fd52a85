"""How fast does the interactive report open? Inception-v4's report (every block collapsed, as it
opens by default) is written, then opened several times in headless Chromium; each time is from
the navigation to the moment the report's script has run (``data-ready`` on its container).

Target: under 2 s; the file under 1 MB.

    python benchmarks/bench_report.py [--model inception-v4] [--runs 5] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="inception-v4")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    if not Path(args.chromium).exists():
        print(f"no chromium at {args.chromium}: apt-get install chromium", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    from cnnlab import zoo
    from cnnlab.analysis import analyze
    from cnnlab.report import html

    net = zoo.get(args.model)
    t0 = time.perf_counter()
    page_html = html.render(net, analyze(net))
    build = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"{args.model}.html"
        html.write(path, page_html)
        times, script = [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"], headless=True)
            for _ in range(args.runs):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                start = time.perf_counter()
                page.goto(path.as_uri())
                page.wait_for_selector(".cnnlab[data-ready]")
                times.append(time.perf_counter() - start)
                script.append(page.evaluate("performance.now()") / 1000)
                page.close()
            browser.close()
        size = path.stat().st_size
    med = statistics.median(times)
    print(f"{args.model}: report written in {build:.2f} s, {size:,} bytes ({'under' if size < 1e6 else 'OVER'} 1 MB)")
    print(f"opened in headless Chromium: median {med:.3f} s over {args.runs} runs "
          f"(min {min(times):.3f}, max {max(times):.3f}; page clock at ready, median {statistics.median(script):.3f} s); "
          f"target < 2 s: {'met' if med < 2 else 'MISSED'}")
    return 0 if med < 2 and size < 1e6 else 1


if __name__ == "__main__":
    raise SystemExit(main())
