"""The runs in the models folder: which of them are usable, and which one Draw uses."""

from __future__ import annotations

import json
import logging
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from mnist_core.config import TrainConfig
from mnist_core.runs import folder
from mnist_core.runs.lease import TrainingLease
from mnist_core.runs.record import RecordError, RunRecord, Status, read_config, read_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """One run folder. `record` is set for saved runs (finished or stopped), else None;
    `error` says why a run failed, was interrupted or is unreadable."""

    run_id: str
    path: Path
    status: Status
    config: TrainConfig | None  # None only when config.json itself is unreadable
    record: RunRecord | None = None
    error: str | None = None

    @property
    def usable(self) -> bool:
        return self.record is not None

    @property
    def onnx_path(self) -> Path:
        return self.path / folder.ONNX_FILE

    @property
    def keras_path(self) -> Path:
        return self.path / folder.KERAS_FILE

    @property
    def val_accuracy(self) -> float | None:
        return self.record.evaluation.accuracy if self.record else None

    def table_row(self) -> dict:
        """One row of the Train page's table of saved runs."""
        r, c = self.record, self.config
        return {
            "run": self.run_id, "status": self.status, "model": c.model,
            "epochs": r.epochs_completed, "batch": c.batch_size, "optimizer": c.optimizer,
            "learning rate": c.learning_rate, "images": c.train_size,
            "val accuracy": r.evaluation.accuracy, "seconds": round(r.fit_seconds, 1),
            "device": r.device_kind, "fine-tuned from": r.parent or "",
        }

    def label(self) -> str:
        """A one-line name for pickers: model, settings, accuracy."""
        if self.config is None:
            return f"{self.run_id} · {self.status}"
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

    @property
    def unreadable(self) -> list[Run]:
        return [run for run in self.runs if run.status == "unreadable"]


class ModelStore:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else folder.models_dir()
        self.lease = TrainingLease(self.root)

    def scan(self) -> Scan:
        """Every run folder, newest first. A run whose files cannot be read is listed as
        unreadable with the reason; other entries are skipped with the reason."""
        scan = Scan()
        if not self.root.is_dir():
            return scan
        live = self.lease.current()
        for entry in sorted(self.root.iterdir(), reverse=True):
            if entry.name.startswith(".") or entry.name in folder.NOT_RUNS:
                continue
            if not (entry.is_dir() and folder.is_run_id(entry.name)):
                scan.skipped.append((entry.name, "not a run folder"))
                continue
            run = self._read_run(entry, live_id=live.run_id if live else None)
            if run.status == "unreadable":
                log.warning("models folder: run %s is %s", run.run_id, run.error)
            scan.runs.append(run)
        return scan

    def get(self, run_id: str) -> Run | None:
        """The run with this id, or None (also for anything that is not a run id)."""
        if not folder.is_run_id(run_id) or not (self.root / run_id).is_dir():
            return None
        live = self.lease.current()
        return self._read_run(self.root / run_id, live_id=live.run_id if live else None)

    def choose(self, run_id: str) -> None:
        """Make `run_id` the model every visitor's Draw page uses (until a newer run finishes)."""
        folder.atomic_write_json(self.root / folder.CHOICE, {"run_id": run_id, "t": time.time()})

    def chosen(self) -> tuple[str | None, float]:
        try:
            choice = json.loads((self.root / folder.CHOICE).read_text())
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
                if newest is not None and newest.record.finished > chosen_at:
                    return newest
                return run
        return newest

    @staticmethod
    def _read_run(path: Path, live_id: str | None) -> Run:
        try:
            config = read_config(path / folder.CONFIG)
        except RecordError as exc:
            return Run(path.name, path, "unreadable", None, error=f"unreadable: {exc}")
        try:
            record = _read_saved(path)
        except RecordError as exc:
            return Run(path.name, path, "unreadable", config, error=f"unreadable: {exc}")
        status, why = folder.run_status(
            record=record, live=path.name == live_id,
            stop_requested=(path / folder.STOP).exists(),
            events=folder.read_summary(path), outcome=folder.read_outcome(path))
        return Run(path.name, path, status, config, record=record, error=why)


def _read_saved(path: Path) -> RunRecord | None:
    """The record of a saved run, checked against the model files it promises; None when
    the run has no record (it never saved)."""
    if not (path / folder.RECORD).exists():
        return None
    record = read_record(path / folder.RECORD)
    for name in (folder.KERAS_FILE, folder.ONNX_FILE):
        if not (path / name).is_file():
            raise RecordError(f"record.json without its {name}")
    if not zipfile.is_zipfile(path / folder.KERAS_FILE):
        raise RecordError(f"{folder.KERAS_FILE} is corrupt (not a Keras zip archive)")
    if (path / folder.ONNX_FILE).stat().st_size == 0:
        raise RecordError(f"{folder.ONNX_FILE} is empty")
    return record
