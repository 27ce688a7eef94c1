"""A read-only or full drawings database or folder: one clear DrawingStoreError when saving,
reading goes on. The faults are injected (CI runs as root, so permissions prove nothing)."""

from __future__ import annotations

import errno
import os
import sqlite3
import zipfile
from contextlib import closing

import numpy as np
import pytest

from mnist_core.drawings import DrawingStore, DrawingStoreError, export_idx_zip, export_npz
from tests.test_drawings import (
    PNG,
    add_one,
    fill,
    make_version_1_database,
    probabilities_for,
)

pytestmark = pytest.mark.unit

READ_ONLY = ("attempt to write a readonly database", "is read-only: new drawings cannot be saved")
FULL = ("database or disk is full", "is full: new drawings cannot be saved")
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "ALTER", "CREATE")
REAL_CONNECT = sqlite3.connect


class FaultyConnection(sqlite3.Connection):
    """A real connection whose writing statements fail as a read-only or full disk makes them."""

    fault: str | None = None

    def execute(self, sql, *args):
        if self.fault and sql.lstrip().upper().startswith(WRITES):
            raise sqlite3.OperationalError(self.fault)
        return super().execute(sql, *args)


def inject_write_fault(monkeypatch, message: str) -> None:
    """Every statement that writes to a database file fails with `message`."""
    def connect(database, *args, **kwargs):
        db = REAL_CONNECT(database, *args, factory=FaultyConnection, **kwargs)
        db.fault = None if database == ":memory:" else message
        return db

    monkeypatch.setattr(sqlite3, "connect", connect)


def refuse_read_write_opening(monkeypatch, message: str = READ_ONLY[0], also: str = "") -> None:
    """Opening the file for writing fails (as on read-only media); URIs containing `also`
    fail too; other read-only URIs reach the real SQLite."""
    def connect(database, *args, uri=False, **kwargs):
        if not uri or (also and also in str(database)):
            raise sqlite3.OperationalError(message)
        return REAL_CONNECT(database, *args, uri=uri, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)


def every_read_works(store: DrawingStore, count: int) -> None:
    assert store.count() == count and len(store.load()) == count
    assert len(store.page(0, 10)) == min(count, 10) and store.recent_count(1e10) == count
    assert store.collecting() and store.revision()[0] == count
    if count:
        assert store.thumbnail(store.page(0, 1)[0].id) is not None


@pytest.mark.parametrize("fault", [READ_ONLY, FULL], ids=["read-only", "full"])
def test_a_write_fault_is_one_clear_error_and_reading_goes_on(tmp_path, mnist, monkeypatch, fault):
    store = DrawingStore(tmp_path / "drawings.db")
    fill(store, mnist, 4)
    inject_write_fault(monkeypatch, fault[0])
    writes = [lambda: add_one(store, mnist), lambda: store.set_collecting(False),
              lambda: store.delete(1), store.delete_all]
    for write in writes:
        with pytest.raises(DrawingStoreError, match=fault[1]) as refused:
            write()
        message = str(refused.value)
        assert str(store.path) in message and fault[0] in message
        assert refused.value.__cause__ is None and refused.value.__suppress_context__
    every_read_works(store, 4)
    monkeypatch.undo()
    every_read_works(store, 4)


def test_a_database_that_cannot_be_written_is_read_with_mode_ro_and_its_wal(tmp_path, mnist,
                                                                            monkeypatch):
    store = DrawingStore(tmp_path / "drawings.db")
    with closing(sqlite3.connect(store.path)) as holder:  # keeps the -wal file and its rows
        fill(store, mnist, 3)
        holder.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # 3 rows in the main file ...
        fill(store, mnist, 2, start=3)  # ... and 2 only in the -wal file
        wal = store.path.with_name("drawings.db-wal")
        assert wal.exists() and wal.stat().st_size > 0
        refuse_read_write_opening(monkeypatch)
        every_read_works(store, 5)  # mode=ro reads the -wal file too
        np.testing.assert_array_equal(store.load().images, mnist.x_valid[:5])
        with pytest.raises(DrawingStoreError, match=f"The drawings database {store.path} is "
                                                    "read-only: new drawings cannot be saved"):
            add_one(store, mnist)
        # Where even mode=ro fails (WAL's -shm cannot be made on read-only media), immutable=1
        # reads the main file alone: the drawings not yet checkpointed are not seen.
        refuse_read_write_opening(monkeypatch, "unable to open database file", also="mode=ro")
        assert store.count() == 3 and [s.id for s in store.page(0, 10)] == [3, 2, 1]
        with pytest.raises(DrawingStoreError, match="cannot open the drawings database"):
            add_one(store, mnist)
        monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)  # a read-only folder
        with pytest.raises(DrawingStoreError, match="is read-only: new drawings cannot be saved"):
            add_one(store, mnist)
        monkeypatch.undo()
    assert store.count() == 5


def test_a_version_1_database_that_cannot_be_migrated_is_still_read(tmp_path, mnist, monkeypatch):
    path = tmp_path / "drawings.db"
    make_version_1_database(path, mnist, 4)
    store = DrawingStore(path)
    inject_write_fault(monkeypatch, FULL[0])
    every_read_works(store, 4)  # read-only, as version 1: no settings table, collecting is on
    with pytest.raises(DrawingStoreError, match=FULL[1]):
        add_one(store, mnist, visitor="10.0.0.1")
    refuse_read_write_opening(monkeypatch)
    every_read_works(store, 4)
    monkeypatch.undo()
    assert add_one(store, mnist, visitor="10.0.0.1") == 5


@pytest.mark.parametrize(("code", "expected"), [
    (errno.EROFS, "is read-only: new drawings cannot be saved"),
    (errno.EACCES, "is read-only: new drawings cannot be saved"),
    (errno.ENOSPC, "is full: new drawings cannot be saved"),
    (errno.EIO, "cannot be used"),
], ids=["EROFS", "EACCES", "ENOSPC", "EIO"])
def test_a_folder_that_cannot_be_made_is_one_clear_error(tmp_path, mnist, monkeypatch, code,
                                                         expected):
    store = DrawingStore(tmp_path / "new" / "drawings.db")

    def mkdir(path, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(os, "mkdir", mkdir)
    with pytest.raises(DrawingStoreError, match=expected) as refused:
        add_one(store, mnist)
    assert str(store.path) in str(refused.value)
    with pytest.raises(DrawingStoreError, match=expected):
        store.set_collecting(False)
    every_read_works(store, 0)  # nothing saved yet, and looking creates nothing
    assert not store.path.parent.exists()


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), MemoryError()],
                         ids=["ENOSPC", "memory"])
def test_an_export_that_cannot_be_built_is_a_clear_error(tmp_path, mnist, monkeypatch, error):
    store = DrawingStore(tmp_path / "drawings.db")
    fill(store, mnist, 5)
    drawings = store.load()

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(np, "savez_compressed", fail)
    monkeypatch.setattr(np, "savez", fail)
    monkeypatch.setattr(zipfile.ZipFile, "writestr", fail)
    for export, name in [(export_npz, "mnist.npz"), (export_idx_zip, "IDX files"),
                         (lambda d: d.to_npz(), "drawings.npz")]:
        with pytest.raises(DrawingStoreError, match=f"could not be exported as {name}"):
            export(drawings)
    monkeypatch.undo()
    assert export_npz(drawings) and export_idx_zip(drawings) and drawings.to_npz()


def test_a_damaged_row_does_not_break_reading(tmp_path, mnist):
    store = DrawingStore(tmp_path / "drawings.db")
    store.add(mnist.x_valid[0], PNG, 7, probabilities_for(7), "run-a")
    with closing(sqlite3.connect(store.path)) as db, db:
        db.execute("UPDATE drawings SET probabilities = 'not json', raw_png = X'00'")
    summary = store.page(0, 1)[0]
    assert summary.label == 7 and np.isnan(summary.confidence)
    assert np.isnan(store.load().probabilities).all()
    assert store.thumbnail(summary.id).startswith(b"\x89PNG")
