"""The foreign-OS tier (tests/foreign_os): every product module imports with Linux's own
facilities hidden, the tier hides what it says, and a training started and stopped through
the worker with them hidden ends as stopped and leaves no process behind.

These tests turn the tier on in the processes they start, so they check it in every run;
`MNIST_FOREIGN_OS=1` turns it on for the whole test run as well (.ci/run does both)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.foreign_os import tier

REPO = Path(__file__).resolve().parent.parent
CORE_MODULES = sorted(".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                      for p in (REPO / "mnist_core").rglob("*.py"))
SERVING_MODULES = sorted(f"serving.{p.stem}" for p in (REPO / "serving").glob("*.py"))
PRODUCT_MODULES = CORE_MODULES + SERVING_MODULES


def run_in_tier(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                          text=True, env=tier.environment(), timeout=timeout)


ONE_OS_MODULES = {"fcntl", "termios", "resource", "pwd", "grp", "winreg", "msvcrt", "_winapi"}
PRODUCT_FILES = [REPO / "app.py", *sorted((REPO / "pages").glob("*.py")),
                 *sorted((REPO / "serving").glob("*.py")), *sorted((REPO / "mnist_core").rglob("*.py"))]


def top_level_imports(path: Path) -> set[str]:
    """Modules imported by the statements at the top of `path` (not inside a function)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.unit
def test_no_product_module_imports_a_module_of_one_os_at_its_top():
    offenders = {str(p.relative_to(REPO)): sorted(top_level_imports(p) & ONE_OS_MODULES)
                 for p in PRODUCT_FILES if top_level_imports(p) & ONE_OS_MODULES}
    assert offenders == {}


IMPORT_EACH = textwrap.dedent("""
    import importlib, json, sys
    failed = {}
    for name in sys.argv[1:]:
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(failed))
""")


@pytest.mark.unit
def test_every_product_module_imports_with_the_linux_only_facilities_hidden():
    result = run_in_tier(IMPORT_EACH, *PRODUCT_MODULES)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {}
    assert {"mnist_core.runs.lease", "mnist_core.platform_os", "serving.launch"} <= set(PRODUCT_MODULES)


HIDDEN = textwrap.dedent("""
    import json, os, socket, sys
    from pathlib import Path
    product = {"__file__": sys.argv[1], "__name__": "mnist_core.example"}
    seen = {"os": sorted(n for n in ("killpg", "getsid", "sched_setscheduler",
                                     "sched_getaffinity") if hasattr(os, n)),
            "SO_REUSEPORT": hasattr(socket, "SO_REUSEPORT")}
    for what, code in [("fcntl", "import fcntl"), ("open", "open('/proc/cpuinfo')"),
                       ("read_text", "Path('/proc/self/autogroup').read_text()"),
                       ("listdir", "os.listdir('/proc/self/fd')")]:
        try:
            exec(compile(code, sys.argv[1], "exec"), {**product, "Path": Path, "os": os})
            seen[what] = "allowed"
        except (ImportError, OSError) as exc:
            seen[what] = type(exc).__name__
    import fcntl  # a test's or a library's own import is left alone
    seen["tests read /proc"] = Path("/proc/self/stat").exists() and bool(open("/proc/self/stat").read())
    from mnist_core import platform_os
    seen["cpu"] = platform_os.cpu_name()
    print(json.dumps(seen))
""")


@pytest.mark.unit
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="hides what Linux has")
def test_the_tier_hides_linux_s_facilities_from_the_product_alone():
    result = run_in_tier(HIDDEN, str(REPO / "mnist_core" / "example.py"))
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["os"] == [] and seen["SO_REUSEPORT"] is False
    assert seen["fcntl"] == "ModuleNotFoundError"
    assert seen["open"] == seen["read_text"] == seen["listdir"] == "LinuxOnly"
    assert seen["tests read /proc"] is True
    assert seen["cpu"]  # named without /proc, by `platform`


TRAIN_AND_STOP = textwrap.dedent("""
    import json, sys, time
    import psutil
    from mnist_core.config import TrainConfig
    from mnist_core.runs.lease import TrainingLease
    from mnist_core.training.supervisor import Trainer
    root = sys.argv[1]
    trainer = Trainer(root)
    run_id = trainer.start(TrainConfig(epochs=50, train_size=2000, batch_size=64)).run_id
    deadline = time.monotonic() + 300
    snap = trainer.snapshot()
    while not (snap.state == "running" and snap.batch > 3):
        assert snap.active and time.monotonic() < deadline, snap
        time.sleep(0.1)
        snap = trainer.snapshot()
    worker = psutil.Process(TrainingLease(root).current().pid)
    fields = open(f"/proc/{worker.pid}/stat").read().rsplit(")", 1)[1].split()
    nice = worker.nice()
    stopped = trainer.stop()
    snap = trainer.wait(timeout=120)
    print(json.dumps({"stopped": stopped, "state": snap.state, "error": snap.error,
                      "nice": nice, "policy": int(fields[38]), "run_id": run_id,
                      "lease": TrainingLease(root).info() is not None}))
""")


def processes_of(root: Path) -> list[psutil.Process]:
    """Processes still running (not zombies) whose command line names `root`."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["status"] != psutil.STATUS_ZOMBIE and \
                any(str(root) in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


@pytest.mark.trains
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the worker's policy")
def test_a_training_started_and_stopped_with_linux_hidden_leaves_no_process(tmp_path):
    root = tmp_path / "models"
    try:
        result = run_in_tier(TRAIN_AND_STOP, str(root), timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout)
        assert report["stopped"] and report["state"] == "stopped", report["error"]
        assert report["nice"] >= 10 and report["policy"] == 0  # nice: SCHED_IDLE was hidden
        assert not report["lease"]
        deadline = time.monotonic() + 30
        while processes_of(root) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_of(root) == []
    finally:
        for process in processes_of(root):
            process.kill()
