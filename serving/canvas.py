"""The drawing canvas of the Draw and Inside pages, read safely, with a Clear button, and
turned into the MNIST steps (`canvas_steps`).

What the browser sends is outside input: `mnist_core.canvas_input.decode_canvas` accepts
only a PNG data URL no larger than the canvas at 4x pixel ratio. Anything else, including a
component value crafted to break the canvas package itself, is `UnreadableDrawing`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import streamlit as st

from mnist_core.canvas_input import UnreadableDrawing, decode_canvas
from mnist_core.preprocess import NOTHING_DRAWN, EmptyDrawing, Steps, mnist_steps

CANVAS_SIZE = 280  # CSS pixels: the canvas, square
log = logging.getLogger(__name__)


def _clear(key: str) -> None:
    st.session_state[f"{key}_generation"] = st.session_state.get(f"{key}_generation", 0) + 1


def clear_button(key: str) -> None:
    """One tap empties the canvas: a new canvas replaces it."""
    st.button("Clear", icon=":material/ink_eraser:", key=f"{key}_clear", on_click=_clear,
              args=(key,), width="stretch")


def digit_canvas(key: str, stroke_width: int) -> np.ndarray | None:
    """White on black, like MNIST. Returns the (H, W, 4) uint8 drawing, None before the
    first stroke; raises UnreadableDrawing for anything but a sane PNG of the canvas."""
    # The package registers its component when imported, which needs a running app.
    from streamlit_drawable_canvas import st_canvas

    generation = st.session_state.get(f"{key}_generation", 0)
    try:
        result = st_canvas(stroke_width=stroke_width, stroke_color="#FFFFFF",
                           background_color="#000000", width=CANVAS_SIZE, height=CANVAS_SIZE,
                           drawing_mode="freedraw", return_image_data=True,
                           key=f"{key}_{generation}")
        # The data URL as the browser sent it (the package's own image_data decodes any
        # image of any size).
        data_url = result._require_image_data_url()
    except Exception as exc:  # a crafted component value breaks the package's parsing
        log.warning("Refused a canvas value: %s: %s", type(exc).__name__, exc)
        raise UnreadableDrawing(f"canvas value: {type(exc).__name__}") from None
    try:
        return decode_canvas(data_url, CANVAS_SIZE, CANVAS_SIZE)
    except UnreadableDrawing as exc:
        log.warning("Refused a drawing: %s", getattr(exc, "reason", exc))
        raise


@dataclass(frozen=True)
class CanvasSteps:
    """What the canvas holds: the drawing and its MNIST steps, or why there are none.

    `drawing` is the (H, W, 4) uint8 canvas (None before the first stroke or when
    unreadable); `steps` its MNIST steps, None when `hint` says why (nothing or too little
    drawn; or, with `unreadable`, what the browser sent could not be read)."""

    drawing: np.ndarray | None
    steps: Steps | None
    hint: str | None = None
    unreadable: bool = False


def canvas_steps(key: str, stroke_width: int) -> CanvasSteps:
    """The canvas and its Clear button, read and turned into the MNIST steps."""
    try:
        drawing = digit_canvas(key, stroke_width)
    except UnreadableDrawing as exc:
        clear_button(key)
        return CanvasSteps(None, None, str(exc), unreadable=True)
    clear_button(key)
    if drawing is None:
        return CanvasSteps(None, None, NOTHING_DRAWN)
    try:
        return CanvasSteps(drawing, mnist_steps(drawing))
    except EmptyDrawing as hint:
        return CanvasSteps(drawing, None, str(hint))
