"""Drawn digits recognised on the real app's /Draw page, drawn with the mouse in Chromium.

    .venv/bin/python -m benchmarks.drawn_digits_browser --models-dir DIR [--count 60]

DIR is a models folder holding the run Draw should use (e.g. one made with
`.venv/bin/python -m mnist_core.train --models-dir DIR`). The script starts
`streamlit run app.py` on it, opens /Draw in headless Chromium and, for each of the first
`--count` drawings of `benchmarks.drawn_digits` (the same x_valid digits, pen widths, sizes
and places as offline), sets the page's stroke-width slider, draws the strokes with the
mouse, reads the Prediction and clears the canvas. Prints the browser accuracy beside the
offline accuracy of the same drawings through the same model file. `--onnx FILE` serves
another model file in the run's place (in a temporary copy of the folder), to try a model
the worker cannot train yet; the page then shows the run's own record, not this model's.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.drawn_digits import DEFAULT_SEED, drawn_set, inputs
from mnist_core.data import read_mnist
from mnist_core.inference import Classifier
from tests import e2e  # the test suite's app server and page helpers
from tests.strokes import Drawing

DEFAULT_COUNT = 60
SAMPLE = 1000  # draw the first `count` of the offline benchmark's 1000 drawings
SETTLE_SECONDS = 0.4  # after the mouse is lifted, before the app's rerun is looked for
# After the slider moves the canvas is drawn again with the new pen; a stroke begun before
# that is lost (a person never draws within a second of moving the slider).
SLIDER_SETTLE_SECONDS = 1.5
READ_TIMEOUT = 30.0


def idle(page) -> bool:
    status = page.query_selector('[data-testid="stStatusWidget"]')
    return status is None or "Running" not in status.inner_text()


def wait_until_idle(page, timeout: float = READ_TIMEOUT) -> None:
    """Until the page's script has finished twice in a row, 0.2 s apart."""
    deadline = time.monotonic() + timeout
    calm = 0
    while calm < 2:
        if time.monotonic() > deadline:
            raise TimeoutError("the app kept running")
        calm = calm + 1 if idle(page) else 0
        page.wait_for_timeout(200)


def set_stroke_width(page, width: int) -> None:
    """Move the Draw page's "Stroke width" slider (under "Pen and comparison") to `width`
    with the keyboard."""
    thumb = page.locator('[data-testid="stSlider"] input[type="range"]')
    if not thumb.is_visible():
        page.get_by_text("Pen and comparison").click()
        thumb.wait_for()
        canvas_settled(page)  # the expander opens with an animation that moves the canvas
    current = int(thumb.input_value())
    if current == width:
        return
    thumb.focus()
    key = "ArrowRight" if width > current else "ArrowLeft"
    for _ in range(abs(width - current)):
        thumb.press(key)
    deadline = time.monotonic() + READ_TIMEOUT
    while int(thumb.input_value()) != width:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the stroke width slider did not reach {width}")
        page.wait_for_timeout(100)
    wait_until_idle(page)
    page.wait_for_timeout(SLIDER_SETTLE_SECONDS * 1000)


def canvas_settled(page, timeout: float = READ_TIMEOUT) -> dict:
    """The canvas's box once it has stayed put for 0.3 s: a stroke drawn while the page's
    layout still moves lands somewhere else on the canvas than the mouse went."""
    canvas = page.locator("canvas.upper-canvas")
    deadline = time.monotonic() + timeout
    box = canvas.bounding_box()
    while True:
        page.wait_for_timeout(300)
        now = canvas.bounding_box()
        if now == box:
            return box
        if time.monotonic() > deadline:
            raise TimeoutError("the canvas kept moving")
        box = now


def draw_strokes(page, drawing: Drawing) -> None:
    box = canvas_settled(page)
    for stroke in drawing.strokes:
        points = stroke if len(stroke) > 1 else np.vstack([stroke, stroke + 0.5])  # a dot moves
        page.mouse.move(box["x"] + points[0, 0], box["y"] + points[0, 1])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y)
        page.mouse.up()


def predicted_digit(page) -> int | None:
    page.wait_for_timeout(SETTLE_SECONDS * 1000)
    wait_until_idle(page)
    metric = e2e.prediction(page)
    try:
        metric.wait_for(timeout=READ_TIMEOUT * 1000)
    except Exception:  # Playwright's TimeoutError: no prediction, count it wrong
        return None
    return int(metric.locator('[data-testid="stMetricValue"]').inner_text().strip())


def replay(url: str, drawings: list[Drawing]) -> list[int | None]:
    """Each drawing's prediction on /Draw, in the given order."""
    from playwright.sync_api import sync_playwright

    predictions = []
    with sync_playwright() as playwright:
        browser = e2e.launch_chromium(playwright)
        page = e2e.new_page(browser)
        e2e.open_page(page, f"{url}/Draw")
        page.locator("canvas.upper-canvas").wait_for()
        for i, drawing in enumerate(drawings):
            set_stroke_width(page, drawing.width)
            draw_strokes(page, drawing)
            predictions.append(predicted_digit(page))
            e2e.clear_canvas(page)
            page.get_by_text("Draw a digit on the canvas").wait_for(timeout=READ_TIMEOUT * 1000)
            if (i + 1) % 10 == 0:
                print(f"  {i + 1}/{len(drawings)} drawn", flush=True)
        if page.errors:
            print(f"page errors: {page.errors}")
        browser.close()
    return predictions


def current_onnx(models_dir: Path) -> Path:
    """The newest model.onnx under the models folder (the run Draw uses after a training)."""
    found = sorted(models_dir.glob("*/model.onnx"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"{models_dir}: no trained run (model.onnx) in it")
    return found[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--onnx", type=Path, default=None,
                        help="serve this model.onnx instead of the current run's")
    args = parser.parse_args(argv)

    data = read_mnist()
    drawn = drawn_set(data.x_valid, data.y_valid, max(SAMPLE, args.count), DEFAULT_SEED)
    order = np.arange(args.count)
    # Fewest slider moves: draw in order of pen width.
    order = order[np.argsort([drawn.drawings[i].width for i in order], kind="stable")]
    labels = drawn.labels[order]
    with tempfile.TemporaryDirectory() as folder:
        models_dir = args.models_dir
        if args.onnx:
            models_dir = Path(folder) / "models"
            shutil.copytree(args.models_dir, models_dir)
            shutil.copyfile(args.onnx, current_onnx(models_dir))
        onnx = current_onnx(models_dir)
        offline = Classifier(onnx).predict_proba(inputs(drawn)[order]).argmax(axis=1)
        server = e2e.AppServer(models_dir, Path(folder) / "streamlit.log").start()
        try:
            start = time.perf_counter()
            predictions = replay(server.url, [drawn.drawings[i] for i in order])
            seconds = time.perf_counter() - start
        finally:
            server.stop()
    browser = np.array([-1 if p is None else p for p in predictions])
    print(f"model: {args.onnx or onnx}")
    print(f"{args.count} drawn x_valid digits replayed with the mouse on /Draw in {seconds:.0f} s")
    print(f"  browser accuracy:                    {(browser == labels).mean():.4f}")
    print(f"  offline accuracy, same drawings:     {(offline == labels).mean():.4f}")
    print(f"  browser and offline agree on         {(browser == offline).mean():.4f}")
    disagree = np.flatnonzero(browser != offline)
    if disagree.size:
        print("  disagreements (label: browser / offline): " + ", ".join(
            f"{labels[i]}: {browser[i]} / {offline[i]}" for i in disagree))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
