"""One student's script against the server, while another student draws every second.

    python -m benchmarks.bench_edge [--seconds 30] [--repo DIR] [--streamlit-run]

Starts the app from `--repo` (this checkout by default; another checkout measures "before")
on a fresh copy of a trained models folder: `python -m serving.launch --processes 1` (what
`./run app` starts, one process), or `streamlit run app.py` with `--streamlit-run` (or where
the checkout has no st.App). Then, for each attack, a victim student (127.0.0.3) draws a
digit every second over Streamlit's websocket (tests/wire.py) while an attacker (127.0.0.2)
runs it for `--seconds`:

- oversized: 15 sessions on /Draw, each sending a canvas value of 7.9 MB of JSON
  (`[[],[],...]`, ~8 kB on the wire with compression) every 2 s;
- idle sockets: 300 TCP connections that never send a request, and 300 websocket
  handshakes kept open;
- foreign origin: websocket handshakes with `Origin: http://evil.example`, back to back.

Prints, per attack, the victim's drawings (answered right / sent), their p50 and p95 from
stroke to Prediction, the server's memory growth (largest RSS during the attack minus before
it), and what the attacker got through. All traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets

from benchmarks.bench_hostile import trained_models
from tests import e2e, wire

ATTACKER, VICTIM = "127.0.0.2", "127.0.0.3"
OVERSIZED = "[" + "[]," * (7_900_000 // 3) + "[]]"


def start_server(repo: Path, models: Path, log_path: Path, streamlit_run: bool):
    """The server process and its port (a port taken from the OS just before: good enough
    for a benchmark, which retries nothing)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = ([sys.executable, "-m", "streamlit", "run", "app.py"] if streamlit_run else
               [sys.executable, "-m", "serving.launch", "--processes", "1"])
    process = subprocess.Popen(
        [*command, "--server.headless", "true", "--server.port", str(port)], cwd=repo,
        stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
        env={**os.environ, **e2e.OFFLINE, "MNIST_MODELS_DIR": str(models),
             "PYTHONPATH": str(repo)})
    if not e2e.wait_for_health(f"http://127.0.0.1:{port}", 90):
        raise SystemExit("the server did not start:\n" + log_path.read_text())
    return process, port


async def victim(url: str, stop: asyncio.Event) -> list[tuple[bool, float]]:
    """Draw a 7 every second until `stop`: (answered right, seconds) each."""
    results = []
    async with wire.DrawVisitor(url, timeout=60, source=VICTIM) as visitor:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                prediction, seconds = await visitor.draw(7)
                results.append((prediction == "7", seconds))
            except wire.ScriptError:
                results.append((False, time.perf_counter() - started))
            await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - started)))
    return results


async def oversized(url: str, stop: asyncio.Event) -> str:
    sessions, sent = [], 0
    for _ in range(15):
        try:
            sessions.append(await wire.DrawVisitor(url, timeout=60, source=ATTACKER).__aenter__())
        except (OSError, websockets.exceptions.WebSocketException, wire.ScriptError):
            pass
    try:
        while not stop.is_set():
            for session in sessions:
                try:
                    await session._send_value(OVERSIZED)
                    sent += 1
                except websockets.exceptions.WebSocketException:
                    pass
            await asyncio.sleep(2.0)
    finally:
        for session in sessions:
            await session.ws.close()
    return f"{len(sessions)} of 15 sessions opened, {sent} values sent"


async def idle_sockets(url: str, port: int, stop: asyncio.Event) -> str:
    silent = []
    for _ in range(300):
        try:
            silent.append(socket.create_connection(("127.0.0.1", port), source_address=(ATTACKER, 0)))
        except OSError:
            break
    handshakes = []
    for _ in range(300):
        try:
            handshakes.append(await wire.connect(url, local_addr=(ATTACKER, 0)).__aenter__())
        except (OSError, websockets.exceptions.WebSocketException):
            pass
    await stop.wait()
    still_open = 0
    for sock in silent:
        sock.setblocking(False)
        try:
            still_open += sock.recv(1) != b""
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
        sock.close()
    for ws in handshakes:
        await ws.close()
    return (f"{len(silent)} silent sockets ({still_open} still open at the end), "
            f"{len(handshakes)} of 300 websockets accepted")


async def foreign_origin(url: str, stop: asyncio.Event) -> str:
    tried = accepted = 0
    while not stop.is_set():
        tried += 1
        try:
            async with wire.connect(url, local_addr=(ATTACKER, 0),
                                    additional_headers={"Origin": "http://evil.example"}):
                accepted += 1
        except (OSError, websockets.exceptions.WebSocketException):
            pass
    return f"{tried} handshakes, {accepted} accepted"


async def run_attack(name: str, url: str, port: int, pid: int, seconds: float) -> dict:
    stop = asyncio.Event()
    attack = {"oversized": lambda: oversized(url, stop),
              "idle sockets": lambda: idle_sockets(url, port, stop),
              "foreign origin": lambda: foreign_origin(url, stop)}[name]
    async with wire.DrawVisitor(url, timeout=120, source=VICTIM) as warm:
        await warm.draw(7)  # the server's first Draw page (dataset, model) is not the attack's
    before = e2e.rss_mb(pid)
    peak = [before]

    async def watch_memory():
        while not stop.is_set():
            peak[0] = max(peak[0], e2e.rss_mb(pid))
            await asyncio.sleep(0.25)

    drawing = asyncio.create_task(victim(url, stop))
    attacking = asyncio.create_task(attack())
    watching = asyncio.create_task(watch_memory())
    await asyncio.sleep(seconds)
    stop.set()
    drawn, got = await drawing, await attacking
    await watching
    times = sorted(s for _, s in drawn)
    return {"attack": name, "right": sum(ok for ok, _ in drawn), "sent": len(drawn),
            "p50": statistics.median(times) if times else float("nan"),
            "p95": times[max(0, math.ceil(len(times) * 0.95) - 1)] if times else float("nan"),
            "growth": peak[0] - before, "attacker": got}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repo", type=Path, default=e2e.REPO)
    parser.add_argument("--streamlit-run", action="store_true")
    parser.add_argument("--attacks", nargs="*", default=["oversized", "idle sockets",
                                                         "foreign origin"])
    args = parser.parse_args()
    legacy = not (args.repo / "home.py").exists()  # a checkout from before the st.App
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = trained_models(Path(tmp))
        for name in args.attacks:
            served = Path(tmp) / name.replace(" ", "-")
            shutil.copytree(models, served)
            process, port = start_server(args.repo, served, Path(tmp) / f"{name}.log",
                                         args.streamlit_run or legacy)
            try:
                rows.append(asyncio.run(run_attack(name, f"http://127.0.0.1:{port}", port,
                                                   process.pid, args.seconds)))
            finally:
                process.terminate()
                process.wait(30)
    print(f"\n{args.repo} ({'streamlit run' if args.streamlit_run or legacy else 'launcher'}), "
          f"{args.seconds:.0f} s per attack, a victim drawing every second\n")
    print("| attack | victim's drawings right | p50 | p95 | server memory growth | attacker |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['attack']} | {r['right']}/{r['sent']} | {r['p50']:.3f} s | "
              f"{r['p95']:.3f} s | {r['growth']:.0f} MB | {r['attacker']} |")


if __name__ == "__main__":
    main()
