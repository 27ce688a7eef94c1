"""Class drawings: how the model does on what people actually draw, and fine-tuning on it.

Everyone sees the class's results as numbers and their own drawings; the gallery of all
drawings, export, deletion and fine-tuning are the teacher's."""

import numpy as np
import pandas as pd
import streamlit as st

from mnist_core import plots
from mnist_core.config import BOUNDS, TrainConfig
from mnist_core.drawings import DrawingStoreError, collection_enabled
from serving import class_ui, roles, ui

OWN_SHOWN = 24  # a student's own drawings shown, newest first
FINE_TUNE_MAX_EPOCHS = 10  # a fine-tune continues a trained run: a few epochs are enough

ui.page_setup("Class drawings", ":material/groups:")
st.title("Class drawings")
st.markdown(
    "Models that score 98-99% on MNIST's test images are often worse on digits people draw. "
    "Every drawing labelled on the **Draw** page lands here: the model's accuracy on them, "
    "next to its accuracy on MNIST, and a fine-tune that learns from them."
)
teacher = roles.is_teacher()
store = ui.drawing_store()


def collecting_switch() -> None:
    if not collection_enabled():
        st.info("Collecting drawings is turned off on this server (`MNIST_COLLECT_DRAWINGS=0`). "
                "Drawings already collected are shown below.")
        return
    try:
        on = store.collecting()
    except DrawingStoreError as exc:
        st.error(str(exc))
        return
    st.toggle("Collect the class's drawings", value=on, key=f"class_collecting_{on}",
              on_change=lambda: class_ui.set_collecting(not on),
              help="Pause it and the Draw page still predicts, but labels are not saved.")


def own_drawings() -> None:
    """A student's own drawings, from this session."""
    mine = st.session_state.get("draw_my_ids", [])[-OWN_SHOWN:][::-1]
    st.subheader("Your drawings")
    if not mine:
        st.caption("The digits you label on the Draw page appear here.")
        return
    pictures = [(png, f"#{i}") for i in mine if (png := store.thumbnail(i)) is not None]
    st.image([p for p, _ in pictures], caption=[c for _, c in pictures], width=70)


def export_and_delete(count: int) -> None:
    with st.expander("Export or delete drawings"):
        exports = st.columns(2)
        for column, kind, label in ((exports[0], "npz", "Prepare mnist.npz"),
                                    (exports[1], "idx", "Prepare IDX files (zip)")):
            column.button(label, key=f"class_prepare_{kind}", on_click=class_ui.prepare_export,
                          args=(kind,), help="held-out drawings as x_test / y_test")
        prepared = st.session_state.get("class_export")
        if prepared:
            kind, data = prepared
            file_name, mime, _ = class_ui.EXPORTS[kind]
            st.download_button(f"Download {file_name}", data, file_name=file_name, mime=mime,
                               on_click="ignore")
        drawing_id = st.number_input("Drawing #", min_value=1, step=1, key="class_delete_id")
        png = store.thumbnail(int(drawing_id))
        if png is None:
            st.caption("No drawing with this number.")
        else:
            st.image(png, caption="the drawing as it was drawn", width=140)
            st.button("Delete this drawing", icon=":material/delete:", key="class_delete",
                      on_click=class_ui.delete_drawing, args=(int(drawing_id),))
        sure = st.checkbox(f"I want to delete all {count:,} drawings", key="class_delete_all_sure")
        st.button("Delete all drawings", disabled=not sure, type="primary",
                  on_click=class_ui.delete_all)


def fine_tune(run, result) -> None:
    st.header("Fine-tune on the class's drawings")
    used = len(result.labels) - result.holdout
    st.markdown(
        f"Continue training **{run.run_id}** ({run.config.model}) on MNIST plus the **{used}** "
        f"drawings, with **{result.holdout}** held out (every 5th) to measure the gain. It runs "
        "as a normal training: watch it live on the Train page, stop it there, and it is saved "
        "as a new run that remembers its parent.")
    settings = st.columns(3)
    epochs = settings[0].slider("Epochs", BOUNDS["epochs"][0], FINE_TUNE_MAX_EPOCHS, 2,
                                key="class_epochs")
    learning_rate = settings[1].number_input("Learning rate", *BOUNDS["learning_rate"], 0.0005,
                                             format="%.5f", key="class_learning_rate")
    augment = settings[2].checkbox("Augment (rotate, scale, slant, shift)", value=True,
                                   key="class_augment")
    if st.button("Fine-tune", type="primary", icon=":material/model_training:",
                 disabled=used == 0):
        config = TrainConfig(model=run.config.model, epochs=epochs, learning_rate=learning_rate,
                             augment=augment, fine_tune_from=run.run_id, origin="fine_tune")
        data = class_ui.fine_tune_data()
        if data is not None and ui.start_training(config, data):
            st.success("Fine-tuning started.")
        st.page_link("pages/2_Train.py", label="Watch it on the Train page",
                     icon=":material/monitoring:")


try:
    revision = store.revision()
except DrawingStoreError as exc:
    ui.problem(str(exc), "The class's drawings can't be read right now; the teacher sees why "
                         "on this page.")
    st.stop()
if teacher:
    collecting_switch()
if revision[0] == 0:
    st.info("No labelled drawings yet. On the **Draw** page, draw a digit, then confirm the "
            "prediction or pick the right digit.")
    st.page_link("pages/3_Draw.py", label="Draw a digit", icon=":material/edit:")
    st.stop()
run = ui.current_run()
if run is None:
    st.warning("There is no trained model to measure: train one on the Train page.")
    st.stop()
if ui.classifier_or_error(run) is None:
    st.stop()
result = class_ui.result(run, revision)

st.caption(f"Model: {run.label()}")
with ui.metric_row():
    st.metric("Labelled drawings", f"{len(result.labels):,}")
    st.metric("Accuracy on drawings", f"{result.evaluation.accuracy:.1%}",
              delta=f"{result.evaluation.accuracy - run.val_accuracy:+.1%} vs MNIST",
              help="the current model re-run on every drawing")
    st.metric("Accuracy on MNIST validation", f"{run.val_accuracy:.1%}")

left, right = st.columns(2)
with left:
    st.subheader("Accuracy per digit")
    counts = np.bincount(result.labels, minlength=10)
    drawn = [value if counts[d] else None
             for d, value in enumerate(result.evaluation.per_class_accuracy)]
    st.altair_chart(plots.per_class_comparison_chart({
        "drawings": drawn,
        "MNIST validation": run.record.evaluation.per_class_accuracy,
    }), width="stretch")
    st.caption("Drawings per digit: " + ", ".join(f"{d}: {c}" for d, c in enumerate(counts)))
with right:
    st.subheader("Confusion matrix of the drawings")
    st.image(ui.confusion_png(result.evaluation.confusion_matrix))

if teacher:
    class_ui.gallery(result)
    export_and_delete(len(result.labels))
    fine_tune(run, result)
else:
    own_drawings()

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
