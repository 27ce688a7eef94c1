"""Run by test_launch through mnist_core.training.lowest_priority: print every thread's scheduling
policy, niceness and cores after importing numpy (whose BLAS starts threads at import), and
its session's autogroup (Linux: "/autogroup-N nice K")."""

import json
import os
import threading
from pathlib import Path

import numpy  # noqa: F401  (its thread pool is what must inherit the priority)

done = threading.Event()
# A thread of our own, started after the launch (a daemon: a failure below still exits).
threading.Thread(target=done.wait, daemon=True).start()
threads = {}
for task in Path(f"/proc/{os.getpid()}/task").iterdir():
    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
    threads[task.name] = {"nice": int(fields[16]), "policy": int(fields[38]),
                          "cores": sorted(os.sched_getaffinity(int(task.name)))}
autogroup = Path("/proc/self/autogroup")
print(json.dumps({"threads": threads, "how": os.environ.get("MNIST_WORKER_PRIORITY"),
                  "autogroup": autogroup.read_text().strip() if autogroup.exists() else None}))
done.set()
