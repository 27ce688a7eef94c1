"""The training worker runs at the lowest priority, every thread of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_core.training import launch

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parent.parent
SCHED_IDLE = 5


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads Linux's /proc")
def test_every_thread_of_the_launched_module_yields_the_cpu():
    result = subprocess.run(
        [sys.executable, "-m", launch.__name__, "tests.priority_probe"], cwd=REPO,
        capture_output=True, text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "2"},
        check=True)
    report = json.loads(result.stdout)
    threads = report["threads"].values()
    assert len(threads) >= 2  # numpy's BLAS pool started threads after the launch
    parent_nice = os.nice(0)
    for thread in threads:
        assert thread["nice"] >= min(19, parent_nice + launch.NICENESS)
        if report["how"] == "SCHED_IDLE":
            assert thread["policy"] == SCHED_IDLE
    assert report["how"] in ("SCHED_IDLE", f"nice {launch.NICENESS}")
