"""How well a saved model recognises drawn digits, offline: MNIST test digits as pen strokes.

    .venv/bin/python -m benchmarks.drawn_digits --onnx MODELS_DIR/RUN/model.onnx [...] [--count 1000]

Each of `--count` random x_valid digits is redrawn as pen strokes (`tests.strokes`:
random pen width 12-30 px, random size and place on the 280x280 canvas), rendered as the
canvas returns it, and classified through the Draw page's path:
`mnist_core.preprocess.mnist_steps(rgba).x` -> `Classifier(onnx).predict_proba`. The naive
whole-canvas downscale of the same drawings, and the model's accuracy on the MNIST images
themselves, are printed beside it, with the drawn accuracy by the pen's width at 28x28.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_core.data import flatten, normalize, read_mnist
from mnist_core.inference import Classifier
from mnist_core.preprocess import FIT_BOX, ink_box, mnist_steps, naive_downscale, to_grayscale
from tests.strokes import Drawing, drawn_digits

DEFAULT_COUNT = 1000
DEFAULT_SEED = 0
# Pen width after the digit is fitted into 20x20, in 28x28 pixels; MNIST's pen is ~2-3.
WIDTH_BINS = (0.0, 1.5, 2.5, 3.5, 5.0, np.inf)


@dataclass(frozen=True)
class DrawnSet:
    """Drawn test digits: the canvases and what they are."""

    indices: np.ndarray  # (N,) positions in x_valid
    labels: np.ndarray  # (N,) uint8
    drawings: list[Drawing]
    canvases: list[np.ndarray]  # N of (280, 280, 4) uint8 RGBA
    width_28: np.ndarray  # (N,) float, pen width in px once fitted into 20x20


def drawn_set(x_valid: np.ndarray, y_valid: np.ndarray, count: int = DEFAULT_COUNT,
              seed: int = DEFAULT_SEED) -> DrawnSet:
    """`count` random validation digits (the same for the same seed), drawn and rendered."""
    indices = np.sort(np.random.default_rng(seed).choice(len(x_valid), count, replace=False))
    drawings = drawn_digits(x_valid[indices], seed=seed)
    canvases = [drawing.render() for drawing in drawings]
    widths = []
    for drawing, canvas in zip(drawings, canvases, strict=True):
        top, bottom, left, right = ink_box(to_grayscale(canvas))
        widths.append(drawing.width * FIT_BOX / max(bottom - top, right - left))
    return DrawnSet(indices, y_valid[indices], drawings, canvases, np.array(widths))


def steps_input(rgba: np.ndarray) -> np.ndarray:
    """The Draw page's input: (784,) float32 in [0, 1]."""
    return mnist_steps(rgba).x[0]


def naive_input(rgba: np.ndarray) -> np.ndarray:
    """The whole canvas squeezed to 28x28 (the Draw page's comparison toggle)."""
    return normalize(flatten(naive_downscale(rgba)[None]))[0]


def inputs(drawn: DrawnSet, prepare: Callable[[np.ndarray], np.ndarray] = steps_input) -> np.ndarray:
    """(N, 784) float32 model inputs of every canvas."""
    return np.stack([prepare(canvas) for canvas in drawn.canvases])


def accuracy(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, labels: np.ndarray) -> float:
    return float((predict(x).argmax(axis=1) == labels).mean())


def by_width(correct: np.ndarray, width_28: np.ndarray) -> list[tuple[str, int, float]]:
    """(bin label, count, accuracy) of the drawn digits by their pen width at 28x28."""
    rows = []
    for low, high in zip(WIDTH_BINS[:-1], WIDTH_BINS[1:], strict=True):
        inside = (width_28 >= low) & (width_28 < high)
        if inside.any():
            label = f"{low:g}-{high:g} px" if np.isfinite(high) else f">= {low:g} px"
            rows.append((label, int(inside.sum()), float(correct[inside].mean())))
    return rows


def report(path: Path, drawn: DrawnSet, x_steps: np.ndarray, x_naive: np.ndarray,
           valid: float) -> None:
    predict = Classifier(path).predict_proba
    correct = predict(x_steps).argmax(axis=1) == drawn.labels
    print(f"model: {path}")
    print(f"  MNIST validation accuracy (10000 images):  {valid:.4f}")
    print(f"  drawn, MNIST steps (the Draw page):        {correct.mean():.4f}"
          f"   gap {valid - correct.mean():+.4f}")
    print(f"  drawn, naive whole-canvas downscale:       "
          f"{accuracy(predict, x_naive, drawn.labels):.4f}")
    print("  drawn accuracy by pen width at 28x28 (MNIST's pen: ~2-3 px): " + "  ".join(
        f"{label} ({count}): {acc:.3f}" for label, count, acc in by_width(correct, drawn.width_28)))
    per_digit = [float(correct[drawn.labels == d].mean()) for d in range(10)]
    print("  by digit: " + "  ".join(f"{d}:{a:.2f}" for d, a in enumerate(per_digit)), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, nargs="+", required=True,
                        help="a run's model.onnx (several: each on the same drawings)")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="digits to draw")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)

    data = read_mnist()
    start = time.perf_counter()
    drawn = drawn_set(data.x_valid, data.y_valid, args.count, args.seed)
    made = time.perf_counter() - start
    start = time.perf_counter()
    x_steps = inputs(drawn)
    per_drawing = (time.perf_counter() - start) / args.count
    x_naive = inputs(drawn, naive_input)
    x_valid = normalize(flatten(data.x_valid))
    print(f"{args.count} drawn x_valid digits (seed {args.seed}), drawn in {made:.1f} s; "
          f"MNIST steps {per_drawing * 1000:.2f} ms per drawing")
    for path in args.onnx:
        report(path, drawn, x_steps, x_naive, accuracy(Classifier(path).predict_proba, x_valid,
                                                        data.y_valid))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
