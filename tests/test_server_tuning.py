"""What the server sets up once to stay responsive with a class: the theme of each run's
start message built once (serving.theme_cache), and the cycle collector's tuning
(serving.ui.tune_garbage_collector)."""

from __future__ import annotations

import gc

import pytest
from streamlit import config
from streamlit.proto.NewSession_pb2 import CustomThemeConfig
from streamlit.runtime import app_session

from serving import theme_cache

pytestmark = pytest.mark.unit

SECTIONS = ["theme", "theme.light", "theme.dark", "theme.sidebar", "theme.light.sidebar",
            "theme.dark.sidebar"]


THEME = {"theme.primaryColor": "#0b6e4f", "theme.base": "dark",
         "theme.sidebar.backgroundColor": "#222233", "theme.light.textColor": "#101010"}


@pytest.fixture()
def themed():
    """A theme in several sections, as `streamlit run --theme.primaryColor ...` sets it."""
    config.get_config_options(force_reparse=True, options_from_flags=THEME)
    yield
    config.get_config_options(force_reparse=True)


def built(populate, section: str) -> CustomThemeConfig:
    msg = CustomThemeConfig()
    populate(msg, section)
    return msg


def test_each_theme_section_is_the_message_streamlit_builds(themed):
    original = theme_cache._installed[0] if theme_cache._installed else \
        app_session._populate_theme_msg
    cached = theme_cache._cached(original)
    for section in SECTIONS:
        expected = built(original, section)
        assert built(cached, section) == expected
        assert built(cached, section) == expected  # the second time, from the cache
    assert built(cached, "theme").primary_color == "#0b6e4f"
    assert built(cached, "theme").base == CustomThemeConfig.BaseTheme.DARK
    assert built(cached, "theme.sidebar").background_color == "#222233"
    assert built(cached, "theme.light").text_color == "#101010"


def test_a_new_config_parse_replaces_the_cached_theme(themed):
    assert theme_cache.install() and theme_cache.install()  # once, however often asked
    populate = app_session._populate_theme_msg
    assert populate is not theme_cache._installed[0]
    assert built(populate, "theme").primary_color == "#0b6e4f"
    config.get_config_options(force_reparse=True,
                              options_from_flags={**THEME, "theme.primaryColor": "#aa3377"})
    assert built(populate, "theme").primary_color == "#aa3377"


def test_the_collector_leaves_the_servers_first_objects_alone():
    from serving import ui

    threshold = gc.get_threshold()
    long_lived = [[i] for i in range(50_000)]  # a server's modules and caches, in miniature
    try:
        ui.tune_garbage_collector()
        assert gc.get_threshold()[0] == ui.GC_YOUNG_THRESHOLD
        assert gc.get_freeze_count() >= len(long_lived)
        walked = {id(o) for o in gc.get_objects(generation=2)}
        assert not any(id(o) in walked for o in long_lived[:1000])
        garbage = [[]]
        garbage[0].append(garbage)  # a cycle made after the freeze is still collected
        del garbage
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_students_pages_refresh_less_often_in_a_big_class_the_teachers_never():
    from serving.ui import CLASS_REFRESHES_PER_SECOND, class_refresh_interval

    assert class_refresh_interval(1.0, 5, teacher=False) == 1.0  # a small class: as asked
    assert class_refresh_interval(3.0, 60, teacher=False) == 3.0
    for visitors in (100, 300, 600):
        every = class_refresh_interval(1.0, visitors, teacher=False)
        assert every > 1.0
        assert visitors / every <= CLASS_REFRESHES_PER_SECOND + 1e-9  # the class, together
        assert class_refresh_interval(1.0, visitors, teacher=True) == 1.0  # projected: live
