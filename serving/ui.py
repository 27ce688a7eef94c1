"""What the pages share: one dataset, job manager and model per server, created once.

Every visitor's session reads the same objects (`st.cache_resource`), so thirty students
cost one copy of MNIST and one ONNX session, and a training belongs to the server, not to
the tab that started it.
"""

from __future__ import annotations

import io

import streamlit as st
from matplotlib.figure import Figure

from mnist_core.data import BUNDLED_DIR, DatasetError, Mnist, read_mnist
from mnist_core.inference import Classifier, ModelLoadError
from mnist_core.jobs import JobManager
from mnist_core.store import ModelStore, Run, Scan
from serving.nodelay import disable_nagle_on_servers


def page_setup(title: str, icon: str) -> None:
    st.set_page_config(page_title=f"{title} · MNIST classroom", page_icon=icon, layout="wide")
    _send_without_delay()


@st.cache_resource
def _send_without_delay() -> int:
    """Once per server: TCP_NODELAY on its sockets, or each run's output waits ~40 ms for an ACK
    (see serving.nodelay)."""
    return disable_nagle_on_servers()


@st.cache_resource(show_spinner="Loading MNIST...")
def _dataset() -> Mnist:
    return read_mnist()


def dataset() -> Mnist:
    """The dataset, or a clear message on the page (and the page stops) when it is broken."""
    try:
        return _dataset()
    except DatasetError as exc:
        st.error(f"**The MNIST files could not be loaded.**\n\n{exc}")
        st.info(
            "To fix it: point the `MNIST_DATA` environment variable at a folder holding the "
            "four MNIST IDX files (`train-images-idx3-ubyte[.gz]` and the three others) or at "
            f"a Keras `mnist.npz`, or unset it to use the copy shipped in `{BUNDLED_DIR}`. "
            "Then reload this page."
        )
        st.stop()


@st.cache_resource
def job_manager() -> JobManager:
    return JobManager(ModelStore())


def store() -> ModelStore:
    return job_manager().store


@st.cache_data(ttl=1.0, show_spinner=False)
def scan() -> Scan:
    """The models folder, read at most once a second however many visitors ask."""
    return store().scan()


def current_run() -> Run | None:
    return store().current(scan())


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
        st.error(f"The model of run {run.run_id} cannot be used: {exc}")
        return None


def png(fig: Figure, dpi: int = 100) -> bytes:
    """Render a figure once to PNG bytes, which `st.image` shows and caches can keep."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def show_skipped(scan_result: Scan) -> None:
    if scan_result.skipped:
        lines = "\n".join(f"- `{name}`: {why}" for name, why in scan_result.skipped)
        st.warning(f"Some entries of the models folder were skipped:\n{lines}")


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
