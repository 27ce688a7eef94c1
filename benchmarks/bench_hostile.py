"""What each hostile canvas value costs the server, and that nothing is lost.

    python -m benchmarks.bench_hostile [--repeats 20]

Starts `streamlit run app.py` on a fresh copy of a trained models folder (trains one first
if needed), opens the Draw page over Streamlit's websocket (tests/wire.py), labels nothing,
then sends each crafted value of tests/hostile.py `--repeats` times and prints, per kind:
what the page showed, the server's CPU seconds per value and its resident memory after
them. Ends with an honest drawing, which must still be predicted, and the number of runs and
drawings before and after (nothing lost).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path

from mnist_core.config import TrainConfig
from mnist_core.drawings import DrawingStore
from mnist_core.runs.store import ModelStore
from mnist_core.training.supervisor import Trainer
from tests import e2e, wire
from tests.hostile import HOSTILE, REFUSED


def trained_models(root: Path) -> Path:
    models = root / "models"
    trainer = Trainer(models)
    trainer.start(TrainConfig(epochs=1))
    snap = trainer.wait(timeout=600)
    if snap.state != "finished":
        raise SystemExit(f"training failed: {snap.error}")
    return models


async def measure(server, repeats: int) -> list[tuple[str, str, float, float]]:
    rows = []
    async with wire.DrawVisitor(server.url, timeout=120) as visitor:
        assert (await visitor.draw(7))[0] == "7"
        pid = server.process.pid
        rows.append(("(an honest drawing, warm)", "Prediction 7", 0.0, server.rss_mb()))
        for name, crafted in HOSTILE.items():
            before = e2e.cpu_seconds(pid)
            for _ in range(repeats):
                prediction = await visitor.send_value(crafted)
            shown = (f"Prediction {prediction}" if prediction is not None else
                     "the message" if any(REFUSED in a for a in visitor.alerts) else
                     "; ".join(visitor.alerts) or "nothing")
            rows.append((name, shown, (e2e.cpu_seconds(pid) - before) / repeats,
                         server.rss_mb()))
        prediction = (await visitor.draw(1))[0]
        rows.append(("an honest drawing after all that", f"Prediction {prediction}", 0.0,
                     server.rss_mb()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = trained_models(Path(tmp))
        copy = Path(tmp) / "served"
        shutil.copytree(models, copy)
        runs_before = [r.run_id for r in ModelStore(copy).scan().runs]
        server = e2e.AppServer(copy, Path(tmp) / "server.log").start()
        try:
            rows = asyncio.run(measure(server, args.repeats))
        finally:
            server.stop()
        runs_after = [r.run_id for r in ModelStore(copy).scan().runs]
        drawings = DrawingStore(copy / "drawings.db").count()
    print(f"{args.repeats} of each, one visitor, sent back to back\n")
    print("| input | the visitor sees | server CPU per value | server RSS after |")
    print("|---|---|---|---|")
    for name, shown, cpu, rss in rows:
        print(f"| {name} | {shown} | {cpu * 1000:.1f} ms | {rss:.0f} MB |")
    print(f"\nruns before {runs_before}, after {runs_after}; drawings stored: {drawings}")


if __name__ == "__main__":
    main()
