"""The runs in the models folder: which of them are usable, and which one Draw uses.

The Draw model follows one rule (`ModelStore.current_choice`), computed from the files alone
(current.json and each record's finish time), so every server agrees and nothing has to be
written when a training ends:

1. A run the teacher pinned stays the Draw model until it is unpinned.
2. Else a healthy run started from the Train page, or by Draw's "Train the default model",
   becomes the Draw model when it finishes: the class's live demo. It replaces the teacher's
   choice when it finished after that choice.
3. Else the run the teacher chose.
4. Else, when no model was chosen: the newest healthy run (finished before stopped), such as a
   model trained with the CLI before class.

So a CLI run or a fine-tune never replaces the Draw model by itself: the teacher chooses it.
A run that is not healthy (`Run.unhealthy`: a loss or accuracy that is not a number, or a
validation accuracy below HEALTHY_ACCURACY, near chance) never becomes the Draw model by
itself. The teacher may still choose or pin one whose numbers are finite (to show what a
barely trained network does); `choose` refuses one whose numbers are not (its predictions
are no use), and a choice naming a run that is gone or unusable counts as no choice.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mnist_core import platform_os
from mnist_core.config import TrainConfig
from mnist_core.runs import events, folder
from mnist_core.runs.lease import TrainingLease
from mnist_core.runs.record import (
    ACTIVE_STATUSES,
    RecordError,
    RunRecord,
    Status,
    parse_fields,
    read_config,
    read_json,
    read_record,
    require,
)
from mnist_core.runs.saved import check_saved_files

log = logging.getLogger(__name__)

HEALTHY_ACCURACY = 0.5  # validation accuracy below this is near chance (0.1): not a model to show
KEEP_FAILED_RUNS = 10  # runs without a model that `prune` keeps, newest first
PINNED = "pinned by the teacher"
CHOSEN = "chosen by the teacher"
NEWEST = "the newest healthy run (no model chosen yet)"
NONE_YET = "no healthy saved run yet"
LIVE_DEMO = {  # the origins whose runs become the Draw model when they finish, and why
    "train_page": "the newest training from the Train page",
    "draw_page": "the newest training from the Draw page (Train the default model)",
}
# The files whose contents decide a run's record; their stats key the parsed-record cache.
SIGNED_FILES = (folder.CONFIG, folder.RECORD, folder.KERAS_FILE, folder.ONNX_FILE, folder.WEIGHTS_FILE)


class ActionRefused(ValueError):
    """A teacher's action on the runs that cannot be done; the message says why."""


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
    def origin(self) -> str:
        """Who started it (mnist_core.config.ORIGINS)."""
        return self.config.origin if self.config is not None else "cli"

    @property
    def unhealthy(self) -> str | None:
        """Why this run must not become the Draw model by itself, or None when it is healthy."""
        if self.record is None:
            return "it has no saved model"
        if not self.record.finite:
            return "its loss or accuracy is not a number (the training diverged)"
        if self.record.evaluation.accuracy < HEALTHY_ACCURACY:
            return f"its validation accuracy, {self.record.evaluation.accuracy:.1%}, is near chance"
        return None

    @property
    def healthy(self) -> bool:
        return self.unhealthy is None

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


@dataclass(frozen=True)
class Choice:
    """current.json: the run the teacher chose for the Draw page."""

    run_id: str
    t: float  # unix time of the choice
    pinned: bool = False  # kept even when a training from the Train page finishes later


def parse_choice(values, where: str = folder.CHOICE) -> Choice:
    choice = require(parse_fields(Choice, values, where), where, finite=("t",))
    if not folder.is_run_id(choice.run_id):
        raise RecordError(f"{where}: run_id must be a run id, got {choice.run_id!r}")
    return choice


@dataclass(frozen=True)
class CurrentModel:
    """The run every visitor's Draw page uses, and why, in words for the teacher."""

    run: Run | None  # None: no run can be the Draw model (why: NONE_YET)
    why: str  # PINNED, CHOSEN, NEWEST, NONE_YET or one of LIVE_DEMO's sentences
    pinned: bool = False


@dataclass(frozen=True)
class _Parsed:
    """What a run's files say, independent of any training: its config, its record (saved
    runs) or why they cannot be read."""

    config: TrainConfig | None
    record: RunRecord | None
    error: str | None


class ModelStore:
    """Reads the models folder; chooses, deletes and prunes runs. Shared by every visitor of a
    server: the only state it keeps is a cache of parsed records, keyed by their files' stats."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else folder.models_dir()
        self.lease = TrainingLease(self.root)
        self._lock = threading.Lock()
        self._parsed: dict[Path, tuple[tuple, _Parsed]] = {}  # run folder -> (stats, parsed)
        self._ignored_choice: tuple | None = None

    # Reading

    def scan(self) -> Scan:
        """Every run folder, newest first. A run whose files cannot be read is listed as
        unreadable with the reason; other entries are skipped with the reason. A saved run
        whose files did not change since the last scan costs a few stats, no reads."""
        scan = Scan()
        if not self.root.is_dir():
            return scan
        live = self.lease.current()
        seen = set()
        for entry in sorted(self.root.iterdir(), reverse=True):
            if entry.name.startswith(".") or entry.name in folder.NOT_RUNS:
                continue
            if not (entry.is_dir() and folder.is_run_id(entry.name)):
                scan.skipped.append((entry.name, "not a run folder"))
                continue
            seen.add(entry)
            scan.runs.append(self._read_run(entry, live_id=live.run_id if live else None))
        with self._lock:  # forget deleted runs: the cache never outgrows the folder
            self._parsed = {path: value for path, value in self._parsed.items() if path in seen}
        return scan

    def get(self, run_id: str) -> Run | None:
        """The run with this id, or None (also for anything that is not a run id)."""
        if not isinstance(run_id, str) or not folder.is_run_id(run_id):
            return None
        if not (self.root / run_id).is_dir():
            return None
        live = self.lease.current()
        return self._read_run(self.root / run_id, live_id=live.run_id if live else None)

    # The Draw model

    def choice(self) -> Choice | None:
        """current.json as the teacher wrote it; None when there is none or it is junk."""
        path = self.root / folder.CHOICE
        if not path.exists():
            return None
        try:
            return parse_choice(read_json(path))
        except RecordError as exc:
            try:
                stat = path.stat()
                version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            except OSError:
                version = None
            if version != self._ignored_choice:  # once per version of the file
                self._ignored_choice = version
                log.warning("models folder: ignoring %s (no model chosen): %s", folder.CHOICE, exc)
            return None

    def choose(self, run_id: str, pinned: bool = False) -> None:
        """Make `run_id` the model every visitor's Draw page uses. Unpinned, a training that
        finishes later from the Train page replaces it; pinned, nothing does until `unpin`.
        ActionRefused for a run without a usable model or whose numbers are not finite."""
        run = self.get(run_id)
        if run is None or not run.usable:
            raise ActionRefused(f"Run {run_id!r} has no saved model to use on the Draw page.")
        if not run.record.finite:
            raise ActionRefused(f"Run {run_id} cannot be the Draw model: {run.unhealthy}.")
        folder.atomic_write_json(self.root / folder.CHOICE,
                                 {"run_id": run_id, "t": time.time(), "pinned": bool(pinned)})

    def unpin(self) -> None:
        """Keep the pinned run as the teacher's choice, unpinned from now on: the next
        training that finishes from the Train page replaces it (earlier ones do not)."""
        choice = self.choice()
        if choice is not None and choice.pinned:
            folder.atomic_write_json(self.root / folder.CHOICE,
                                     {"run_id": choice.run_id, "t": time.time(), "pinned": False})

    def current(self, scan: Scan | None = None) -> Run | None:
        """The run Draw uses (see the module docstring), or None when no run can be."""
        return self.current_choice(scan).run

    def current_choice(self, scan: Scan | None = None) -> CurrentModel:
        """The run Draw uses and why, by the rule of the module docstring."""
        usable = (self.scan() if scan is None else scan).usable
        choice = self.choice()
        chosen = next((run for run in usable if choice is not None and run.run_id == choice.run_id
                       and run.record.finite), None)
        if chosen is not None and choice.pinned:
            return CurrentModel(chosen, PINNED, pinned=True)
        demo = max((run for run in usable if run.status == "finished" and run.healthy
                    and run.origin in LIVE_DEMO), key=lambda run: run.record.finished, default=None)
        if demo is not None and (chosen is None or demo.record.finished > choice.t):
            return CurrentModel(demo, LIVE_DEMO[demo.origin])
        if chosen is not None:
            return CurrentModel(chosen, CHOSEN)
        healthy = [run for run in usable if run.healthy]
        newest = next((run for run in healthy if run.status == "finished"), None) or next(
            iter(healthy), None)
        return CurrentModel(newest, NEWEST if newest is not None else NONE_YET)

    # Bounded growth

    def delete(self, run_id: str) -> bool:
        """Delete a run's folder; False when there is none. ActionRefused for what is not a
        run id, and for the run being trained or the run it is fine-tuned from. The folder is
        renamed to a hidden name first, so no reader ever sees half a run."""
        if not isinstance(run_id, str) or not folder.is_run_id(run_id):
            raise ActionRefused(f"{run_id!r} is not a run id.")
        info = self.lease.current()
        if info is not None and run_id in (info.run_id, info.config.fine_tune_from):
            raise ActionRefused(f"Run {run_id} is in use by the training running now: stop it "
                                "first.")
        path = self.root / run_id
        trash = self.root / f"{folder.DELETED_PREFIX}{run_id}-{os.urandom(4).hex()}"
        try:
            platform_os.rename(path, trash)  # Windows: a reader may hold a file a moment
        except FileNotFoundError:
            return False  # deleted meanwhile, maybe by another server
        if trash.is_dir() and not trash.is_symlink():
            shutil.rmtree(trash, ignore_errors=True)  # what stays, the next start removes
        else:
            trash.unlink(missing_ok=True)
        with self._lock:
            self._parsed.pop(path, None)
        log.info("Deleted run %s", run_id)
        return True

    def prune(self, keep_failed: int = KEEP_FAILED_RUNS) -> list[str]:
        """Delete the runs without a model (failed, interrupted, stopped before saving,
        unreadable) beyond the newest `keep_failed`. Saved runs (finished, or stopped with
        their completed epochs) are the teacher's to delete; the run being trained and the
        chosen one are never pruned. Returns the run ids deleted."""
        if isinstance(keep_failed, bool) or not isinstance(keep_failed, int) or keep_failed < 0:
            raise ValueError(f"keep_failed must be a whole number from 0, got {keep_failed!r}")
        choice = self.choice()
        kept = {choice.run_id} if choice is not None else set()
        without_model = [run for run in self.scan().runs
                         if run.record is None and run.status not in ACTIVE_STATUSES]
        removed = []
        for run in without_model[keep_failed:]:
            if run.run_id in kept:
                continue
            fresh = self.get(run.run_id)  # again, just before: a run never restarts, but check
            if fresh is None or fresh.record is not None or fresh.status in ACTIVE_STATUSES:
                continue
            try:
                if self.delete(run.run_id):
                    removed.append(run.run_id)
            except (ActionRefused, OSError) as exc:
                log.warning("Could not prune run %s: %s", run.run_id, exc)
        if removed:
            log.warning("Pruned %d run(s) without a model: %s", len(removed), ", ".join(removed))
        return removed

    # One run

    def _read_run(self, path: Path, live_id: str | None) -> Run:
        parsed = self._parse(path)
        if parsed.error is not None:
            return Run(path.name, path, "unreadable", parsed.config,
                       error=f"unreadable: {parsed.error}")
        if parsed.record is not None:  # the record decides (run_status): read nothing else
            evidence = {"stop_requested": False, "events": events.EventSummary(), "outcome": None}
        else:
            evidence = {"stop_requested": (path / folder.STOP).exists(),
                        "events": events.read_summary(path / folder.METRICS),
                        "outcome": folder.read_outcome(path)}
        status, why = folder.run_status(record=parsed.record, live=path.name == live_id,
                                        **evidence)
        return Run(path.name, path, status, parsed.config, record=parsed.record, error=why)

    def _parse(self, path: Path) -> _Parsed:
        """The run's config and record, parsed again only when one of SIGNED_FILES changed."""
        stats = tuple(folder.stat_key(path / name) for name in SIGNED_FILES)
        with self._lock:
            cached = self._parsed.get(path)
        if cached is not None and cached[0] == stats:
            return cached[1]
        parsed = _parse_run(path)
        if parsed.error is not None:
            log.warning("models folder: run %s is unreadable: %s", path.name, parsed.error)
        with self._lock:
            self._parsed[path] = (stats, parsed)
        return parsed


def _parse_run(path: Path) -> _Parsed:
    try:
        config = read_config(path / folder.CONFIG)
    except RecordError as exc:
        return _Parsed(None, None, str(exc))
    if not (path / folder.RECORD).exists():
        return _Parsed(config, None, None)  # never saved: its events tell how it ended
    try:
        record = read_record(path / folder.RECORD)
        check_saved_files(path)
    except RecordError as exc:
        return _Parsed(config, None, str(exc))
    return _Parsed(config, record, None)

