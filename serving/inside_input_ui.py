"""The input of the "Inside the network" page: what to look inside with (a drawing on the
canvas, the last drawing of the Draw page, or an MNIST image, from a shared link or picked),
and the changes that try to fool the network."""

from __future__ import annotations

import numpy as np
import streamlit as st

from mnist_core import inside
from mnist_core.data import NUM_CLASSES, Mnist, normalize
from serving import ui
from serving.canvas import canvas_steps

INSIDE_STROKE_WIDTH = 20
DRAW, LAST, MNIST = "Draw here", "My last drawing on Draw", "An MNIST image"
SPLITS = ("x_valid", "x_train")
ANY_DIGIT = "any"
SLIDERS = {  # key: (label, low, high, step)
    "shift_x": ("Shift right (px)", -inside.MAX_SHIFT, inside.MAX_SHIFT, 1),
    "shift_y": ("Shift down (px)", -inside.MAX_SHIFT, inside.MAX_SHIFT, 1),
    "rotation": ("Turn anticlockwise (°)", -inside.MAX_ROTATION, inside.MAX_ROTATION, 5),
    "thickness": ("Thicker / thinner", -inside.MAX_THICKNESS, inside.MAX_THICKNESS, 1),
    "noise": ("Noise", 0.0, inside.MAX_NOISE, 0.05),
}


def sources(last_drawing: np.ndarray | None) -> list[str]:
    """The inputs offered: the last Draw drawing only when this session has one."""
    return [DRAW, *([LAST] if last_drawing is not None else []), MNIST]


def start_visit(offered: list[str], size: int) -> None:
    """The widgets' first values for this visit: a shared link (`?split=&index=`) opens at
    its image, else the last drawing when there is one; a source no longer offered falls
    back to MNIST. `size` bounds the link's index."""
    params = st.query_params
    if "inside_source" not in st.session_state:
        split = params.get("split")
        st.session_state.inside_split = split if split in SPLITS else SPLITS[0]
        st.session_state.inside_index = ui.whole_number(params.get("index"), size) or 0
        st.session_state.inside_source = (MNIST if "index" in params or LAST not in offered
                                          else LAST)
    elif st.session_state.inside_source not in offered:
        st.session_state.inside_source = MNIST
    for name in ("shift_x", "shift_y", "thickness", "rotation"):
        st.session_state.setdefault(f"inside_{name}", 0)
    st.session_state.setdefault("inside_noise", 0.0)
    st.session_state.setdefault("inside_digit", ANY_DIGIT)


def _pick_random(data: Mnist) -> None:
    """Button callback: a random image of the split, of the chosen digit if one is."""
    labels = data.y_train if st.session_state.inside_split == "x_train" else data.y_valid
    digit = st.session_state.inside_digit
    pool = np.arange(len(labels)) if digit == ANY_DIGIT else np.flatnonzero(labels == digit)
    st.session_state.inside_index = int(np.random.default_rng().choice(pool))


def _reset_changes() -> None:
    for name in SLIDERS:
        st.session_state[f"inside_{name}"] = 0.0 if name == "noise" else 0


def choose_input(offered: list[str], last_drawing: np.ndarray | None, data: Mnist):
    """The picked input as (784,) float32 in [0, 1] and a few words on it, or (None, hint)."""
    source = st.radio("Look inside with", offered, key="inside_source", horizontal=True)
    if source == DRAW:
        st.caption("One digit, as large as the square, white on black like MNIST. Undo is in "
                   "the canvas toolbar.")
        canvas = canvas_steps("inside_canvas", INSIDE_STROKE_WIDTH)
        if canvas.steps is None:
            return None, canvas.hint
        return canvas.steps.x[0], "your drawing"
    if source == LAST:
        return last_drawing, "your last drawing on the Draw page"
    split = st.radio("Split", SPLITS, key="inside_split", horizontal=True)
    images = data.x_train if split == "x_train" else data.x_valid
    labels = data.y_train if split == "x_train" else data.y_valid
    st.session_state.inside_index = min(st.session_state.inside_index, len(images) - 1)
    a, b = st.columns(2)
    index = a.number_input("Index", 0, len(images) - 1, key="inside_index")
    b.selectbox("Digit", [ANY_DIGIT, *range(NUM_CLASSES)], key="inside_digit",
                on_change=_pick_random, args=(data,))
    st.button("Random image", icon=":material/shuffle:", on_click=_pick_random, args=(data,))
    st.query_params.update(split=split, index=str(index))
    return normalize(images[index].reshape(-1)), f"{split}[{index}], labelled {labels[index]}"


def _slider(column, name: str) -> None:
    label, low, high, step = SLIDERS[name]
    column.slider(label, low, high, step=step, key=f"inside_{name}")


def fool_controls() -> inside.Perturbation:
    st.subheader("Try to fool it")
    # Two sliders a row, so on a phone (one column) they keep this order.
    for left, right in (("shift_x", "shift_y"), ("rotation", "thickness"), ("noise", None)):
        a, b = st.columns(2)
        _slider(a, left)
        if right:
            _slider(b, right)
    b.button("Undo changes", icon=":material/undo:", on_click=_reset_changes)
    s = st.session_state
    return inside.Perturbation(s.inside_shift_x, s.inside_shift_y, float(s.inside_rotation),
                               s.inside_thickness, float(s.inside_noise))
