"""Inside the network: one digit through the trained network, layer by layer.

Everything here runs in numpy over the run's saved weights (`mnist_core.inside`); the
server never loads TensorFlow. Pictures for one input are computed once and shared.
"""

import numpy as np
import streamlit as st

from mnist_core import inside, inside_plots
from serving import inside_input_ui, inside_ui, navigation, ui

RUNNER_UP = "the runner-up"

ui.page_setup("Inside the network", ":material/neurology:")
st.html(inside_plots.STYLE)
st.title("Inside the network")
st.markdown("What did the network actually learn? Follow one digit through it, layer by "
            "layer, see what its units look for and which pixels decided, then try to fool it.")

data = ui.dataset()
scan = ui.scan()
params = st.query_params

runs = {run.run_id: run for run in scan.usable}
if not runs:
    st.warning("**There is no trained model yet.** Train one on the Train page (about ten "
               "seconds), then come back to look inside it.")
    navigation.link("pages/2_Train.py", label="Train a model", icon=":material/monitoring:")
    inside_ui.watch_section(None)
    st.stop()

current = ui.current_run()
chosen = params.get("run") if params.get("run") in runs else current.run_id
run_id = st.selectbox("Model", list(runs), index=list(runs).index(chosen),
                      format_func=lambda i: runs[i].label())
if run_id != current.run_id or "run" in params:
    params["run"] = run_id
run = runs[run_id]
key = inside_ui.network_or_message(run)
if key is None:
    inside_ui.watch_section(run)
    st.stop()
net = inside_ui.network(key)

last_drawing = inside_ui.as_input(st.session_state.get("draw_last_x"))
sources = inside_input_ui.sources(last_drawing)
inside_input_ui.start_visit(sources, len(data.x_train))

st.header("Your input", divider="gray")
source_column, seen_column, fool_column = st.columns([1.1, 0.9, 1.1], gap="large")
with source_column:
    original, about = inside_input_ui.choose_input(sources, last_drawing, data)
with fool_column:
    change = inside_input_ui.fool_controls()
if original is None:
    seen_column.info(about)
    inside_ui.watch_section(run)
    st.stop()

first = net.first_kernel_layer
start = inside_ui.start_key(run.path)  # the first layer's weights before training, if saved
has_start = inside_ui.start_kernel(start, first.kernel.shape) is not None
st.session_state.setdefault("inside_units_view", inside_ui.CHANGED)
if not has_start or st.session_state.inside_units_view != inside_ui.CHANGED:
    start = None
x = inside.perturb(original, change).reshape(-1)
view = inside_ui.input_view(key, start, x.tobytes())
with seen_column:
    st.html(inside_plots.figure(
        inside_plots.digit_image(x), "What the network gets",
        f"{about}{', changed' if not change.is_identity else ''}: 28x28 = 784 numbers",
        width=200, alt="the 28x28 input"))
    st.metric("Prediction", view.digit, help="the digit with the highest probability")
    st.caption(f"{view.probabilities[view.digit]:.1%} sure; runner-up {view.runner_up} "
               f"({view.probabilities[view.runner_up]:.1%})")
with fool_column:
    st.markdown("**Where it breaks** (each change alone, from the unchanged input):")
    st.markdown("\n".join(f"- {line}" for line in inside_ui.breaking_sentences(
        key, original.astype(np.float32).tobytes())))

st.header("Layer by layer", divider="gray")
st.caption("Each picture is one layer's output for this input: black = 0 (silent), "
           "pale yellow = the layer's strongest value.")
st.html(view.forward_html)

st.header("What the units look for", divider="gray")
inside_ui.units_section(key, start, view.units_html, has_start)

choice = st.session_state.setdefault("inside_rival", RUNNER_UP)
rival = None if choice in (RUNNER_UP, view.digit) else int(choice)
saliency_html, rival = inside_ui.saliency_html(key, x.tobytes(), rival)
st.header(f"Why a {view.digit} and not a {rival}?", divider="gray")
st.columns([1, 2])[0].selectbox("Compare with", [RUNNER_UP, *range(10)], key="inside_rival",
                                format_func=lambda d: d if d == RUNNER_UP else f"a {d}")
st.html(saliency_html)
st.caption(f"How much each pixel moves the score of {view.digit} against {rival}: the exact "
           "gradient of the network, worked out backwards through every layer. Middle: the ink, "
           "coloured by its vote. Right: where adding ink would change the network's mind.")

inside_ui.watch_section(run)
