"""The Draw page says when the model is unsure, and names the runner-up: drawings sent over
Streamlit's websocket, as the canvas sends them, to a running app."""

from __future__ import annotations

import base64
import io
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from mnist_core.inference import Classifier, doubt
from mnist_core.preprocess import EmptyDrawing, mnist_steps
from tests import e2e, wire
from tests.hostile import url_of, value

pytestmark = pytest.mark.browser


def canvas_of(digit: np.ndarray) -> np.ndarray:
    """An MNIST digit as a 280x280 opaque canvas (each pixel 10x10): white ink on black."""
    gray = np.kron(digit, np.ones((10, 10), np.uint8))
    return np.dstack([gray, gray, gray, np.full_like(gray, 255)])


def as_canvas_value(rgba: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    return value(url_of(buffer.getvalue()))


def pick(mnist, classifier: Classifier, unsure: bool) -> tuple[np.ndarray, np.ndarray]:
    """The first validation digit the model is (un)sure about, through the Draw page's steps."""
    for digit in mnist.x_valid[:2000]:
        rgba = canvas_of(digit)
        try:
            probabilities = classifier.predict_proba(mnist_steps(rgba).x)[0]
        except EmptyDrawing:
            continue
        if (doubt(probabilities) is not None) == unsure:
            return rgba, probabilities
    raise AssertionError("no such digit in 2000")


async def send(url: str, rgba: np.ndarray) -> tuple[str | None, str]:
    async with wire.DrawVisitor(url, timeout=60) as visitor:
        prediction = await visitor.send_value(as_canvas_value(rgba))
        return prediction, " ".join(visitor.html)


def test_an_unsure_prediction_says_so_and_names_the_runner_up(tmp_path, trained_store,
                                                              trained_run, mnist):
    shutil.copytree(trained_store.root, tmp_path / "models")
    classifier = Classifier(trained_run.onnx_path)
    unsure, unsure_p = pick(mnist, classifier, unsure=True)
    sure, sure_p = pick(mnist, classifier, unsure=False)
    app = e2e.AppServer(tmp_path / "models", tmp_path / "server.log").start()
    try:
        prediction, shown = wire.run(send(app.url, unsure))
        runner_up, chance = doubt(unsure_p)
        assert prediction == str(int(np.argmax(unsure_p)))
        assert "Not sure." in shown
        assert f"It could also be a <b>{runner_up}</b> ({chance:.0%})" in shown
        prediction, shown = wire.run(send(app.url, sure))
        assert prediction == str(int(np.argmax(sure_p))) and "Not sure" not in shown
    finally:
        app.stop()


async def draw_each(url: str, pixel_ratio: int) -> tuple[list[str], list[str]]:
    async with wire.DrawVisitor(url, timeout=60, pixel_ratio=pixel_ratio) as visitor:
        predictions, pages = [], []
        for digit in wire.DIGIT_STROKES:
            predictions.append((await visitor.draw(digit))[0])
            pages.append(" ".join(visitor.html))
        return predictions, pages


def test_a_3x_drawing_is_read_alike_and_its_steps_come_back_small(tmp_path, trained_store):
    """A drawing at 3x the canvas (840x840; the canvas sends 280x280 on every screen, a
    crafted value may be up to 4x): the page classifies it as the same drawing at 1x, and
    sends its step pictures at no more than twice the 120 px they are shown at."""
    shutil.copytree(trained_store.root, tmp_path / "models")
    app = e2e.AppServer(tmp_path / "models", tmp_path / "server.log").start()
    try:
        desktop, desktop_pages = wire.run(draw_each(app.url, 1))
        phone, phone_pages = wire.run(draw_each(app.url, 3))
    finally:
        app.stop()
    assert phone == desktop == [str(digit) for digit in wire.DIGIT_STROKES]
    for page in phone_pages:
        assert "1. grayscale 840x840" in page  # the caption tells the drawing's real size
        sizes = [Image.open(io.BytesIO(base64.b64decode(source))).size
                 for source in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
        assert len(sizes) >= 4 and max(max(size) for size in sizes) == 240
    assert max(map(len, phone_pages)) < 2 * max(map(len, desktop_pages))
