"""The training worker: `python -m mnist_core.worker RUN_DIR --parent-pid PID`.

The only module that imports TensorFlow and Keras. It trains the run's `config.json`,
appends metrics to `metrics.jsonl` while it goes, stops after the current batch when the
`stop` file appears (or when its parent process dies), and saves `model.keras`,
`model.onnx` and, last, `record.json`. Started by `mnist_core.jobs.JobManager`; never
imported by the app's server process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep the log readable for teachers

import numpy as np  # noqa: E402

from mnist_core import runs  # noqa: E402
from mnist_core.config import TrainConfig  # noqa: E402
from mnist_core.data import categorize, flatten, normalize, read_mnist  # noqa: E402
from mnist_core.devices import cpu_has_bf16, cpu_label, cpu_name  # noqa: E402
from mnist_core.evaluate import evaluation  # noqa: E402
from mnist_core.models import OPTIMIZER_CLASSES, layers_of, warmup_steps  # noqa: E402

# How often batch metrics are written: enough for a smooth live chart, few enough lines
# that a 9375-batch notebook-style run stays a small file.
BATCH_EVENT_SECONDS = 0.1
VALIDATION_BATCH = 2048
WORKER_NICENESS = 10


class Interrupted(Exception):
    """The process that started this worker is gone: nobody will collect the result."""


def setup_devices(tf):
    """Pick where to train: all GPUs (mirrored when several), else the CPU.

    `MNIST_LOGICAL_CPUS=N` splits the CPU into N logical devices and mirrors across them,
    which exercises the multi-GPU code path on a machine without GPUs.
    Returns (strategy, description dict).
    """
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)  # share the GPU with others
    logical_cpus = int(os.environ.get("MNIST_LOGICAL_CPUS", "1"))
    if gpus:
        names = []
        for gpu in gpus:
            details = tf.config.experimental.get_device_details(gpu)
            names.append(details.get("device_name", gpu.name))
        devices = [f"GPU:{i}" for i in range(len(gpus))]
        kind, label = "GPU", ", ".join(names)
    elif logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus
        )
        devices = [f"CPU:{i}" for i in range(logical_cpus)]
        kind, label = "CPU", f"{cpu_name()} as {logical_cpus} logical devices"
    else:
        devices = ["CPU:0"]
        kind, label = "CPU", cpu_label()
    if len(devices) > 1:
        strategy = tf.distribute.MirroredStrategy(devices=[f"/{d}" for d in devices])
    else:
        strategy = tf.distribute.get_strategy()
    return strategy, {
        "device": label,
        "device_kind": kind,
        "devices": devices,
        "strategy": type(strategy).__name__,
    }


def resolve_precision(config: TrainConfig, device_kind: str) -> str:
    if config.precision != "auto":
        return config.precision
    return "mixed_bfloat16" if device_kind == "CPU" and cpu_has_bf16() else "float32"


def build_model(keras, model_name: str, dtype_policy: str = "float32"):
    """The `keras.Sequential` of `mnist_core.models` for this model name."""
    layers = [
        getattr(keras.layers, layer.kind)(**layer.kwargs, dtype=dtype_policy)
        for layer in layers_of(model_name)
    ]
    if dtype_policy != "float32":
        # Softmax in float32: bfloat16 probabilities are too coarse for a stable loss.
        layers[-1] = keras.layers.Dense(
            **layers_of(model_name)[-1].kwargs, dtype="float32"
        )
    return keras.Sequential([keras.Input(shape=(784,)), *layers], name=model_name)


def build_optimizer(keras, config: TrainConfig):
    learning_rate = config.learning_rate
    if config.lr_schedule:
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=config.epochs * config.steps_per_epoch(),
            warmup_target=config.learning_rate,
            warmup_steps=warmup_steps(config),
        )
    return getattr(keras.optimizers, OPTIMIZER_CLASSES[config.optimizer])(
        learning_rate=learning_rate)


def training_dataset(tf, x_train: np.ndarray, y_train: np.ndarray, config: TrainConfig):
    """Batches for all epochs, reshuffled every epoch, built in the graph from data held once.

    x_train (N, 784) float32 in [0, 1], y_train (N, 10) one-hot. Shuffling whole index
    vectors (one op per epoch) instead of 60000 single elements keeps the input pipeline
    out of the way of the matrix products. When the batch size does not divide N the last
    batch is topped up with the epoch's first images, so every batch is full.
    """
    n, batch = len(x_train), config.batch_size
    steps = config.steps_per_epoch()
    x_all, y_all = tf.constant(x_train), tf.constant(y_train)
    repeats = -(-steps * batch // n)

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(config.seed, tf.int64), epoch])
        )
        order = tf.tile(order, [repeats])[: steps * batch]
        return tf.reshape(order, (steps, batch))

    augment = augmenter(tf, config.seed) if config.augment else None

    def gather(indices):
        x = tf.gather(x_all, indices)
        return (augment(x) if augment else x), tf.gather(y_all, indices)

    return (
        tf.data.Dataset.range(config.epochs)
        .map(epoch_batches)
        .unbatch()
        .map(gather)
        .prefetch(2)
    )


def augmenter(tf, seed: int):
    """Random small shifts, rotations, scale and stroke-thickness changes of (B, 784) batches.

    People draw off-centre, tilted, larger or smaller, with thicker or thinner pens than
    MNIST's writers: showing the model such variations makes it hold up on drawings.
    """
    import keras

    layers = [
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed),
        keras.layers.RandomRotation(0.05, fill_mode="constant", seed=seed + 1),  # about ±18°
        keras.layers.RandomZoom((-0.15, 0.15), fill_mode="constant", seed=seed + 2),
    ]

    def augment(x):
        images = tf.reshape(x, (-1, 28, 28, 1))
        for layer in layers:
            images = layer(images, training=True)
        # Thicker (3x3 max filter) for a fifth of the images, thinner (3x3 min filter) for
        # another fifth.
        choice = tf.random.uniform((tf.shape(images)[0], 1, 1, 1), seed=seed + 3)
        thicker = tf.nn.max_pool2d(images, 3, 1, "SAME")
        thinner = -tf.nn.max_pool2d(-images, 3, 1, "SAME")
        images = tf.where(choice < 0.2, thicker, tf.where(choice > 0.8, thinner, images))
        return tf.reshape(tf.clip_by_value(images, 0.0, 1.0), (-1, 784))

    return augment


def make_callback(keras, run_dir: Path, config: TrainConfig, parent_pid: int | None):
    stop_file = run_dir / runs.STOP
    metrics = run_dir / runs.METRICS
    steps = config.steps_per_epoch()

    class LiveMetrics(keras.callbacks.Callback):
        """Streams metrics to metrics.jsonl and honours the stop file within one batch."""

        def __init__(self):
            super().__init__()
            self.last_write = 0.0
            self.epoch = 0
            self.epochs_completed = 0
            self.batches_done = 0
            self.interrupted = False
            self.stop_requested = False

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            self.epoch_start = time.time()
            self.batches_done = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches_done = batch + 1
            now = time.time()
            if now - self.last_write >= BATCH_EVENT_SECONDS or batch + 1 == steps:
                self.last_write = now
                runs.append_event(metrics, {
                    "event": "batch", "epoch": self.epoch, "batch": batch + 1,
                    "step": self.epoch * steps + batch + 1,
                    # Keras reports the running mean over the epoch so far.
                    "loss": float(logs["loss"]), "accuracy": float(logs["accuracy"]),
                    "t": now,
                })
            if stop_file.exists():
                self.stop_requested = True
                self.model.stop_training = True
            if parent_pid is not None and os.getppid() != parent_pid:
                self.interrupted = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            if self.interrupted:
                return
            complete = self.batches_done == steps
            self.epochs_completed += complete
            event = {
                "event": "epoch", "epoch": epoch, "complete": complete,
                "seconds": time.time() - self.epoch_start, "t": time.time(),
            }
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                if logs and key in logs:
                    event[key] = float(logs[key])
            runs.append_event(metrics, event)

    return LiveMetrics()


def train(run_dir: Path, parent_pid: int | None = None) -> dict | None:
    """Train the run in `run_dir`; return its record (None when stopped before one epoch)."""
    import keras
    import tensorflow as tf

    started = time.time()
    metrics = run_dir / runs.METRICS
    spec = json.loads((run_dir / runs.CONFIG).read_text())
    config = TrainConfig.from_dict(spec)
    strategy, device = setup_devices(tf)
    precision = resolve_precision(config, device["device_kind"])
    keras.utils.set_random_seed(config.seed)

    data = read_mnist()
    order = np.random.default_rng(config.seed).permutation(len(data.x_train))
    keep = np.sort(order[: config.train_size])
    x_train = normalize(flatten(data.x_train[keep]))  # (N, 784) float32 in [0, 1]
    y_train = categorize(data.y_train[keep])  # (N, 10) one-hot
    x_valid = normalize(flatten(data.x_valid))
    y_valid = categorize(data.y_valid)

    fine_tune = None
    if config.fine_tune_from:
        x_train, y_train, fine_tune = add_drawings(run_dir, config, x_train, y_train)

    runs.append_event(metrics, {
        "event": "start", **device, "precision": precision, "t": time.time(),
        "epochs": config.epochs, "steps_per_epoch": config.steps_per_epoch(),
        "batch_size": config.batch_size, "train_size": config.train_size,
        "data_source": data.source,
    })

    with strategy.scope():
        model = build_model(keras, config.model, precision)
        if fine_tune is not None:
            model.set_weights(fine_tune.pop("weights"))
        model.compile(
            optimizer=build_optimizer(keras, config),
            loss="categorical_crossentropy",
            metrics=["accuracy"],
        )
    callback = make_callback(keras, run_dir, config, parent_pid)
    fit_start = time.time()
    history = model.fit(
        training_dataset(tf, x_train, y_train, config),
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch(),
        validation_data=(x_valid, y_valid) if config.validation else None,
        validation_batch_size=VALIDATION_BATCH,
        callbacks=[callback],
        shuffle=False,  # the dataset reshuffles every epoch itself
        verbose=0,
    )
    fit_seconds = time.time() - fit_start
    if callback.interrupted:
        raise Interrupted("the app that started this training is gone")
    status = "stopped" if callback.stop_requested else "finished"
    if callback.epochs_completed == 0:
        runs.append_event(metrics, {"event": "end", "status": status, "saved": False,
                                    "t": time.time()})
        return None

    # Serve and save float32 weights whatever the training precision: ONNX Runtime's CPU
    # kernels and every other Keras user expect float32.
    served = build_model(keras, config.model, "float32")
    served.set_weights(model.get_weights())
    probabilities = served.predict(x_valid, batch_size=VALIDATION_BATCH, verbose=0)
    save_model(served, run_dir)

    if fine_tune is not None:
        holdout = fine_tune.pop("holdout")
        if len(holdout[1]):
            after = served.predict(holdout[0], verbose=0).argmax(axis=1)
            fine_tune["accuracy_after"] = float((after == holdout[1]).mean())

    record = {
        "run_id": run_dir.name,
        "fine_tune": fine_tune,
        "status": status,
        "config": config.to_dict(),
        "parent": spec.get("parent"),
        **device,
        "precision": precision,
        "started": started,
        "finished": time.time(),
        "fit_seconds": fit_seconds,
        "epochs_completed": callback.epochs_completed,
        "history": {key: [float(v) for v in values] for key, values in history.history.items()},
        "evaluation": evaluation(data.y_valid, probabilities),
        "params": int(served.count_params()),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    runs.atomic_write_json(run_dir / runs.RECORD, record)
    runs.append_event(metrics, {"event": "end", "status": status, "saved": True,
                                "val_accuracy": record["evaluation"]["accuracy"],
                                "t": time.time()})
    return record


def add_drawings(run_dir: Path, config: TrainConfig, x_train, y_train):
    """Training data plus the class's drawings, and what the parent run scores on held-out ones.

    The drawings are the snapshot the job manager took when the run started.
    Every 5th drawing is held out; the rest are repeated so that they make up about a tenth
    of each epoch (a few dozen drawings would otherwise be lost among 60000 digits).
    """
    from mnist_core.drawings import Drawings

    parent_dir = run_dir.parent / config.fine_tune_from
    parent = load_keras_model(parent_dir / runs.KERAS_FILE)
    if parent.name != config.model:
        raise ValueError(f"run {config.fine_tune_from} is a {parent.name}, not a {config.model}")
    drawings = Drawings.from_npz(run_dir / runs.DRAWINGS)
    held, used = drawings.subset(drawings.holdout), drawings.subset(~drawings.holdout)
    x_held = normalize(flatten(held.images))
    info = {
        "parent": config.fine_tune_from,
        "drawings_train": len(used),
        "drawings_holdout": len(held),
        "accuracy_before": None,
        "accuracy_after": None,
        "weights": parent.get_weights(),
        "holdout": (x_held, held.labels),
    }
    if len(held):
        before = parent.predict(x_held, verbose=0).argmax(axis=1)
        info["accuracy_before"] = float((before == held.labels).mean())
    if len(used):
        repeats = int(np.clip(round(0.1 * len(x_train) / len(used)), 1, 1000))
        x_train = np.concatenate([x_train, np.tile(normalize(flatten(used.images)), (repeats, 1))])
        y_train = np.concatenate([y_train, np.tile(categorize(used.labels), (repeats, 1))])
        info["drawings_repeats"] = repeats
    return x_train, y_train, info


def load_keras_model(path: Path):
    """A saved run's Keras model, in safe mode: a model file cannot run code on load."""
    import keras

    return keras.saving.load_model(path, safe_mode=True)


def save_model(model, run_dir: Path) -> None:
    """Write model.keras and model.onnx atomically (temporary name, then rename)."""
    keras_tmp = run_dir / f".tmp-{os.getpid()}.keras"
    onnx_tmp = run_dir / f".tmp-{os.getpid()}.onnx"
    try:
        model.save(keras_tmp)
        model.export(onnx_tmp, format="onnx", verbose=False)
        os.replace(keras_tmp, run_dir / runs.KERAS_FILE)
        os.replace(onnx_tmp, run_dir / runs.ONNX_FILE)
    finally:
        keras_tmp.unlink(missing_ok=True)
        onnx_tmp.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    run_dir = args.run_dir
    # Below the app's priority: thirty students' predictions come before a few percent of
    # training speed. Alone on the machine the worker still gets every idle cycle.
    os.nice(WORKER_NICENESS)
    runs.atomic_write_json(run_dir / runs.WORKER, {"pid": os.getpid(), "t": time.time()})
    try:
        train(run_dir, args.parent_pid)
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:  # the manager shows this message to the teacher
        traceback.print_exc()
        runs.append_event(run_dir / runs.METRICS, {
            "event": "error", "message": f"{type(exc).__name__}: {exc}", "t": time.time(),
        })
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
