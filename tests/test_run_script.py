"""The README's two commands: `./run app|tests` (Linux, macOS) and `py run.py app|tests`
(Windows) are one script, run.py: it installs each set of requirements once into `.venv`,
then starts serving.launch, or lints and runs pytest. Run here against a stand-in `.venv`
whose python logs what it is asked to do."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import run  # run.py, at the top of the repository (pytest's pythonpath)

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parent.parent

# The stand-in interpreter: one line per call (its arguments, and the BLAS threads it got);
# a lint fails when FAIL_LINT is set.
FAKE_PYTHON = """#!/bin/sh
echo "$* | OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-}" >> "$(dirname "$0")/../calls.log"
if [ "$2" = ruff ] && [ -n "${FAIL_LINT:-}" ]; then exit 7; fi
"""


@pytest.fixture()
def checkout(tmp_path) -> Path:
    """A copy of the two scripts and the requirements, with a stand-in `.venv`."""
    for name in ("run", "run.py", *run.TEST_REQUIREMENTS):
        shutil.copy2(REPO / name, tmp_path / name)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON, encoding="utf-8")
    python.chmod(0o755)
    return tmp_path


def calls(checkout: Path) -> list[str]:
    log = checkout / ".venv" / "calls.log"
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def launch(checkout: Path, *args: str, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    return subprocess.run([str(checkout / "run"), *args], capture_output=True, text=True,
                          env={**environment, "PYTHON": sys.executable, **env}, timeout=60)


@pytest.mark.skipif(os.name == "nt", reason="`./run` is the Linux and macOS form")
def test_run_app_installs_once_then_starts_serving_launch(checkout):
    assert launch(checkout, "app", "--processes", "1").returncode == 0
    assert launch(checkout, "app").returncode == 0
    pip, first, second = calls(checkout)
    assert pip.startswith("-m pip install --quiet -r ") and pip.split(" | ")[0].endswith(
        "requirements.txt")
    assert first == "-m serving.launch --processes 1 | OPENBLAS_NUM_THREADS=1"
    assert second == "-m serving.launch | OPENBLAS_NUM_THREADS=1"
    assert (checkout / ".venv" / run.stamp_name(run.APP_REQUIREMENTS)).exists()


@pytest.mark.skipif(os.name == "nt", reason="`./run` is the Linux and macOS form")
def test_run_tests_lints_then_runs_pytest_and_stops_on_a_lint_error(checkout):
    assert launch(checkout, "tests", "-m", "unit").returncode == 0
    assert [c.split(" | ")[0] for c in calls(checkout)][-2:] == ["-m ruff check .",
                                                                  "-m pytest -m unit"]
    installs = [c for c in calls(checkout) if "pip install" in c]
    assert [c.split(" -r ")[1].split(" | ")[0].rsplit("/", 1)[1] for c in installs] == list(
        run.TEST_REQUIREMENTS)
    result = launch(checkout, "tests", FAIL_LINT="1")
    assert result.returncode == 7 and calls(checkout)[-1].startswith("-m ruff check .")


@pytest.mark.skipif(os.name == "nt", reason="`./run` is the Linux and macOS form")
def test_changed_requirements_are_installed_again(checkout):
    launch(checkout, "app")
    with open(checkout / "requirements.txt", "a", encoding="utf-8") as f:
        f.write("# a change\n")
    launch(checkout, "app")
    assert sum("pip install" in c for c in calls(checkout)) == 2


def test_no_command_says_how_to_use_it(checkout):
    result = subprocess.run([sys.executable, str(checkout / "run.py")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == run.BAD_USAGE and result.stderr.startswith("usage: run.py app")


def test_the_stamp_is_the_one_the_bash_script_wrote():
    """`cat FILES | sha256sum | cut -c1-16`: a `.venv` installed by the old `./run` is reused."""
    if shutil.which("sha256sum") is None:
        pytest.skip("no sha256sum to compare with")
    files = [str(REPO / name) for name in run.TEST_REQUIREMENTS]
    digest = subprocess.run(f"cat {' '.join(files)} | sha256sum | cut -c1-16", shell=True,
                            capture_output=True, text=True, check=True).stdout.strip()
    assert run.stamp_name(run.TEST_REQUIREMENTS) == f"{run.STAMP_PREFIX}{digest}"


def test_windows_finds_the_venv_interpreter_under_scripts(monkeypatch):
    monkeypatch.setattr(os, "name", "nt")
    found = run.venv_python()
    monkeypatch.undo()
    assert found == run.VENV / "Scripts" / "python.exe"


def test_windows_waits_for_the_command_and_returns_its_exit_code(monkeypatch):
    monkeypatch.setattr(run.os, "name", "nt")
    code = run.replace_process([sys.executable, "-c", "import sys; sys.exit(3)"])
    monkeypatch.undo()
    assert code == 3
