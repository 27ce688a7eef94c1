"""A small class at once (benchmarks/load_test.py measures a big one): no visitor sees an
error, and every visitor gets the digit it drew, while a training runs. Counted in drawings,
never in drawings per second: a loaded machine is slower, not wrong."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from mnist_core.data import flatten, normalize
from mnist_core.inference import Classifier
from tests import e2e, wire

pytestmark = pytest.mark.browser

DIGITS = [7, 1, 0, 4]
ROUNDS = 3


@pytest.fixture()
def server(tmp_path, trained_store):
    models = tmp_path / "models"
    shutil.copytree(trained_store.root, models)
    app = e2e.AppServer(models, tmp_path / "server.log").start()
    yield app
    app.stop()


async def wire_visitor(url: str, first: int) -> list[tuple[int, str]]:
    """One session without a browser: draws each digit ROUNDS times, clearing in between."""
    answers = []
    async with wire.DrawVisitor(url, timeout=120) as visitor:
        for i in range(ROUNDS * len(DIGITS)):
            digit = DIGITS[(first + i) % len(DIGITS)]
            prediction, _ = await visitor.draw(digit)
            answers.append((digit, prediction))
            await visitor.clear()
    return answers


async def wire_class(url: str, visitors: int) -> list[list[tuple[int, str]]]:
    return await asyncio.gather(*(wire_visitor(url, i) for i in range(visitors)))


def test_ten_sessions_at_once_each_get_the_digit_they_drew(server):
    """Ten sessions speaking Streamlit's own protocol, all drawing at once."""
    answers = wire.run(wire_class(server.url, 10))
    assert [len(a) for a in answers] == [ROUNDS * len(DIGITS)] * 10
    wrong = [(digit, got) for session in answers for digit, got in session if str(digit) != got]
    assert wrong == []  # and each was the digit drawn: no mixing between sessions


async def inside_class(url: str, visitors: int) -> list[list[str]]:
    return await asyncio.gather(*(
        wire.open_page(url, "Inside_the_network", f"split=x_valid&index={i}")
        for i in range(visitors)))


def test_thirty_visitors_look_inside_the_network_at_once(server, mnist, trained_run):
    """Each with its own MNIST image (a shared link's ?index=): every page whole, and each
    explains the digit the model predicts for its own image, not another visitor's."""
    pages = wire.run(inside_class(server.url, 30))
    predicted = Classifier(trained_run.onnx_path).predict_proba(
        normalize(flatten(mnist.x_valid[:30]))).argmax(axis=1)
    assert len(pages) == 30
    for texts, digit in zip(pages, predicted, strict=True):
        text = " ".join(texts)
        assert "Layer by layer" in text and "What the units look for" in text, text[:300]
        assert f"Why a {digit} and not a" in text, text[:300]


def test_three_browsers_draw_while_a_training_runs(server, browser):
    teacher = e2e.new_page(browser)
    e2e.start_training(teacher, server.url)
    teacher.get_by_text("Training seed_mlp: epoch").wait_for(timeout=120000)
    pages = [e2e.new_page(browser) for _ in range(3)]
    for page in pages:
        e2e.open_page(page, f"{server.url}/Draw")
        page.locator("canvas.upper-canvas").wait_for()
    for round_ in range(ROUNDS):
        for n, page in enumerate(pages):
            digit = DIGITS[(n + round_) % len(DIGITS)]
            e2e.draw(page, digit)
            assert e2e.final_prediction(page, str(digit)) == str(digit)
            e2e.clear_canvas(page)
            e2e.prediction(page).wait_for(state="detached", timeout=60000)
    for page in [teacher, *pages]:
        assert page.locator('[data-testid="stException"]').count() == 0
        assert page.errors == []
    e2e.app_button(teacher, "Stop").click()
    teacher.get_by_text("Training stopped").first.wait_for(timeout=120000)
