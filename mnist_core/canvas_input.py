"""Read the canvas drawing a browser sends, without trusting it.

streamlit-drawable-canvas hands the server a `data:` URL string made by the browser's
`canvas.toDataURL()`. Its own `image_data` opens that with Pillow whatever its size or format,
so one crafted message (a 13000x13000 PNG of under 1 MB) costs the server gigabytes. Here the
string is checked at the edge, cheapest check first, before any work proportional to what it
claims:

    type and prefix -> length -> strict base64 -> PNG signature, IHDR size, every chunk's CRC
    -> only then Pillow, on a PNG holding nothing but its image chunks

    rgba = decode_canvas(data_url, CANVAS_SIZE, CANVAS_SIZE)  # the string the component returned
    # (H, W, 4) uint8, H <= 4 * 280 and W <= 4 * 280; None when nothing was sent yet
"""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
from PIL import Image

DATA_URL_PREFIX = "data:image/png;base64,"

# The canvas is sized in CSS pixels; the browser renders it at devicePixelRatio device pixels
# per CSS pixel (3 on many phones) and sends that. 4 leaves room for the densest screens.
MAX_PIXEL_RATIO = 4

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IHDR_LENGTH = 13
# The chunks that make the pixels. Every other ancillary chunk (text, compressed text, ICC
# profiles, APNG frames, ...) is dropped unread: none changes a drawing, and compressed text
# and profiles are what Pillow would otherwise inflate for us.
KEPT_CHUNKS = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"})
# A browser writes its IDAT in chunks of 8 KiB or more, so even the largest accepted drawing
# has well under a thousand; the cap keeps the chunk walk cheap on a string of empty chunks.
MAX_CHUNKS = 4096
# What a browser may add to the pixel data: signature, IHDR, sRGB/gAMA/pHYs/iCCP and the like.
PNG_OVERHEAD_SLACK = 64 * 1024


class UnreadableDrawing(ValueError):
    """The browser sent something that is not a drawing this app accepts.

    `str()` is the message for the visitor; `reason` is the technical fault, for the server log.
    """

    MESSAGE = "That drawing could not be read"

    def __init__(self, reason: str):
        super().__init__(self.MESSAGE)
        self.reason = reason

    def __str__(self) -> str:
        return self.MESSAGE

    def __reduce__(self):
        return type(self), (self.reason,)


def max_size(width: int, height: int) -> tuple[int, int]:
    """(max width, max height) in device pixels accepted for a width x height CSS-px canvas."""
    return width * MAX_PIXEL_RATIO, height * MAX_PIXEL_RATIO


def max_data_url_length(width: int, height: int) -> int:
    """The longest data URL a browser could send for a width x height CSS-px canvas.

    Bounded by the worst case that is still honest: an 8-bit RGBA PNG of the largest accepted
    size whose pixels do not compress at all (zlib then stores them, adding 5 bytes per block),
    in IDAT chunks of 12 bytes overhead each, plus slack for ancillary chunks. For the 280x280
    canvas that is about 6.8 million characters.
    """
    max_width, max_height = max_size(width, height)
    raw = max_height * (1 + 4 * max_width)  # a filter byte per row, 4 bytes per pixel
    png = raw + raw // 256 + PNG_OVERHEAD_SLACK  # 1/256 covers zlib blocks and IDAT chunks
    return len(DATA_URL_PREFIX) + 4 * -(-png // 3)  # base64 is 4 characters per 3 bytes


def decode_canvas(data_url: object, width: int, height: int) -> np.ndarray | None:
    """The drawing in a canvas data URL as RGBA pixels, or None when nothing was sent yet.

    `width` and `height` are the canvas's size in CSS pixels, as given to `st_canvas`. Only a
    `str` starting with `data:image/png;base64,` holding a well-formed PNG of at most
    `MAX_PIXEL_RATIO` times that size is read. Returns (H, W, 4) uint8, 0-255, a new writable
    array. Raises `UnreadableDrawing` on anything else, before doing work in proportion to
    the input's claimed size: its memory stays within a few copies of the largest accepted image.
    """
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise ValueError(f"canvas size must be positive integers, got {width!r} x {height!r}")
    max_width, max_height = max_size(width, height)
    if Image.MAX_IMAGE_PIXELS is not None and max_width * max_height > Image.MAX_IMAGE_PIXELS:
        # Keeps Pillow's decompression-bomb warning and error out of reach of any accepted input.
        raise ValueError(f"canvas {width}x{height} is too large to accept {MAX_PIXEL_RATIO}x drawings")
    if data_url is None:
        return None
    png = _png_bytes(data_url, max_data_url_length(width, height))
    size = _checked_png_size(png, max_width, max_height)
    return _decode_png(_strip_to_image_chunks(png), size)


def _png_bytes(data_url: object, max_length: int) -> bytes:
    """The bytes of a PNG data URL, refused unless it is a str of the right kind and length."""
    if not isinstance(data_url, str):
        raise UnreadableDrawing(f"expected a data URL string, got {type(data_url).__name__}")
    if not data_url.startswith(DATA_URL_PREFIX):
        raise UnreadableDrawing(f"not a base64 PNG data URL, starts {data_url[:32]!r}")
    if len(data_url) > max_length:
        raise UnreadableDrawing(
            f"data URL too long: {len(data_url)} characters, at most {max_length} accepted"
        )
    try:
        return base64.b64decode(data_url[len(DATA_URL_PREFIX):], validate=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII characters
        raise UnreadableDrawing(f"invalid base64: {exc}") from None


def _checked_png_size(png: bytes, max_width: int, max_height: int) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, refused when zero or over the bound."""
    if png[:8] != PNG_SIGNATURE:
        raise UnreadableDrawing(f"not a PNG file, starts {png[:8]!r}")
    if len(png) < 8 + 8 + IHDR_LENGTH + 4:
        raise UnreadableDrawing(f"truncated PNG: {len(png)} bytes, no complete IHDR chunk")
    length, chunk_type, png_width, png_height = struct.unpack_from(">I4sII", png, 8)
    if chunk_type != b"IHDR" or length != IHDR_LENGTH:
        raise UnreadableDrawing(f"PNG does not start with an IHDR chunk ({chunk_type!r}, length {length})")
    if not (0 < png_width <= max_width and 0 < png_height <= max_height):
        raise UnreadableDrawing(
            f"PNG is {png_width}x{png_height}, accepted 1x1 to {max_width}x{max_height}"
        )
    return png_width, png_height


def _strip_to_image_chunks(png: bytes) -> bytes:
    """The PNG rebuilt from its KEPT_CHUNKS only, after checking every chunk's length and CRC.

    Refuses a truncated file, a bad CRC, an unknown critical chunk, or one with no IEND.
    """
    kept = [PNG_SIGNATURE]
    dropped = False
    view = memoryview(png)
    position = len(PNG_SIGNATURE)
    for _ in range(MAX_CHUNKS):
        if position + 12 > len(png):
            raise UnreadableDrawing(f"truncated PNG: chunk header expected at byte {position}")
        length, chunk_type = struct.unpack_from(">I4s", png, position)
        end = position + 12 + length
        if end > len(png):
            raise UnreadableDrawing(
                f"truncated PNG: {chunk_type!r} chunk at byte {position} needs {end} bytes, got {len(png)}"
            )
        if not chunk_type.isalpha():
            raise UnreadableDrawing(f"bad PNG chunk type {chunk_type!r} at byte {position}")
        (crc,) = struct.unpack_from(">I", png, end - 4)
        if zlib.crc32(view[position + 4 : end - 4]) != crc:
            raise UnreadableDrawing(f"bad CRC in PNG {chunk_type!r} chunk at byte {position}")
        if chunk_type in KEPT_CHUNKS:
            kept.append(view[position:end])
        elif chunk_type[:1].isupper():  # critical: a decoder must not skip it
            raise UnreadableDrawing(f"unknown critical PNG chunk {chunk_type!r}")
        else:
            dropped = True
        if chunk_type == b"IEND":  # anything after it is ignored
            return b"".join(kept) if dropped or end < len(png) else png
        position = end
    raise UnreadableDrawing(f"PNG has more than {MAX_CHUNKS} chunks")


def _decode_png(png: bytes, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 4) uint8 from a PNG whose size and chunks were already checked."""
    try:
        with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
            if image.size != size:
                raise UnreadableDrawing(f"PNG decoded as {image.size}, header said {size}")
            rgba = np.array(image.convert("RGBA"))
    except UnreadableDrawing:
        raise
    except Exception as exc:  # whatever Pillow raises on a hostile file, the file is unreadable
        raise UnreadableDrawing(f"Pillow cannot decode the PNG: {type(exc).__name__}: {exc}") from None
    if rgba.shape != (size[1], size[0], 4) or rgba.dtype != np.uint8:
        raise UnreadableDrawing(f"PNG decoded to {rgba.shape} {rgba.dtype}, expected RGBA")
    return rgba
