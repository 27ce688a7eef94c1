"""Where a training step's time goes, layer by layer, and what an epoch adds around the steps.

    .venv/bin/python -m benchmarks.step_costs [fast_cnn seed_mlp ...] [--precision float32]

For each model, in this process (run it at the worker's priority on a quiet machine), on a
batch of real MNIST images of the recipe's size:
- every layer's forward pass and its backward pass (the gradients of its weights, and of its
  input when a layer below has weights to train), each in a `tf.function` of its own on the
  tensor that layer sees in training, median of many calls;
- the optimizer's update of all the weights (`optimizer.apply`);
- one whole compiled training step, as `model.fit` runs it, to compare with the parts' sum;
- per epoch: the input pipeline's batches without and with each augmentation (CPU seconds:
  the pipeline's work competes with the steps for the 2 cores), and one validation pass.

Prints milliseconds a step and each part's share of the sum, so the rows of one run
compare as ratios; the CPU's name and the load average are printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mnist_core.config import TrainConfig  # noqa: E402

CALLS = 40


def median_ms(fn, calls: int = CALLS) -> float:
    """Median wall milliseconds of fn() after two warm-up calls (tracing, first run)."""
    fn()
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def layer_functions(layer, needs_input_grad: bool):
    """(forward, forward and backward) of one layer, each a `tf.function` of its input."""
    import tensorflow as tf

    @tf.function
    def forward(t):
        return layer(t, training=True)

    @tf.function
    def both(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = layer(t, training=True)
        sources = ([t] if needs_input_grad else []) + list(layer.trainable_weights)
        if not sources:
            return [y]
        return tape.gradient(y, sources, output_gradients=tf.ones_like(y))

    return forward, both


def layer_rows(model, x) -> list[tuple[str, str, float, float]]:
    """(layer, output shape, forward ms, backward ms) for each layer, on input batch x."""
    rows = []
    trained_below = False
    for layer in model.layers:
        forward, both = layer_functions(layer, needs_input_grad=trained_below)
        out = forward(x)
        fwd = median_ms(lambda f=forward, t=x: f(t).numpy())
        total = median_ms(lambda f=both, t=x: [g.numpy() for g in f(t)])
        shape = "x".join(str(d) for d in out.shape[1:])
        rows.append((layer.name, shape, fwd, max(0.0, total - fwd)))
        trained_below = trained_below or bool(layer.trainable_weights)
        x = out
    return rows


def optimizer_ms(model, config: TrainConfig) -> float:
    import tensorflow as tf

    from mnist_core.training import fit

    optimizer = fit.build_optimizer(config)
    variables = model.trainable_variables
    optimizer.build(variables)
    grads = [tf.random.normal(v.shape, stddev=1e-3, dtype=v.dtype) for v in variables]

    @tf.function
    def update():
        optimizer.apply(grads, variables)

    return median_ms(update)


def whole_step_ms(model, config: TrainConfig, x, y) -> float:
    import tensorflow as tf

    from mnist_core.training import fit

    model.compile(optimizer=fit.build_optimizer(config), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    batches = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(batches, steps_per_epoch=3, epochs=1, verbose=0)  # trace and warm up
    start = time.perf_counter()
    model.fit(batches, steps_per_epoch=CALLS, epochs=1, verbose=0)
    return 1000 * (time.perf_counter() - start) / CALLS


def pipeline_cpu_seconds(data, config: TrainConfig) -> dict[str, float]:
    """CPU seconds of one epoch's batches from the worker's pipeline, per augmentation."""
    from mnist_core.training import fit

    seconds = {}
    for label, augment, pen in (("plain", False, False), ("+ affine", True, False),
                                ("+ affine + pen strokes", True, True)):
        one_epoch = replace(config, epochs=1, augment=augment, pen_strokes=pen)
        batches = fit.training_dataset(data.x_train, data.y_train, one_epoch)
        start = time.process_time()
        for _ in batches:
            pass
        seconds[label] = time.process_time() - start
    return seconds


def report(name: str, precision: str) -> None:
    import keras

    from mnist_core.devices import cpu_label
    from mnist_core.training import fit

    config = replace(TrainConfig.recipe(name), precision=precision)
    data = fit.prepare_data(config)
    keras.utils.set_random_seed(0)
    x = data.x_train[: config.batch_size]
    y = data.y_train[: config.batch_size]
    model = fit.build_model(name, precision, fused=True)  # as the worker trains it
    model.build((None, x.shape[1]))
    rows = layer_rows(model, x)
    update = optimizer_ms(model, config)
    parts = sum(f + b for _, _, f, b in rows) + update
    step = whole_step_ms(model, config, x, y)
    print(f"\n{name}, {precision}, batch {config.batch_size}, {cpu_label()}, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"  {'layer':24s} {'output':>10s} {'forward ms':>11s} {'backward ms':>12s} {'share':>6s}")
    for layer, shape, fwd, bwd in rows:
        print(f"  {layer:24s} {shape:>10s} {fwd:11.2f} {bwd:12.2f} {100 * (fwd + bwd) / parts:5.1f}%")
    print(f"  {'optimizer update':35s} {update:11.2f} {'':12s} {100 * update / parts:5.1f}%")
    print(f"  sum of the parts {parts:.1f} ms; one whole training step {step:.1f} ms")
    steps = config.steps_per_epoch()
    validation = median_ms(lambda: model.evaluate(
        data.x_valid, data.y_valid, batch_size=fit.VALIDATION_BATCH, verbose=0), calls=5)
    print(f"  an epoch: {steps} steps {steps * step / 1000:.2f} s, "
          f"validation {validation / 1000:.2f} s")
    for label, cpu in pipeline_cpu_seconds(data, config).items():
        print(f"  input pipeline, {label}: {cpu:.2f} CPU s an epoch")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["fast_cnn", "seed_mlp"])
    parser.add_argument("--precision", default="float32",
                        choices=("float32", "mixed_bfloat16"))
    args = parser.parse_args(argv)
    for name in args.models:
        report(name, args.precision)


if __name__ == "__main__":
    main()
