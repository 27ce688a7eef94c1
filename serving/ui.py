"""What the pages share: the dataset, the trainer and the models, created once per server.

Every visitor's session reads the same objects (`st.cache_resource`), so thirty students
cost one copy of MNIST and one ONNX session. Caches hold derived things only: which training
runs and which model Draw uses are read from the models folder, so a cleared cache, a
restarted server or a second server process all see the same class.
"""

from __future__ import annotations

import gc
import io
import logging
import re

import streamlit as st
from matplotlib.figure import Figure

from mnist_core import plots
from mnist_core.config import TrainConfig
from mnist_core.data import BUNDLED_DIR, DatasetError, Mnist, read_mnist
from mnist_core.drawings import (
    DrawingStore,
    DrawingStoreError,
    collection_enabled,
    drawings_path,
)
from mnist_core.inference import Classifier, ModelLoadError
from mnist_core.runs import folder
from mnist_core.runs.folder import models_dir
from mnist_core.runs.store import ModelStore, Run, Scan
from mnist_core.training.supervisor import JobRefused, StartFailed, Trainer
from serving import roles
from serving.server_os import disable_nagle_on_servers

# Every page run leaves a few hundred objects in reference cycles (Streamlit's own), which
# only the cycle collector frees. With Python's default first threshold (700) much of that
# garbage is still referenced when a young collection runs, is promoted, and a class of 300
# drawing students triggered a full collection every ~5 s that held the GIL for ~0.2 s (every
# visitor waits). A larger young generation frees the garbage while it is young; the objects
# of the server's first run (modules, the dataset's wrappers: ~200 000) are frozen, so a full
# collection no longer walks them.
GC_YOUNG_THRESHOLD = 10_000
# A page that refreshes itself costs the one server process a script run per refresh and per
# watching browser (5-15 ms of its CPU each): 300 students on an idle Train page checking every
# 3 s would be 100 runs a second. The teacher's page, projected for the class, keeps its own
# pace; students' pages refresh less often in a big class, so that all of them together stay
# near this many refreshes a second.
CLASS_REFRESHES_PER_SECOND = 30


def metric_row():
    """A row of st.metric that wraps onto more rows on a narrow screen: `with metric_row():`.
    Columns would stack one metric per row on a phone (five of them fill its screen before
    the charts) and cut long values short on a laptop ("5 min ..."); here each keeps its
    whole value and a phone shows two or three a row."""
    return st.container(horizontal=True, wrap=True, gap="medium")


def page_setup(title: str, icon: str, sidebar: str = "auto") -> None:
    """First thing on every page: its title and the server's setup (the sidebar's links and
    who you are come from serving.navigation, which runs the page)."""
    st.set_page_config(page_title=f"{title} · MNIST classroom", page_icon=icon, layout="wide",
                       initial_sidebar_state=sidebar)
    _server_setup()


@st.cache_resource
def _server_setup() -> int:
    """Once per server, at its first page run (what the server sets up when it starts is
    serving.server_start's): log lines of mnist_core (a recovered lease, a killed worker)
    go to the server's log; the cycle collector stops walking the objects of the first run
    (GC_YOUNG_THRESHOLD); and TCP_NODELAY goes on its sockets, or each run's output waits
    ~40 ms for an ACK (see serving.server_os)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tune_garbage_collector()
    return disable_nagle_on_servers()


def class_refresh_interval(seconds: float, visitors: int, teacher: bool) -> float:
    """Seconds between two self-refreshes of a panel meant to refresh every `seconds`, for
    one of `visitors` connected browsers (see CLASS_REFRESHES_PER_SECOND)."""
    if teacher:
        return seconds
    return max(seconds, visitors / CLASS_REFRESHES_PER_SECOND)


def refresh_every(seconds: float) -> float:
    """`class_refresh_interval` for this visitor, now."""
    return class_refresh_interval(seconds, roles.visitor_count(), roles.is_teacher())


def tune_garbage_collector() -> None:
    """See GC_YOUNG_THRESHOLD. Once per server, at its first page run."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


@st.cache_resource(show_spinner="Loading MNIST...")
def _dataset() -> Mnist:
    return read_mnist()


def dataset() -> Mnist:
    """The dataset, or a clear message on the page (and the page stops) when it is broken."""
    try:
        return _dataset()
    except DatasetError as exc:
        if not roles.is_teacher():
            st.error("The MNIST images can't be loaded on the server right now; the teacher "
                     "sees why on this page.")
            st.stop()
        st.error(f"**The MNIST files could not be loaded.**\n\n{exc}")
        st.info(
            "To fix it: point the `MNIST_DATA` environment variable at a folder holding the "
            "four MNIST IDX files (`train-images-idx3-ubyte[.gz]` and the three others) or at "
            f"a Keras `mnist.npz`, or unset it to use the copy shipped in `{BUNDLED_DIR}`. "
            "Then reload this page."
        )
        st.stop()


@st.cache_resource(max_entries=4)
def _trainer(root: str) -> Trainer:
    return Trainer(root)


def trainer() -> Trainer:
    """Starts, stops and follows the models folder's training (its state lives on disk)."""
    return _trainer(str(models_dir()))


@st.cache_resource(max_entries=4)
def _store(root: str) -> ModelStore:
    return ModelStore(root)


def store() -> ModelStore:
    return _store(str(models_dir()))


@st.cache_resource(max_entries=4)
def _drawing_store(path: str) -> DrawingStore:
    return DrawingStore(path)


def drawing_store() -> DrawingStore:
    """The class's drawings (a path and settings: every call opens its own connection)."""
    return _drawing_store(str(drawings_path()))


@st.cache_data(ttl=2.0, show_spinner=False)
def collecting() -> bool:
    """The teacher's switch for saving drawings (read at most every 2 s per server). When the
    database can't be read, the labels stay offered: saving one says what is wrong."""
    try:
        return drawing_store().collecting()
    except DrawingStoreError:
        return collection_enabled()


def start_training(config: TrainConfig, drawings_npz: bytes | None = None) -> bool:
    """Start a training for the whole class (the teacher only); a refusal or failure is a
    message on the page."""
    if not roles.teacher_only("start a training"):
        return False
    try:
        # The other visitors connected now keep a core of their own (worker_threads).
        started = trainer().start(config, drawings_npz, visitors=roles.visitor_count() - 1)
    except (JobRefused, StartFailed) as exc:
        st.warning(str(exc))
        return False
    if started.notice:
        st.info(started.notice)
    scan.clear()
    st.toast("Training started")
    return True


@st.cache_resource(ttl=1.0, show_spinner=False)
def scan() -> Scan:
    """The models folder, read at most once a second however many visitors ask. A shared
    object (read-only dataclasses), not a copy: no page run copies the run list."""
    return store().scan()


def current_run() -> Run | None:
    return store().current(scan())


def draw_model():
    """The model Draw uses, and why (`ModelStore.current_choice`)."""
    return store().current_choice(scan())


def choose_model(run_id: str, pinned: bool) -> bool:
    """The teacher makes `run_id` the Draw model (pinned: a new training does not replace
    it)."""
    return _change_runs("choose the model the Draw page uses",
                        lambda: store().choose(run_id, pinned=pinned),
                        "That model could not be chosen", "the Draw model cannot be changed")


def delete_run(run_id: str) -> bool:
    if _change_runs("delete runs", lambda: store().delete(run_id),
                    f"Run {run_id} could not be deleted", f"run {run_id} cannot be deleted"):
        st.toast(f"Run {run_id} deleted")
        return True
    return False


def _change_runs(action: str, change, refused: str, unwritable: str) -> bool:
    """A teacher's change to the models folder: checked, done, or one message saying why
    not (the store refused it, or the folder cannot be written)."""
    if not roles.teacher_only(action):
        return False
    try:
        change()
    except ValueError as exc:
        st.error(f"{refused}: {exc}")
        return False
    except OSError as exc:
        st.error(folder.cannot_write(store().root, exc, unwritable))
        return False
    scan.clear()
    return True


def better_for_drawing(run: Run) -> Run | None:
    """The newest saved run trained for drawings (pen strokes), when `run` was not."""
    if run.config.pen_strokes:
        return None
    return next((r for r in scan().usable
                 if r.config.pen_strokes and r.status == "finished" and r.healthy),
                None)


@st.cache_resource(max_entries=8, show_spinner="Loading the model...")
def _classifier(onnx_path: str, modified: float) -> Classifier:
    return Classifier(onnx_path)


def classifier(run: Run) -> Classifier:
    """The run's ONNX model, loaded once per server (a new run loads beside the old one)."""
    return _classifier(str(run.onnx_path), run.onnx_path.stat().st_mtime)


def classifier_or_error(run: Run) -> Classifier | None:
    try:
        return classifier(run)
    except (ModelLoadError, OSError) as exc:
        problem(f"The model of run {run.run_id} cannot be used: {exc}",
                "The model can't be used right now; the teacher sees why on this page.")
        return None


def problem(for_the_teacher: str, for_students: str) -> None:
    """A fault of the server (its disk, its files): the details, with server paths, are
    the teacher's; a student reads what it means for them."""
    st.error(for_the_teacher if roles.is_teacher() else for_students)


def stop_training() -> None:
    """Ask the training to stop (the teacher only), whoever started it; say so when none
    runs or it can't."""
    if not roles.teacher_only("stop the training"):
        return
    try:
        if not trainer().stop():
            st.info("No training is running.")
    except OSError as exc:
        st.error(folder.cannot_write(trainer().root, exc, "the stop request cannot be written"))


def png(fig: Figure, dpi: int = 100) -> bytes:
    """Render a figure once to PNG bytes, which `st.image` shows and caches can keep."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def confusion_png(matrix) -> bytes:
    """A confusion matrix as a picture, drawn once per distinct matrix and server (~0.13 s
    of matplotlib), not on every visit of every student."""
    return _confusion_png(tuple(tuple(int(v) for v in row) for row in matrix))


@st.cache_data(max_entries=32, show_spinner=False)
def _confusion_png(matrix: tuple[tuple[int, ...], ...]) -> bytes:
    return png(plots.confusion_figure(matrix))


def show_skipped(scan_result: Scan) -> None:
    """Unreadable runs and entries that are not runs, with the reason, for the teacher."""
    entries = [(run.run_id, run.error) for run in scan_result.unreadable] + scan_result.skipped
    if entries:
        lines = "\n".join(f"- `{name}`: {why}" for name, why in entries)
        st.warning(f"Some entries of the models folder cannot be used:\n{lines}")


def whole_number(text: str | None, below: int) -> int | None:
    """A link's index (`?index=7`) as an int in 0..below-1, or None: ASCII digits only
    ("²".isdigit() is true, and int("²") raises)."""
    if text is None or not re.fullmatch(r"[0-9]{1,9}", text):
        return None
    value = int(text)
    return value if value < below else None


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
