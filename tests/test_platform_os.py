"""mnist_core.platform_os on each branch: the portable way, the Linux refinement where this
machine has it, and Windows' and macOS' differences simulated (no such machine runs these
tests: see the README's "Which OSes are tested")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from mnist_core import platform_os
from mnist_core.config import TrainConfig
from mnist_core.devices import cannot_train
from mnist_core.runs.lease import TrainingLease
from mnist_core.training.supervisor import StartFailed, Trainer
from tests.foreign_os import tier

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parent.parent
DEADLINE_SECONDS = 20


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture()
def windows(monkeypatch):
    """platform_os takes its Windows branches (the rest of Python stays as it is)."""
    monkeypatch.setattr(platform_os, "is_windows", lambda: True)


@pytest.fixture()
def no_killpg(monkeypatch):
    """An OS without process groups to kill at once (Windows)."""
    monkeypatch.delattr(os, "killpg", raising=False)


# Starting detached


def test_windows_starts_the_worker_in_a_process_group_and_console_of_its_own(windows):
    flags = platform_os.detached()["creationflags"]
    assert flags & platform_os.CREATE_NEW_PROCESS_GROUP and flags & platform_os.CREATE_NO_WINDOW
    assert "start_new_session" not in platform_os.detached()


def test_the_supervisor_starts_the_worker_detached_with_utf8_output(windows, monkeypatch,
                                                                     tmp_path):
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda args, **kw: started.append((args, kw)))
    prepared = tmp_path / ".run"
    prepared.mkdir()
    Trainer(tmp_path)._spawn(prepared)
    (args, kwargs), = started
    assert args[1:] == ["-m", "mnist_core.training.lowest_priority", "mnist_core.training.worker",
                        str(prepared)]
    assert kwargs["creationflags"] & platform_os.CREATE_NEW_PROCESS_GROUP
    assert "start_new_session" not in kwargs and kwargs["env"]["PYTHONIOENCODING"] == "utf-8"


@pytest.mark.skipif(not hasattr(os, "getsid"), reason="POSIX sessions")
def test_posix_starts_the_worker_in_a_session_of_its_own():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             **platform_os.detached())
    try:
        assert os.getsid(child.pid) == child.pid != os.getsid(0)
    finally:
        child.kill()
        child.wait()


# Stopping a process tree

# A venv's python.exe on Windows: a launcher whose child is the interpreter that trains and
# holds the lease. Here: a parent python whose child takes the lease and says so.
LAUNCHER = textwrap.dedent("""
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
    print(child.pid, flush=True)
    time.sleep(60)
""")
HOLDER = textwrap.dedent("""
    import sys, time
    from mnist_core.runs.lease import TrainingLease
    lock = TrainingLease(sys.argv[1]).hold()
    time.sleep(60)
""")


def start_launcher_and_worker(root: Path) -> tuple[subprocess.Popen, int]:
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, HOLDER, str(root)], cwd=REPO,
                                stdout=subprocess.PIPE, text=True, **platform_os.detached(),
                                env=tier.python_env(REPO))
    worker_pid = int(launcher.stdout.readline())
    wait_until(TrainingLease(root).held, "the worker to hold the lease")
    return launcher, worker_pid


@pytest.mark.parametrize("branch", ["portable", "linux"])
def test_stopping_stops_the_whole_tree_and_frees_the_lease(tmp_path, monkeypatch, branch):
    if branch == "portable":
        monkeypatch.delattr(os, "killpg", raising=False)
    elif not hasattr(os, "killpg"):
        pytest.skip("no process groups on this OS")
    launcher, worker_pid = start_launcher_and_worker(tmp_path)
    try:
        assert platform_os.kill_tree(launcher.pid)
        launcher.wait(timeout=DEADLINE_SECONDS)
        wait_until(lambda: not psutil.pid_exists(worker_pid)
                   or psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE,
                   "the worker below the launcher to end")
        # No orphan keeps the lease: it comes free (the kernel releases a killed process's
        # locks a moment after it shows as ended, so poll for it; an orphan never would).
        wait_until(lambda: not TrainingLease(tmp_path).held(), "the lease to come free")
    finally:
        for pid in (launcher.pid, worker_pid):
            if psutil.pid_exists(pid):
                psutil.Process(pid).kill()


def test_a_tree_is_stopped_even_when_a_child_left_its_group(no_killpg):
    code = ("import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', "
            "'import time; time.sleep(60)'], start_new_session=True); print(c.pid, flush=True);"
            " time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              **platform_os.detached())
    child_pid = int(parent.stdout.readline())
    assert platform_os.kill_tree(parent.pid)
    parent.wait(timeout=DEADLINE_SECONDS)
    wait_until(lambda: not psutil.pid_exists(child_pid)
               or psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE, "the child to end")


@pytest.mark.parametrize("pid", [-1, 0, 1])
def test_pids_that_name_every_process_or_init_are_never_killed(pid):
    with pytest.raises(platform_os.NotAWorker):
        platform_os.check_killable(pid)
    assert platform_os.kill_tree(pid) is False


def test_this_process_and_its_parents_are_never_killed(monkeypatch):
    killed = []
    monkeypatch.setattr(psutil.Process, "kill", lambda self: killed.append(self.pid))
    monkeypatch.setattr(os, "killpg", lambda pid, sig: killed.append(pid), raising=False)
    for pid in (os.getpid(), os.getppid()):
        assert platform_os.kill_tree(pid) is False
    assert killed == []


def test_a_process_that_is_gone_is_no_error():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert platform_os.kill_tree(child.pid) is False


def test_a_pid_is_looked_up_through_psutil_not_signal_0(monkeypatch):
    """os.kill(pid, 0) on Windows sends CTRL_C_EVENT to that pid's process group: psutil
    looks the pid up the way each OS allows."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    asked = []
    pid_exists = psutil.pid_exists
    monkeypatch.setattr(psutil, "pid_exists", lambda pid: asked.append(pid) or pid_exists(pid))
    assert platform_os.pid_alive(child.pid) is False and asked == [child.pid]
    assert platform_os.pid_alive(os.getpid()) and platform_os.pid_alive(os.getppid())
    for pid in (child.pid, 0, -1, 2**70):
        assert not platform_os.pid_alive(pid)


# Priority


def test_windows_lowers_the_worker_to_the_idle_priority_class(windows, monkeypatch):
    set_to = []
    monkeypatch.setattr(psutil.Process, "nice", lambda self, value=None: set_to.append(value))
    assert platform_os.lower_priority() == "idle priority class"
    assert set_to == [platform_os.IDLE_PRIORITY_CLASS]


PRIORITY_PROBE = textwrap.dedent("""
    import json, os
    for name in ("sched_setscheduler", "getsid"):  # what Linux alone has
        if hasattr(os, name):
            delattr(os, name)
    from mnist_core import platform_os
    before = os.getpriority(os.PRIO_PROCESS, 0)
    how = platform_os.lower_priority()
    print(json.dumps({"how": how, "before": before,
                      "after": os.getpriority(os.PRIO_PROCESS, 0)}))
""")


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX niceness")
def test_without_linux_s_scheduler_the_worker_is_niced():
    report = json.loads(subprocess.run([sys.executable, "-c", PRIORITY_PROBE], cwd=REPO,
                                       capture_output=True, text=True, check=True).stdout)
    assert report["how"] == f"nice {platform_os.NICENESS}"
    assert report["after"] == min(platform_os.MAX_NICE, report["before"] + platform_os.NICENESS)


def test_without_sessions_no_autogroup_is_touched(monkeypatch):
    monkeypatch.delattr(os, "getsid", raising=False)
    monkeypatch.setattr(platform_os, "AUTOGROUP", Path("/nonexistent/never-written"))
    assert platform_os.lower_autogroup() is False


def test_without_affinity_every_core_is_usable_and_keeping_to_some_says_it_cannot(monkeypatch):
    for name in ("sched_getaffinity", "sched_setaffinity"):
        monkeypatch.delattr(os, name, raising=False)
    monkeypatch.delattr(psutil.Process, "cpu_affinity", raising=False)  # macOS
    assert platform_os.usable_cores() == list(range(os.cpu_count()))
    assert platform_os.keep_to([0]) is False


# The CPU's name and features


@pytest.fixture()
def no_proc(monkeypatch, tmp_path):
    monkeypatch.setattr(platform_os, "CPUINFO", tmp_path / "no-cpuinfo")


def test_linux_names_the_cpu_from_cpuinfo(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 "
                       "avx512_bf16\n", encoding="utf-8")
    monkeypatch.setattr(platform_os, "CPUINFO", cpuinfo)
    assert platform_os.cpu_name() == "AMD EPYC 7B13"
    assert platform_os.cpu_flags() == {"fpu", "sse2", "avx512_bf16"}


def test_macos_names_the_cpu_from_sysctl(no_proc, monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: subprocess.CompletedProcess(
        args, 0, stdout="Apple M2\n" if args[-1] == "machdep.cpu.brand_string" else ""))
    assert platform_os.cpu_name() == "Apple M2"
    assert platform_os.cpu_flags() == frozenset()  # no flags: float32, always correct


def test_windows_names_the_cpu_from_the_registry(no_proc, windows, monkeypatch):
    class FakeKey:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class FakeWinreg:
        HKEY_LOCAL_MACHINE = "HKLM"

        @staticmethod
        def OpenKey(root, path):
            assert (root, path) == ("HKLM", platform_os.WINDOWS_CPU_KEY)
            return FakeKey()

        @staticmethod
        def QueryValueEx(key, name):
            return ("Intel(R) Core(TM) i5-1135G7 @ 2.40GHz ", 1)

    monkeypatch.setitem(sys.modules, "winreg", FakeWinreg)
    assert platform_os.cpu_name() == "Intel(R) Core(TM) i5-1135G7 @ 2.40GHz"


def test_elsewhere_the_cpu_is_named_by_platform(no_proc, monkeypatch):
    monkeypatch.setattr(sys, "platform", "freebsd14")
    monkeypatch.setattr(platform_os.platform, "processor", lambda: "")
    monkeypatch.setattr(platform_os.platform, "machine", lambda: "arm64")
    assert platform_os.cpu_name() == "arm64"


def test_an_intel_mac_says_in_one_sentence_why_it_cannot_train(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(platform_os.platform, "machine", lambda: "x86_64")
    with pytest.raises(StartFailed, match=r"^TensorFlow publishes no version for Intel Macs"):
        Trainer(tmp_path / "models").start(TrainConfig(epochs=1))
    assert not (tmp_path / "models").exists()  # nothing started, nothing written
    monkeypatch.setattr(platform_os.platform, "machine", lambda: "arm64")
    assert cannot_train() is None
