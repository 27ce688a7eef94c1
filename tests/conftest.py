"""Shared fixtures: the real MNIST data, and one real trained run for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st

from mnist_core.config import TrainConfig
from mnist_core.data import read_mnist
from mnist_core.runs.store import ModelStore
from mnist_core.training.supervisor import Trainer
from tests import e2e

# Fast but real: the notebook's network on all 60000 images for 2 epochs (~97% here).
TRAINED_CONFIG = TrainConfig(epochs=2)


@pytest.fixture(scope="session")
def mnist():
    return read_mnist()


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory):
    """A models folder holding one finished run of TRAINED_CONFIG."""
    root = tmp_path_factory.mktemp("models")
    trainer = Trainer(root)
    trainer.start(TRAINED_CONFIG)
    snap = trainer.wait(timeout=600)
    assert snap.state == "finished", snap.error
    return ModelStore(root)


@pytest.fixture(scope="session")
def trained_run(trained_store):
    return trained_store.current()


@pytest.fixture()
def models_dir(tmp_path, monkeypatch):
    """An empty models folder that the app and the CLI use (MNIST_MODELS_DIR)."""
    path = tmp_path / "models"
    path.mkdir()
    monkeypatch.setenv("MNIST_MODELS_DIR", str(path))
    return path


@pytest.fixture()
def fresh_server():
    """A new server for AppTest: no dataset, job manager or model cached by another test."""
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture(autouse=True)
def visitor_on_the_servers_machine(request, monkeypatch):
    """AppTest runs a page with no connection behind it, so no address: its visitor is the
    one at the server's own machine, as a browser there would be (a test makes a student
    with MNIST_TRUST_LOCALHOST=0, or by giving `roles.peer` another address)."""
    if request.node.get_closest_marker("apptest") is not None:
        from serving import roles

        monkeypatch.setattr(roles, "peer", lambda: None)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, driven by Playwright (one per test module)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(e2e.CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {e2e.CHROMIUM}: apt-get install -y chromium")
    with playwright_api.sync_playwright() as p:
        browser = e2e.launch_chromium(p)
        yield browser
        browser.close()


TIERS = ("unit", "trains", "apptest", "browser")
# What a fixture needs, as a tier: a test using it is marked so, whatever its module says.
NEEDS = {"trained_store": "trains", "trained_run": "trains", "browser": "browser"}


def pytest_collection_modifyitems(items):
    """Every test says what it needs (pyproject's markers), so `-m` selects honestly: the
    tiers its fixtures need are added, and a test with no tier at all is an error."""
    for item in items:
        needs = {NEEDS[f] for f in item.fixturenames if f in NEEDS}
        if needs and item.get_closest_marker("unit"):
            raise pytest.UsageError(f"{item.nodeid} is marked unit but needs {sorted(needs)}")
        for name in sorted(needs):
            if not item.get_closest_marker(name):
                item.add_marker(getattr(pytest.mark, name))
    unmarked = [item.nodeid for item in items if not any(item.get_closest_marker(t) for t in TIERS)]
    if unmarked:
        raise pytest.UsageError(f"tests without a tier marker ({', '.join(TIERS)}): {unmarked}")
