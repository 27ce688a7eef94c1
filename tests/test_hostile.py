"""Hostile canvas values sent straight over Streamlit's websocket, as a student's script
could: each is refused with one short message, nothing else happens, and the server's
memory stays bounded."""

from __future__ import annotations

import base64
import io
import json
import shutil
import struct
import zlib

import pytest
from PIL import Image

from tests import e2e, wire

pytestmark = pytest.mark.browser
REFUSED = "That drawing could not be read"
MEMORY_BOUND_MB = 150  # growth allowed over the whole attack (one decoded canvas is ~1 MB)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG whose header claims `width` x `height` RGBA with ink in two corners:
    a few hundred bytes that would take gigabytes to decode."""
    row = b"\x00" + b"\xff" * 4 + b"\x00" * (4 * (width - 2)) + b"\xff" * 4
    compressor = zlib.compressobj(9)
    data = compressor.compress(row) + compressor.flush()  # one row: enough to look real
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))


def value(data_url) -> str:
    return json.dumps({"drawing": {"raw": {"version": "7.4.0", "objects": []}, "data": data_url}})


def url_of(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (280, 280), "white").save(buffer, format="JPEG")
    return buffer.getvalue()


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 13000 13000\nshowpage\n"
HOSTILE = {
    "huge PNG (13000x13000)": value(url_of(png_claiming(13000, 13000))),
    "EPS as a PNG": value(url_of(EPS)),
    "EPS as itself": value(url_of(EPS, "application/postscript")),
    "JPEG": value(url_of(jpeg(), "image/jpeg")),
    "not base64": value("data:image/png;base64,@@not*base64@@"),
    "not a data URL": value("http://127.0.0.1:1/x.png"),
    "a number": value(12345),
    "a list": value([1, 2, 3]),
    "drawing is a list": json.dumps({"drawing": [1, 2]}),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory, trained_store):
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(trained_store.root, root / "models")
    app = e2e.AppServer(root / "models", root / "server.log").start()
    yield app
    app.stop()


async def attack(server) -> dict[str, tuple[str | None, list[str]]]:
    shown = {}
    async with wire.DrawVisitor(server.url, timeout=60) as visitor:
        assert (await visitor.draw(7))[0] == "7"
        shown["memory before"] = server.rss_mb()  # warm: MNIST, the model, a drawing
        for name, crafted in HOSTILE.items():
            prediction = await visitor.send_value(crafted)
            shown[name] = (prediction, list(visitor.alerts))
        shown["a real drawing after all that"] = ((await visitor.draw(1))[0], [])
    return shown


def test_hostile_canvas_values_are_refused_with_one_message_and_bounded_memory(server):
    shown = wire.run(attack(server))
    for name in HOSTILE:
        prediction, alerts = shown[name]
        assert prediction is None, name
        assert any(REFUSED in a for a in alerts), (name, alerts)
    assert shown["a real drawing after all that"][0] == "1"
    assert server.rss_mb() - shown["memory before"] < MEMORY_BOUND_MB
    log = server.log_path.read_text()
    assert "Refused a drawing" in log or "Refused a canvas value" in log
    assert "Traceback" not in log


async def not_json(url: str) -> str:
    async with wire.DrawVisitor(url, timeout=60) as visitor:
        await visitor._send_value("{{{ not JSON")  # dropped before Streamlit parses it
        return (await visitor.draw(4))[0]


def test_a_widget_value_that_is_not_json_is_dropped_and_logged(server):
    assert wire.run(not_json(server.url)) == "4"
    assert "Dropped a rerun with a widget value that is not JSON" in server.log_path.read_text()


async def oversized(url: str) -> None:
    """A message beyond server.maxMessageSize: the server drops that connection."""
    async with wire.DrawVisitor(url, timeout=60) as visitor:
        try:
            await visitor.send_value(value(url_of(b"\x89PNG" + b"\x00" * (9 * 2**20))))
        except Exception:  # the connection is closed on us: that is the point
            return
        raise AssertionError("a 12 MB message was accepted")


def test_a_message_larger_than_the_limit_closes_only_that_connection(server):
    wire.run(_still_serves(server.url))  # warm
    before = server.rss_mb()
    wire.run(oversized(server.url))
    wire.run(_still_serves(server.url))
    assert server.rss_mb() - before < MEMORY_BOUND_MB


async def _still_serves(url: str) -> None:
    async with wire.DrawVisitor(url, timeout=60) as visitor:
        assert (await visitor.draw(7))[0] == "7"
