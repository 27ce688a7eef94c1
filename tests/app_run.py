"""The app in Streamlit's AppTest, run as a browser runs it: through its main script
(serving/router.py), whose navigation opens the page."""

from __future__ import annotations

import os
from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parent.parent
MAIN_SCRIPT = REPO / "serving" / "router.py"
HOME = "home.py"


def from_main_script(path: str) -> str:
    """A page's path ("pages/2_Train.py") as AppTest names it: from the main script's folder."""
    return os.path.relpath(REPO / path, MAIN_SCRIPT.parent)


def open_app(path: str, query: dict | None = None, timeout: float = 60) -> AppTest:
    """The app at page `path` (a file, as pages link to it), not run yet, as a visitor
    following a link: `query` is the link's query string."""
    app = AppTest.from_file(str(MAIN_SCRIPT), default_timeout=timeout)
    if path != HOME:
        # AppTest finds a page registered by st.navigation only after a run (its
        # switch_page's contract): the visitor's first run opens Home, then the link.
        app.run()
        app.switch_page(from_main_script(path))
    app.query_params.update(query or {})
    return app
