"""Who is connected to the class, added up over every server process of the models folder.

A class may be served by several processes on one port (serving.launch), each holding the
sessions of the devices it answers. Each says every few seconds how many it holds in its own
small file; the teacher's count of students, how often a big class's pages refresh, and how
many cores a training may take use the sum.

    <models dir>/.servers/<pid>.json   {"pid": ..., "visitors": 3, "students": 2,
                                        "last_student": 1764950000.0, "at": 1764950004.2}

A file older than STALE_SECONDS (or dated in the future), or of a process that no longer
runs, is not counted (and is removed by the next publish): a killed process's visitors do
not linger. Students cannot write here; the checks are for junk a crash or a person left.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from mnist_core import platform_os
from mnist_core.runs.folder import atomic_write_bytes

log = logging.getLogger(__name__)

PRESENCE_DIR = ".servers"
PUBLISH_EVERY = 2.0  # seconds
STALE_SECONDS = 10.0  # five missed publishes
MAX_FILES = 256  # more processes than any machine runs: the rest is junk, not read
MAX_FILE_BYTES = 4096
MAX_PID = 2**22  # Linux's highest pid_max
MAX_COUNT = 100_000  # more visitors than one process could hold: junk


@dataclass(frozen=True)
class Count:
    """Visitors (browser tabs, teachers included) and students connected; when a student
    was last seen (time.time(), None if never)."""

    visitors: int = 0
    students: int = 0
    last_student: float | None = None

    def __add__(self, other: Count) -> Count:
        seen = [t for t in (self.last_student, other.last_student) if t is not None]
        return Count(self.visitors + other.visitors, self.students + other.students,
                     max(seen) if seen else None)


def _parse(text: str) -> tuple[int, Count, float] | None:
    """(pid, count, at) from a presence file's text; None for anything malformed."""
    try:
        value = json.loads(text)
        pid, at = value["pid"], value["at"]
        count = Count(value["visitors"], value["students"], value.get("last_student"))
    except (ValueError, TypeError, KeyError):
        return None
    numbers = (count.visitors, count.students)
    if not all(type(n) is int and 0 <= n <= MAX_COUNT for n in numbers):
        return None
    if not (type(pid) is int and 1 < pid <= MAX_PID and isinstance(at, float)):
        return None  # pid 1 is init, never a server
    if count.last_student is not None and not isinstance(count.last_student, float):
        return None
    return pid, count, at


class Presence:
    """This process's presence file in `root` (the models folder), and the others'."""

    def __init__(self, root: Path, pid: int | None = None):
        self.folder = Path(root) / PRESENCE_DIR
        self.pid = os.getpid() if pid is None else pid
        self.path = self.folder / f"{self.pid}.json"

    def publish(self, count: Count, now: float | None = None) -> None:
        """Write this process's count (atomically); remove files of dead or stale processes.
        Raises OSError when the folder cannot be written."""
        now = time.time() if now is None else now
        text = json.dumps({"pid": self.pid, "visitors": count.visitors,
                           "students": count.students, "last_student": count.last_student,
                           "at": float(now)})
        atomic_write_bytes(self.path, text.encode(), durable=False)
        self._remove_gone(now)

    def withdraw(self) -> None:
        """This process stops serving: its visitors are no longer counted."""
        self.path.unlink(missing_ok=True)

    def others(self, now: float | None = None) -> Count:
        """The sum of the other live processes' fresh counts."""
        total = Count()
        for pid, count, _ in self._entries(time.time() if now is None else now):
            if pid != self.pid:
                total += count
        return total

    def _entries(self, now: float) -> list[tuple[int, Count, float]]:
        fresh = []
        for path in self._files():
            entry = self._read(path)
            if entry and abs(now - entry[2]) <= STALE_SECONDS and platform_os.pid_alive(entry[0]):
                fresh.append(entry)
        return fresh

    def _files(self) -> list[Path]:
        try:
            with os.scandir(self.folder) as entries:
                names = [e.name for e in entries if e.name.endswith(".json")
                         and e.name[:-5].isdigit()]
        except OSError:
            return []
        return [self.folder / name for name in sorted(names)[:MAX_FILES]]

    @staticmethod
    def _read(path: Path) -> tuple[int, Count, float] | None:
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError:
            return None
        if len(data) > MAX_FILE_BYTES:
            return None
        entry = _parse(data.decode("utf-8", "replace"))
        if entry is not None and path.name != f"{entry[0]}.json":
            return None  # a file claiming another process's name
        return entry

    def _remove_gone(self, now: float) -> None:
        for path in self._files():
            entry = self._read(path)
            gone = entry is None or (entry[0] != self.pid and (
                abs(now - entry[2]) > STALE_SECONDS * 6 or not platform_os.pid_alive(entry[0])))
            if gone:
                try:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass
