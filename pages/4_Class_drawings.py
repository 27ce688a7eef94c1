"""Class drawings: how the model does on what people actually draw, and fine-tuning on it."""

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from mnist_core import plots
from mnist_core.config import BOUNDS, TrainConfig
from mnist_core.data import flatten, normalize
from mnist_core.drawings import (
    DrawingStoreError,
    collection_enabled,
    export_idx_zip,
    export_npz,
)
from mnist_core.evaluate import evaluation
from serving import ui

GALLERY_SIZE = 40
FINE_TUNE_MAX_EPOCHS = 10  # a fine-tune continues a trained run: a few epochs are enough

ui.page_setup("Class drawings", ":material/groups:")
st.title("Class drawings")
st.markdown(
    "Models that score 98-99% on MNIST's test images are often worse on digits people draw. "
    "Every drawing labelled on the **Draw** page lands here: the model's accuracy on them, "
    "next to its accuracy on MNIST, and a fine-tune that learns from them."
)
if not collection_enabled():
    st.info("Collecting drawings is turned off on this server (`MNIST_COLLECT_DRAWINGS=0`). "
            "Drawings already collected are shown below.")

store = ui.drawing_store()
try:
    drawings = store.load()
except DrawingStoreError as exc:
    st.error(str(exc))
    st.stop()
if not len(drawings):
    st.info("No labelled drawings yet. On the **Draw** page, draw a digit, then confirm the "
            "prediction or pick the right digit.")
    st.page_link("pages/3_Draw.py", label="Draw a digit", icon=":material/edit:")
    st.stop()

run = ui.current_run()
if run is None:
    st.warning("There is no trained model to measure: train one on the Train page.")
    st.stop()
classifier = ui.classifier_or_error(run)
if classifier is None:
    st.stop()
probabilities = classifier.predict_proba(normalize(flatten(drawings.images)))
result = evaluation(drawings.labels, probabilities)
predicted = probabilities.argmax(axis=1)

st.caption(f"Model: {run.label()}")
cols = st.columns(3)
cols[0].metric("Labelled drawings", len(drawings))
cols[1].metric("Accuracy on drawings", f"{result.accuracy:.1%}",
               delta=f"{result.accuracy - run.val_accuracy:+.1%} vs MNIST",
               help="the current model re-run on every drawing")
cols[2].metric("Accuracy on MNIST validation", f"{run.val_accuracy:.1%}")

left, right = st.columns(2)
with left:
    st.subheader("Accuracy per digit")
    counts = np.bincount(drawings.labels, minlength=10)
    drawn = [value if counts[d] else None for d, value in enumerate(result.per_class_accuracy)]
    st.altair_chart(plots.per_class_comparison_chart({
        "drawings": drawn,
        "MNIST validation": run.record.evaluation.per_class_accuracy,
    }), width="stretch")
    st.caption("Drawings per digit: " + ", ".join(f"{d}: {c}" for d, c in enumerate(counts)))
with right:
    st.subheader("Confusion matrix of the drawings")
    st.image(ui.png(plots.confusion_figure(result.confusion_matrix)))

st.subheader("The drawings, mistakes first")
digit = st.selectbox("Digit", ["all", *range(10)], key="class_digit")
order = [m.index for m in result.misclassified]
order += [i for i in range(len(drawings)) if predicted[i] == drawings.labels[i]]
if digit != "all":
    order = [i for i in order if drawings.labels[i] == digit]
shown = order[:GALLERY_SIZE]
if shown:
    wrong = [predicted[i] != drawings.labels[i] for i in shown]
    st.image(ui.png(plots.grid_figure(
        drawings.images[shown],
        [f"{drawings.labels[i]}→{predicted[i]}" if w else f"{drawings.labels[i]} ✓"
         for i, w in zip(shown, wrong, strict=True)],
        title_colors=["#c0392b" if w else "#1e8449" for w in wrong],
    ), dpi=90), caption="as the model sees them (28x28): drawn digit → predicted digit")
else:
    st.caption("No drawings of this digit yet.")

with st.expander("Export or delete drawings (for the teacher)"):
    exports = st.columns(2)
    # Built only when clicked: the page reruns often, downloads are rare.
    exports[0].download_button("Download as mnist.npz", partial(export_npz, drawings),
                               file_name="drawings-mnist.npz", mime="application/octet-stream",
                               help="Keras format: held-out drawings as x_test / y_test")
    exports[1].download_button("Download as IDX files (zip)", partial(export_idx_zip, drawings),
                               file_name="drawings-idx.zip", mime="application/zip",
                               help="the same format as MNIST's own files")
    ids = drawings.ids.tolist()
    index = {int(i): n for n, i in enumerate(ids)}
    chosen = st.selectbox(
        "Drawing", ids, key="class_delete_id",
        format_func=lambda i: f"#{i}: drawn {drawings.labels[index[i]]}, predicted "
                              f"{predicted[index[i]]} (by {drawings.run_ids[index[i]]})")
    raw = store.raw_png(chosen)
    if raw and raw.startswith(b"\x89PNG"):
        st.image(raw, caption="the drawing as it was drawn", width=140)
    if st.button("Delete this drawing", icon=":material/delete:"):
        store.delete(chosen)
        st.rerun()
    sure = st.checkbox("I want to delete all drawings", key="class_delete_all_sure")
    if st.button("Delete all drawings", disabled=not sure, type="primary"):
        store.delete_all()
        st.rerun()

st.header("Fine-tune on the class's drawings")
holdout = int(drawings.holdout.sum())
used = len(drawings) - holdout
st.markdown(
    f"Continue training **{run.run_id}** ({run.config.model}) on MNIST plus the **{used}** "
    f"drawings, with **{holdout}** held out (every 5th) to measure the gain. It runs as a "
    "normal training: watch it live on the Train page, stop it there, and it is saved as a "
    "new run that remembers its parent."
)
settings = st.columns(3)
epochs = settings[0].slider("Epochs", BOUNDS["epochs"][0], FINE_TUNE_MAX_EPOCHS, 2,
                            key="class_epochs")
learning_rate = settings[1].number_input("Learning rate", *BOUNDS["learning_rate"], 0.0005,
                                         format="%.5f", key="class_learning_rate")
augment = settings[2].checkbox("Augment (rotate, scale, slant, shift)", value=True,
                               key="class_augment")
if st.button("Fine-tune", type="primary", icon=":material/model_training:", disabled=used == 0):
    config = TrainConfig(model=run.config.model, epochs=epochs, learning_rate=learning_rate,
                         augment=augment, fine_tune_from=run.run_id)
    if ui.start_training(config, drawings.to_npz()):
        st.success("Fine-tuning started.")
    st.page_link("pages/2_Train.py", label="Watch it on the Train page", icon=":material/monitoring:")

tuned = [r for r in ui.scan().usable if r.record.fine_tune]
if tuned:
    st.subheader("Fine-tuned runs")
    st.dataframe(pd.DataFrame([{
        "run": r.run_id,
        "parent": r.record.parent,
        "drawings used": r.record.fine_tune.drawings_train,
        "held out": r.record.fine_tune.drawings_holdout,
        "held-out accuracy before": r.record.fine_tune.accuracy_before,
        "held-out accuracy after": r.record.fine_tune.accuracy_after,
        "MNIST validation": r.val_accuracy,
    } for r in tuned]), hide_index=True, width="stretch")
