"""Faults a class will meet: tabs closed, junk files in the models folder, bad data."""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mnist_core.runs import folder
from mnist_core.runs.store import ModelStore
from tests import app_run, e2e

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def models_with_a_run(tmp_path, trained_store):
    models = tmp_path / "models"
    shutil.copytree(trained_store.root, models)
    return models


def wait_for_batches(models: Path, timeout: float = 120) -> Path:
    """The run folder of the training in progress, once it has trained a few batches."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for run_dir in models.iterdir():
            metrics = run_dir / folder.METRICS if run_dir.is_dir() else None
            if metrics and metrics.exists() and not (run_dir / folder.RECORD).exists():
                if metrics.read_text().count('"batch"') >= 5:
                    return run_dir
        time.sleep(0.2)
    pytest.fail("no training started")


def test_closing_the_tab_keeps_training_and_another_visitor_stops_it(models_with_a_run,
                                                                       tmp_path, browser):
    server = e2e.AppServer(models_with_a_run, tmp_path / "server.log").start()
    try:
        teacher = e2e.new_page(browser)
        e2e.start_training(teacher, server.url)
        run_dir = wait_for_batches(models_with_a_run)
        teacher.context.close()
        size = (run_dir / folder.METRICS).stat().st_size
        deadline = time.monotonic() + 60
        while (run_dir / folder.METRICS).stat().st_size == size:  # still training
            assert time.monotonic() < deadline, "the training stopped with the tab"
            time.sleep(0.1)

        student = e2e.new_page(browser)
        e2e.open_page(student, f"{server.url}/Train")
        student.get_by_text("Training seed_mlp: epoch").wait_for(timeout=30000)
        e2e.app_button(student, "Stop").click()
        student.get_by_text("Training stopped").first.wait_for(timeout=60000)
        assert student.locator('[data-testid="stException"]').count() == 0
        assert student.errors == []
    finally:
        server.stop()
    run = ModelStore(models_with_a_run).get(run_dir.name)
    assert run.status == "stopped"


@pytest.mark.apptest
def test_junk_in_the_models_folder_is_listed_as_unreadable(models_with_a_run, trained_run,
                                                           monkeypatch, fresh_server):
    models = models_with_a_run
    corrupt = models / "20990101-000000-aaaa"
    shutil.copytree(models / trained_run.run_id, corrupt)
    (corrupt / folder.KERAS_FILE).write_bytes(b"\x00garbage")
    orphan = models / "20990101-000000-bbbb"
    shutil.copytree(models / trained_run.run_id, orphan)
    for name in (folder.KERAS_FILE, folder.ONNX_FILE):
        (orphan / name).unlink()
    (models / "shopping-list.txt").write_text("milk")
    monkeypatch.setenv("MNIST_MODELS_DIR", str(models))
    for page in ("home.py", "pages/2_Train.py"):
        app = open_page(page)
        assert not app.exception
        warning = " ".join(w.value for w in app.warning)
        assert "`20990101-000000-aaaa`: unreadable: model.keras is corrupt" in warning
        assert "`20990101-000000-bbbb`: unreadable: record.json without its model.keras" in warning
        assert "shopping-list.txt" in warning
    app = open_page("pages/2_Train.py")
    assert app.selectbox(key="train_result_run").options == [trained_run.label()]


def open_page(page: str) -> AppTest:
    """`page` of the app, run once, as a visitor following a link."""
    return app_run.open_app(page).run()


@pytest.mark.apptest
@pytest.mark.parametrize("page", ["home.py", "pages/1_Explore.py", "pages/2_Train.py"])
def test_broken_mnist_data_is_a_message_with_the_fix(page, tmp_path, monkeypatch, models_dir,
                                                     fresh_server):
    broken = tmp_path / "mnist"
    shutil.copytree(REPO / "data" / "mnist", broken)
    (broken / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b truncated")
    monkeypatch.setenv("MNIST_DATA", str(broken))
    app = open_page(page)
    assert not app.exception
    assert "t10k-images-idx3-ubyte.gz: checksum mismatch" in app.error[0].value
    assert "MNIST_DATA" in app.info[0].value


@pytest.mark.unit
def test_nothing_a_visitor_can_do_loads_outside_code():
    """No uploads of any kind; numpy never unpickles; Keras loads in safe mode only."""
    sources = [REPO / "app.py", REPO / "home.py", *(REPO / "serving").glob("*.py"),
               *(REPO / "pages").glob("*.py"), *(REPO / "mnist_core").rglob("*.py")]
    text = {path.name: path.read_text() for path in sources}
    assert not [name for name, code in text.items() if "file_uploader" in code]
    assert not [name for name, code in text.items() if "allow_pickle=True" in code]
    assert not [name for name, code in text.items() if "pickle" in code.replace("allow_pickle=False", "")]
    loads = [name for name, code in text.items() if "load_model(" in code]
    assert loads == ["fit.py"] and "safe_mode=True" in text["fit.py"]
    assert ModelStore(os.devnull).get("../../etc") is None


def test_a_corrupt_drawings_database_does_not_stop_drawing(models_with_a_run, tmp_path,
                                                           browser):
    bad = tmp_path / "drawings.db"
    bad.write_bytes(b"not a database " * 300)
    server = e2e.AppServer(models_with_a_run, tmp_path / "server.log",
                           env={"MNIST_DRAWINGS_DB": str(bad)}).start()
    try:
        page = e2e.new_page(browser)
        e2e.open_page(page, f"{server.url}/Draw")
        page.locator("canvas.upper-canvas").wait_for()
        e2e.draw(page, 7)
        e2e.prediction(page).wait_for(timeout=30000)
        e2e.app_button(page, "Yes, it is a").click()
        page.get_by_text("Your label was not saved").wait_for(timeout=30000)
        page.get_by_text("the drawings database is corrupt").wait_for()
        # Predicting goes on.
        e2e.clear_canvas(page)
        e2e.prediction(page).wait_for(state="detached", timeout=30000)
        e2e.draw(page, 1)
        e2e.prediction(page).wait_for(timeout=30000)
        assert page.locator('[data-testid="stException"]').count() == 0
        e2e.open_page(page, f"{server.url}/Class_drawings")
        page.get_by_text("the drawings database is corrupt").wait_for()
        assert page.errors == []
    finally:
        server.stop()


@pytest.mark.apptest
@pytest.mark.parametrize("code, words", [(errno.EROFS, "is read-only"), (errno.ENOSPC, "is full")],
                         ids=["read-only", "full"])
def test_a_models_folder_that_refuses_writes_is_one_clear_message(code, words, models_with_a_run,
                                                                   monkeypatch, fresh_server):
    """CI runs as root, so permissions prove nothing: the fault is injected at the writes."""
    models = models_with_a_run
    monkeypatch.setenv("MNIST_MODELS_DIR", str(models))

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(folder, "prepare_run", refuse)
    monkeypatch.setattr(folder, "atomic_write_json", refuse)
    app = open_page("pages/2_Train.py")
    next(b for b in app.button if b.label == "Start training").click().run()
    assert not app.exception
    message = " ".join(m.value for m in [*app.warning, *app.error])
    assert f"The models folder {models} {words}" in message or (
        f"the models folder {models} {words}" in message), message
    assert "MNIST_MODELS_DIR" in message  # how to fix it
    app.checkbox(key="train_draw_pin").check().run()  # pin the Draw model: a write
    next(b for b in app.button if b.label == "Use this model on the Draw page").click().run()
    assert not app.exception
    assert any(words in e.value and "the Draw model cannot be changed" in e.value
               for e in app.error)
    draw = open_page("pages/3_Draw.py")  # the saved model still serves
    assert not draw.exception and not draw.error
