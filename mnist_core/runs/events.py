"""A run's metrics stream, `metrics.jsonl`: the worker appends one event a line, and readers
take the new whole lines (a live page), or a summary of how the run ended (the run list).
The file's name is the run folder's layout's (mnist_core.runs.folder.METRICS)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from mnist_core.runs.record import (
    EndEvent,
    ErrorEvent,
    Event,
    RecordError,
    StartEvent,
    event_to_dict,
    parse_event,
)

MAX_LINE_BYTES = 2**20  # an event is ~200 bytes: a longer "line" is junk
MAX_METRICS_BYTES = 64 * 2**20  # a 50-epoch run writes well under 1 MB of events


def append_event(path: Path, event: Event) -> None:
    """Append one JSON line; a single write of a whole line, so readers see whole lines."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(event_to_dict(event)) + "\n")
        f.flush()


class EventReader:
    """Reads the new complete lines of a metrics.jsonl on each call (a partial last line
    waits for the next call); lines that are not valid events are counted and skipped."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.skipped = 0

    def read_new(self, max_bytes: int = 8 * MAX_LINE_BYTES) -> list[Event]:
        """The events of the complete lines after the last call, reading at most `max_bytes`."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read(max_bytes)
        except OSError:  # not there yet, or not a file: no events
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            if len(chunk) >= MAX_LINE_BYTES:  # no event is that long: skip it, bounded
                self.offset += len(chunk)
                self.skipped += 1
            return []
        self.offset += end + 1
        events = []
        for line in chunk[: end + 1].splitlines():
            try:
                events.append(parse_event(json.loads(line)))
            except (ValueError, RecordError):
                self.skipped += 1  # a damaged line must not hide the rest
        return events


@dataclass(frozen=True)
class EventSummary:
    """What a run's events say about how it ended."""

    started: bool = False
    end: EndEvent | None = None
    error: str | None = None


def summarize(events: list[Event], summary: EventSummary = EventSummary()) -> EventSummary:
    started, end, error = summary.started, summary.end, summary.error
    for event in events:
        if isinstance(event, StartEvent):
            started = True
        elif isinstance(event, EndEvent):
            end = event
        elif isinstance(event, ErrorEvent):
            error = event.message
    return EventSummary(started, end, error)


@functools.lru_cache(maxsize=256)
def _summary_of(path: Path, size: int, mtime_ns: int) -> EventSummary:
    reader, summary = EventReader(path), EventSummary()
    while reader.offset < min(size, MAX_METRICS_BYTES):
        before = reader.offset
        summary = summarize(reader.read_new(), summary)
        if reader.offset == before:
            break  # a last line without its newline
    return summary


def read_summary(path: Path) -> EventSummary:
    """The summary of a run's metrics.jsonl at `path`, re-read only when the file changed."""
    try:
        stat = path.stat()
    except OSError:
        return EventSummary()
    return _summary_of(path, stat.st_size, stat.st_mtime_ns)
