"""The canvas data URL from the browser: real drawings read exactly, anything else refused cheaply."""

from __future__ import annotations

import base64
import io
import pickle
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from mnist_core import canvas_input
from mnist_core.canvas_input import MAX_PIXEL_RATIO, UnreadableDrawing, decode_canvas

pytestmark = pytest.mark.unit

CANVAS = 280  # the pages' canvas, in CSS pixels
LIMIT = CANVAS * MAX_PIXEL_RATIO  # 1120 device pixels
PREFIX = "data:image/png;base64,"


def encode(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode("ascii")


def drawing(size: int, seed: int = 0) -> np.ndarray:
    """(size, size, 4) uint8: white strokes on black, opaque, as the canvas draws them."""
    rng = np.random.default_rng(seed)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 3] = 255
    for _ in range(5):
        y, x = rng.integers(0, size - size // 10, 2)
        rgba[y : y + size // 10, x : x + size // 20, :3] = 255
    return rgba


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def crafted_png(width: int, height: int, bit_depth: int = 8, colour_type: int = 6,
                idat: bytes | None = None, interlace: int = 0) -> bytes:
    """A PNG header of any size with a tiny IDAT: costs nothing to build, whatever it claims."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, interlace)
    idat = zlib.compress(b"\0" * 64) if idat is None else idat
    return canvas_input.PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def chunks(png: bytes) -> list[tuple[int, bytes]]:
    """(offset, type) of each chunk of a well-formed PNG."""
    found, position = [], 8
    while position < len(png):
        (length,) = struct.unpack_from(">I", png, position)
        found.append((position, png[position + 4 : position + 8]))
        position += 12 + length
    return found


def fix_crcs(png: bytes) -> bytes:
    """Recompute every CRC the chunk lengths still let us find, so damage reaches the decoder."""
    png, position = bytearray(png), 8
    while position + 12 <= len(png):
        (length,) = struct.unpack_from(">I", png, position)
        end = position + 12 + length
        if end > len(png):
            break
        png[end - 4 : end] = struct.pack(">I", zlib.crc32(png[position + 4 : end - 4]))
        position = end
    return bytes(png)


def refused(data_url_value, width: int = CANVAS, height: int = CANVAS) -> UnreadableDrawing:
    with pytest.raises(UnreadableDrawing) as err:
        decode_canvas(data_url_value, width, height)
    assert str(err.value) == "That drawing could not be read"
    assert err.value.reason
    return err.value


@pytest.fixture()
def no_pillow(monkeypatch):
    """Fail the test if the decoder gets as far as opening the image with Pillow."""
    def forbidden(*args, **kwargs):
        raise AssertionError("Pillow was asked to open a refused drawing")
    monkeypatch.setattr(canvas_input.Image, "open", forbidden)


def test_nothing_drawn_yet_is_none():
    assert decode_canvas(None, CANVAS, CANVAS) is None


@pytest.mark.parametrize("size", [CANVAS, 2 * CANVAS, 3 * CANVAS, LIMIT])
def test_real_drawings_are_read_exactly(size):
    rgba = drawing(size)
    decoded = decode_canvas(data_url(encode(Image.fromarray(rgba))), CANVAS, CANVAS)
    assert decoded.shape == (size, size, 4) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, rgba)
    decoded[0, 0] = 7  # a new array the caller may change


def test_a_non_square_canvas_bounds_each_side():
    rgba = drawing(LIMIT)[: 2 * 100]  # 200 high, 1120 wide: fits 280 wide x 50 high at 4x
    assert decode_canvas(data_url(encode(Image.fromarray(rgba))), CANVAS, 50).shape == (200, LIMIT, 4)
    refused(data_url(encode(Image.fromarray(rgba))), CANVAS, 49)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "P", "I;16", "1"])
def test_other_png_pixel_formats_become_rgba(mode):
    image = Image.fromarray(drawing(CANVAS)).convert(mode)
    decoded = decode_canvas(data_url(encode(image)), CANVAS, CANVAS)
    assert decoded.shape == (CANVAS, CANVAS, 4) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, np.asarray(Image.open(io.BytesIO(encode(image))).convert("RGBA")))


def test_transparency_is_kept():
    rgba = drawing(CANVAS)
    rgba[: CANVAS // 2, :, 3] = 0
    decoded = decode_canvas(data_url(encode(Image.fromarray(rgba))), CANVAS, CANVAS)
    np.testing.assert_array_equal(decoded, rgba)
    palette = Image.fromarray(drawing(CANVAS)).convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE,
                                                                      colors=4)
    raw = encode(palette, transparency=0)  # a tRNS chunk
    assert b"tRNS" in raw
    decoded = decode_canvas(data_url(raw), CANVAS, CANVAS)
    np.testing.assert_array_equal(decoded, np.asarray(Image.open(io.BytesIO(raw)).convert("RGBA")))
    assert decoded[..., 3].min() == 0 and decoded[..., 3].max() == 255


def test_an_interlaced_png_is_read():
    """Pillow cannot write Adam7, so one 2x2 interlaced image is made by hand: pass 1 is
    pixel (0, 0), pass 6 pixel (0, 1), pass 7 row 1; each pass row is a filter byte + RGBA."""
    rows = b"\0" + bytes([255, 0, 0, 255]) + b"\0" + bytes([0, 255, 0, 255]) \
        + b"\0" + bytes([0, 0, 255, 255, 9, 9, 9, 255])
    raw = crafted_png(2, 2, idat=zlib.compress(rows), interlace=1)
    decoded = decode_canvas(data_url(raw), CANVAS, CANVAS)
    assert decoded.tolist() == [[[255, 0, 0, 255], [0, 255, 0, 255]], [[0, 0, 255, 255], [9, 9, 9, 255]]]


def test_text_and_other_ancillary_chunks_are_dropped_unread():
    rgba = drawing(CANVAS)
    info = PngImagePlugin.PngInfo()
    # 20 MB of text compressed to ~20 kB: Pillow would inflate it on open.
    info.add_text("Comment", "x" * 20_000_000, zip=True)
    raw = encode(Image.fromarray(rgba), pnginfo=info)
    assert b"zTXt" in raw and len(raw) < 100_000
    tracemalloc.start()
    try:
        decoded = decode_canvas(data_url(raw), CANVAS, CANVAS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(decoded, rgba)
    assert peak < 5_000_000


@pytest.mark.parametrize("width, height", [
    (13000, 13000), (LIMIT + 1, LIMIT), (LIMIT, LIMIT + 1), (1, 2**31 - 1), (2**32 - 1, 1),
    (0, 10), (10, 0), (0, 0),
])
def test_too_large_or_empty_images_are_refused_from_the_header(no_pillow, width, height):
    error = refused(data_url(crafted_png(width, height)))
    assert f"{width}x{height}" in error.reason


def test_a_string_longer_than_any_honest_drawing_is_refused_before_decoding(no_pillow, monkeypatch):
    limit = canvas_input.max_data_url_length(CANVAS, CANVAS)
    assert 5_000_000 < limit < 8_000_000  # a few MB: the worst incompressible 1120x1120 RGBA PNG
    def no_base64(*args, **kwargs):
        raise AssertionError("base64 decoding of an over-long string")
    monkeypatch.setattr(canvas_input.base64, "b64decode", no_base64)
    error = refused(PREFIX + "A" * (limit - len(PREFIX) + 1))
    assert "too long" in error.reason


def test_the_worst_accepted_drawing_fits_the_length_bound_and_bounded_memory():
    """Random noise does not compress: the longest data URL of the largest accepted size."""
    rgba = np.random.default_rng(1).integers(0, 256, (LIMIT, LIMIT, 4), dtype=np.uint8)
    url = data_url(encode(Image.fromarray(rgba)))
    assert len(url) <= canvas_input.max_data_url_length(CANVAS, CANVAS)
    tracemalloc.start()
    try:
        decoded = decode_canvas(url, CANVAS, CANVAS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(decoded, rgba)
    # The PNG bytes plus a few copies of the 5 MB image (Pillow's own buffers are not traced).
    assert peak < 40_000_000


@pytest.mark.parametrize("format", ["JPEG", "GIF", "EPS", "BMP", "WEBP", "TIFF", "ICO"])
@pytest.mark.parametrize("own_mime", [False, True])
def test_other_image_formats_are_refused(no_pillow, format, own_mime):
    raw = encode(Image.fromarray(drawing(64)).convert("RGB"), format)
    mime = f"image/{format.lower()}" if own_mime else "image/png"
    error = refused(data_url(raw, mime))
    assert ("not a PNG" in error.reason) if not own_mime else ("not a base64 PNG data URL" in error.reason)


def test_svg_and_eps_text_are_refused(no_pillow):
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 13000 13000\nshowpage\n"
    refused(data_url(eps))
    refused(data_url(eps, "application/postscript"))
    svg = b"<svg xmlns='http://www.w3.org/2000/svg' width='99999' height='99999'/>"
    refused(data_url(svg))
    refused(data_url(svg, "image/svg+xml"))


@pytest.mark.parametrize("payload", [
    "not base64!", "iVBORw0KGgo=\n", "iVBO Rw0K", "iVBORw0KGgo", "iVBORw0KGgo===", "é" * 8, "%89PNG",
])
def test_anything_but_strict_base64_is_refused(no_pillow, payload):
    refused(PREFIX + payload)


@pytest.mark.parametrize("prefix", [
    "", "data:,", "data:image/PNG;base64,", "DATA:image/png;base64,", "data:image/png,",
    "data:image/png;charset=utf-8;base64,", " data:image/png;base64,", "data:text/html;base64,",
    "data:image/svg+xml;base64,", "image/png;base64,",
])
def test_any_other_prefix_is_refused(no_pillow, prefix):
    raw = encode(Image.fromarray(drawing(CANVAS)))
    error = refused(prefix + base64.b64encode(raw).decode("ascii"))
    assert "not a base64 PNG data URL" in error.reason


@pytest.mark.parametrize("value", [
    data_url(encode(Image.new("RGBA", (8, 8)))).encode("ascii"),
    bytearray(b"data:image/png;base64,"),
    {"data": "data:image/png;base64,"},
    [PREFIX],
    42,
    3.5,
    True,
    np.zeros((CANVAS, CANVAS, 4), np.uint8),
])
def test_anything_but_a_string_is_refused(no_pillow, value):
    error = refused(value)
    assert "expected a data URL string" in error.reason


@pytest.mark.parametrize("keep", [0, 7, 8, 20, 33, 40, -13, -1])
def test_truncated_pngs_are_refused(keep):
    raw = encode(Image.fromarray(drawing(CANVAS)))
    refused(data_url(raw[:keep] if keep >= 0 else raw[: len(raw) + keep]))


def test_truncated_image_data_with_good_crcs_is_refused_by_the_decoder():
    raw = encode(Image.fromarray(drawing(CANVAS)))
    compressed = b"".join(raw[o + 8 : o + 8 + struct.unpack_from(">I", raw, o)[0]]
                          for o, kind in chunks(raw) if kind == b"IDAT")
    short = crafted_png(CANVAS, CANVAS, idat=compressed[: len(compressed) // 2])
    assert "Pillow" in refused(data_url(short)).reason


@pytest.mark.parametrize("where", [b"IHDR", b"IDAT", b"IEND"])
def test_a_bad_crc_is_refused(no_pillow, where):
    raw = bytearray(encode(Image.fromarray(drawing(CANVAS))))
    offset = next(o for o, kind in chunks(bytes(raw)) if kind == where)
    (length,) = struct.unpack_from(">I", raw, offset)
    raw[offset + 8 + length] ^= 0xFF  # first byte of the CRC
    assert "bad CRC" in refused(data_url(bytes(raw))).reason


def test_damaged_pixel_data_is_refused():
    raw = bytearray(encode(Image.fromarray(drawing(CANVAS))))
    offset = next(o for o, kind in chunks(bytes(raw)) if kind == b"IDAT")
    raw[offset + 8 : offset + 16] = b"\xff" * 8  # not a zlib stream any more
    refused(data_url(fix_crcs(bytes(raw))))


def test_unknown_critical_chunks_and_a_missing_end_are_refused(no_pillow):
    raw = encode(Image.fromarray(drawing(CANVAS)))
    end = chunks(raw)[-1][0]
    refused(data_url(raw[:end] + chunk(b"ABCD", b"x") + raw[end:]))
    refused(data_url(raw[:end]))  # no IEND
    refused(data_url(raw[:end] + chunk(b"AB\0D", b"") + raw[end:]))
    refused(data_url(canvas_input.PNG_SIGNATURE + chunk(b"IDAT", b"") + raw[8:]))  # IHDR not first


def test_too_many_chunks_are_refused(no_pillow):
    raw = encode(Image.fromarray(drawing(CANVAS)))
    end = chunks(raw)[-1][0]
    padding = chunk(b"teXt", b"") * canvas_input.MAX_CHUNKS
    assert "chunks" in refused(data_url(raw[:end] + padding + raw[end:])).reason


def test_apng_frames_are_ignored():
    frames = [Image.fromarray(drawing(CANVAS, seed)) for seed in (1, 2)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    assert b"acTL" in buffer.getvalue()
    np.testing.assert_array_equal(decode_canvas(data_url(buffer.getvalue()), CANVAS, CANVAS),
                                  np.asarray(frames[0]))


def test_the_error_is_a_value_error_with_the_reason_kept_for_the_log():
    error = refused(PREFIX + "!!")
    assert isinstance(error, ValueError) and "base64" in error.reason
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == "That drawing could not be read" and copy.reason == error.reason


@pytest.mark.parametrize("width, height", [(0, CANVAS), (CANVAS, -1), (2.5, CANVAS), (100_000, 100_000)])
def test_a_wrong_canvas_size_is_the_callers_bug_not_the_visitors(width, height):
    with pytest.raises(ValueError) as err:
        decode_canvas(None, width, height)
    assert not isinstance(err.value, UnreadableDrawing)


def check_outcome(value, width: int = CANVAS, height: int = CANVAS) -> None:
    """The one property: an RGBA array within the bound, or UnreadableDrawing; nothing else."""
    try:
        rgba = decode_canvas(value, width, height)
    except UnreadableDrawing as error:
        assert str(error) == "That drawing could not be read" and error.reason
        return
    assert isinstance(rgba, np.ndarray) and rgba.dtype == np.uint8
    assert rgba.ndim == 3 and rgba.shape[2] == 4
    assert 1 <= rgba.shape[0] <= height * MAX_PIXEL_RATIO and 1 <= rgba.shape[1] <= width * MAX_PIXEL_RATIO


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=400))
@example(text=PREFIX)
@example(text=PREFIX + "====")
def test_any_text_is_a_drawing_or_unreadable(text):
    check_outcome(text)
    check_outcome(PREFIX + text)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=2000))
@example(raw=b"")
@example(raw=canvas_input.PNG_SIGNATURE)
def test_any_bytes_as_a_png_data_url_are_a_drawing_or_unreadable(raw):
    check_outcome(data_url(raw))
    check_outcome(data_url(canvas_input.PNG_SIGNATURE + raw))


SMALL_PNGS = [encode(Image.fromarray(drawing(24, seed)).convert(mode))
              for seed, mode in enumerate(["RGBA", "L", "P", "RGB", "LA", "I;16", "1"])]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(SMALL_PNGS), data=st.data(), repair=st.booleans())
def test_any_damage_to_a_real_png_is_a_drawing_or_unreadable(base, data, repair):
    raw = bytearray(base)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(len(canvas_input.PNG_SIGNATURE), len(raw)))
        action = data.draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        if action == "set" and position < len(raw):
            raw[position] = data.draw(st.integers(0, 255))
        elif action == "insert":
            raw[position:position] = data.draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del raw[position : position + data.draw(st.integers(1, 16))]
        elif action == "truncate":
            del raw[position:]
    damaged = fix_crcs(bytes(raw)) if repair else bytes(raw)
    check_outcome(data_url(damaged))


# (bit depth, colour type) pairs the PNG standard allows, and some it does not.
VALID_FORMATS = [(1, 0), (2, 0), (4, 0), (8, 0), (16, 0), (8, 2), (16, 2), (1, 3), (2, 3), (4, 3), (8, 3),
                 (8, 4), (16, 4), (8, 6), (16, 6)]
FORMATS = st.one_of(st.sampled_from(VALID_FORMATS),
                    st.tuples(st.sampled_from([0, 3, 16, 255]), st.sampled_from([1, 5, 7, 255])))
SIDES = st.one_of(st.integers(1, 12), st.integers(0, LIMIT + 2))


@settings(max_examples=300, deadline=None)
@given(width=SIDES, height=SIDES, png_format=FORMATS, interlace=st.sampled_from([0, 0, 1, 2]),
       tail=st.binary(max_size=64), pixels=st.binary(max_size=2000), compress=st.booleans(),
       fill=st.booleans())
def test_any_png_header_and_pixel_data_are_a_drawing_or_unreadable(width, height, png_format, interlace,
                                                                   tail, pixels, compress, fill):
    bit_depth, colour_type = png_format
    if fill:  # enough bytes for any format of that size, so the decoder gets past the data too
        pixels = pixels.ljust(min(height * (1 + width * 8), 100_000), b"\0")
    idat = zlib.compress(pixels) if compress else pixels
    raw = crafted_png(width, height, bit_depth, colour_type, idat=idat, interlace=interlace)
    check_outcome(data_url(raw))
    # The same with trailing junk after IEND and with a palette chunk, also checked.
    check_outcome(data_url(raw + tail))
    palette = chunk(b"PLTE", tail[: len(tail) // 3 * 3])
    check_outcome(data_url(raw[:33] + palette + raw[33:]))
