"""The build report in a real headless Chromium (through Playwright): it renders, fetches nothing, logs no errors.

Chromium is the system's (LTXFLOW_CHROMIUM, else chromium, chromium-browser or google-chrome on
PATH); Playwright never downloads one. Without it the test skips, unless LTXFLOW_REQUIRE_BROWSER=1
(.ci/run sets it; `make test` installs a Chromium where it can), where a missing browser fails."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil

import numpy as np
import pytest

from test_build import ltx
from test_report import make_report_project

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def find_chromium() -> str | None:
    named = os.environ.get("LTXFLOW_CHROMIUM")
    if named:
        found = shutil.which(named)
        assert found, f"LTXFLOW_CHROMIUM={named} is not an executable"
        return found
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def unavailable(reason: str):
    if os.environ.get("LTXFLOW_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}; LTXFLOW_REQUIRE_BROWSER=1 asks for the browser test to run")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    if importlib.util.find_spec("playwright") is None:
        unavailable("Playwright is not installed (pip install -e '.[test]')")
    path = find_chromium()
    if path is None:
        unavailable("no Chromium found: set LTXFLOW_CHROMIUM, or install one (Debian: apt-get install chromium; "
                    "`make test` does so when run as root)")
    return path


def test_report_renders_in_chromium_without_requests_or_errors(tmp_path, chromium):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    project = make_report_project(tmp_path / "proj")
    ltx("build", str(project), cwd=project.parent, check=True)  # the preview backend: real pictures
    report = project.parent / "out" / "video.report.html"
    url = report.resolve().as_uri()

    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=chromium, headless=True, args=ARGS,
            viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        try:
            page = context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto(url, wait_until="load")
            images_drawn = page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
            assert page.evaluate("window.scrollY") == 0  # boxes below are page coordinates
            thumbs = [el.bounding_box() for el in page.query_selector_all("img.thumb")]
            strip = page.query_selector("svg#waveform").bounding_box()
            chunks = len(page.query_selector_all("article.chunk"))
            shot = page.screenshot(full_page=True, type="png")
        finally:
            context.close()

    assert [u for u in requests if u != url and not u.startswith("data:")] == []
    assert errors == []
    assert images_drawn
    img = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
    assert img.shape[1] == 1280 and img.shape[0] > 1500  # the whole page, well past one screen
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 1000  # not blank: text, pictures, the waveform
    assert chunks >= 6 and len(thumbs) == 2 * chunks

    def region(box):
        x, y, w, h = (round(box[k]) for k in ("x", "y", "width", "height"))
        assert w > 50 and h > 20 and y + h <= img.shape[0]
        return img[y:y + h, x:x + w].reshape(-1, 3)

    for box in thumbs:
        pixels = region(box)
        assert pixels.std(axis=0).max() > 8 and len(np.unique(pixels, axis=0)) > 20, box
    wave = region(strip)
    assert wave.std(axis=0).max() > 20 and len(np.unique(wave, axis=0)) > 50
    # the envelope's colour (#4fb3d9) and the worst seam's red (#d7263d) are drawn in the strip
    for rgb in ((0x4F, 0xB3, 0xD9), (0xD7, 0x26, 0x3D)):
        assert (np.abs(wave.astype(int) - rgb).max(axis=1) <= 12).sum() > 20, rgb
