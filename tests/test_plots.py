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
