"""One truth on disk: every server process, restart and cleared cache sees the same training."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from mnist_core.runs import folder
from mnist_core.runs.lease import TrainingLease
from mnist_core.runs.store import ModelStore
from tests import e2e, wire

pytestmark = pytest.mark.browser
LIVE = "Training seed_mlp: epoch"  # the live panel's progress text while a training runs


@pytest.fixture()
def models(tmp_path, trained_store):
    models = tmp_path / "models"
    shutil.copytree(trained_store.root, models)
    return models


class WorkerCount:
    """Counts the models folder's training workers every 0.1 s in the background."""

    def __init__(self, models: Path):
        self.models = models
        self.most = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._done.is_set():
            self.most = max(self.most, len(e2e.worker_processes(self.models)))
            time.sleep(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()


def wait_until(condition, timeout: float = 120, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def start_and_watch(page, url: str, models: Path):
    """Start a long training from the Train page; once it trains, return who holds the lease."""
    e2e.start_training(page, url)
    page.get_by_text(LIVE).wait_for(timeout=120000)
    return TrainingLease(models).current()


def epochs_ended(metrics: Path) -> int:
    """Complete epochs in a run's metrics.jsonl so far (a line being written is skipped)."""
    ended = 0
    for line in metrics.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        ended += event.get("event") == "epoch" and bool(event.get("complete"))
    return ended


def assert_clean(page):
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.errors == []


def test_two_servers_on_one_models_folder_share_one_training(models, tmp_path, browser):
    a = e2e.AppServer(models, tmp_path / "a.log").start()
    b = e2e.AppServer(models, tmp_path / "b.log").start()
    try:
        with WorkerCount(models) as workers:
            on_b = e2e.new_page(browser)
            e2e.open_page(on_b, f"{b.url}/Train")
            e2e.start_training(e2e.new_page(browser), a.url)
            on_b.get_by_text(LIVE).wait_for(timeout=120000)  # B shows A's training live

            e2e.app_button(on_b, "Start training").click()
            on_b.get_by_text("A training is already running").wait_for(timeout=30000)

            e2e.app_button(on_b, "Stop").click()
            on_b.get_by_text("Training stopped").first.wait_for(timeout=120000)
            wait_until(lambda: not e2e.worker_processes(models), what="the worker to exit")
            assert_clean(on_b)
        assert workers.most == 1
    finally:
        a.stop()
        b.stop()
    runs = ModelStore(models).scan().runs
    assert runs[0].status == "stopped" and len(runs) == 2


def test_clearing_the_cache_from_a_websocket_changes_nothing(models, tmp_path, browser):
    server = e2e.AppServer(models, tmp_path / "server.log").start()
    try:
        with WorkerCount(models) as workers:
            teacher = e2e.new_page(browser)
            e2e.start_training(teacher, server.url)
            teacher.get_by_text(LIVE).wait_for(timeout=120000)

            wire.run(wire.send_clear_cache(server.url))

            e2e.open_page(teacher, f"{server.url}/Train")  # a new session after the clear
            teacher.get_by_text(LIVE).wait_for(timeout=60000)
            e2e.app_button(teacher, "Start training").click()
            teacher.get_by_text("A training is already running").wait_for(timeout=30000)
            e2e.app_button(teacher, "Stop").click()
            teacher.get_by_text("Training stopped").first.wait_for(timeout=120000)
            assert_clean(teacher)
        assert workers.most == 1
    finally:
        server.stop()


def test_a_training_outlives_its_server_and_the_restarted_server_finds_it(models, tmp_path,
                                                                         browser, trained_run):
    before = (models / trained_run.run_id / folder.RECORD).read_text()
    server = e2e.AppServer(models, tmp_path / "server.log").start()
    try:
        page = e2e.new_page(browser)
        worker = start_and_watch(page, server.url, models)
        server.kill()  # SIGKILL, as a crash would
    finally:
        server.stop()
    # The class's demo goes on: the worker still holds the lease and keeps training.
    assert TrainingLease(models).current() == worker
    metrics = models / worker.run_id / folder.METRICS
    size = metrics.stat().st_size
    wait_until(lambda: metrics.stat().st_size > size, what="the worker to go on training")

    # Stopped once an epoch has ended, the run keeps that epoch's model (a loaded machine may
    # take a while over the first one).
    wait_until(lambda: epochs_ended(metrics) > 0, timeout=600, what="the worker to end an epoch")
    server = e2e.AppServer(models, tmp_path / "server2.log").start()
    try:
        page = e2e.new_page(browser)
        e2e.open_page(page, f"{server.url}/Train")
        page.get_by_text(LIVE).wait_for(timeout=60000)
        e2e.app_button(page, "Stop").click()
        page.get_by_text("Training stopped").first.wait_for(timeout=120000)
        assert_clean(page)
        e2e.open_page(page, server.url)
        page.get_by_text(trained_run.run_id).wait_for()
        assert_clean(page)
    finally:
        server.stop()
    wait_until(lambda: not e2e.worker_processes(models), what="the worker to exit")
    run = ModelStore(models).get(worker.run_id)
    assert run.status == "stopped" and run.usable  # nothing lost: its epochs were saved
    assert (models / trained_run.run_id / folder.RECORD).read_text() == before


def test_a_killed_worker_s_stale_lease_is_recovered_logged_and_shown(models, tmp_path, browser):
    server = e2e.AppServer(models, tmp_path / "server.log").start()
    try:
        page = e2e.new_page(browser)
        worker = start_and_watch(page, server.url, models)
        os.kill(worker.pid, signal.SIGKILL)
        page.get_by_text("Training was interrupted").wait_for(timeout=60000)
        page.get_by_text(f"The training of run {worker.run_id} ended without releasing its "
                         "lease").wait_for(timeout=30000)
        e2e.start_training(page, server.url, epochs_key="Home")  # 1 epoch
        page.get_by_text("Training finished").first.wait_for(timeout=180000)
        assert_clean(page)
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text()
    assert f"Recovered a stale training lease: run {worker.run_id} (pid {worker.pid})" in log
    assert json.loads((models / worker.run_id / folder.OUTCOME).read_text())["status"] == \
        "interrupted"
