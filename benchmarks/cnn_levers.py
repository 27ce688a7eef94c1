"""Which levers make a CNN reach 99.3% of MNIST validation accuracy in 20 s of CPU fit.

    .venv/bin/python -m benchmarks.cnn_levers NAME [NAME ...] [--seeds 0 1 2] [--precision float32]

Each lever set (a name of LEVERS) is fitted in this process through the worker's own input
pipeline (`mnist_core.training.fit.training_dataset`: batches gathered in the graph, one
shuffle op per epoch, the worker's mild affine augmentation when asked) and validated on
x_valid after every epoch, as the worker does. Prints per run the fit seconds, the
validation accuracy after each epoch, the time the fit first reached 99.3% and the load
average, so rows of one invocation compare as ratios on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mnist_core.config import TrainConfig  # noqa: E402
from mnist_core.data import IMAGE_SIZE, NUM_CLASSES  # noqa: E402
from mnist_core.models import Layer, layers_of  # noqa: E402

TARGET = 0.993  # the goal


def conv(filters: int, size: int = 3, bn: bool = True, padding: str = "valid") -> list[Layer]:
    """A conv block: Conv (no bias before BN) -> BN -> ReLU, or Conv with ReLU."""
    if not bn:
        return [Layer("Conv2D", {"filters": filters, "kernel_size": (size, size),
                                 "padding": padding, "activation": "relu"})]
    return [Layer("Conv2D", {"filters": filters, "kernel_size": (size, size),
                             "padding": padding, "use_bias": False}),
            Layer("BatchNormalization"), Layer("Activation", {"activation": "relu"})]


RESHAPE = Layer("Reshape", {"target_shape": (IMAGE_SIZE, IMAGE_SIZE, 1)})
POOL = Layer("MaxPooling2D", {"pool_size": (2, 2)})
HEAD = [Layer("Flatten"), Layer("Dense", {"units": NUM_CLASSES, "activation": "softmax"})]


def arch(*widths: int, bn: str = "", size: int = 3, dense: int = 0,
         momentum: float = 0.9, last: int = 0) -> list[Layer]:
    """Conv blocks of `widths`, each with 2x2 max pooling, then a softmax layer.

    bn: "" none (Conv with ReLU, then pool), "conv" (Conv -> BN -> ReLU -> pool) or "pool"
    (Conv -> pool -> BN -> ReLU: the same function, max pooling commutes with a per-channel
    increasing map, at a quarter of the BN's work).
    """
    layers = [RESHAPE]
    for width in widths:
        kernel = {"filters": width, "kernel_size": (size, size)}
        norm = [Layer("BatchNormalization", {"momentum": momentum}),
                Layer("Activation", {"activation": "relu"})]
        if not bn:
            layers += [Layer("Conv2D", {**kernel, "activation": "relu"}), POOL]
        elif bn == "conv":
            layers += [Layer("Conv2D", {**kernel, "use_bias": False}), *norm, POOL]
        else:
            layers += [Layer("Conv2D", {**kernel, "use_bias": False}), POOL, *norm]
    if last:  # one more 3x3 conv on the pooled map, without pooling
        layers += [Layer("Conv2D", {"filters": last, "kernel_size": (3, 3), "use_bias": not bn,
                                    "activation": "linear" if bn else "relu"})]
        if bn:
            layers += [Layer("BatchNormalization", {"momentum": momentum}),
                       Layer("Activation", {"activation": "relu"})]
    layers.append(Layer("Flatten"))
    if dense:
        layers.append(Layer("Dense", {"units": dense, "activation": "relu"}))
    return layers + HEAD[1:]


@dataclass(frozen=True)
class Levers:
    layers: list[Layer]
    config: TrainConfig
    label_smoothing: float = 0.0
    ema: bool = False  # keep an exponential average of the weights; use it at the end


def without_first_norm(layers: list[Layer]) -> list[Layer]:
    """The first conv block as Conv (with bias) -> pool -> ReLU: no batch normalisation on
    its 13x13x16 map, the largest the network normalises."""
    first = next(i for i, layer in enumerate(layers) if layer.kind == "Conv2D")
    conv = Layer("Conv2D", {**layers[first].kwargs, "use_bias": True})
    return [*layers[:first], conv, POOL, Layer("Activation", {"activation": "relu"}),
            *layers[first + 4:]]


BASE = TrainConfig(model="cnn", epochs=5, batch_size=512, learning_rate=0.002,
                   precision="float32")
LR5 = replace(BASE, learning_rate=0.005)
LR10 = replace(BASE, learning_rate=0.01)
LEVERS: dict[str, Levers] = {
    "keras_cnn": Levers(layers_of("cnn"), BASE),
    "keras_cnn_15": Levers(layers_of("cnn"), replace(BASE, epochs=15, batch_size=128)),
    "half": Levers(arch(16, 32), BASE),
    "half_lr5": Levers(arch(16, 32), LR5),
    "half_lr10": Levers(arch(16, 32), replace(BASE, learning_rate=0.01)),
    "half_dense": Levers(arch(16, 32, dense=128), LR5),
    "half_bnconv": Levers(arch(16, 32, bn="conv"), LR5),
    "half_bnpool": Levers(arch(16, 32, bn="pool"), LR5),
    "half_bnpool_lr10": Levers(arch(16, 32, bn="pool"), replace(BASE, learning_rate=0.01)),
    "half_bnpool_dense": Levers(arch(16, 32, bn="pool", dense=128), LR5),
    "w24_48_bnpool": Levers(arch(24, 48, bn="pool"), LR5),
    "w32_64_bnpool": Levers(arch(32, 64, bn="pool"), LR5),
    "half_bnpool_last64": Levers(arch(16, 32, bn="pool", last=64), LR5),
    "w24_48_bnpool_last96": Levers(arch(24, 48, bn="pool", last=96), LR5),
    "l64_lr10": Levers(arch(16, 32, bn="pool", last=64), LR10),
    "l64_dense": Levers(arch(16, 32, bn="pool", last=64, dense=128), LR5),
    "l64_ls": Levers(arch(16, 32, bn="pool", last=64), LR5, label_smoothing=0.1),
    "l64_ema": Levers(arch(16, 32, bn="pool", last=64), LR5, ema=True),
    "l64_b256": Levers(arch(16, 32, bn="pool", last=64), replace(LR5, batch_size=256)),
    "l64_aug8": Levers(arch(16, 32, bn="pool", last=64), replace(LR5, epochs=8, augment=True)),
    "l64_8": Levers(arch(16, 32, bn="pool", last=64), replace(LR5, epochs=8)),
    "l64_dense_lr10": Levers(arch(16, 32, bn="pool", last=64, dense=128), LR10),
    "l64_dense_4": Levers(arch(16, 32, bn="pool", last=64, dense=128), replace(LR5, epochs=4)),
    "l64_dense_6": Levers(arch(16, 32, bn="pool", last=64, dense=128), replace(LR5, epochs=6)),
    "l64_dense_lr2": Levers(arch(16, 32, bn="pool", last=64, dense=128), BASE),
    "half_bnpool_5x5": Levers(arch(16, 32, bn="pool", size=5), LR5),
    # The recipe (fast_cnn: 4 epochs, mild affine), and it without its first normalisation
    "fast_cnn": Levers(layers_of("fast_cnn"), replace(LR5, epochs=4, augment=True)),
    "fast_cnn_first_unnormed": Levers(without_first_norm(layers_of("fast_cnn")),
                                      replace(LR5, epochs=4, augment=True)),
}


def build(levers: Levers, precision: str):
    import keras

    layers = [getattr(keras.layers, layer.kind)(**layer.kwargs, dtype=precision)
              for layer in levers.layers]
    if precision != "float32":
        layers[-1] = keras.layers.Dense(**levers.layers[-1].kwargs, dtype="float32")
    return keras.Sequential([keras.Input(shape=(IMAGE_SIZE * IMAGE_SIZE,)), *layers])


def epoch_clock():
    """A Keras callback: wall seconds since the fit began at each epoch's end (validation
    included), in `.ends`."""
    import keras

    class Clock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start, self.ends = time.perf_counter(), []

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(time.perf_counter() - self.start)

    return Clock()


def run(name: str, seed: int, precision: str) -> dict:
    import keras

    from mnist_core.training import fit

    levers = LEVERS[name]
    config = replace(levers.config, seed=seed, precision=precision)
    keras.utils.set_random_seed(seed)
    data = fit.prepare_data(config)
    model = build(levers, "float32" if precision == "float32" else "mixed_bfloat16")
    optimizer = fit.build_optimizer(config)
    if levers.ema:
        optimizer = type(optimizer).from_config({**optimizer.get_config(), "use_ema": True,
                                                 "ema_momentum": 0.99})
    model.compile(optimizer=optimizer, metrics=["accuracy"],
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=levers.label_smoothing))
    clock = epoch_clock()
    load = os.getloadavg()[0]
    started, cpu = time.perf_counter(), time.process_time()
    history = model.fit(fit.training_dataset(data.x_train, data.y_train, config),
                        epochs=config.epochs, steps_per_epoch=config.steps_per_epoch(),
                        validation_data=(data.x_valid, data.y_valid),
                        validation_batch_size=fit.VALIDATION_BATCH, callbacks=[clock],
                        verbose=0)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    accuracies = history.history["val_accuracy"]
    final = float(model.evaluate(data.x_valid, data.y_valid, batch_size=fit.VALIDATION_BATCH,
                                 verbose=0)[1])  # after EMA's swap, if any
    reached = next((t for t, a in zip(clock.ends, accuracies, strict=True) if a >= TARGET), None)
    return {"name": name, "seed": seed, "seconds": seconds, "final": final,
            "accuracies": accuracies, "ends": clock.ends, "reached": reached, "load": load, "cpu": cpu,
            "params": model.count_params()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=sorted(LEVERS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16"))
    args = parser.parse_args(argv)
    for seed in args.seeds:
        for name in args.names:
            r = run(name, seed, args.precision)
            curve = " ".join(f"{a * 100:.2f}@{t:.0f}s" for a, t in
                             zip(r["accuracies"], r["ends"], strict=True))
            reached = f"{r['reached']:.1f} s" if r["reached"] else "never"
            print(f"{name:16s} seed {seed}: fit {r['seconds']:5.1f} s ({r['cpu']:5.1f} CPU s)  "
                  f"final {r['final']:.4f}  99.3% at {reached}  params {r['params']}  "
                  f"load {r['load']:.2f}  [{curve}]",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
