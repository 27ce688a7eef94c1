"""Inside the network: one digit through the trained network, layer by layer.

Everything here runs in numpy over the run's saved weights (`mnist_core.inside`); the
server never loads TensorFlow. Pictures for one input are computed once and shared.
"""

import numpy as np
import streamlit as st

from mnist_core import inside, inside_plots
from mnist_core.canvas_input import UnreadableDrawing
from mnist_core.data import normalize
from mnist_core.preprocess import NOTHING_DRAWN, EmptyDrawing, mnist_steps
from serving import inside_ui, ui
from serving.canvas import clear_button, digit_canvas

INSIDE_STROKE_WIDTH = 20
DRAW, LAST, MNIST = "Draw here", "My last drawing on Draw", "An MNIST image"
SPLITS = ("x_valid", "x_train")
ANY_DIGIT = "any"
UNITS_PER_PAGE = 64
CHANGED, WHOLE = "what training changed", "the whole weights"
RUNNER_UP = "the runner-up"

ui.page_setup("Inside the network", ":material/neurology:")
st.html(inside_plots.STYLE)
st.title("Inside the network")
st.markdown("What did the network actually learn? Follow one digit through it, layer by "
            "layer, see what its units look for and which pixels decided, then try to fool it.")

data = ui.dataset()
scan = ui.scan()
training = ui.trainer().snapshot()
params = st.query_params


def watch_features_form(run_dir, live: bool) -> None:
    """The snapshots the worker saved while training: a slider, or the newest while live."""
    found = inside_ui.snapshots(run_dir)
    if not found.items:
        st.info("Nothing to show yet: snapshots appear after the first batch of a training."
                if live else "This run has no snapshots: it was trained before they were "
                "saved. Train a new one (5 seconds are enough) to watch its features form.")
        return
    steps = [s.step for s in found.items]
    if live:
        step = steps[-1]
        st.caption(f":material/radio_button_checked: Live: a training is running, this is "
                   f"its newest snapshot, after {step} batches.")
    else:
        step = st.select_slider("After how many batches", steps, value=steps[-1],
                                key=f"inside_step_{run_dir.name}")
    shown = next(s for s in found.items if s.step == step)
    left, right = st.columns([1, 1.3], gap="large")
    with left:
        view = st.radio("Show", [CHANGED, WHOLE], key="inside_snapshot_view", horizontal=True,
                        help="The random starting weights hide what was learned: the change "
                             "since the start shows it.")
    units, predictions = inside_ui.snapshot_pictures(found.run_dir, found.listing, step,
                                                     view == CHANGED)
    kind = "units" if shown.layer.startswith("dense") else "filters"
    what = "change since the start" if view == CHANGED else "weights"
    left.html(inside_plots.figure(
        units, f"{len(shown.units)} {kind} of {shown.layer}: {what}",
        f"after {step} batches ({shown.epoch:.2f} epochs). Red: up, blue: down.",
        width=300, alt=f"first-layer {kind} after {step} batches"))
    with right:
        if predictions:
            st.markdown("**Its predictions on the same 40 validation images** "
                        "(green: right, red: wrong)")
            st.html(predictions)
        if len(found.accuracy()) > 1:
            st.altair_chart(inside_plots.growth_chart(found.accuracy(), step))
    if found.skipped:
        st.caption(f"Skipped unreadable files: {', '.join(found.skipped[:5])}")


def watch_section(run) -> None:
    st.header("Watch the features form", divider="gray")
    live = training.active and training.run_id is not None
    run_dir = ui.store().root / training.run_id if live else run.path if run else None
    if run_dir is None:
        st.info("Train a model to watch its features form.")
        return

    @st.fragment(run_every=ui.refresh_every(1.0) if live else None)
    def panel():
        if live and not ui.trainer().snapshot().active:
            st.rerun()  # the training ended: show the saved run with its slider
        watch_features_form(run_dir, live)

    panel()


runs = {run.run_id: run for run in scan.usable}
if not runs:
    st.warning("**There is no trained model yet.** Train one on the Train page (about ten "
               "seconds), then come back to look inside it.")
    st.page_link("pages/2_Train.py", label="Train a model", icon=":material/monitoring:")
    watch_section(None)
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
    watch_section(run)
    st.stop()
net = inside_ui.network(key)

last_drawing = inside_ui.as_input(st.session_state.get("draw_last_x"))
sources = [DRAW, *([LAST] if last_drawing is not None else []), MNIST]
if "inside_source" not in st.session_state:  # first run of this visit: a shared link sets it up
    st.session_state.inside_split = params.get("split") if params.get("split") in SPLITS else SPLITS[0]
    st.session_state.inside_index = ui.whole_number(params.get("index"), len(data.x_train)) or 0
    st.session_state.inside_source = MNIST if "index" in params or last_drawing is None else LAST
elif st.session_state.inside_source not in sources:
    st.session_state.inside_source = MNIST
for name in ("shift_x", "shift_y", "thickness"):
    st.session_state.setdefault(f"inside_{name}", 0)
st.session_state.setdefault("inside_rotation", 0)
st.session_state.setdefault("inside_noise", 0.0)
st.session_state.setdefault("inside_digit", ANY_DIGIT)


def pick_random() -> None:
    """Button callback: a random image of the split, of the chosen digit if one is."""
    labels = data.y_train if st.session_state.inside_split == "x_train" else data.y_valid
    digit = st.session_state.inside_digit
    pool = np.arange(len(labels)) if digit == ANY_DIGIT else np.flatnonzero(labels == digit)
    st.session_state.inside_index = int(np.random.default_rng().choice(pool))


def reset_changes() -> None:
    for name in ("shift_x", "shift_y", "rotation", "thickness", "noise"):
        st.session_state[f"inside_{name}"] = 0.0 if name == "noise" else 0


def choose_input():
    """The picked input as (784,) float32 in [0, 1] and a few words on it, or (None, hint)."""
    source = st.radio("Look inside with", sources, key="inside_source", horizontal=True)
    if source == DRAW:
        st.caption("One digit, as large as the square, white on black like MNIST. Undo is in "
                   "the canvas toolbar.")
        try:
            drawing = digit_canvas("inside_canvas", INSIDE_STROKE_WIDTH)
        except UnreadableDrawing as exc:
            return None, str(exc)
        clear_button("inside_canvas")
        try:
            if drawing is None:
                raise EmptyDrawing(NOTHING_DRAWN)
            return mnist_steps(drawing).x[0], "your drawing"
        except EmptyDrawing as hint:
            return None, str(hint)
    if source == LAST:
        return last_drawing, "your last drawing on the Draw page"
    split = st.radio("Split", SPLITS, key="inside_split", horizontal=True)
    images = data.x_train if split == "x_train" else data.x_valid
    labels = data.y_train if split == "x_train" else data.y_valid
    st.session_state.inside_index = min(st.session_state.inside_index, len(images) - 1)
    a, b = st.columns(2)
    index = a.number_input("Index", 0, len(images) - 1, key="inside_index")
    b.selectbox("Digit", [ANY_DIGIT, *range(10)], key="inside_digit", on_change=pick_random)
    st.button("Random image", icon=":material/shuffle:", on_click=pick_random)
    params.update(split=split, index=str(index))
    return normalize(images[index].reshape(-1)), f"{split}[{index}], labelled {labels[index]}"


SLIDERS = {  # key: (label, low, high, step)
    "shift_x": ("Shift right (px)", -inside.MAX_SHIFT, inside.MAX_SHIFT, 1),
    "shift_y": ("Shift down (px)", -inside.MAX_SHIFT, inside.MAX_SHIFT, 1),
    "rotation": ("Turn anticlockwise (°)", -inside.MAX_ROTATION, inside.MAX_ROTATION, 5),
    "thickness": ("Thicker / thinner", -inside.MAX_THICKNESS, inside.MAX_THICKNESS, 1),
    "noise": ("Noise", 0.0, inside.MAX_NOISE, 0.05),
}


def slider(column, name: str) -> None:
    label, low, high, step = SLIDERS[name]
    column.slider(label, low, high, step=step, key=f"inside_{name}")


def fool_controls() -> inside.Perturbation:
    st.subheader("Try to fool it")
    # Two sliders a row, so on a phone (one column) they keep this order.
    for left, right in (("shift_x", "shift_y"), ("rotation", "thickness"), ("noise", None)):
        a, b = st.columns(2)
        slider(a, left)
        if right:
            slider(b, right)
    b.button("Undo changes", icon=":material/undo:", on_click=reset_changes)
    s = st.session_state
    return inside.Perturbation(s.inside_shift_x, s.inside_shift_y, float(s.inside_rotation),
                               s.inside_thickness, float(s.inside_noise))


def units_view_choice() -> None:
    if has_start:
        st.radio("Show", [CHANGED, WHOLE], key="inside_units_view", horizontal=True,
                 help="Training starts from random weights, which hide the pattern; what it "
                      "changed is what it learned. The outputs always use the whole weights.")


st.header("Your input", divider="gray")
source_column, seen_column, fool_column = st.columns([1.1, 0.9, 1.1], gap="large")
with source_column:
    original, about = choose_input()
with fool_column:
    change = fool_controls()
if original is None:
    seen_column.info(about)
    watch_section(run)
    st.stop()

first = net.first_kernel_layer
start = inside_ui.start_key(run.path)  # the first layer's weights before training, if saved
has_start = inside_ui.start_kernel(start, first.kernel.shape) is not None
st.session_state.setdefault("inside_units_view", CHANGED)
if not has_start or st.session_state.inside_units_view != CHANGED:
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
if first.kind == "Dense":
    st.markdown(f"Each unit of `{first.name}` multiplies the 784 pixels by its own 784 weights "
                "and adds them up (plus a bias; below zero it outputs 0). Drawn as a 28x28 "
                "picture, the weights show what it looks for: **red** where ink raises its "
                "output, **blue** where ink lowers it. Next to them, its weights times this "
                "input: the red and blue that add up to its output. The units most active on "
                "this input:")
    units_view_choice()
    st.html(view.units_html)
    with st.expander(f"All {first.kernel.shape[1]} units of {first.name}"):
        pages = -(-first.kernel.shape[1] // UNITS_PER_PAGE)
        page = st.slider("Page", 1, pages, key="inside_units_page")
        first_unit = (page - 1) * UNITS_PER_PAGE
        st.html(inside_plots.figure(
            inside_ui.weights_page_image(key, start, first_unit, UNITS_PER_PAGE),
            f"units {first_unit} to {first_unit + UNITS_PER_PAGE - 1}",
            "8 a row, each on its own scale", width=520,
            alt=f"weights of units {first_unit} to {first_unit + UNITS_PER_PAGE - 1}"))
else:
    st.markdown(f"Each filter of `{first.name}` is a 3x3 patch of weights slid over the "
                "image: **red** where ink raises its output, **blue** where ink lowers it. "
                "Its feature map lights up where the image looks like the filter. The filters "
                "most active on this input, each next to its map:")
    units_view_choice()
    st.html(view.units_html)
    st.html(inside_plots.figure(inside_ui.filters_image(key, start), f"all {first.kernel.shape[-1]} "
                                f"filters of {first.name}", "one shared scale", width=400))
    st.caption("The next convolution's filters each look at all the maps of this one at "
               "once: too many numbers to draw as pictures, so see their maps above.")

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

watch_section(run)
