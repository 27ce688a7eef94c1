"""A stored drawing's picture made safe to show: the PNG itself when it is whole, otherwise a
plain grey placeholder, so a damaged row shows as a grey square instead of breaking a page."""

from __future__ import annotations

import functools
import io

from PIL import Image

from mnist_core.drawings.dataset import whole

THUMBNAIL_SIZE = 140  # pixels a side, as `preprocess.thumbnail_png` makes them
MAX_THUMBNAIL_SIDE = 1024  # a stored PNG larger than this is shown as the placeholder
PLACEHOLDER_GREY = 128
PLACEHOLDERS_KEPT = 8  # placeholder PNGs kept, one per size (a page asks for one or two sizes)


def thumbnail_or_placeholder(png: bytes | None, size: int = THUMBNAIL_SIZE) -> bytes:
    """`png` itself when Pillow can read all of it as a PNG no larger than MAX_THUMBNAIL_SIDE;
    otherwise a plain grey PNG of `size` x `size` pixels (clamped to 1..MAX_THUMBNAIL_SIDE),
    so a damaged row shows as a grey square instead of breaking the page."""
    if isinstance(png, bytes) and _readable_png(png):
        return png
    return _placeholder(min(max(whole(size, "size"), 1), MAX_THUMBNAIL_SIDE))


def _readable_png(png: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
            if max(image.size) > MAX_THUMBNAIL_SIDE:
                return False
            image.verify()  # the chunks' checksums; then decode every pixel
        with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
            image.load()
    except Exception:  # Pillow raises many types (OSError, SyntaxError, ValueError...) on bad data
        return False
    return True


@functools.lru_cache(maxsize=PLACEHOLDERS_KEPT)
def _placeholder(size: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (size, size), PLACEHOLDER_GREY).save(buffer, format="PNG")
    return buffer.getvalue()
