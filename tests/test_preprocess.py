"""Canvas drawings -> MNIST-style input: each step, bad drawings, and accuracy on real digits."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_core.data import flatten, normalize
from mnist_core.preprocess import (
    EmptyDrawing,
    center_by_mass,
    fit_into_box,
    mnist_steps,
    to_grayscale,
)

pytestmark = pytest.mark.unit

CANVAS = 280


def canvas_from_digit(digit: np.ndarray, scale: int, top: int, left: int) -> np.ndarray:
    """An RGBA canvas as the browser sends it: black, opaque, with an MNIST digit drawn
    `scale` times larger at (top, left)."""
    big = np.asarray(Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.BILINEAR))
    gray = np.zeros((CANVAS, CANVAS), np.uint8)
    gray[top:top + big.shape[0], left:left + big.shape[1]] = big
    return np.dstack([gray, gray, gray, np.full_like(gray, 255)])


def stroke_canvas(points, width, transparent=False) -> np.ndarray:
    image = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0 if transparent else 255))
    ImageDraw.Draw(image).line(points, fill=(255, 255, 255, 255), width=width, joint="curve")
    return np.asarray(image)


def center_of_mass(image):
    mass = image.astype(float)
    rows, cols = np.indices(image.shape)
    return (rows * mass).sum() / mass.sum(), (cols * mass).sum() / mass.sum()


def test_grayscale_reads_transparent_background_as_black():
    rgba = stroke_canvas([(50, 50), (200, 200)], 20, transparent=True)
    gray = to_grayscale(rgba)
    assert gray.shape == (CANVAS, CANVAS) and gray.dtype == np.uint8
    assert gray[0, 0] == 0 and gray[125, 125] == 255


def test_fit_keeps_the_aspect_ratio_of_a_one():
    tall = np.full((150, 30), 255, np.uint8)
    assert fit_into_box(tall).shape == (20, 4)
    wide = np.full((10, 200), 255, np.uint8)
    assert fit_into_box(wide).shape == (1, 20)


def test_center_by_mass_puts_the_mass_in_the_middle(mnist):
    for digit in mnist.x_valid[:50]:
        box = fit_into_box(digit[digit.any(axis=1)][:, digit.any(axis=0)])
        centered = center_by_mass(box)
        assert centered.shape == (28, 28)
        row, col = center_of_mass(centered)
        assert abs(row - 13.5) <= 0.5 and abs(col - 13.5) <= 0.5
        assert centered.sum() == box.astype(int).sum()  # nothing cut off


def test_steps_shapes_and_the_shared_flatten_normalize(mnist):
    steps = mnist_steps(canvas_from_digit(mnist.x_valid[0], 6, 40, 70))
    assert steps.grayscale.shape == (CANVAS, CANVAS)
    assert max(steps.fitted.shape) == 20
    assert steps.centered.shape == (28, 28)
    np.testing.assert_array_equal(steps.x, normalize(flatten(steps.centered[None])))
    assert steps.x.shape == (1, 784) and steps.x.dtype == np.float32
    assert 0.0 <= steps.x.min() and steps.x.max() <= 1.0


@pytest.mark.parametrize("canvas", [
    np.zeros((CANVAS, CANVAS, 4), np.uint8),  # nothing drawn, transparent
    np.dstack([np.zeros((CANVAS, CANVAS, 3), np.uint8), np.full((CANVAS, CANVAS), 255, np.uint8)]),
    stroke_canvas([(140, 140), (141, 141)], 2),  # a single dot
], ids=["transparent", "black", "dot"])
def test_empty_or_dot_gives_a_hint_not_a_prediction(canvas):
    with pytest.raises(EmptyDrawing, match="Draw a (whole )?digit"):
        mnist_steps(canvas)


def test_a_dot_is_told_apart_from_nothing():
    with pytest.raises(EmptyDrawing, match="only a dot"):
        mnist_steps(stroke_canvas([(140, 140), (141, 141)], 2))
    with pytest.raises(EmptyDrawing, match="Draw a digit on the canvas"):
        mnist_steps(np.zeros((CANVAS, CANVAS, 4), np.uint8))


@pytest.mark.parametrize("canvas", [
    stroke_canvas([(0, 0), (279, 0), (279, 279), (0, 279), (0, 0), (279, 279)], 60),  # scribble
    stroke_canvas([(0, 40), (0, 240)], 30),  # a stroke along the border
    stroke_canvas([(140, 30), (140, 250)], 1),  # very thin
    stroke_canvas([(60, 60), (220, 220)], 120),  # very thick
], ids=["scribble", "border", "thin", "thick"])
def test_odd_drawings_become_mnist_shaped_inputs(canvas):
    """Whatever is drawn, the model gets what MNIST gives it: the ink fitted into 20x20,
    centred by mass in 28x28, none of it cut off."""
    steps = mnist_steps(canvas)
    assert max(steps.fitted.shape) == 20 and min(steps.fitted.shape) >= 1
    row, col = center_of_mass(steps.centered)
    assert abs(row - 13.5) <= 1 and abs(col - 13.5) <= 1
    assert steps.centered.astype(int).sum() == steps.fitted.astype(int).sum()
    np.testing.assert_array_equal(steps.x, normalize(flatten(steps.centered[None])))
