"""Reading and writing the small npz files of "Inside the network", bounded and checked."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from mnist_core import platform_os

MAX_ARRAYS = 64  # more arrays than any of our files holds


class InsideError(ValueError):
    """The weights or a snapshot cannot be used; the message says which file and why."""


def read_npz(path: Path, max_bytes: int) -> dict[str, np.ndarray]:
    """All arrays of an uncompressed-or-not npz, refusing oversized or odd files first."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InsideError(f"{path.name}: cannot be read ({exc.strerror})") from None
    if size > max_bytes:
        raise InsideError(f"{path.name}: {size} bytes, more than the {max_bytes} allowed")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            # Sizes as stored in the archive: a compressed bomb is refused before unpacking.
            unpacked = sum(member.file_size for member in members)
            if len(members) > MAX_ARRAYS or unpacked > max_bytes:
                raise InsideError(f"{path.name}: {len(members)} arrays, {unpacked} bytes "
                                  f"unpacked: too large")
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except InsideError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise InsideError(f"{path.name}: not a readable npz file ({exc})") from None


def write_npz_atomically(path: Path, arrays: dict[str, np.ndarray],
                         compressed: bool = False) -> None:
    """Write under a temporary name, then rename: a reader sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compressed else np.savez)(f, **arrays)
        platform_os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
