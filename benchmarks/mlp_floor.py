"""Where the app's default MLP fit spends its time, against the matrix products' floor.

    .venv/bin/python -m benchmarks.mlp_floor [--precision float32] [--repeats 2]

In one process, at the worker's priority: the app's default fit (`TrainConfig()`, the
worker's pipeline, validation after every epoch) timed per epoch, then the floor: the same
model's compiled training step run on one fixed batch in a loop (no input pipeline, no
callbacks, no validation), and the validation pass alone. Prints wall and CPU seconds, the
step's GFLOP/s, and what the recipe's epochs cost at the floor, so the gap between the fit and its floor
shows; the load average is printed with each figure.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mnist_core.config import TrainConfig  # noqa: E402
from mnist_core.models import count_params  # noqa: E402

STEPS = 60


def step_flops(batch: int) -> float:
    """FLOPs of one training step of the notebook's MLP: forward, and backward without the
    input's gradient (2 flops a multiply-add)."""
    forward = count_params("seed_mlp")
    first_layer = 784 * 512
    return 2 * batch * (forward + forward + (forward - first_layer))


def clocked(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def one_repeat(repeat: int, config: TrainConfig, data) -> None:
    import keras
    import tensorflow as tf

    from mnist_core.training import fit

    keras.utils.set_random_seed(repeat)
    model = fit.build_model(config.model, config.precision)
    model.compile(optimizer=fit.build_optimizer(config), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    ends: list[float] = []
    clock = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()))
    start = time.perf_counter()
    wall, cpu = clocked(lambda: model.fit(
        fit.training_dataset(data.x_train, data.y_train, config), epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch(), validation_data=(data.x_valid, data.y_valid),
        validation_batch_size=fit.VALIDATION_BATCH, callbacks=[clock], verbose=0))
    epochs = [round(b - a, 2) for a, b in zip([start, *ends[:-1]], ends, strict=True)]
    print(f"[{repeat + 1}] fit: {wall:.2f} s wall, {cpu:.2f} CPU s; epochs {epochs}; "
          f"load {os.getloadavg()[0]:.2f}", flush=True)

    x = tf.constant(data.x_train[: config.batch_size])
    y = tf.constant(data.y_train[: config.batch_size])
    model.train_on_batch(x, y)  # traced once
    wall, cpu = clocked(lambda: [model.train_on_batch(x, y) for _ in range(STEPS)])
    per_step = wall / STEPS
    floor = per_step * config.steps_per_epoch() * config.epochs
    print(f"[{repeat + 1}] bare step: {per_step * 1000:.1f} ms ({cpu / STEPS * 1000:.1f} CPU ms), "
          f"{step_flops(config.batch_size) / per_step / 1e9:.0f} GFLOP/s; {config.epochs} "
          f"epochs at this floor: {floor:.2f} s; load {os.getloadavg()[0]:.2f}", flush=True)
    wall, cpu = clocked(lambda: model.evaluate(data.x_valid, data.y_valid,
                                               batch_size=fit.VALIDATION_BATCH, verbose=0))
    print(f"[{repeat + 1}] one validation pass: {wall:.2f} s ({cpu:.2f} CPU s)", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16"))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    from mnist_core.training.lowest_priority import lower_priority

    print(f"at {lower_priority()}")
    from mnist_core.training import fit

    config = replace(TrainConfig(), precision=args.precision)
    data = fit.prepare_data(config)
    for repeat in range(args.repeats):
        one_repeat(repeat, config, data)


if __name__ == "__main__":
    main()
