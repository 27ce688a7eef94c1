"""The Draw page's inline pictures (mnist_core.plots)."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from mnist_core import plots

pytestmark = pytest.mark.unit


def test_images_html_carries_each_image_exactly_with_its_caption(mnist):
    digit, label, tall = mnist.x_train[0], mnist.y_train[0], np.zeros((20, 14), np.uint8)
    html = plots.images_html([(digit, f"a {label} <from MNIST>"), (tall, "fitted")])
    sources = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(sources) == 2
    decoded = [np.asarray(Image.open(io.BytesIO(base64.b64decode(s)))) for s in sources]
    assert np.array_equal(decoded[0], digit) and np.array_equal(decoded[1], tall)
    assert f"a {label} &lt;from MNIST&gt;" in html and "<from" not in html
    assert html.count("image-rendering:pixelated") == 2  # small images stay crisp squares


def test_large_images_are_not_pixelated():
    html = plots.images_html([(np.zeros((280, 280), np.uint8), "canvas")], width=120)
    assert "pixelated" not in html


def test_a_long_runs_batch_chart_sends_at_most_a_thousand_points_per_series():
    steps = list(range(1, 200_001))  # 200 000 batches: hours of training
    loss = list(np.linspace(2.3, 0.05, len(steps)))
    for metric in ("loss", "accuracy"):
        chart = plots.batch_curve_chart(steps, loss, 469, metric).to_dict()
        rows = next(iter(chart["datasets"].values()))
        assert len(rows) <= plots.MAX_CHART_POINTS
        assert rows[-1]["epoch"] == pytest.approx(steps[-1] / 469)  # the newest is shown
        assert rows[0]["epoch"] == pytest.approx(steps[0] / 469)
    short = plots.batch_curve_chart([1, 2, 3], [1.0, 0.5, 0.25], 3, "loss").to_dict()
    assert len(next(iter(short["datasets"].values()))) == 3  # a short run is sent as it is


def test_downsample_keeps_evenly_spaced_points_and_the_ends():
    x = list(range(10_000))
    kept_x, kept_y = plots.downsample(x, [v * 2 for v in x], 100)
    assert len(kept_x) == 100 and kept_x[0] == 0 and kept_x[-1] == 9_999
    assert kept_y == [v * 2 for v in kept_x]
    gaps = np.diff(kept_x)
    assert gaps.max() - gaps.min() <= 1


def test_a_3x_drawing_is_sent_at_twice_its_shown_width_keeping_its_shape():
    """An 840x840 drawing (the canvas at 3x, which a crafted value may send) would cost ~5 ms
    and ~44 kB a stroke sent whole."""
    drawing = np.zeros((840, 840), np.uint8)
    drawing[100:700, 400:440] = 255  # a "1": a bar 600 px tall, 40 wide
    cropped = drawing[100:700, 400:440]
    html = plots.images_html([(drawing, "grayscale"), (cropped, "cropped")], width=120)
    sent = [np.asarray(Image.open(io.BytesIO(base64.b64decode(s))))
            for s in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]
    assert [image.shape for image in sent] == [(240, 240), (240, 16)]
    ink = sent[0] > 127
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    # the bar's edges, scaled by 240/840, to within a pixel
    expected = np.array([100, 700, 400, 440]) * 240 / 840 - [0, 1, 0, 1]
    assert np.abs(np.array([rows[0], rows[-1], cols[0], cols[-1]]) - expected).max() <= 1
    assert len(html) < 8000  # was ~60 kB of base64
