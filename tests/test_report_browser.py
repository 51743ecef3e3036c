"""The report page in a real browser: headless Chromium (driven by Playwright) loads it with no console
error and no failed request, every figure decodes and is laid out visibly, and a screenshot is taken.

Needs a Chromium binary (Debian's ``chromium``; ``.ci/run`` installs it) and the ``playwright`` package
(a dev dependency; its own browser download is not used). Without them the test is skipped, unless
``PIVOTUNE_REQUIRE_BROWSER=1`` (set by CI), where it fails instead so the check cannot silently vanish.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from test_report import make_demo, parse

from pivotune.report import write_report

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str | None:
    for name in (os.environ.get("PIVOTUNE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        path = name and shutil.which(name)
        if path:
            return path
    return None


def _need(what: str):
    if os.environ.get("PIVOTUNE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the browser test needs {what} (PIVOTUNE_REQUIRE_BROWSER=1)")
    pytest.skip(f"no {what}")


def _real_figure(path):
    """A real matplotlib PNG in place of the fixture's 1×1 placeholder, so decoding is tested on a figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2, 3], [0.1, 0.3, 0.2, 0.05], label="P(en)")
    ax.legend()
    fig.savefig(path, dpi=60)
    plt.close(fig)


def test_report_renders_in_headless_chromium(tmp_path):
    chromium = _chromium()
    if chromium is None:
        _need("Chromium binary (install Debian's `chromium`, or set PIVOTUNE_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright package (pip install -e '.[dev]')")

    demo = make_demo(tmp_path / "demo")
    for seed in (0, 1):
        _real_figure(demo / f"prom-seed{seed}" / "probe" / "lens_el.png")
    for method, cos in (("prom", [0.2, 0.4, 0.3]), ("xllama", [0.1, 0.15, 0.1])):   # the report draws this one
        recs = [{"step": s, "pair": "en~tgt", "mean": c, "sd": 0.02} for s, c in zip((0, 10, 20), cos)]
        (demo / f"{method}-seed0" / "interference.json").write_text(
            json.dumps({"method": method, "blocks": [2], "records": recs}))
    html_path = write_report([demo], tmp_path / "report")
    expected = parse(html_path).srcs
    assert len(expected) >= 2

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
            page.goto(html_path.resolve().as_uri(), wait_until="load")
            images = page.evaluate("""() => Array.from(document.images).map(i => {
                const r = i.getBoundingClientRect();
                return {src: i.getAttribute('src'), complete: i.complete, natural: i.naturalWidth,
                        width: r.width, height: r.height};
            })""")
            title = page.title()
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert problems == []
    assert title == "pivotune study report"
    assert [i["src"] for i in images] == expected          # every figure of the HTML is in the DOM
    for img in images:
        assert img["complete"] and img["natural"] > 1, f"{img['src']} did not decode"   # not the 1×1 fallback
        assert img["width"] > 100 and img["height"] > 50, f"{img['src']} is not laid out visibly: {img}"

    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.shape[1] == 1200 and pixels.shape[0] > 900      # the full page, longer than one screen
    assert pixels[..., :3].std() > 0.01                          # not a blank page
