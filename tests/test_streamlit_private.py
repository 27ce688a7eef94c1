"""The Streamlit internals the app relies on (serving/streamlit_private.py): each one exists
in the installed Streamlit, does what the app needs, and its absence stops the app with a
sentence naming the version. No other product file touches a private Streamlit name."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest
import streamlit
from streamlit.runtime import app_session
from streamlit.runtime.memory_session_storage import MemorySessionStorage

from serving import streamlit_private

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parent.parent
PRODUCT = [REPO / "app.py", REPO / "home.py", *(REPO / "serving").glob("*.py"),
           *(REPO / "pages").glob("*.py"), *(REPO / "mnist_core").rglob("*.py")]


def test_the_internals_exist_in_this_streamlit():
    streamlit_private.check()


def test_a_kept_storage_holds_a_class_of_disconnected_sessions(monkeypatch):
    monkeypatch.setattr(MemorySessionStorage.__init__, "__defaults__",
                        MemorySessionStorage.__init__.__defaults__)
    assert len(_fill(MemorySessionStorage(), 300)) < 300  # Streamlit's own default drops some
    streamlit_private.keep_sessions(streamlit_private.SESSIONS_KEPT)
    storage = MemorySessionStorage()  # as the runtime makes it, after app.py loaded
    assert len(_fill(storage, 600)) == 600


def _fill(storage, count: int) -> list:
    for n in range(count):
        storage.save(SimpleNamespace(session=SimpleNamespace(id=f"phone-{n}")))
    return [n for n in range(count) if storage.get(f"phone-{n}") is not None]


@pytest.mark.parametrize("remove", ["theme", "session storage"])
def test_an_upgrade_without_an_internal_stops_the_app_with_a_sentence(remove, monkeypatch):
    if remove == "theme":
        monkeypatch.delattr(app_session, "_populate_theme_msg")
    else:
        def without_maxsize(self, ttl_seconds: int = 120) -> None:
            pass
        monkeypatch.setattr(MemorySessionStorage, "__init__", without_maxsize)
    with pytest.raises(streamlit_private.StreamlitChanged) as raised:
        streamlit_private.check()
    assert f"Streamlit {streamlit.__version__} has no" in str(raised.value)
    assert "requirements.txt" in str(raised.value)


def _private_streamlit_names(path: Path) -> list[str]:
    """`_name`s imported from streamlit, or read or set on a module imported from it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("streamlit"):
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(alias.name)
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(a.asname or a.name for a in node.names
                           if a.name.startswith("streamlit"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and \
                not node.attr.startswith("__") and isinstance(node.value, ast.Name) and \
                node.value.id in modules:
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_only_one_module_touches_streamlits_private_names():
    touched = {path.relative_to(REPO).as_posix(): names for path in PRODUCT
               if (names := _private_streamlit_names(path))}
    assert touched == {"serving/streamlit_private.py": ["app_session._populate_theme_msg"]}
