"""The small files the training worker writes while it trains, read back for the page.

In a run folder's `snapshots/` (written by `mnist_core.training.snapshots.FeatureSnapshots`,
named by the run layout, `mnist_core.runs.folder`): `step-NNNNNNN.npz` after batch 1, 2, 4,
8, ... and each epoch end (a few first-layer units' weights and the predictions on a fixed
validation sample), `sample.npz` (that sample) and `start.npz` (the first layer's weights
before training). A damaged or foreign file is skipped, never fatal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_core.data import IMAGE_SIZE, NUM_CLASSES
from mnist_core.inside.files import InsideError, read_npz
from mnist_core.runs.folder import (
    SAMPLE_FILE,
    SNAPSHOT_PATTERN,
    SNAPSHOTS_DIR,
    START_FILE,
)

MAX_SNAPSHOT_BYTES = 2**20  # a snapshot is ~30 kB
MAX_START_BYTES = 8 * 2**20  # the MLP's first layer in float16 is 0.8 MB
MAX_SNAPSHOTS = 256  # 50 epochs with log-spaced steps make fewer than 100
SAMPLE_PER_DIGIT = 4  # the snapshot sample: 4 validation images of each digit
SNAPSHOT_UNITS = 16  # first-layer units (or filters, up to this many) kept in each snapshot


@dataclass(frozen=True)
class Snapshot:
    """The network after `step` batches: a few first-layer units and the sample's predictions."""

    step: int
    epoch: float  # epochs done, fractional
    layer: str  # the first layer with weights: "dense" or "conv2d"
    units: np.ndarray  # (K,) int: which units (or filters) of that layer
    weights: np.ndarray  # (K, h, w) float32: their incoming weights as images
    probabilities: np.ndarray  # (S, 10) float32 on the sample images


@dataclass(frozen=True)
class Sample:
    """The fixed validation images every snapshot predicts."""

    images: np.ndarray  # (S, 28, 28) uint8
    labels: np.ndarray | None  # (S,) int, when the worker gave them


def sample_indices(y_valid: np.ndarray, per_digit: int = SAMPLE_PER_DIGIT) -> np.ndarray:
    """The first `per_digit` validation images of each digit, in rows of 0-9: (10 * per_digit,)."""
    y_valid = np.asarray(y_valid)
    firsts = [np.flatnonzero(y_valid == digit)[:per_digit] for digit in range(NUM_CLASSES)]
    rows = min(len(f) for f in firsts)
    return np.array([firsts[digit][row] for row in range(rows) for digit in range(NUM_CLASSES)],
                    np.int64)


def read_snapshots(run_dir: Path | str) -> tuple[list[Snapshot], list[str]]:
    """The run's snapshots sorted by step, and the names of files skipped as unreadable.

    A file being written has a temporary name and is not listed; a damaged or foreign file
    is skipped, so a snapshot gone wrong never hides the others.
    """
    folder = Path(run_dir) / SNAPSHOTS_DIR
    try:
        names = sorted(entry.name for entry in os.scandir(folder) if entry.is_file())
    except OSError:
        return [], []
    snapshots, skipped = [], []
    for name in names:
        match = SNAPSHOT_PATTERN.match(name)
        if match is None:
            if name not in (SAMPLE_FILE, START_FILE) and not name.startswith("."):
                skipped.append(name)
            continue
        if len(snapshots) >= MAX_SNAPSHOTS:
            skipped.append(name)
            continue
        try:
            snapshots.append(_read_snapshot(folder / name, int(match.group(1))))
        except InsideError:
            skipped.append(name)
    snapshots.sort(key=lambda s: s.step)
    return snapshots, skipped


def _read_snapshot(path: Path, step: int) -> Snapshot:
    arrays = read_npz(path, MAX_SNAPSHOT_BYTES)
    try:
        # Values too large for float32 become inf here and are refused below.
        with np.errstate(over="ignore", invalid="ignore"):
            units = arrays["units"].astype(np.int64)
            weights = arrays["weights"].astype(np.float32)
            probabilities = arrays["probabilities"].astype(np.float32)
        epoch = float(arrays["epoch"])
        layer = str(arrays["layer"])
        saved_step = int(arrays.get("step", step))
    except (KeyError, TypeError, ValueError) as exc:
        raise InsideError(f"{path.name}: not a snapshot ({exc})") from None
    if saved_step != step or weights.ndim != 3 or not len(weights) or (
            units.shape != (len(weights),)) or units.min() < 0 or probabilities.ndim != 2 or (
            probabilities.shape[1] != NUM_CLASSES):
        raise InsideError(f"{path.name}: not a snapshot (unexpected shapes)")
    if not (np.isfinite(weights).all() and np.isfinite(probabilities).all()):
        raise InsideError(f"{path.name}: holds NaN or infinite values")
    return Snapshot(step, epoch, layer, units, weights, probabilities)


def read_sample(run_dir: Path | str) -> Sample | None:
    """The images the snapshots predict, or None when missing or unreadable."""
    try:
        arrays = read_npz(Path(run_dir) / SNAPSHOTS_DIR / SAMPLE_FILE, MAX_SNAPSHOT_BYTES)
    except InsideError:
        return None
    images, labels = arrays.get("images"), arrays.get("labels")
    if images is None or images.dtype != np.uint8 or images.ndim != 3 or (
            images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE)):
        return None
    if labels is not None and (labels.dtype.kind not in "iu" or labels.shape != (len(images),)):
        labels = None
    return Sample(images, None if labels is None else labels.astype(np.int64))


def read_start_kernel(run_dir: Path | str, shape: tuple | None = None) -> np.ndarray | None:
    """The first layer's kernel before training, as the worker saved it (float32), or None
    when missing, unreadable or not of `shape`. Trained minus start = what training added."""
    try:
        arrays = read_npz(Path(run_dir) / SNAPSHOTS_DIR / START_FILE, MAX_START_BYTES)
    except InsideError:
        return None
    kernel = arrays.get("kernel")
    if kernel is None or kernel.dtype.kind != "f" or kernel.ndim not in (2, 4) or (
            shape is not None and kernel.shape != tuple(shape)):
        return None
    with np.errstate(over="ignore"):  # too large for float32: inf, refused just below
        kernel = kernel.astype(np.float32)
    return kernel if np.isfinite(kernel).all() else None


def unit_images(kernel: np.ndarray, units: np.ndarray | None = None) -> np.ndarray:
    """A first layer's kernel as one image per unit: Dense (784, K) -> (K, 28, 28);
    Conv2D (kh, kw, channels, K) -> (K, kh, kw), averaged over the input channels."""
    kernel = kernel if units is None else kernel[..., units]
    if kernel.ndim == 2:
        return kernel.T.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    return kernel.mean(axis=2).transpose(2, 0, 1)
