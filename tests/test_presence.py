"""serving.presence: the class's visitors added up over the server processes' files."""

import errno
import json
import os
import subprocess
import sys
import time

import pytest

from serving import presence
from serving.presence import Count, Presence

pytestmark = pytest.mark.unit


def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture()
def live_pid():
    """The pid of a process that runs for the whole test."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process.pid
    process.kill()
    process.wait()


def test_each_process_counts_the_others_and_not_itself(tmp_path, live_pid):
    me, other, third = Presence(tmp_path), Presence(tmp_path, pid=os.getppid()), \
        Presence(tmp_path, pid=live_pid)
    me.publish(Count(5, 4, 100.0))
    other.publish(Count(3, 2, 250.0))
    third.publish(Count(7, 7, None))
    assert me.others() == Count(10, 9, 250.0)
    assert other.others() == Count(12, 11, 100.0)
    assert Count(1, 1, None) + Count(2, 0, 5.0) == Count(3, 1, 5.0)


def test_a_stale_or_dead_process_is_not_counted_and_its_file_goes(tmp_path):
    me, silent, gone = Presence(tmp_path), Presence(tmp_path, pid=os.getppid()), \
        Presence(tmp_path, pid=dead_pid())
    now = 1_000_000.0
    silent.publish(Count(4, 4), now=now - presence.STALE_SECONDS - 1)
    gone.publish(Count(9, 9), now=now)
    assert me.others(now=now) == Count()
    me.publish(Count(1, 0), now=now)  # publishing sweeps the dead process's file
    assert not gone.path.exists() and silent.path.exists()
    me.publish(Count(1, 0), now=now + presence.STALE_SECONDS * 6)
    assert not silent.path.exists()  # long silent: swept too
    me.withdraw()
    assert not me.path.exists() and Presence(tmp_path, pid=os.getppid()).others() == Count()


@pytest.mark.parametrize("text", [
    "", "{", "[]", "null", '"x"', '{"pid": 1}',
    '{"pid": "1", "visitors": 1, "students": 1, "at": 1.0}',
    '{"pid": 1, "visitors": -1, "students": 1, "at": 1.0}',
    '{"pid": 1, "visitors": 1, "students": true, "at": 1.0}',
    '{"pid": 1, "visitors": 1, "students": 1, "at": "now"}',
    '{"pid": 1, "visitors": 1, "students": 1, "at": 1.0, "last_student": "x"}',
    '{"pid": 1, "visitors": 1e400, "students": 1, "at": 1.0}',
    "x" * (presence.MAX_FILE_BYTES + 10),
    '{"pid": PID, "visitors": 1000000, "students": 1, "at": 1.0}',  # more than a process holds
    '{"pid": 99999999999999999999, "visitors": 1, "students": 1, "at": 1.0}',  # os.kill overflows
])
def test_a_junk_file_counts_for_nothing_and_is_swept(tmp_path, text):
    folder = tmp_path / presence.PRESENCE_DIR
    folder.mkdir()
    pid = os.getppid()  # alive: only the file's own faults can make it count for nothing
    name = "99999999999999999999" if "9999999" in text else str(pid)
    text = text.replace('"pid": 1,', f'"pid": {pid},').replace("PID", str(pid))
    text = text.replace('"at": 1.0', f'"at": {time.time()}')
    (folder / f"{name}.json").write_text(text)
    me = Presence(tmp_path)
    assert me.others() == Count()
    me.publish(Count(1, 1))
    assert not (folder / f"{name}.json").exists()


@pytest.mark.parametrize("pid", [0, 1])  # nobody, and init: never a server
def test_no_pid_that_cannot_be_a_server_counts(tmp_path, pid):
    folder = tmp_path / presence.PRESENCE_DIR
    folder.mkdir()
    (folder / f"{pid}.json").write_text(json.dumps(
        {"pid": pid, "visitors": 9, "students": 9, "last_student": None, "at": time.time()}))
    assert Presence(tmp_path).others() == Count()


def test_a_file_dated_in_the_future_is_not_counted_forever(tmp_path):
    other = Presence(tmp_path, pid=os.getppid())
    now = time.time()
    other.publish(Count(30, 30), now=now + 3600)
    assert Presence(tmp_path).others(now=now) == Count()
    Presence(tmp_path).publish(Count(), now=now)
    assert not other.path.exists()


def test_a_file_under_another_process_name_counts_for_nothing(tmp_path):
    folder = tmp_path / presence.PRESENCE_DIR
    folder.mkdir()
    valid = {"pid": 1, "visitors": 30, "students": 30, "last_student": None, "at": 2e9}
    (folder / f"{os.getppid()}.json").write_text(json.dumps(valid))  # says it is pid 1
    (folder / "notes.json").write_text(json.dumps(valid))
    assert Presence(tmp_path).others(now=2e9) == Count()


def test_an_unwritable_folder_raises_and_reading_still_works(tmp_path, monkeypatch):
    other = Presence(tmp_path, pid=os.getppid())
    other.publish(Count(2, 2))

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(presence.os, "replace", refuse)
    me = Presence(tmp_path)
    with pytest.raises(OSError):
        me.publish(Count(1, 1))
    assert not me.path.exists()
    assert [p.name for p in me.folder.iterdir()] == [other.path.name]  # no temporary left
    assert me.others() == Count(2, 2)
    assert Presence(tmp_path / "missing").others() == Count()
