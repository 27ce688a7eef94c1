"""One training job per server process, shared by every visitor, run in a worker process.

The Train page, the CLI and the tests all start training here. The manager starts
`python -m mnist_core.worker`, follows its metrics file, asks it to stop, notices when it
dies or hangs, and hands out immutable `Snapshot`s that any number of threads may read.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mnist_core import runs
from mnist_core.config import TrainConfig
from mnist_core.drawings import DrawingStore
from mnist_core.store import ModelStore

ACTIVE = ("starting", "running", "stopping")
STDERR_TAIL_LINES = 15


class JobRefused(RuntimeError):
    """A training is already running; there is one per server so a class shares it."""


@dataclass(frozen=True)
class Snapshot:
    """What a training looks like right now. Plain values only; safe to share."""

    state: str = "idle"  # idle, starting, running, stopping, finished, stopped, failed, interrupted
    run_id: str | None = None
    config: TrainConfig | None = None
    device: str | None = None
    device_kind: str | None = None
    strategy: str | None = None
    precision: str | None = None
    epoch: int = 0  # the epoch in progress or last finished, 1-based; 0 before the first batch
    batch: int = 0  # batches done in that epoch
    steps_per_epoch: int = 0
    samples_seen: int = 0
    samples_per_second: float | None = None
    elapsed: float = 0.0  # seconds since start
    eta: float | None = None  # seconds left, from the recent training speed
    steps: tuple[int, ...] = ()  # global step of each batch point below
    batch_loss: tuple[float, ...] = ()  # running mean of the loss over the epoch so far
    batch_accuracy: tuple[float, ...] = ()
    history: tuple[dict, ...] = ()  # one dict per epoch: loss, accuracy, val_loss, val_accuracy
    val_accuracy: float | None = None  # final, once saved
    error: str | None = None
    message: str | None = None  # what happened, in a sentence, for the page

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def progress(self) -> float:
        """0-1 over all epochs."""
        if self.config is None or not self.steps_per_epoch:
            return 0.0
        total = self.config.epochs * self.steps_per_epoch
        done = max(self.epoch - 1, 0) * self.steps_per_epoch + self.batch
        return 1.0 if self.state == "finished" else min(done / total, 1.0)


@dataclass
class _Job:
    run_id: str
    run_dir: Path
    config: TrainConfig
    process: subprocess.Popen
    log_file: object
    reader: runs.EventReader
    started: float = field(default_factory=time.time)
    state: str = "starting"
    start_event: dict = field(default_factory=dict)
    batch_events: list = field(default_factory=list)
    epoch_events: list = field(default_factory=list)
    last_progress: float = field(default_factory=time.time)
    stop_requested: float | None = None
    ended: float | None = None
    error: str | None = None
    message: str | None = None
    val_accuracy: float | None = None


class JobManager:
    """Starts, follows and stops the one training of this process.

    stall_seconds: a training worker that writes nothing for this long is killed as hung.
    startup_seconds: the same before its first event (importing TensorFlow takes a while).
    stop_grace_seconds: a worker that has not stopped this long after Stop is killed.
    env: extra environment variables for the worker (e.g. MNIST_DATA, MNIST_LOGICAL_CPUS).
    """

    def __init__(self, store: ModelStore | None = None, *, stall_seconds: float = 180,
                 startup_seconds: float = 300, stop_grace_seconds: float = 30,
                 env: dict | None = None):
        self.store = store or ModelStore()
        self.stall_seconds = stall_seconds
        self.startup_seconds = startup_seconds
        self.stop_grace_seconds = stop_grace_seconds
        self.env = dict(env or {})
        self._lock = threading.RLock()
        self._job: _Job | None = None
        atexit.register(self.shutdown)

    def start(self, config: TrainConfig, parent: str | None = None) -> str:
        """Start training `config` in a new run; return its id. Refused while one runs."""
        with self._lock:
            self._refresh()
            if self._job is not None and self._job.state in ACTIVE:
                raise JobRefused(
                    f"A training is already running (run {self._job.run_id}, "
                    f"{self._job.config.model}). Watch it on the Train page, or stop it first."
                )
            run_id = runs.new_run_id()
            run_dir = self.store.root / run_id
            # Prepared under a hidden name and renamed, so a scan never sees a run folder
            # without its config.
            preparing = self.store.root / f".{run_id}"
            preparing.mkdir(parents=True)
            try:
                runs.atomic_write_json(preparing / runs.CONFIG,
                                       {**config.to_dict(), "parent": parent})
                if config.fine_tune_from:
                    # The run keeps the drawings it learns from: deleting drawings while it
                    # trains changes nothing, and the run can be reproduced later.
                    snapshot = DrawingStore().load()
                    runs.atomic_write_bytes(preparing / runs.DRAWINGS, snapshot.to_npz())
                preparing.rename(run_dir)
            except BaseException:
                shutil.rmtree(preparing, ignore_errors=True)
                raise
            log_file = open(run_dir / runs.STDERR, "wb")
            env = {**os.environ, **self.env}
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(runs.REPO_DIR), env.get("PYTHONPATH")) if p
            )
            env["PYTHONUNBUFFERED"] = "1"
            process = subprocess.Popen(
                [sys.executable, "-m", "mnist_core.worker", str(run_dir),
                 "--parent-pid", str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                cwd=runs.REPO_DIR, env=env,
                start_new_session=True,  # a Ctrl-C meant for the app's terminal is the app's
            )
            self._job = _Job(run_id, run_dir, config, process, log_file,
                             runs.EventReader(run_dir / runs.METRICS))
            threading.Thread(target=self._monitor, args=(self._job,), daemon=True,
                             name=f"training-monitor-{run_id}").start()
            return run_id

    def stop(self) -> bool:
        """Ask the running training to stop after its current batch. False if none runs."""
        with self._lock:
            job = self._job
            if job is None or job.state not in ACTIVE:
                return False
            (job.run_dir / runs.STOP).touch()
            if job.stop_requested is None:
                job.stop_requested = time.time()
            job.state = "stopping"
            return True

    def snapshot(self) -> Snapshot:
        with self._lock:
            self._refresh()
            return self._snapshot()

    def wait(self, timeout: float | None = None, poll: float = 0.2) -> Snapshot:
        """Block until the current job ends (or the timeout passes); return its snapshot."""
        deadline = None if timeout is None else time.time() + timeout
        while True:
            snap = self.snapshot()
            if not snap.active or (deadline is not None and time.time() > deadline):
                return snap
            time.sleep(poll)

    def worker_pid(self) -> int | None:
        with self._lock:
            return self._job.process.pid if self._job else None

    def shutdown(self) -> None:
        """Stop a running worker when this process exits; it would have nobody to report to."""
        with self._lock:
            job = self._job
            if job is not None and job.process.poll() is None:
                job.process.kill()
                job.process.wait()

    def _monitor(self, job: _Job) -> None:
        """Follow the job even when nobody watches: hangs are caught and the log file closed."""
        while True:
            time.sleep(0.5)
            with self._lock:
                if self._job is not job:
                    return
                self._refresh()
                if job.state not in ACTIVE:
                    return

    def _refresh(self) -> None:
        job = self._job
        if job is None or job.ended is not None:
            return
        self._apply(job, job.reader.read_new())
        now = time.time()
        code = job.process.poll()
        if code is None:
            if job.stop_requested and now - job.stop_requested > self.stop_grace_seconds:
                self._kill(job, f"did not stop within {self.stop_grace_seconds:.0f} s of Stop")
            elif job.start_event and now - job.last_progress > self.stall_seconds:
                self._kill(job, f"made no progress for {self.stall_seconds:.0f} s")
            elif not job.start_event and now - job.started > self.startup_seconds:
                self._kill(job, f"did not start within {self.startup_seconds:.0f} s")
            return
        self._apply(job, job.reader.read_new())
        self._ended(job, code)

    def _apply(self, job: _Job, events: list[dict]) -> None:
        for event in events:
            job.last_progress = time.time()
            kind = event.get("event")
            if kind == "start":
                job.start_event = event
                if job.state == "starting":
                    job.state = "running"
            elif kind == "batch":
                job.batch_events.append(event)
            elif kind == "epoch":
                job.epoch_events.append(event)
            elif kind == "error":
                job.error = event.get("message")
            elif kind == "end" and event.get("saved"):
                job.val_accuracy = event.get("val_accuracy")

    def _kill(self, job: _Job, why: str) -> None:
        try:
            os.killpg(job.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            job.process.kill()
        job.process.wait()
        job.error = f"The training process {why}, so it was ended.\n{self._stderr_tail(job)}"
        runs.append_event(job.run_dir / runs.METRICS,
                          {"event": "error", "message": job.error, "t": time.time()})
        self._ended(job, job.process.returncode)

    def _ended(self, job: _Job, code: int) -> None:
        job.ended = time.time()
        job.log_file.close()
        (job.run_dir / runs.STOP).unlink(missing_ok=True)
        record_path = job.run_dir / runs.RECORD
        if record_path.exists():
            record = json.loads(record_path.read_text())
            job.state = record["status"]
            job.val_accuracy = record["evaluation"]["accuracy"]
            job.message = (f"Training {job.state}: validation accuracy "
                           f"{job.val_accuracy:.2%}. Saved as run {job.run_id}.")
        elif job.error is not None:
            job.state = "failed"
            if "Traceback" not in job.error and "\n" not in job.error:
                job.error = f"{job.error}\n{self._stderr_tail(job)}"
            job.message = "Training failed."
        elif code == 0:
            job.state = "stopped"
            job.message = "Training stopped before the first epoch ended: nothing was saved."
        elif code < 0:
            job.state = "interrupted"
            job.error = (f"The training process was killed (signal {-code}) before it saved "
                         f"a model.\n{self._stderr_tail(job)}")
            job.message = "Training was interrupted."
            runs.append_event(job.run_dir / runs.METRICS,
                              {"event": "interrupted", "message": job.error, "t": time.time()})
        else:
            job.state = "failed"
            job.error = f"The training process exited with code {code}.\n{self._stderr_tail(job)}"
            job.message = "Training failed."
            runs.append_event(job.run_dir / runs.METRICS,
                              {"event": "error", "message": job.error, "t": time.time()})

    @staticmethod
    def _stderr_tail(job: _Job) -> str:
        try:
            lines = (job.run_dir / runs.STDERR).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        useful = [line for line in lines if line.strip()]
        return "\n".join(useful[-STDERR_TAIL_LINES:])

    def _snapshot(self) -> Snapshot:
        job = self._job
        if job is None:
            return Snapshot()
        start = job.start_event
        steps_per_epoch = start.get("steps_per_epoch", job.config.steps_per_epoch())
        batch_size = job.config.batch_size
        last = job.batch_events[-1] if job.batch_events else None
        step = last["step"] if last else 0
        epoch, batch = (last["epoch"] + 1, last["batch"]) if last else (0, 0)
        speed = eta = None
        recent = job.batch_events[-50:]
        if len(recent) >= 2 and recent[-1]["t"] > recent[0]["t"]:
            steps_per_second = (recent[-1]["step"] - recent[0]["step"]) / (
                recent[-1]["t"] - recent[0]["t"])
            speed = steps_per_second * batch_size
            if job.state in ACTIVE and steps_per_second > 0:
                eta = (job.config.epochs * steps_per_epoch - step) / steps_per_second
        end = job.ended or time.time()
        return Snapshot(
            state=job.state,
            run_id=job.run_id,
            config=job.config,
            device=start.get("device"),
            device_kind=start.get("device_kind"),
            strategy=start.get("strategy"),
            precision=start.get("precision"),
            epoch=epoch,
            batch=batch,
            steps_per_epoch=steps_per_epoch,
            samples_seen=step * batch_size,
            samples_per_second=speed,
            elapsed=end - job.started,
            eta=eta,
            steps=tuple(e["step"] for e in job.batch_events),
            batch_loss=tuple(e["loss"] for e in job.batch_events),
            batch_accuracy=tuple(e["accuracy"] for e in job.batch_events),
            history=tuple(job.epoch_events),
            val_accuracy=job.val_accuracy,
            error=job.error,
            message=job.message,
        )
