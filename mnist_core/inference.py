"""Predict with a saved run's ONNX model: fast, thread-safe, no TensorFlow.

One `Classifier` per model is shared by every visitor's thread: ONNX Runtime's `run` is
thread-safe and releases the GIL, and a single image takes well under a millisecond.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from mnist_core.data import NUM_PIXELS

# The model is unsure when its top probability is below UNSURE_BELOW, or the runner-up comes
# within CLOSE_MARGIN of it.
UNSURE_BELOW = 0.75
CLOSE_MARGIN = 0.4


def doubt(probabilities: np.ndarray) -> tuple[int, float] | None:
    """(runner-up digit, its probability) when the model is unsure of its answer, else None.

    probabilities: (10,) for one image.
    """
    first, second = np.argsort(probabilities)[::-1][:2]
    top, runner_up = float(probabilities[first]), float(probabilities[second])
    if top < UNSURE_BELOW or top - runner_up < CLOSE_MARGIN:
        return int(second), runner_up
    return None


class ModelLoadError(RuntimeError):
    """The model file cannot be used; the message says which file and why."""


class Classifier:
    def __init__(self, onnx_path: Path | str, threads: int = 1):
        options = ort.SessionOptions()
        # One thread per call: many visitors predict at once, and splitting a 0.05 ms
        # matrix product across cores costs more than it saves.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ONNX Runtime raises its own types for every fault
            raise ModelLoadError(f"{onnx_path}: cannot load the ONNX model ({exc})") from None
        self.path = Path(onnx_path)
        self.input_name = self.session.get_inputs()[0].name

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """x (N, 784) float32 in [0, 1] -> (N, 10) float32 probabilities."""
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, NUM_PIXELS)
        return self.session.run(None, {self.input_name: x})[0]
