"""The app's one list of pages, and the navigation built from it for each visitor.

`router.py` (the main script) runs `navigation()` on every run: Streamlit's `st.navigation`
routes the URL (/Explore, /Train, ...) to a page of the list this visitor may open, so a
student cannot even route to a teacher's page (Join). The sidebar's links and Home's links
are drawn from the same list.
"""

from __future__ import annotations

from dataclasses import dataclass

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


HOME = PageEntry("home.py", "Home", ":material/home:", "")
PAGES = (
    HOME,
    PageEntry("app_pages/1_Explore.py", "Explore", ":material/search:", "Explore",
              "**Explore** the data",
              "Shapes, pixel values, 40-sample grids, the notebook's preparation steps."),
    PageEntry("app_pages/2_Train.py", "Train", ":material/monitoring:", "Train",
              "**Train** it live",
              "The notebook's network (or a CNN), live loss and accuracy, mistakes, history."),
    PageEntry("app_pages/3_Draw.py", "Draw", ":material/edit:", "Draw", "**Draw** a digit",
              "Your drawing, turned into an MNIST image step by step, and the prediction."),
    PageEntry("app_pages/4_Class_drawings.py", "Class drawings", ":material/groups:",
              "Class_drawings", "**Class drawings**",
              "Accuracy on what the class drew, next to MNIST; fine-tune on the drawings."),
    PageEntry("app_pages/5_Inside_the_network.py", "Inside the network", ":material/neurology:",
              "Inside_the_network", "**Inside** the network",
              "Layer by layer: what the units learned, why this digit, and how to fool it."),
    PageEntry("app_pages/6_Join.py", "Join", ":material/qr_code_2:", "Join", teacher_only=True),
)


def pages_for(teacher: bool) -> list[PageEntry]:
    """The pages a visitor may open: the teacher's only for the teacher."""
    return [page for page in PAGES if teacher or not page.teacher_only]


def navigation() -> None:
    """Route this run to the page its URL names, among the pages this visitor may open (an
    unknown or forbidden URL opens Home), with the sidebar's links above the page."""
    entries = pages_for(roles.is_teacher())
    page = st.navigation(
        [st.Page(entry.file, title=entry.title, icon=entry.icon, default=entry is HOME,
                 **({"url_path": entry.url_path} if entry.url_path else {}))
         for entry in entries],
        # Streamlit's own menu would list the pages by title only, above everything else in
        # the sidebar; the app's links are page_links, and who you are goes under them.
        position="hidden")
    with st.sidebar:
        for entry in entries:
            st.page_link(entry.file, label=entry.title, icon=entry.icon)
        st.divider()
    roles.sidebar()
    page.run()


def home_links() -> None:
    """Home's row of links to the lesson's pages, each with its caption."""
    linked = [page for page in PAGES if page.caption]
    for column, entry in zip(st.columns(len(linked)), linked, strict=True):
        column.page_link(entry.file, label=entry.link, icon=entry.icon)
        column.caption(entry.caption)
