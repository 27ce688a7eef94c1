"""The class's labelled drawings, in a SQLite database on the server.

Each row is one drawing a visitor labelled on the Draw page: the preprocessed 28x28 image
(what the model saw), a small PNG of the raw drawing, the true label, what the model predicted
with its probabilities, which run predicted, and when. Drawings never leave the server.

One connection per call keeps the store safe from any number of Streamlit threads; WAL mode
lets readers go on while someone writes, and the busy timeout queues concurrent writers
instead of failing them.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import sqlite3
import time
import zipfile
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_core.data import IMAGE_SIZE, IMAGES_MAGIC, LABELS_MAGIC, NUM_CLASSES
from mnist_core.runs import folder

SCHEMA_VERSION = 1
BUSY_TIMEOUT_SECONDS = 30
HOLDOUT_EVERY = 5  # every 5th drawing (by id) is held out to measure fine-tuning


class DrawingStoreError(RuntimeError):
    """The drawings database cannot be used; the message says which file and why."""


def drawings_path() -> Path:
    """`MNIST_DRAWINGS_DB`, default `drawings.db` beside the saved models."""
    return Path(os.environ.get("MNIST_DRAWINGS_DB") or folder.models_dir() / folder.DRAWINGS_DB)


def collection_enabled() -> bool:
    """`MNIST_COLLECT_DRAWINGS=0` turns collecting labelled drawings off."""
    value = os.environ.get("MNIST_COLLECT_DRAWINGS", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class Drawings:
    """All drawings as arrays, oldest first."""

    ids: np.ndarray  # (N,) int64
    images: np.ndarray  # (N, 28, 28) uint8, preprocessed like MNIST
    labels: np.ndarray  # (N,) uint8, what the visitor said it is
    predicted: np.ndarray  # (N,) uint8, what the model said then
    probabilities: np.ndarray  # (N, 10) float32
    run_ids: list[str]
    created: np.ndarray  # (N,) float64, unix time

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def holdout(self) -> np.ndarray:
        """Mask of the drawings kept out of fine-tuning, to measure it: every 5th by id."""
        return self.ids % HOLDOUT_EVERY == 0

    def to_npz(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, ids=self.ids, images=self.images, labels=self.labels)
        return buffer.getvalue()

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


_SCHEMA = """
CREATE TABLE drawings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    image BLOB NOT NULL CHECK (length(image) = 784),
    raw_png BLOB NOT NULL,
    label INTEGER NOT NULL CHECK (label BETWEEN 0 AND 9),
    predicted INTEGER NOT NULL CHECK (predicted BETWEEN 0 AND 9),
    probabilities TEXT NOT NULL,
    run_id TEXT NOT NULL
);
"""


class DrawingStore:
    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else drawings_path()

    @contextmanager
    def _connect(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS)) as db:
                with db:  # one transaction
                    self._ensure_schema(db)
                    yield db
        except sqlite3.DatabaseError as exc:
            raise DrawingStoreError(_explain(self.path, exc)) from None
        except OSError as exc:
            raise DrawingStoreError(f"{self.path}: cannot open the drawings database ({exc})") from None

    @staticmethod
    def _ensure_schema(db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this app's {SCHEMA_VERSION}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("BEGIN IMMEDIATE")  # two first writers must not both create the table
        if db.execute("PRAGMA user_version").fetchone()[0] == 0:
            db.execute(_SCHEMA.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def add(self, image: np.ndarray, raw_png: bytes, label: int, probabilities: np.ndarray,
            run_id: str, created: float | None = None) -> int:
        """Store one labelled drawing; return its id. `image` is the (28, 28) uint8 model input."""
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) \
                or not 0 <= int(label) < NUM_CLASSES:
            raise ValueError(f"label must be a digit from 0 to 9, got {label!r}")
        image = np.asarray(image)
        if image.shape != (IMAGE_SIZE, IMAGE_SIZE) or image.dtype != np.uint8:
            raise ValueError(f"image must be (28, 28) uint8, got {image.shape} {image.dtype}")
        probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
        if probabilities.shape != (NUM_CLASSES,):
            raise ValueError(f"probabilities must be 10 values, got {probabilities.shape}")
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO drawings (created, image, raw_png, label, predicted, probabilities,"
                " run_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time() if created is None else created, image.tobytes(), raw_png,
                 int(label), int(probabilities.argmax()),
                 json.dumps([round(float(p), 6) for p in probabilities]), run_id),
            )
            return int(cursor.lastrowid)

    def count(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT count(*) FROM drawings").fetchone()[0]

    def load(self) -> Drawings:
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, image, label, predicted, probabilities, run_id, created"
                " FROM drawings ORDER BY id").fetchall()
        n = len(rows)
        images = np.frombuffer(b"".join(r[1] for r in rows), np.uint8).reshape(n, 28, 28)
        return Drawings(
            ids=np.array([r[0] for r in rows], np.int64),
            images=images.copy(),
            labels=np.array([r[2] for r in rows], np.uint8),
            predicted=np.array([r[3] for r in rows], np.uint8),
            probabilities=np.array([json.loads(r[4]) for r in rows], np.float32).reshape(n, 10),
            run_ids=[r[5] for r in rows],
            created=np.array([r[6] for r in rows], np.float64),
        )

    def raw_png(self, drawing_id: int) -> bytes | None:
        with self._connect() as db:
            row = db.execute("SELECT raw_png FROM drawings WHERE id = ?",
                             (int(drawing_id),)).fetchone()
        return row[0] if row else None

    def delete(self, drawing_id: int) -> bool:
        with self._connect() as db:
            return db.execute("DELETE FROM drawings WHERE id = ?",
                              (int(drawing_id),)).rowcount == 1

    def delete_all(self) -> int:
        with self._connect() as db:
            return db.execute("DELETE FROM drawings").rowcount


def _explain(path: Path, exc: sqlite3.DatabaseError) -> str:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return (f"{path}: the drawings database is locked by another program; "
                f"drawings cannot be saved until it is released ({text})")
    if "not a database" in text or "malformed" in text:
        return (f"{path}: the drawings database is corrupt ({text}). Move the file away to "
                "start a new one.")
    return f"{path}: the drawings database cannot be used ({text})"


def _idx(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def export_npz(drawings: Drawings) -> bytes:
    """A Keras-style mnist.npz: held-out drawings as x_test/y_test, the rest as x_train/y_train.

    `mnist_core.data.read_mnist` (and `np.load`) read it like MNIST itself.
    """
    hold = drawings.holdout
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x_train=drawings.images[~hold], y_train=drawings.labels[~hold],
                        x_test=drawings.images[hold], y_test=drawings.labels[hold])
    return buffer.getvalue()


def export_idx_zip(drawings: Drawings) -> bytes:
    """A zip of the IDX pair, gzipped as MNIST publishes its files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("drawings-images-idx3-ubyte.gz", _idx(drawings.images, IMAGES_MAGIC))
        archive.writestr("drawings-labels-idx1-ubyte.gz", _idx(drawings.labels, LABELS_MAGIC))
    return buffer.getvalue()
