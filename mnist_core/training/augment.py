"""The training's augmentations, in TensorFlow, applied batch by batch inside the input
pipeline (mnist_core.training.fit): a mild affine transform of each digit, and half of each
batch redrawn with a pen along the digit's skeleton, as a mouse draws. Worker side only."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mnist_core.data import IMAGE_SIZE, NUM_PIXELS, flatten
from mnist_core.skeleton import thin

AFFINE = (0.2, 0.1, 0.1, 0.2, 1.0)  # ± rotation (rad), scale, squeeze, slant; shift (px)
PEN_SHARE = 0.5  # of each batch redrawn along its skeleton
PEN_WIDTHS = (1.0, 3.0)  # px at 28x28, blended between square pens 1-3 px wide


def skeletons(x: np.ndarray) -> np.ndarray:
    """(N, 784) float32 in [0, 1] -> (N, 784) float32 in {0, 1}: each digit's centre line."""
    return flatten(thin(x.reshape(-1, IMAGE_SIZE, IMAGE_SIZE) >= 0.5)).astype(np.float32)


def pen_strokes(seed: int, share: float = PEN_SHARE,
                widths: tuple[float, float] = PEN_WIDTHS):
    """Redraw `share` of each batch with a square pen 1-3 px wide along each digit's
    skeleton: the constant-width strokes of a mouse, which MNIST's pens on paper are not.
    fn(x, skeleton) -> x, both (B, 784) float32."""
    def redraw(x, skeleton):
        # Only the rows to redraw get pens drawn.
        use = tf.random.uniform((tf.shape(x)[0],), seed=seed + 1) < share
        rows = tf.where(use)[:, 0]
        drawn = draw(tf.gather(skeleton, rows))
        return tf.tensor_scatter_nd_update(x, rows[:, None], drawn)

    def draw(skeleton):
        batch = tf.shape(skeleton)[0]
        s = tf.reshape(skeleton, (-1, IMAGE_SIZE, IMAGE_SIZE, 1))
        # A k x k pen is a k x k max filter. With the images as the channels of one image,
        # TensorFlow's pooling runs 3x faster than on many one-channel images.
        as_channels = tf.transpose(s, [3, 1, 2, 0])
        sizes = range(2, int(np.ceil(widths[1])) + 1)  # 2x2, 3x3: the widths' pens
        pens = tf.stack([s] + [tf.transpose(tf.nn.max_pool2d(as_channels, k, 1, "SAME"),
                                            [3, 1, 2, 0]) for k in sizes], axis=0)
        width = tf.random.uniform((batch,), widths[0], widths[1], seed=seed)
        low = tf.cast(tf.floor(width), tf.int32) - 1
        high = tf.minimum(low + 1, len(sizes))
        blend = tf.reshape(width - tf.floor(width), (-1, 1, 1, 1))
        rows = tf.range(batch)
        thinner = tf.gather_nd(pens, tf.stack([low, rows], axis=1))
        thicker = tf.gather_nd(pens, tf.stack([high, rows], axis=1))
        return tf.reshape((1 - blend) * thinner + blend * thicker, (-1, NUM_PIXELS))

    return redraw


def affine(seed: int, limits: tuple[float, float, float, float, float] = AFFINE):
    """A mild random affine transform of each image of a (B, 784) batch: rotation, scale,
    squeeze, slant and shift (`limits`, as AFFINE), in one bilinear resampling.

    Mild on purpose: the Draw page's MNIST steps already normalise size and position, and
    larger shifts and zooms cost MNIST accuracy without helping drawings (RESULTS.md).
    """
    centre = (IMAGE_SIZE - 1) / 2
    rotate, scale, squeeze, shear, shift = limits

    def uniform(batch, limit, offset):
        return tf.random.uniform((batch,), -limit, limit, seed=seed + offset)

    def transform(x):
        batch = tf.shape(x)[0]
        angle, zoom = uniform(batch, rotate, 0), 1.0 + uniform(batch, scale, 1)
        aspect, slant = 1.0 + uniform(batch, squeeze, 2), uniform(batch, shear, 3)
        cos, sin = tf.cos(angle), tf.sin(angle)
        # The output-to-input map, as ImageProjectiveTransform wants it.
        a0, a1 = cos / (zoom / aspect), sin / (zoom / aspect) + slant
        b0, b1 = -sin / (zoom * aspect), cos / (zoom * aspect)
        a2 = centre + uniform(batch, shift, 4) - (a0 + a1) * centre
        b2 = centre + uniform(batch, shift, 5) - (b0 + b1) * centre
        zeros = tf.zeros_like(a0)
        images = tf.raw_ops.ImageProjectiveTransformV3(
            images=tf.reshape(x, (-1, IMAGE_SIZE, IMAGE_SIZE, 1)),
            transforms=tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1),
            output_shape=[IMAGE_SIZE, IMAGE_SIZE], interpolation="BILINEAR",
            fill_mode="CONSTANT", fill_value=0.0)
        return tf.reshape(images, (-1, NUM_PIXELS))

    return transform
