"""The class's drawings: SQLite store, concurrency, bounds (rate limit, cap, pause, pages),
migration, thumbnails and export. Disk faults are in test_drawings_faults.py."""

from __future__ import annotations

import io
import sqlite3
import threading
import time
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mnist_core.data import read_idx, read_mnist
from mnist_core.drawings import (
    PAGE_LIMIT,
    RATE_LIMIT_DRAWINGS,
    RATE_LIMIT_WINDOW_SECONDS,
    SCHEMA_VERSION,
    DrawingCollectionPaused,
    DrawingRateLimited,
    DrawingStore,
    DrawingStoreError,
    DrawingStoreFull,
    DrawingSummary,
    export_idx_zip,
    export_npz,
    limits,
    thumbnail_or_placeholder,
)
from mnist_core.preprocess import thumbnail_png

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
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
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
    monkeypatch.setattr("mnist_core.drawings.schema.BUSY_TIMEOUT_SECONDS", 0.2)
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


class FakeClock:
    """time.time() for the store, moved by hand: no test waits or measures real time."""

    def __init__(self, monkeypatch, start: float = 1_000_000.0):
        self.now = start
        monkeypatch.setattr(time, "time", lambda: self.now)


def add_one(store: DrawingStore, mnist, i: int = 0, visitor: str | None = None) -> int:
    return store.add(mnist.x_valid[i], PNG, int(mnist.y_valid[i]),
                     probabilities_for(int(mnist.y_valid[i])), "run-a", visitor=visitor)


def test_page_and_count_give_summaries_newest_first_with_filters(tmp_path, mnist):
    store = DrawingStore(tmp_path / "d.db")
    fill(store, mnist, 12)  # ids 1..12; ids 1, 4, 7, 10 (i % 3 == 0) were predicted wrong
    first = store.page(0, 5)
    assert [s.id for s in first] == [12, 11, 10, 9, 8]
    assert all(isinstance(s, DrawingSummary) for s in first)
    ten = first[2]
    assert (ten.label, ten.predicted, ten.run_id) == (mnist.y_valid[9], (mnist.y_valid[9] + 1) % 10,
                                                      "run-a")
    assert ten.wrong and ten.confidence == pytest.approx(0.91) and ten.created > 0
    assert [s.id for s in store.page(10, 5)] == [2, 1]
    assert store.page(12, 5) == []
    assert [s.id for s in store.page(0, 50, wrong_only=True)] == [10, 7, 4, 1]
    assert store.count() == 12 and store.count(wrong_only=True) == 4
    digit = int(mnist.y_valid[0])
    expected = [i + 1 for i in range(12) if mnist.y_valid[i] == digit][::-1]
    assert [s.id for s in store.page(0, 50, label=digit)] == expected
    assert store.count(label=digit) == len(expected)
    assert store.count(label=digit, wrong_only=True) == sum(
        1 for i in range(12) if mnist.y_valid[i] == digit and i % 3 == 0)


def test_page_arguments_are_clamped_or_refused(tmp_path, mnist):
    store = DrawingStore(tmp_path / "d.db")
    fill(store, mnist, 3)
    assert [s.id for s in store.page(-7, 2)] == [3, 2]
    assert store.page(0, -1) == [] and store.page(2**70, 10) == []
    assert len(store.page(np.int64(0), 10**9)) == 3  # clamped to PAGE_LIMIT
    for offset, limit in [("0", 10), (0, 2.5), (True, 10), (0, None)]:
        with pytest.raises(ValueError, match="must be a whole number"):
            store.page(offset, limit)
    with pytest.raises(ValueError, match="label must be a digit"):
        store.page(0, 10, label=11)
    with pytest.raises(ValueError, match="label must be a digit"):
        store.count(label="3")
    assert PAGE_LIMIT <= 1000


def test_thumbnail_is_the_stored_png_or_a_placeholder(tmp_path, mnist):
    store = DrawingStore(tmp_path / "d.db")
    good = thumbnail_png(mnist.x_valid[0])
    first = store.add(mnist.x_valid[0], good, 7, probabilities_for(7), "run-a")
    second = store.add(mnist.x_valid[1], good[: len(good) // 2], 2, probabilities_for(2), "run-a")
    assert store.thumbnail(first) == good
    broken = store.thumbnail(second)
    assert broken != good and Image.open(io.BytesIO(broken)).size == (140, 140)
    assert store.thumbnail(999) is None and store.thumbnail(2**80) is None
    assert store.raw_png(second) == good[: len(good) // 2]  # the stored bytes are untouched


def test_thumbnail_or_placeholder_keeps_a_good_png_and_replaces_a_truncated_one(mnist):
    good = thumbnail_png(mnist.x_valid[0])
    assert thumbnail_or_placeholder(good, 60) == good
    for bad in [good[:-20], good[: len(good) // 2], b"", None, PNG, b"GIF89a" + good[6:]]:
        out = thumbnail_or_placeholder(bad, 60)
        with Image.open(io.BytesIO(out), formats=["PNG"]) as image:
            image.load()
            assert image.size == (60, 60) and image.getextrema() == (128, 128)
    jpeg = io.BytesIO()
    Image.new("L", (20, 20), 200).save(jpeg, format="JPEG")
    assert thumbnail_or_placeholder(jpeg.getvalue(), 30) != jpeg.getvalue()
    huge = io.BytesIO()
    Image.new("1", (5000, 10)).save(huge, format="PNG")  # small file, too many pixels a side
    assert thumbnail_or_placeholder(huge.getvalue(), 30) != huge.getvalue()
    assert Image.open(io.BytesIO(thumbnail_or_placeholder(None, 10**6))).size == (1024, 1024)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=3000), cut=st.integers(min_value=0, max_value=5000))
def test_thumbnail_or_placeholder_always_gives_a_readable_png(data, cut):
    good = thumbnail_png(np.arange(784, dtype=np.uint8).reshape(28, 28) % 255)
    for png in (data, good[:cut], good[:cut] + data):
        with Image.open(io.BytesIO(thumbnail_or_placeholder(png, 20)), formats=["PNG"]) as image:
            image.load()


def test_rate_limit_per_visitor_survives_a_restart(tmp_path, mnist, monkeypatch):
    clock = FakeClock(monkeypatch)
    path = tmp_path / "d.db"
    for i in range(RATE_LIMIT_DRAWINGS):
        add_one(DrawingStore(path), mnist, i, visitor="10.0.0.7")
        clock.now += 0.5
    with pytest.raises(DrawingRateLimited, match=r"within 1 minute.*save another in 50 seconds") \
            as refused:
        add_one(DrawingStore(path), mnist, visitor="10.0.0.7")  # a new store: a restart
    assert refused.value.retry_after == pytest.approx(50.0)
    assert isinstance(refused.value, DrawingStoreError)
    add_one(DrawingStore(path), mnist, visitor="10.0.0.8")  # someone else still can
    add_one(DrawingStore(path), mnist)  # as can the server itself (no visitor)
    clock.now += 50.0  # the first drawing has just left the window; the second leaves in 0.5 s
    add_one(DrawingStore(path), mnist, visitor="10.0.0.7")
    with pytest.raises(DrawingRateLimited, match="save another in 1 second"):
        add_one(DrawingStore(path), mnist, visitor="10.0.0.7")
    clock.now += RATE_LIMIT_WINDOW_SECONDS
    add_one(DrawingStore(path), mnist, visitor="10.0.0.7")
    assert DrawingStore(path).count() == RATE_LIMIT_DRAWINGS + 4


def test_the_visitor_address_is_stored_only_as_a_salted_hash(tmp_path, mnist):
    store = DrawingStore(tmp_path / "d.db")
    add_one(store, mnist, visitor="192.168.1.23")
    add_one(store, mnist, visitor="192.168.1.23")
    add_one(store, mnist, visitor="192.168.1.24")
    with pytest.raises(ValueError, match="visitor must be"):
        add_one(store, mnist, visitor=1234)
    assert b"192.168.1.2" not in store.path.read_bytes() + (
        store.path.with_name("d.db-wal").read_bytes() if store.path.with_name("d.db-wal").exists()
        else b"")
    with sqlite3.connect(store.path) as db:
        keys = [r[0] for r in db.execute("SELECT visitor FROM drawings ORDER BY id")]
        salt = db.execute("SELECT value FROM settings WHERE key = 'salt'").fetchone()[0]
    assert keys[0] == keys[1] != keys[2] and len(set(keys)) == 2 and len(salt) == 32


def test_a_full_collection_refuses_with_a_clear_message(tmp_path, mnist, monkeypatch):
    store = DrawingStore(tmp_path / "d.db")
    monkeypatch.setenv("MNIST_MAX_DRAWINGS", "3")
    fill(store, mnist, 3)
    with pytest.raises(DrawingStoreFull, match=r"The class's drawing collection is full \(3 drawings\): "
                                               "the teacher can export and delete them on the Class "
                                               "drawings page."):
        add_one(store, mnist)
    assert store.delete(1)
    add_one(store, mnist)
    monkeypatch.delenv("MNIST_MAX_DRAWINGS")
    assert limits.max_drawings() == 50_000
    monkeypatch.setattr(limits, "MAX_DRAWINGS", 3)
    with pytest.raises(DrawingStoreFull, match=r"full \(3 drawings\)"):
        add_one(store, mnist)


@pytest.mark.parametrize("value", ["lots", "0", "-5", "2.5"])
def test_a_bad_max_drawings_setting_is_a_clear_error(tmp_path, mnist, monkeypatch, value):
    monkeypatch.setenv("MNIST_MAX_DRAWINGS", value)
    with pytest.raises(DrawingStoreError, match="MNIST_MAX_DRAWINGS must be a whole number"):
        add_one(DrawingStore(tmp_path / "d.db"), mnist)


def test_pausing_is_kept_in_the_database_for_every_server(tmp_path, mnist):
    path = tmp_path / "d.db"
    assert DrawingStore(path).collecting()
    add_one(DrawingStore(path), mnist)
    DrawingStore(path).set_collecting(False)
    assert not DrawingStore(path).collecting()
    with pytest.raises(DrawingCollectionPaused, match="The teacher has paused collecting drawings"):
        add_one(DrawingStore(path), mnist, visitor="10.0.0.1")
    with pytest.raises(ValueError, match="True or False"):
        DrawingStore(path).set_collecting("no")
    DrawingStore(path).set_collecting(True)
    add_one(DrawingStore(path), mnist)
    assert DrawingStore(path).collecting() and DrawingStore(path).count() == 2


def test_the_environment_switch_still_turns_collecting_off(tmp_path, mnist, monkeypatch):
    store = DrawingStore(tmp_path / "d.db")
    monkeypatch.setenv("MNIST_COLLECT_DRAWINGS", "0")
    assert not limits.collection_enabled() and not store.collecting()
    with pytest.raises(DrawingCollectionPaused, match="MNIST_COLLECT_DRAWINGS=0"):
        add_one(store, mnist)
    monkeypatch.setenv("MNIST_COLLECT_DRAWINGS", "1")
    add_one(store, mnist)
    assert store.collecting() and store.count() == 1


def test_recent_count_counts_the_last_seconds(tmp_path, mnist, monkeypatch):
    clock = FakeClock(monkeypatch)
    store = DrawingStore(tmp_path / "d.db")
    assert store.recent_count(600) == 0
    add_one(store, mnist)
    clock.now += 300
    add_one(store, mnist)
    add_one(store, mnist)
    clock.now += 301
    assert store.recent_count(600) == 2 and store.recent_count(3600) == 3
    assert store.recent_count(0) == 0 and store.recent_count(-5) == 0
    for bad in ("600", float("nan"), None, True):
        with pytest.raises(ValueError, match="seconds must be a number"):
            store.recent_count(bad)


def test_revision_changes_on_every_add_and_delete(tmp_path, mnist):
    store = DrawingStore(tmp_path / "d.db")
    seen = {store.revision()}
    add_one(store, mnist)
    add_one(store, mnist)
    seen.add(store.revision())
    store.delete(2)
    seen.add(store.revision())
    add_one(store, mnist)  # back to two drawings, but a new id
    seen.add(store.revision())
    assert len(seen) == 4 and store.revision() == (2, 3)


# The version-1 schema exactly as the first release created it.
V1_SCHEMA = """
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


def make_version_1_database(path, mnist, count: int) -> None:
    """A drawings database as version 1 of the app left it."""
    with closing_db(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(V1_SCHEMA)
        db.execute("PRAGMA user_version = 1")
        for i in range(count):
            label = int(mnist.y_valid[i])
            db.execute("INSERT INTO drawings (created, image, raw_png, label, predicted, "
                       "probabilities, run_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (1000.0 + i, mnist.x_valid[i].tobytes(), PNG, label, label,
                        "[" + ", ".join("0.91" if d == label else "0.01" for d in range(10)) + "]",
                        "run-old"))
        db.commit()


def closing_db(path):
    from contextlib import closing

    return closing(sqlite3.connect(path))


def test_a_version_1_database_is_migrated_in_place(tmp_path, mnist):
    path = tmp_path / "drawings.db"
    make_version_1_database(path, mnist, 5)
    store = DrawingStore(path)
    assert store.count() == 5
    old = store.load()
    np.testing.assert_array_equal(old.images, mnist.x_valid[:5])
    assert old.run_ids == ["run-old"] * 5 and old.created[0] == 1000.0
    assert add_one(store, mnist, 5, visitor="10.0.0.9") == 6
    with closing_db(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert db.execute("SELECT count(*) FROM hidden").fetchone()[0] == 0
        columns = [r[1] for r in db.execute("PRAGMA table_info(drawings)")]
        indexes = {r[1] for r in db.execute("PRAGMA index_list(drawings)")}
        assert db.execute("SELECT count(*) FROM settings WHERE key = 'salt'").fetchone()[0] == 1
        visitors = [r[0] for r in db.execute("SELECT visitor FROM drawings ORDER BY id")]
    assert "visitor" in columns and {"drawings_by_visitor", "drawings_by_time"} <= indexes
    assert visitors[:5] == [None] * 5 and visitors[5] is not None
    assert [s.id for s in store.page(0, 3)] == [6, 5, 4] and store.collecting()


def test_a_database_from_a_newer_app_is_refused_clearly(tmp_path):
    path = tmp_path / "drawings.db"
    with closing_db(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(DrawingStoreError, match="made by a newer version of this app"):
        DrawingStore(path).count()


def test_a_hidden_drawing_stays_in_the_data_and_leaves_the_gallery(tmp_path, mnist):
    store = DrawingStore(tmp_path / "drawings.db")
    ids = [add_one(store, mnist, i) for i in range(4)]
    store.hide(ids[1])
    store.hide(ids[1])  # twice is once
    store.hide(999)  # no such drawing: nothing to hide
    assert store.hidden() == {ids[1]}
    assert store.count() == 4 and len(store.load().labels) == 4  # still counted and trained on
    store.hide(ids[1], hidden=False)
    assert store.hidden() == frozenset()
    store.hide(ids[2])
    store.hide(ids[3])
    assert store.show_all() == 2 and store.hidden() == frozenset()
    store.hide(ids[0])
    store.delete(ids[0])
    assert store.hidden() == frozenset()  # a deleted drawing leaves no hidden mark behind
    with pytest.raises(ValueError):
        store.hide("1; DROP TABLE drawings")


def test_a_version_2_database_opened_read_only_has_nothing_hidden(tmp_path, mnist):
    path = tmp_path / "drawings.db"
    make_version_1_database(path, mnist, 3)
    with closing_db(path) as db:  # as version 2 of the app left it, without `hidden`
        db.execute("ALTER TABLE drawings ADD COLUMN visitor TEXT")
        db.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("PRAGMA user_version = 2")
        db.commit()
    path.chmod(0o444)
    try:
        assert DrawingStore(path)._open_for_reading() is not None
        assert DrawingStore(path).hidden() == frozenset()
    finally:
        path.chmod(0o644)
