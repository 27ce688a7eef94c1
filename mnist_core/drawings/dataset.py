"""The class's drawings as values: all of them as arrays (`Drawings`, for fine-tuning and
export) or one without its arrays (`DrawingSummary`, for a gallery)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_core.data import NUM_CLASSES
from mnist_core.drawings.errors import build_in_memory
from mnist_core.runs import folder

HOLDOUT_EVERY = 5  # every 5th drawing (by id) is held out to measure fine-tuning


@dataclass(frozen=True)
class Drawings:
    """All drawings as arrays, oldest first."""

    ids: np.ndarray  # (N,) int64
    images: np.ndarray  # (N, 28, 28) uint8, preprocessed like MNIST
    labels: np.ndarray  # (N,) uint8, what the visitor said it is
    predicted: np.ndarray  # (N,) uint8, what the model said then
    probabilities: np.ndarray  # (N, 10) float32; a row is NaN where the stored values are damaged
    run_ids: list[str]
    created: np.ndarray  # (N,) float64, unix time

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def holdout(self) -> np.ndarray:
        """Mask of the drawings kept out of fine-tuning, to measure it: every 5th by id."""
        return self.ids % HOLDOUT_EVERY == 0

    def to_npz(self) -> bytes:
        """The ids, images and labels as a fine-tune's copy (`folder.DRAWINGS`; `from_npz` reads it).
        Raises DrawingStoreError when it cannot be built."""
        return build_in_memory(folder.DRAWINGS, lambda buffer: np.savez(
            buffer, ids=self.ids, images=self.images, labels=self.labels))

    @classmethod
    def from_npz(cls, path: Path) -> Drawings:
        """The ids, images and labels of a snapshot (what training needs)."""
        with np.load(path, allow_pickle=False) as npz:
            n = len(npz["ids"])
            return cls(npz["ids"], npz["images"], npz["labels"], np.zeros(n, np.uint8),
                       np.zeros((n, NUM_CLASSES), np.float32), [""] * n, np.zeros(n))

    def subset(self, mask: np.ndarray) -> Drawings:
        return Drawings(self.ids[mask], self.images[mask], self.labels[mask],
                        self.predicted[mask], self.probabilities[mask],
                        [r for r, keep in zip(self.run_ids, mask, strict=True) if keep],
                        self.created[mask])


@dataclass(frozen=True)
class DrawingSummary:
    """One drawing without its arrays: what a gallery or a list of drawings needs."""

    id: int
    label: int  # what the visitor said it is
    predicted: int  # what the model said then
    confidence: float  # the model's probability of `predicted`, 0-1 (NaN if the row is damaged)
    run_id: str
    created: float  # unix time

    @property
    def wrong(self) -> bool:
        return self.label != self.predicted


def digit(label) -> int:
    """`label` as an int, or ValueError unless it is a whole number from 0 to 9."""
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) \
            or not 0 <= int(label) < NUM_CLASSES:
        raise ValueError(f"label must be a digit from 0 to 9, got {label!r}")
    return int(label)


def whole(value, name: str) -> int:
    """`value` as an int, or ValueError naming the argument `name` unless it is a whole number."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)
