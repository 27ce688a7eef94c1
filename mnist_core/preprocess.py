"""Turn a canvas drawing into an MNIST-style 28x28 image, one visible step at a time.

MNIST digits were made by fitting each digit's ink into a 20x20 box (keeping its aspect
ratio) and centring that box's centre of mass in a 28x28 image. A drawing only looks like
MNIST to the model after the same steps:

    drawing (H, W, 4) RGBA uint8  -> grayscale (H, W) uint8, white ink on black
    -> crop to the ink            -> fit into 20x20 keeping the aspect ratio
    -> centre by mass in 28x28    -> flatten (784,) -> normalize float32 in [0, 1]

The last two are `mnist_core.data.flatten` / `normalize`, the same calls the training data
goes through.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mnist_core.data import IMAGE_SIZE, flatten, normalize

FIT_BOX = 20
INK_THRESHOLD = 30  # gray levels below this count as background (anti-aliasing haze)
MIN_INK_PIXELS = 12  # fewer inked canvas pixels than this is a dot, not a digit
NOTHING_DRAWN = "Draw a digit on the canvas: the prediction appears when you lift the mouse."


@dataclass(frozen=True)
class Steps:
    """Every intermediate image, for the Draw page to show. `x` is what the model gets."""

    grayscale: np.ndarray  # (H, W) uint8
    cropped: np.ndarray  # (h, w) uint8, the ink's bounding box
    fitted: np.ndarray  # (<=20, <=20) uint8, longer side 20
    centered: np.ndarray  # (28, 28) uint8
    x: np.ndarray  # (1, 784) float32 in [0, 1]


class EmptyDrawing(ValueError):
    """Nothing (or too little) is drawn to classify."""


def to_grayscale(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) or (H, W, 3) uint8 -> (H, W) uint8 luminance, scaled by alpha when present.

    A transparent canvas background then reads as black, like MNIST's background.
    """
    rgba = np.asarray(rgba)
    if rgba.ndim == 2:
        return rgba.astype(np.uint8)
    # PIL's "L" conversion is ITU-R 601-2 luma (0.299 R + 0.587 G + 0.114 B) of the colour
    # channels, in C; alpha is applied below.
    gray = np.asarray(Image.fromarray(rgba.astype(np.uint8, copy=False)).convert("L"))
    if rgba.shape[-1] == 4 and (alpha := rgba[..., 3]).min() < 255:
        gray = ((gray.astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
    return gray


def ink_box(gray: np.ndarray, threshold: int = INK_THRESHOLD) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the inked pixels, end-exclusive; None when blank."""
    ink = gray >= threshold
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def crop_to_ink(gray: np.ndarray) -> np.ndarray:
    box = ink_box(gray)
    if box is None:
        raise EmptyDrawing(NOTHING_DRAWN)
    if int((gray >= INK_THRESHOLD).sum()) < MIN_INK_PIXELS:
        raise EmptyDrawing("That is only a dot. Draw a whole digit, as large as the canvas.")
    top, bottom, left, right = box
    return gray[top:bottom, left:right]


def fit_into_box(image: np.ndarray, size: int = FIT_BOX) -> np.ndarray:
    """Scale so the longer side is `size`, keeping the aspect ratio (a "1" stays thin)."""
    height, width = image.shape
    scale = size / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Box filtering averages every source pixel when shrinking, so thin strokes stay gray
    # instead of vanishing between samples.
    return np.asarray(Image.fromarray(image).resize(new_size, Image.Resampling.BOX))


def center_by_mass(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Place `image` in a size x size black square with its centre of mass at the centre."""
    height, width = image.shape
    mass = image.astype(np.float64)
    total = mass.sum()
    if total > 0:
        cy = (mass.sum(axis=1) @ np.arange(height)) / total
        cx = (mass.sum(axis=0) @ np.arange(width)) / total
    else:
        cy, cx = (height - 1) / 2, (width - 1) / 2
    top = int(round((size - 1) / 2 - cy))
    left = int(round((size - 1) / 2 - cx))
    # Keep the whole digit inside the square even when its mass is far off-centre.
    top = min(max(top, 0), size - height)
    left = min(max(left, 0), size - width)
    out = np.zeros((size, size), np.uint8)
    out[top:top + height, left:left + width] = image
    return out


def mnist_steps(rgba: np.ndarray) -> Steps:
    """All steps from a canvas RGBA array; raises EmptyDrawing when nothing is drawn."""
    gray = to_grayscale(rgba)
    cropped = crop_to_ink(gray)
    fitted = fit_into_box(cropped)
    centered = center_by_mass(fitted)
    return Steps(gray, cropped, fitted, centered, normalize(flatten(centered[None])))


def naive_downscale(rgba: np.ndarray) -> np.ndarray:
    """The whole canvas squeezed to 28x28, no cropping or centring: what not to do."""
    gray = to_grayscale(rgba)
    return np.asarray(Image.fromarray(gray).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX))


def thumbnail_png(gray: np.ndarray, size: int = 140) -> bytes:
    """A small grayscale PNG of the raw drawing (a few kB), kept with a labelled drawing."""
    buffer = io.BytesIO()
    Image.fromarray(gray).resize((size, size), Image.Resampling.BOX).save(buffer, format="PNG",
                                                                          optimize=True)
    return buffer.getvalue()
