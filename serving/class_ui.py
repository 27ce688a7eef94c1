"""The Class drawings page's shared work: the current model measured on every drawing (once
per model and per change of the drawings, for all visitors), and the teacher's actions on
the collection, each checking the role where it acts; and the page's teacher panels."""

from __future__ import annotations

from dataclasses import dataclass

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
from mnist_core.evaluate import Evaluation, evaluation
from mnist_core.runs.store import Run, Scan
from serving import navigation, roles, ui

PREDICT_BATCH = 4096  # drawings per ONNX call: bounded memory whatever the collection
GALLERY_SIZE = 40  # drawings a page of the gallery shows
GALLERY_COLUMNS = 8
OWN_SHOWN = 24  # a student's own drawings shown, newest first
FINE_TUNE_MAX_EPOCHS = 10  # a fine-tune continues a trained run: a few epochs are enough
GALLERY_PICTURE = 56  # CSS pixels a drawing is shown at: small, on a projector too


@dataclass(frozen=True)
class DrawingsResult:
    """The current model on every drawing, oldest first."""

    ids: np.ndarray  # (N,) int64
    images: np.ndarray  # (N, 28, 28) uint8, as the model sees them
    labels: np.ndarray  # (N,) uint8, what the visitor said
    predicted: np.ndarray  # (N,) int64, what the current model says
    evaluation: Evaluation
    holdout: int  # drawings a fine-tune keeps aside to measure itself

    @property
    def mistakes_first(self) -> np.ndarray:
        """Row numbers: the mistakes most confident first, then the rest, newest first."""
        wrong = [m.index for m in self.evaluation.misclassified]
        right = np.flatnonzero(self.predicted == self.labels)[::-1]
        return np.concatenate([np.asarray(wrong, np.int64), right]).astype(np.int64)


# Shared, not copied: every visitor's page run reads the same arrays (up to ~40 MB at the
# collection's cap) instead of unpickling them.
@st.cache_resource(max_entries=2, ttl=3600,
                   show_spinner="Measuring the model on the drawings...")
def _result(run_id: str, onnx_mtime: float, revision: tuple[int, int]) -> DrawingsResult:
    drawings = ui.drawing_store().load()
    classifier = ui.classifier(ui.store().get(run_id))
    x = normalize(flatten(drawings.images))
    probabilities = np.concatenate(
        [classifier.predict_proba(x[i:i + PREDICT_BATCH]) for i in range(0, len(x), PREDICT_BATCH)]
    ) if len(x) else np.zeros((0, 10), np.float32)
    return DrawingsResult(ids=drawings.ids, images=drawings.images, labels=drawings.labels,
                          predicted=probabilities.argmax(axis=1),
                          evaluation=evaluation(drawings.labels, probabilities),
                          holdout=int(drawings.holdout.sum()))


def result(run: Run, revision: tuple[int, int]) -> DrawingsResult:
    return _result(run.run_id, run.onnx_path.stat().st_mtime, revision)


def _change_drawings(action: str, change) -> None:
    """A teacher's change to the class's drawings: checked where it acts, done, or one
    message saying why not (the database, or a bad drawing number)."""
    if roles.teacher_only(action):
        try:
            change(ui.drawing_store())
        except (DrawingStoreError, ValueError) as exc:
            st.error(str(exc))


def set_collecting(on: bool) -> None:
    _change_drawings("pause or resume collecting drawings", lambda store: store.set_collecting(on))


def delete_drawing(drawing_id: int) -> None:
    def delete(store) -> None:
        if not store.delete(drawing_id):
            st.info(f"There is no drawing #{drawing_id}.")
    _change_drawings("delete drawings", delete)


def hide_drawing(drawing_id: int, hidden: bool = True) -> None:
    """The teacher keeps one drawing out of the gallery (it stays in the data)."""
    _change_drawings("hide drawings", lambda store: store.hide(drawing_id, hidden))


def show_all() -> None:
    _change_drawings("hide drawings", lambda store: store.show_all())


def gallery(result: DrawingsResult) -> None:
    """The teacher's gallery of the class's drawings, mistakes first: collapsed at first
    (the page may be on the projector, and a student may have drawn anything), small (as
    the model sees them, 28x28), and any drawing hidden from it in one click."""
    try:
        hidden = ui.drawing_store().hidden()
    except DrawingStoreError as exc:
        st.error(str(exc))
        return
    # The same label whatever is hidden: a new label would be a new expander, closed again.
    with st.expander("Gallery: the drawings, mistakes first", expanded=False,
                     icon=":material/photo_library:"):
        digit = st.selectbox("Digit", ["all", *range(10)], key="class_digit")
        order = [i for i in result.mistakes_first if int(result.ids[i]) not in hidden]
        if digit != "all":
            order = [i for i in order if result.labels[i] == digit]
        pages = max(1, -(-len(order) // GALLERY_SIZE))
        page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="class_page") - 1
        shown = order[page * GALLERY_SIZE:(page + 1) * GALLERY_SIZE]
        if not shown:
            st.caption("No drawings of this digit to show.")
        for row in range(0, len(shown), GALLERY_COLUMNS):
            for column, i in zip(st.columns(GALLERY_COLUMNS), shown[row:row + GALLERY_COLUMNS],
                                 strict=False):
                _gallery_cell(column, result, i)
        st.caption("as the model sees them (28x28): #id drawn digit → predicted digit; "
                   ":material/visibility_off: keeps a drawing out of the gallery (it still "
                   "counts in the accuracy, the export and a fine-tune)")
        if hidden:
            st.button(f"Show the {len(hidden)} hidden again", key="class_show_all",
                      on_click=show_all)


def _gallery_cell(column, result: DrawingsResult, i: int) -> None:
    drawing_id, label, predicted = int(result.ids[i]), result.labels[i], result.predicted[i]
    wrong = predicted != label
    caption = f"#{drawing_id} {label}→{predicted}" if wrong else f"#{drawing_id} {label} ✓"
    column.html(plots.images_html([(result.images[i], caption)], width=GALLERY_PICTURE,
                                  caption_colors=["#c0392b" if wrong else "#1e8449"]))
    column.button(":material/visibility_off:", key=f"class_hide_{drawing_id}",
                  help=f"Hide drawing #{drawing_id} from the gallery", on_click=hide_drawing,
                  args=(drawing_id,))


def delete_all() -> None:
    _change_drawings("delete drawings", lambda store: store.delete_all())


EXPORTS = {
    "npz": ("drawings-mnist.npz", "application/octet-stream", export_npz),
    "idx": ("drawings-idx.zip", "application/zip", export_idx_zip),
}


def prepare_export(kind: str) -> None:
    """Button callback: build the export file for the teacher's download button."""
    if not roles.teacher_only("export the class's drawings"):
        return
    _, _, build = EXPORTS[kind]
    try:
        st.session_state.class_export = (kind, build(ui.drawing_store().load()))
    except DrawingStoreError as exc:
        st.session_state.class_export = None
        st.error(str(exc))


def fine_tune_data() -> bytes | None:
    """The drawings as the worker reads them (teacher only, checked by start_training)."""
    try:
        return ui.drawing_store().load().to_npz()
    except DrawingStoreError as exc:
        st.error(str(exc))
        return None


def collecting_switch() -> None:
    """The teacher's switch for saving the class's labelled drawings."""
    if not collection_enabled():
        st.info("Collecting drawings is turned off on this server (`MNIST_COLLECT_DRAWINGS=0`). "
                "Drawings already collected are shown below.")
        return
    try:
        on = ui.drawing_store().collecting()
    except DrawingStoreError as exc:
        st.error(str(exc))
        return
    st.toggle("Collect the class's drawings", value=on, key=f"class_collecting_{on}",
              on_change=lambda: set_collecting(not on),
              help="Pause it and the Draw page still predicts, but labels are not saved.")


def own_drawings() -> None:
    """A student's own drawings, from this session."""
    mine = st.session_state.get("draw_my_ids", [])[-OWN_SHOWN:][::-1]
    st.subheader("Your drawings")
    if not mine:
        st.caption("The digits you label on the Draw page appear here.")
        return
    store = ui.drawing_store()
    pictures = [(png, f"#{i}") for i in mine if (png := store.thumbnail(i)) is not None]
    st.image([p for p, _ in pictures], caption=[c for _, c in pictures], width=70)


def export_and_delete(count: int) -> None:
    """The teacher's export of the drawings, and deletion of one or all of them."""
    with st.expander("Export or delete drawings"):
        exports = st.columns(2)
        for column, kind, label in ((exports[0], "npz", "Prepare mnist.npz"),
                                    (exports[1], "idx", "Prepare IDX files (zip)")):
            column.button(label, key=f"class_prepare_{kind}", on_click=prepare_export,
                          args=(kind,), help="held-out drawings as x_test / y_test")
        prepared = st.session_state.get("class_export")
        if prepared:
            kind, exported = prepared
            file_name, mime, _ = EXPORTS[kind]
            st.download_button(f"Download {file_name}", exported, file_name=file_name, mime=mime,
                               on_click="ignore")
        drawing_id = st.number_input("Drawing #", min_value=1, step=1, key="class_delete_id")
        png = ui.drawing_store().thumbnail(int(drawing_id))
        if png is None:
            st.caption("No drawing with this number.")
        else:
            st.image(png, caption="the drawing as it was drawn", width=140)
            st.button("Delete this drawing", icon=":material/delete:", key="class_delete",
                      on_click=delete_drawing, args=(int(drawing_id),))
        sure = st.checkbox(f"I want to delete all {count:,} drawings", key="class_delete_all_sure")
        st.button("Delete all drawings", disabled=not sure, type="primary",
                  on_click=delete_all)


def fine_tune(run: Run, result: DrawingsResult) -> None:
    """The teacher continues training the current model on MNIST plus the drawings."""
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
        drawings = fine_tune_data()
        if drawings is not None and ui.start_training(config, drawings):
            st.success("Fine-tuning started.")
        navigation.link("pages/2_Train.py", label="Watch it on the Train page",
                     icon=":material/monitoring:")


def fine_tuned_runs(scan: Scan) -> None:
    """The fine-tuned runs: what each used and held out, and the held-out accuracy it won."""
    tuned = [r for r in scan.usable if r.record.fine_tune]
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
