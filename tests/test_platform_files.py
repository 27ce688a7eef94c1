"""Files and locks on each OS: the lease's lock probe (POSIX shared flock, portable filelock),
and what Windows does differently simulated: a replace or rename refused for a moment (an
antivirus scanner, a reader with the file open), or for good (then a sentence naming the
file), and a folder that holds the process's own open output."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mnist_core import platform_os
from mnist_core.config import TrainConfig
from mnist_core.runs import folder
from mnist_core.runs.lease import TrainingLease
from mnist_core.runs.store import ModelStore
from tests.foreign_os import tier
from tests.test_record import RUN_ID, finished_run

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["posix flock", "portable filelock"])
def probe_branch(request, monkeypatch):
    """Each way lock_is_held probes: `fcntl` hidden, as on Windows, for the portable one."""
    if request.param == "portable filelock":
        monkeypatch.setitem(sys.modules, "fcntl", None)  # import fcntl -> ImportError
    elif sys.platform == "win32":
        pytest.skip("no fcntl on Windows")
    return request.param


HOLD = "import sys; from mnist_core.runs.lease import TrainingLease; " \
       "lock = TrainingLease(sys.argv[1]).hold(); print('held', flush=True); sys.stdin.read()"


def test_a_lock_held_by_another_process_is_seen_held_until_it_ends(tmp_path, probe_branch):
    lease = TrainingLease(tmp_path)
    assert not lease.held()  # no lock file yet: nobody ever trained here
    assert not (tmp_path / folder.LEASE_LOCK).exists()  # and probing created none
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=tier.python_env(REPO))
    try:
        assert holder.stdout.readline().strip() == "held"
        assert lease.held() and lease.held()  # a probe does not take it from the holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not lease.held()


def test_a_lock_this_process_holds_is_seen_held(tmp_path, probe_branch):
    lease = TrainingLease(tmp_path)
    lock = lease.hold()
    try:
        assert lease.held()
    finally:
        lock.release()
    assert not lease.held()


# Windows refuses a replace or a rename while another program has the file open


class Refusing:
    """os.replace or os.rename refusing `times` times as Windows does, then the real one."""

    def __init__(self, real, times: int):
        self.real, self.times, self.calls = real, times, 0

    def __call__(self, source, target):
        self.calls += 1
        if self.calls <= self.times:
            raise PermissionError(errno.EACCES, "The process cannot access the file because "
                                  "it is being used by another process", str(target))
        return self.real(source, target)


@pytest.fixture()
def no_pause(monkeypatch):
    monkeypatch.setattr(platform_os, "REPLACE_PAUSE_SECONDS", 0.001)


def test_an_atomic_write_waits_out_a_scanner_holding_the_file(tmp_path, monkeypatch, no_pause):
    target = tmp_path / "current.json"
    target.write_text("{}", encoding="utf-8")
    refusing = Refusing(os.replace, times=3)
    monkeypatch.setattr(os, "replace", refusing)
    folder.atomic_write_json(target, {"run_id": RUN_ID, "note": "épreuve"})
    assert refusing.calls == 4
    assert json.loads(target.read_text(encoding="utf-8"))["note"] == "épreuve"
    assert [p.name for p in tmp_path.iterdir()] == ["current.json"]  # no temporary left


def test_a_file_held_for_good_is_named_in_a_sentence(tmp_path, monkeypatch, no_pause):
    target = tmp_path / "current.json"
    target.write_text("{}", encoding="utf-8")
    monkeypatch.setattr(os, "replace", Refusing(os.replace, times=10**6))
    with pytest.raises(platform_os.FileLocked) as caught:
        folder.atomic_write_json(target, {"run_id": RUN_ID})
    assert str(target) in caught.value.strerror and "antivirus" in caught.value.strerror
    assert target.read_text(encoding="utf-8") == "{}"  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["current.json"]
    message = folder.cannot_write(tmp_path, caught.value, "the model cannot be chosen")
    assert message.startswith(f"{target} is kept open by another program")
    assert message.endswith("so the model cannot be chosen.") and "read-only" not in message


def test_posix_never_waits_on_other_errors(tmp_path, monkeypatch):
    calls = []

    def missing(source, target):
        calls.append(target)
        raise FileNotFoundError(errno.ENOENT, "gone", str(source))

    monkeypatch.setattr(os, "replace", missing)
    with pytest.raises(FileNotFoundError):
        platform_os.replace(tmp_path / "a", tmp_path / "b")
    assert len(calls) == 1


def test_deleting_a_run_a_reader_holds_open_for_a_moment_deletes_it(tmp_path, monkeypatch,
                                                                    no_pause):
    root = tmp_path / "models"
    run = finished_run(root)
    refusing = Refusing(os.rename, times=2)
    monkeypatch.setattr(os, "rename", refusing)
    assert ModelStore(root).delete(RUN_ID)
    assert not run.exists() and refusing.calls == 3


def test_a_run_folder_held_open_for_good_is_not_deleted_and_says_why(tmp_path, monkeypatch,
                                                                      no_pause):
    root = tmp_path / "models"
    run = finished_run(root)
    monkeypatch.setattr(os, "rename", Refusing(os.rename, times=10**6))
    with pytest.raises(platform_os.FileLocked, match="kept open by another program"):
        ModelStore(root).delete(RUN_ID)
    assert run.is_dir() and ModelStore(root).get(RUN_ID) is not None


def test_the_worker_renaming_its_folder_waits_out_a_stop_request_being_written(
        tmp_path, monkeypatch, no_pause):
    """A server touching `stop` in `.<run id>/` at the moment the worker renames it: Windows
    refuses the rename for that moment."""
    prepared = folder.prepare_run(tmp_path, TrainConfig(epochs=1))
    (prepared / folder.STOP).touch()
    refusing = Refusing(os.rename, times=2)
    monkeypatch.setattr(os, "rename", refusing)
    run_dir = tmp_path / prepared.name[1:]
    platform_os.rename(prepared, run_dir)
    assert (run_dir / folder.STOP).exists() and refusing.calls == 3


# The worker's own output is open in the folder it renames

RENAMER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import psutil
    from mnist_core import platform_os
    source, target, report = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    real_rename = platform_os.rename
    def rename(a, b):  # Windows refuses while a file below `a` is open: is one?
        held = [f.path for f in psutil.Process().open_files() if Path(a) in Path(f.path).parents]
        report.write_text(repr(held), encoding="utf-8")
        real_rename(a, b)
    platform_os.rename = rename
    print("before the rename", flush=True)
    platform_os.rename_with_output(source, target, "worker.log")
    print("after the rename", flush=True)
    os.system(f'"{sys.executable}" -c "print(42)"')  # a child process inherits the new log
""")


def test_the_worker_renames_the_folder_holding_its_own_output(tmp_path):
    source, target, report = tmp_path / ".run", tmp_path / "run", tmp_path / "open.txt"
    source.mkdir()
    with open(source / "worker.log", "wb") as log:
        subprocess.run([sys.executable, "-c", RENAMER, str(source), str(target), str(report)],
                       cwd=REPO,
                       stdout=log, stderr=subprocess.STDOUT, check=True,
                       env=tier.python_env(REPO))
    text = (target / "worker.log").read_text(encoding="utf-8")
    assert text.splitlines() == ["before the rename", "after the rename", "42"]
    assert report.read_text(encoding="utf-8") == "[]"  # its output was not open meanwhile
    assert not source.exists()


def test_a_refused_rename_leaves_the_output_and_the_error_in_the_old_folder(tmp_path):
    source, target = tmp_path / ".run", tmp_path / "run"
    source.mkdir()
    target.mkdir()
    (target / "taken").touch()  # a non-empty folder by that name: the rename fails
    code = ("import sys; from pathlib import Path; from mnist_core import platform_os\n"
            "platform_os.rename_with_output(Path(sys.argv[1]), Path(sys.argv[2]), 'worker.log')")
    with open(source / "worker.log", "wb") as log:
        result = subprocess.run([sys.executable, "-c", code, str(source), str(target)],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env=tier.python_env(REPO))
    assert result.returncode != 0
    assert "OSError" in (source / "worker.log").read_text(encoding="utf-8")
