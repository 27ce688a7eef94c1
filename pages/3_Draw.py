"""Draw: a digit on a canvas, made into an MNIST image step by step, and classified."""

import hashlib

import numpy as np
import streamlit as st

from mnist_core import plots
from mnist_core.canvas_input import UnreadableDrawing
from mnist_core.config import TrainConfig
from mnist_core.data import flatten, normalize
from mnist_core.drawings import (
    DrawingCollectionPaused,
    DrawingRateLimited,
    DrawingStoreError,
    DrawingStoreFull,
)
from mnist_core.inference import doubt
from mnist_core.preprocess import (
    NOTHING_DRAWN,
    EmptyDrawing,
    mnist_steps,
    naive_downscale,
    thumbnail_png,
)
from serving import roles, ui
from serving.canvas import clear_button, digit_canvas

MY_DRAWINGS_KEPT = 100  # ids of this session's own drawings, for the Class drawings page
DEFAULT_TRAINING_TIMEOUT = 600  # seconds this page waits; the training goes on after that
WAIT_FOR_MODEL_EVERY = 3.0  # seconds between a waiting student's checks for the first model
# Thumb-sized label buttons on a phone (48 px is the usual minimum for a touch target), all
# ten digits on screen (wrapped, not scrolled).
THUMB_CSS = """<style>
.st-key-draw_label_choice button, .st-key-draw_confirm button, .st-key-draw_canvas_clear button
  { min-height: 3rem; min-width: 3rem; font-size: 1.2rem; }
.st-key-draw_label_choice div:has(> button) { flex-wrap: wrap; row-gap: 0.5rem; }
</style>"""

ui.page_setup("Draw", ":material/edit:")
st.title("Draw a digit")
teacher = roles.is_teacher()


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
    st.markdown("Train the notebook's network for drawings now (8 epochs on digits varied "
                "and redrawn with a pen, as people draw): about 20 seconds on this "
                "server's CPU, a few seconds on a GPU.")
    config = TrainConfig.for_drawing(origin="draw_page")
    if st.button("Train the default model", type="primary") and ui.start_training(config):
        with st.spinner("Training the default model..."):
            snap = ui.trainer().wait(timeout=DEFAULT_TRAINING_TIMEOUT)
        ui.scan.clear()
        if snap.state == "finished":
            st.rerun()
        st.error(snap.error or snap.message or "The training did not finish yet: see the "
                 "Train page.")


choice = ui.draw_model()
run = choice.run
if run is None:
    st.warning("**There is no trained model yet**, so there is nothing to classify with.")
    if teacher:
        train_the_default_model()
    else:  # in a big class, each student checks less often (ui.refresh_every)
        st.fragment(wait_for_a_model, run_every=ui.refresh_every(WAIT_FOR_MODEL_EVERY))()
    st.stop()

classifier = ui.classifier_or_error(run)
st.caption(f"Model: {run.label()} · {choice.why}")
better = ui.better_for_drawing(run)
if better is not None:
    who = "You can" if teacher else "The teacher can"
    st.info(f"Run `{better.run_id}` was trained for drawings (pen strokes and augmentation): it "
            f"recognises drawn digits better than this one. {who} choose it on the Train page.")
st.html(THUMB_CSS)

st.session_state.setdefault("draw_stroke_width", 20)
st.session_state.setdefault("draw_show_naive", False)


def show_steps(steps) -> None:
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


def show_naive(drawing, steps, digit: int) -> None:
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


def save_label(label: int, steps, probabilities, key: str) -> None:
    """Button callback: store the drawing the visitor just labelled."""
    st.session_state.draw_label_choice = None
    if not teacher and not roles.connected():  # sent as the socket closed: no address
        st.session_state.draw_store_error = "The connection was lost: reload the page."
        return
    try:
        drawing_id = ui.drawing_store().add(steps.centered, thumbnail_png(steps.grayscale),
                                            label, probabilities, run.run_id,
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
    mine = st.session_state.setdefault("draw_my_ids", [])
    mine.append(drawing_id)
    del mine[:-MY_DRAWINGS_KEPT]


def label_panel(steps, probabilities, digit: int) -> None:
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
              on_click=save_label, args=(digit, steps, probabilities, key))
    st.pills("No, it is a", list(range(10)), key="draw_label_choice", on_change=pick_label,
             args=(steps, probabilities, key))


def unsure_html(unsure: tuple[int, float] | None) -> str:
    """When the model is unsure, a warning naming the runner-up (above the probabilities)."""
    if unsure is None:
        return ""
    return ('<div role="status" style="background:#fffbe6;border-left:4px solid #f2b600;'
            'border-radius:4px;padding:0.6rem 0.8rem;margin-bottom:0.8rem;color:#574400">'
            f"<b>Not sure.</b> It could also be a <b>{unsure[0]}</b> ({unsure[1]:.0%}). "
            "Try drawing it larger or more like a printed digit.</div>")


def pick_label(steps, probabilities, key: str) -> None:
    choice = st.session_state.draw_label_choice
    if choice is not None:
        save_label(int(choice), steps, probabilities, key)


@st.fragment
def drawing_panel() -> None:
    """Canvas and prediction. A stroke reruns only this panel, not the whole page."""
    # On a phone the columns stack: canvas, Clear, then the prediction right under them.
    left, right = st.columns([1, 1], gap="large")
    with left:
        try:
            drawing, unreadable = digit_canvas("draw_canvas",
                                               st.session_state.draw_stroke_width), None
        except UnreadableDrawing as exc:
            drawing, unreadable = None, exc
        clear_button("draw_canvas")
    if unreadable is not None:
        right.error(str(unreadable))
        return
    try:
        if drawing is None:
            raise EmptyDrawing(NOTHING_DRAWN)
        steps = mnist_steps(drawing)
    except EmptyDrawing as hint:
        right.info(str(hint))
        return
    if classifier is None:
        return
    probabilities = classifier.predict_proba(steps.x)[0]
    digit = int(np.argmax(probabilities))
    st.session_state.draw_last_x = steps.x  # (1, 784) float32: the Inside page shows it
    with right:
        # As few elements as can show it: each one is a message through the server for every
        # stroke of every visitor.
        st.metric("Prediction", digit, delta=f"{probabilities[digit]:.1%}", delta_color="off",
                  delta_arrow="off", delta_description="confidence",
                  help="the digit with the highest probability")
        st.html(unsure_html(doubt(probabilities)) + plots.probabilities_html(probabilities))
        if ui.collecting():
            label_panel(steps, probabilities, digit)
    show_steps(steps)
    if st.session_state.draw_show_naive:
        show_naive(drawing, steps, digit)


def pen_options() -> None:
    """Outside the drawing panel: a stroke re-sends only what depends on the drawing."""
    with st.expander("Pen and comparison"):
        st.caption("White on black, like MNIST. Undo is in the canvas toolbar.")
        st.slider("Stroke width", 5, 40, key="draw_stroke_width")
        st.toggle("Compare with a naive downscale of the whole canvas", key="draw_show_naive")


pen_options()
st.space("small")  # room for the canvas's toolbar, which floats above its top edge
drawing_panel()
