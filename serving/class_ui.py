"""The Class drawings page's shared work: the current model measured on every drawing (once
per model and per change of the drawings, for all visitors), and the teacher's actions on
the collection, each checking the role where it acts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from mnist_core.data import flatten, normalize
from mnist_core.drawings import DrawingStoreError, export_idx_zip, export_npz
from mnist_core.evaluate import Evaluation, evaluation
from mnist_core.runs.store import Run
from serving import roles, ui

PREDICT_BATCH = 4096  # drawings per ONNX call: bounded memory whatever the collection


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


def set_collecting(on: bool) -> None:
    if roles.teacher_only("pause or resume collecting drawings"):
        try:
            ui.drawing_store().set_collecting(on)
        except DrawingStoreError as exc:
            st.error(str(exc))


def delete_drawing(drawing_id: int) -> None:
    if roles.teacher_only("delete drawings"):
        try:
            if not ui.drawing_store().delete(drawing_id):
                st.info(f"There is no drawing #{drawing_id}.")
        except (DrawingStoreError, ValueError) as exc:
            st.error(str(exc))


def delete_all() -> None:
    if roles.teacher_only("delete drawings"):
        try:
            ui.drawing_store().delete_all()
        except DrawingStoreError as exc:
            st.error(str(exc))


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
