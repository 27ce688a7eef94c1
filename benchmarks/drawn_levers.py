"""Which training levers make drawn digits recognised as well as MNIST's own.

    .venv/bin/python -m benchmarks.drawn_levers mlp mlp_elastic cnn_small_elastic ... [--count 1000]

Each recipe is trained here with Keras directly, mirroring the worker's pipeline (batches
gathered in the graph, one shuffle op per epoch, batch 512, Adam 0.002 with warm-up + cosine
decay, mixed bfloat16 where the worker's `resolve_precision` would pick it, float32 softmax),
saved to ONNX like the worker's `save_model`, and measured through the Draw page's path on
the drawn x_valid digits of `benchmarks.drawn_digits`. Augmentations are TensorFlow ops on
(B, 784) float32 batches in [0, 1], so they drop into `training_dataset` unchanged; the pen
redraw also takes each image's skeleton, thinned once per training (`tests.strokes.thin`).
Two recipes probe the harness itself: `*_simulated*` swap a share of each batch for the
training digit drawn by the harness's own mouse (`tests.strokes`, then the Draw page's MNIST
steps: what no pen augmentation can come closer to), and `*_even_pen*` redraw every input,
MNIST's and the drawings', along its skeleton with one round pen before the model sees it.
Prints one markdown row per recipe, with wall and CPU seconds of each fit (CPU seconds are
steadier on a shared machine); run one training at a time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.drawn_digits import accuracy, drawn_set, inputs, naive_input, steps_input
from mnist_core.data import IMAGE_SIZE, NUM_PIXELS, categorize, flatten, normalize, read_mnist
from mnist_core.devices import cpu_has_bf16
from mnist_core.inference import Classifier
from mnist_core.models import Layer, layers_of
from mnist_core.preprocess import EmptyDrawing, mnist_steps
from mnist_core.skeleton import thin
from tests.strokes import drawn_digits

IMAGE = IMAGE_SIZE
PIXELS = NUM_PIXELS

MLP = layers_of("seed_mlp")  # the notebook's network, as the app trains it
# Small convnets using only the layer kinds and arguments mnist_core.models can summarise.
CNN_SMALL = [
    Layer("Reshape", {"target_shape": (IMAGE, IMAGE, 1)}),
    Layer("Conv2D", {"filters": 16, "kernel_size": (5, 5), "activation": "relu"}),
    Layer("MaxPooling2D", {"pool_size": (2, 2)}),
    Layer("Conv2D", {"filters": 32, "kernel_size": (3, 3), "activation": "relu"}),
    Layer("MaxPooling2D", {"pool_size": (2, 2)}),
    Layer("Flatten"),
    Layer("Dense", {"units": 128, "activation": "relu"}),
    Layer("Dense", {"units": 10, "activation": "softmax"}),
]
# The notebook's network with dropout after each hidden layer (a regulariser, at no
# prediction cost).
MLP_DROPOUT = [MLP[0], Layer("Dropout", {"rate": 0.2}), MLP[1], Layer("Dropout", {"rate": 0.2}),
               MLP[2]]
# The app's "cnn" (Keras's MNIST convnet), for the ceiling: too slow for a 20 s fit here.
KERAS_CNN = layers_of("cnn")
LENET = [
    Layer("Reshape", {"target_shape": (IMAGE, IMAGE, 1)}),
    Layer("Conv2D", {"filters": 8, "kernel_size": (5, 5), "activation": "relu"}),
    Layer("MaxPooling2D", {"pool_size": (2, 2)}),
    Layer("Conv2D", {"filters": 16, "kernel_size": (5, 5), "activation": "relu"}),
    Layer("MaxPooling2D", {"pool_size": (2, 2)}),
    Layer("Flatten"),
    Layer("Dense", {"units": 10, "activation": "softmax"}),
]


@dataclass(frozen=True)
class Recipe:
    layers: list[Layer]
    epochs: int = 5
    augment: str | None = None  # a key of AUGMENTATIONS
    batch_size: int = 512
    learning_rate: float = 0.002
    options: dict = field(default_factory=dict)  # keyword arguments of the augmentation
    pen: float = 0.0  # fraction of images redrawn from their skeleton with a round pen
    simulated: float = 0.0  # fraction of images swapped for the harness's drawing of them
    even_pen: float = 0.0  # > 0: every input redrawn along its skeleton with this pen (px)
    label_smoothing: float = 0.0  # of the one-hot targets, as Keras's loss does it


# ---- augmentations: (tf, seed, **options) -> fn((B, 784) float32) -> (B, 784) float32 ----

def bilinear_sample(tf, images, sy, sx):
    """images (B, 28, 28) sampled at float coordinates (B, 28, 28); outside reads as 0."""
    batch = tf.shape(images)[0]
    flat = tf.reshape(images, [-1])
    y0, x0 = tf.floor(sy), tf.floor(sx)
    wy, wx = sy - y0, sx - x0
    base = tf.reshape(tf.range(batch) * PIXELS, (-1, 1, 1))
    out = 0.0
    for dy, dx, weight in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx),
                           (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
        yy, xx = tf.cast(y0, tf.int32) + dy, tf.cast(x0, tf.int32) + dx
        inside = (yy >= 0) & (yy < IMAGE) & (xx >= 0) & (xx < IMAGE)
        index = base + tf.clip_by_value(yy, 0, IMAGE - 1) * IMAGE + tf.clip_by_value(xx, 0, IMAGE - 1)
        out += weight * tf.where(inside, tf.gather(flat, index), 0.0)
    return out


def distort(tf, seed: int, elastic: float = 0.0, grid: int = 3, rotate: float = 0.0,
            scale: float = 0.0, shear: float = 0.0, shift: float = 0.0, squeeze: float = 0.0,
            gamma: float = 0.0):
    """Random smooth distortions of (B, 784) batches in one resampling.

    elastic: peak displacement in px of a random field on a grid x grid lattice, upsampled
    bicubically (smooth, like Simard et al.'s Gaussian-filtered fields, without a 2-D
    convolution); rotate in radians, scale / shear / squeeze (aspect) as fractions, shift in
    px, each drawn uniformly from [-v, v] per image, about the image centre; gamma: the ink
    raised to exp(u), u in [-gamma, gamma], a sub-pixel thicker (u < 0) or thinner pen.
    """
    centre = (IMAGE - 1) / 2
    ys, xs = tf.meshgrid(tf.range(IMAGE, dtype=tf.float32) - centre,
                         tf.range(IMAGE, dtype=tf.float32) - centre, indexing="ij")

    seeds = iter(range(seed, seed + 100))

    def uniform(batch, limit, shape=(1, 1)):
        if not limit:
            return tf.zeros((batch, *shape))
        return tf.random.uniform((batch, *shape), -limit, limit, seed=next(seeds))

    def augment(x):
        batch = tf.shape(x)[0]
        images = tf.reshape(x, (-1, IMAGE, IMAGE))
        angle, zoom = uniform(batch, rotate), 1.0 + uniform(batch, scale)
        aspect, slant = 1.0 + uniform(batch, squeeze), uniform(batch, shear)
        # Output pixel (y, x) reads the source at inverse-transformed coordinates.
        cos, sin = tf.cos(angle), tf.sin(angle)
        sy = (cos * ys - sin * xs) / (zoom * aspect)
        sx = (sin * ys + cos * xs) / (zoom / aspect) + slant * ys
        sy += centre + uniform(batch, shift)
        sx += centre + uniform(batch, shift)
        if elastic:
            coarse = uniform(batch, elastic, (grid, grid, 2))
            field = tf.image.resize(coarse, (IMAGE, IMAGE), method="bicubic")
            sy += field[..., 0]
            sx += field[..., 1]
        out = tf.clip_by_value(bilinear_sample(tf, images, sy, sx), 0.0, 1.0)
        if gamma:
            out = tf.pow(out, tf.exp(uniform(batch, gamma)))
        return tf.reshape(tf.clip_by_value(out, 0.0, 1.0), (-1, PIXELS))

    return augment


def affine(tf, seed: int, rotate: float = 0.0, scale: float = 0.0, shear: float = 0.0,
           shift: float = 0.0, squeeze: float = 0.0):
    """`distort` without the elastic field, in TensorFlow's own bilinear transform kernel
    (the one Keras's Random* layers use): the worker's own `affine`, with these limits."""
    from mnist_core.training import augment

    return augment.affine(seed, (rotate, scale, squeeze, shear, shift))


def keras_affine(tf, seed: int, thickness: bool = True):
    """The worker's current `augmenter`: Keras random translation, rotation, zoom, thickness."""
    import keras

    layers = [
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed),
        keras.layers.RandomRotation(0.05, fill_mode="constant", seed=seed + 1),
        keras.layers.RandomZoom((-0.15, 0.15), fill_mode="constant", seed=seed + 2),
    ]

    def augment(x):
        images = tf.reshape(x, (-1, IMAGE, IMAGE, 1))
        for layer in layers:
            images = layer(images, training=True)
        if thickness:
            choice = tf.random.uniform((tf.shape(images)[0], 1, 1, 1), seed=seed + 3)
            thicker = tf.nn.max_pool2d(images, 3, 1, "SAME")
            thinner = -tf.nn.max_pool2d(-images, 3, 1, "SAME")
            images = tf.where(choice < 0.2, thicker, tf.where(choice > 0.8, thinner, images))
        return tf.reshape(tf.clip_by_value(images, 0.0, 1.0), (-1, PIXELS))

    return augment


def thickness(tf, seed: int, thicker: float = 0.2, thinner: float = 0.2):
    """Only the stroke-thickness part: 3x3 max (thicker) or min (thinner) filter."""
    def augment(x):
        images = tf.reshape(x, (-1, IMAGE, IMAGE, 1))
        choice = tf.random.uniform((tf.shape(images)[0], 1, 1, 1), seed=seed)
        thick = tf.nn.max_pool2d(images, 3, 1, "SAME")
        thin = -tf.nn.max_pool2d(-images, 3, 1, "SAME")
        images = tf.where(choice < thicker, thick, tf.where(choice > 1 - thinner, thin, images))
        return tf.reshape(images, (-1, PIXELS))

    return augment


def pen_redraw(tf, seed: int, fraction: float, widths: tuple[float, float] = (1.2, 3.4)):
    """Redraw `fraction` of the images as a round pen of random width (px) along their
    skeleton: the constant-width strokes of a mouse drawing. fn(x, skeleton) -> x, both
    (B, 784) float32, skeleton in {0, 1}."""
    reach = 2
    offsets = np.arange(-reach, reach + 1, dtype=np.float32)
    # dilation2d with minus the distance: each pixel gets minus its distance to the skeleton.
    kernel = -np.hypot(offsets[:, None], offsets[None, :])[..., None]

    def redraw(x, skeleton):
        batch = tf.shape(x)[0]
        far = (tf.reshape(skeleton, (-1, IMAGE, IMAGE, 1)) - 1.0) * 100.0
        distance = -tf.nn.dilation2d(far, kernel, [1, 1, 1, 1], "SAME", "NHWC", [1, 1, 1, 1])
        half = tf.random.uniform((batch, 1, 1, 1), widths[0] / 2, widths[1] / 2, seed=seed)
        drawn = tf.reshape(tf.clip_by_value(half + 0.5 - distance, 0.0, 1.0), (-1, PIXELS))
        use = tf.random.uniform((batch, 1), seed=seed + 1) < fraction
        return tf.where(use, drawn, x)

    return redraw


def pen_redraw_fast(tf, seed: int, fraction: float, widths: tuple[float, float] = (1.0, 3.0)):
    """`pen_redraw` with square pens from max pooling (1, 2, 3, 4 px wide), blended for the
    widths in between: the worker's own `pen_strokes`."""
    from mnist_core.training import augment

    return augment.pen_strokes(seed, fraction, widths)


def swap_simulated(tf, seed: int, fraction: float):
    """fn(x, drawn) -> x with `fraction` of the rows replaced by `drawn`'s, both (B, 784)."""
    def swap(x, drawn):
        use = tf.random.uniform((tf.shape(x)[0], 1), seed=seed + 1) < fraction
        return tf.where(use, drawn, x)

    return swap


def simulated_drawings(images: np.ndarray, seed: int = 1000, processes: int = 2) -> np.ndarray:
    """(N, 28, 28) uint8 digits -> (N, 28, 28) uint8: each drawn by the harness's mouse on
    the 280x280 canvas and put through the Draw page's MNIST steps (~7 ms a digit)."""
    from multiprocessing import Pool

    chunks = [(images[start:start + 1000], seed + start) for start in range(0, len(images), 1000)]
    with Pool(processes) as pool:
        return np.concatenate(pool.starmap(_simulate_chunk, chunks))


def _simulate_chunk(images: np.ndarray, seed: int) -> np.ndarray:
    out = []
    for image, drawing in zip(images, drawn_digits(images, seed=seed), strict=True):
        try:
            out.append(mnist_steps(drawing.render()).centered)
        except EmptyDrawing:  # a digit too faint to trace: keep MNIST's own
            out.append(image)
    return np.stack(out)


def even_pen(images: np.ndarray, width: float, upscale: int = 2) -> np.ndarray:
    """(N, 28, 28) float in [0, 1] -> the same digits redrawn along their skeletons (thinned
    at `upscale` x 28) with one anti-aliased round pen `width` px wide at 28x28."""
    n = len(images)
    big = images.repeat(upscale, axis=1).repeat(upscale, axis=2) if upscale > 1 else images
    skeleton = thin(big >= 0.5)
    size, radius = big.shape[1], width * upscale / 2
    reach = int(np.ceil(radius + 1))
    padded = np.pad(skeleton, ((0, 0), (reach, reach), (reach, reach)))
    distance = np.full(skeleton.shape, np.inf, np.float32)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            shifted = padded[:, reach + dy:reach + dy + size, reach + dx:reach + dx + size]
            distance[shifted] = np.minimum(distance[shifted], np.hypot(dy, dx))
    drawn = np.clip(radius + 0.5 - distance, 0.0, 1.0)
    return drawn.reshape(n, IMAGE, upscale, IMAGE, upscale).mean(axis=(2, 4)).astype(np.float32)


AUGMENTATIONS: dict[str, Callable] = {
    "affine": affine,
    "distort": distort,
    "keras_affine": keras_affine,
    "thickness": thickness,
}

ELASTIC = {"elastic": 2.0, "grid": 3}
MILD_AFFINE = {"rotate": 0.2, "scale": 0.1, "shear": 0.2, "squeeze": 0.1, "shift": 1.0}

RECIPES: dict[str, Recipe] = {
    "mlp": Recipe(MLP),
    "mlp_keras_affine": Recipe(MLP, augment="keras_affine"),
    "mlp_thickness": Recipe(MLP, augment="thickness"),
    "mlp_elastic": Recipe(MLP, augment="distort", options=ELASTIC),
    "mlp_affine": Recipe(MLP, augment="distort", options=MILD_AFFINE),
    "mlp_elastic_affine": Recipe(MLP, augment="distort", options={**ELASTIC, **MILD_AFFINE}),
    "mlp_elastic_affine_gamma": Recipe(MLP, augment="distort",
                                       options={**ELASTIC, **MILD_AFFINE, "gamma": 0.7}),
    "mlp_elastic_affine_8": Recipe(MLP, epochs=8, augment="distort",
                                   options={**ELASTIC, **MILD_AFFINE}),
    "mlp_elastic3_affine": Recipe(MLP, augment="distort",
                                  options={**ELASTIC, "elastic": 3.0, **MILD_AFFINE}),
    "cnn_small_elastic_affine": Recipe(CNN_SMALL, augment="distort",
                                       options={**ELASTIC, **MILD_AFFINE}),
    "cnn_small_elastic_affine_gamma": Recipe(CNN_SMALL, augment="distort",
                                             options={**ELASTIC, **MILD_AFFINE, "gamma": 0.7}),
    "mlp_pen_elastic_affine": Recipe(MLP, augment="distort", pen=0.5,
                                     options={**ELASTIC, **MILD_AFFINE}),
    "mlp_pen": Recipe(MLP, pen=0.5),
    "mlp_pen_elastic_affine_8": Recipe(MLP, epochs=8, augment="distort", pen=0.5,
                                       options={**ELASTIC, **MILD_AFFINE}),
    "mlp_pen07_elastic_affine": Recipe(MLP, augment="distort", pen=0.7,
                                       options={**ELASTIC, **MILD_AFFINE}),
    "mlp_pen03_elastic_affine": Recipe(MLP, augment="distort", pen=0.3,
                                       options={**ELASTIC, **MILD_AFFINE}),
    "cnn_small_pen_elastic_affine": Recipe(CNN_SMALL, augment="distort", pen=0.5,
                                           options={**ELASTIC, **MILD_AFFINE}),
    "mlp_fastpen_affine": Recipe(MLP, augment="affine", pen=0.5,
                                 options={**MILD_AFFINE, "fast_pen": True}),
    "mlp_fastpen_elastic_affine": Recipe(MLP, augment="distort", pen=0.5,
                                         options={**ELASTIC, **MILD_AFFINE, "fast_pen": True}),
    "mlp_tfaffine": Recipe(MLP, augment="affine", options=MILD_AFFINE),
    "mlp_tfaffine_4": Recipe(MLP, epochs=4, augment="affine", options=MILD_AFFINE),
    "mlp_tfaffine_8": Recipe(MLP, epochs=8, augment="affine", options=MILD_AFFINE),
    "mlp_fastpen_affine_8": Recipe(MLP, epochs=8, augment="affine", pen=0.5,
                                   options={**MILD_AFFINE, "fast_pen": True}),
    "mlp_fastpen_affine_10": Recipe(MLP, epochs=10, augment="affine", pen=0.5,
                                    options={**MILD_AFFINE, "fast_pen": True}),
    "mlp_fastpen_affine_8_smooth": Recipe(MLP, epochs=8, augment="affine", pen=0.5,
                                          options={**MILD_AFFINE, "fast_pen": True},
                                          label_smoothing=0.1),
    "mlp_dropout_fastpen_affine_8": Recipe(MLP_DROPOUT, epochs=8, augment="affine", pen=0.5,
                                           options={**MILD_AFFINE, "fast_pen": True}),
    "cnn_small_fastpen_affine": Recipe(CNN_SMALL, augment="affine", pen=0.5,
                                       options={**MILD_AFFINE, "fast_pen": True}),
    "mlp_simulated_affine": Recipe(MLP, augment="affine", simulated=0.5, options=MILD_AFFINE),
    "mlp_simulated03_affine": Recipe(MLP, augment="affine", simulated=0.3, options=MILD_AFFINE),
    "mlp_simulated_affine_8": Recipe(MLP, epochs=8, augment="affine", simulated=0.5,
                                     options=MILD_AFFINE),
    "mlp_even_pen": Recipe(MLP, even_pen=2.5),
    "mlp_even_pen_affine": Recipe(MLP, augment="affine", even_pen=2.5, options=MILD_AFFINE),
    "cnn_small": Recipe(CNN_SMALL),
    "keras_cnn_elastic_affine_10": Recipe(KERAS_CNN, epochs=10, augment="distort",
                                          options={**ELASTIC, **MILD_AFFINE}),
    "cnn_small_elastic": Recipe(CNN_SMALL, augment="distort", options=ELASTIC),
    "lenet": Recipe(LENET),
    "lenet_elastic": Recipe(LENET, augment="distort", options=ELASTIC),
}


# ---- the worker's pipeline, mirrored ----

def precision() -> str:
    """What `worker.resolve_precision` picks for config.precision == "auto" on a CPU."""
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"


def build(keras, layers: list[Layer], dtype_policy: str, name: str = "model"):
    built = [getattr(keras.layers, layer.kind)(**layer.kwargs, dtype=dtype_policy) for layer in layers]
    if dtype_policy != "float32":
        built[-1] = keras.layers.Dense(**layers[-1].kwargs, dtype="float32")
    return keras.Sequential([keras.Input(shape=(PIXELS,)), *built], name=name)


def dataset(tf, x_train, y_train, recipe: Recipe, seed: int, skeletons=None, simulated=None):
    n, batch = len(x_train), recipe.batch_size
    steps = -(-n // batch)
    x_all, y_all = tf.constant(x_train), tf.constant(y_train)
    pen = pen_redraw_fast if recipe.options.get("fast_pen") else pen_redraw
    redraw = pen(tf, seed + 50, recipe.pen) if recipe.pen else None
    s_all = tf.constant(skeletons.reshape(n, PIXELS).astype(np.float32)) if redraw else None
    swap = swap_simulated(tf, seed + 60, recipe.simulated) if recipe.simulated else None
    d_all = tf.constant(normalize(flatten(simulated))) if swap else None
    repeats = -(-steps * batch // n)

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.reshape(tf.tile(order, [repeats])[: steps * batch], (steps, batch))

    options = {k: v for k, v in recipe.options.items() if k != "fast_pen"}
    augment = AUGMENTATIONS[recipe.augment](tf, seed, **options) if recipe.augment else None

    def gather(indices):
        x = tf.gather(x_all, indices)
        if redraw:
            x = redraw(x, tf.gather(s_all, indices))
        if swap:
            x = swap(x, tf.gather(d_all, indices))
        return (augment(x) if augment else x), tf.gather(y_all, indices)

    return (tf.data.Dataset.range(recipe.epochs).map(epoch_batches).unbatch()
            .map(gather).prefetch(2)), steps


def skeletons_of(x_train_images) -> tuple[np.ndarray, float]:
    """(N, 28, 28) uint8 -> ((N, 28, 28) bool skeletons of the ink >= 128, seconds taken)."""
    start = time.perf_counter()
    skeletons = thin(x_train_images >= 128)
    return skeletons, time.perf_counter() - start


def model_input(x: np.ndarray, recipe: Recipe) -> np.ndarray:
    """(N, 784) inputs as the recipe's model sees them."""
    if not recipe.even_pen:
        return x
    return flatten(even_pen(x.reshape(-1, IMAGE, IMAGE), recipe.even_pen))


def fit(recipe: Recipe, data, seed: int = 0, skeletons=None, simulated=None):
    """Train like the worker; returns (float32 Keras model, fit seconds)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    x_train, y_train = normalize(flatten(data.x_train)), categorize(data.y_train)
    x_train = model_input(x_train, recipe)
    train_data, steps = dataset(tf, x_train, y_train, recipe, seed, skeletons, simulated)
    total = recipe.epochs * steps
    model = build(keras, recipe.layers, precision())
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0, decay_steps=total, warmup_target=recipe.learning_rate,
            warmup_steps=max(1, total // 10))),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=["accuracy"])
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(train_data, epochs=recipe.epochs, steps_per_epoch=steps, shuffle=False, verbose=0)
    seconds = time.perf_counter() - start
    # CPU seconds of this process: steadier than wall time on a machine shared with others.
    print(f"  {recipe.epochs} epochs: {seconds:.1f} s wall, {time.process_time() - cpu:.1f} CPU s",
          flush=True)
    served = build(keras, recipe.layers, "float32")
    served.set_weights(model.get_weights())
    return served, seconds


def notebook_fit_seconds(data) -> float:
    """The notebook's own fit of the same MLP (batch 32, default RMSprop, float32, numpy
    inputs, 5 epochs): the reference for "5x the notebook's fit speed"."""
    import keras

    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("float32")
    model = build(keras, MLP, "float32")
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"])
    x_train, y_train = normalize(flatten(data.x_train)), categorize(data.y_train)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(x_train, y_train, epochs=5, verbose=0)
    print(f"  notebook: {time.process_time() - cpu:.1f} CPU s", flush=True)
    return time.perf_counter() - start


def export_onnx(model, path: Path) -> Path:
    model.predict(np.zeros((1, PIXELS), np.float32), verbose=0)  # export needs a called model
    model.export(path, format="onnx", verbose=False)
    return path


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before the first Keras import
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+", choices=sorted(RECIPES))
    parser.add_argument("--count", type=int, default=1000, help="drawn digits to test on")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipes' epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--notebook", action="store_true",
                        help="also time the notebook's fit first, for the speed-up column")
    parser.add_argument("--save-dir", type=Path, default=None,
                        help="keep each recipe's model.onnx in SAVE_DIR/RECIPE.onnx")
    args = parser.parse_args(argv)

    data = read_mnist()
    drawn = drawn_set(data.x_valid, data.y_valid, args.count)
    x_steps, x_naive = inputs(drawn, steps_input), inputs(drawn, naive_input)
    x_valid = normalize(flatten(data.x_valid))
    print(f"precision {precision()}; {args.count} drawn digits")
    skeletons = None
    if any(RECIPES[name].pen for name in args.recipes):
        skeletons, seconds = skeletons_of(data.x_train)
        print(f"skeletons of x_train (once per training, before the fit): {seconds:.1f} s")
    simulated = None
    if any(RECIPES[name].simulated for name in args.recipes):
        start = time.perf_counter()
        simulated = simulated_drawings(data.x_train)
        print(f"x_train drawn by the harness's mouse (once): {time.perf_counter() - start:.0f} s")
    notebook = notebook_fit_seconds(data) if args.notebook else None
    if notebook:
        print(f"notebook fit (batch 32, RMSprop, float32, 5 epochs): {notebook:.1f} s")
    print("| recipe | epochs | fit s | MNIST valid | drawn (steps) | drawn (naive) | gap |")
    print("|---|---|---|---|---|---|---|")
    for name in args.recipes:
        recipe = RECIPES[name]
        if args.epochs:
            recipe = Recipe(**{**recipe.__dict__, "epochs": args.epochs})
        model, seconds = fit(recipe, data, args.seed, skeletons, simulated)
        with tempfile.TemporaryDirectory() as folder:
            path = (args.save_dir or Path(folder)) / f"{name}.onnx"
            path.parent.mkdir(parents=True, exist_ok=True)
            predict = Classifier(export_onnx(model, path)).predict_proba
            valid = accuracy(predict, model_input(x_valid, recipe), data.y_valid)
            steps = accuracy(predict, model_input(x_steps, recipe), drawn.labels)
            naive = accuracy(predict, model_input(x_naive, recipe), drawn.labels)
        speed = f" ({notebook / seconds:.1f}x the notebook)" if notebook else ""
        print(f"| {name} | {recipe.epochs} | {seconds:.1f}{speed} | {valid:.4f} | {steps:.4f} | "
              f"{naive:.4f} | {valid - steps:+.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
