"""The class's labelled drawings, in a SQLite database on the server.

Each row is one drawing a visitor labelled on the Draw page: the preprocessed 28x28 image
(what the model saw), a small PNG of the raw drawing, the true label, what the model predicted
with its probabilities, which run predicted, when, and a salted hash of the visitor's address
(for the rate limit; the address itself is never stored). Drawings never leave the server.

One connection per call keeps the store safe from any number of Streamlit threads; WAL mode
lets readers go on while someone writes, and the busy timeout queues concurrent writers
instead of failing them.

No visitor can make it grow without bound: each address may save `RATE_LIMIT_DRAWINGS` per
`RATE_LIMIT_WINDOW_SECONDS`, the table holds at most `max_drawings()`, and the teacher can
pause collecting. The rate limit, the pause and the salt live in the database, so every server
process agrees and a restart resets nothing.

Reading survives a read-only folder or a full disk: when the database cannot be opened for
writing it is opened read-only, so the drawings can still be viewed and only saving fails.
Every failure is a `DrawingStoreError` whose message says what, where and how to fix it.
"""

from __future__ import annotations

import errno
import functools
import gzip
import hashlib
import io
import json
import math
import os
import secrets
import sqlite3
import time
import zipfile
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mnist_core.data import IMAGE_SIZE, IMAGES_MAGIC, LABELS_MAGIC, NUM_CLASSES, NUM_PIXELS
from mnist_core.runs import folder

SCHEMA_VERSION = 2
BUSY_TIMEOUT_SECONDS = 30
HOLDOUT_EVERY = 5  # every 5th drawing (by id) is held out to measure fine-tuning

MAX_DRAWINGS = 50_000  # the table's cap; `MNIST_MAX_DRAWINGS` overrides it
RATE_LIMIT_DRAWINGS = 20  # one visitor address may save this many ...
RATE_LIMIT_WINDOW_SECONDS = 60.0  # ... in any window this long
PAGE_LIMIT = 200  # the most summaries one `page()` returns
MAX_RAW_PNG_BYTES = 256 * 1024  # a raw drawing's PNG (thumbnail_png makes a few kB)
THUMBNAIL_SIZE = 140  # pixels a side, as `preprocess.thumbnail_png` makes them
MAX_THUMBNAIL_SIDE = 1024  # a stored PNG larger than this is shown as the placeholder
PLACEHOLDER_GREY = 128
_MAX_OFFSET = 2**31
_MAX_ID = 2**63 - 1  # SQLite's largest integer

_READ_ONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


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


def drawings_path() -> Path:
    """`MNIST_DRAWINGS_DB`, default `drawings.db` beside the saved models."""
    return Path(os.environ.get("MNIST_DRAWINGS_DB") or folder.models_dir() / folder.DRAWINGS_DB)


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


@dataclass(frozen=True)
class Drawings:
    """All drawings as arrays, oldest first."""

    ids: np.ndarray  # (N,) int64
    images: np.ndarray  # (N, 28, 28) uint8, preprocessed like MNIST
    labels: np.ndarray  # (N,) uint8, what the visitor said it is
    predicted: np.ndarray  # (N,) uint8, what the model said then
    probabilities: np.ndarray  # (N, 10) float32; a row is NaN where the stored values are damaged
    run_ids: list[str]
    created: np.ndarray  # (N,) float64, unix time

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def holdout(self) -> np.ndarray:
        """Mask of the drawings kept out of fine-tuning, to measure it: every 5th by id."""
        return self.ids % HOLDOUT_EVERY == 0

    def to_npz(self) -> bytes:
        return _build("drawings.npz", lambda buffer: np.savez(
            buffer, ids=self.ids, images=self.images, labels=self.labels))

    @classmethod
    def from_npz(cls, path: Path) -> Drawings:
        """The ids, images and labels of a snapshot (what training needs)."""
        with np.load(path, allow_pickle=False) as npz:
            n = len(npz["ids"])
            return cls(npz["ids"], npz["images"], npz["labels"], np.zeros(n, np.uint8),
                       np.zeros((n, NUM_CLASSES), np.float32), [""] * n, np.zeros(n))

    def subset(self, mask: np.ndarray) -> Drawings:
        return Drawings(self.ids[mask], self.images[mask], self.labels[mask],
                        self.predicted[mask], self.probabilities[mask],
                        [r for r, keep in zip(self.run_ids, mask, strict=True) if keep],
                        self.created[mask])


@dataclass(frozen=True)
class DrawingSummary:
    """One drawing without its arrays: what a gallery or a list of drawings needs."""

    id: int
    label: int  # what the visitor said it is
    predicted: int  # what the model said then
    confidence: float  # the model's probability of `predicted`, 0-1 (NaN if the row is damaged)
    run_id: str
    created: float  # unix time

    @property
    def wrong(self) -> bool:
        return self.label != self.predicted


# What each schema version adds to the one before; an older database is brought up to date
# in place, under the write lock, by the first connection that sees it.
_MIGRATIONS = {
    1: (f"""CREATE TABLE IF NOT EXISTS drawings (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created REAL NOT NULL,
            image BLOB NOT NULL CHECK (length(image) = {NUM_PIXELS}),
            raw_png BLOB NOT NULL,
            label INTEGER NOT NULL CHECK (label BETWEEN 0 AND 9),
            predicted INTEGER NOT NULL CHECK (predicted BETWEEN 0 AND 9),
            probabilities TEXT NOT NULL,
            run_id TEXT NOT NULL
        )""",),
    2: ("ALTER TABLE drawings ADD COLUMN visitor TEXT",  # salted hash of the address, or NULL
        "CREATE INDEX IF NOT EXISTS drawings_by_visitor ON drawings (visitor, created)",
        "CREATE INDEX IF NOT EXISTS drawings_by_time ON drawings (created)",
        "CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)"),
}

_SUMMARY_COLUMNS = "id, label, predicted, probabilities, run_id, created"


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
            raise DrawingStoreError(_explain(self.path, exc)) from None

    @contextmanager
    def _writing(self):
        """A connection in one transaction: committed at the end, rolled back on an error."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._open_read_write()) as db, db:
                yield db
        except DrawingStoreError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise DrawingStoreError(_explain(self.path, exc)) from None

    def _open_read_write(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS)
        try:
            _ensure_schema(db)
        except BaseException:
            db.close()
            raise
        return db

    def _open_for_reading(self) -> sqlite3.Connection:
        if not self.path.exists():
            return _empty_database()  # nothing saved yet: create nothing just to look
        try:
            return self._open_read_write()
        except (sqlite3.OperationalError, OSError) as exc:
            if _fault(exc) is None:
                raise
            try:
                return _open_read_only(self.path)
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
        label = _digit(label)
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
        if not collection_enabled():
            raise DrawingCollectionPaused(
                "Collecting drawings is turned off on this server (MNIST_COLLECT_DRAWINGS=0): "
                "drawing and predicting still work, but labels are not saved.")
        limit = max_drawings()
        now = time.time()
        with self._writing() as db:
            db.execute("BEGIN IMMEDIATE")  # the checks and the insert are one step
            key = _visitor_key(db, visitor) if visitor else None
            _check_room(db, limit, key, now)
            cursor = db.execute(
                "INSERT INTO drawings (created, image, raw_png, label, predicted, probabilities,"
                " run_id, visitor) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (now if created is None else created, image.tobytes(), raw_png, label,
                 int(probabilities.argmax()),
                 json.dumps([round(float(p), 6) for p in probabilities]), run_id, key),
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
        offset = min(max(_whole(offset, "offset"), 0), _MAX_OFFSET)
        limit = min(max(_whole(limit, "limit"), 0), PAGE_LIMIT)
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
        drawing_id = _whole(drawing_id, "drawing_id")
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
        drawing_id = _whole(drawing_id, "drawing_id")
        if not 0 < drawing_id <= _MAX_ID:
            return False
        with self._writing() as db:
            return db.execute("DELETE FROM drawings WHERE id = ?", (drawing_id,)).rowcount == 1

    def delete_all(self) -> int:
        with self._writing() as db:
            return db.execute("DELETE FROM drawings").rowcount

    def collecting(self) -> bool:
        """Whether new drawings are saved: the teacher's switch, shared by every server
        process, and `MNIST_COLLECT_DRAWINGS`."""
        if not collection_enabled():
            return False
        with self._reading() as db:
            return _setting(db, "collecting", "1") != "0"

    def set_collecting(self, on: bool) -> None:
        """The teacher's switch: pause (False) or resume (True) saving drawings."""
        if not isinstance(on, bool):
            raise ValueError(f"on must be True or False, got {on!r}")
        with self._writing() as db:
            db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('collecting', ?)",
                       ("1" if on else "0",))


def _ensure_schema(db: sqlite3.Connection) -> None:
    version = _user_version(db)
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise _newer_schema(version)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("BEGIN IMMEDIATE")  # two first writers must not both create or migrate
    try:
        _migrate(db, _user_version(db))  # read again: another may have done it meanwhile
        db.commit()
    except BaseException:
        db.rollback()
        raise


def _newer_schema(version: int) -> sqlite3.DatabaseError:
    return sqlite3.DatabaseError(f"it was made by a newer version of this app (schema {version}, "
                                 f"this app knows {SCHEMA_VERSION}); update the app")


def _migrate(db: sqlite3.Connection, version: int) -> None:
    if version >= SCHEMA_VERSION:
        return
    for target in range(version + 1, SCHEMA_VERSION + 1):
        for statement in _MIGRATIONS[target]:
            db.execute(statement)
    db.execute("INSERT OR IGNORE INTO settings (key, value) VALUES ('salt', ?)",
               (secrets.token_hex(16),))
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _user_version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def _empty_database() -> sqlite3.Connection:
    """An in-memory database with the schema and no drawings."""
    db = sqlite3.connect(":memory:")
    _migrate(db, 0)
    db.commit()
    return db


def _open_read_only(path: Path) -> sqlite3.Connection:
    """Open for reading only. `mode=ro` still needs WAL's -shm file; when that cannot be
    made (read-only media), `immutable=1` reads the main file alone, without the drawings
    still in the -wal file."""
    uri = path.resolve().as_uri()
    error: sqlite3.Error | None = None
    for query in ("mode=ro", "immutable=1"):
        db = None
        try:
            db = sqlite3.connect(f"{uri}?{query}", uri=True, timeout=BUSY_TIMEOUT_SECONDS)
            version = _user_version(db)
        except sqlite3.OperationalError as exc:
            if db is not None:
                db.close()
            error = exc
            continue
        if version == 0 or version > SCHEMA_VERSION:
            db.close()
            if version > SCHEMA_VERSION:
                raise _newer_schema(version)
            return _empty_database()  # an empty file: nothing saved yet
        return db
    assert error is not None
    raise error


def _visitor_key(db: sqlite3.Connection, visitor: str) -> str:
    """A salted hash of the address: counts per visitor without storing who they are."""
    salt = _setting(db, "salt")
    if salt is None:
        salt = secrets.token_hex(16)
        db.execute("INSERT INTO settings (key, value) VALUES ('salt', ?)", (salt,))
    return hashlib.sha256(f"{salt}\0{visitor}".encode()).hexdigest()[:32]


def _check_room(db: sqlite3.Connection, limit: int, key: str | None, now: float) -> None:
    if _setting(db, "collecting", "1") == "0":
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
        wait = max(oldest + RATE_LIMIT_WINDOW_SECONDS - now, 1.0)
        raise DrawingRateLimited(
            f"You have saved {saved} drawings within {_in_words(RATE_LIMIT_WINDOW_SECONDS)}, the "
            f"most one visitor can save: you can save another in {_in_words(wait)}.", wait)


def _setting(db: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
    # A version-1 database opened read-only has no settings table: everything is default.
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'settings'"
                      ).fetchone():
        return default
    row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return row[0] if row else default


def _in_words(seconds: float) -> str:
    seconds = max(math.ceil(seconds), 1)
    if seconds < 60:
        return f"{seconds} second{'s' if seconds > 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes > 1 else ''}"


def _digit(label) -> int:
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) \
            or not 0 <= int(label) < NUM_CLASSES:
        raise ValueError(f"label must be a digit from 0 to 9, got {label!r}")
    return int(label)


def _whole(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _where(label: int | None, wrong_only: bool) -> tuple[str, tuple]:
    """The WHERE clause (with a leading space, or empty) and its parameters."""
    clauses, params = [], []
    if label is not None:
        clauses.append("label = ?")
        params.append(_digit(label))
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


def _fault(exc: BaseException) -> str | None:
    """'read-only', 'full' or 'cannot-open' when the failure is the disk's, not the data's."""
    if isinstance(exc, OSError):
        if exc.errno in _READ_ONLY_ERRNOS:
            return "read-only"
        return "full" if exc.errno in _FULL_ERRNOS else None
    text = str(exc).lower()
    if "readonly" in text or "read-only" in text:
        return "read-only"
    if "disk is full" in text or "disk full" in text:
        return "full"
    return "cannot-open" if "unable to open" in text else None


def _explain(path: Path, exc: BaseException) -> str:
    text = str(exc)
    fault = _fault(exc)
    if fault == "cannot-open" and path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        fault = "read-only"  # SQLite says only "unable to open" when WAL's files can't be made
    if fault == "read-only":
        return (f"The drawings database {path} is read-only: new drawings cannot be saved, but "
                "the saved ones can still be viewed. Make the file and its folder writable by "
                f"the server, or point MNIST_DRAWINGS_DB to a writable place ({text}).")
    if fault == "full":
        return (f"The disk holding the drawings database {path} is full: new drawings cannot be "
                f"saved. Free some space on that disk ({text}).")
    if "locked" in text or "busy" in text:
        return (f"{path}: the drawings database is locked by another program; "
                f"drawings cannot be saved until it is released ({text}).")
    if "not a database" in text or "malformed" in text:
        return (f"{path}: the drawings database is corrupt ({text}). Move the file away to "
                "start a new one.")
    if fault == "cannot-open":
        return (f"{path}: cannot open the drawings database; check that its folder exists and "
                f"the server may read and write there ({text}).")
    return f"{path}: the drawings database cannot be used ({text})."


def thumbnail_or_placeholder(png: bytes | None, size: int = THUMBNAIL_SIZE) -> bytes:
    """`png` itself when Pillow can read all of it as a PNG no larger than MAX_THUMBNAIL_SIDE;
    otherwise a plain grey PNG of `size` x `size` pixels (clamped to 1..MAX_THUMBNAIL_SIDE),
    so a damaged row shows as a grey square instead of breaking the page."""
    if isinstance(png, bytes) and _readable_png(png):
        return png
    return _placeholder(min(max(_whole(size, "size"), 1), MAX_THUMBNAIL_SIDE))


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


@functools.lru_cache(maxsize=8)
def _placeholder(size: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (size, size), PLACEHOLDER_GREY).save(buffer, format="PNG")
    return buffer.getvalue()


def _build(name: str, write) -> bytes:
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


def _idx(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def export_npz(drawings: Drawings) -> bytes:
    """A Keras-style mnist.npz: held-out drawings as x_test/y_test, the rest as x_train/y_train.

    `mnist_core.data.read_mnist` (and `np.load`) read it like MNIST itself. Raises
    DrawingStoreError (never anything else) when it cannot be built.
    """
    hold = drawings.holdout
    return _build("mnist.npz", lambda buffer: np.savez_compressed(
        buffer, x_train=drawings.images[~hold], y_train=drawings.labels[~hold],
        x_test=drawings.images[hold], y_test=drawings.labels[hold]))


def export_idx_zip(drawings: Drawings) -> bytes:
    """A zip of the IDX pair, gzipped as MNIST publishes its files. Raises DrawingStoreError
    (never anything else) when it cannot be built."""
    def write(buffer):
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("drawings-images-idx3-ubyte.gz", _idx(drawings.images, IMAGES_MAGIC))
            archive.writestr("drawings-labels-idx1-ubyte.gz", _idx(drawings.labels, LABELS_MAGIC))

    return _build("IDX files", write)
