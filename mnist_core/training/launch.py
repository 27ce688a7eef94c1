"""`python -m mnist_core.training.launch MODULE ARGS...`: run MODULE as the lowest-priority
process of the machine, every thread of it.

A thread's scheduling policy and niceness are inherited by the threads it starts, so they
must change before anything starts one: importing numpy starts OpenBLAS's thread pool, and
TensorFlow starts several more. This module imports nothing that does. On Linux the worker
runs under SCHED_IDLE (it only gets the CPU nobody else wants: the server answering thirty
students comes first); elsewhere, or where that is refused, under `nice`.
"""

from __future__ import annotations

import errno
import os
import runpy
import sys
import time
from pathlib import Path

NICENESS = 10


AUTOGROUP = Path("/proc/self/autogroup")
AUTOGROUP_NICE = 19
AUTOGROUP_TRIES = 5


def lower_autogroup() -> bool:
    """Lower the CPU share of this process's session, when it has one of its own.

    The supervisor starts the worker in a session of its own, and Linux (autogroup, on in
    most distributions) shares the CPU between sessions first and between their threads
    second: the worker's session and the server's then get equal shares whatever the
    worker's policy, so SCHED_IDLE alone left a busy server half of the core they shared
    (benchmarks/RESULTS.md, "A class at once"). At nice 19 the worker's session gets ~1.5 %
    of a core someone else wants. Only a session leader's session is changed: the same call
    from inside a shell's session would slow the whole shell. Where a CPU cgroup of its own
    holds the session (some systemd setups), autogroup does not apply and this changes
    nothing that matters."""
    if os.getsid(0) != os.getpid():
        return False
    for _ in range(AUTOGROUP_TRIES):
        try:
            AUTOGROUP.write_text(str(AUTOGROUP_NICE))
            return True
        except OSError as exc:
            if exc.errno != errno.EAGAIN:  # no autogroup in this kernel, or refused
                return False
            time.sleep(0.11)  # Linux takes one such change per 100 ms from non-root users
    return False


def lower_priority() -> str:
    """Make this process (and every thread it will start) yield the CPU; say how."""
    os.nice(NICENESS)
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


WORKER_THREADS_ENV = "MNIST_WORKER_THREADS"  # set by the supervisor: CPU threads to train on


def usable_cores() -> list[int]:
    """The cores this process may run on (its CPU affinity, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def threads_asked() -> int | None:
    """The CPU threads the supervisor asked this worker to train on, or None (all)."""
    value = os.environ.get(WORKER_THREADS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def keep_to_cores() -> None:
    """When the supervisor limits the worker's threads (visitors are connected), keep the
    whole process, every thread it will start, on that many of the last cores: the first
    stays the server's alone (`mnist_core.training.supervisor.worker_threads`)."""
    threads, cores = threads_asked(), usable_cores()
    if threads is not None and threads < len(cores) and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores[-threads:])


def main() -> None:
    keep_to_cores()
    os.environ["MNIST_WORKER_PRIORITY"] = lower_priority()
    module, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
