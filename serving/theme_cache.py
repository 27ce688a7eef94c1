"""Start each script run without re-reading the theme from the config.

Streamlit (1.67) sends a NewSession message at the start of every script run, fragment runs
included, and fills its six theme sections by scanning all of its ~250 config options once
per section, on the server's event loop. With 300 students drawing that was 10% of the time
the server held the GIL, and every visitor's next message waited behind it. The theme only
changes when the config files are parsed again, so each section is built once, kept, and
copied into each message; a new parse of the config empties the cache.
"""

from __future__ import annotations

import threading

from streamlit import config

from serving import streamlit_private

_lock = threading.Lock()
_installed: list = []  # the original function, once installed


def _cached(populate):
    """`populate(msg, section)` that builds each section once and then copies it."""
    built = {}

    def populate_from_cache(msg, section: str = "theme") -> None:
        key = (type(msg), section)
        template = built.get(key)
        if template is None:
            template = type(msg)()
            populate(template, section)
            built[key] = template
        msg.MergeFrom(template)

    populate_from_cache.clear = built.clear
    return populate_from_cache


def install() -> bool:
    """Once per server (serving.streamlit_private checks the step exists)."""
    with _lock:
        if _installed:
            return True
        original = streamlit_private.populate_theme()
        cached = _cached(original)
        config.on_config_parsed(cached.clear, force_connect=True)
        streamlit_private.set_populate_theme(cached)
        _installed.append(original)
        return True
