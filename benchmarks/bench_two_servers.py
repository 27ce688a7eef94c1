"""Two app servers on one models folder: how soon does B show a training started on A?

    python -m benchmarks.bench_two_servers [--repeats 3]

Starts two `streamlit run app.py` servers on one fresh models folder and a Chromium page on
each one's Train page. Each round presses Start on A and times until B's live panel shows the
training (from "Starting TensorFlow..." on), then presses Stop on B and times until A shows it
stopped. Both go through the folder only: the lease and the run's files. Also times the same
two hops for a bare `Follower` in this process (no browser, no Streamlit), which is the floor.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from mnist_core.config import TrainConfig
from mnist_core.training.follow import Follower
from mnist_core.training.supervisor import Trainer
from tests import e2e

# B's live panel, from the moment the worker holds the lease (TensorFlow still loading) on.
SHOWN = re.compile("Starting TensorFlow in the training process|Training seed_mlp: epoch")
LONG = TrainConfig(epochs=50)


def follower_hops(models: Path) -> tuple[float, float]:
    """(start -> a Follower sees it active, stop -> it sees it ended), in seconds."""
    a, b = Trainer(models), Follower(models, max_age=0)
    started = time.perf_counter()
    a.start(LONG)
    while not b.snapshot().active:
        time.sleep(0.005)
    seen = time.perf_counter() - started
    while b.snapshot().state != "running":  # stop once it trains, as a teacher would
        time.sleep(0.05)
    stopped = time.perf_counter()
    a.stop()
    while b.snapshot().active:
        time.sleep(0.005)
    return seen, time.perf_counter() - stopped


def browser_hops(browser, a: e2e.AppServer, b: e2e.AppServer) -> tuple[float, float]:
    on_a, on_b = e2e.new_page(browser), e2e.new_page(browser)
    e2e.open_page(on_b, f"{b.url}/Train")
    e2e.open_page(on_a, f"{a.url}/Train")
    slider = on_a.locator('[data-testid="stSlider"]', has_text="Epochs").get_by_role("slider")
    slider.focus()
    on_a.keyboard.press("End")
    started = time.perf_counter()
    e2e.app_button(on_a, "Start training").click()
    on_b.get_by_text(SHOWN).wait_for(timeout=120000)
    seen = time.perf_counter() - started
    on_b.get_by_text("Training seed_mlp: epoch").wait_for(timeout=120000)
    stopped = time.perf_counter()
    e2e.app_button(on_b, "Stop").click()
    on_a.get_by_text("Training stopped").first.wait_for(timeout=120000)
    ended = time.perf_counter() - stopped
    on_a.context.close()
    on_b.context.close()
    return seen, ended


def line(label: str, values: list[float]) -> str:
    return (f"  {label}: median {statistics.median(values):.2f} s  "
            f"(min {min(values):.2f}, max {max(values):.2f}, n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        hops = [follower_hops(work / "bare") for _ in range(args.repeats)]
        print("Follower in this process (the floor):")
        print(line("start on A -> B sees it", [h[0] for h in hops]))
        print(line("stop -> B sees it end", [h[1] for h in hops]))
        models = work / "models"
        a = e2e.AppServer(models, work / "a.log").start()
        b = e2e.AppServer(models, work / "b.log").start()
        try:
            with sync_playwright() as playwright:
                browser = e2e.launch_chromium(playwright)
                hops = [browser_hops(browser, a, b) for _ in range(args.repeats)]
                browser.close()
        finally:
            a.stop()
            b.stop()
        print("Two servers, a Chromium page on each:")
        print(line("Start clicked on A -> B's page shows it live", [h[0] for h in hops]))
        print(line("Stop clicked on B -> A's page shows it stopped", [h[1] for h in hops]))


if __name__ == "__main__":
    main()
