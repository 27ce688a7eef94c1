"""The training lease: exactly one training per models folder, whatever the number of servers.

The worker process takes an OS file lock on `training.lock` before it trains and keeps it
until it exits; the kernel releases it when the process ends, however it ends. Beside the
lock, `training.json` says who holds it (pid, start time, run id, config). So:

- a training runs  <=>  the lock is held (no pid guessing: a recycled pid proves nothing);
- a lease is stale  <=>  training.json exists but its lock can be taken: the worker was
  killed before it could remove it. `recover_stale` removes it and says so in the log.

Readers probe the lock without waiting (mnist_core.platform_os.lock_is_held: on Linux and
macOS a shared lock on a read-only descriptor, so probes never block each other or need a
writable folder; elsewhere a take-and-release of the lock itself, probes taking turns under
`probe.lock`, so that a probe never mistakes another probe for a worker). Starts are serialized
by a second lock, `start.lock`, held by the starter from "is a training running?" until the new
worker holds the lease, so two servers pressing Start at once get one training and one refusal.
OS file locks (flock on Linux and macOS, LockFile on Windows) are reliable on a local disk; on
network shares (NFS, SMB) they are not, so keep the models folder on the machine that trains.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from mnist_core.config import TrainConfig
from mnist_core.platform_os import file_lock, lock_is_held
from mnist_core.runs import folder
from mnist_core.runs.record import RecordError, parse_config, parse_fields, read_json, require

log = logging.getLogger(__name__)


class LeaseBusy(RuntimeError):
    """Another training holds the lease, or another start is under way."""


@dataclass(frozen=True)
class LeaseInfo:
    """training.json: who trains."""

    run_id: str
    pid: int
    started: float  # unix time the worker took the lease
    config: TrainConfig

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "pid": self.pid, "started": self.started,
                "config": self.config.to_dict()}


def parse_lease(values, where: str = folder.LEASE) -> LeaseInfo:
    """training.json, checked: a pid of 0, 1 or below would name a whole process group (or
    every process) to a kill, so it is refused like any other junk."""
    info = require(parse_fields(LeaseInfo, values, where, config=parse_config), where,
                   finite=("started",), minimum={"pid": 2})
    if not folder.is_run_id(info.run_id):
        raise RecordError(f"{where}: run_id must be a run id, got {info.run_id!r}")
    return info


class TrainingLease:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.lock_path = self.root / folder.LEASE_LOCK
        self.info_path = self.root / folder.LEASE
        self.start_lock_path = self.root / folder.START_LOCK
        self._ignored: tuple | None = None  # the junk training.json last logged, by its stat

    # Anyone: is a training running, and whose?

    def held(self) -> bool:
        """A worker holds the lease now (its exclusive lock refuses our shared one)."""
        try:
            return lock_is_held(self.lock_path, self.root / folder.PROBE_LOCK)
        except FileNotFoundError:
            return False  # no worker ever ran here
        except Timeout:  # probes hold their turn for microseconds: this one never came
            log.warning("models folder: %s stayed locked", folder.PROBE_LOCK)
            return False
        except OSError as exc:  # not readable by this server: it cannot see a training
            log.warning("models folder: %s cannot be opened (%s)", folder.LEASE_LOCK, exc.strerror)
            return False

    def info(self) -> LeaseInfo | None:
        """training.json as written, live or stale; None when absent or unreadable."""
        if not self.info_path.exists():
            return None
        try:
            return parse_lease(read_json(self.info_path))
        except RecordError as exc:
            try:
                stat = self.info_path.stat()
                seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            except OSError:
                seen = None
            if seen != self._ignored:  # once per version of the file, not on every probe
                self._ignored = seen
                log.warning("models folder: ignoring %s: %s", folder.LEASE, exc)
            return None

    def current(self) -> LeaseInfo | None:
        """Who trains now, or None. training.json is read before and after the lock is
        checked: a training that just ended, or a new one that took over meanwhile, is never
        reported under the other's name."""
        info = self.info()
        if info is None or not self.held():
            return None
        return info if self.info() == info else None

    # Starters

    @contextlib.contextmanager
    def starting(self, timeout: float = 30) -> Iterator[None]:
        """Hold start.lock: no other process starts a training meanwhile."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = file_lock(self.start_lock_path)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise LeaseBusy("Another training is being started; try again in a moment.") from None
        try:
            yield
        finally:
            lock.release()

    def recover_stale(self) -> LeaseInfo | None:
        """For readers: remove a stale lease unless someone is starting a training right now
        (then the starter does it). Returns what the stale lease said."""
        if not self.info_path.exists() or self.held():
            return None
        lock = file_lock(self.start_lock_path)
        try:
            lock.acquire(blocking=False)
        except (Timeout, OSError):
            return None
        try:
            return self.remove_stale()
        finally:
            lock.release()

    def remove_stale(self) -> LeaseInfo | None:
        """Under start.lock: remove training.json if its lock is free; log what it said."""
        info = self.info()
        if not self.info_path.exists() or self.held():
            return None  # no lease, or a live one
        try:
            self.info_path.unlink(missing_ok=True)
        except OSError as exc:  # e.g. a folder by that name: nothing this server can fix
            log.warning("models folder: cannot remove the stale %s (%s)", folder.LEASE,
                        exc.strerror or exc)
            return None
        if info is None:
            log.warning("Recovered a stale training lease (unreadable %s).", folder.LEASE)
        else:
            log.warning("Recovered a stale training lease: run %s (pid %d) ended without "
                        "releasing it.", info.run_id, info.pid)
        return info

    # The worker

    def hold(self, timeout: float = 30) -> FileLock:
        """Take the lease's lock for the life of this process (the worker's first act).

        A probe by a reader holds it for microseconds, hence the short wait."""
        lock = file_lock(self.lock_path)
        try:
            lock.acquire(timeout=timeout, poll_interval=0.02)
        except Timeout:
            raise LeaseBusy("another training holds the lease of this models folder") from None
        return lock

    def publish(self, run_id: str, config: TrainConfig) -> LeaseInfo:
        info = LeaseInfo(run_id, os.getpid(), time.time(), config)
        folder.atomic_write_json(self.info_path, info.to_dict())
        return info

    def end(self, lock: FileLock) -> None:
        """The worker is done: remove training.json first, then release the lock, so no
        reader ever sees a finished training's lease as stale."""
        self.info_path.unlink(missing_ok=True)
        lock.release()
