"""How a trained model did on a set of labelled images, from its predicted probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnist_core.data import NUM_CLASSES


@dataclass(frozen=True)
class Mistake:
    index: int  # into the evaluated images
    true: int
    predicted: int
    confidence: float  # the predicted digit's probability


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    confusion_matrix: tuple[tuple[int, ...], ...]  # (10, 10): row = true, column = predicted
    per_class_accuracy: tuple[float, ...]  # (10,)
    misclassified: tuple[Mistake, ...]  # most confident first


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(10, 10) int64: row = true digit, column = predicted digit."""
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return matrix


def evaluation(y_true: np.ndarray, probabilities: np.ndarray) -> Evaluation:
    """Accuracy, confusion matrix, per-class accuracy and every misclassified image.

    `probabilities` is (N, 10). Misclassified images are listed most confident first: those
    are the most instructive mistakes.
    """
    y_true = np.asarray(y_true, np.int64)
    y_pred = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    matrix = confusion_matrix(y_true, y_pred)
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    wrong = np.flatnonzero(y_pred != y_true)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")]
    return Evaluation(
        accuracy=float((y_pred == y_true).mean()),
        confusion_matrix=tuple(tuple(int(v) for v in row) for row in matrix),
        per_class_accuracy=tuple(float(v) for v in per_class),
        misclassified=tuple(
            Mistake(int(i), int(y_true[i]), int(y_pred[i]), round(float(confidence[i]), 4))
            for i in wrong
        ),
    )
