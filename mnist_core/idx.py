"""The IDX format MNIST is published in, read and written in one place.

An IDX file of unsigned bytes is a 4-byte big-endian magic number (`0x0000080N`: unsigned
byte, N dimensions), N 4-byte big-endian dimensions, then the values row-major. MNIST
publishes each file gzipped. `mnist_core.data` reads the dataset's files through `decode`
(adding its own bounds and checksums); the class's drawings are exported through
`encode_gz`, so what the app writes is what it reads.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
MAGIC_BYTES = 4
DIMENSION_BYTES = 4


class IdxError(ValueError):
    """Bytes that are not the IDX file expected; the message starts with the file's path."""


def header_size(magic: int) -> int:
    """Bytes before the values: the magic number and one size per dimension."""
    return MAGIC_BYTES + DIMENSION_BYTES * dimensions(magic)


def dimensions(magic: int) -> int:
    return magic & 0xFF


def decode(raw: bytes, magic: int, limit: int, path: Path) -> np.ndarray:
    """The array in `raw`, the content of the IDX file at `path` (gunzipped first when its
    name ends in .gz, refused past `limit` bytes before inflating further).

    Checks the magic number and that the header's dimensions match the data's size exactly.
    Raises IdxError naming `path` and the fault.
    """
    if path.suffix == ".gz":
        raw = _gunzip(path, raw, limit)
    if len(raw) < MAGIC_BYTES:
        raise IdxError(f"{path}: truncated, only {len(raw)} bytes, no IDX header")
    found = int.from_bytes(raw[:MAGIC_BYTES], "big")
    if found != magic:
        raise IdxError(f"{path}: wrong magic number 0x{found:08x}, expected 0x{magic:08x}")
    header = header_size(magic)
    if len(raw) < header:
        raise IdxError(f"{path}: truncated, header needs {header} bytes, got {len(raw)}")
    shape = tuple(int.from_bytes(raw[start:start + DIMENSION_BYTES], "big")
                  for start in range(MAGIC_BYTES, header, DIMENSION_BYTES))
    expected = header + math.prod(shape)  # exact: four 32-bit dimensions can overflow int64
    if len(raw) != expected:
        fault = "truncated" if len(raw) < expected else "too long"
        raise IdxError(f"{path}: {fault}, expected {expected} bytes for shape {shape}, got {len(raw)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def encode(array: np.ndarray, magic: int) -> bytes:
    """`array` (values 0-255, as many dimensions as `magic` says) as an IDX file's bytes."""
    array = np.asarray(array)
    if array.ndim != dimensions(magic):
        raise ValueError(f"magic 0x{magic:08x} is for {dimensions(magic)} dimensions, "
                         f"the array has shape {array.shape}")
    header = magic.to_bytes(MAGIC_BYTES, "big") + b"".join(
        size.to_bytes(DIMENSION_BYTES, "big") for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


def encode_gz(array: np.ndarray, magic: int) -> bytes:
    """`encode`, gzipped as MNIST publishes its files (no timestamp: the same array gives
    the same bytes)."""
    return gzip.compress(encode(array, magic), mtime=0)


def _gunzip(path: Path, raw: bytes, limit: int) -> bytes:
    """The content of a gzip file (one or more members, zero padding allowed, as
    `gzip.decompress`), refused past `limit` bytes before inflating any further."""
    parts, total, rest = [], 0, raw
    try:
        while rest:
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header and trailer
            part = inflater.decompress(rest, limit + 1 - total)
            total += len(part)
            if total > limit:
                raise IdxError(f"{path}: too large, over {limit} bytes decompressed")
            if not inflater.eof:
                raise IdxError(
                    f"{path}: not a valid gzip file (compressed data ends before the end-of-stream marker)"
                )
            parts.append(part)
            rest = inflater.unused_data.lstrip(b"\x00")
    except zlib.error as exc:
        raise IdxError(f"{path}: not a valid gzip file ({exc})") from None
    if not parts:
        raise IdxError(f"{path}: not a valid gzip file (empty)")
    return parts[0] if len(parts) == 1 else b"".join(parts)
