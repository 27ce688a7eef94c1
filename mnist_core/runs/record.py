"""What crosses a run folder, typed: the config, the metric events and the run's record.

Every file a run folder holds is parsed here, once, into a frozen dataclass; anything else
raises `RecordError` with a sentence that says which field is wrong. The worker writes with
`to_dict()`; every reader (pages, CLI, supervisor) uses attributes, never dict keys.
"""

from __future__ import annotations

import json
import math
import typing
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar, Literal

from mnist_core.config import TrainConfig
from mnist_core.data import NUM_CLASSES
from mnist_core.evaluate import Evaluation, Mistake

# Every status a run can have; `run_status` in mnist_core.runs.folder decides which.
Status = Literal["starting", "running", "stopping", "finished", "stopped", "failed",
                 "interrupted", "unreadable"]
SAVED_STATUSES = ("finished", "stopped")  # a stopped run kept its completed epochs
ACTIVE_STATUSES = ("starting", "running", "stopping")
MAX_JSON_BYTES = 16 * 2**20  # a record holds every mistake: ~1 MB at worst for 10000 images


class RecordError(ValueError):
    """A file of a run folder is missing, unreadable or not what this version writes."""


def _scalar(value, kind: type, where: str):
    if kind is bool:
        if not isinstance(value, bool):
            raise RecordError(f"{where} must be true or false, got {value!r}")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(f"{where} must be a number, got {value!r}")
        if kind is int and not (math.isfinite(value) and value == int(value)):
            raise RecordError(f"{where} must be a whole number, got {value!r}")
        return kind(value)  # a float may be NaN: a diverged training's loss is
    if kind is str:
        if not isinstance(value, str):
            raise RecordError(f"{where} must be text, got {value!r}")
        return value
    raise TypeError(f"no reader for {kind}")  # a programming error, not a file's


def _object(values, where: str) -> dict:
    if not isinstance(values, dict):
        raise RecordError(f"{where} must be a JSON object, got {type(values).__name__}")
    return values


def parse_fields(cls, values, where: str, **nested):
    """Build the dataclass `cls` from a JSON object, checking each field's type.

    Scalar fields (int, float, str, bool, optionally None) are checked from the type hints;
    `nested` gives a parser for each other field. Keys the class does not know are ignored,
    so a newer version's extra fields do no harm; a missing field without a default fails.
    """
    values = _object(values, where)
    hints = typing.get_type_hints(cls)
    out = {}
    for f in fields(cls):
        if not f.init:
            continue
        if f.name not in values:
            if f.default is MISSING and f.default_factory is MISSING:
                raise RecordError(f"{where}: missing {f.name!r}")
            continue
        value = values[f.name]
        if f.name in nested:
            out[f.name] = nested[f.name](value, f"{where}: {f.name}")
            continue
        args = typing.get_args(hints[f.name])
        optional = type(None) in args
        if value is None and optional:
            out[f.name] = None
            continue
        kind = next((a for a in args if a is not type(None)), hints[f.name]) if args else hints[f.name]
        out[f.name] = _scalar(value, kind, f"{where}: {f.name}")
    return cls(**out)


def require(value, where: str, finite: tuple[str, ...] = (), minimum: dict | None = None):
    """`value` (a parsed dataclass) with its `finite` fields finite numbers and each field of
    `minimum` at least its bound (None passes both: an optional field left out)."""
    for name in finite:
        number = getattr(value, name)
        if number is not None and not math.isfinite(number):
            raise RecordError(f"{where}: {name} must be a finite number, got {number!r}")
    for name, low in (minimum or {}).items():
        number = getattr(value, name)
        if number is not None and number < low:
            raise RecordError(f"{where}: {name} must be at least {low}, got {number!r}")
    return value


def read_json(path: Path):
    """A JSON file's value; RecordError naming the file when it is missing, empty or broken."""
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise RecordError(f"{path.name} is {size:,} bytes, more than a run ever writes")
        text = path.read_bytes()
    except FileNotFoundError:
        raise RecordError(f"no {path.name}") from None
    except OSError as exc:
        raise RecordError(f"{path.name} cannot be read ({exc.strerror})") from None
    if not text.strip():
        raise RecordError(f"{path.name} is empty")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RecordError(f"{path.name} is corrupt ({exc})") from None


def parse_config(values, where: str = "config.json") -> TrainConfig:
    values = _object(values, where)
    try:
        return TrainConfig.from_dict(values)
    except (TypeError, ValueError, OverflowError) as exc:
        raise RecordError(f"{where}: {exc}") from None


def read_config(path: Path) -> TrainConfig:
    return parse_config(read_json(path), path.name)


# Metric events: one JSON object a line in metrics.jsonl, tagged by "event".

@dataclass(frozen=True)
class StartEvent:
    """TensorFlow is up and the first batch is about to train."""

    kind: ClassVar[str] = "start"
    device: str  # "AMD EPYC (2 cores)", "NVIDIA A100"
    device_kind: str  # CPU or GPU
    strategy: str  # the tf.distribute strategy's class name
    precision: str  # float32 or mixed_bfloat16
    steps_per_epoch: int
    t: float  # unix time


@dataclass(frozen=True)
class BatchEvent:
    kind: ClassVar[str] = "batch"
    epoch: int  # 0-based
    batch: int  # batches done in this epoch, 1-based
    step: int  # batches done in the whole run
    loss: float  # Keras's running mean over the epoch so far
    accuracy: float
    t: float


@dataclass(frozen=True)
class EpochEvent:
    kind: ClassVar[str] = "epoch"
    epoch: int  # 0-based
    complete: bool  # False for an epoch cut short by Stop
    seconds: float
    t: float
    loss: float | None = None
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None


@dataclass(frozen=True)
class EndEvent:
    kind: ClassVar[str] = "end"
    status: str  # finished or stopped
    saved: bool  # False: stopped before the first epoch ended
    t: float
    val_accuracy: float | None = None


@dataclass(frozen=True)
class ErrorEvent:
    kind: ClassVar[str] = "error"
    message: str
    t: float


Event = StartEvent | BatchEvent | EpochEvent | EndEvent | ErrorEvent
EVENT_TYPES = {cls.kind: cls for cls in (StartEvent, BatchEvent, EpochEvent, EndEvent, ErrorEvent)}
# What the pages compute with (elapsed time, ETA, progress) must be finite and in range;
# a loss or accuracy may be NaN (a diverged training's is).
EVENT_BOUNDS = {
    StartEvent: (("t",), {"steps_per_epoch": 1}),
    BatchEvent: (("t",), {"epoch": 0, "batch": 0, "step": 0}),
    EpochEvent: (("t", "seconds"), {"epoch": 0, "seconds": 0}),
    EndEvent: (("t",), {}),
    ErrorEvent: (("t",), {}),
}


def event_to_dict(event: Event) -> dict:
    return {"event": event.kind, **asdict(event)}


def parse_event(values) -> Event:
    values = _object(values, "event")
    cls = EVENT_TYPES.get(values.get("event"))
    if cls is None:
        raise RecordError(f"unknown event {values.get('event')!r}")
    finite, minimum = EVENT_BOUNDS[cls]
    where = f"{cls.kind} event"
    return require(parse_fields(cls, values, where), where, finite, minimum)


# The record: written last by the worker, so a run with a valid record.json was saved.

@dataclass(frozen=True)
class FineTuneResult:
    """What a fine-tune learned from the class's drawings (its parent is config.fine_tune_from)."""

    drawings_train: int
    drawings_holdout: int  # every 5th drawing, kept out to measure the gain
    drawings_repeats: int = 0  # how often each training drawing was repeated per epoch
    accuracy_before: float | None = None  # the parent run on the held-out drawings
    accuracy_after: float | None = None  # this run on the same drawings

    @property
    def gain(self) -> float | None:
        if self.accuracy_before is None or self.accuracy_after is None:
            return None
        return self.accuracy_after - self.accuracy_before


def _floats(value, where: str) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise RecordError(f"{where} must be a list of numbers")
    return tuple(_scalar(v, float, where) for v in value)


def _history(value, where: str) -> dict[str, tuple[float, ...]]:
    return {str(k): _floats(v, f"{where}: {k}") for k, v in _object(value, where).items()}


def _matrix(value, where: str) -> tuple[tuple[int, ...], ...]:
    if not isinstance(value, list) or len(value) != NUM_CLASSES:
        raise RecordError(f"{where} must be {NUM_CLASSES} rows")
    rows = tuple(tuple(int(v) for v in _floats(row, where)) for row in value)
    if any(len(row) != NUM_CLASSES for row in rows):
        raise RecordError(f"{where} must be {NUM_CLASSES}x{NUM_CLASSES}")
    return rows


def _mistakes(value, where: str) -> tuple[Mistake, ...]:
    if not isinstance(value, list):
        raise RecordError(f"{where} must be a list")
    return tuple(parse_fields(Mistake, v, where) for v in value)


def parse_evaluation(value, where: str) -> Evaluation:
    evaluation = parse_fields(Evaluation, value, where, confusion_matrix=_matrix,
                              per_class_accuracy=_floats, misclassified=_mistakes)
    if len(evaluation.per_class_accuracy) != NUM_CLASSES:
        raise RecordError(f"{where}: per_class_accuracy must have {NUM_CLASSES} values")
    if not math.isfinite(evaluation.accuracy) or not 0 <= evaluation.accuracy <= 1:
        raise RecordError(f"{where}: accuracy must be from 0 to 1, got {evaluation.accuracy}")
    return evaluation


def _fine_tune(value, where: str) -> FineTuneResult | None:
    return None if value is None else parse_fields(FineTuneResult, value, where)


@dataclass(frozen=True)
class RunRecord:
    """record.json: how a saved run was trained and how it did on x_valid."""

    run_id: str
    status: str  # finished or stopped (see SAVED_STATUSES)
    config: TrainConfig
    device: str
    device_kind: str
    strategy: str
    precision: str
    started: float  # unix time the worker started
    finished: float  # unix time the model was saved
    fit_seconds: float
    epochs_completed: int
    history: dict[str, tuple[float, ...]]  # Keras's History: loss, accuracy, val_loss, ...
    evaluation: Evaluation  # on (x_valid, y_valid)
    params: int
    tensorflow: str
    keras: str
    fine_tune: FineTuneResult | None = None

    @property
    def parent(self) -> str | None:
        """The run this one was fine-tuned from."""
        return self.config.fine_tune_from

    @property
    def finite(self) -> bool:
        """False when the saved model's last loss or accuracy is not a number: the training
        diverged, and its predictions are no use."""
        return math.isfinite(self.evaluation.accuracy) and all(
            math.isfinite(values[-1]) for values in self.history.values() if values)

    def to_dict(self) -> dict:
        return {**asdict(self), "config": self.config.to_dict()}


def parse_record(values, where: str = "record.json") -> RunRecord:
    record = parse_fields(RunRecord, values, where, config=parse_config, history=_history,
                          evaluation=parse_evaluation, fine_tune=_fine_tune)
    if record.status not in SAVED_STATUSES:
        raise RecordError(f"{where}: status must be finished or stopped, got {record.status!r}")
    return require(record, where, finite=("started", "finished", "fit_seconds"),
                   minimum={"fit_seconds": 0, "epochs_completed": 0, "params": 0})


def read_record(path: Path) -> RunRecord:
    return parse_record(read_json(path), path.name)
