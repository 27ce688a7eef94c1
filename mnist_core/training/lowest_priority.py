"""`python -m mnist_core.training.lowest_priority MODULE ARGS...`: run MODULE as the lowest-priority
process of the machine, every thread of it.

A thread's scheduling policy and niceness are inherited by the threads it starts, so they
must change before anything starts one: importing numpy starts OpenBLAS's thread pool, and
TensorFlow starts several more. This module imports nothing that does. How the priority is
lowered on each OS is mnist_core.platform_os.lower_priority: on Linux SCHED_IDLE (the worker
only gets the CPU nobody else wants: the server answering thirty students comes first),
elsewhere, or where that is refused, `nice` or Windows' idle priority class.
"""

from __future__ import annotations

import os
import runpy
import sys

from mnist_core import platform_os
from mnist_core.platform_os import AUTOGROUP_NICE, NICENESS, lower_priority, usable_cores

__all__ = ["AUTOGROUP_NICE", "NICENESS", "WORKER_THREADS_ENV", "lower_priority", "usable_cores"]

WORKER_THREADS_ENV = "MNIST_WORKER_THREADS"  # set by the supervisor: CPU threads to train on


def threads_asked() -> int | None:
    """The CPU threads the supervisor asked this worker to train on, or None (all)."""
    value = os.environ.get(WORKER_THREADS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def keep_to_cores() -> None:
    """When the supervisor limits the worker's threads (visitors are connected), keep the
    whole process, every thread it will start, on that many of the last cores: the first
    stays the server's alone (`mnist_core.training.supervisor.worker_threads`). Where the OS
    has no CPU affinity (macOS), the priority alone keeps the server first."""
    threads, cores = threads_asked(), usable_cores()
    if threads is not None and threads < len(cores):
        platform_os.keep_to(cores[-threads:])


def main() -> None:
    keep_to_cores()
    os.environ["MNIST_WORKER_PRIORITY"] = lower_priority()
    module, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
