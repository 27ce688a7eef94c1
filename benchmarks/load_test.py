"""A class at once: visitors drawing on /Draw while a training runs from /Train.

    python -m benchmarks.load_test [--visitors 10] [--wire-visitors 0] [--wire-pace 0.8 1.2]
                                   [--join-seconds 0] [--seconds 60] [--no-training]
                                   [--processes 1]

Starts the app on a free port with a fresh models folder, trains the default model once
alone (through the Train page) for a baseline, then opens N independent Chromium contexts
on /Draw, each clearing the canvas, drawing a digit and waiting for the Prediction every
second or so, while one more context starts the same training. `--wire-visitors M` adds
visitors without a browser (tests/wire.py: Streamlit's websocket protocol, sending what the
canvas sends), to measure the server's share alone: students, each from a loopback address of
its own, as each device on a classroom's network has. `--processes N` serves the app with N
processes on its port, as `./run app` does. Prints errors seen on any
page, mouse-up -> Prediction latency (median, p95), the training's slowdown, the server's
resident memory, and how the machine's CPU was shared between the server, the training and
the simulated browsers (which, in a real class, run on the visitors' own computers).
tests/test_load.py runs a small version with 0 errors asserted.

The latency is timed by each page itself: from the canvas's mouse-up event to the moment the
Prediction element is in the page, on the page's own clock, so delays of the test driver
are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mnist_core.runs.store import ModelStore
from tests import e2e, wire

REPO = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))] if ordered else float("nan")


def _windows_line(sent_at: list[float], latencies: list[float], windows: int = 6) -> str:
    """p95 in each sixth of the run: a queue that builds up, or drains, shows here."""
    if not sent_at:
        return "    p95 over time: none"
    start, end = min(sent_at), max(sent_at) + 1e-9
    width = (end - start) / windows
    parts = []
    for window in range(windows):
        inside = [latency for at, latency in zip(sent_at, latencies, strict=True)
                  if start + window * width <= at < start + (window + 1) * width]
        parts.append(f"{percentile(inside, 0.95):.2f}" if inside else "-")
    return f"    p95 in each {width:.0f} s of the run: {' '.join(parts)}"


def _latency_line(label: str, latencies: list[float]) -> str:
    if not latencies:
        return f"  {label}: none"
    return (f"  {label}: median {statistics.median(latencies):.3f} s   p95 "
            f"{percentile(latencies, 0.95):.3f} s   max {max(latencies):.3f} s")


@dataclass
class LoadResult:
    visitors: int
    seconds: float
    wire_visitors: int = 0
    predictions: int = 0
    per_visitor: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    wire_latencies: list[float] = field(default_factory=list)
    wire_sent_at: list[float] = field(default_factory=list)  # time.time() of each drawing sent
    wire_process: list[int] = field(default_factory=list)  # which server process answered it
    processes: int = 1
    wire_wrong: int = 0
    errors: list[str] = field(default_factory=list)
    training_alone: float | None = None
    training_loaded: float | None = None
    server_rss_mb: list[float] = field(default_factory=list)
    cpu_cores: dict[str, float] = field(default_factory=dict)
    all_joined_at: float = 0.0  # time.time() when the last visitor had joined
    driver_lag: list[float] = field(default_factory=list)  # how late the driver's loop woke

    def report(self) -> str:
        who = [f"{self.visitors} visitors in Chromium"] if self.visitors else []
        if self.wire_visitors:
            who.append(f"{self.wire_visitors} visitors without a browser")
        lines = [
            f"{' + '.join(who)} drawing for {self.seconds:.0f} s"
            + (", one training running" if self.training_loaded else ""),
            f"  predictions: {self.predictions + len(self.wire_latencies)}"
            f"   errors: {len(self.errors)}",
        ]
        if self.visitors:
            lines.append(_latency_line("Chromium, mouse-up -> Prediction", self.latencies))
        if self.wire_visitors:
            lines.append(_latency_line("no browser, drawing sent -> Prediction received",
                                       self.wire_latencies))
            lines.append(_windows_line(self.wire_sent_at, self.wire_latencies))
            joined = [latency for at, latency in zip(self.wire_sent_at, self.wire_latencies,
                                                      strict=True)
                      if at >= self.all_joined_at]
            if joined and len(joined) < len(self.wire_latencies):
                lines.append(_latency_line("  once all had joined (the training runs then)",
                                           joined))
            if self.processes > 1:
                answered = list(zip(self.wire_process, self.wire_latencies, strict=True))
                lines.append("    p95 of each server process's students: " + "   ".join(
                    f"{percentile([s for p, s in answered if p == index], 0.95):.3f} s"
                    for index in range(self.processes)))
            if self.driver_lag:
                lines.append(f"    this driver's own event loop woke late by: p95 "
                             f"{percentile(self.driver_lag, 0.95):.3f} s, max "
                             f"{max(self.driver_lag):.3f} s (counted in the latencies above)")
            lines.append(f"    the canvas's own {CANVAS_SEND_DELAY} s wait after mouse-up comes"
                         f" on top; {self.wire_wrong} of {len(self.wire_latencies)}"
                         " predictions were not the digit drawn")
        if self.training_alone and self.training_loaded:
            lines.append(f"  training fit: alone {self.training_alone:.1f} s, under load "
                         f"{self.training_loaded:.1f} s ({self.training_loaded / self.training_alone:.1f}x)")
        if self.server_rss_mb:
            lines.append(f"  server resident memory: max {max(self.server_rss_mb):.0f} MB")
        if self.cpu_cores:
            shares = "   ".join(f"{name} {cores:.2f}" for name, cores in self.cpu_cores.items())
            lines.append(f"  CPU cores used (machine has {os.cpu_count()}): {shares}")
            if self.predictions:
                per = self.cpu_cores["browsers"] * self.seconds / self.predictions
                lines.append(f"  browsers' CPU per prediction: {per:.2f} s")
        lines += [f"  error: {e}" for e in self.errors[:10]]
        return "\n".join(lines)


class CpuMeter:
    """CPU time used by the server, its training worker, the browsers and the test driver.

    Sampled from /proc about once a second so that processes which end (the training worker,
    closed browser contexts) keep the time they used."""

    def __init__(self, server_pid: int):
        self.server_pid = server_pid
        self.used: dict[int, tuple[str, float]] = {}
        self.start: dict[int, float] = {}
        self.started_at = time.monotonic()
        self.lock = threading.Lock()

    def _group(self, pid: int, server_tree: set[int]) -> str:
        command = e2e.command_line(pid)
        if "mnist_core.training" in command:  # the worker, whoever its parent is now
            return "training"
        if pid in server_tree:
            return "server"
        return "browsers" if "chrom" in Path(command.split(" ", 1)[0]).name else "test driver"

    def sample(self) -> None:
        with self.lock:
            server_tree = set(e2e.descendants(self.server_pid))
            for pid in e2e.descendants(os.getpid()):
                group, before = self.used.get(pid, (None, 0.0))
                self.used[pid] = (group or self._group(pid, server_tree),
                                  max(before, e2e.cpu_seconds(pid)))

    def mark(self) -> None:
        """Count from now on."""
        self.sample()
        self.start = {pid: seconds for pid, (_, seconds) in self.used.items()}
        self.machine_start = machine_seconds()
        self.started_at = time.monotonic()

    def cores(self) -> dict[str, float]:
        """Average number of cores each group used since `mark()`; "elsewhere" is what the
        rest of the machine used, "stolen" what the host gave to other machines (a shared
        virtual machine: the same run can be several times slower when this is high)."""
        self.sample()
        elapsed = time.monotonic() - self.started_at
        totals = dict.fromkeys(["server", "training", "browsers", "test driver"], 0.0)
        for pid, (group, seconds) in self.used.items():
            totals[group] += seconds - self.start.get(pid, 0.0)
        busy, stolen = (now - then for now, then in
                        zip(machine_seconds(), self.machine_start, strict=True))
        totals["elsewhere"] = max(0.0, busy - sum(totals.values()))
        totals["stolen"] = stolen
        return {group: total / elapsed for group, total in totals.items()}


def machine_seconds() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy, and those the host stole (/proc/stat)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    stolen = fields[7] if len(fields) > 7 else 0
    return (sum(fields[:8]) - idle - stolen) / ticks, stolen / ticks


class Pace:
    """A digit every second or so (0.8-1.2 s), each visitor starting at its own moment, as in
    a class: visitors in lockstep would all hit the server in the same millisecond."""

    def __init__(self, number: int, until: float, every: tuple[float, float] = (0.8, 1.2)):
        self.number, self.until, self.every = number, until, every
        self.random = random.Random(number)

    async def digits(self):
        """The digits this visitor draws, in turn, until `until`."""
        await asyncio.sleep(self.random.uniform(0.0, self.every[1]))
        digits = list(e2e.DIGIT_STROKES)
        turn = 0
        while time.time() < self.until:
            started = time.time()
            yield digits[(self.number + turn) % len(digits)]
            turn += 1
            await asyncio.sleep(max(0.0, self.random.uniform(*self.every)
                                    - (time.time() - started)))


# streamlit-drawable-canvas 0.13 sends a drawing 200 ms after the last change (`Bc = 200`).
CANVAS_SEND_DELAY = 0.2

# Runs in each visitor's page: times mouse-up -> Prediction in the page itself.
LATENCY_PROBE = """() => {
  const probe = window.mnistProbe = {mouseUp: performance.now()};
  addEventListener("mouseup", () => { probe.mouseUp = performance.now(); }, true);
  const shown = () => [...document.querySelectorAll('[data-testid="stMetric"]')]
    .some((metric) => metric.textContent.includes("Prediction"));
  probe.until = (present, timeout) => new Promise((resolve, reject) => {
    const done = () => resolve((performance.now() - probe.mouseUp) / 1000);
    if (shown() === present) return done();
    const observer = new MutationObserver(() => {
      if (shown() === present) { observer.disconnect(); clearTimeout(timer); done(); }
    });
    const timer = setTimeout(() => {
      observer.disconnect();
      reject(new Error(`no ${present ? "Prediction" : "cleared canvas"} in ${timeout} ms`));
    }, timeout);
    observer.observe(document.body, {childList: true, subtree: true, characterData: true});
  });
}"""


async def _open(context, url):
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(f"page error: {exc}"))
    await page.goto(url)
    await page.wait_for_selector('[data-testid="stApp"]')
    return page


async def _exceptions(page) -> list[str]:
    return await page.locator('[data-testid="stException"]').all_inner_texts()


async def open_draw_page(browser, url: str):
    context = await browser.new_context(viewport={"width": 1300, "height": 1100})
    page = await _open(context, f"{url}/Draw")
    await page.locator("canvas.upper-canvas").wait_for(timeout=60000)
    await page.evaluate(LATENCY_PROBE)
    return page


async def visitor(page, number: int, until: float, result: LoadResult) -> None:
    """Clear, draw a digit, wait for the Prediction; every second or so until `until`."""
    try:
        canvas = page.locator("canvas.upper-canvas")
        reset = page.locator('button[title="Reset canvas & history"]')
        drawn = False
        async for digit in Pace(number, until).digits():
            if drawn:
                await reset.click()
                await page.evaluate("window.mnistProbe.until(false, 15000)")
            box = await canvas.bounding_box()
            for stroke in e2e.DIGIT_STROKES[digit]:
                (x, y), rest = stroke[0], stroke[1:]
                await page.mouse.move(box["x"] + x, box["y"] + y)
                await page.mouse.down()
                for x, y in rest:
                    await page.mouse.move(box["x"] + x, box["y"] + y, steps=2)
                await page.mouse.up()
            try:
                result.latencies.append(await page.evaluate("window.mnistProbe.until(true, 15000)"))
                result.predictions += 1
                result.per_visitor[number] = result.per_visitor.get(number, 0) + 1
            except Exception as exc:  # a timeout is an error the class would see
                result.errors.append(f"visitor {number}: {str(exc).splitlines()[0]}")
            for text in await _exceptions(page):
                result.errors.append(f"visitor {number}: {text.splitlines()[0]}")
            drawn = True
        result.errors.extend(page.errors)
    except Exception as exc:
        result.errors.append(f"visitor {number}: {type(exc).__name__}: {exc}")
    finally:
        await page.context.close()


async def teacher_trains(browser, url: str, models_dir: Path, result: LoadResult,
                         start_at: float = 0.0, stay_until: float = 0.0) -> bool:
    """Open the Train page, press Start at `start_at` (time.time()), wait until the run is
    saved and shown; keep the page open until `stay_until`, as a teacher projecting it does."""
    context = await browser.new_context(viewport={"width": 1300, "height": 1100})
    store = ModelStore(models_dir)
    before = len(store.scan().usable)
    try:
        page = await _open(context, f"{url}/Train")
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await e2e.app_button(page, "Start training").click()
        deadline = time.time() + 600
        while len(store.scan().usable) == before:
            if time.time() > deadline:
                raise TimeoutError("the training did not finish in 10 minutes")
            await asyncio.sleep(0.5)
        run_id = store.scan().usable[0].run_id
        await page.get_by_text(f"Saved as run {run_id}").first.wait_for(timeout=30000)
        await asyncio.sleep(max(0.0, stay_until - time.time()))
        for text in await _exceptions(page):
            result.errors.append(f"teacher: {text.splitlines()[0]}")
        result.errors.extend(page.errors)
        return True
    except Exception as exc:
        result.errors.append(f"teacher: {type(exc).__name__}: {exc}")
        return False
    finally:
        await context.close()


def process_of(address: str, processes: int) -> int:
    """Which of `processes` server processes the app's port gives `address` to
    (serving.shared_port.address_filter)."""
    return int(ipaddress.IPv4Address(address)) % processes


def student_address(number: int) -> str:
    """A loopback address of its own for visitor `number`, as each student's device has on
    the classroom's network: 127.0.0.2, 127.0.0.3, ... (127.0.0.1 is the teacher's)."""
    return f"127.{number // 250 % 256}.{number // 62500}.{number % 250 + 2}"


async def wire_visitor(url: str, number: int, until: float, result: LoadResult,
                       every: tuple[float, float] = (0.8, 1.2), join_at: float = 0.0) -> None:
    """A student without a browser, from an address of its own: joins at `join_at`
    (time.time()), then clears, sends a drawn digit and reads the Prediction, again and
    again until `until`."""
    await asyncio.sleep(max(0.0, join_at - time.time()))
    address = student_address(number)
    process = process_of(address, result.processes)
    try:
        async with wire.DrawVisitor(url, timeout=120, source=address) as session:
            async for digit in Pace(number, until, every).digits():
                await session.clear()
                sent_at = time.time()
                prediction, seconds = await session.draw(digit)
                result.wire_latencies.append(seconds)
                result.wire_sent_at.append(sent_at)
                result.wire_process.append(process)
                result.wire_wrong += prediction != str(digit)
    except Exception as exc:
        result.errors.append(f"visitor {number} (no browser): {type(exc).__name__}: {exc}")


async def driver_lag(until: float, result: LoadResult, every: float = 0.02) -> None:
    """How late this process's own event loop wakes: the driver reads every visitor's
    messages, and a late driver adds to every latency it measures."""
    while time.time() < until:
        asked = time.perf_counter()
        await asyncio.sleep(every)
        result.driver_lag.append(time.perf_counter() - asked - every)


def newest_fit_seconds(models_dir: Path) -> float | None:
    scan = ModelStore(models_dir).scan()
    return scan.usable[0].record.fit_seconds if scan.usable else None


async def _load(url: str, models_dir: Path, visitors: int, wire_visitors: int, seconds: float,
                train: bool, result: LoadResult, meter: CpuMeter,
                wire_pace: tuple[float, float] = (0.8, 1.2), join_seconds: float = 0.0) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=e2e.CHROMIUM, args=e2e.CHROMIUM_FLAGS)
        # The Draw page needs a model; training it alone also gives the baseline.
        await teacher_trains(browser, url, models_dir, result)
        result.training_alone = newest_fit_seconds(models_dir)
        pages = await asyncio.gather(*[open_draw_page(browser, url) for _ in range(visitors)],
                                     return_exceptions=True)
        result.errors += [f"visitor {i}: {type(page).__name__}: {page}"
                          for i, page in enumerate(pages) if isinstance(page, BaseException)]
        # Students join over `join_seconds` (scanning the QR code), each at a moment of its
        # own; the teacher, on the Train page from the start, starts the training once they
        # are all in, and the class draws for `seconds` more.
        began = time.time()
        result.all_joined_at = began + join_seconds
        until = result.all_joined_at + seconds
        joins = random.Random(0)
        meter.mark()
        tasks = [visitor(page, i, until, result) for i, page in enumerate(pages)
                 if not isinstance(page, BaseException)]
        tasks += [wire_visitor(url, visitors + i, until, result, wire_pace,
                               began + joins.uniform(0, join_seconds))
                  for i in range(wire_visitors)]
        if train:
            tasks.append(teacher_trains(browser, url, models_dir, result,
                                        start_at=result.all_joined_at, stay_until=until))
        if wire_visitors:
            tasks.append(driver_lag(until, result))
        await asyncio.gather(*tasks)
        result.cpu_cores = meter.cores()
        if train:
            result.training_loaded = newest_fit_seconds(models_dir)
        await browser.close()


def run_load(visitors: int, seconds: float, train: bool = True, work_dir: Path | None = None,
             wire_visitors: int = 0, wire_pace: tuple[float, float] = (0.8, 1.2),
             join_seconds: float = 0.0, processes: int = 1) -> LoadResult:
    """Start the app (`processes` server processes on its port), run the load, stop the
    app; everything lives in `work_dir`."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work_dir or tmp)
        models = work / "models"
        models.mkdir(parents=True, exist_ok=True)
        server = e2e.AppServer(models, work / "streamlit.log", processes=processes).start()
        result = LoadResult(visitors, seconds, wire_visitors, processes=processes)
        meter = CpuMeter(server.process.pid)
        sampling = threading.Event()

        def sample():
            while not sampling.wait(1.0):
                result.server_rss_mb.append(server.rss_mb())
                meter.sample()

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            asyncio.run(_load(server.url, models, visitors, wire_visitors, seconds, train, result,
                              meter, wire_pace, join_seconds))
        finally:
            sampling.set()
            server.stop()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=10, help="visitors in Chromium")
    parser.add_argument("--wire-visitors", type=int, default=0,
                        help="visitors without a browser (Streamlit's websocket protocol)")
    parser.add_argument("--wire-pace", type=float, nargs=2, default=(0.8, 1.2),
                        metavar=("LOW", "HIGH"),
                        help="seconds between two drawings of a visitor without a browser")
    parser.add_argument("--join-seconds", type=float, default=0.0,
                        help="visitors without a browser join over this many seconds before the "
                             "training starts and the `--seconds` of drawing begin")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--no-training", action="store_true",
                        help="visitors only, no training while they draw")
    parser.add_argument("--processes", type=int, default=1,
                        help="server processes on the app's port (serving.launch)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    result = run_load(args.visitors, args.seconds, train=not args.no_training,
                      wire_visitors=args.wire_visitors, wire_pace=tuple(args.wire_pace),
                      join_seconds=args.join_seconds, processes=args.processes)
    print(result.report())
    if args.json:
        print(json.dumps({
            "visitors": result.visitors, "predictions": result.predictions,
            "errors": len(result.errors),
            "latency_median": statistics.median(result.latencies or [0]),
            "latency_p95": percentile(result.latencies, 0.95),
            "wire_visitors": result.wire_visitors,
            "wire_latency_median": statistics.median(result.wire_latencies or [0]),
            "wire_latency_p95": percentile(result.wire_latencies, 0.95),
            "training_alone": result.training_alone, "training_loaded": result.training_loaded,
            "server_rss_max_mb": max(result.server_rss_mb or [0]),
            "cpu_cores": result.cpu_cores,
        }))
    sys.exit(1 if result.errors else 0)


if __name__ == "__main__":
    main()
