"""Screenshots of the demo's two views, for the README (docs/screenshots/) and the browser tests.

    .venv/bin/python scripts/screenshots.py --out RUNS_FOLDER [--dest docs/screenshots]

starts `ganaug demo` over RUNS_FOLDER (the --out that holds models/ and results/), opens the page in
Debian's Chromium, shows one row per class at seed 7 in *Generate* and a real Fashion-MNIST test
image in *Classify*, and writes generate.png and classify.png. Retake them whenever better models
are trained.
"""

from __future__ import annotations

import argparse
import gzip
import io
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]
VIEWPORT = {"width": 1200, "height": 1000}
GENERATE_CLASS, GENERATE_SEED = "every class (one row each)", 7
CLASSIFY_TEST_INDEX = 0  # an ankle boot in the official test split


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def test_image_png(index: int = CLASSIFY_TEST_INDEX) -> bytes:
    """One image of the official Fashion-MNIST test split as a grayscale PNG."""
    from PIL import Image

    raw = gzip.open(REPO / "data" / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").read()
    start = 16 + index * 784
    buffer = io.BytesIO()
    Image.frombytes("L", (28, 28), raw[start:start + 784]).save(buffer, format="PNG")
    return buffer.getvalue()


def wait_ready(page) -> None:
    # Function form: the page's Content-Security-Policy forbids evaluating strings.
    page.wait_for_function("() => window.ganaugDemo && window.ganaugDemo.ready", timeout=60_000)


def capture(browser, url: str, dest: Path, png: bytes | None = None) -> list[Path]:
    """Write dest/generate.png and dest/classify.png from the demo at ``url``."""
    dest.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
    try:
        page.goto(url + "#generate")
        wait_ready(page)
        done = page.evaluate("() => window.ganaugDemo.generated")
        page.select_option("#gen-class", label=GENERATE_CLASS)
        page.fill("#gen-seed", str(GENERATE_SEED))
        page.press("#gen-seed", "Enter")
        page.wait_for_function(
            "([n, seed]) => window.ganaugDemo.generated > n && window.ganaugDemo.last.generate.seed === seed",
            arg=[done, GENERATE_SEED])
        page.locator("#gen-seed").blur()
        page.screenshot(path=dest / "generate.png")

        page.click("#tab-classify")
        done = page.evaluate("() => window.ganaugDemo.classified")
        upload = dest / ".classify-input.png"
        upload.write_bytes(png or test_image_png())
        page.set_input_files("#cls-file", upload)
        page.wait_for_function("(n) => window.ganaugDemo.classified > n", arg=done)
        upload.unlink()
        page.screenshot(path=dest / "classify.png")
    finally:
        page.close()
    return [dest / "generate.png", dest / "classify.png"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the folder that holds models/ and results/")
    parser.add_argument("--dest", default=str(REPO / "docs" / "screenshots"))
    args = parser.parse_args()
    ganaug = Path(sys.executable).with_name("ganaug")
    server = subprocess.Popen([str(ganaug), "demo", "--out", args.out, "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = None
        for line in server.stdout:
            if match := re.search(r"http://\S+/", line):
                url = match.group(0)
                break
        if url is None:
            sys.exit(f"ganaug demo did not start (status {server.wait()})")
        with sync_playwright() as playwright:
            browser = launch(playwright)
            for path in capture(browser, url, Path(args.dest)):
                print(f"wrote {path}")
            browser.close()
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
