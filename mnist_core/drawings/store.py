"""The class's labelled drawings, in a SQLite database on the server (`DrawingStore`).

Each row is one drawing a visitor labelled on the Draw page: the preprocessed 28x28 image
(what the model saw), a small PNG of the raw drawing, the true label, what the model predicted
with its probabilities, which run predicted, when, and a salted hash of the visitor's address
(for the rate limit; the address itself is never stored). Drawings never leave the server.
The tables and how the database is opened are `schema`'s; what may be saved is `limits`'.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from contextlib import closing, contextmanager
from pathlib import Path

import numpy as np

from mnist_core.data import IMAGE_SIZE, NUM_CLASSES
from mnist_core.drawings import limits, schema
from mnist_core.drawings.dataset import Drawings, DrawingSummary, digit, whole
from mnist_core.drawings.errors import DrawingStoreError, explain, fault
from mnist_core.drawings.thumbnails import THUMBNAIL_SIZE, thumbnail_or_placeholder
from mnist_core.runs import folder

PAGE_LIMIT = 200  # the most summaries one `page()` returns
MAX_RAW_PNG_BYTES = 256 * 1024  # a raw drawing's PNG (thumbnail_png makes a few kB)
PROBABILITY_DIGITS = 6  # decimals kept of each stored probability
_MAX_OFFSET = 2**31
_MAX_ID = 2**63 - 1  # SQLite's largest integer
_SUMMARY_COLUMNS = "id, label, predicted, probabilities, run_id, created"


def drawings_path() -> Path:
    """`MNIST_DRAWINGS_DB`, default `drawings.db` beside the saved models."""
    return Path(os.environ.get("MNIST_DRAWINGS_DB") or folder.models_dir() / folder.DRAWINGS_DB)


class DrawingStore:
    """The drawings database at `path` (default `drawings_path()`); holds no connection."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else drawings_path()

    @contextmanager
    def _reading(self):
        """A connection for queries: read-write when possible, else read-only."""
        try:
            with closing(self._open_for_reading()) as db:
                yield db
        except DrawingStoreError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise DrawingStoreError(explain(self.path, exc)) from None

    @contextmanager
    def _writing(self):
        """A connection in one transaction: committed at the end, rolled back on an error."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(schema.open_read_write(self.path)) as db, db:
                yield db
        except DrawingStoreError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise DrawingStoreError(explain(self.path, exc)) from None

    def _open_for_reading(self) -> sqlite3.Connection:
        if not self.path.exists():
            return schema.empty_database()  # nothing saved yet: create nothing just to look
        try:
            return schema.open_read_write(self.path)
        except (sqlite3.OperationalError, OSError) as exc:
            if fault(exc) is None:
                raise
            try:
                return schema.open_read_only(self.path)
            except sqlite3.OperationalError:
                raise exc from None  # the first failure is the one that explains

    def add(self, image: np.ndarray, raw_png: bytes, label: int, probabilities: np.ndarray,
            run_id: str, created: float | None = None, visitor: str | None = None) -> int:
        """Store one labelled drawing; return its id. `image` is the (28, 28) uint8 model input.

        `visitor` is who saved it (their address; only a salted hash is stored): it may save
        `RATE_LIMIT_DRAWINGS` per `RATE_LIMIT_WINDOW_SECONDS`; None is not limited.
        Raises ValueError for bad arguments, `DrawingCollectionPaused`, `DrawingStoreFull`,
        `DrawingRateLimited`, or `DrawingStoreError` when the database cannot be written.
        """
        label = digit(label)
        image = np.asarray(image)
        if image.shape != (IMAGE_SIZE, IMAGE_SIZE) or image.dtype != np.uint8:
            raise ValueError(f"image must be (28, 28) uint8, got {image.shape} {image.dtype}")
        probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
        if probabilities.shape != (NUM_CLASSES,):
            raise ValueError(f"probabilities must be 10 values, got {probabilities.shape}")
        if not isinstance(raw_png, bytes) or len(raw_png) > MAX_RAW_PNG_BYTES:
            raise ValueError(f"raw_png must be at most {MAX_RAW_PNG_BYTES} bytes")
        if visitor is not None and not isinstance(visitor, str):
            raise ValueError(f"visitor must be an address or None, got {visitor!r}")
        limits.refuse_if_off()
        limit = limits.max_drawings()
        now = time.time()
        with self._writing() as db:
            db.execute("BEGIN IMMEDIATE")  # the checks and the insert are one step
            key = limits.visitor_key(db, visitor) if visitor else None
            limits.check_room(db, limit, key, now)
            cursor = db.execute(
                "INSERT INTO drawings (created, image, raw_png, label, predicted, probabilities,"
                " run_id, visitor) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (now if created is None else created, image.tobytes(), raw_png, label,
                 int(probabilities.argmax()),
                 json.dumps([round(float(p), PROBABILITY_DIGITS) for p in probabilities]),
                 run_id, key),
            )
            return int(cursor.lastrowid)

    def count(self, label: int | None = None, wrong_only: bool = False) -> int:
        """How many drawings (of `label`; only those the model got wrong when it predicted)."""
        where, params = _where(label, wrong_only)
        with self._reading() as db:
            return db.execute(f"SELECT count(*) FROM drawings{where}", params).fetchone()[0]

    def page(self, offset: int, limit: int, label: int | None = None,
             wrong_only: bool = False) -> list[DrawingSummary]:
        """Up to `limit` drawings (clamped to 0..PAGE_LIMIT), newest first, after skipping
        `offset` (clamped to >= 0); filtered like `count`."""
        offset = min(max(whole(offset, "offset"), 0), _MAX_OFFSET)
        limit = min(max(whole(limit, "limit"), 0), PAGE_LIMIT)
        where, params = _where(label, wrong_only)
        if limit == 0:
            return []
        with self._reading() as db:
            rows = db.execute(f"SELECT {_SUMMARY_COLUMNS} FROM drawings{where}"
                              " ORDER BY id DESC LIMIT ? OFFSET ?", (*params, limit, offset)).fetchall()
        return [DrawingSummary(id=r[0], label=r[1], predicted=r[2],
                               confidence=float(_probabilities(r[3])[r[2]]), run_id=r[4],
                               created=r[5]) for r in rows]

    def recent_count(self, seconds: float) -> int:
        """How many drawings were saved in the last `seconds`."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.integer, np.floating)) \
                or not math.isfinite(seconds):
            raise ValueError(f"seconds must be a number, got {seconds!r}")
        since = time.time() - max(float(seconds), 0.0)
        with self._reading() as db:
            return db.execute("SELECT count(*) FROM drawings WHERE created > ?",
                              (since,)).fetchone()[0]

    def revision(self) -> tuple[int, int]:
        """(count, newest id): changes whenever a drawing is added or deleted (ids are never
        reused), so it can key a cache of `load()`."""
        with self._reading() as db:
            count, newest = db.execute("SELECT count(*), max(id) FROM drawings").fetchone()
        return count, newest or 0

    def load(self) -> Drawings:
        """Every drawing with its arrays, oldest first (for fine-tuning and export)."""
        with self._reading() as db:
            rows = db.execute(
                "SELECT id, image, label, predicted, probabilities, run_id, created"
                " FROM drawings ORDER BY id").fetchall()
        n = len(rows)
        images = np.frombuffer(b"".join(r[1] for r in rows), np.uint8)
        return Drawings(
            ids=np.array([r[0] for r in rows], np.int64),
            images=images.reshape(n, IMAGE_SIZE, IMAGE_SIZE).copy(),
            labels=np.array([r[2] for r in rows], np.uint8),
            predicted=np.array([r[3] for r in rows], np.uint8),
            probabilities=np.array([_probabilities(r[4]) for r in rows],
                                   np.float32).reshape(n, NUM_CLASSES),
            run_ids=[r[5] for r in rows],
            created=np.array([r[6] for r in rows], np.float64),
        )

    def raw_png(self, drawing_id: int) -> bytes | None:
        """The stored PNG as it is (possibly damaged); see `thumbnail` for one safe to show."""
        drawing_id = whole(drawing_id, "drawing_id")
        if not 0 < drawing_id <= _MAX_ID:
            return None
        with self._reading() as db:
            row = db.execute("SELECT raw_png FROM drawings WHERE id = ?", (drawing_id,)).fetchone()
        return row[0] if row else None

    def thumbnail(self, drawing_id: int) -> bytes | None:
        """The drawing as drawn, a PNG that is safe to show (a grey square if the stored one is
        damaged); None when there is no such drawing."""
        raw = self.raw_png(drawing_id)
        return None if raw is None else thumbnail_or_placeholder(raw, THUMBNAIL_SIZE)

    def delete(self, drawing_id: int) -> bool:
        drawing_id = whole(drawing_id, "drawing_id")
        if not 0 < drawing_id <= _MAX_ID:
            return False
        with self._writing() as db:
            db.execute("DELETE FROM hidden WHERE id = ?", (drawing_id,))
            return db.execute("DELETE FROM drawings WHERE id = ?", (drawing_id,)).rowcount == 1

    def delete_all(self) -> int:
        with self._writing() as db:
            db.execute("DELETE FROM hidden")
            return db.execute("DELETE FROM drawings").rowcount

    def hide(self, drawing_id: int, hidden: bool = True) -> None:
        """Keep a drawing out of the gallery (or let it back in); it stays in the data: its
        accuracy, exports and fine-tunes count it."""
        drawing_id = whole(drawing_id, "drawing_id")
        with self._writing() as db:
            if hidden:
                db.execute("INSERT OR IGNORE INTO hidden (id) SELECT id FROM drawings "
                           "WHERE id = ?", (drawing_id,))
            else:
                db.execute("DELETE FROM hidden WHERE id = ?", (drawing_id,))

    def show_all(self) -> int:
        """Every hidden drawing back in the gallery; how many were hidden."""
        with self._writing() as db:
            return db.execute("DELETE FROM hidden").rowcount

    def hidden(self) -> frozenset[int]:
        """The ids of the drawings kept out of the gallery."""
        with self._reading() as db:
            if not schema.has_table(db, "hidden"):
                return frozenset()
            return frozenset(row[0] for row in db.execute(
                "SELECT hidden.id FROM hidden JOIN drawings ON drawings.id = hidden.id"))

    def collecting(self) -> bool:
        """Whether new drawings are saved: the teacher's switch, shared by every server
        process, and `MNIST_COLLECT_DRAWINGS`."""
        if not limits.collection_enabled():
            return False
        with self._reading() as db:
            return limits.collecting(db)

    def set_collecting(self, on: bool) -> None:
        """The teacher's switch: pause (False) or resume (True) saving drawings."""
        if not isinstance(on, bool):
            raise ValueError(f"on must be True or False, got {on!r}")
        with self._writing() as db:
            limits.set_collecting(db, on)


def _where(label: int | None, wrong_only: bool) -> tuple[str, tuple]:
    """The WHERE clause (with a leading space, or empty) and its parameters."""
    clauses, params = [], []
    if label is not None:
        clauses.append("label = ?")
        params.append(digit(label))
    if wrong_only:
        clauses.append("label != predicted")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def _probabilities(text) -> np.ndarray:
    """The stored JSON list of 10 probabilities; NaNs if the row is damaged."""
    try:
        values = np.asarray(json.loads(text), dtype=np.float64)
    except (TypeError, ValueError):
        values = None
    if values is None or values.shape != (NUM_CLASSES,):
        return np.full(NUM_CLASSES, np.nan)
    return values
