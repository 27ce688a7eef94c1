"""The drawings database's tables, how an older one is brought up to date, and how it is opened.

One connection per call keeps the store safe from any number of Streamlit threads; WAL mode
lets readers go on while someone writes, and the busy timeout queues concurrent writers
instead of failing them. When the database cannot be opened for writing it is opened
read-only, so the drawings can still be viewed and only saving fails.
"""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path

from mnist_core.data import NUM_PIXELS

SCHEMA_VERSION = 3
BUSY_TIMEOUT_SECONDS = 30
SALT_HEX_BYTES = 16  # the visitor hashes' salt: 128 random bits
SALT = "salt"  # its key in the settings table

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
    # Drawings the teacher hid from the projected gallery: kept, counted and trained on.
    3: ("CREATE TABLE IF NOT EXISTS hidden (id INTEGER PRIMARY KEY)",),
}


def open_read_write(path: Path) -> sqlite3.Connection:
    """A connection to `path` whose schema is this app's (created or migrated if need be)."""
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS)
    try:
        _ensure_schema(db)
    except BaseException:
        db.close()
        raise
    return db


def open_read_only(path: Path) -> sqlite3.Connection:
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
            return empty_database()  # an empty file: nothing saved yet
        return db
    assert error is not None
    raise error


def empty_database() -> sqlite3.Connection:
    """An in-memory database with the schema and no drawings."""
    db = sqlite3.connect(":memory:")
    _migrate(db, 0)
    db.commit()
    return db


def setting(db: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
    """A value of the settings table (shared by every server process), or `default`."""
    # A version-1 database opened read-only has no settings table: everything is default.
    if not has_table(db, "settings"):
        return default
    row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return row[0] if row else default


def has_table(db: sqlite3.Connection, name: str) -> bool:
    """Whether the database has this table (an older one opened read-only may not)."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                      (name,)).fetchone() is not None


def new_salt() -> str:
    return secrets.token_hex(SALT_HEX_BYTES)


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
    db.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (SALT, new_salt()))
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _user_version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]
