"""The app's trainings against their references, side by side on this machine, as ratios.

    python -m benchmarks.bench_training [--repeats 3] [--precision float32] [--cnn]

1. The app's default TrainConfig through the Trainer and its worker (what Start does).
2. The notebook, as written: numpy inputs, batch 32, default RMSprop, 5 epochs, in-process,
   at the worker's priority (`launch.lower_priority`, SCHED_IDLE on Linux). The worker
   yields the CPU to every other process; on a shared machine the notebook at normal
   priority would take its fair share from them instead, and the ratio would measure the
   machine's other load rather than the two fits.
3. With `--cnn`, instead of the two: the fast CNN's recipe (`TrainConfig.fast_cnn()`) against the keras-io CNN
   trained to the same accuracy (batch 128, Adam 0.002 with the app's schedule, up to 15
   epochs), both through the worker: the time each took to first reach the lower of their
   two final validation accuracies (fit seconds, epoch by epoch, validation included).
`--precision float32` trains as on a CPU without bfloat16 instructions. Prints fit seconds,
validation accuracy, the ratios of each repeat and their median, and the load average.
Training time varies on shared machines: compare the figures of one run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from mnist_core.config import PRECISIONS, TrainConfig
from mnist_core.data import categorize, flatten, load_mnist, normalize
from mnist_core.runs import folder as run_folder
from mnist_core.runs.record import RunRecord
from mnist_core.runs.store import ModelStore
from mnist_core.training.lowest_priority import lower_priority
from mnist_core.training.supervisor import Trainer

KERAS_CNN = TrainConfig(model="cnn", epochs=15, batch_size=128,  # 99.31% in RESULTS.md
                        learning_rate=0.002)


@dataclass(frozen=True)
class AppFit:
    record: RunRecord
    epoch_ends: list[float]  # fit seconds at the end of each epoch

    @property
    def accuracy(self) -> float:
        return self.record.evaluation.accuracy

    def seconds_to(self, accuracy: float) -> float | None:
        """Fit seconds until an epoch's validation accuracy first reached `accuracy`."""
        reached = zip(self.epoch_ends, self.record.history["val_accuracy"], strict=True)
        # Half a validation image of tolerance: the record's accuracy is counted from the
        # saved model's predictions, the history's by Keras in float32.
        return next((t for t, a in reached if a >= accuracy - 0.5e-4), None)


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


def app_fit(config: TrainConfig) -> AppFit:
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(folder)
        run_id = trainer.start(config).run_id
        snap = trainer.wait()
        if snap.state != "finished":
            raise SystemExit(f"app training {snap.state}: {snap.error}")
        run = ModelStore(folder).get(run_id)
        return AppFit(run.record, epoch_ends(run.path / run_folder.METRICS))


def epoch_ends(metrics: Path) -> list[float]:
    seconds = [json.loads(line)["seconds"] for line in metrics.read_text().splitlines()
               if json.loads(line).get("event") == "epoch"]
    return [sum(seconds[: i + 1]) for i in range(len(seconds))]


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def mlp_against_notebook(precision: str, repeats: int) -> None:
    config = replace(TrainConfig(), precision=precision)
    ratios = []
    for repeat in range(repeats):
        app = app_fit(config)
        notebook_seconds, notebook_accuracy = notebook_fit()
        ratios.append(notebook_seconds / app.record.fit_seconds)
        print(f"[{repeat + 1}] notebook fit (batch 32, RMSprop, 5 epochs): {notebook_seconds:6.1f} s"
              f"  val_accuracy {notebook_accuracy:.4f}", flush=True)
        print(f"[{repeat + 1}] app default  (batch {config.batch_size}, {config.optimizer} + "
              f"schedule, {config.epochs} epochs, {app.record.precision}): "
              f"{app.record.fit_seconds:6.1f} s  val_accuracy {app.accuracy:.4f}   "
              f"speed-up {ratios[-1]:.1f}x   {load()}", flush=True)
    print(f"speed-up, median of {repeats}: {statistics.median(ratios):.1f}x", flush=True)


def fast_cnn_against_keras_cnn(precision: str, repeats: int) -> None:
    ratios = []
    for repeat in range(repeats):
        fast = app_fit(replace(TrainConfig.fast_cnn(), precision=precision, seed=repeat))
        keras_cnn = app_fit(replace(KERAS_CNN, precision=precision, seed=repeat))
        # The accuracy both reached (the keras-io CNN may end below the fast CNN).
        target = min(fast.accuracy, keras_cnn.accuracy)
        fast_to, keras_to = fast.seconds_to(target), keras_cnn.seconds_to(target)
        reached = fast.seconds_to(0.993)
        print(f"[{repeat + 1}] fast_cnn (recipe, {fast.record.precision}): fit "
              f"{fast.record.fit_seconds:6.1f} s  val_accuracy {fast.accuracy:.4f}  99.3% at "
              f"{f'{reached:.1f} s' if reached else '-'}  {target:.4f} at {fast_to:.1f} s",
              flush=True)
        print(f"[{repeat + 1}] keras-io cnn (batch 128, 15 epochs): fit "
              f"{keras_cnn.record.fit_seconds:6.1f} s  val_accuracy {keras_cnn.accuracy:.4f}  "
              f"{target:.4f} at {keras_to:.1f} s   {load()}", flush=True)
        ratios.append(keras_to / fast_to)
        print(f"[{repeat + 1}] to {target:.4f}: fast_cnn {keras_to / fast_to:.1f}x faster",
              flush=True)
    print(f"fast_cnn speed-up at the same accuracy, median: {statistics.median(ratios):.1f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="the app's precision (float32: as on a CPU without bfloat16)")
    parser.add_argument("--cnn", action="store_true",
                        help="the fast CNN against the keras-io CNN instead (minutes)")
    args = parser.parse_args(argv)
    priority = lower_priority()  # before TensorFlow starts its threads: they inherit it
    print(f"both fits at {priority}; {load()}", flush=True)
    if args.cnn:
        fast_cnn_against_keras_cnn(args.precision, args.repeats)
    else:
        mlp_against_notebook(args.precision, args.repeats)


if __name__ == "__main__":
    main()
