"""A saved run's model files, checked without loading them: cheap enough for every scan.

A scan must not load a model (an ONNX session, a Keras archive) per run, yet a run whose model
file is missing, empty, truncated or junk must be listed as unreadable rather than offered to
the Draw page. So each file is checked for its container's structure only:

- model.keras and weights.npz are zip archives: the zip directory at their end must be there
  (a truncated or junk file has none);
- model.onnx is a protobuf `ModelProto`: its top-level fields are walked by their tags and
  lengths (seeking over their contents), which must end exactly at the end of the file and
  include the graph.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from mnist_core.runs import folder
from mnist_core.runs.record import RecordError

ONNX_GRAPH_FIELD = 7  # ModelProto.graph
MAX_TOP_LEVEL_FIELDS = 10_000  # a ModelProto has a handful; junk could claim millions


def check_saved_files(run_dir: Path) -> None:
    """RecordError naming the first model file of a saved run that is missing or broken."""
    for name in (folder.KERAS_FILE, folder.ONNX_FILE):
        if not (run_dir / name).is_file():
            raise RecordError(f"{folder.RECORD} without its {name}")
    if not zipfile.is_zipfile(run_dir / folder.KERAS_FILE):
        raise RecordError(f"{folder.KERAS_FILE} is corrupt (not a Keras zip archive)")
    check_onnx(run_dir / folder.ONNX_FILE)
    weights = run_dir / folder.WEIGHTS_FILE
    if weights.exists() and not (weights.is_file() and zipfile.is_zipfile(weights)):
        # Optional (older runs have none), but a broken one is a broken run.
        raise RecordError(f"{folder.WEIGHTS_FILE} is corrupt (not an npz archive)")


def check_onnx(path: Path) -> None:
    """RecordError unless `path` is structurally an ONNX model (see the module docstring)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size == 0:
                raise RecordError(f"{path.name} is empty")
            f.seek(0)
            fields = _top_level_fields(f, size)
    except OSError as exc:
        raise RecordError(f"{path.name} cannot be read ({exc.strerror})") from None
    if fields is None or ONNX_GRAPH_FIELD not in fields:
        raise RecordError(f"{path.name} is corrupt (truncated, or not an ONNX model)")


def _top_level_fields(f, size: int) -> set[int] | None:
    """The field numbers of the protobuf message filling the file, or None if it is not one."""
    seen = set()
    for _ in range(MAX_TOP_LEVEL_FIELDS):
        if f.tell() == size:
            return seen
        tag = _varint(f)
        if tag is None or tag >> 3 == 0:
            return None
        wire_type = tag & 7
        if wire_type == 0:
            if _varint(f) is None:
                return None
        elif wire_type in (1, 5):  # 64-bit, 32-bit
            f.seek(8 if wire_type == 1 else 4, 1)
        elif wire_type == 2:  # length-delimited: a string, bytes or a nested message
            length = _varint(f)
            if length is None or length > size - f.tell():
                return None  # junk, or a field running past the end (never seek that far)
            f.seek(length, 1)
        else:  # groups (3, 4) are not in ONNX's schema; 6 and 7 do not exist
            return None
        if f.tell() > size:
            return None  # the field runs past the end: truncated
        seen.add(tag >> 3)
    return None


def _varint(f) -> int | None:
    value = 0
    for shift in range(0, 70, 7):
        byte = f.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
    return None  # longer than any 64-bit varint
