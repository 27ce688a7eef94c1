"""How a trained model did on the validation set, from its predicted probabilities."""

from __future__ import annotations

import numpy as np

from mnist_core.data import NUM_CLASSES


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(10, 10) int64: row = true digit, column = predicted digit."""
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return matrix


def evaluation(y_true: np.ndarray, probabilities: np.ndarray) -> dict:
    """Accuracy, confusion matrix, per-class accuracy and every misclassified image.

    `probabilities` is (N, 10); the result is plain JSON-ready values. Misclassified images
    are listed most confident first: those are the most instructive mistakes.
    """
    y_true = np.asarray(y_true, np.int64)
    y_pred = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    matrix = confusion_matrix(y_true, y_pred)
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    wrong = np.flatnonzero(y_pred != y_true)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")]
    return {
        "accuracy": float((y_pred == y_true).mean()),
        "confusion_matrix": matrix.tolist(),
        "per_class_accuracy": [float(v) for v in per_class],
        "misclassified": [
            {
                "index": int(i),
                "true": int(y_true[i]),
                "predicted": int(y_pred[i]),
                "confidence": round(float(confidence[i]), 4),
            }
            for i in wrong
        ],
    }
