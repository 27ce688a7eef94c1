"""The drawn-digit benchmark's pen strokes: thinning, tracing, and redrawing MNIST digits.

The benchmark (`benchmarks.drawn_digits`) judges models by MNIST test digits redrawn as a
visitor would draw them; these tests keep those redrawings faithful to the digits.
"""

from __future__ import annotations

import numpy as np
import pytest

from mnist_core.preprocess import mnist_steps, to_grayscale
from tests.strokes import (
    CANVAS_SIZE,
    PEN_WIDTHS,
    Drawing,
    drawn_digits,
    holes,
    render,
    thin,
    trace,
)

pytestmark = pytest.mark.unit


def ring(size: int = 40, outer: float = 15, inner: float = 9) -> np.ndarray:
    rows, cols = np.indices((size, size)) - (size - 1) / 2
    radius = np.hypot(rows, cols)
    return (radius <= outer) & (radius >= inner)


def grow(ink: np.ndarray) -> np.ndarray:
    """Ink grown by one pixel (3x3), to compare two images up to a pixel of placement."""
    p = np.pad(ink, 1)
    return np.any([p[1 + dy:1 + dy + ink.shape[0], 1 + dx:1 + dx + ink.shape[1]]
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)


def test_thinning_a_thick_bar_leaves_a_one_pixel_line():
    bar = np.zeros((30, 60), bool)
    bar[10:19, 5:55] = True
    skeleton = thin(bar)
    assert skeleton.sum() >= 30
    assert (skeleton.sum(axis=0) <= 1).all()  # one pixel per column
    assert not (skeleton & ~bar).any()


def test_thinning_a_batch_equals_thinning_each_image(mnist):
    ink = mnist.x_train[:64] >= 128
    batch = thin(ink)
    assert batch.shape == ink.shape
    for one, skeleton in zip(ink, batch, strict=True):
        np.testing.assert_array_equal(thin(one), skeleton)


def test_the_shipped_skeletons_are_the_training_digits_thinned(mnist):
    from mnist_core.skeleton import STORED, digest, train_skeletons

    with np.load(STORED) as archive:  # made of exactly these images: trainings read them
        assert str(archive["digest"]) == digest(mnist.x_train)
    stored = train_skeletons(mnist.x_train)
    np.testing.assert_array_equal(stored, thin(mnist.x_train >= 128))
    rows = np.array([5, 59999, 7])
    np.testing.assert_array_equal(train_skeletons(mnist.x_train, rows), stored[rows])


def test_stored_skeletons_are_read_only_for_the_images_they_were_made_from(mnist, tmp_path):
    from mnist_core.skeleton import digest, train_skeletons, write_train_skeletons

    first, other = mnist.x_train[:50], mnist.x_train[50:100]
    stored = tmp_path / "skeletons.npz"
    write_train_skeletons(first, stored)
    np.testing.assert_array_equal(train_skeletons(first, stored=stored), thin(first >= 128))
    # A file recording first's digest over blank skeletons: read for first, as it says...
    blank = tmp_path / "blank.npz"
    np.savez_compressed(blank, digest=np.array(digest(first)), shape=np.array(first.shape),
                        packed=np.packbits(np.zeros(first.shape, bool)))
    assert not train_skeletons(first, stored=blank).any()
    # ... and never for other images (a dataset from MNIST_DATA): those are thinned.
    np.testing.assert_array_equal(train_skeletons(other, stored=blank), thin(other >= 128))
    np.testing.assert_array_equal(train_skeletons(other, stored=tmp_path / "none.npz"),
                                  thin(other >= 128))
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")  # an LFS pointer
    np.testing.assert_array_equal(train_skeletons(first, stored=damaged), thin(first >= 128))


def test_a_ring_thins_to_one_closed_stroke_with_its_hole():
    skeleton = thin(ring())
    assert holes(ring()) == 1 and holes(skeleton) == 1
    paths = trace(skeleton)
    assert len(paths) == 1
    assert np.abs(np.subtract(paths[0][0], paths[0][-1])).max() <= 1  # it closes
    assert len(paths[0]) >= 0.9 * skeleton.sum()


def test_a_cross_traces_into_four_branches():
    cross = np.zeros((41, 41), bool)
    cross[18:23, 2:39] = True
    cross[2:39, 18:23] = True
    paths = [p for p in trace(thin(cross)) if len(p) > 3]
    assert len(paths) == 4


def test_render_is_a_canvas_image_with_the_pen_width():
    canvas = render([np.array([[40.0, 140.0], [240.0, 140.0]])], 20)
    assert canvas.shape == (CANVAS_SIZE, CANVAS_SIZE, 4) and canvas.dtype == np.uint8
    assert (canvas[..., 3] == 255).all()
    column = to_grayscale(canvas)[:, 140]
    assert 19 <= (column >= 128).sum() <= 21
    # Round caps: the ink reaches half a pen width beyond each end point.
    row = to_grayscale(canvas)[140]
    assert row[31] >= 128 and row[28] < 128


def test_drawings_are_reproducible_and_use_the_pages_pen_widths(mnist):
    first = drawn_digits(mnist.x_valid[:20], seed=3)
    again = drawn_digits(mnist.x_valid[:20], seed=3)
    for a, b in zip(first, again, strict=True):
        assert isinstance(a, Drawing) and a.width == b.width
        assert all(np.array_equal(s, t) for s, t in zip(a.strokes, b.strokes, strict=True))
        assert PEN_WIDTHS[0] <= a.width <= PEN_WIDTHS[1]
        points = np.concatenate(a.strokes)
        assert points.min() >= a.width / 2 and points.max() <= CANVAS_SIZE - a.width / 2


def test_redrawn_digits_look_like_the_originals_after_the_mnist_steps(mnist):
    """A redrawn digit, through the Draw page's steps, covers the original's ink and little
    else: the strokes follow the digit, not a caricature of it."""
    digits = mnist.x_valid[:100]
    covered, extra = [], []
    for digit, drawing in zip(digits, drawn_digits(digits, seed=0), strict=True):
        drawn = mnist_steps(drawing.render()).centered >= 128
        original = digit >= 128
        covered.append((original & grow(drawn)).sum() / original.sum())
        extra.append((drawn & ~grow(original)).sum() / drawn.sum())
    assert np.median(covered) >= 0.9 and np.percentile(covered, 10) >= 0.7
    assert np.median(extra) <= 0.1
