"""The TensorFlow side of a training, one step per function; imported only by the worker.

`train(run_dir)` reads the run's config.json, prepares the notebook's data, builds and fits
the model while `live_metrics.LiveMetrics` streams events to metrics.jsonl and honours the stop file, then
saves model.keras, model.onnx and, last, record.json.
"""

from __future__ import annotations

import gc
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mnist_core import platform_os
from mnist_core.config import TrainConfig
from mnist_core.data import (
    NUM_PIXELS,
    categorize,
    flatten,
    normalize,
    read_mnist,
)
from mnist_core.devices import cpu_has_bf16, cpu_label, cpu_name
from mnist_core.drawings import Drawings
from mnist_core.evaluate import evaluation
from mnist_core.inside import WEIGHTS_FILE
from mnist_core.models import OPTIMIZER_CLASSES, layers_of, warmup_steps
from mnist_core.runs import events, folder
from mnist_core.runs.record import (
    EndEvent,
    FineTuneResult,
    RunRecord,
    StartEvent,
    read_config,
)
from mnist_core.skeleton import train_skeletons
from mnist_core.training.augment import affine, pen_strokes, skeletons
from mnist_core.training.fused_adam import FusedAdam
from mnist_core.training.fused_batch_norm import FusedBatchNormalization
from mnist_core.training.live_metrics import LiveMetrics
from mnist_core.training.lowest_priority import threads_asked
from mnist_core.training.snapshots import FeatureSnapshots, export_weights, sample_indices

VALIDATION_BATCH = 2048
DRAWINGS_SHARE = 0.1  # the class's drawings make up about this much of a fine-tune's epoch
# Augmentation, measured on drawn digits (benchmarks/RESULTS.md, "Drawn digits"):


@dataclass(frozen=True)
class Devices:
    strategy: tf.distribute.Strategy
    device: str  # what the pages show: "AMD EPYC (2 cores)", "NVIDIA A100"
    device_kind: str  # CPU or GPU
    devices: tuple[str, ...]  # "GPU:0", "CPU:1", ...


@dataclass(frozen=True)
class TrainingData:
    x_train: np.ndarray  # (N, 784) float32 in [0, 1]
    y_train: np.ndarray  # (N, 10) one-hot
    x_valid: np.ndarray  # (10000, 784) float32 in [0, 1]
    y_valid: np.ndarray  # (10000, 10) one-hot
    labels_valid: np.ndarray  # (10000,) uint8, y_valid as digits
    # (N, 784) float32 in {0, 1}: x_train's skeletons, for the pen strokes (else None)
    skeletons: np.ndarray | None = None


@dataclass(frozen=True)
class FineTune:
    """A fine-tune's starting weights and the held-out drawings that measure it."""

    weights: list[np.ndarray]
    x_holdout: np.ndarray  # (M, 784) float32
    y_holdout: np.ndarray  # (M,) digits
    result: FineTuneResult


def limit_cpu_threads() -> int | None:
    """TensorFlow's CPU threads as the supervisor asked (`MNIST_WORKER_THREADS`), set
    before TensorFlow starts its thread pools; None when not asked."""
    threads = threads_asked()
    if threads is None:
        return None
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return threads


def setup_devices() -> Devices:
    """All GPUs (mirrored when several), else the CPU.

    `MNIST_LOGICAL_CPUS=N` splits the CPU into N logical devices and mirrors across them,
    which exercises the multi-GPU code path on a machine without GPUs.
    """
    threads = limit_cpu_threads()
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)  # share the GPU with others
    logical_cpus = int(os.environ.get("MNIST_LOGICAL_CPUS", "1"))
    if gpus:
        names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
                 for gpu in gpus]
        devices = tuple(f"GPU:{i}" for i in range(len(gpus)))
        kind, label = "GPU", ", ".join(names)
    elif logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
        devices = tuple(f"CPU:{i}" for i in range(logical_cpus))
        kind, label = "CPU", f"{cpu_name()} as {logical_cpus} logical devices"
    else:
        devices = ("CPU:0",)
        kind, label = "CPU", cpu_label()
        if threads is not None:
            label += f", {threads} thread{'s' if threads > 1 else ''}: a core left for visitors"
    if len(devices) > 1:
        strategy = tf.distribute.MirroredStrategy(devices=[f"/{d}" for d in devices])
    else:
        strategy = tf.distribute.get_strategy()
    return Devices(strategy, label, kind, devices)


def resolve_precision(config: TrainConfig, device_kind: str) -> str:
    if config.precision != "auto":
        return config.precision
    return "mixed_bfloat16" if device_kind == "CPU" and cpu_has_bf16() else "float32"


def build_model(model_name: str, dtype_policy: str = "float32",
                fused: bool = False) -> keras.Sequential:
    """The `keras.Sequential` of `mnist_core.models` for this model name. `fused`: for
    training, its batch normalisations trained by one fused kernel (the same layer)."""
    classes = {"BatchNormalization": FusedBatchNormalization} if fused else {}
    layers = [classes.get(layer.kind, getattr(keras.layers, layer.kind))(
                  **layer.kwargs, dtype=dtype_policy)
              for layer in layers_of(model_name)]
    if dtype_policy != "float32":
        # Softmax in float32: bfloat16 probabilities are too coarse for a stable loss.
        layers[-1] = keras.layers.Dense(**layers_of(model_name)[-1].kwargs, dtype="float32")
    return keras.Sequential([keras.Input(shape=(NUM_PIXELS,)), *layers], name=model_name)


def build_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    learning_rate = config.learning_rate
    if config.lr_schedule:
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=config.epochs * config.steps_per_epoch(),
            warmup_target=config.learning_rate,
            warmup_steps=warmup_steps(config),
        )
    if config.optimizer == "adam":  # keras.optimizers.Adam, one fused kernel per weight
        return FusedAdam(learning_rate=learning_rate)
    return getattr(keras.optimizers, OPTIMIZER_CLASSES[config.optimizer])(
        learning_rate=learning_rate)


def training_dataset(x_train: np.ndarray, y_train: np.ndarray, config: TrainConfig,
                     x_skeletons: np.ndarray | None = None) -> tf.data.Dataset:
    """Batches for all epochs, reshuffled every epoch, built in the graph from data held once.

    x_train (N, 784) float32 in [0, 1], y_train (N, 10) one-hot. Shuffling whole index
    vectors (one op per epoch) instead of 60000 single elements keeps the input pipeline
    out of the way of the matrix products. When the batch size does not divide N the last
    batch is topped up with the epoch's first images, so every batch is full. x_skeletons
    (N, 784), x_train's skeletons for the pen strokes, are thinned here when not given.
    """
    n, batch = len(x_train), config.batch_size
    steps = config.steps_per_epoch()
    x_all, y_all = tf.constant(x_train), tf.constant(y_train)
    repeats = math.ceil(steps * batch / n)

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(config.seed, tf.int64), epoch]))
        order = tf.tile(order, [repeats])[: steps * batch]
        return tf.reshape(order, (steps, batch))

    pen = pen_strokes(config.seed + 50) if config.pen_strokes else None
    if pen and x_skeletons is None:
        x_skeletons = skeletons(x_train)
    skeletons_all = tf.constant(x_skeletons) if pen else None
    augment = affine(config.seed) if config.augment else None

    def gather(indices):
        x = tf.gather(x_all, indices)
        if pen:
            x = pen(x, tf.gather(skeletons_all, indices))
        if augment:
            x = augment(x)
        return x, tf.gather(y_all, indices)

    # Nothing here is tuned by tf.data's autotuner, whose background thread only cost time:
    # in a process that fits more than once (the benchmarks), the iterator's teardown at the
    # end of half the later fits waited 0.7-1.7 s for it.
    options = tf.data.Options()
    options.autotune.enabled = False
    return (tf.data.Dataset.range(config.epochs).map(epoch_batches).unbatch().map(gather)
            .prefetch(2).with_options(options))


def prepare_data(config: TrainConfig) -> TrainingData:
    """The notebook's steps: flatten, normalize, categorize (on a random subset if asked)."""
    data = read_mnist()
    order = np.random.default_rng(config.seed).permutation(len(data.x_train))
    keep = np.sort(order[: config.train_size])
    x_skeletons = None
    if config.pen_strokes:
        x_skeletons = flatten(train_skeletons(data.x_train, keep)).astype(np.float32)
    return TrainingData(
        x_train=normalize(flatten(data.x_train[keep])),
        y_train=categorize(data.y_train[keep]),
        x_valid=normalize(flatten(data.x_valid)),
        y_valid=categorize(data.y_valid),
        labels_valid=data.y_valid,
        skeletons=x_skeletons,
    )


def add_drawings(run_dir: Path, config: TrainConfig,
                 data: TrainingData) -> tuple[TrainingData, FineTune]:
    """Training data plus the class's drawings, and what the parent run scores on held-out ones.

    The drawings are the copy the supervisor took when the run started (drawings.npz).
    Every 5th drawing is held out; the rest are repeated so that they make up about a tenth
    of each epoch (a few dozen drawings would otherwise be lost among 60000 digits).
    """
    parent = load_keras_model(run_dir.parent / config.fine_tune_from / folder.KERAS_FILE)
    if parent.name != config.model:
        raise ValueError(f"run {config.fine_tune_from} is a {parent.name}, not a {config.model}")
    drawings = Drawings.from_npz(run_dir / folder.DRAWINGS)
    held, used = drawings.subset(drawings.holdout), drawings.subset(~drawings.holdout)
    x_held = normalize(flatten(held.images))
    before = None
    if len(held):
        before = float((parent.predict(x_held, verbose=0).argmax(axis=1) == held.labels).mean())
    repeats = 0
    if len(used):
        repeats = int(np.clip(round(DRAWINGS_SHARE * len(data.x_train) / len(used)), 1, 1000))
        x_used = normalize(flatten(used.images))
        data = replace(
            data,
            x_train=np.concatenate([data.x_train, np.tile(x_used, (repeats, 1))]),
            y_train=np.concatenate([data.y_train, np.tile(categorize(used.labels), (repeats, 1))]),
            skeletons=None if data.skeletons is None else np.concatenate(
                [data.skeletons, np.tile(skeletons(x_used), (repeats, 1))]),
        )
    result = FineTuneResult(drawings_train=len(used), drawings_holdout=len(held),
                            drawings_repeats=repeats, accuracy_before=before)
    return data, FineTune(parent.get_weights(), x_held, held.labels, result)


def fit(model: keras.Model, data: TrainingData, config: TrainConfig,
        callbacks: list[keras.callbacks.Callback]) -> tuple[keras.callbacks.History, float]:
    """model.fit as the notebook does it, with validation data; returns (history, seconds)."""
    started = time.time()
    history = model.fit(
        training_dataset(data.x_train, data.y_train, config, data.skeletons),
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch(),
        validation_data=(data.x_valid, data.y_valid) if config.validation else None,
        validation_batch_size=VALIDATION_BATCH,
        callbacks=callbacks,
        shuffle=False,  # the dataset reshuffles every epoch itself
        verbose=0,
    )
    return history, time.time() - started


def load_keras_model(path: Path) -> keras.Model:
    """A saved run's Keras model, in safe mode: a model file cannot run code on load."""
    return keras.saving.load_model(path, safe_mode=True)


def save_model(model: keras.Model, run_dir: Path) -> None:
    """Write model.keras and model.onnx atomically (temporary name, then rename)."""
    keras_tmp = run_dir / f".tmp-{os.getpid()}.keras"
    onnx_tmp = run_dir / f".tmp-{os.getpid()}.onnx"
    try:
        model.save(keras_tmp)
        model.export(onnx_tmp, format="onnx", verbose=False)
        platform_os.replace(keras_tmp, run_dir / folder.KERAS_FILE)
        platform_os.replace(onnx_tmp, run_dir / folder.ONNX_FILE)
    finally:
        keras_tmp.unlink(missing_ok=True)
        onnx_tmp.unlink(missing_ok=True)


def save_served_model(model: keras.Model, run_dir: Path, config: TrainConfig,
                      data: TrainingData, fine_tune: FineTune | None):
    """Save the model as served (float32 weights whatever the training precision: ONNX
    Runtime's CPU kernels and every other Keras user expect float32), and the Inside page's
    weights. Returns it, its validation probabilities (N, 10), and a fine-tune's result
    measured on the held-out drawings."""
    served = build_model(config.model, "float32")
    served.set_weights(model.get_weights())
    probabilities = served.predict(data.x_valid, batch_size=VALIDATION_BATCH, verbose=0)
    save_model(served, run_dir)
    export_weights(served, run_dir / WEIGHTS_FILE)  # the Inside page's numpy forward pass
    result = None
    if fine_tune is not None:
        after = None
        if len(fine_tune.y_holdout):
            predicted = served.predict(fine_tune.x_holdout, verbose=0).argmax(axis=1)
            after = float((predicted == fine_tune.y_holdout).mean())
        result = replace(fine_tune.result, accuracy_after=after)
    return served, probabilities, result


def train(run_dir: Path) -> RunRecord | None:
    """Train the run in `run_dir`; return its record (None when stopped before one epoch)."""
    started = time.time()
    metrics = run_dir / folder.METRICS
    config = read_config(run_dir / folder.CONFIG)
    devices = setup_devices()
    precision = resolve_precision(config, devices.device_kind)
    keras.utils.set_random_seed(config.seed)

    data = prepare_data(config)
    fine_tune = None
    if config.fine_tune_from:
        data, fine_tune = add_drawings(run_dir, config, data)

    events.append_event(metrics, StartEvent(
        device=devices.device, device_kind=devices.device_kind,
        strategy=type(devices.strategy).__name__, precision=precision,
        steps_per_epoch=config.steps_per_epoch(), t=time.time()))
    with devices.strategy.scope():
        model = build_model(config.model, precision, fused=True)
        if fine_tune is not None:
            model.set_weights(fine_tune.weights)
        model.compile(optimizer=build_optimizer(config), loss="categorical_crossentropy",
                      metrics=["accuracy"])
    callback = LiveMetrics(run_dir, config.steps_per_epoch())
    # The Inside page's "watch features form": small snapshots at log-spaced steps.
    sample = sample_indices(data.labels_valid)
    snapshots = FeatureSnapshots(run_dir, data.x_valid[sample], config.steps_per_epoch(),
                                 y_sample=data.labels_valid[sample])
    # Everything so far (TensorFlow's modules, the data, the model) lives as long as the
    # process: out of the collector's full walks, which took 0.2 s of the first epoch.
    gc.freeze()
    history, fit_seconds = fit(model, data, config, [callback, snapshots])
    status = "stopped" if callback.stop_requested else "finished"
    if callback.epochs_completed == 0:
        events.append_event(metrics, EndEvent(status=status, saved=False, t=time.time()))
        return None

    served, probabilities, result = save_served_model(model, run_dir, config, data, fine_tune)
    record = RunRecord(
        run_id=run_dir.name, status=status, config=config, device=devices.device,
        device_kind=devices.device_kind, strategy=type(devices.strategy).__name__,
        precision=precision, started=started, finished=time.time(), fit_seconds=fit_seconds,
        epochs_completed=callback.epochs_completed,
        history={key: tuple(float(v) for v in values) for key, values in history.history.items()},
        evaluation=evaluation(data.labels_valid, probabilities),
        params=int(served.count_params()), tensorflow=tf.__version__, keras=keras.__version__,
        fine_tune=result,
    )
    folder.atomic_write_json(run_dir / folder.RECORD, record.to_dict())
    events.append_event(metrics, EndEvent(status=status, saved=True, t=time.time(),
                                          val_accuracy=record.evaluation.accuracy))
    return record
