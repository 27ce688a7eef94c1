"""The files of one training run, shared by the worker (writer) and the app (reader).

    <models dir>/<run id>/
        config.json     TrainConfig, written by whoever starts the run
        worker.json     the worker's pid, once it runs
        metrics.jsonl   one JSON event a line, appended while training
        stop            present = please stop after the current batch
        model.keras     the trained model (float32), for Keras: fine-tuning, export
        model.onnx      the same model, for serving with ONNX Runtime
        drawings.npz    a fine-tune's copy of the class's drawings, taken when it starts
        record.json     written last: config, device, timings, metrics, history, evaluation

Every file but metrics.jsonl is written to a temporary name and renamed, so a reader never
sees half a file and a run without record.json was never finished.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_DIR / "models"

CONFIG = "config.json"
WORKER = "worker.json"
METRICS = "metrics.jsonl"
STOP = "stop"
KERAS_FILE = "model.keras"
ONNX_FILE = "model.onnx"
RECORD = "record.json"
STDERR = "worker.log"
DRAWINGS = "drawings.npz"  # a fine-tune's snapshot of the class's drawings


def models_dir() -> Path:
    """Where runs are kept: `MNIST_MODELS_DIR`, default `models/` in the repository."""
    return Path(os.environ.get("MNIST_MODELS_DIR") or DEFAULT_MODELS_DIR).expanduser()


def new_run_id(now: float | None = None) -> str:
    """Sortable by time, unique within a folder: 20261123-203512-4f2a."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"{stamp}-{os.urandom(2).hex()}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, value) -> None:
    atomic_write_bytes(path, json.dumps(value, indent=1).encode())


def append_event(path: Path, event: dict) -> None:
    """Append one JSON line; a single write of a whole line, so readers see whole lines."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")
        f.flush()


class EventReader:
    """Reads new complete lines of a metrics.jsonl on each call (a partial last line waits)."""

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0

    def read_new(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self._offset += end + 1
        events = []
        for line in chunk[: end + 1].splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a damaged line must not hide the rest
        return events


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
