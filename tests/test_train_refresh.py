"""The Train page refreshes itself only while a training runs: every refresh re-sends the
live panel to every watching browser, so an idle page only checks, every few seconds and
showing nothing, whether a training has started, wherever it was started from."""

from __future__ import annotations

import re
import shutil
import time

import pytest

from mnist_core.config import TrainConfig
from mnist_core.training.supervisor import Trainer
from tests import e2e, wire

pytestmark = pytest.mark.browser


@pytest.fixture()
def classroom(tmp_path, trained_store):
    models = tmp_path / "models"
    shutil.copytree(trained_store.root, models)
    app = e2e.AppServer(models, tmp_path / "server.log").start()
    trainer = Trainer(models)
    yield app.url, trainer
    trainer.stop()
    trainer.wait(timeout=120)
    app.stop()


@pytest.fixture()
def student_server(tmp_path, trained_store):
    """The app where this machine is a student's (MNIST_TRUST_LOCALHOST=0)."""
    models = tmp_path / "models"
    shutil.copytree(trained_store.root, models)
    app = e2e.AppServer(models, tmp_path / "server.log",
                        env={"MNIST_TRUST_LOCALHOST": "0"}).start()
    yield app.url
    app.stop()


async def refreshes(url: str) -> list[float]:
    """The self-refresh intervals a visitor's browser is asked to run on /Train."""
    async with wire.connect(url) as ws:
        await ws.send(wire.rerun("Train"))
        run = await wire.read_run(ws)
    return sorted(message.auto_rerun.interval for message, _ in run
                  if message.WhichOneof("type") == "auto_rerun")


def test_an_idle_train_page_only_checks_for_a_training_and_a_running_one_is_live(classroom):
    url, trainer = classroom
    idle = wire.run(refreshes(url))
    assert len(idle) == 1 and idle[0] >= 3  # one quiet check, nothing re-sent every second
    trainer.start(TrainConfig(epochs=50))  # from elsewhere: the command line, another device
    training = wire.run(refreshes(url))
    assert training[0] == 1.0 and len(training) == 2  # the live panel, and the epoch charts


def test_an_idle_page_picks_up_a_training_started_elsewhere(classroom, browser):
    url, trainer = classroom
    page = e2e.new_page(browser)
    try:
        e2e.open_page(page, f"{url}/Train")
        page.get_by_text("Results").first.wait_for()
        assert page.get_by_text(re.compile(r"epoch \d+/50")).count() == 0
        trainer.start(TrainConfig(epochs=50))
        # No click: the page sees the training by itself.
        page.get_by_text(re.compile(r"epoch \d+/50")).first.wait_for(timeout=60000)
        progress = page.locator('[data-testid="stProgress"] [role="progressbar"]')
        seen, deadline = set(), time.monotonic() + 300
        while len({v for v in seen if 0 < v < 100}) < 2 and time.monotonic() < deadline:
            value = progress.first.get_attribute("aria-valuenow") if progress.count() else None
            if value is not None:
                seen.add(float(value))
            time.sleep(0.25)
        assert len({v for v in seen if 0 < v < 100}) >= 2, f"progress seen {sorted(seen)}"
        assert page.errors == []
    finally:
        page.context.close()


async def refreshes_in_a_class(url: str, others: int) -> list[float]:
    """A student's refreshes on /Train while `others` more students' browsers are connected,
    each from an address of its own (127.0.0.2, ...), as a class's phones are."""
    sockets = [await wire.connect(url, local_addr=(f"127.0.{k // 250}.{k % 250 + 2}", 0)
                                  ).__aenter__() for k in range(others)]
    try:
        return await refreshes(url)
    finally:
        for ws in sockets:
            await ws.close()


def test_in_a_big_class_a_students_train_page_checks_less_often(student_server):
    alone = wire.run(refreshes(student_server))
    assert len(alone) == 1 and alone[0] >= 3
    crowded = wire.run(refreshes_in_a_class(student_server, 149))  # 150 visitors in all
    assert len(crowded) == 1 and crowded[0] >= 150 / 30  # ui.CLASS_REFRESHES_PER_SECOND
