"""What the "Inside the network" page shares across visitors (weights, pictures, snapshots),
and its sections that show them (the first layer's units, the features forming).

The weights of a run are loaded once per server (`st.cache_resource`, a handful of runs).
Everything shown for one input is computed once per distinct input and kept, bounded, by
the bytes of that input (`st.cache_data`): thirty students looking at the same MNIST image
cost one computation, and a drawing is a few milliseconds of numpy anyway.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from mnist_core import inside, inside_plots
from mnist_core.data import NUM_PIXELS
from mnist_core.inside import InsideError, Network, Sample, Snapshot
from serving import ui

if TYPE_CHECKING:
    from mnist_core.runs.store import Run

UNITS_PER_PAGE = 64
CHANGED, WHOLE = "what training changed", "the whole weights"
LIVE_EVERY = 1.0  # seconds between two refreshes of the snapshots while a training runs
NO_WEIGHTS = "This run has no saved weights: train a new one to look inside it."


@st.cache_resource(max_entries=4, show_spinner="Loading the weights...")
def _network(path: str, modified: float) -> Network:
    return inside.load_network(path)


def weights_key(run: Run) -> tuple[str, float] | None:
    """(path, modification time) of the run's weights.npz, or None when it has none."""
    path = run.path / inside.WEIGHTS_FILE
    try:
        return str(path), path.stat().st_mtime
    except OSError:
        return None


def network_or_message(run: Run) -> tuple[str, float] | None:
    """The run's weights, checked and loaded; a message on the page and None when unusable."""
    key = weights_key(run)
    if key is None:
        st.warning(f"**{NO_WEIGHTS}**")
        st.caption(f"Run {run.run_id} was saved without `{inside.WEIGHTS_FILE}` (trained "
                   "before this page existed). The Train page starts a new one in seconds.")
        return None
    try:
        _network(*key)
    except InsideError as exc:
        st.error(f"The weights of run {run.run_id} cannot be used: {exc}")
        return None
    return key


def network(key: tuple[str, float]) -> Network:
    return _network(*key)


def start_key(run_dir: Path) -> tuple[str, float] | None:
    """(path, modification time) of the run's starting weights, or None without them."""
    path = Path(run_dir) / inside.SNAPSHOTS_DIR / inside.START_FILE
    try:
        return str(run_dir), path.stat().st_mtime
    except OSError:
        return None


@st.cache_resource(max_entries=8, show_spinner=False)
def _start(run_dir: str, modified: float) -> np.ndarray | None:
    return inside.read_start_kernel(run_dir)


def start_kernel(key: tuple[str, float] | None, shape: tuple | None = None) -> np.ndarray | None:
    """The first layer's weights before training (None when unknown or not of `shape`)."""
    kernel = None if key is None else _start(*key)
    return kernel if kernel is not None and (shape is None or kernel.shape == shape) else None


def _shown(key: tuple[str, float], start: tuple[str, float] | None) -> np.ndarray:
    """The first layer's weights to draw: what training added to them when the start is
    known, else the weights themselves."""
    kernel = network(key).first_kernel_layer.kernel
    begin = start_kernel(start, kernel.shape)
    return kernel if begin is None else kernel - begin


@st.cache_data(max_entries=256, show_spinner=False)
def input_view(key: tuple[str, float], start: tuple[str, float] | None,
               x_bytes: bytes) -> inside_plots.InputView:
    """Forward pass and pictures for one input: x_bytes is a (784,) float32 array's bytes;
    `start` the starting weights to subtract from the first layer's pictures, or None."""
    net = network(key)
    begin = start_kernel(start, net.first_kernel_layer.kernel.shape)
    return inside_plots.input_view(net, _x(x_bytes), begin)


@st.cache_data(max_entries=256, show_spinner=False)
def saliency_html(key: tuple[str, float], x_bytes: bytes, rival: int | None) -> tuple[str, int]:
    """The saliency pictures and the rival digit they compare with."""
    x = _x(x_bytes)
    result = inside.saliency(network(key), x, rival=rival)
    return inside_plots.saliency_html(x, result), result.rival


@st.cache_data(max_entries=256, show_spinner=False)
def breaking_sentences(key: tuple[str, float], x_bytes: bytes) -> list[str]:
    """Where each kind of change flips the prediction of this input, as sentences."""
    digit, points = inside.breaking_points(network(key), _x(x_bytes))
    return [point.sentence(digit) for point in points]


@st.cache_data(max_entries=32, show_spinner=False)
def weights_page_image(key: tuple[str, float], start: tuple[str, float] | None, first: int,
                       count: int) -> np.ndarray:
    return inside_plots.weights_page(_shown(key, start), first, count)


@st.cache_data(max_entries=8, show_spinner=False)
def filters_image(key: tuple[str, float], start: tuple[str, float] | None) -> np.ndarray:
    return inside_plots.filters_mosaic(_shown(key, start))


def _x(x_bytes: bytes) -> np.ndarray:
    if len(x_bytes) != NUM_PIXELS * 4:
        raise ValueError(f"an input is {NUM_PIXELS} float32 values, got {len(x_bytes)} bytes")
    return np.frombuffer(x_bytes, np.float32)


def as_input(x) -> np.ndarray | None:
    """A (784,) float32 array in [0, 1] from anything shaped like one image, else None.

    Session values (the Draw page's last drawing) are checked here, at the edge.
    """
    try:
        x = np.asarray(x, np.float32).reshape(NUM_PIXELS)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(x).all():
        return None
    return np.ascontiguousarray(np.clip(x, 0, 1))


def _listing(run_dir: Path) -> tuple:
    """Names, sizes and times of the snapshot files: changes whenever one is added."""
    try:
        with os.scandir(run_dir / inside.SNAPSHOTS_DIR) as entries:
            return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size)
                                for e in entries if e.is_file()))
    except OSError:
        return ()


@dataclass(frozen=True)
class Snapshots:
    """A run's snapshots as read for one listing of its folder."""

    run_dir: str
    listing: tuple
    items: list[Snapshot]  # sorted by step
    skipped: list[str]  # names of unreadable files
    sample: Sample | None
    start: np.ndarray | None  # the first layer's kernel before training

    def reference(self, snapshot: Snapshot) -> np.ndarray | None:
        """What `snapshot`'s units looked like before training (else at the first snapshot;
        None when neither matches it)."""
        if self.start is not None and self.start.shape[-1] > snapshot.units.max():
            reference = inside.unit_images(self.start, snapshot.units)
            if reference.shape == snapshot.weights.shape:
                return reference
        first = self.items[0]
        if first.weights.shape == snapshot.weights.shape and (first.units == snapshot.units).all():
            return first.weights
        return None

    def accuracy(self) -> list[tuple[int, float]]:
        """(step, share of the sample predicted right) per snapshot, when labels are known."""
        if self.sample is None or self.sample.labels is None:
            return []
        return [(s.step, _share_right(s, self.sample)) for s in self.items]


@st.cache_resource(max_entries=8, show_spinner=False)
def _snapshots(run_dir: str, listing: tuple) -> Snapshots:
    items, skipped = inside.read_snapshots(run_dir)
    return Snapshots(run_dir, listing, items, skipped, inside.read_sample(run_dir),
                     inside.read_start_kernel(run_dir))


def snapshots(run_dir: Path) -> Snapshots:
    """The run's snapshots, read again only when its folder changed (shared by every visitor)."""
    return _snapshots(str(run_dir), _listing(run_dir))


@st.cache_data(max_entries=128, show_spinner=False)
def snapshot_pictures(run_dir: str, listing: tuple, step: int,
                      change: bool) -> tuple[np.ndarray, str]:
    """A snapshot's units (or filters) picture and its predictions on the sample (HTML).

    With `change`, the pictures show how far each weight moved since the start (the saved
    starting weights, else the first snapshot).
    """
    found = _snapshots(run_dir, listing)
    snapshot = next(s for s in found.items if s.step == step)
    html = ""
    if found.sample is not None:
        html = inside_plots.sample_predictions_html(found.sample, snapshot.probabilities)
    reference = found.reference(snapshot) if change else None
    return inside_plots.snapshot_weights(snapshot, reference), html


def _share_right(snapshot: Snapshot, sample: Sample) -> float:
    count = min(len(sample.labels), len(snapshot.probabilities))
    return float((snapshot.probabilities[:count].argmax(axis=1) == sample.labels[:count]).mean())


def watch_features_form(run_dir: Path, live: bool) -> None:
    """The snapshots the worker saved while training: a slider, or the newest while live."""
    found = snapshots(run_dir)
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
    units, predictions = snapshot_pictures(found.run_dir, found.listing, step, view == CHANGED)
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


def watch_section(run: Run | None) -> None:
    """Watch the features form: the live training's snapshots, refreshed while it runs,
    else those of `run`."""
    st.header("Watch the features form", divider="gray")
    training = ui.trainer().snapshot()
    live = training.active and training.run_id is not None
    run_dir = ui.store().root / training.run_id if live else run.path if run else None
    if run_dir is None:
        st.info("Train a model to watch its features form.")
        return

    @st.fragment(run_every=ui.refresh_every(LIVE_EVERY) if live else None)
    def panel():
        if live and not ui.trainer().snapshot().active:
            st.rerun()  # the training ended: show the saved run with its slider
        watch_features_form(run_dir, live)

    panel()


def units_view_choice(has_start: bool) -> None:
    if has_start:
        st.radio("Show", [CHANGED, WHOLE], key="inside_units_view", horizontal=True,
                 help="Training starts from random weights, which hide the pattern; what it "
                      "changed is what it learned. The outputs always use the whole weights.")


def units_section(key: tuple[str, float], start: tuple[str, float] | None, units_html: str,
                  has_start: bool) -> None:
    """What the first layer's units (or filters) look for, the most active on this input
    first (`units_html`), then all of them."""
    first = network(key).first_kernel_layer
    if first.kind != "Dense":
        st.markdown(f"Each filter of `{first.name}` is a 3x3 patch of weights slid over the "
                    "image: **red** where ink raises its output, **blue** where ink lowers it. "
                    "Its feature map lights up where the image looks like the filter. The "
                    "filters most active on this input, each next to its map:")
        units_view_choice(has_start)
        st.html(units_html)
        st.html(inside_plots.figure(filters_image(key, start), f"all {first.kernel.shape[-1]} "
                                    f"filters of {first.name}", "one shared scale", width=400))
        st.caption("The next convolution's filters each look at all the maps of this one at "
                   "once: too many numbers to draw as pictures, so see their maps above.")
        return
    st.markdown(f"Each unit of `{first.name}` multiplies the 784 pixels by its own 784 weights "
                "and adds them up (plus a bias; below zero it outputs 0). Drawn as a 28x28 "
                "picture, the weights show what it looks for: **red** where ink raises its "
                "output, **blue** where ink lowers it. Next to them, its weights times this "
                "input: the red and blue that add up to its output. The units most active on "
                "this input:")
    units_view_choice(has_start)
    st.html(units_html)
    with st.expander(f"All {first.kernel.shape[1]} units of {first.name}"):
        pages = -(-first.kernel.shape[1] // UNITS_PER_PAGE)
        page = st.slider("Page", 1, pages, key="inside_units_page")
        first_unit = (page - 1) * UNITS_PER_PAGE
        last_unit = first_unit + UNITS_PER_PAGE - 1
        st.html(inside_plots.figure(
            weights_page_image(key, start, first_unit, UNITS_PER_PAGE),
            f"units {first_unit} to {last_unit}", "8 a row, each on its own scale", width=520,
            alt=f"weights of units {first_unit} to {last_unit}"))
