"""The class's limits on saving drawings, so no visitor can make the store grow without bound.

Each visitor address may save `RATE_LIMIT_DRAWINGS` per `RATE_LIMIT_WINDOW_SECONDS`, the table
holds at most `max_drawings()`, and the teacher can pause collecting. The rate limit, the
pause and the salt live in the database, so every server process agrees and a restart resets
nothing; the address itself is never stored, only a salted hash of it.
"""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3

from mnist_core.drawings.errors import (
    DrawingCollectionPaused,
    DrawingRateLimited,
    DrawingStoreError,
    DrawingStoreFull,
)
from mnist_core.drawings.schema import SALT, new_salt, setting

MAX_DRAWINGS = 50_000  # the table's cap; `MNIST_MAX_DRAWINGS` overrides it
RATE_LIMIT_DRAWINGS = 20  # one visitor address may save this many ...
RATE_LIMIT_WINDOW_SECONDS = 60.0  # ... in any window this long
MIN_RETRY_SECONDS = 1.0  # never tell a visitor to wait less than this
VISITOR_KEY_CHARS = 32  # hex digits of the hash kept: 128 bits
COLLECTING = "collecting"  # the settings key of the teacher's switch: "1" on, "0" paused


def collection_enabled() -> bool:
    """`MNIST_COLLECT_DRAWINGS=0` turns collecting labelled drawings off on this server."""
    value = os.environ.get("MNIST_COLLECT_DRAWINGS", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def max_drawings() -> int:
    """`MNIST_MAX_DRAWINGS` (a whole number, at least 1), default `MAX_DRAWINGS`."""
    text = os.environ.get("MNIST_MAX_DRAWINGS", "").strip()
    if not text:
        return MAX_DRAWINGS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise DrawingStoreError(f"MNIST_MAX_DRAWINGS must be a whole number of drawings, at least 1 "
                                f"(got {text!r}): fix it in the server's environment and restart it.")
    return value


def refuse_if_off() -> None:
    """DrawingCollectionPaused when `MNIST_COLLECT_DRAWINGS` turns collecting off."""
    if not collection_enabled():
        raise DrawingCollectionPaused(
            "Collecting drawings is turned off on this server (MNIST_COLLECT_DRAWINGS=0): "
            "drawing and predicting still work, but labels are not saved.")


def collecting(db: sqlite3.Connection) -> bool:
    """The teacher's switch as the database holds it (on unless paused)."""
    return setting(db, COLLECTING, "1") != "0"


def set_collecting(db: sqlite3.Connection, on: bool) -> None:
    db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
               (COLLECTING, "1" if on else "0"))


def visitor_key(db: sqlite3.Connection, visitor: str) -> str:
    """A salted hash of the address: counts per visitor without storing who they are."""
    salt = setting(db, SALT)
    if salt is None:
        salt = new_salt()
        db.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (SALT, salt))
    return hashlib.sha256(f"{salt}\0{visitor}".encode()).hexdigest()[:VISITOR_KEY_CHARS]


def check_room(db: sqlite3.Connection, limit: int, key: str | None, now: float) -> None:
    """Refuse a new drawing when collecting is paused, the table holds `limit` drawings, or
    the visitor whose key is `key` (None: not limited) used up the window ending at `now`.
    Call it in the transaction that inserts, so the checks and the insert are one step."""
    if not collecting(db):
        raise DrawingCollectionPaused(
            "The teacher has paused collecting drawings: drawing and predicting still work, "
            "but labels are not saved for now.")
    if db.execute("SELECT count(*) FROM drawings").fetchone()[0] >= limit:
        raise DrawingStoreFull(
            f"The class's drawing collection is full ({limit:,} drawings): the teacher can export "
            "and delete them on the Class drawings page.")
    if key is None:
        return
    saved, oldest = db.execute(
        "SELECT count(*), min(created) FROM drawings WHERE visitor = ? AND created > ?",
        (key, now - RATE_LIMIT_WINDOW_SECONDS)).fetchone()
    if saved >= RATE_LIMIT_DRAWINGS:
        wait = max(oldest + RATE_LIMIT_WINDOW_SECONDS - now, MIN_RETRY_SECONDS)
        raise DrawingRateLimited(
            f"You have saved {saved} drawings within {_in_words(RATE_LIMIT_WINDOW_SECONDS)}, the "
            f"most one visitor can save: you can save another in {_in_words(wait)}.", wait)


def _in_words(seconds: float) -> str:
    seconds = max(math.ceil(seconds), 1)
    if seconds < 60:
        return f"{seconds} second{'s' if seconds > 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes > 1 else ''}"
