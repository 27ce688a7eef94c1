"""Following the training of a models folder: its events, read incrementally, as a Snapshot.

Everything here is derived from files (the lease, the run folder), so any number of server
processes, restarts or cleared caches see the same training. A `Follower` reads each new
line once and rebuilds its `Snapshot` at most every `max_age` seconds, however many visitors
ask: the snapshot is immutable and shared.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mnist_core.config import TrainConfig
from mnist_core.runs import folder
from mnist_core.runs.events import EventReader, EventSummary, summarize
from mnist_core.runs.lease import LeaseInfo, TrainingLease
from mnist_core.runs.record import (
    ACTIVE_STATUSES,
    BatchEvent,
    EpochEvent,
    RecordError,
    RunRecord,
    StartEvent,
    read_config,
    read_record,
)
from mnist_core.runs.saved import check_saved_files

log = logging.getLogger(__name__)
SPEED_WINDOW = 50  # batch points the speed and ETA are measured over


@dataclass(frozen=True)
class Snapshot:
    """What the training looks like right now. Plain values only; safe to share."""

    state: str = "idle"  # idle, or a run status (mnist_core.runs.record.Status)
    run_id: str | None = None
    config: TrainConfig | None = None
    device: str | None = None
    device_kind: str | None = None
    strategy: str | None = None
    precision: str | None = None
    epoch: int = 0  # the epoch in progress or last finished, 1-based; 0 before the first batch
    batch: int = 0  # batches done in that epoch
    steps_per_epoch: int = 0
    samples_per_second: float | None = None
    elapsed: float = 0.0  # seconds since the worker took the lease
    eta: float | None = None  # seconds left, from the recent training speed
    steps: tuple[int, ...] = ()  # global step of each batch point below
    batch_loss: tuple[float, ...] = ()  # running mean of the loss over the epoch so far
    batch_accuracy: tuple[float, ...] = ()
    history: tuple[EpochEvent, ...] = ()
    val_accuracy: float | None = None  # final, once saved
    error: str | None = None
    message: str | None = None  # what happened, in a sentence, for the page
    notice: str | None = None  # a stale lease recovered by this process, for the page

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATUSES

    @property
    def progress(self) -> float:
        """0-1 over all epochs."""
        if self.config is None or not self.steps_per_epoch:
            return 0.0
        if self.state == "finished":
            return 1.0
        total = self.config.epochs * self.steps_per_epoch
        done = max(self.epoch - 1, 0) * self.steps_per_epoch + self.batch
        return min(done / total, 1.0)


class _Followed:
    """The events of one run read so far."""

    def __init__(self, run_dir: Path, config: TrainConfig | None, started: float):
        self.run_dir = run_dir
        self.config = config
        self.started = started
        self.reader = EventReader(run_dir / folder.METRICS)
        self.summary = EventSummary()
        self.start: StartEvent | None = None
        self.batches: list[BatchEvent] = []
        self.epochs: list[EpochEvent] = []
        self.record: RunRecord | None = None
        self.last_event = started

    def read(self) -> None:
        events = self.reader.read_new()
        self.summary = summarize(events, self.summary)
        for event in events:
            self.last_event = event.t
            if isinstance(event, StartEvent):
                self.start = event
            elif isinstance(event, BatchEvent):
                self.batches.append(event)
            elif isinstance(event, EpochEvent):
                self.epochs.append(event)


class Follower:
    """The live training of a models folder, or the last run when none trains."""

    def __init__(self, root: Path, lease: TrainingLease | None = None, max_age: float = 0.25):
        self.root = Path(root)
        self.lease = lease or TrainingLease(self.root)
        self.max_age = max_age
        self._lock = threading.Lock()
        self._run: _Followed | None = None
        self._snapshot = Snapshot()
        self._at = -math.inf
        self._notice: str | None = None
        self._unreadable: str | None = None  # why the followed run's config.json is unusable

    def snapshot(self) -> Snapshot:
        with self._lock:
            if time.monotonic() - self._at >= self.max_age:
                self._snapshot = self._refresh()
                self._at = time.monotonic()
            return self._snapshot

    def invalidate(self) -> None:
        """Read the folder again on the next call (after a start or a stop)."""
        with self._lock:
            self._at = -math.inf

    def _refresh(self) -> Snapshot:
        info = self.lease.current()
        if info is not None:
            self._notice = None  # a new training: the old story is over
        else:
            stale = self.lease.recover_stale()
            if stale is not None:
                self._notice = (f"The training of run {stale.run_id} ended without releasing its "
                                "lease (its process was killed). The lease was recovered: a new "
                                "training can start.")
        run_id = info.run_id if info else self._newest_run()
        if run_id is None:
            return Snapshot(notice=self._notice)
        if self._run is None or self._run.run_dir.name != run_id:
            self._run = self._open(run_id, info)
        run = self._run
        if run.config is None:
            return Snapshot(state="unreadable", run_id=run_id, error=self._unreadable,
                            notice=self._notice)
        run.read()
        if run.record is None and (run.run_dir / folder.RECORD).exists():
            try:
                run.record = read_record(run.run_dir / folder.RECORD)
                check_saved_files(run.run_dir)
            except RecordError as exc:
                run.record = None
                return Snapshot(state="unreadable", run_id=run_id, config=run.config,
                                error=f"unreadable: {exc}", notice=self._notice)
        live = info is not None
        status, why = folder.run_status(
            record=run.record, live=live, stop_requested=(run.run_dir / folder.STOP).exists(),
            events=run.summary, outcome=folder.read_outcome(run.run_dir))
        return self._build(run, status, why, live)

    def _newest_run(self) -> str | None:
        try:
            names = [e.name for e in self.root.iterdir()
                     if folder.is_run_id(e.name) and e.is_dir()]
        except OSError:
            return None
        return max(names, default=None)

    def _open(self, run_id: str, info: LeaseInfo | None) -> _Followed:
        run_dir = self.root / run_id
        if info is not None:
            return _Followed(run_dir, info.config, info.started)
        try:
            config = read_config(run_dir / folder.CONFIG)
        except RecordError as exc:
            config, self._unreadable = None, f"unreadable: {exc}"
        try:
            started = (run_dir / folder.CONFIG).stat().st_mtime
        except OSError:
            started = time.time()
        return _Followed(run_dir, config, started)

    def _build(self, run: _Followed, status: str, why: str | None, live: bool) -> Snapshot:
        config, start = run.config, run.start
        steps_per_epoch = start.steps_per_epoch if start else (
            config.steps_per_epoch() if config else 0)
        last = run.batches[-1] if run.batches else None
        epoch, batch = (last.epoch + 1, last.batch) if last else (0, 0)
        speed = eta = None
        recent = run.batches[-SPEED_WINDOW:]
        if config and len(recent) >= 2 and recent[-1].t > recent[0].t:
            steps_per_second = (recent[-1].step - recent[0].step) / (recent[-1].t - recent[0].t)
            speed = steps_per_second * config.batch_size
            if live and steps_per_second > 0:
                eta = (config.epochs * steps_per_epoch - last.step) / steps_per_second
        end = time.time() if live else (run.record.finished if run.record else run.last_event)
        error = message = None
        if run.record is not None:
            message = (f"Training {status}: validation accuracy "
                       f"{run.record.evaluation.accuracy:.2%}. Saved as run {run.run_dir.name}.")
        elif status == "stopped":
            message = f"Training {why}."
        elif status == "failed":
            tail = folder.log_tail(run.run_dir)  # the traceback, for the teacher
            error = f"{why}\n{tail}" if tail and tail not in why else why
            message = "Training failed."
        elif status == "interrupted":
            error, message = why, "Training was interrupted."
        elif status == "unreadable":
            error, message = why, "This run cannot be read."
        return Snapshot(
            state=status,
            run_id=run.run_dir.name,
            config=config,
            device=start.device if start else None,
            device_kind=start.device_kind if start else None,
            strategy=start.strategy if start else None,
            precision=start.precision if start else None,
            epoch=epoch,
            batch=batch,
            steps_per_epoch=steps_per_epoch,
            samples_per_second=speed,
            elapsed=max(end - run.started, 0.0),
            eta=eta,
            steps=tuple(e.step for e in run.batches),
            batch_loss=tuple(e.loss for e in run.batches),
            batch_accuracy=tuple(e.accuracy for e in run.batches),
            history=tuple(run.epochs),
            val_accuracy=run.record.evaluation.accuracy if run.record else None,
            error=error,
            message=message,
            notice=self._notice,
        )
