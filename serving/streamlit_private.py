"""The two Streamlit internals the app still relies on, checked when the app starts.

Everything else the server does stands on Streamlit's public interfaces (`st.App` with its
middleware and lifespan, `st.context`, configuration options). These two have no public way
in; each is checked by `check()` when app.py is loaded, which fails with one sentence naming
the Streamlit version when an upgrade has removed it (tests/test_streamlit_private.py fails
too), instead of a protection silently going away:

1. `MemorySessionStorage(maxsize=...)`: how many disconnected sessions a server keeps. A
   locked phone comes back to its session only while it is kept; `st.App` builds its
   storage with the default, 128, and no option sets it. With a class of 300, the 129th
   phone to sleep would lose its drawing and its sign-in. The default is raised before the
   runtime is created.
2. `app_session._populate_theme_msg`: built once instead of at every script run
   (serving.theme_cache: 10% of the server's time with 300 students drawing).
"""

from __future__ import annotations

import inspect

import streamlit
from streamlit.runtime import app_session
from streamlit.runtime.memory_session_storage import MemorySessionStorage

# Disconnected sessions kept per server process: two per student of a class of 300, and
# room for the teacher's devices.
SESSIONS_KEPT = 1000


class StreamlitChanged(RuntimeError):
    """This Streamlit lacks an internal the app relies on."""


def _missing(what: str) -> StreamlitChanged:
    return StreamlitChanged(
        f"Streamlit {streamlit.__version__} has no {what}, which this app was written for "
        f"(Streamlit 1.67): install the versions in requirements.txt.")


def session_storage_size_parameter() -> inspect.Parameter:
    parameter = inspect.signature(MemorySessionStorage.__init__).parameters.get("maxsize")
    if parameter is None:
        raise _missing("MemorySessionStorage(maxsize=...)")
    return parameter


def populate_theme():
    populate = getattr(app_session, "_populate_theme_msg", None)
    if populate is None:
        raise _missing("streamlit.runtime.app_session._populate_theme_msg")
    return populate


def set_populate_theme(populate) -> None:
    populate_theme()
    app_session._populate_theme_msg = populate


def check() -> None:
    """Raise StreamlitChanged if an internal is missing."""
    session_storage_size_parameter()
    populate_theme()


def keep_sessions(count: int = SESSIONS_KEPT) -> None:
    """Make the session storage that the runtime creates next keep `count` sessions."""
    session_storage_size_parameter()
    defaults = MemorySessionStorage.__init__.__defaults__
    names = [name for name in inspect.signature(MemorySessionStorage.__init__).parameters
             if name != "self"]
    values = dict(zip(names[-len(defaults):], defaults, strict=True))
    values["maxsize"] = count
    MemorySessionStorage.__init__.__defaults__ = tuple(values[name]
                                                       for name in names[-len(defaults):])
