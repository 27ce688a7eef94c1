"""Draw: a digit on a canvas, made into an MNIST image step by step, and classified."""

import numpy as np
import streamlit as st

from mnist_core import plots
from mnist_core.inference import doubt
from serving import draw_ui, roles, ui
from serving.canvas import canvas_steps

ui.page_setup("Draw", ":material/edit:")
st.title("Draw a digit")
teacher = roles.is_teacher()

choice = ui.draw_model()
run = choice.run
if run is None:
    st.warning("**There is no trained model yet**, so there is nothing to classify with.")
    if teacher:
        draw_ui.train_the_default_model()
    else:  # in a big class, each student checks less often (ui.refresh_every)
        st.fragment(draw_ui.wait_for_a_model,
                    run_every=ui.refresh_every(draw_ui.WAIT_FOR_MODEL_EVERY))()
    st.stop()

classifier = ui.classifier_or_error(run)
st.caption(f"Model: {run.label()} · {choice.why}")
better = ui.better_for_drawing(run)
if better is not None:
    who = "You can" if teacher else "The teacher can"
    st.info(f"Run `{better.run_id}` was trained for drawings (pen strokes and augmentation): it "
            f"recognises drawn digits better than this one. {who} choose it on the Train page.")
draw_ui.thumb_sized_buttons()

st.session_state.setdefault("draw_stroke_width", 20)
st.session_state.setdefault("draw_show_naive", False)


@st.fragment
def drawing_panel() -> None:
    """Canvas and prediction. A stroke reruns only this panel, not the whole page."""
    # On a phone the columns stack: canvas, Clear, then the prediction right under them.
    left, right = st.columns([1, 1], gap="large")
    with left:
        canvas = canvas_steps("draw_canvas", st.session_state.draw_stroke_width)
    if canvas.steps is None:
        (right.error if canvas.unreadable else right.info)(canvas.hint)
        return
    if classifier is None:
        return
    steps = canvas.steps
    probabilities = classifier.predict_proba(steps.x)[0]
    digit = int(np.argmax(probabilities))
    draw_ui.remember_last_drawing(steps)
    with right:
        # As few elements as can show it: each one is a message through the server for every
        # stroke of every visitor.
        st.metric("Prediction", digit, delta=f"{probabilities[digit]:.1%}", delta_color="off",
                  delta_arrow="off", delta_description="confidence",
                  help="the digit with the highest probability")
        st.html(draw_ui.unsure_html(doubt(probabilities)) + plots.probabilities_html(probabilities))
        if ui.collecting():
            draw_ui.label_panel(steps, probabilities, digit, run.run_id)
    draw_ui.show_steps(steps)
    if st.session_state.draw_show_naive:
        draw_ui.show_naive(classifier, canvas.drawing, steps, digit)


def pen_options() -> None:
    """Outside the drawing panel: a stroke re-sends only what depends on the drawing."""
    with st.expander("Pen and comparison"):
        st.caption("White on black, like MNIST. Undo is in the canvas toolbar.")
        st.slider("Stroke width", 5, 40, key="draw_stroke_width")
        st.toggle("Compare with a naive downscale of the whole canvas", key="draw_show_naive")


pen_options()
st.space("small")  # room for the canvas's toolbar, which floats above its top edge
drawing_panel()
