"""The worker's part of "Inside the network": snapshots while training, weights after it.

Runs only in the training worker (it imports Keras). The app reads what it writes with
plain numpy (`mnist_core.inside`), so the server never loads TensorFlow:

- `FeatureSnapshots`, a Keras callback, saves after batch 1, 2, 4, 8, ... and at the end
  of every epoch a small file `snapshots/step-NNNNNNN.npz` in the run folder (~30 kB): the
  first layer's incoming weights for 16 fixed units (the MLP) or all its filters (the CNN),
  and the probabilities on a fixed sample of validation images (`snapshots/sample.npz`).
  Before the first batch it also saves that layer's random starting weights
  (`snapshots/start.npz`, 0.8 MB for the MLP), so the page can show what training added.
  Log-spaced steps show the features forming even in a 5-second training; every visitor
  sees them appear while it runs.
- `export_weights` saves every layer's weights and settings as `weights.npz`.

`mnist_core.training.fit.train()` attaches the callback to `model.fit` and exports the
weights right after saving the model.

Both write atomically (temporary name, then `os.replace`), so a reader never sees half a
file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np

from mnist_core.data import IMAGE_SIZE, NUM_PIXELS
from mnist_core.inside import (
    LAYERS_KEY,
    SAMPLE_FILE,
    SNAPSHOT_UNITS,
    SNAPSHOTS_DIR,
    START_FILE,
    layers_json,
    sample_indices,
    snapshot_name,
    unit_images,
    weight_key,
    write_npz_atomically,
)

__all__ = ["FeatureSnapshots", "export_weights", "sample_indices", "snapshot_steps"]


def snapshot_steps(total_steps: int, steps_per_epoch: int) -> list[int]:
    """The global steps (batches done) a full run snapshots: powers of two and epoch ends."""
    powers = {1 << i for i in range(total_steps.bit_length()) if 1 << i <= total_steps}
    ends = set(range(steps_per_epoch, total_steps + 1, steps_per_epoch))
    return sorted(powers | ends)


class FeatureSnapshots(keras.callbacks.Callback):
    """Saves the first layer's weights (a few units) and the sample's predictions as it trains.

    x_sample (S, 784) float32 in [0, 1]: the fixed validation images (S up to a few dozen);
    y_sample (S,) their labels, optional; steps_per_epoch: the batches of one epoch, to
    number the steps across epochs. A snapshot that cannot be written (disk full) turns the
    snapshots off with a line on stderr: the training itself matters more.
    """

    def __init__(self, run_dir: Path, x_sample: np.ndarray, steps_per_epoch: int,
                 y_sample: np.ndarray | None = None, units: int = SNAPSHOT_UNITS, seed: int = 0):
        super().__init__()
        self.folder = Path(run_dir) / SNAPSHOTS_DIR
        self.x_sample = np.asarray(x_sample, np.float32).reshape(-1, NUM_PIXELS)
        self.y_sample = None if y_sample is None else np.asarray(y_sample, np.int64)
        self.steps_per_epoch = int(steps_per_epoch)
        self.units = units
        self.seed = seed
        self.epoch = 0
        self.step = 0  # batches done since the start of training
        self.saved_step = 0
        self.enabled = True

    def on_train_begin(self, logs=None):
        self.layer_index = next(i for i, layer in enumerate(self.model.layers) if layer.weights)
        kernel = self._kernel()
        count = kernel.shape[-1]
        if len(kernel.shape) == 2 and count > self.units:
            # The same units in every snapshot, so a learner follows each one forming.
            picked = np.random.default_rng(self.seed).choice(count, self.units, replace=False)
            self.unit_ids = np.sort(picked)
        else:
            self.unit_ids = np.arange(count)  # a CNN's filters are 3x3: keep them all
        arrays = {"images": np.round(self.x_sample.reshape(-1, IMAGE_SIZE, IMAGE_SIZE) * 255
                                     ).astype(np.uint8)}
        if self.y_sample is not None:
            arrays["labels"] = self.y_sample
        self._guarded(write_npz_atomically, self.folder / SAMPLE_FILE, arrays)
        # The random starting weights: the page subtracts them to show what training added.
        self._guarded(write_npz_atomically, self.folder / START_FILE, {
            "layer": np.array(self.model.layers[self.layer_index].name),
            "kernel": kernel.astype(np.float16)})

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.step = self.epoch * self.steps_per_epoch + batch + 1
        if self.step & (self.step - 1) == 0:  # 1, 2, 4, 8, ...
            self._snapshot()

    def on_epoch_end(self, epoch, logs=None):
        if self.step != self.saved_step:
            self._snapshot()

    def _kernel(self) -> np.ndarray:
        return np.asarray(self.model.layers[self.layer_index].get_weights()[0], np.float32)

    def _snapshot(self) -> None:
        if not self.enabled:
            return
        self.saved_step = self.step
        weights = unit_images(self._kernel(), self.unit_ids)
        probabilities = keras.ops.convert_to_numpy(self.model(self.x_sample, training=False))
        self._guarded(write_npz_atomically, self.folder / snapshot_name(self.step), {
            "step": np.int64(self.step),
            "epoch": np.float64(self.step / self.steps_per_epoch),
            "layer": np.array(self.model.layers[self.layer_index].name),
            "units": self.unit_ids,
            "weights": weights.astype(np.float16),
            "probabilities": probabilities.astype(np.float16),
        })

    def _guarded(self, write, *args) -> None:
        try:
            write(*args)
        except OSError as exc:
            self.enabled = False
            print(f"snapshots turned off: {exc}", file=sys.stderr)


def export_weights(model, path: Path) -> None:
    """Every layer's weights and settings of a Sequential model, as `weights.npz` at `path`.

    Keys: `LAYERS_KEY` (JSON: the model's name, each layer's kind and settings) and
    "<layer index>/<kind>/<kernel|bias>" float32 arrays. `mnist_core.inside.load_network`
    reads it back and checks it.
    """
    arrays, layers = {}, []
    for index, layer in enumerate(model.layers):
        kind = type(layer).__name__
        layers.append((kind, layer.get_config()))
        for variable in layer.weights:
            arrays[weight_key(index, kind, variable.name)] = np.asarray(
                keras.ops.convert_to_numpy(variable), np.float32)
    arrays[LAYERS_KEY] = np.array(layers_json(model.name, layers))
    write_npz_atomically(Path(path), arrays)
