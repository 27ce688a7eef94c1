"""What watching a training costs the room's Wi-Fi: bytes the server sends per Train-page visitor.

    python -m benchmarks.bench_train_traffic [--visitors 5] [--seconds 20] [--browser-visitors 1]
                                             [--start-epoch 1] [--server-compression]

Starts the app on a free port with a fresh models folder, starts a long training (50 epochs,
as the Train page's Start does) and connects N visitors without a browser, each a student
(connecting from its own loopback address, 127.0.1.N, as tests/relay.py explains) that opens
the Train page over Streamlit's websocket protocol and then behaves as Streamlit's frontend
does: the live panel is an `st.fragment(run_every=1.0)`, for which the server sends an
`auto_rerun` message (fragment id, interval); the frontend then calls
`setInterval(() => sendUpdateWidgetsMessage(fragmentId, true), interval * 1000)`, a
`rerun_script` BackMsg with that `fragment_id`, `is_auto_rerun`
set, and the hashes of the messages it caches (`cached_message_hashes`: the server sends a
small `ref_hash` instead of any cacheable message, >= 10 kB, the browser already holds).
`--browser-visitors 1` adds a real headless Chromium page (through a loopback relay, so a
student too), whose websocket frames are counted with Playwright and whose bytes on the TCP
connection are counted by the relay.

Counting starts once the training is in its `--start-epoch` and every visitor shows the
per-batch charts, and lasts `--seconds`. Prints, per visitor per second: the websocket
messages' bytes, the bytes on the connection (frame headers and pings too), and what the
server's permessage-deflate would send (replayed here with the settings uvicorn uses:
12-bit window, memLevel 5, context takeover); the largest message; whether compression was
negotiated; and the byte breakdown of one typical (median-sized) fragment rerun.
`--server-compression` starts the server with `server.enableWebsocketCompression`, so the
bytes on the connection are the real compressed ones (a check of the replay).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.asyncio.client import ClientConnection

from mnist_core.config import TrainConfig
from mnist_core.training.supervisor import Trainer
from tests import e2e, wire
from tests.relay import STUDENT_ADDRESS, LoopbackRelay

LONG = TrainConfig(epochs=50, origin="train_page")
ENVELOPE = "envelope (hash, metadata, delta path)"


def frame_header(length: int) -> int:
    """Bytes of a server-to-client websocket frame header (unmasked)."""
    return 2 if length < 126 else 4 if length < 65536 else 10


class Deflater:
    """The bytes the server's permessage-deflate would put on the wire for each message:
    uvicorn's ServerPerMessageDeflateFactory(server_max_window_bits=12, memLevel=5), one
    compressor per connection (context takeover), sync flush, the trailing 4 bytes dropped."""

    def __init__(self):
        self.encoder = zlib.compressobj(wbits=-12, memLevel=5)

    def frame_size(self, data: bytes) -> int:
        length = len(self.encoder.compress(data) + self.encoder.flush(zlib.Z_SYNC_FLUSH)) - 4
        return length + frame_header(length)


class CountingConnection(ClientConnection):
    """A websocket client connection that counts the bytes read from its TCP socket."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wire_bytes = 0

    def data_received(self, data: bytes) -> None:
        self.wire_bytes += len(data)
        super().data_received(data)


@dataclass
class Received:
    at: float
    size: int  # the websocket message's bytes
    deflated: int  # its frame with permessage-deflate (replayed)
    parts: dict[str, int]  # size split by what it carries
    label: str  # for the largest message


def describe(message: ForwardMsg, size: int) -> tuple[dict[str, int], str]:
    """Split a message's bytes by what it carries: element payloads, the rest as envelope."""
    kind = message.WhichOneof("type")
    if kind != "delta":
        return {kind: size}, kind
    delta_kind = message.delta.WhichOneof("type")
    if delta_kind != "new_element":
        payload = getattr(message.delta, delta_kind)
        name = f"{delta_kind} (columns, containers)" if delta_kind == "add_block" else delta_kind
        return {name: payload.ByteSize(), ENVELOPE: size - payload.ByteSize()}, name
    element = message.delta.new_element
    element_kind = element.WhichOneof("type")
    if element_kind == "vega_lite_chart":
        chart = element.vega_lite_chart
        spec = json.loads(chart.spec) if chart.spec else {}
        mark = spec.get("mark", {})
        which = "per-epoch" if isinstance(mark, dict) and mark.get("point") else "per-batch"
        title = spec.get("title", "?")
        title = title.get("text", "?") if isinstance(title, dict) else title
        name = f"chart {which} {title}"
        data = chart.data.ByteSize() + sum(d.ByteSize() for d in chart.datasets)
        spec_bytes = len(chart.spec.encode())
        rows = sum(_arrow_rows(d.data.data) for d in chart.datasets) + _arrow_rows(chart.data.data)
        return ({f"{name}: Arrow data": data, f"{name}: vega-lite spec JSON": spec_bytes,
                 f"{name}: other fields": element.ByteSize() - data - spec_bytes,
                 ENVELOPE: size - element.ByteSize()},
                f"{name} ({rows} rows)")
    return {element_kind: element.ByteSize(), ENVELOPE: size - element.ByteSize()}, element_kind


def _arrow_rows(data: bytes) -> int:
    if not data:
        return 0
    return pa.ipc.open_stream(data).read_all().num_rows


class TrainVisitor:
    """One student on /Train, behaving as Streamlit's frontend does for run_every fragments."""

    def __init__(self, url: str, address: str = STUDENT_ADDRESS):
        self.url = url
        self.address = address  # each student its own: limits count runs per address
        self.ws = None
        self.extensions = "none"
        self.page_script_hash = ""
        self.max_cached_age = 2
        self.cache: dict[str, int] = {}  # hash -> run count when last used (the frontend's)
        self.run_count = 0
        self.timers: dict[str, tuple[float, asyncio.Task]] = {}
        self.received: list[Received] = []
        self.runs: list[tuple[int, int, bool]] = []  # (first, end) message index, fragment run
        self._run_start = 0
        self._run_is_fragment = False
        self.charts_shown = 0
        self.deflater = Deflater()
        self.reader: asyncio.Task | None = None

    async def open(self, timeout: float = 120) -> None:
        self.ws = await wire.connect(
            self.url, timeout, compression="deflate", create_connection=CountingConnection,
            local_addr=(self.address, 0), ping_interval=None)
        self.extensions = self.ws.response.headers.get("Sec-WebSocket-Extensions") or "none"
        self.reader = asyncio.create_task(self._read())
        await self.ws.send(wire.rerun("Train"))

    async def close(self) -> None:
        for _, timer in self.timers.values():
            timer.cancel()
        await self.ws.close()
        if self.reader:
            self.reader.cancel()

    async def _send_rerun(self, fragment_id: str) -> None:
        message = BackMsg()
        rerun = message.rerun_script
        rerun.page_script_hash = self.page_script_hash
        rerun.fragment_id = fragment_id
        rerun.is_auto_rerun = True
        rerun.cached_message_hashes.extend(self.cache)
        rerun.widget_states.SetInParent()  # a student's Train page without runs: no widgets
        await self.ws.send(message.SerializeToString())

    async def _every(self, fragment_id: str, interval: float) -> None:
        while True:  # setInterval: fires whether or not the last rerun has finished
            await asyncio.sleep(interval)
            await self._send_rerun(fragment_id)

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                self._handle(data)
        except websockets.ConnectionClosed:
            pass

    def _handle(self, data: bytes) -> None:
        at = time.monotonic()
        message = ForwardMsg()
        message.ParseFromString(data)
        parts, label = describe(message, len(data))
        self.received.append(Received(at, len(data), self.deflater.frame_size(data), parts, label))
        kind = message.WhichOneof("type")
        if kind == "new_session":
            self.page_script_hash = message.new_session.page_script_hash
            self.max_cached_age = message.new_session.config.max_cached_message_age or 2
        elif kind == "navigation":
            self.page_script_hash = message.navigation.page_script_hash
        elif kind == "auto_rerun":
            fragment_id, interval = message.auto_rerun.fragment_id, message.auto_rerun.interval
            known = self.timers.get(fragment_id)
            if known is None or known[0] != interval:
                if known:
                    known[1].cancel()
                self.timers[fragment_id] = (interval, asyncio.create_task(
                    self._every(fragment_id, interval)))
        elif kind == "stop_auto_rerun":
            for fragment_id in message.stop_auto_rerun.fragment_ids:
                if fragment_id in self.timers:
                    self.timers.pop(fragment_id)[1].cancel()
        elif kind == "ref_hash":
            self.cache[message.ref_hash] = self.run_count
        elif kind == "delta":
            self._run_is_fragment |= bool(message.delta.fragment_id)
            if message.delta.new_element.WhichOneof("type") == "vega_lite_chart":
                self.charts_shown += 1
        if message.metadata.cacheable and kind != "ref_hash" and message.hash:
            self.cache.setdefault(message.hash, self.run_count)
        if kind == "script_finished":
            self.runs.append((self._run_start, len(self.received), self._run_is_fragment))
            self._run_start, self._run_is_fragment = len(self.received), False
            self.run_count += 1
            self.cache = {h: n for h, n in self.cache.items()
                          if self.run_count - n <= self.max_cached_age}

    def in_window(self, start: float, end: float) -> list[Received]:
        return [r for r in self.received if start <= r.at < end]


class BrowserVisitor:
    """One headless Chromium page on /Train through a counting loopback relay (a student)."""

    def __init__(self, server: e2e.AppServer):
        self.relay = LoopbackRelay(server.port)
        self.frames: list[tuple[float, int]] = []
        self.extensions: list[str] = []
        self.charts_shown = False

    async def open(self, playwright) -> None:
        self.relay.__enter__()
        self.browser = await playwright.chromium.launch(executable_path=e2e.CHROMIUM,
                                                        args=e2e.CHROMIUM_FLAGS)
        context = await self.browser.new_context(viewport={"width": 1300, "height": 1200})
        self.page = await context.new_page()
        cdp = await context.new_cdp_session(self.page)
        await cdp.send("Network.enable")
        cdp.on("Network.webSocketHandshakeResponseReceived", lambda event: self.extensions.append(
            {k.lower(): v for k, v in event["response"]["headers"].items()}.get(
                "sec-websocket-extensions", "none")))

        def on_websocket(ws):
            if "_stcore/stream" in ws.url:
                ws.on("framereceived", lambda payload: self.frames.append(
                    (time.monotonic(),
                     len(payload.encode() if isinstance(payload, str) else payload))))

        self.page.on("websocket", on_websocket)
        await self.page.goto(f"{self.relay.url}/Train")

    async def wait_for_charts(self, timeout: float) -> None:
        await self.page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(
            timeout=timeout * 1000)
        self.charts_shown = True

    async def close(self) -> None:
        await self.browser.close()
        self.relay.__exit__()


def spread(values: list[float], digits: int = 0) -> str:
    return f"median {statistics.median(values):,.{digits}f}   max {max(values):,.{digits}f}"


def per_second_bins(received: list[Received], start: float, seconds: int, key) -> list[int]:
    bins = [0] * seconds
    for r in received:
        bins[min(seconds - 1, int(r.at - start))] += key(r)
    return bins


def typical_rerun(visitor: TrainVisitor, start: float, end: float) -> list[Received] | None:
    """The median-sized complete fragment rerun of this visitor inside the window."""
    runs = [visitor.received[a:b] for a, b, fragment in visitor.runs
            if fragment and b > a and start <= visitor.received[a].at
            and visitor.received[b - 1].at < end]
    if not runs:
        return None
    runs.sort(key=lambda run: sum(r.size for r in run))
    return runs[len(runs) // 2]


async def measure(args, server: e2e.AppServer, trainer: Trainer) -> None:
    visitors = [TrainVisitor(server.url, f"127.0.1.{i + 1}") for i in range(args.visitors)]
    for visitor in visitors:
        await visitor.open()
    browsers: list[BrowserVisitor] = []
    playwright_manager = None
    if args.browser_visitors:
        from playwright.async_api import async_playwright
        playwright_manager = async_playwright()
        playwright = await playwright_manager.__aenter__()
        browsers = [BrowserVisitor(server) for _ in range(args.browser_visitors)]
        for browser in browsers:
            await browser.open(playwright)
    try:
        deadline = time.monotonic() + 300
        while True:  # the training in its start epoch, every visitor showing its charts
            snap = await asyncio.to_thread(trainer.snapshot)
            if not snap.active and snap.state != "idle":
                raise RuntimeError(f"the training ended early: {snap.state} {snap.error or ''}")
            if (snap.epoch >= args.start_epoch and snap.steps
                    and all(v.charts_shown for v in visitors)):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the training or the visitors' charts did not show in 300 s")
            await asyncio.sleep(0.2)
        for browser in browsers:
            await browser.wait_for_charts(60)
        await asyncio.sleep(1.5)  # a visitor's first chart rerun done; lazily loaded JS too
        steps_before = len((await asyncio.to_thread(trainer.snapshot)).steps)
        wire_before = [v.ws.wire_bytes for v in visitors]
        relay_before = [b.relay.down_bytes for b in browsers]
        start = time.monotonic()
        await asyncio.sleep(args.seconds)
        end = time.monotonic()
        wire = [v.ws.wire_bytes - w for v, w in zip(visitors, wire_before, strict=True)]
        relay = [b.relay.down_bytes - r for b, r in zip(browsers, relay_before, strict=True)]
        snap = await asyncio.to_thread(trainer.snapshot)
    finally:
        for visitor in visitors:
            await visitor.close()
        for browser in browsers:
            await browser.close()
        if playwright_manager:
            await playwright_manager.__aexit__(None, None, None)
    report(args, visitors, browsers, start, end, wire, relay, steps_before, snap)


def report(args, visitors, browsers, start, end, wire, relay, steps_before, snap) -> None:
    seconds = end - start
    whole = int(round(seconds))
    windows = [v.in_window(start, end) for v in visitors]
    reruns = [sum(1 for a, b, f in v.runs if f and b > a and start <= v.received[b - 1].at < end)
              for v in visitors]
    print(f"{args.visitors} Train-page visitors without a browser (students), "
          f"{len(browsers)} in Chromium, {seconds:.1f} s while training "
          f"(epoch {snap.epoch}/{snap.config.epochs}, per-batch points {steps_before} -> "
          f"{len(snap.steps)}); server compression option "
          f"{'on' if args.server_compression else 'off (default)'}")
    print(f"  permessage-deflate negotiated (websockets client asks for it): "
          f"{sorted({v.extensions for v in visitors})}")
    print(f"  fragment reruns finished per visitor per second: "
          f"{spread([n / seconds for n in reruns], 2)}  "
          f"(run_every=1.0)")
    print("  bytes per visitor per second (median and max over visitors; "
          "over single 1-s bins in brackets):")
    rows = [("websocket messages", lambda r: r.size),
            ("permessage-deflate, replayed", lambda r: r.deflated)]
    for label, key in rows:
        rates = [sum(key(r) for r in w) / seconds for w in windows]
        bins = [b for w in windows for b in per_second_bins(w, start, whole, key)]
        print(f"    {label:30s} {spread(rates)}   [{spread(bins)}]")
    print(f"    {'on the TCP connection':30s} {spread([w / seconds for w in wire])}"
          f"   (frames, pings{', compressed' if args.server_compression else ''})")
    largest = max((r for w in windows for r in w), key=lambda r: r.size)
    print(f"  largest message: {largest.size:,} bytes ({largest.label}); "
          f"deflated {largest.deflated:,}")
    for browser, down in zip(browsers, relay, strict=True):
        frames = [size for at, size in browser.frames if start <= at < end]
        bins = [0] * whole
        for at, size in browser.frames:
            if start <= at < end:
                bins[min(whole - 1, int(at - start))] += size
        print(f"  Chromium visitor: negotiated {browser.extensions or ['?']}; websocket "
              f"messages {sum(frames) / seconds:,.0f} B/s (1-s bins {spread(bins)}), "
              f"largest {max(frames, default=0):,} B; on its TCP connections "
              f"{down / seconds:,.0f} B/s")
    run = typical_rerun(visitors[0], start, end)
    if run is None:
        print("  no complete fragment rerun in the window")
        return
    parts: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for r in run:
        for name, size in r.parts.items():
            parts[name] += size
        counts[r.label.split(" (")[0]] += 1
    total = sum(r.size for r in run)
    print(f"  one typical fragment rerun (median size, visitor 1): {len(run)} messages, "
          f"{total:,} bytes, deflated {sum(r.deflated for r in run):,}")
    for name, size in sorted(parts.items(), key=lambda item: -item[1]):
        print(f"    {size:8,} B  {size / total:6.1%}  {name}")
    print("    messages: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--browser-visitors", type=int, default=0)
    parser.add_argument("--start-epoch", type=int, default=1,
                        help="start counting once the training is in this epoch")
    parser.add_argument("--server-compression", action="store_true",
                        help="start the server with server.enableWebsocketCompression")
    args = parser.parse_args()
    env = {"OPENBLAS_NUM_THREADS": "1"}  # as ./run app starts the server
    if args.server_compression:
        env["STREAMLIT_SERVER_ENABLE_WEBSOCKET_COMPRESSION"] = "true"
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        models = work / "models"
        server = e2e.AppServer(models, work / "streamlit.log", env=env).start()
        trainer = Trainer(models)
        try:
            trainer.start(LONG)
            asyncio.run(measure(args, server, trainer))
        finally:
            trainer.stop()
            trainer.wait(timeout=60)
            server.stop()


if __name__ == "__main__":
    main()
