"""The class's drawings: SQLite store, concurrency, faults, export, and fine-tuning on them."""

from __future__ import annotations

import io
import sqlite3
import threading
import zipfile

import numpy as np
import pytest

from mnist_core.data import read_idx, read_mnist
from mnist_core.drawings import DrawingStore, DrawingStoreError, export_idx_zip, export_npz

pytestmark = pytest.mark.unit

PNG = b"\x89PNG\r\n\x1a\nfake-but-opaque-bytes"


def probabilities_for(digit: int) -> np.ndarray:
    p = np.full(10, 0.01)
    p[digit] = 0.91
    return p


def fill(store: DrawingStore, mnist, count: int, start: int = 0) -> None:
    """Real validation digits stand in for drawings; predicted = the label shifted by one
    for every third, so there are mistakes to count."""
    for i in range(start, start + count):
        label = int(mnist.y_valid[i])
        predicted = (label + 1) % 10 if i % 3 == 0 else label
        store.add(mnist.x_valid[i], PNG, label, probabilities_for(predicted), "run-a")


def test_round_trip_and_schema_on_an_empty_path(tmp_path, mnist):
    store = DrawingStore(tmp_path / "new" / "folder" / "drawings.db")
    assert store.count() == 0
    fill(store, mnist, 12)
    drawings = store.load()
    assert len(drawings) == 12 and drawings.ids.tolist() == list(range(1, 13))
    np.testing.assert_array_equal(drawings.images, mnist.x_valid[:12])
    np.testing.assert_array_equal(drawings.labels, mnist.y_valid[:12])
    assert drawings.predicted[0] == (mnist.y_valid[0] + 1) % 10
    assert drawings.probabilities.shape == (12, 10) and drawings.run_ids[0] == "run-a"
    assert store.raw_png(3) == PNG
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert store.delete(3) and not store.delete(3)
    assert store.count() == 11 and store.delete_all() == 11 and store.count() == 0


@pytest.mark.parametrize("label", [-1, 10, 3.5, "7", True])
def test_a_label_outside_0_to_9_is_refused(tmp_path, mnist, label):
    store = DrawingStore(tmp_path / "d.db")
    with pytest.raises(ValueError, match="label must be a digit from 0 to 9"):
        store.add(mnist.x_valid[0], PNG, label, probabilities_for(1), "run-a")
    assert store.count() == 0


def test_thirty_visitors_labelling_at_once_lose_no_row(tmp_path, mnist):
    store = DrawingStore(tmp_path / "d.db")
    barrier = threading.Barrier(30)
    errors = []

    def visitor(number):
        try:
            barrier.wait()
            for k in range(5):
                DrawingStore(store.path).add(mnist.x_valid[number], PNG, (number + k) % 10,
                                             probabilities_for(k), f"run-{number}")
        except Exception as exc:  # collected, so the assertion shows them
            errors.append(exc)

    threads = [threading.Thread(target=visitor, args=(n,)) for n in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    drawings = store.load()
    assert len(drawings) == 150
    assert sorted(set(drawings.run_ids)) == sorted(f"run-{n}" for n in range(30))


def test_a_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "drawings.db"
    path.write_bytes(b"this is not a sqlite database at all" * 100)
    with pytest.raises(DrawingStoreError, match="drawings.db: the drawings database is corrupt"):
        DrawingStore(path).count()


def test_a_locked_database_is_a_clear_error(tmp_path, mnist, monkeypatch):
    store = DrawingStore(tmp_path / "d.db")
    fill(store, mnist, 1)
    monkeypatch.setattr("mnist_core.drawings.BUSY_TIMEOUT_SECONDS", 0.2)
    holder = sqlite3.connect(store.path)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DrawingStoreError, match="locked by another program"):
            store.add(mnist.x_valid[1], PNG, 2, probabilities_for(2), "run-a")
    finally:
        holder.rollback()
        holder.close()
    assert store.count() == 1


def test_exports_read_back_like_mnist(tmp_path, mnist):
    store = DrawingStore(tmp_path / "d.db")
    fill(store, mnist, 20)
    drawings = store.load()
    npz = tmp_path / "drawings.npz"
    npz.write_bytes(export_npz(drawings))
    data = read_mnist(npz)
    assert len(data.x_train) == 16 and len(data.x_valid) == 4  # ids 5, 10, 15, 20 held out
    np.testing.assert_array_equal(data.x_valid, mnist.x_valid[[4, 9, 14, 19]])
    with zipfile.ZipFile(io.BytesIO(export_idx_zip(drawings))) as archive:
        archive.extractall(tmp_path / "idx")
    images = read_idx(tmp_path / "idx" / "drawings-images-idx3-ubyte.gz", 0x803)
    labels = read_idx(tmp_path / "idx" / "drawings-labels-idx1-ubyte.gz", 0x801)
    np.testing.assert_array_equal(images, mnist.x_valid[:20])
    np.testing.assert_array_equal(labels, mnist.y_valid[:20])
