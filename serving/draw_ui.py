"""The Draw page's parts: waiting for a model, the MNIST steps and the naive comparison,
the prediction's doubt, and labelling (saving) a drawing for the class."""

from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from mnist_core import plots
from mnist_core.config import MODEL_NAMES, TrainConfig
from mnist_core.data import flatten, normalize
from mnist_core.drawings import (
    DrawingCollectionPaused,
    DrawingRateLimited,
    DrawingStoreError,
    DrawingStoreFull,
)
from mnist_core.inference import Classifier
from mnist_core.preprocess import Steps, naive_downscale, thumbnail_png
from serving import roles, ui

MY_DRAWINGS_KEPT = 100  # ids of this session's own drawings, for the Class drawings page
DEFAULT_TRAINING_TIMEOUT = 600  # seconds the page waits; the training goes on after that
WAIT_FOR_MODEL_EVERY = 3.0  # seconds between a waiting student's checks for the first model
# Thumb-sized label buttons on a phone (48 px is the usual minimum for a touch target), all
# ten digits on screen (wrapped, not scrolled).
THUMB_CSS = """<style>
.st-key-draw_label_choice button, .st-key-draw_confirm button, .st-key-draw_canvas_clear button
  { min-height: 3rem; min-width: 3rem; font-size: 1.2rem; }
.st-key-draw_label_choice div:has(> button) { flex-wrap: wrap; row-gap: 0.5rem; }
</style>"""
UNSURE_STYLE = ("background:#fffbe6;border-left:4px solid #f2b600;border-radius:4px;"
                "padding:0.6rem 0.8rem;margin-bottom:0.8rem;color:#574400")


def thumb_sized_buttons() -> None:
    st.html(THUMB_CSS)


def wait_for_a_model() -> None:
    """Students wait for the teacher's model; the page reloads itself when it is saved."""
    snap = ui.trainer().snapshot()
    if snap.active:
        st.progress(snap.progress, text=f"The teacher is training a model ({snap.progress:.0%})...")
    else:
        st.caption("The teacher has not trained a model yet. This page will use it as soon as "
                   "it is saved.")
    if ui.current_run() is not None:  # the shared scan is at most a second old
        st.rerun()


def train_the_default_model() -> None:
    """The teacher, with no model yet: one button trains the model made for drawings."""
    snap = ui.trainer().snapshot()
    if snap.active:
        st.progress(snap.progress, text=f"A training is running ({snap.progress:.0%})...")
        st.caption("This page will use the model as soon as it is saved.")
        st.button("Refresh")
        return
    config = TrainConfig.for_drawing(origin="draw_page")
    st.markdown(f"Train the model made for drawings now: the {MODEL_NAMES[config.model]}, "
                f"{config.epochs} epochs on digits varied and redrawn with a pen, as people "
                "draw. About 20 seconds on a laptop's CPU, a few seconds on a GPU.")
    if st.button("Train the default model", type="primary") and ui.start_training(config):
        with st.spinner("Training the default model..."):
            snap = ui.trainer().wait(timeout=DEFAULT_TRAINING_TIMEOUT)
        ui.scan.clear()
        if snap.state == "finished":
            st.rerun()
        st.error(snap.error or snap.message or "The training did not finish yet: see the "
                 "Train page.")


def show_steps(steps: Steps) -> None:
    """Steps 1-6 as one element: it is re-sent after every stroke of every visitor."""
    flat = steps.centered.reshape(-1)
    first = int(np.clip(np.argmax(flat) - 1, 0, flat.size - 4))  # a few values where the ink is
    values = " ".join(str(v) for v in flat[first:first + 4])
    normalized = " ".join(f"{v:.2f}" for v in steps.x[0, first:first + 4])
    text = (
        f"<p><b>5. flatten</b>: {flat.size} values in a row, 0-255<br>"
        f"values {first}-{first + 3}: <code>{values}</code></p>"
        f"<p><b>6. normalize</b>: ÷ 255, float32 from 0 to 1, shape "
        f"<code>{steps.x.shape}</code><br>the same values: <code>{normalized}</code></p>"
    )
    st.html("<h3>From your drawing to what the model sees</h3>" + plots.images_html([
        (steps.grayscale, f"1. grayscale {steps.grayscale.shape[1]}x{steps.grayscale.shape[0]}"),
        (steps.cropped,
         f"2. cropped to the ink {steps.cropped.shape[1]}x{steps.cropped.shape[0]}"),
        (steps.fitted, f"3. fitted into 20x20: {steps.fitted.shape[1]}x{steps.fitted.shape[0]}"),
        (steps.centered, "4. centred by mass in 28x28"),
    ], note=text))


def show_naive(classifier: Classifier, drawing: np.ndarray, steps: Steps, digit: int) -> None:
    """The whole canvas squeezed to 28x28, and what the model makes of that instead."""
    naive = naive_downscale(drawing)
    naive_probabilities = classifier.predict_proba(normalize(flatten(naive[None])))[0]
    naive_digit = int(np.argmax(naive_probabilities))
    st.subheader("Without the MNIST steps")
    a, b, c = st.columns([1, 1, 2])
    a.image(plots.upscale(steps.centered, 140), caption=f"MNIST steps → {digit}", clamp=True)
    b.image(plots.upscale(naive, 140), caption=f"whole canvas squeezed → {naive_digit}",
            clamp=True)
    c.metric("Naive prediction", naive_digit,
             delta=None if naive_digit == digit else "differs", delta_color="off")
    c.caption("MNIST digits fill a 20x20 box centred in 28x28. A digit drawn small or "
              "off-centre on the canvas looks nothing like that when simply squeezed.")


def unsure_html(unsure: tuple[int, float] | None) -> str:
    """When the model is unsure, a warning naming the runner-up (above the probabilities)."""
    if unsure is None:
        return ""
    return (f'<div role="status" style="{UNSURE_STYLE}">'
            f"<b>Not sure.</b> It could also be a <b>{unsure[0]}</b> ({unsure[1]:.0%}). "
            "Try drawing it larger or more like a printed digit.</div>")


def remember_last_drawing(steps: Steps) -> None:
    """The visitor's last drawing as the model saw it, (1, 784) float32: the Inside page
    offers it (and checks it there, as any session value)."""
    st.session_state.draw_last_x = steps.x


def remember_my_drawing(drawing_id: int) -> None:
    """This session's own drawings (the newest MY_DRAWINGS_KEPT), for Class drawings."""
    mine = st.session_state.setdefault("draw_my_ids", [])
    mine.append(drawing_id)
    del mine[:-MY_DRAWINGS_KEPT]


def save_label(label: int, steps: Steps, probabilities, key: str, run_id: str) -> None:
    """Button callback: store the drawing the visitor just labelled."""
    st.session_state.draw_label_choice = None
    teacher = roles.is_teacher()
    if not teacher and not roles.connected():  # sent as the socket closed: no address
        st.session_state.draw_store_error = "The connection was lost: reload the page."
        return
    try:
        drawing_id = ui.drawing_store().add(steps.centered, thumbnail_png(steps.grayscale),
                                            label, probabilities, run_id,
                                            visitor=None if teacher else roles.visitor())
    except (DrawingRateLimited, DrawingCollectionPaused, DrawingStoreFull) as exc:
        st.session_state.draw_store_error = str(exc)  # what the visitor can act on
        return
    except DrawingStoreError as exc:  # a fault of the server's disk: details for the teacher
        st.session_state.draw_store_error = str(exc) if teacher else (
            "The class's drawings can't be saved right now; the teacher sees why on the "
            "Class drawings page.")
        return
    st.session_state.draw_store_error = None
    st.session_state.draw_saved = (key, label)
    remember_my_drawing(drawing_id)


def _pick_label(steps: Steps, probabilities, key: str, run_id: str) -> None:
    choice = st.session_state.draw_label_choice
    if choice is not None:
        save_label(int(choice), steps, probabilities, key, run_id)


def label_panel(steps: Steps, probabilities, digit: int, run_id: str) -> None:
    """Confirm the prediction or pick the right digit: one click stores the drawing."""
    key = hashlib.sha1(steps.centered.tobytes()).hexdigest()
    saved = st.session_state.get("draw_saved")
    if st.session_state.get("draw_store_error"):
        st.warning(f"Your label was not saved. {st.session_state.draw_store_error} "
                   "Drawing and predicting still work.")
    if saved and saved[0] == key:
        st.success(f"Saved as a {saved[1]}. Thank you! The class's drawings are on the "
                   "Class drawings page.")
        return
    st.button(f"Yes, it is a {digit}", icon=":material/check:", key="draw_confirm",
              on_click=save_label, args=(digit, steps, probabilities, key, run_id))
    st.pills("No, it is a", list(range(10)), key="draw_label_choice", on_change=_pick_label,
             args=(steps, probabilities, key, run_id))
