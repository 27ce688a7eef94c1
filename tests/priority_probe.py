"""Run by test_launch through mnist_core.training.launch: print every thread's scheduling
policy and niceness after importing numpy (whose BLAS starts threads at import)."""

import json
import os
from pathlib import Path

import numpy  # noqa: F401  (its thread pool is what must inherit the priority)

threads = {}
for task in Path(f"/proc/{os.getpid()}/task").iterdir():
    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
    threads[task.name] = {"nice": int(fields[16]), "policy": int(fields[38])}
print(json.dumps({"threads": threads, "how": os.environ.get("MNIST_WORKER_PRIORITY")}))
