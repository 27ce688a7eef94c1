"""The notebook's fit against the app's default training, side by side on this machine.

    python -m benchmarks.bench_training

1. The app's default TrainConfig through the Trainer and its worker (what Start does).
2. The notebook, as written: numpy inputs, batch 32, default RMSprop, 5 epochs, in-process,
   at the worker's priority (`launch.lower_priority`, SCHED_IDLE on Linux). The worker
   yields the CPU to every other process; on a shared machine the notebook at normal
   priority would take its fair share from them instead, and the ratio would measure the
   machine's other load rather than the two fits.
Prints fit seconds, validation accuracy and the speed-up. Training time varies on shared
machines: compare the two figures of one run, not figures across runs.
"""

import os
import tempfile
import time

from mnist_core.config import TrainConfig
from mnist_core.data import categorize, flatten, load_mnist, normalize
from mnist_core.runs.record import RunRecord
from mnist_core.runs.store import ModelStore
from mnist_core.training.launch import lower_priority
from mnist_core.training.supervisor import Trainer


def notebook_fit() -> tuple[float, float]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    (x_train, y_train), (x_valid, y_valid) = load_mnist()
    x_train = normalize(flatten(x_train))
    x_valid = normalize(flatten(x_valid))
    y_train, y_valid = categorize(y_train), categorize(y_valid)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(shape=(784,)),
        keras.layers.Dense(units=512, activation="relu"),
        keras.layers.Dense(units=512, activation="relu"),
        keras.layers.Dense(units=10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=5, verbose=0,
                        validation_data=(x_valid, y_valid))
    return time.perf_counter() - start, history.history["val_accuracy"][-1]


def app_fit(config: TrainConfig) -> RunRecord:
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(folder)
        run_id = trainer.start(config).run_id
        snap = trainer.wait()
        if snap.state != "finished":
            raise SystemExit(f"app training {snap.state}: {snap.error}")
        return ModelStore(folder).get(run_id).record


def main() -> None:
    config = TrainConfig()
    record = app_fit(config)
    priority = lower_priority()  # before TensorFlow starts its threads: they inherit it
    notebook_seconds, notebook_accuracy = notebook_fit()
    app_seconds = record.fit_seconds
    app_accuracy = record.evaluation.accuracy
    print(f"device: {record.device}, app precision: {record.precision}, both fits at "
          f"{priority}")
    print(f"notebook fit  (batch 32, RMSprop, 5 epochs): {notebook_seconds:6.1f} s  "
          f"val_accuracy {notebook_accuracy:.4f}")
    print(f"app default   (batch {config.batch_size}, {config.optimizer} + schedule"
          f"{', augmented' if config.augment else ''}, {config.epochs} epochs): "
          f"{app_seconds:6.1f} s  val_accuracy {app_accuracy:.4f}")
    print(f"speed-up: {notebook_seconds / app_seconds:.1f}x")


if __name__ == "__main__":
    main()
