"""Starting, stopping and watching the worker process: the one training of a models folder.

The Train page, the Draw and Class drawings pages, the CLI and the tests all train through a
`Trainer`. It holds nothing that matters: who trains is the lease in the models folder, a stop
request is a file, and the live view is read from the run's files (follow.py). So a Trainer can
be created in any process at any time (a cleared cache, a second server, a restart) and sees
the same training.

A training outlives the server that started it: a restarted or crashed server does not end the
class's demo. It ends by itself when its epochs are done, or when anyone presses Stop (from any
server, or Ctrl-C in the CLI that started it). A hung worker (no event for `stall_seconds`) or
one that ignores Stop for `stop_grace_seconds` is killed by whichever process watches it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mnist_core import platform_os
from mnist_core.config import TrainConfig
from mnist_core.devices import cannot_train
from mnist_core.runs import events, folder
from mnist_core.runs.lease import LeaseBusy, LeaseInfo, TrainingLease
from mnist_core.runs.store import KEEP_FAILED_RUNS, ModelStore
from mnist_core.training.follow import Follower, Snapshot
from mnist_core.training.lowest_priority import WORKER_THREADS_ENV, usable_cores

log = logging.getLogger(__name__)
WORKER_MODULE = "mnist_core.training.worker"
LAUNCHER = "mnist_core.training.lowest_priority"  # lowest priority first, for every thread
EXIT_GRACE_SECONDS = 60  # after a worker lets the lease go, it has this long to exit


class JobRefused(RuntimeError):
    """A training is already running in this models folder; a class shares one."""


class StartFailed(RuntimeError):
    """The worker process ended before it took the lease; the message has its output."""


@dataclass(frozen=True)
class Started:
    run_id: str
    recovered: LeaseInfo | None = None  # a stale lease removed on the way

    @property
    def notice(self) -> str | None:
        if self.recovered is None:
            return None
        return (f"The previous training (run {self.recovered.run_id}) had ended without "
                "releasing its lease; it was recovered.")


def worker_threads(visitors: int, cores: int | None = None) -> int | None:
    """CPU threads for a training while `visitors` are connected: all cores but one, so the
    server answering them always has a core of its own (None: TensorFlow's default, all).

    Measured with 300 students drawing (benchmarks/RESULTS.md): even at the lowest
    priority, TensorFlow's threads on every core, waking each other many times per step,
    delay the server's own threads; one core left free removes most of that.
    """
    cores = cores or len(usable_cores())
    return cores - 1 if visitors > 0 and cores > 1 else None


class Trainer:
    """stall_seconds: a worker that writes no event for this long is killed as hung.
    startup_seconds: the same before its first event (importing TensorFlow takes a while).
    stop_grace_seconds: a worker that has not stopped this long after Stop is killed.
    env: extra environment variables for the worker (e.g. MNIST_DATA, MNIST_LOGICAL_CPUS).
    """

    def __init__(self, root: Path | str | None = None, *, stall_seconds: float = 180,
                 startup_seconds: float = 300, stop_grace_seconds: float = 30,
                 env: dict | None = None):
        self.root = Path(root) if root is not None else folder.models_dir()
        self.lease = TrainingLease(self.root)
        self.follower = Follower(self.root, self.lease)
        self.stall_seconds = stall_seconds
        self.startup_seconds = startup_seconds
        self.stop_grace_seconds = stop_grace_seconds
        self.env = dict(env or {})
        self._children: dict[str, subprocess.Popen] = {}  # workers this Trainer started
        self._collecting = threading.Lock()

    def start(self, config: TrainConfig, drawings_npz: bytes | None = None,
              timeout: float = 120, visitors: int = 0) -> Started:
        """Start training `config` in a new run. Refused while a training runs anywhere on
        this models folder. Returns once the worker holds the lease. With `visitors` (other
        than the one starting it) connected to the server, the worker leaves them a core
        (`worker_threads`). StartFailed, saying why, on a machine that cannot train."""
        why_not = cannot_train()
        if why_not is not None:
            raise StartFailed(why_not)
        try:
            with self.lease.starting():
                info = self.lease.current()
                if info is not None:
                    raise JobRefused(
                        f"A training is already running (run {info.run_id}, {info.config.model}). "
                        "Watch it on the Train page, or stop it first.")
                recovered = self.lease.remove_stale()
                self.tidy()  # nobody trains and nobody else starts
                prepared = folder.prepare_run(self.root, config, drawings_npz)
                run_id = prepared.name[1:]
                process = self._spawn(prepared, worker_threads(visitors))
                self._wait_for_lease(process, prepared, run_id, timeout)
        except LeaseBusy as exc:
            raise JobRefused(str(exc)) from None
        except OSError as exc:
            raise StartFailed(folder.cannot_write(self.root, exc,
                                                  "no training can start")) from None
        self._children[run_id] = process
        threading.Thread(target=self._reap, args=(run_id,), daemon=True,
                         name=f"training-reaper-{run_id}").start()
        self.follower.invalidate()
        return Started(run_id, recovered)

    def tidy(self) -> None:
        """Remove what killed processes left in the models folder: run folders abandoned while
        being prepared, temporary files of interrupted writes, half-deleted runs; and runs
        without a model beyond the newest KEEP_FAILED_RUNS, so failures cannot pile up.
        Only under start.lock with no training running (`start` calls it); best effort: a
        file it cannot remove is left for the next start."""
        try:
            folder.remove_abandoned(self.root)
            folder.remove_temporary(self.root)
            ModelStore(self.root).prune(KEEP_FAILED_RUNS)
        except OSError as exc:
            log.warning("Tidying the models folder failed: %s", exc)

    def stop(self) -> bool:
        """Ask the running training to stop after its current batch. False if none runs.
        OSError when the stop request cannot be written."""
        info = self.lease.current()
        if info is None:
            return False
        # The worker renames its folder from hidden to visible right after taking the lease,
        # never back: trying the hidden name first cannot miss it.
        for run_dir in (self.root / f".{info.run_id}", self.root / info.run_id):
            try:
                (run_dir / folder.STOP).touch()
                break
            except FileNotFoundError:
                continue
        self.follower.invalidate()
        return True

    def snapshot(self) -> Snapshot:
        snap = self.follower.snapshot()
        if snap.active and self._watchdog(snap):
            self.follower.invalidate()
            snap = self.follower.snapshot()
        child = self._children.get(snap.run_id)
        if not snap.active and child is not None and child.poll() is not None:
            # Our own worker just ended: its exit code says why before anyone reads the run.
            self._collect(snap.run_id)
            snap = self.follower.snapshot()
        return snap

    def wait(self, timeout: float | None = None, poll: float = 0.2) -> Snapshot:
        """Block until the training ends (or the timeout passes); return its snapshot."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            snap = self.snapshot()
            if not snap.active or (deadline is not None and time.monotonic() > deadline):
                return snap
            time.sleep(poll)

    def _spawn(self, prepared: Path, threads: int | None = None) -> subprocess.Popen:
        env = {**os.environ, **self.env}
        if threads is not None:
            env[WORKER_THREADS_ENV] = str(threads)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(folder.REPO_DIR), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONIOENCODING"] = "utf-8"  # worker.log is UTF-8 whatever the OS's code page
        with open(prepared / folder.WORKER_LOG, "wb") as log_file:
            return subprocess.Popen(
                [sys.executable, "-m", LAUNCHER, WORKER_MODULE, str(prepared)],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                cwd=folder.REPO_DIR, env=env,
                # Detached from the console: a Ctrl-C meant for the app's terminal is the
                # app's, and the worker outlives the server.
                **platform_os.detached(),
            )

    def _wait_for_lease(self, process: subprocess.Popen, prepared: Path, run_id: str,
                        timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.lease.current()
            if info is not None and info.run_id == run_id:
                return
            if process.poll() is not None:
                break
            time.sleep(0.02)
        else:
            _kill_tree(process.pid)
        process.wait()
        output = folder.log_tail(prepared) or folder.log_tail(self.root / run_id)
        shutil.rmtree(prepared, ignore_errors=True)
        raise StartFailed(f"The training process did not start (exit code {process.returncode})."
                          f"\n{output}")

    def _reap(self, run_id: str) -> None:
        """The starter's thread: watch for hangs even when no page does, then collect. A
        worker that let the lease go but does not exit (a hang while TensorFlow shuts down)
        is ended after EXIT_GRACE_SECONDS."""
        process = self._children[run_id]
        released = None
        while process.poll() is None:
            snap = self.snapshot()
            if snap.active or snap.run_id != run_id:
                released = None
            elif released is None:
                released = time.monotonic()
            elif time.monotonic() - released > EXIT_GRACE_SECONDS:
                _kill_tree(process.pid)
            time.sleep(0.5)
        self._collect(run_id)

    def _collect(self, run_id: str) -> None:
        """Say why our ended worker ended when it could not say so itself (killed by a
        signal, or died without an error event); then forget it."""
        with self._collecting:
            process = self._children.get(run_id)
            if process is None or process.poll() is None:
                return
            code = process.returncode
            run_dir = self.root / run_id
            summary = events.read_summary(run_dir / folder.METRICS)
            if code != 0 and not (summary.end or summary.error or folder.read_outcome(run_dir)):
                if code < 0:
                    folder.write_outcome(run_dir, "interrupted",
                                         f"The training process was killed (signal {-code}) "
                                         "before it saved a model.")
                else:
                    folder.write_outcome(run_dir, "failed",
                                         f"The training process exited with code {code}.")
            del self._children[run_id]
            self.follower.invalidate()

    def _watchdog(self, snap: Snapshot) -> bool:
        """Kill a worker that hangs or ignores Stop. True if it did."""
        info = self.lease.current()
        if info is None or info.run_id != snap.run_id:
            return False
        why = self._hung(info)
        if why is None:
            return False
        if self.lease.current() != info:
            return False  # it ended, or another worker took over, meanwhile: not this pid
        log.warning("Training %s (pid %d) %s: killing it.", info.run_id, info.pid, why)
        folder.write_outcome(self.root / info.run_id, "failed",
                             f"The training process {why}, so it was ended.")
        # The lease's pid is the interpreter that trains; the process we started may be a
        # venv's launcher above it (Windows' python.exe): both trees go, none is orphaned.
        child = self._children.get(info.run_id)
        if child is not None:
            _kill_tree(child.pid)
        _kill_tree(info.pid)
        return True

    def _hung(self, info: LeaseInfo) -> str | None:
        """Why the worker holding the lease counts as hung, or None. Silence is counted from
        its last event; a Stop from the later of the Stop and its last event (saving a model
        after Stop takes a few seconds); before its first event TensorFlow may be loading."""
        run_dir = self.root / info.run_id
        now = time.time()
        try:
            last_write = (run_dir / folder.METRICS).stat().st_mtime
        except OSError:
            last_write = None
        try:
            stop_at = (run_dir / folder.STOP).stat().st_mtime
        except OSError:
            stop_at = None
        if last_write is None:
            if now - info.started > self.startup_seconds:
                return f"did not start within {self.startup_seconds:.0f} s"
            return None
        if stop_at is not None and now - max(stop_at, last_write) > self.stop_grace_seconds:
            return f"did not stop within {self.stop_grace_seconds:.0f} s of Stop"
        if now - last_write > self.stall_seconds:
            return f"made no progress for {self.stall_seconds:.0f} s"
        return None


def _kill_tree(pid: int) -> None:
    """Kill the worker `pid` and every process below it (platform_os.kill_tree). Never a pid
    that would name every process, init, this process, its parents or (POSIX) its own
    group: a pid comes from training.json, which a junk file could have written."""
    platform_os.kill_tree(pid)
