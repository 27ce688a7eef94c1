"""Pictures for the pages: matplotlib `Figure`s (no pyplot globals) and Altair charts."""

from __future__ import annotations

import base64
import io
from html import escape

import altair as alt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from mnist_core.data import NUM_CLASSES
from mnist_core.preprocess import fit_into_box
from mnist_core.runs.record import EpochEvent

SMOOTHING = 0.6  # exponential moving average weight for the per-batch curves


def image_figure(image: np.ndarray, title: str = "", size: float = 3.0) -> Figure:
    """One 28x28 digit in grayscale, as the notebook's `plt.imshow(image, cmap='gray')`."""
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    ax.set_title(title)
    ax.set_xticks([0, 7, 14, 21, 27])
    ax.set_yticks([0, 7, 14, 21, 27])
    fig.tight_layout()
    return fig


def pixel_values_figure(image: np.ndarray, size: float = 9.0) -> Figure:
    """The 28x28 pixel values written on a heatmap of the same values."""
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    for (row, col), value in np.ndenumerate(image):
        if value:
            ax.text(col, row, str(value), ha="center", va="center", fontsize=5.5,
                    color="black" if value > 127 else "white")
    ax.set_xticks(range(0, 28, 3))
    ax.set_yticks(range(0, 28, 3))
    fig.tight_layout()
    return fig


def grid_figure(images: np.ndarray, titles: list[str], cols: int = 10) -> Figure:
    """A grid of small digits, each with a title (its label, or true/predicted)."""
    rows = max(1, -(-len(images) // cols))
    fig = Figure(figsize=(cols * 1.0, rows * 1.15))
    for i, image in enumerate(images):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(titles[i], fontsize=9, pad=2)
        ax.axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.93, bottom=0.01, wspace=0.1, hspace=0.35)
    return fig


def confusion_figure(matrix: list[list[int]] | np.ndarray, title: str = "") -> Figure:
    """Rows are true digits, columns predicted; counts written in each cell."""
    matrix = np.asarray(matrix)
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    # Log scale so the few mistakes show next to ~1000 correct per digit.
    ax.imshow(np.log1p(matrix), cmap="Blues")
    for (row, col), value in np.ndenumerate(matrix):
        if value:
            ax.text(col, row, str(value), ha="center", va="center", fontsize=7,
                    color="white" if row == col else "black")
    ax.set_xticks(range(NUM_CLASSES))
    ax.set_yticks(range(NUM_CLASSES))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def label_distribution_chart(y_train: np.ndarray, y_valid: np.ndarray) -> alt.Chart:
    """How many images of each digit the two splits hold."""
    frame = pd.DataFrame([
        {"digit": str(digit), "split": split, "images": int(count)}
        for split, labels in (("y_train", y_train), ("y_valid", y_valid))
        for digit, count in enumerate(np.bincount(labels, minlength=NUM_CLASSES))
    ])
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("digit:N", title="digit"),
        xOffset="split:N",
        y=alt.Y("images:Q", title="images"),
        color=alt.Color("split:N", title=None),
        tooltip=["split", "digit", "images"],
    ).properties(height=260)


def per_class_comparison_chart(series: dict[str, list[float]]) -> alt.Chart:
    """Accuracy per digit for several sets side by side (e.g. drawings vs MNIST validation)."""
    frame = pd.DataFrame([
        {"digit": str(digit), "set": name, "accuracy": value}
        for name, values in series.items()
        for digit, value in enumerate(values)
        if value is not None
    ], columns=["digit", "set", "accuracy"])
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("digit:N", axis=alt.Axis(labelAngle=0)),
        xOffset="set:N",
        y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("set:N", title=None),
        tooltip=["set", "digit", alt.Tooltip("accuracy:Q", format=".1%")],
    ).properties(height=260)


def per_class_accuracy_chart(per_class_accuracy) -> alt.Chart:
    """One model's accuracy on each digit, a bar per digit."""
    frame = pd.DataFrame({"digit": [str(d) for d in range(NUM_CLASSES)],
                          "accuracy": [float(a) for a in per_class_accuracy]})
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("digit:N", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("accuracy:Q"),
        tooltip=["digit", alt.Tooltip("accuracy:Q", format=".1%")],
    )


# Points per series sent to each watching browser every second, whatever the run's length:
# 300 float32 pairs are ~2.4 kB, and a chart 300 pixels wide shows no more.
MAX_CHART_POINTS = 300
METRIC_COLORS = {"loss": "#e4572e", "accuracy": "#1f77b4"}


def smooth(values, weight: float = SMOOTHING) -> list[float]:
    """Exponential moving average, as TensorBoard smooths noisy training curves."""
    out, last = [], None
    for value in values:
        last = value if last is None else weight * last + (1 - weight) * value
        out.append(last)
    return out


def downsample(x: list, y: list, max_points: int = MAX_CHART_POINTS) -> tuple[list, list]:
    """At most `max_points` evenly spaced points of a series, always keeping the last: a
    long run's chart costs every watching visitor the same bytes as a short one's."""
    if len(x) <= max_points:
        return list(x), list(y)
    keep = np.unique(np.linspace(0, len(x) - 1, max_points).round().astype(int))
    return [x[i] for i in keep], [y[i] for i in keep]


def batch_curve_chart(steps, values, steps_per_epoch: int, metric: str) -> alt.Chart:
    """One metric per batch (smoothed, at most MAX_CHART_POINTS points), x in epochs. It
    fills its container's width: two side by side on a laptop, stacked on a phone."""
    epochs, smoothed = downsample([step / steps_per_epoch for step in steps], smooth(values))
    frame = pd.DataFrame({"epoch": np.asarray(epochs, np.float32),
                          metric: np.asarray(smoothed, np.float32)})
    return alt.Chart(frame, title=metric).mark_line(
        color=METRIC_COLORS.get(metric)).encode(
        x=alt.X("epoch:Q", title="epoch"),
        y=alt.Y(f"{metric}:Q", title=None, scale=alt.Scale(zero=False)),
    ).properties(height=220)


def epoch_curve_chart(history: list[EpochEvent], metric: str) -> alt.Chart:
    """One metric per epoch, training vs validation (as Keras' History has them)."""
    # Wide (one row per epoch), folded into long form by Vega-Lite in the browser: fewer
    # bytes to every watching browser than a row per epoch and split.
    frame = pd.DataFrame({
        "epoch": np.array([event.epoch + 1 for event in history], np.int16),
        "train": np.array([getattr(event, metric) for event in history], np.float32),
        "validation": np.array([np.nan if getattr(event, f"val_{metric}") is None
                                else getattr(event, f"val_{metric}") for event in history],
                               np.float32),
    })
    return alt.Chart(frame, title=metric).transform_fold(
        ["train", "validation"], as_=["split", "value"]).transform_filter(
        "isValid(datum.value) && isFinite(datum.value)").mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("split:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["epoch:Q", "split:N", alt.Tooltip("value:Q", format=".4f")],
    ).properties(height=220)


def compare_runs_chart(runs: list[tuple[str, tuple[float, ...]]], metric: str) -> alt.Chart:
    """One line per run of `metric` per epoch (`val_accuracy`, `loss`, ...)."""
    rows = [
        {"run": label, "epoch": i + 1, metric: value}
        for label, values in runs
        for i, value in enumerate(values)
    ]
    frame = pd.DataFrame(rows, columns=["run", "epoch", metric])
    return alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y(f"{metric}:Q", scale=alt.Scale(zero=False)),
        color=alt.Color("run:N", legend=alt.Legend(orient="bottom", columns=1, labelLimit=500)),
        tooltip=["run", "epoch", alt.Tooltip(f"{metric}:Q", format=".4f")],
    ).properties(height=300)


def probabilities_html(probabilities: np.ndarray, height: int = 150) -> str:
    """The 10 probabilities as plain HTML bars, the predicted digit highlighted.

    Light for the browser: the Draw page redraws it after every stroke of every visitor,
    and a chart library would cost each of them far more than the prediction itself.
    """
    top = int(np.argmax(probabilities))
    bars = []
    for digit, p in enumerate(probabilities):
        color = "#e4572e" if digit == top else "#4c78a8"
        bars.append(
            f'<div style="flex:1;display:flex;flex-direction:column;justify-content:flex-end;'
            f'align-items:center;height:100%" title="{digit}: {p:.2%}">'
            f'<div style="font-size:0.7rem;color:#555">{p:.0%}</div>'
            f'<div style="width:70%;height:{max(p, 0.005) * (height - 20):.0f}px;'
            f'background:{color};border-radius:3px 3px 0 0"></div>'
            f'<div style="font-weight:{700 if digit == top else 400}">{digit}</div></div>'
        )
    return (f'<div role="img" aria-label="probability of each digit" '
            f'style="display:flex;gap:4px;height:{height + 24}px;'
            f'border-bottom:1px solid #ddd">{"".join(bars)}</div>')


def png_data_uri(image: np.ndarray) -> str:
    """A grayscale uint8 image as an inline PNG (`data:` URI): no file for the server to keep
    and no extra request for the browser."""
    buffer = io.BytesIO()
    # Fastest zlib level: a few hundred bytes more, half the time, for every stroke.
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def images_html(images: list[tuple[np.ndarray, str]], width: int = 120, note: str = "",
                caption_colors: list[str] | None = None) -> str:
    """A row of small images with captions, each enlarged by the browser with crisp pixels.

    The Draw page shows the MNIST steps after every stroke of every visitor; sent inline at
    their own size (28x28 is ~200 bytes), they cost the server and the browser next to nothing
    (a matplotlib grid of 30 digits: ~0.3 s of the server's CPU and ~300 kB).
    `note` (HTML) follows the images in the same row, as wide as two of them. A larger image
    (a crafted drawing may be up to 4x the canvas; the canvas itself sends 280x280 on every
    screen) is sent at twice the width it is shown at, sharp on a 2x screen: encoding an
    840x840 one whole took ~5 ms and ~44 kB a stroke.
    """
    colors = caption_colors or ["#555"] * len(images)
    figures = [
        f'<figure style="margin:0;width:{width}px">'
        f'<img src="{png_data_uri(shrink_to(image, 2 * width))}" alt="{escape(caption)}" '
        f'style="width:{width}px;height:{width}px;object-fit:contain;background:#000;'
        f'display:block{";image-rendering:pixelated" if max(image.shape) < width else ""}">'
        f'<figcaption style="font-size:0.8rem;color:{escape(color)};margin-top:4px">'
        f'{escape(caption)}</figcaption></figure>'
        for (image, caption), color in zip(images, colors, strict=True)
    ]
    if note:
        figures.append(f'<div style="min-width:{2 * width}px;flex:1">{note}</div>')
    return f'<div style="display:flex;flex-wrap:wrap;gap:12px">{"".join(figures)}</div>'


def shrink_to(image: np.ndarray, side: int) -> np.ndarray:
    """`image` itself when both its sides are at most `side`; else box-filtered down so the
    longer one is `side`, keeping the aspect ratio."""
    if max(image.shape[:2]) <= side:
        return image
    return fit_into_box(np.asarray(image, np.uint8), side)


def upscale(image: np.ndarray, size: int = 112) -> np.ndarray:
    """Nearest-neighbour enlargement so each pixel of a small image stays a crisp square."""
    height, width = image.shape[:2]
    factor = max(1, size // max(height, width))
    return np.kron(image, np.ones((factor, factor), dtype=image.dtype))
