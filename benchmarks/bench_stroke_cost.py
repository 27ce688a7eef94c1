"""The server's CPU for each drawing: what 300 students cost, measured well below saturation.

    python -m benchmarks.bench_stroke_cost [--visitors 60] [--seconds 30] [--repeats 3]
                                           [--pixel-ratio 1]

Trains a small model, starts the app, and lets N visitors without a browser (tests/wire.py)
join /Draw and then clear, draw and read the Prediction every 1-2 s. The server's CPU time
(all its threads, from /proc) over the drawing phase, divided by the drawings, is the cost of
one drawing: its clear run and its drawing run, the websocket traffic and the garbage
collection they cause. At this load nothing queues, so the figure is steady from run to run
where a p95 under saturation is not; `cores for 300` is what 300 students drawing every 5 s
(the load test's class) would need at that cost. `--pixel-ratio 3` sends drawings at 3x the
canvas's 280x280, as only a crafted value can (the canvas sends 280x280 on every screen).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from mnist_core.config import TrainConfig
from mnist_core.training.supervisor import Trainer
from tests import e2e, wire

DIGITS = list(wire.DIGIT_STROKES)


async def _visitor(url: str, number: int, start: float, until: float, counts: list[int],
                   errors: list[str], pixel_ratio: int) -> None:
    pace = random.Random(number)
    try:
        async with wire.DrawVisitor(url, timeout=60, pixel_ratio=pixel_ratio) as session:
            await asyncio.sleep(max(0.0, start - time.time()) + pace.uniform(0, 1))
            while time.time() < until:
                await session.clear()
                prediction, _ = await session.draw(digit := pace.choice(DIGITS))
                counts.append(prediction == str(digit))
                await asyncio.sleep(pace.uniform(1.0, 2.0))
    except Exception as exc:
        errors.append(f"visitor {number}: {type(exc).__name__}: {exc}")


def _server_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def _measure(url: str, pid: int, visitors: int, seconds: float,
                   pixel_ratio: int = 1) -> tuple[float, int, list]:
    counts, errors = [], []
    start = time.time() + 15  # everybody has joined by then
    until = start + seconds
    tasks = [asyncio.create_task(_visitor(url, i, start, until, counts, errors, pixel_ratio))
             for i in range(visitors)]
    await asyncio.sleep(max(0.0, start - time.time()))
    process = psutil.Process(pid)
    cpu_before, done_before = _server_cpu(process), len(counts)
    await asyncio.sleep(seconds)
    cpu, drawings = _server_cpu(process) - cpu_before, len(counts) - done_before
    await asyncio.gather(*tasks)
    if sum(counts) != len(counts):
        errors.append(f"{len(counts) - sum(counts)} predictions were not the digit drawn")
    return cpu, drawings, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pixel-ratio", type=int, default=1, choices=(1, 2, 3, 4),
                        help="the drawings' size as a multiple of the canvas's 280x280 (crafted values)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        trainer = Trainer(models)
        trainer.start(TrainConfig(epochs=1))
        if trainer.wait(timeout=600).state != "finished":
            raise SystemExit("the training for the benchmark did not finish")
        costs = []
        for repeat in range(args.repeats):
            server = e2e.AppServer(models, Path(tmp) / "streamlit.log").start()
            try:
                cpu, drawings, errors = asyncio.run(
                    _measure(server.url, server.process.pid, args.visitors, args.seconds,
                             args.pixel_ratio))
            finally:
                server.stop()
            cost = cpu / max(drawings, 1)
            costs.append(cost)
            print(f"run {repeat + 1}: {drawings} drawings by {args.visitors} visitors in "
                  f"{args.seconds:.0f} s, server CPU {cpu:.1f} s: {cost * 1000:.1f} ms per "
                  f"drawing{'; ' + '; '.join(errors[:3]) if errors else ''}")
        cost = statistics.median(costs)
        print(f"server CPU per drawing (clear + draw): median {cost * 1000:.1f} ms; "
              f"300 students drawing every 5 s need {cost * 300 / 5:.2f} cores")


if __name__ == "__main__":
    main()
