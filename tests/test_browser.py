"""End to end in real Chromium against `streamlit run app.py`: what only a browser shows."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests import e2e

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
# Screenshots for a person to look at; never inside the repository.
ARTIFACTS = Path(os.environ.get("MNIST_TEST_ARTIFACTS")
                 or Path(tempfile.gettempdir()) / "mnist-test-artifacts")


@pytest.fixture(scope="module")
def server(tmp_path_factory, trained_store):
    """The app on a free port, with a models folder holding one trained run."""
    models = tmp_path_factory.mktemp("browser-models")
    shutil.copytree(trained_store.root, models, dirs_exist_ok=True)
    app = e2e.AppServer(models, tmp_path_factory.mktemp("server") / "streamlit.log").start()
    yield app.url
    app.stop()


@pytest.fixture()
def page(browser):
    page = e2e.new_page(browser, 1400, 1800)
    yield page
    page.context.close()


def assert_no_errors(page):
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.errors == []


def screenshot(page, name: str):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def test_explore_grid_renders(server, page):
    e2e.open_page(page, f"{server}/Explore")
    page.get_by_text("How many of each digit").wait_for()
    images = page.locator('[data-testid="stImage"] img')
    images.first.wait_for()
    # The 40-sample grid is one picture of at least 900 pixels across.
    widths = [images.nth(i).evaluate("img => img.naturalWidth") for i in range(images.count())]
    assert max(widths) >= 900
    page.locator(".vega-embed").first.wait_for()
    assert_no_errors(page)
    screenshot(page, "explore")


def test_a_training_shows_live_progress_and_its_stopped_result(server, page):
    """A 50-epoch training is watched until it has moved and finished an epoch, then stopped:
    nothing here depends on how fast the machine trains."""
    e2e.start_training(page, server)  # 50 epochs
    progress = page.locator('[data-testid="stProgress"] [role="progressbar"]')
    seen = set()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if progress.count():
            value = progress.first.get_attribute("aria-valuenow")
            if value is not None:
                seen.add(float(value))
        # Moved while we watched, and finished an epoch (its chart is there).
        if len({v for v in seen if 0 < v < 100}) >= 2 and page.get_by_text("Per epoch").count():
            break
        time.sleep(0.25)
    else:
        screenshot(page, "train-timeout")
        pytest.fail(f"the training did not move on; progress seen {sorted(seen)}")
    page.get_by_text("Per epoch").wait_for()
    assert page.locator(".vega-embed").count() >= 2  # batch and epoch charts
    screenshot(page, "train-live")
    e2e.app_button(page, "Stop").click()
    page.get_by_text("Training stopped: validation accuracy").wait_for(timeout=120000)
    page.get_by_text("Confusion matrix").wait_for(timeout=60000)
    assert_no_errors(page)
    screenshot(page, "train")


def test_drawing_a_digit_gives_a_prediction(server, page):
    e2e.open_page(page, f"{server}/Draw")
    canvas = page.locator("canvas.upper-canvas")
    canvas.wait_for()
    page.get_by_text("Draw a digit on the canvas").wait_for()
    e2e.draw(page, 7)
    prediction = e2e.prediction(page)
    prediction.wait_for(timeout=30000)
    assert prediction.locator('[data-testid="stMetricValue"]').inner_text().strip() == "7"
    page.get_by_text("From your drawing to what the model sees").wait_for()
    # The steps are inline images at their own size, enlarged by the browser.
    centred = page.get_by_alt_text("4. centred by mass in 28x28")
    centred.wait_for()
    assert centred.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [28, 28]
    assert centred.bounding_box()["width"] == 120
    assert_no_errors(page)
    screenshot(page, "draw")


def test_correcting_a_label_counts_the_drawing_in_the_class_report(server, page):
    e2e.open_page(page, f"{server}/Draw")
    page.locator("canvas.upper-canvas").wait_for()
    e2e.draw(page, 7)
    e2e.prediction(page).wait_for(timeout=30000)
    page.get_by_text("No, it is a").wait_for()
    page.locator('[data-testid="stButtonGroup"] button').nth(3).click()  # pills 0-9
    page.get_by_text("Saved as a 3").wait_for(timeout=30000)
    e2e.open_page(page, f"{server}/Class_drawings")
    drawings = page.locator('[data-testid="stMetric"]', has_text="Labelled drawings")
    drawings.wait_for(timeout=30000)
    assert drawings.locator('[data-testid="stMetricValue"]').inner_text().strip() == "1"
    page.get_by_text("Confusion matrix of the drawings").wait_for()
    assert_no_errors(page)
    screenshot(page, "class-drawings")
