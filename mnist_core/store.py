"""The model store: the runs in the models folder, which of them are usable, which is current."""

from __future__ import annotations

import json
import logging
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from mnist_core import runs
from mnist_core.config import TrainConfig

log = logging.getLogger(__name__)

USABLE = ("finished", "stopped")  # a stopped run kept its completed epochs
CHOICE = "current.json"  # the run chosen for the Draw page
DRAWINGS_PREFIX = "drawings.db"  # the class's drawings (and SQLite's -wal, -shm) live here too


@dataclass(frozen=True)
class Run:
    """One run folder. `record` is the worker's record.json for usable runs, else None."""

    run_id: str
    path: Path
    status: str  # finished, stopped, running, interrupted, failed
    config: TrainConfig
    record: dict | None = None
    error: str | None = None

    @property
    def usable(self) -> bool:
        return self.record is not None

    @property
    def onnx_path(self) -> Path:
        return self.path / runs.ONNX_FILE

    @property
    def keras_path(self) -> Path:
        return self.path / runs.KERAS_FILE

    @property
    def val_accuracy(self) -> float | None:
        return self.record["evaluation"]["accuracy"] if self.record else None

    def label(self) -> str:
        """A one-line name for pickers: model, settings, accuracy."""
        c = self.config
        text = f"{self.run_id} · {c.model} · {c.epochs} ep · batch {c.batch_size}"
        if self.val_accuracy is not None:
            text += f" · {self.val_accuracy:.2%}"
        if self.status != "finished":
            text += f" · {self.status}"
        return text


@dataclass
class Scan:
    runs: list[Run] = field(default_factory=list)  # newest first, every status
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (entry name, why)

    @property
    def usable(self) -> list[Run]:
        return [run for run in self.runs if run.usable]


class ModelStore:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else runs.models_dir()

    def scan(self) -> Scan:
        """Every run folder, newest first; anything unreadable is skipped with the reason."""
        scan = Scan()
        if not self.root.is_dir():
            return scan
        for entry in sorted(self.root.iterdir(), reverse=True):
            if entry.name.startswith(".") or entry.name == CHOICE or entry.name.startswith(
                    DRAWINGS_PREFIX):
                continue
            try:
                scan.runs.append(self._read_run(entry))
            except SkippedEntry as exc:
                log.warning("models folder: skipped %s: %s", entry.name, exc)
                scan.skipped.append((entry.name, str(exc)))
        return scan

    def get(self, run_id: str) -> Run | None:
        path = self.root / run_id
        if not path.is_dir() or "/" in run_id or run_id.startswith("."):
            return None
        try:
            return self._read_run(path)
        except SkippedEntry:
            return None

    def choose(self, run_id: str) -> None:
        """Make `run_id` the model every visitor's Draw page uses (until a newer run finishes)."""
        runs.atomic_write_json(self.root / CHOICE, {"run_id": run_id, "t": time.time()})

    def chosen(self) -> tuple[str | None, float]:
        try:
            choice = json.loads((self.root / CHOICE).read_text())
            return str(choice["run_id"]), float(choice["t"])
        except (OSError, ValueError, KeyError, TypeError):
            return None, 0.0

    def current(self, scan: Scan | None = None) -> Run | None:
        """The run Draw uses: the chosen one, unless a run finished after it was chosen.

        Without a choice: the newest finished run, else the newest stopped one.
        """
        usable = (scan or self.scan()).usable
        chosen, chosen_at = self.chosen()
        newest = next((run for run in usable if run.status == "finished"), None) or next(
            iter(usable), None)
        for run in usable:
            if run.run_id == chosen:
                if newest is not None and newest.record["finished"] > chosen_at:
                    return newest
                return run
        return newest

    def _read_run(self, path: Path) -> Run:
        if not path.is_dir():
            raise SkippedEntry("not a run folder")
        try:
            spec = json.loads((path / runs.CONFIG).read_text())
            config = TrainConfig.from_dict(spec)
        except FileNotFoundError:
            raise SkippedEntry("no config.json") from None
        except (ValueError, TypeError) as exc:
            raise SkippedEntry(f"config.json unreadable ({exc})") from None
        record_path = path / runs.RECORD
        if record_path.exists():
            record = _read_record(record_path)
            for name in (runs.KERAS_FILE, runs.ONNX_FILE):
                if not (path / name).is_file():
                    raise SkippedEntry(f"record.json without its {name}")
            if not zipfile.is_zipfile(path / runs.KERAS_FILE):
                raise SkippedEntry(f"{runs.KERAS_FILE} is corrupt (not a Keras zip archive)")
            if (path / runs.ONNX_FILE).stat().st_size == 0:
                raise SkippedEntry(f"{runs.ONNX_FILE} is empty")
            return Run(path.name, path, record["status"], config, record=record)
        status, error = _unfinished_status(path)
        return Run(path.name, path, status, config, error=error)


class SkippedEntry(Exception):
    pass


def _read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except ValueError as exc:
        raise SkippedEntry(f"record.json is corrupt ({exc})") from None
    if not isinstance(record, dict) or record.get("status") not in USABLE:
        raise SkippedEntry("record.json is not a training record")
    if not isinstance(record.get("evaluation"), dict) or "accuracy" not in record["evaluation"]:
        raise SkippedEntry("record.json has no evaluation")
    return record


def _unfinished_status(path: Path) -> tuple[str, str | None]:
    """(status, error) of a run with no record: running, failed, stopped or interrupted."""
    last_error, ended, interrupted = None, False, None
    for event in runs.EventReader(path / runs.METRICS).read_new():
        if event.get("event") == "error":
            last_error = event.get("message")
        elif event.get("event") == "interrupted":
            interrupted = event.get("message")
        elif event.get("event") == "end":
            ended = True
    if interrupted:
        return "interrupted", interrupted
    if last_error:
        return "failed", last_error
    if ended:
        return "stopped", "stopped before the first epoch ended: nothing was saved"
    try:
        pid = json.loads((path / runs.WORKER).read_text())["pid"]
    except (OSError, ValueError, KeyError, TypeError):
        pid = None
    if pid is not None and runs.pid_alive(pid) and _is_worker(pid, path):
        return "running", None
    return "interrupted", "the training process ended before saving a model"


def _is_worker(pid: int, path: Path) -> bool:
    """The pid is this run's worker (not a recycled pid of something else)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the pid
    return b"mnist_core.worker" in cmdline and str(path).encode() in cmdline
