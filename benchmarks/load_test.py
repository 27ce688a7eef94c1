"""A class at once: visitors drawing on /Draw while a training runs from /Train.

    python benchmarks/load_test.py [--visitors 10] [--seconds 60]

Starts the app on a free port with a fresh models folder, trains the default model once
alone (through the Train page) for a baseline, then opens N independent Chromium contexts
on /Draw, each clearing the canvas, drawing a digit and waiting for the Prediction about
once a second, while one more context starts the same training. Prints errors seen on any
page, mouse-up -> Prediction latency (median, p95), the training's slowdown and the
server's resident memory. tests/test_load.py runs a small version with 0 errors asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import e2e  # noqa: E402

from mnist_core.store import ModelStore  # noqa: E402


@dataclass
class LoadResult:
    visitors: int
    seconds: float
    predictions: int = 0
    per_visitor: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    training_alone: float | None = None
    training_loaded: float | None = None
    server_rss_mb: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[int(q * (len(ordered) - 1))] if ordered else float("nan")

    def report(self) -> str:
        lines = [
            f"{self.visitors} visitors drawing for {self.seconds:.0f} s, one training running",
            f"  predictions: {self.predictions}   errors: {len(self.errors)}",
            f"  mouse-up -> Prediction: median {statistics.median(self.latencies or [0]):.3f} s"
            f"   p95 {self.percentile(0.95):.3f} s   max {max(self.latencies or [0]):.3f} s",
        ]
        if self.training_alone and self.training_loaded:
            lines.append(f"  training fit: alone {self.training_alone:.1f} s, under load "
                         f"{self.training_loaded:.1f} s ({self.training_loaded / self.training_alone:.1f}x)")
        if self.server_rss_mb:
            lines.append(f"  server resident memory: max {max(self.server_rss_mb):.0f} MB")
        lines += [f"  error: {e}" for e in self.errors[:10]]
        return "\n".join(lines)


async def _open(context, url):
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(f"page error: {exc}"))
    await page.goto(url)
    await page.wait_for_selector('[data-testid="stApp"]')
    return page


async def _exceptions(page) -> list[str]:
    return await page.locator('[data-testid="stException"]').all_inner_texts()


async def visitor(browser, url: str, number: int, until: float, result: LoadResult) -> None:
    context = await browser.new_context(viewport={"width": 1300, "height": 1100})
    try:
        page = await _open(context, f"{url}/Draw")
        canvas = page.locator("canvas.upper-canvas")
        await canvas.wait_for(timeout=60000)
        digits = list(e2e.DIGIT_STROKES)
        turn = 0
        while time.time() < until:
            started = time.time()
            prediction = page.locator('[data-testid="stMetric"]', has_text="Prediction")
            if await prediction.count():
                await page.get_by_role("button", name="Reset canvas & history").click()
                await prediction.wait_for(state="detached", timeout=15000)
            box = await canvas.bounding_box()
            for stroke in e2e.DIGIT_STROKES[digits[(number + turn) % len(digits)]]:
                (x, y), rest = stroke[0], stroke[1:]
                await page.mouse.move(box["x"] + x, box["y"] + y)
                await page.mouse.down()
                for x, y in rest:
                    await page.mouse.move(box["x"] + x, box["y"] + y, steps=2)
                await page.mouse.up()
            mouse_up = time.perf_counter()
            try:
                await prediction.wait_for(timeout=15000)
                result.latencies.append(time.perf_counter() - mouse_up)
                result.predictions += 1
                result.per_visitor[number] = result.per_visitor.get(number, 0) + 1
            except Exception as exc:  # a timeout is an error the class would see
                result.errors.append(f"visitor {number}: no prediction ({type(exc).__name__})")
            for text in await _exceptions(page):
                result.errors.append(f"visitor {number}: {text.splitlines()[0]}")
            turn += 1
            await asyncio.sleep(max(0.0, 1.0 - (time.time() - started)))
        result.errors.extend(page.errors)
    except Exception as exc:
        result.errors.append(f"visitor {number}: {type(exc).__name__}: {exc}")
    finally:
        await context.close()


async def teacher_trains(browser, url: str, models_dir: Path, result: LoadResult) -> bool:
    """Start the default training from the Train page; wait until it is saved and shown."""
    context = await browser.new_context(viewport={"width": 1300, "height": 1100})
    store = ModelStore(models_dir)
    before = len(store.scan().usable)
    try:
        page = await _open(context, f"{url}/Train")
        await page.get_by_role("button", name="Start training").click()
        deadline = time.time() + 600
        while len(store.scan().usable) == before:
            if time.time() > deadline:
                raise TimeoutError("the training did not finish in 10 minutes")
            await asyncio.sleep(0.5)
        run_id = store.scan().usable[0].run_id
        await page.get_by_text(f"Saved as run {run_id}").first.wait_for(timeout=30000)
        for text in await _exceptions(page):
            result.errors.append(f"teacher: {text.splitlines()[0]}")
        result.errors.extend(page.errors)
        return True
    except Exception as exc:
        result.errors.append(f"teacher: {type(exc).__name__}: {exc}")
        return False
    finally:
        await context.close()


def newest_fit_seconds(models_dir: Path) -> float | None:
    scan = ModelStore(models_dir).scan()
    return scan.usable[0].record["fit_seconds"] if scan.usable else None


async def _load(url: str, models_dir: Path, visitors: int, seconds: float, train: bool,
                result: LoadResult) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=e2e.CHROMIUM, args=e2e.CHROMIUM_FLAGS)
        # The Draw page needs a model; training it alone also gives the baseline.
        await teacher_trains(browser, url, models_dir, result)
        result.training_alone = newest_fit_seconds(models_dir)
        until = time.time() + seconds
        tasks = [visitor(browser, url, i, until, result) for i in range(visitors)]
        if train:
            tasks.append(teacher_trains(browser, url, models_dir, result))
        await asyncio.gather(*tasks)
        if train:
            result.training_loaded = newest_fit_seconds(models_dir)
        await browser.close()


def run_load(visitors: int, seconds: float, train: bool = True,
             work_dir: Path | None = None) -> LoadResult:
    """Start the app, run the load, stop the app; everything lives in `work_dir`."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work_dir or tmp)
        models = work / "models"
        models.mkdir(parents=True, exist_ok=True)
        server = e2e.AppServer(models, work / "streamlit.log").start()
        result = LoadResult(visitors, seconds)
        sampling = threading.Event()

        def sample_memory():
            while not sampling.wait(1.0):
                result.server_rss_mb.append(server.rss_mb())

        sampler = threading.Thread(target=sample_memory, daemon=True)
        sampler.start()
        try:
            asyncio.run(_load(server.url, models, visitors, seconds, train, result))
        finally:
            sampling.set()
            server.stop()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    result = run_load(args.visitors, args.seconds)
    print(result.report())
    if args.json:
        print(json.dumps({
            "visitors": result.visitors, "predictions": result.predictions,
            "errors": len(result.errors),
            "latency_median": statistics.median(result.latencies or [0]),
            "latency_p95": result.percentile(0.95),
            "training_alone": result.training_alone, "training_loaded": result.training_loaded,
            "server_rss_max_mb": max(result.server_rss_mb or [0]),
        }))
    sys.exit(1 if result.errors else 0)


if __name__ == "__main__":
    main()
