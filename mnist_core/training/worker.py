"""The training worker process: `python -m mnist_core.training.worker MODELS/.RUN_ID`.

Started by `mnist_core.training.supervisor.Trainer` with a prepared run folder, through
`mnist_core.training.lowest_priority`, which has already made it the machine's lowest-priority
process (thirty students' predictions come before a few percent of training speed). Then:
1. take the models folder's training lease (lease.py) and keep it for life;
2. publish who it is (training.json) and give the run folder its visible name;
3. only then import TensorFlow (several seconds) and train (fit.py);
4. remove training.json and let the lease go.
Never imported by the app's server process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from mnist_core import platform_os
from mnist_core.runs import events, folder
from mnist_core.runs.lease import LeaseBusy, TrainingLease
from mnist_core.runs.record import ErrorEvent, RecordError, read_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prepared", type=Path, help="the run folder under its hidden name")
    args = parser.parse_args(argv)
    prepared: Path = args.prepared
    root, run_id = prepared.parent, prepared.name.lstrip(".")
    lease = TrainingLease(root)
    try:
        config = read_config(prepared / folder.CONFIG)
        lock = lease.hold()
    except (RecordError, LeaseBusy) as exc:
        print(f"not started: {exc}", file=sys.stderr)
        return 2
    try:
        lease.publish(run_id, config)
        run_dir = root / run_id
        # Its own output, worker.log, is open in the folder: Windows renames none such.
        platform_os.rename_with_output(prepared, run_dir, folder.WORKER_LOG)
        return train_logged(run_dir)
    finally:
        lease.end(lock)


def train_logged(run_dir: Path) -> int:
    """Train, turning any exception into an error event the pages show to the teacher."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep the log readable for teachers
    try:
        from mnist_core.training import fit  # TensorFlow: after the lease

        fit.train(run_dir)
    except Exception as exc:
        traceback.print_exc()
        events.append_event(run_dir / folder.METRICS,
                            ErrorEvent(f"{type(exc).__name__}: {exc}", time.time()))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
