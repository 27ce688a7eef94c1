"""The models folder on disk: its layout, atomic writes, events, and a run's status.

    <models dir>/
        training.lock       held (OS file lock) by the worker that trains, for its whole life
        training.json       the lease: who trains (pid, start, run id, config); see lease.py
        start.lock          held for a moment by whoever starts a training
        probe.lock          held for a moment by a server asking "is a training running?"
                            where the OS has no shared locks (Windows)
        current.json        the run the teacher chose for the Draw page, pinned or not
        drawings.db         the class's labelled drawings (SQLite; -wal and -shm beside it)
        .<run id>/          a run being prepared; renamed to <run id>/ by its worker
        .deleted-<run id>-* a run being deleted: renamed first, so no reader sees half of it
        <run id>/
            config.json     TrainConfig, written by whoever starts the run
            worker.log      the worker's stdout and stderr
            drawings.npz    a fine-tune's copy of the class's drawings, taken when it starts
            metrics.jsonl   the worker's events, one JSON object a line (record.py)
            stop            written by any server: please stop after the current batch
            outcome.json    written by the server that started the worker when it died
                            without saying why, or by whichever server killed it as hung
            model.keras     the trained model (float32), for Keras: fine-tuning, export
            model.onnx      the same model, for serving with ONNX Runtime
            weights.npz     every layer's weights, for the Inside page (not in older runs)
            snapshots/      taken while training, for the Inside page (mnist_core.inside):
                step-NNNNNNN.npz  the network after that many batches
                sample.npz        the fixed validation images every snapshot predicts
                start.npz         the first layer's weights before training
            record.json     written last by the worker: the run was saved

Every name above is a constant of this module: whoever writes or reads a run's files (the
worker, the store, the Inside page) names them from here.

The worker alone writes its events, models and record; servers write only the requests and
verdicts listed above, each in its own file. Every file but metrics.jsonl is written to a
temporary name and renamed, so a reader never sees half a file; a temporary file left by a
killed writer is removed by the next start (`remove_temporary`). A run's status is decided
by `run_status` alone. Locks are OS file locks: reliable on a local disk, not on network
shares (NFS, SMB).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mnist_core import platform_os
from mnist_core.config import TrainConfig
from mnist_core.runs.events import EventSummary
from mnist_core.runs.record import (
    RecordError,
    RunRecord,
    Status,
    parse_fields,
    read_json,
)

log = logging.getLogger(__name__)

REPO_DIR = Path(__file__).resolve().parents[2]
DEFAULT_MODELS_DIR = REPO_DIR / "models"

# In a run folder
CONFIG = "config.json"
METRICS = "metrics.jsonl"  # the events, one a line (mnist_core.runs.events)
WORKER_LOG = "worker.log"
DRAWINGS = "drawings.npz"
STOP = "stop"
OUTCOME = "outcome.json"
KERAS_FILE = "model.keras"
ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "weights.npz"
SNAPSHOTS_DIR = "snapshots"
RECORD = "record.json"

# In a run's snapshots folder
SAMPLE_FILE = "sample.npz"
START_FILE = "start.npz"
SNAPSHOT_PATTERN = re.compile(r"^step-(\d{1,9})\.npz$")  # see snapshot_name

# In the models folder
LEASE_LOCK = "training.lock"
LEASE = "training.json"
START_LOCK = "start.lock"
PROBE_LOCK = "probe.lock"
CHOICE = "current.json"
DRAWINGS_DB = "drawings.db"
NOT_RUNS = (LEASE_LOCK, LEASE, START_LOCK, PROBE_LOCK, CHOICE, DRAWINGS_DB, f"{DRAWINGS_DB}-wal",
            f"{DRAWINGS_DB}-shm", f"{DRAWINGS_DB}-journal")

RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{4}")
NOTHING_SAVED = "stopped before the first epoch ended: nothing was saved"
ENDED_UNSAVED = "the training process ended before saving a model"
RECORD_LOST = f"unreadable: no {RECORD}, though {METRICS} says the model was saved"
DELETED_PREFIX = ".deleted-"  # a run folder being deleted: renamed first, then removed
TEMPORARY_MAX_AGE = 60.0  # seconds: an older temporary file's writer was killed mid-write
FILE_MODE = 0o644  # what every server's user may read


def models_dir() -> Path:
    """Where runs are kept: `MNIST_MODELS_DIR`, default `models/` in the repository."""
    return Path(os.environ.get("MNIST_MODELS_DIR") or DEFAULT_MODELS_DIR).expanduser()


READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def cannot_write(root: Path, exc: OSError, what: str) -> str:
    """What a teacher reads when the models folder refuses a write: what, where, how to fix."""
    if isinstance(exc, platform_os.FileLocked):
        return f"{exc.strerror}, so {what}."
    if exc.errno in READ_ONLY_ERRNOS:
        return (f"The models folder {root} is read-only, so {what}. Saved models still work on "
                "Draw. To fix it, make the folder writable, or start the app with "
                "MNIST_MODELS_DIR pointing at a writable folder.")
    if exc.errno in FULL_ERRNOS:
        return (f"The disk holding the models folder {root} is full, so {what}. Free some "
                "space on it (the Train page can delete old runs), or start the app with "
                "MNIST_MODELS_DIR on another disk.")
    return f"The models folder {root} cannot be written ({exc.strerror or exc}), so {what}."


def new_run_id(now: float | None = None) -> str:
    """Sortable by time, unique within a folder: 20261123-203512-4f2a."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"{stamp}-{os.urandom(2).hex()}"


def is_run_id(name: str) -> bool:
    return RUN_ID.fullmatch(name) is not None


def snapshot_name(step: int) -> str:
    """The snapshots folder's file of the network after `step` batches: step-0000016.npz."""
    return f"step-{step:07d}.npz"


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Write `data` to a temporary name beside `path`, then rename it: a reader sees the old
    file or the new one, never half. `durable=False` skips the fsync, for files rewritten
    every few seconds whose loss in a power cut costs nothing (serving.presence).
    platform_os.FileLocked when another program keeps `path` open (Windows) for too long."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # POSIX: mkstemp's 0600 would hide it from other users
            os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        platform_os.replace(Path(tmp), path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, value) -> None:
    atomic_write_bytes(path, json.dumps(value, indent=1).encode("utf-8"))


def prepare_run(root: Path, config: TrainConfig, drawings_npz: bytes | None = None) -> Path:
    """A new run folder under its hidden name `.<run id>`, holding config.json (and the
    fine-tune's drawings). Its worker renames it to `<run id>` once it holds the lease, so a
    visible run folder always has its config and a worker that started."""
    run_id = new_run_id()
    prepared = root / f".{run_id}"
    prepared.mkdir(parents=True)
    try:
        atomic_write_json(prepared / CONFIG, config.to_dict())
        if drawings_npz is not None:
            atomic_write_bytes(prepared / DRAWINGS, drawings_npz)
    except BaseException:
        shutil.rmtree(prepared, ignore_errors=True)
        raise
    return prepared


def remove_abandoned(root: Path) -> list[str]:
    """Remove `.<run id>` folders whose worker never started or died before renaming them.
    Only safe under start.lock with no training running (the starter's situation)."""
    removed = []
    for entry in root.iterdir():
        if entry.name.startswith(".") and is_run_id(entry.name[1:]) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    if removed:
        log.warning("Removed run folders abandoned while being prepared: %s", ", ".join(removed))
    return removed


def is_temporary(name: str) -> bool:
    """A file name an atomic write uses before its rename: `.<name>.<random>.tmp`
    (atomic_write_bytes, write_npz_atomically) or `.tmp-<pid>.keras|onnx` (fit.save_model)."""
    return name.startswith(".") and (name.endswith(".tmp") or name.startswith(".tmp-"))


def remove_temporary(root: Path, older_than: float = TEMPORARY_MAX_AGE) -> list[str]:
    """Remove what killed writers left: temporary files of atomic writes (in the models folder,
    its run folders and their snapshots) and run folders half deleted. Only files older than
    `older_than` seconds, so a write under way elsewhere keeps its file; only safe with no
    training running (the starter's situation). Returns the paths removed, relative to root."""
    removed = []
    cutoff = time.time() - older_than

    def sweep(directory: Path, depth: int) -> None:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                    continue
                if depth == 0 and entry.name.startswith(DELETED_PREFIX):
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
                elif is_temporary(entry.name) and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                else:
                    continue
                removed.append(str(Path(entry.path).relative_to(root)))
            except OSError:
                continue  # gone meanwhile, or not ours to remove: the next start tries again

    sweep(root, 0)
    for run_dir in _run_dirs(root):
        sweep(run_dir, 1)
        sweep(run_dir / SNAPSHOTS_DIR, 2)
    if removed:
        log.warning("Removed files left by interrupted writes: %s", ", ".join(sorted(removed)))
    return removed


def _run_dirs(root: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(root)
                if is_run_id(e.name) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


@dataclass(frozen=True)
class Outcome:
    """A supervisor's verdict on a worker that ended without saying why, or was killed."""

    status: str  # failed or interrupted
    message: str
    t: float


def write_outcome(run_dir: Path, status: str, message: str) -> None:
    """The supervisor's verdict, into an existing run folder only (never creates one)."""
    if run_dir.is_dir():
        atomic_write_json(run_dir / OUTCOME,
                          {"status": status, "message": message, "t": time.time()})


def read_outcome(run_dir: Path) -> Outcome | None:
    if not (run_dir / OUTCOME).exists():
        return None
    try:
        outcome = parse_fields(Outcome, read_json(run_dir / OUTCOME), OUTCOME)
    except RecordError as exc:
        return Outcome("failed", f"{exc}", 0.0)
    return outcome if outcome.status in ("failed", "interrupted") else None


def run_status(*, record: RunRecord | None, live: bool, stop_requested: bool,
               events: EventSummary, outcome: Outcome | None) -> tuple[Status, str | None]:
    """The one place a run's status is decided: (status, why it ended that way).

    live: a worker holds the lease for this run right now (see lease.py).
    """
    if record is not None:
        return record.status, None
    if live:
        if stop_requested:
            return "stopping", None
        return ("running" if events.started else "starting"), None
    if events.end is not None and events.end.saved:
        return "unreadable", RECORD_LOST  # the worker wrote it before that event: it was lost
    if outcome is not None:
        return outcome.status, outcome.message
    if events.error is not None:
        return "failed", events.error
    if events.end is not None:
        return "stopped", NOTHING_SAVED
    return "interrupted", ENDED_UNSAVED


def log_tail(run_dir: Path, lines: int = 15) -> str:
    """The last lines of the worker's output, for a failure message."""
    try:
        with open(run_dir / WORKER_LOG, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 16384, 0))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    useful = [line for line in text.splitlines() if line.strip()]
    return "\n".join(useful[-lines:])


def stat_key(path: Path) -> tuple | None:
    """What changes whenever a file is replaced (atomic writes give it a new inode) or
    rewritten; None for a missing file."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return ("error", exc.errno)
    return stat.st_ino, stat.st_mtime_ns, stat.st_size, stat.st_mode
