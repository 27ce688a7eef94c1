"""Class drawings: how the model does on what people actually draw, and fine-tuning on it.

Everyone sees the class's results as numbers and their own drawings; the gallery of all
drawings, export, deletion and fine-tuning are the teacher's."""

import numpy as np
import streamlit as st

from mnist_core import plots
from mnist_core.drawings import DrawingStoreError
from serving import class_ui, navigation, roles, ui

ui.page_setup("Class drawings", ":material/groups:")
st.title("Class drawings")
st.markdown(
    "Models that score 98-99% on MNIST's test images are often worse on digits people draw. "
    "Every drawing labelled on the **Draw** page lands here: the model's accuracy on them, "
    "next to its accuracy on MNIST, and a fine-tune that learns from them."
)
teacher = roles.is_teacher()
store = ui.drawing_store()

try:
    revision = store.revision()
except DrawingStoreError as exc:
    ui.problem(str(exc), "The class's drawings can't be read right now; the teacher sees why "
                         "on this page.")
    st.stop()
if teacher:
    class_ui.collecting_switch()
if revision[0] == 0:
    st.info("No labelled drawings yet. On the **Draw** page, draw a digit, then confirm the "
            "prediction or pick the right digit.")
    navigation.link("pages/3_Draw.py", label="Draw a digit", icon=":material/edit:")
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
    class_ui.export_and_delete(len(result.labels))
    class_ui.fine_tune(run, result)
else:
    class_ui.own_drawings()
class_ui.fine_tuned_runs(ui.scan())

