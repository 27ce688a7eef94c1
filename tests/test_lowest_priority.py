"""The training worker runs at the lowest priority, every thread of it, and off the
server's core while visitors are connected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_core.training import lowest_priority as launch
from mnist_core.training.lowest_priority import WORKER_THREADS_ENV
from mnist_core.training.supervisor import worker_threads

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parent.parent
SCHED_IDLE = 5


def probe(own_session: bool = True, **env) -> dict:
    """Launch tests.priority_probe as the supervisor launches the worker (in a session of
    its own); its report."""
    result = subprocess.run(
        [sys.executable, "-m", launch.__name__, "tests.priority_probe"], cwd=REPO,
        capture_output=True, text=True, start_new_session=own_session,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "2", **env}, check=True, timeout=120)
    return json.loads(result.stdout)


def autogroup_nice(text: str) -> int:
    return int(text.rsplit("nice", 1)[1])


AUTOGROUP = Path("/proc/self/autogroup")
# What these tests measure is Linux's scheduler, which the foreign-OS tier hides (the portable
# way is tests/test_platform_os.py's).
LINUX_SCHEDULER = all(hasattr(os, name) for name in ("sched_setscheduler", "sched_getaffinity",
                                                     "getsid"))
linux_scheduler = pytest.mark.skipif(not LINUX_SCHEDULER,
                                     reason="Linux's scheduler (hidden in the foreign-OS tier)")


@linux_scheduler
@pytest.mark.skipif(not AUTOGROUP.exists(), reason="this kernel groups no sessions (autogroup)")
def test_the_workers_session_yields_to_the_servers_and_no_other_session_is_touched():
    # Linux shares the CPU between sessions before threads: a SCHED_IDLE worker in a session
    # of its own still took half of a busy server's core until its session was lowered.
    # An empty file means this session sits in the root group, not an autogroup (a session
    # made while autogroup was off, or one in a CPU cgroup of its own): so it is on some CI.
    mine = AUTOGROUP.read_text()
    report = probe()
    assert report["how"].endswith(f", session nice {launch.AUTOGROUP_NICE}")
    assert autogroup_nice(report["autogroup"]) == launch.AUTOGROUP_NICE
    assert report["autogroup"].split()[0] not in mine.split()  # its own group, not ours
    inside = probe(own_session=False)  # launched from inside this session: left alone
    assert "session nice" not in inside["how"]
    assert inside["autogroup"] == mine.strip() and AUTOGROUP.read_text() == mine


@linux_scheduler
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads Linux's /proc")
def test_every_thread_of_the_launched_module_yields_the_cpu():
    report = probe()
    threads = report["threads"].values()
    assert len(threads) >= 2  # numpy's BLAS pool started threads after the launch
    parent_nice = os.nice(0)
    for thread in threads:
        assert thread["nice"] >= min(19, parent_nice + launch.NICENESS)
        if report["how"].startswith("SCHED_IDLE"):
            assert thread["policy"] == SCHED_IDLE
    assert report["how"].split(",")[0] in ("SCHED_IDLE", f"nice {launch.NICENESS}")


def test_visitors_connected_leave_the_server_a_core():
    assert worker_threads(visitors=0, cores=8) is None  # alone: every core trains
    assert worker_threads(visitors=1, cores=8) == 7
    assert worker_threads(visitors=300, cores=2) == 1
    assert worker_threads(visitors=30, cores=1) is None  # one core: nothing to leave


@linux_scheduler
@pytest.mark.skipif(not Path("/proc/self/task").exists() or len(launch.usable_cores()) < 2,
                    reason="reads Linux's /proc; needs two cores to leave one")
def test_a_worker_limited_to_n_threads_keeps_every_thread_off_the_first_core():
    cores = launch.usable_cores()
    limited = probe(**{WORKER_THREADS_ENV: str(len(cores) - 1)})["threads"].values()
    assert len(limited) >= 2
    for thread in limited:
        assert thread["cores"] == cores[1:]
    for thread in probe()["threads"].values():
        assert thread["cores"] == cores
