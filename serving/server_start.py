"""What each server process sets up once, around the `st.App` of app.py.

`before_runtime()` runs when app.py is loaded, before Streamlit creates its runtime: the
Streamlit internals the app relies on are checked (serving.streamlit_private) and the
disconnected-session storage is sized for a class. `lifespan` runs when the server starts,
however it is started (`streamlit run app.py`, `./run app`): the open-files limit, the theme
built once, and this process's visitor count published for the class's other processes.
"""

from __future__ import annotations

import logging
import sys
from contextlib import asynccontextmanager

from serving import edge, roles, server_os, streamlit_private, theme_cache

log = logging.getLogger(__name__)
# Every element a page run sends passes from its script thread to the server's event loop
# and back: with Python's default 5 ms, a run waits for the GIL at each hand-over while many
# visitors' runs take turns. 1 ms cut the p95 of 300 drawing students by about a third.
SWITCH_INTERVAL = 0.001


def before_runtime() -> None:
    streamlit_private.check()
    streamlit_private.keep_sessions()


@asynccontextmanager
async def lifespan(app):
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limits = server_os.raise_open_files()
    if limits is not None:
        log.info("Open files: at most %d (was %d)", limits[1], limits[0])
    sys.setswitchinterval(SWITCH_INTERVAL)
    theme_cache.install()
    roles.start_publishing()
    log.info("Classroom edge: at most %d websockets a student address, messages up to %d kB, "
             "script runs charged by count and size", edge.MAX_SOCKETS_PER_ADDRESS,
             edge.MAX_MESSAGE_BYTES // 1024)
    yield
