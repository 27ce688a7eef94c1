"""The Explore page's pictures (drawn once per server and image) and its bookkeeping: the
image a shared link opens at, and the page of samples shown."""

from __future__ import annotations

import numpy as np
import streamlit as st

from mnist_core import plots
from serving import ui

GRID_SIZE = 40
IMAGE_CACHE_ENTRIES = 256  # pictures kept per kind (~64 KiB each): bounded, whatever is browsed


def splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The two splits by the notebook's names: images and their labels."""
    data = ui.dataset()
    return {"x_train": (data.x_train, data.y_train), "x_valid": (data.x_valid, data.y_valid)}


def label_name(split: str) -> str:
    return "y_train" if split == "x_train" else "y_valid"


@st.cache_data(show_spinner=False, max_entries=IMAGE_CACHE_ENTRIES)
def image_png(split: str, index: int) -> bytes:
    x, y = splits()[split]
    label = label_name(split)
    return ui.png(plots.image_figure(x[index], f"{split}[{index}], {label}[{index}] = {y[index]}"))


@st.cache_data(show_spinner=False, max_entries=IMAGE_CACHE_ENTRIES)
def pixels_png(split: str, index: int) -> bytes:
    return ui.png(plots.pixel_values_figure(splits()[split][0][index]), dpi=110)


@st.cache_data(show_spinner=False, max_entries=IMAGE_CACHE_ENTRIES)
def grid_png(split: str, indices: tuple[int, ...]) -> bytes:
    x, y = splits()[split]
    return ui.png(plots.grid_figure(x[list(indices)], [str(y[i]) for i in indices]), dpi=90)


def image_from_link() -> None:
    """A shared link (`?split=x_valid&index=7`) opens at that image; bad values are ignored.
    Once per visit: afterwards the widgets hold the choice."""
    if "explore_split" in st.session_state:
        return
    params = st.query_params
    split = params.get("split")
    st.session_state.explore_split = split if split in splits() else "x_train"
    size = len(splits()[st.session_state.explore_split][0])
    st.session_state.explore_index = ui.whole_number(params.get("index"), size) or 0


def keep_index_within(size: int) -> None:
    """The index widget's value stays a valid index of the split shown (x_valid is the
    smaller: an index of x_train may not exist there)."""
    st.session_state.explore_index = min(st.session_state.explore_index, size - 1)


def image_to_link() -> None:
    st.query_params.update(split=st.session_state.explore_split,
                           index=str(st.session_state.explore_index))


def sample_page(controls, pool_size: int) -> tuple[int, int]:
    """Previous / Next / Random buttons in the three `controls` columns; the page of
    GRID_SIZE samples shown (0-based) and the number of pages, for a pool of `pool_size`."""
    pages = -(-pool_size // GRID_SIZE)
    st.session_state.setdefault("explore_page", 0)
    if controls[0].button("Previous", icon=":material/chevron_left:", width="stretch"):
        st.session_state.explore_page = (st.session_state.explore_page - 1) % pages
    if controls[1].button("Next", icon=":material/chevron_right:", width="stretch"):
        st.session_state.explore_page = (st.session_state.explore_page + 1) % pages
    if controls[2].button("Random", icon=":material/casino:", width="stretch"):
        st.session_state.explore_page = int(np.random.default_rng().integers(pages))
    return st.session_state.explore_page % pages, pages
