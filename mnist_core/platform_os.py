"""Every OS-specific facility of training, behind one function each: the portable way first
(subprocess flags, psutil, platform, filelock), the Linux refinement second.

Nothing here imports a module of one OS only (`fcntl`, `winreg`) but inside a function that
falls back without it, and /proc is read only where its absence is handled: every module
loads on Windows, macOS and Linux alike (tests/foreign_os hides Linux's to check that).

It starts no thread and imports nothing that does: mnist_core.training.lowest_priority lowers the
worker's priority with it before numpy or TensorFlow start theirs.
"""

from __future__ import annotations

import errno
import logging
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

NICENESS = 10  # POSIX: added to the process's niceness, as `nice` does
MAX_NICE = 19
CPUINFO = Path("/proc/cpuinfo")
AUTOGROUP = Path("/proc/self/autogroup")
AUTOGROUP_NICE = 19
AUTOGROUP_TRIES = 5
# Windows: an antivirus scanner holds a new file for a moment, and a reader with a file open
# makes a rename onto it fail; such a hold ends within a second or two.
REPLACE_TRIES = 20
REPLACE_PAUSE_SECONDS = 0.1
KILL_WAIT_SECONDS = 5.0
STDOUT_FD, STDERR_FD = 1, 2
PROBE_TURN_SECONDS = 10.0  # probes hold their turn for microseconds: a longer wait is a hang
# Windows' values (winbase.h), named here so that this module reads the same on every OS.
CREATE_NEW_PROCESS_GROUP = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x00000200)
CREATE_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)
IDLE_PRIORITY_CLASS = getattr(psutil, "IDLE_PRIORITY_CLASS", 0x00000040)
WINDOWS_CPU_KEY = r"HARDWARE\DESCRIPTION\System\CentralProcessor\0"


def is_windows() -> bool:
    return os.name == "nt"


# Starting a worker detached from the console


def detached() -> dict:
    """subprocess.Popen arguments that start a process which the console's Ctrl-C, or closing
    the console, does not end: the worker outlives the server that started it.

    Windows: a process group of its own (Ctrl-C goes to the console's group) and a console of
    its own, hidden (closing the teacher's window ends the processes attached to it).
    POSIX: a session of its own (no controlling terminal, its own process group)."""
    if is_windows():
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    return {"start_new_session": True}


# Stopping a process tree


class NotAWorker(RuntimeError):
    """A pid that must never be killed: every process, init, this process or its ancestors."""


def check_killable(pid: int) -> None:
    """Raise NotAWorker for a pid whose kill would end more than a worker: pids 0, -1 and 1
    name every process, a process group or init to a POSIX kill; this process, its parents
    and (POSIX) a process in this process's group would take the server down with it. A pid
    comes from training.json, which a junk file could have written."""
    if pid <= 1 or pid == os.getpid():
        raise NotAWorker(f"pid {pid} is not a training worker's")
    if pid in {p.pid for p in psutil.Process().parents()}:
        raise NotAWorker(f"pid {pid} is one of this process's parents")
    if hasattr(os, "getpgid") and _group_of(pid) == os.getpgrp():
        raise NotAWorker(f"pid {pid} is in this process's own process group")


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:  # gone meanwhile, or not ours to look at
        return None


def kill_tree(pid: int) -> bool:
    """Kill `pid` and every process below it; wait briefly for them to go. False when there
    was no such process, or it must not be killed (`check_killable`, logged).

    Portable: psutil lists the descendants first (a venv's python.exe on Windows starts the
    real interpreter as its child, and that child holds the lease), then kills each. Linux
    and macOS refinement: a worker leading its own process group gets one killpg, which also
    reaches a process that forked meanwhile."""
    try:
        check_killable(pid)
        root = psutil.Process(pid)
        tree = [*root.children(recursive=True), root]
    except NotAWorker as exc:
        log.warning("Not killing it: %s.", exc)
        return False
    except (psutil.NoSuchProcess, ProcessLookupError):
        return False
    # It leads its own group (the supervisor made it so): one signal reaches every member.
    if hasattr(os, "killpg") and hasattr(os, "getpgid") and _group_of(pid) == pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for process in tree:  # also those that left the group, and the whole tree elsewhere
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            log.warning("Cannot kill process %d (access denied).", process.pid)
    _wait_gone(tree, KILL_WAIT_SECONDS)
    return True


def _wait_gone(processes: list[psutil.Process], timeout: float) -> None:
    """Until every process has ended (a zombie counts as ended), or `timeout` passes. Never
    reaps one: a worker's exit status belongs to the Popen that started it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for process in processes:
            try:
                if process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
            except psutil.NoSuchProcess:
                continue
        if not alive:
            return
        processes = alive
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    """A process with this pid exists (someone else's too). Not `os.kill(pid, 0)`: on
    Windows signal 0 is CTRL_C_EVENT, sent to that pid's whole process group."""
    try:
        return pid > 0 and psutil.pid_exists(pid)
    except (OverflowError, ValueError):
        return False


# Lowering a process's priority


def lower_priority() -> str:
    """Make this process, and every thread it starts from now on, yield the CPU; say how.

    Portable: psutil's nice (Windows: the idle priority class; POSIX: nice NICENESS). Linux
    refinement: SCHED_IDLE, then a lower share for the process's own session (autogroup)."""
    process = psutil.Process()
    if is_windows():
        process.nice(IDLE_PRIORITY_CLASS)
        return "idle priority class"
    process.nice(min(MAX_NICE, process.nice() + NICENESS))  # as os.nice(NICENESS) does
    how = f"nice {NICENESS}"
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            how = "SCHED_IDLE"
        except OSError:  # refused (a container without the capability): nice is enough
            pass
    if lower_autogroup():
        how += f", session nice {AUTOGROUP_NICE}"
    return how


def lower_autogroup() -> bool:
    """Linux: lower the CPU share of this process's session, when it leads one of its own.

    The supervisor starts the worker in a session of its own, and Linux (autogroup, on in
    most distributions) shares the CPU between sessions first and between their threads
    second: the worker's session and the server's then get equal shares whatever the
    worker's policy, so SCHED_IDLE alone left a busy server half of the core they shared
    (benchmarks/RESULTS.md, "A class at once"). At nice 19 the worker's session gets ~1.5 %
    of a core someone else wants. Only a session leader's session is changed: the same call
    from inside a shell's session would slow the whole shell. Where a CPU cgroup of its own
    holds the session (some systemd setups), autogroup does not apply and this changes
    nothing that matters. False elsewhere (no sessions, no /proc)."""
    if not hasattr(os, "getsid") or os.getsid(0) != os.getpid():
        return False
    for _ in range(AUTOGROUP_TRIES):
        try:
            AUTOGROUP.write_text(str(AUTOGROUP_NICE), encoding="utf-8")
            return True
        except OSError as exc:
            if exc.errno != errno.EAGAIN:  # no autogroup in this kernel, or refused
                return False
            time.sleep(0.11)  # Linux takes one such change per 100 ms from non-root users
    return False


def usable_cores() -> list[int]:
    """The cores this process may run on: its CPU affinity where the OS keeps one (psutil on
    Linux and Windows; macOS has none), else all of them."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    try:
        return sorted(psutil.Process().cpu_affinity())
    except (AttributeError, psutil.Error, OSError):  # macOS: no cpu_affinity
        return list(range(os.cpu_count() or 1))


def keep_to(cores: list[int]) -> bool:
    """Run this process, and the threads it starts from now on, on `cores` only; False where
    the OS has no CPU affinity (macOS)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
        return True
    try:
        psutil.Process().cpu_affinity(cores)
        return True
    except (AttributeError, psutil.Error, OSError):
        return False


# The CPU's name and features


def cpu_name() -> str:
    """'AMD EPYC 7B13', 'Apple M2': Linux's /proc/cpuinfo, macOS's sysctl, Windows' registry,
    else what `platform` knows."""
    try:
        for line in CPUINFO.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    name = _macos_cpu_name() if sys.platform == "darwin" else None
    if name is None and is_windows():
        name = _windows_cpu_name()
    return name or platform.processor() or platform.machine() or "CPU"


def _macos_cpu_name() -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                             text=True, encoding="utf-8", timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def _windows_cpu_name() -> str | None:
    try:
        import winreg  # Windows only: imported where it exists

        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, WINDOWS_CPU_KEY) as key:
            return str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).strip() or None
    except (ImportError, OSError):
        return None


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux names them; empty where /proc is missing (then no
    feature that needs them is used: the portable default)."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


# File locks


def file_lock(path: Path) -> FileLock:
    """An exclusive OS lock on `path` (filelock: flock on POSIX, msvcrt.locking on Windows),
    released by the OS when its process ends, however it ends. One object per use, not
    shared between threads; the file itself stays (a deleted lock file would let two holders
    lock two different files)."""
    return FileLock(path, thread_local=False, preserve_lock_file=True, fallback_to_soft=False)


def lock_is_held(path: Path, turns: Path) -> bool:
    """Another process (or another object in this one) holds `file_lock(path)` now. Never
    creates `path`: False when it is missing. OSError when it cannot be opened.

    Portable: take the lock without waiting and let it go at once. Probes take turns for
    that (`file_lock(turns)`, held for microseconds), so a probe that finds the lock taken
    knows it is not another probe's. POSIX refinement: a shared flock on a read-only
    descriptor, which never blocks another probe and works in a folder this process cannot
    write."""
    if not path.exists():
        return False
    try:
        import fcntl  # POSIX only: imported where it exists
    except ImportError:
        with file_lock(turns).acquire(timeout=PROBE_TURN_SECONDS):
            lock = file_lock(path)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                return True
            lock.release()
            return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases our shared lock
    return False


# Files another process holds (Windows)


def retry_locked(action: Callable[[], None], what: Path,
                 tries: int = REPLACE_TRIES, pause: float = REPLACE_PAUSE_SECONDS) -> None:
    """Run `action` (a rename onto or of `what`), again for a moment while it fails with
    PermissionError: Windows refuses to replace or rename a file (or a folder holding one)
    that another process has open, and antivirus scanners open new files for a moment.
    Then raise FileLocked naming `what`. POSIX never refuses so, so it never waits."""
    for attempt in range(tries):
        try:
            action()
            return
        except PermissionError as exc:
            if attempt == tries - 1:
                raise FileLocked(what, exc) from exc
            time.sleep(pause)


def replace(source: Path, target: Path) -> None:
    """os.replace(source, target), retried while Windows says another program holds either
    (`retry_locked`); FileLocked naming `target` when that lasts."""
    retry_locked(lambda: os.replace(source, target), target)


def rename(source: Path, target: Path) -> None:
    """Rename a file or folder (which must not exist at `target`), retried while Windows says
    a file in it is open (`retry_locked`); FileLocked naming `source` when that lasts."""
    retry_locked(lambda: os.rename(source, target), source)


def rename_with_output(source: Path, target: Path, log_name: str) -> None:
    """Rename the folder `source`, which holds this process's own output file `log_name`
    (its stdout and stderr), to `target`; the output then goes on into the same file.

    Windows refuses to rename a folder while a file in it is open, this process's own
    output included: stdout and stderr point at the null device during the rename, then at
    the log wherever it is (back at `source` when the rename failed, and the error is
    raised there)."""
    point_output_at(os.devnull)
    where = source
    try:
        rename(source, target)
        where = target
    finally:
        point_output_at(where / log_name)


def point_output_at(path: Path | str) -> None:
    """This process's stdout and stderr (the file descriptors, so child processes and C
    libraries follow) now write to the end of `path`."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.dup2(fd, STDOUT_FD)
        os.dup2(fd, STDERR_FD)
    finally:
        os.close(fd)


class FileLocked(PermissionError):
    """A file or folder another program keeps open, so it cannot be replaced or renamed."""

    def __init__(self, path: Path, cause: OSError):
        super().__init__(cause.errno or errno.EACCES,
                         f"{path} is kept open by another program (an antivirus scanner, a "
                         "backup or sync tool, or a second copy of the app), so it cannot be "
                         "replaced; close that program or exclude the models folder from it, "
                         "and try again", str(path))
