"""The app's one list of pages, and the navigation built from it for each visitor.

`serving/router.py` (the main script) runs `navigation()` on every run: Streamlit's
`st.navigation` routes the URL (/Explore, /Train, ...) to a page of the list this visitor may
open, so a student cannot even route to a teacher's page (Join). The sidebar's links and
Home's links are drawn from the same list.

The main script sits in serving/, not beside the `pages/` folder: next to a `pages/` folder
Streamlit also registers its pages the older way (MPA v1), under the same ids as the
navigation's, and runs a page a run asks for by id directly, past the navigation and its
role check. So pages are named by their path from the app's folder (`page_path`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from serving import roles


@dataclass(frozen=True)
class PageEntry:
    """One page: its script, its URL (`url_path`), its sidebar title and icon, and on Home a
    link text and a caption (pages without a caption are not linked from Home)."""

    file: str
    title: str
    icon: str
    url_path: str
    link: str = ""
    caption: str = ""
    teacher_only: bool = False


REPO = Path(__file__).resolve().parent.parent


def page_path(file: str) -> Path:
    """A page's script, from its path in the app's folder ("pages/2_Train.py")."""
    return REPO / file


def link(file: str, **options) -> None:
    """`st.page_link` to a page of the list, by its path in the app's folder."""
    st.page_link(page_path(file), **options)


HOME = PageEntry("home.py", "Home", ":material/home:", "")
PAGES = (
    HOME,
    PageEntry("pages/1_Explore.py", "Explore", ":material/search:", "Explore",
              "**Explore** the data",
              "Shapes, pixel values, 40-sample grids, the notebook's preparation steps."),
    PageEntry("pages/2_Train.py", "Train", ":material/monitoring:", "Train",
              "**Train** it live",
              "The notebook's network (or a CNN), live loss and accuracy, mistakes, history."),
    PageEntry("pages/3_Draw.py", "Draw", ":material/edit:", "Draw", "**Draw** a digit",
              "Your drawing, turned into an MNIST image step by step, and the prediction."),
    PageEntry("pages/4_Class_drawings.py", "Class drawings", ":material/groups:",
              "Class_drawings", "**Class drawings**",
              "Accuracy on what the class drew, next to MNIST; fine-tune on the drawings."),
    PageEntry("pages/5_Inside_the_network.py", "Inside the network", ":material/neurology:",
              "Inside_the_network", "**Inside** the network",
              "Layer by layer: what the units learned, why this digit, and how to fool it."),
    PageEntry("pages/6_Join.py", "Join", ":material/qr_code_2:", "Join", teacher_only=True),
)


def pages_for(teacher: bool) -> list[PageEntry]:
    """The pages a visitor may open: the teacher's only for the teacher."""
    return [page for page in PAGES if teacher or not page.teacher_only]


def navigation() -> None:
    """Route this run to the page its URL names, among the pages this visitor may open (an
    unknown or forbidden URL opens Home), with the sidebar's links above the page."""
    entries = pages_for(roles.is_teacher())
    page = st.navigation(
        [st.Page(page_path(entry.file), title=entry.title, icon=entry.icon, default=entry is HOME,
                 **({"url_path": entry.url_path} if entry.url_path else {}))
         for entry in entries],
        # Streamlit's own menu would list the pages by title only, above everything else in
        # the sidebar; the app's links are page_links, and who you are goes under them.
        position="hidden")
    with st.sidebar:
        for entry in entries:
            link(entry.file, label=entry.title, icon=entry.icon)
        st.divider()
    roles.sidebar()
    page.run()


def home_links() -> None:
    """Home's row of links to the lesson's pages, each with its caption."""
    linked = [page for page in PAGES if page.caption]
    for column, entry in zip(st.columns(len(linked)), linked, strict=True):
        column.page_link(page_path(entry.file), label=entry.link, icon=entry.icon)
        column.caption(entry.caption)
