"""The models as plain data: one layer list drives the Keras build, the summary and the code.

Nothing here imports TensorFlow or Keras, so the app can show a model's layers, shapes,
parameter counts and the equivalent notebook code without loading them. The worker turns
the same layer list into a `keras.Sequential` (`mnist_core.training.fit.build_model`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mnist_core.config import TrainConfig
from mnist_core.data import IMAGE_SIZE, NUM_CLASSES, NUM_PIXELS


@dataclass(frozen=True)
class Layer:
    """One Keras layer: its class in `keras.layers` and its keyword arguments."""

    kind: str
    kwargs: dict = field(default_factory=dict)


# Moving statistics of a batch normalisation: an epoch is only ~120 steps of batch 512, too
# few for Keras's default momentum (0.99) to forget their starting values.
NORM_MOMENTUM = 0.9


def _conv_block(filters: int, pool: bool) -> list[Layer]:
    """3x3 convolution [-> 2x2 max pooling] -> batch normalisation -> ReLU."""
    return [
        Layer("Conv2D", {"filters": filters, "kernel_size": (3, 3), "use_bias": False}),
        *([Layer("MaxPooling2D", {"pool_size": (2, 2)})] if pool else []),
        Layer("BatchNormalization", {"momentum": NORM_MOMENTUM}),
        Layer("Activation", {"activation": "relu"}),
    ]


# Every model takes the flattened, normalized image (N, 784) float32, as the notebook does,
# and returns (N, 10) softmax probabilities; the CNN reshapes back to 28x28x1 first.
ARCHITECTURES: dict[str, list[Layer]] = {
    "seed_mlp": [
        Layer("Dense", {"units": 512, "activation": "relu"}),
        Layer("Dense", {"units": 512, "activation": "relu"}),
        Layer("Dense", {"units": NUM_CLASSES, "activation": "softmax"}),
    ],
    "cnn": [
        Layer("Reshape", {"target_shape": (IMAGE_SIZE, IMAGE_SIZE, 1)}),
        Layer("Conv2D", {"filters": 32, "kernel_size": (3, 3), "activation": "relu"}),
        Layer("MaxPooling2D", {"pool_size": (2, 2)}),
        Layer("Conv2D", {"filters": 64, "kernel_size": (3, 3), "activation": "relu"}),
        Layer("MaxPooling2D", {"pool_size": (2, 2)}),
        Layer("Flatten"),
        Layer("Dropout", {"rate": 0.5}),
        Layer("Dense", {"units": NUM_CLASSES, "activation": "softmax"}),
    ],
    # The CNN for a live demo: ~99.3% in 4 epochs, a fit of 15-20 s on 2 CPU cores
    # (benchmarks/RESULTS.md, "A CNN in 20 seconds"). Narrow convolutions (16, 32,
    # 64), each followed by batch normalisation so that a large learning rate stays stable;
    # pooling before the normalisation, on a quarter of the values (half the time of
    # normalising first, and more accurate here); no bias before a normalisation.
    "fast_cnn": [
        Layer("Reshape", {"target_shape": (IMAGE_SIZE, IMAGE_SIZE, 1)}),
        *_conv_block(16, pool=True),
        *_conv_block(32, pool=True),
        *_conv_block(64, pool=False),
        Layer("Flatten"),
        Layer("Dense", {"units": 128, "activation": "relu"}),
        Layer("Dense", {"units": NUM_CLASSES, "activation": "softmax"}),
    ],
}


# TrainConfig.optimizer -> its class in keras.optimizers
OPTIMIZER_CLASSES = {"adam": "Adam", "rmsprop": "RMSprop", "sgd": "SGD"}


def layers_of(model: str) -> list[Layer]:
    return ARCHITECTURES[model]


def summary(model: str) -> list[dict]:
    """Rows of `model.summary()`: layer, output shape (batch first, None) and parameters."""
    shape: tuple = (NUM_PIXELS,)
    rows = []
    counts: dict[str, int] = {}
    for layer in layers_of(model):
        shape, params = _output_shape_and_params(layer, shape)
        name = _keras_name(layer.kind)
        counts[name] = counts.get(name, 0) + 1
        rows.append({
            "layer": name if counts[name] == 1 else f"{name}_{counts[name] - 1}",
            "type": layer.kind,
            "output_shape": (None, *shape),
            "params": params,
        })
    return rows


def count_params(model: str) -> int:
    return sum(row["params"] for row in summary(model))


def _keras_name(kind: str) -> str:
    # Keras names a layer by its class in snake case: Conv2D -> conv2d, MaxPooling2D ->
    # max_pooling2d.
    out = ""
    for i, char in enumerate(kind):
        if char.isupper() and i and not kind[i - 1].isupper() and not kind[i - 1].isdigit():
            out += "_"
        out += char.lower()
    return out


def _output_shape_and_params(layer: Layer, shape: tuple) -> tuple[tuple, int]:
    kw = layer.kwargs
    if layer.kind == "Dense":
        return (*shape[:-1], kw["units"]), (shape[-1] + 1) * kw["units"]
    if layer.kind == "Reshape":
        return tuple(kw["target_shape"]), 0
    if layer.kind == "Conv2D":
        (kh, kw_), (h, w, c) = kw["kernel_size"], shape
        bias = 1 if kw.get("use_bias", True) else 0
        return (h - kh + 1, w - kw_ + 1, kw["filters"]), (kh * kw_ * c + bias) * kw["filters"]
    if layer.kind == "BatchNormalization":
        # gamma, beta (trained) and the moving mean and variance (not), as Keras counts them
        return shape, 4 * shape[-1]
    if layer.kind == "MaxPooling2D":
        (ph, pw), (h, w, c) = kw["pool_size"], shape
        return (h // ph, w // pw, c), 0
    if layer.kind == "Flatten":
        size = 1
        for dim in shape:
            size *= dim
        return (size,), 0
    if layer.kind in ("Dropout", "Activation"):
        return shape, 0
    raise ValueError(f"unknown layer kind {layer.kind!r}")


def _format_kwargs(kwargs: dict) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in kwargs.items())


def optimizer_code(config: TrainConfig) -> str:
    """The Python expression that builds this config's optimizer (and its LR schedule)."""
    name = OPTIMIZER_CLASSES[config.optimizer]
    if not config.lr_schedule:
        return f"keras.optimizers.{name}(learning_rate={config.learning_rate!r})"
    total = config.epochs * config.steps_per_epoch()
    return (
        f"keras.optimizers.{name}(\n"
        f"    learning_rate=keras.optimizers.schedules.CosineDecay(\n"
        f"        initial_learning_rate=0.0, decay_steps={total},\n"
        f"        warmup_target={config.learning_rate!r}, warmup_steps={warmup_steps(config)},\n"
        f"    )\n"
        f")"
    )


def warmup_steps(config: TrainConfig) -> int:
    """A tenth of the run, so large early steps do not blow up the fresh weights."""
    return max(1, config.epochs * config.steps_per_epoch() // 10)


def _subset_code(config: TrainConfig) -> str:
    if config.train_size >= 60000:
        return ""
    return (f"\n# Train on a random subset of {config.train_size} images\n"
            f"rng = np.random.default_rng({config.seed})\n"
            f"keep = rng.permutation(len(x_train))[:{config.train_size}]\n"
            f"x_train, y_train = x_train[keep], y_train[keep]\n")


def _augment_code(config: TrainConfig) -> str:
    """The layers a learner would add for the app's augmentations (the app does them in the
    input pipeline)."""
    pen = ("    # The app also redraws half of each batch with a pen along each digit's\n"
           "    # skeleton (mnist_core/skeleton.py), as a mouse draws.\n"
           if config.pen_strokes else "")
    augment = (
        "    # Augmentation, active only while training: a mild rotation, scale, slant\n"
        "    # and shift (the app does them in one transform per image)\n"
        "    layers.Reshape((28, 28, 1)),\n"
        "    layers.RandomRotation(0.032, fill_mode='constant'),\n"
        "    layers.RandomZoom(0.1, fill_mode='constant'),\n"
        "    layers.RandomShear(0.2, 0.0, fill_mode='constant'),\n"
        "    layers.RandomTranslation(1 / 28, 1 / 28, fill_mode='constant'),\n"
        "    layers.Flatten(),\n" if config.augment else "")
    return pen + augment


def keras_code(config: TrainConfig) -> str:
    """The plain Keras lines a learner would type in the notebook for these settings."""
    layer_lines = "\n".join(
        f"    layers.{layer.kind}({_format_kwargs(layer.kwargs)}),"
        for layer in layers_of(config.model)
    )
    subset = _subset_code(config)
    validation = ",\n    validation_data=(x_valid, y_valid)," if config.validation else ","
    layer_lines = _augment_code(config) + layer_lines
    precision = {
        "float32": "",
        "mixed_bfloat16": 'keras.mixed_precision.set_global_policy("mixed_bfloat16")\n',
        "auto": "# On CPUs with bfloat16 instructions the app trains in mixed precision:\n"
                '# keras.mixed_precision.set_global_policy("mixed_bfloat16")\n',
    }[config.precision]
    optimizer = optimizer_code(config).replace("\n", "\n    ")
    return f'''import keras
import numpy as np
from keras import layers

keras.utils.set_random_seed({config.seed})
{precision}
# The data, split between train and validation sets
(x_train, y_train), (x_valid, y_valid) = keras.datasets.mnist.load_data()
{subset}
# Flatten, normalize, categorize
x_train = x_train.reshape(len(x_train), 784).astype("float32") / 255
x_valid = x_valid.reshape(len(x_valid), 784).astype("float32") / 255
y_train = keras.utils.to_categorical(y_train, 10)
y_valid = keras.utils.to_categorical(y_valid, 10)

# The model
model = keras.Sequential([
    keras.Input(shape=(784,)),
{layer_lines}
])
model.summary()

model.compile(
    optimizer={optimizer},
    loss="categorical_crossentropy",
    metrics=["accuracy"],
)
history = model.fit(
    x_train, y_train,
    epochs={config.epochs},
    batch_size={config.batch_size}{validation}
)
'''
