"""Home: what the app is, what the server has right now (data, model, device, training), and
for the teacher, where students join."""

import datetime

import streamlit as st

from mnist_core.devices import training_device
from serving import classroom_ui, navigation, roles, ui

ui.page_setup("Home", ":material/home:")

st.title("MNIST classroom")
st.markdown(
    "The *Hello World* of deep learning, interactive: look at the 70,000 handwritten digits "
    "of MNIST, train the workshop notebook's neural network live and watch it learn, then "
    "draw your own digits and see what it thinks they are."
)

if roles.is_teacher():
    classroom_ui.join_panel()

data = ui.dataset()
scan = ui.scan()
run = ui.current_run()
snap = ui.trainer().snapshot()

col_data, col_model, col_device = st.columns(3)
with col_data:
    st.subheader("Dataset")
    st.metric("Images", f"{len(data.x_train):,} + {len(data.x_valid):,}",
              help="x_train (training) + x_valid (validation)")
    st.markdown(
        f"`x_train` {data.x_train.shape} `{data.x_train.dtype}`, "
        f"values {data.x_train.min()}-{data.x_train.max()}  \n"
        f"`x_valid` {data.x_valid.shape}"
        + (f"  \nfrom `{data.source}`" if roles.is_teacher() else "")
    )
with col_model:
    st.subheader("Current model")
    if run is None:
        st.metric("Validation accuracy", "no model yet")
        st.markdown("Train one on the **Train** page (about ten seconds).")
    else:
        finished = datetime.datetime.fromtimestamp(run.record.finished)
        st.metric("Validation accuracy", f"{run.val_accuracy:.2%}")
        epochs = run.record.epochs_completed
        st.markdown(
            f"`{run.config.model}`, {epochs} epoch{'' if epochs == 1 else 's'}, "
            f"batch {run.config.batch_size}  \ntrained {finished:%Y-%m-%d %H:%M} "
            f"on {run.record.device}  \nrun `{run.run_id}`"
        )
with col_device:
    st.subheader("Training device")
    kind, label = training_device()
    st.metric("Trains on", kind)
    st.markdown(label)

if snap.notice:
    st.info(snap.notice)
if snap.active:
    st.info(
        f"**A training is running** ({snap.config.model}, epoch {snap.epoch}/"
        f"{snap.config.epochs}, {snap.progress:.0%}). Everyone can watch it live on the "
        "Train page."
    )
    st.progress(snap.progress)

st.divider()
st.subheader("Pages")

navigation.home_links()
if roles.is_teacher():
    ui.show_skipped(scan)

st.caption(
    "MNIST by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, CC BY-SA 3.0. "
    "Shipped with the app, so it works offline."
)
