"""A Draw-page visitor without a browser: Streamlit's own websocket protocol.

It sends what the drawable canvas sends after a stroke (the drawing as a PNG data URL) and
reads the script's output as it streams back, so the server's share of the time from a stroke
to its Prediction can be measured with many visitors, free of the browsers' own CPU cost.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
import json
import time

import websockets
from PIL import Image, ImageDraw
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from tests.e2e import DIGIT_STROKES

CANVAS_SIZE = 280
STROKE_WIDTH = 20


def canvas_png(digit: int | None, pixel_ratio: int = 1) -> str:
    """The canvas as the component sends it: opaque black, white round strokes, a data URL;
    `pixel_ratio` > 1 makes it larger than the component ever sends (its `toDataURL` has no
    retina scaling), as a crafted value may be."""
    size, width = CANVAS_SIZE * pixel_ratio, STROKE_WIDTH * pixel_ratio
    image = Image.new("RGBA", (size, size), (0, 0, 0, 255))
    pen = ImageDraw.Draw(image)
    radius = width / 2
    for css_stroke in DIGIT_STROKES[digit] if digit is not None else []:
        stroke = [(x * pixel_ratio, y * pixel_ratio) for x, y in css_stroke]
        pen.line(stroke, fill=(255, 255, 255, 255), width=width, joint="curve")
        for x, y in (stroke[0], stroke[-1]):
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(255, 255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def canvas_state(digit: int | None, pixel_ratio: int = 1) -> str:
    """The canvas component's widget value for a drawn digit (None: a cleared canvas)."""
    objects = [{"type": "Path", "stroke": "#FFFFFF", "strokeWidth": STROKE_WIDTH,
                "path": [["M", *stroke[0]], *(["L", x, y] for x, y in stroke[1:])]}
               for stroke in (DIGIT_STROKES[digit] if digit is not None else [])]
    raw = {"version": "7.4.0", "objects": objects, "background": "#000000"}
    return json.dumps({"drawing": {"raw": raw, "data": canvas_png(digit, pixel_ratio)}})


class ScriptError(RuntimeError):
    """The page showed an exception, or the script did not finish."""


def run(coroutine):
    """Run a coroutine to its end from synchronous code, even where Playwright's sync API
    already runs an event loop in this thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def connect(url: str, timeout: float = 30, **options):
    """A websocket to the app at `url` (http://host:port), as Streamlit's frontend opens it.
    Use as `async with connect(url) as ws:`."""
    return websockets.connect(url.replace("http://", "ws://") + "/_stcore/stream",
                              subprotocols=["streamlit"], max_size=None, open_timeout=timeout,
                              **options)


def rerun(page_name: str, page_hash: str = "", triggers: tuple[str, ...] = (),
          checked: tuple[str, ...] = ()) -> bytes:
    """A rerun request for a page: with buttons pressed (`triggers`) and checkboxes ticked
    (`checked`), by widget id, as a browser sends them."""
    message = BackMsg()
    message.rerun_script.page_name = page_name
    message.rerun_script.page_script_hash = page_hash
    for widget_id in checked:
        widget = message.rerun_script.widget_states.widgets.add()
        widget.id, widget.bool_value = widget_id, True
    for widget_id in triggers:
        widget = message.rerun_script.widget_states.widgets.add()
        widget.id, widget.trigger_value = widget_id, True
    return message.SerializeToString()


async def read_run(ws, timeout: float = 120) -> list[tuple[ForwardMsg, int]]:
    """Every message of one script run, with its size in bytes, up to its script_finished."""
    received = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            data = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
        except (TimeoutError, ValueError):
            raise ScriptError(f"the page did not finish in {timeout:.0f} s") from None
        message = ForwardMsg()
        message.ParseFromString(data)
        received.append((message, len(data)))
        if message.WhichOneof("type") == "script_finished":
            return received


def elements(run: list[tuple[ForwardMsg, int]]):
    """The elements a run showed: (kind, element) such as ("button", ButtonProto)."""
    for message, _ in run:
        if message.WhichOneof("type") == "delta" and \
                message.delta.WhichOneof("type") == "new_element":
            kind = message.delta.new_element.WhichOneof("type")
            yield kind, getattr(message.delta.new_element, kind)


async def send_clear_cache(url: str, timeout: float = 30) -> None:
    """What any visitor's websocket may send: Streamlit's "Clear caches" (no developer check)."""
    async with connect(url, timeout) as ws:
        message = BackMsg()
        message.clear_cache = True
        await ws.send(message.SerializeToString())
        await ws.send(rerun("Home"))  # a run after the clear: it was handled
        await read_run(ws, timeout)


async def open_page(url: str, page_name: str, query_string: str = "",
                    timeout: float = 120) -> list[str]:
    """One visitor opening a page: the markdown and headings it showed, in order.
    ScriptError if the page showed an exception or did not finish."""
    async with connect(url, timeout) as ws:
        message = BackMsg()
        message.rerun_script.page_name = page_name
        message.rerun_script.query_string = query_string
        await ws.send(message.SerializeToString())
        run = await read_run(ws, timeout)
    texts = []
    for kind, element in elements(run):
        if kind == "exception":
            raise ScriptError(element.message)
        if kind in ("markdown", "heading"):
            texts.append(element.body)
    return texts


class DrawVisitor:
    """One session on /Draw. Use as `async with DrawVisitor(url) as visitor:`."""

    def __init__(self, url: str, timeout: float = 30, pixel_ratio: int = 1,
                 source: str | None = None):
        self.url = url
        self.timeout = timeout
        self.source = source  # a loopback address to connect from (127.0.0.2: a student)
        self.ws = None
        self.page_script_hash = ""
        self.fragment_id = ""
        self.canvas_id = ""
        self._states = {digit: canvas_state(digit, pixel_ratio)
                        for digit in [None, *DIGIT_STROKES]}
        self.alerts: list[str] = []  # what the last run showed in st.error/warning/info
        self.html: list[str] = []  # and in st.html

    async def __aenter__(self) -> DrawVisitor:
        options = {"local_addr": (self.source, 0)} if self.source else {}
        self.ws = await connect(self.url, self.timeout, **options)
        message = BackMsg()
        message.rerun_script.page_name = "Draw"
        await self.ws.send(message.SerializeToString())
        await self._until_finished()
        if not (self.page_script_hash and self.fragment_id and self.canvas_id):
            raise ScriptError("the Draw page did not show its canvas (is there a model?)")
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()

    async def _until_finished(self) -> tuple[str | None, float]:
        """Read the run's output until it finishes: the Prediction shown (if any) and when."""
        prediction, shown_at = None, 0.0
        self.alerts, self.html = [], []
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                data = await asyncio.wait_for(self.ws.recv(), deadline - time.monotonic())
            except (TimeoutError, ValueError):
                raise ScriptError(f"the page did not finish in {self.timeout:.0f} s") from None
            message = ForwardMsg()
            message.ParseFromString(data)
            kind = message.WhichOneof("type")
            if kind == "navigation":
                self.page_script_hash = message.navigation.page_script_hash
            elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
                shown = message.delta.new_element
                element = shown.WhichOneof("type")
                if element == "exception":
                    raise ScriptError(shown.exception.message)
                if element == "alert":
                    self.alerts.append(shown.alert.body)
                if element == "html":
                    self.html.append(shown.html.body)
                if element == "metric" and shown.metric.label == "Prediction":
                    prediction, shown_at = shown.metric.body, time.perf_counter()
                if element == "bidi_component" and "draw_canvas" in shown.bidi_component.id:
                    self.canvas_id = shown.bidi_component.id
                    self.fragment_id = message.delta.fragment_id
            elif kind == "script_finished":
                if message.script_finished == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                    raise ScriptError("the page did not compile")
                return prediction, shown_at

    async def _send_canvas(self, digit: int | None) -> None:
        await self._send_value(self._states[digit])

    async def _send_value(self, json_value: str) -> None:
        message = BackMsg()
        rerun = message.rerun_script
        rerun.page_script_hash = self.page_script_hash
        rerun.fragment_id = self.fragment_id
        widget = rerun.widget_states.widgets.add()
        widget.id = self.canvas_id
        widget.json_value = json_value
        await self.ws.send(message.SerializeToString())

    async def send_value(self, json_value: str) -> str | None:
        """Send any canvas value (a crafted one, say); return the Prediction shown, if any
        (what else the page showed is in `alerts`)."""
        await self._send_value(json_value)
        return (await self._until_finished())[0]

    async def clear(self) -> None:
        await self._send_canvas(None)
        if (await self._until_finished())[0] is not None:
            raise ScriptError("a cleared canvas still shows a Prediction")

    async def draw(self, digit: int) -> tuple[str, float]:
        """Send a drawn digit; return the Prediction and the seconds until it arrived."""
        sent = time.perf_counter()
        await self._send_canvas(digit)
        prediction, shown_at = await self._until_finished()
        if prediction is None:
            raise ScriptError(f"no Prediction for a drawn {digit}")
        return prediction, shown_at - sent

