"""What goes wrong with the class's drawings, as types, and the sentences a teacher reads.

Every failure of the store or an export is a `DrawingStoreError` whose message (whole
sentences, ending with a full stop) says what, where and how to fix it: a read-only folder,
a full disk, a locked or corrupt database, an export that ran out of memory.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from mnist_core.runs.folder import FULL_ERRNOS, READ_ONLY_ERRNOS


class DrawingStoreError(RuntimeError):
    """The drawings database cannot be used; the message (whole sentences, ending with a
    full stop) says which file, why, and what to do."""


class DrawingCollectionPaused(DrawingStoreError):
    """Saving drawings is paused by the teacher (or turned off with `MNIST_COLLECT_DRAWINGS=0`)."""


class DrawingStoreFull(DrawingStoreError):
    """The table holds `max_drawings()` drawings: the teacher must export and delete some."""


class DrawingRateLimited(DrawingStoreError):
    """This visitor saved `RATE_LIMIT_DRAWINGS` in the last window; `retry_after` is in seconds."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


def fault(exc: BaseException) -> str | None:
    """'read-only', 'full' or 'cannot-open' when the failure is the disk's, not the data's."""
    if isinstance(exc, OSError):
        if exc.errno in READ_ONLY_ERRNOS:
            return "read-only"
        return "full" if exc.errno in FULL_ERRNOS else None
    text = str(exc).lower()
    if "readonly" in text or "read-only" in text:
        return "read-only"
    if "disk is full" in text or "disk full" in text:
        return "full"
    return "cannot-open" if "unable to open" in text else None


def explain(path: Path, exc: BaseException) -> str:
    """The sentence a teacher reads when the database at `path` failed with `exc`."""
    text = str(exc)
    kind = fault(exc)
    if kind == "cannot-open" and path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        kind = "read-only"  # SQLite says only "unable to open" when WAL's files can't be made
    if kind == "read-only":
        return (f"The drawings database {path} is read-only: new drawings cannot be saved, but "
                "the saved ones can still be viewed. Make the file and its folder writable by "
                f"the server, or point MNIST_DRAWINGS_DB to a writable place ({text}).")
    if kind == "full":
        return (f"The disk holding the drawings database {path} is full: new drawings cannot be "
                f"saved. Free some space on that disk ({text}).")
    if "locked" in text or "busy" in text:
        return (f"{path}: the drawings database is locked by another program; "
                f"drawings cannot be saved until it is released ({text}).")
    if "not a database" in text or "malformed" in text:
        return (f"{path}: the drawings database is corrupt ({text}). Move the file away to "
                "start a new one.")
    if kind == "cannot-open":
        return (f"{path}: cannot open the drawings database; check that its folder exists and "
                f"the server may read and write there ({text}).")
    return f"{path}: the drawings database cannot be used ({text})."


def build_in_memory(name: str, write) -> bytes:
    """`write(buffer)` into memory; a failure is a DrawingStoreError naming the export."""
    buffer = io.BytesIO()
    try:
        write(buffer)
    except MemoryError:
        raise DrawingStoreError(f"The drawings could not be exported as {name}: the server ran "
                                "out of memory. Delete some drawings, or try again later.") from None
    except (OSError, ValueError, zipfile.LargeZipFile) as exc:
        raise DrawingStoreError(f"The drawings could not be exported as {name} ({exc}). Free "
                                "some disk space on the server, or try again later.") from None
    return buffer.getvalue()
