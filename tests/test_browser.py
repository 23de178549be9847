"""The demo page in a real browser (Debian's Chromium via Playwright) against a real `ganaug demo`
process serving a classifier and a generator trained by the real CLI on a 1% slice.

What a user sees must be what Python's onnxruntime computes: the generator's images for the page's
noise, and the classifier's probabilities for the 28x28 input the page shows.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import math
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from conftest import FASHION_CLASSES, REPO
from demo_runs import CLASSIFIER, GENERATOR, running_demo, trained_out

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
TOLERANCE = 1e-4  # |browser - Python onnxruntime| on images in [0, 1] and on probabilities
TEST_IMAGES = (0, 1, 2)  # official test split: Ankle boot, Pullover, Trouser
SEED = 1234
SNEAKER = FASHION_CLASSES.index("Sneaker")


def _load_screenshots():
    spec = importlib.util.spec_from_file_location("screenshots", REPO / "scripts" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


screenshots = _load_screenshots()


# ---------------------------------------------------------------- the page's noise, in Python

M32 = 0xFFFFFFFF


def mulberry32(seed: int):
    a = seed & M32
    while True:
        a = (a + 0x6D2B79F5) & M32
        t = ((a ^ (a >> 15)) * (1 | a)) & M32
        t = ((t + (((t ^ (t >> 7)) * (61 | t)) & M32)) & M32) ^ t
        yield (t ^ (t >> 14)) & M32


def gaussian_noise(seed: int, count: int) -> np.ndarray:
    """The z of web/prng.js: mulberry32 uniforms (x + 0.5) / 2^32, Box-Muller pairs."""
    stream = mulberry32(seed)
    out = np.empty(count, np.float32)
    for i in range(0, count, 2):
        u1, u2 = (next(stream) + 0.5) / 2**32, (next(stream) + 0.5) / 2**32
        r, theta = math.sqrt(-2 * math.log(u1)), 2 * math.pi * u2
        out[i] = r * math.cos(theta)
        if i + 1 < count:
            out[i + 1] = r * math.sin(theta)
    return out


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_out(tmp_path_factory)


@pytest.fixture(scope="module")
def server(trained):
    with running_demo(trained.out) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; `make browser` installs Debian's chromium")
    with playwright_api.sync_playwright() as playwright:
        chromium = screenshots.launch(playwright)
        yield chromium
        chromium.close()


class PageLog:
    """Console errors, uncaught exceptions and every URL the page requested."""

    def __init__(self, page, base_url: str):
        self.base_url = base_url
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("request", lambda r: self.requests.append(r.url))

    def check(self) -> None:
        assert not self.errors, self.errors
        outside = [u for u in self.requests if not u.startswith((self.base_url, "data:", "blob:"))]
        assert not outside, outside
        assert any(u.endswith("/ort/ort-wasm-simd-threaded.wasm") for u in self.requests)


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport=screenshots.VIEWPORT, has_touch=True)
    page = context.new_page()
    page.log = PageLog(page, server.url)
    yield page
    context.close()


def open_view(page, server, view: str):
    page.goto(server.url + "#" + view)
    screenshots.wait_ready(page)


def python_session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def last(page, view: str) -> dict:
    """The page's last inference of a view, typed arrays as lists."""
    return page.evaluate("""(view) => {
        const last = window.ganaugDemo.last[view];
        return Object.fromEntries(Object.entries(last).map(
            ([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v) : v]));
    }""", view)


def wait_count(page, key: str, before: int) -> None:
    page.wait_for_function("([key, n]) => window.ganaugDemo[key] > n", arg=[key, before])


# ---------------------------------------------------------------- Generate

def test_generated_grid_equals_python_onnxruntime(page, server, trained, tmp_path):
    open_view(page, server, "generate")
    assert page.locator("#gen-model option").all_inner_texts() == [GENERATOR]
    z_dim = page.evaluate("() => window.ganaugDemo.last.generate.zDim")
    session = python_session(trained.generator_onnx)

    done = page.evaluate("() => window.ganaugDemo.generated")
    page.select_option("#gen-class", label="Sneaker")
    page.fill("#gen-seed", str(SEED))
    page.press("#gen-seed", "Enter")
    page.wait_for_function("(seed) => window.ganaugDemo.last.generate.seed === seed && "
                           "window.ganaugDemo.last.generate.labels[0] === 7", arg=SEED)
    assert page.evaluate("() => window.ganaugDemo.generated") > done
    shown = last(page, "generate")
    z = np.array(shown["z"], np.float32)
    labels = np.array(shown["labels"], np.int64)
    assert labels.tolist() == [SNEAKER] * 64
    # the page's noise is the documented PRNG, so anyone can reproduce a grid from its seed
    np.testing.assert_allclose(z, gaussian_noise(SEED, 64 * z_dim), rtol=0, atol=1e-6)
    expected = session.run(["image"], {"z": z.reshape(64, z_dim), "label": labels})[0]
    got = np.array(shown["image"], np.float32).reshape(64, 1, 28, 28)
    diff = float(np.abs(got - expected).max())
    print(f"generator: max |browser - python onnxruntime| = {diff:.3g}")
    assert diff <= TOLERANCE
    # what is drawn is that output: the first cell of the grid canvas
    cell = page.evaluate("""() => Array.from(document.getElementById('gen-grid').getContext('2d')
        .getImageData(2, 2, 28, 28).data.filter((_, i) => i % 4 === 0))""")
    drawn = np.array(cell).reshape(28, 28)
    assert np.abs(drawn - np.round(np.clip(expected[0, 0], 0, 1) * 255)).max() <= 1
    status = page.locator("#gen-status").inner_text()
    assert "Sneaker" in status and f"seed {SEED}" in status
    page.screenshot(path=tmp_path / "generate.png")
    page.log.check()


def test_seed_buttons_step_through_reproducible_grids(page, server):
    open_view(page, server, "generate")
    z_dim = page.evaluate("() => window.ganaugDemo.last.generate.zDim")
    first = last(page, "generate")
    assert first["seed"] == 0 and first["labels"][0] == 0

    page.click("#gen-next")
    page.wait_for_function("() => window.ganaugDemo.last.generate.seed === 1")
    assert page.input_value("#gen-seed") == "1"
    second = last(page, "generate")
    np.testing.assert_allclose(second["z"], gaussian_noise(1, 64 * z_dim), rtol=0, atol=1e-6)
    assert second["image"] != first["image"]

    page.click("#gen-prev")
    page.wait_for_function("() => window.ganaugDemo.last.generate.seed === 0")
    assert last(page, "generate")["image"] == first["image"]  # same seed, same samples

    page.select_option("#gen-class", label="every class (one row each)")
    page.wait_for_function("() => window.ganaugDemo.last.generate.labels.length === 80")
    every = last(page, "generate")
    assert every["labels"] == [i // 8 for i in range(80)]
    # one seed, one noise stream: the first 64 samples share their z with the single-class grid
    np.testing.assert_allclose(every["z"][:64 * z_dim], first["z"], rtol=0, atol=0)
    assert page.locator("#gen-row-labels span").all_inner_texts() == list(FASHION_CLASSES)
    page.log.check()


# ---------------------------------------------------------------- Classify

def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def drop_file(page, data: bytes, name: str) -> None:
    """Drop a file on the drawing area as a drag from the desktop would."""
    transfer = page.evaluate_handle("""([b64, name]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: 'image/png' }));
        return transfer;
    }""", [base64.b64encode(data).decode(), name])
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})


def check_prediction(page, session, expected_input: np.ndarray | None = None) -> tuple[int, float]:
    """The page's probabilities equal Python's for the input the page shows; returns (top, diff)."""
    shown = last(page, "classify")
    x = np.array(shown["input"], np.float32)
    if expected_input is not None:
        np.testing.assert_allclose(x, expected_input.reshape(-1), rtol=0, atol=1e-6)
    probs = softmax(session.run(["logits"], {"image": x.reshape(1, 1, 28, 28)})[0])[0]
    diff = float(np.abs(np.array(shown["probs"]) - probs).max())
    assert diff <= TOLERANCE
    top = int(probs.argmax())
    assert shown["top"] == top
    # the bar chart: one row per class name, the top class highlighted, percentages shown
    assert page.locator("#cls-bars li .name").all_inner_texts() == list(FASHION_CLASSES)
    assert page.locator("#cls-bars li.top .name").inner_text() == FASHION_CLASSES[top]
    assert page.locator("#cls-bars li.top .pct").inner_text() == f"{probs[top] * 100:.1f}%"
    assert FASHION_CLASSES[top] in page.locator("#cls-status").inner_text()
    # the 28x28 preview shows exactly that input
    preview = page.evaluate("""() => Array.from(document.getElementById('cls-input').getContext('2d')
        .getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0))""")
    assert np.abs(np.array(preview) - np.round(x * 255)).max() <= 1
    return top, diff


def test_real_test_images_get_python_top_class(page, server, trained, fashion_test_set, tmp_path):
    images, labels = fashion_test_set
    session = python_session(trained.classifier_onnx)
    open_view(page, server, "classify")
    assert page.locator("#cls-model option").all_inner_texts() == [CLASSIFIER]
    tops = []
    for n, index in enumerate(TEST_IMAGES):
        image = images[index]
        done = page.evaluate("() => window.ganaugDemo.classified")
        if n == 0:  # the file picker
            path = tmp_path / f"test-{index}.png"
            path.write_bytes(png_bytes(image))
            page.set_input_files("#cls-file", path)
        elif n == 1:  # drag and drop
            drop_file(page, png_bytes(image), f"test-{index}.png")
        else:  # dark on light, as a scan or photo would be: the page inverts it back
            drop_file(page, png_bytes(255 - image), f"inverted-{index}.png")
        wait_count(page, "classified", done)
        top, diff = check_prediction(page, session, image.astype(np.float32) / 255)
        tops.append((FASHION_CLASSES[labels[index]], FASHION_CLASSES[top], f"{diff:.2g}"))
    print("test images (label, top class in browser and Python, max prob diff):", tops)
    page.screenshot(path=tmp_path / "classify.png")
    page.log.check()


def test_drawing_with_mouse_and_touch(page, server, trained):
    session = python_session(trained.classifier_onnx)
    open_view(page, server, "classify")
    box = page.locator("#cls-canvas").bounding_box()
    scale = box["width"] / 28  # screen pixels per model pixel

    done = page.evaluate("() => window.ganaugDemo.classified")
    page.mouse.move(box["x"] + 8 * scale, box["y"] + 6 * scale)
    page.mouse.down()
    for step in range(1, 15):
        page.mouse.move(box["x"] + 8 * scale, box["y"] + (6 + step) * scale)
    page.mouse.up()
    wait_count(page, "classified", done)
    check_prediction(page, session)
    x = np.array(last(page, "classify")["input"]).reshape(28, 28)
    assert x[6:21, 8].min() > 0.5  # the vertical stroke is in the input, where it was drawn
    assert x[:, 20:].max() == 0 and x.max() <= 1  # nothing elsewhere; values in [0, 1]

    page.click("#cls-clear")
    page.wait_for_function("() => document.getElementById('cls-status').textContent.startsWith('Draw')")
    assert page.locator("#cls-bars li.top").count() == 0

    done = page.evaluate("() => window.ganaugDemo.classified")
    page.touchscreen.tap(box["x"] + 21 * scale, box["y"] + 21 * scale)
    wait_count(page, "classified", done)
    check_prediction(page, session)
    x = np.array(last(page, "classify")["input"]).reshape(28, 28)
    assert x[21, 21] > 0.5 and x[:10, :10].max() == 0
    page.log.check()


# ---------------------------------------------------------------- the rest

def test_screenshots_of_both_views(browser, server, tmp_path):
    from PIL import Image

    written = screenshots.capture(browser, server.url, tmp_path)
    assert [p.name for p in written] == ["generate.png", "classify.png"]
    for path in written:
        with Image.open(path) as shot:
            assert shot.size == (screenshots.VIEWPORT["width"], screenshots.VIEWPORT["height"])
            assert len(np.unique(np.asarray(shot.convert("L")))) > 16  # a rendered page, not blank


def test_an_out_without_generators_says_how_to_get_one(browser, trained, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(trained.models("classifiers"), out / "models" / "classifiers" / CLASSIFIER)
    with running_demo(out) as running:
        page = browser.new_page()
        log = PageLog(page, running.url)
        page.goto(running.url)
        screenshots.wait_ready(page)
        assert page.locator("#gen-empty").is_visible()
        assert "ganaug train-generator" in page.locator("#gen-empty").inner_text()
        assert page.locator("#gen-next").is_disabled()
        page.click("#tab-classify")
        assert page.locator("#cls-model option").all_inner_texts() == [CLASSIFIER]
        assert not page.locator("#cls-empty").is_visible()
        assert not log.errors, log.errors
        page.close()
