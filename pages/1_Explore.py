"""Explore: the notebook's data cells, interactive."""

import numpy as np
import streamlit as st

from mnist_core import plots
from mnist_core.data import categorize, flatten, normalize
from serving import explore_ui, roles, ui

ui.page_setup("Explore", ":material/search:")
st.title("Explore the MNIST data")
data = ui.dataset()
splits = explore_ui.splits()

st.header("The data, as the notebook loads it")
st.code("(x_train, y_train), (x_valid, y_valid) = mnist.load_data()", language="python")
with ui.metric_row():
    st.metric("x_train.shape", str(data.x_train.shape), help="60000 images of 28x28 pixels")
    st.metric("x_valid.shape", str(data.x_valid.shape), help="10000 images set aside")
    st.metric("x_train.dtype", str(data.x_train.dtype), help="unsigned 8-bit integers")
    st.metric("x_train.min()", int(data.x_train.min()))
    st.metric("x_train.max()", int(data.x_train.max()))
if roles.is_teacher():
    st.caption(f"Loaded from `{data.source}`.")


st.header("One image")
pick = st.columns([1, 1, 2])
explore_ui.image_from_link()
split = pick[0].radio("Split", list(splits), key="explore_split", horizontal=True,
                      on_change=explore_ui.image_to_link)
x, y = splits[split]
label_name = explore_ui.label_name(split)
explore_ui.keep_index_within(len(x))
index = pick[1].number_input("Index", min_value=0, max_value=len(x) - 1, step=1,
                             key="explore_index", on_change=explore_ui.image_to_link)
image = x[index]
left, right = st.columns([1, 2])
with left:
    st.image(explore_ui.image_png(split, index), caption="plt.imshow(image, cmap='gray')")
    st.metric(f"{label_name}[{index}]", int(y[index]))
with right:
    with st.expander(f"`{split}[{index}]`: the 28x28 pixel values", expanded=False):
        st.image(explore_ui.pixels_png(split, index))

st.header("Preparing it for training")
flat = flatten(image[None])[0]
normalized = normalize(flat[None])[0]
one_hot = categorize(np.array([y[index]]))[0]
steps = st.columns(3)
with steps[0]:
    st.markdown("**1. Flatten** `reshape(60000, 784)`")
    st.caption(f"shape {flat.shape}, dtype {flat.dtype}: one row of 784 pixels")
    st.image(flat[None].repeat(20, axis=0), clamp=True,
             caption="the 784 pixels in a row")
    st.code(np.array2string(flat[150:170], separator=", "), language=None)
    st.caption("values 150-169 of the 784")
with steps[1]:
    st.markdown("**2. Normalize** `x / 255`")
    st.caption(f"dtype {normalized.dtype}, min {normalized.min():.1f}, max {normalized.max():.1f}")
    st.code(np.array2string(normalized[150:170], precision=2, separator=", "), language=None)
    st.caption("the same 20 values, now between 0 and 1")
with steps[2]:
    st.markdown("**3. Categorize** `to_categorical(y, 10)`")
    st.caption(f"label {y[index]} becomes a one-hot vector of 10")
    st.dataframe(
        {"digit": list(range(10)), "one-hot": one_hot.astype(int).tolist()},
        hide_index=True, height=390,
    )

st.header("Samples")
controls = st.columns([1, 1, 1, 1])
digit = controls[0].selectbox("Digit", ["all", *range(10)], key="explore_digit")
pool = np.arange(len(x)) if digit == "all" else np.flatnonzero(y == digit)
page, pages = explore_ui.sample_page(controls[1:], len(pool))
shown = tuple(int(i) for i in pool[page * explore_ui.GRID_SIZE:(page + 1) * explore_ui.GRID_SIZE])
st.caption(f"page {page + 1} of {pages} · {len(pool):,} {split} images"
           f"{'' if digit == 'all' else f' of the digit {digit}'} · first index {shown[0]}")
st.image(explore_ui.grid_png(split, shown))

st.header("How many of each digit")
st.altair_chart(plots.label_distribution_chart(data.y_train, data.y_valid),
                width="stretch")
