"""Crafted canvas values, as a student's script could send them over the websocket: shared by
tests/test_hostile.py and benchmarks/bench_hostile.py."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib

from PIL import Image

REFUSED = "That drawing could not be read"


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
