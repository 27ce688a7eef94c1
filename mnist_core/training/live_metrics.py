"""The worker's live metrics: a Keras callback that streams a training's batch and epoch
events to the run's metrics.jsonl (the app draws its live charts from them) and stops the
fit within one batch of the stop file appearing."""

from __future__ import annotations

import time
from pathlib import Path

import keras

from mnist_core.runs import events, folder
from mnist_core.runs.record import BatchEvent, EpochEvent

# How often batch metrics are written: enough for a smooth live chart, few enough lines
# that a 9375-batch notebook-style run stays a small file.
BATCH_EVENT_SECONDS = 0.1


class LiveMetrics(keras.callbacks.Callback):
    """Streams metrics to metrics.jsonl and honours the stop file within one batch."""

    def __init__(self, run_dir: Path, steps_per_epoch: int):
        super().__init__()
        self.metrics = run_dir / folder.METRICS
        self.stop_file = run_dir / folder.STOP
        self.steps = steps_per_epoch
        self.last_write = 0.0
        self.epoch = 0
        self.epoch_start = time.time()
        self.epochs_completed = 0
        self.batches_done = 0
        self.stop_requested = False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.epoch_start = time.time()
        self.batches_done = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches_done = batch + 1
        now = time.time()
        if now - self.last_write >= BATCH_EVENT_SECONDS or batch + 1 == self.steps:
            self.last_write = now
            # Keras reports the running mean over the epoch so far.
            events.append_event(self.metrics, BatchEvent(
                epoch=self.epoch, batch=batch + 1, step=self.epoch * self.steps + batch + 1,
                loss=float(logs["loss"]), accuracy=float(logs["accuracy"]), t=now))
        if self.stop_file.exists():
            self.stop_requested = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        complete = self.batches_done == self.steps
        self.epochs_completed += complete
        values = {key: float(logs[key]) for key in ("loss", "accuracy", "val_loss", "val_accuracy")
                  if logs and key in logs}
        events.append_event(self.metrics, EpochEvent(
            epoch=epoch, complete=complete, seconds=time.time() - self.epoch_start,
            t=time.time(), **values))
