"""The README's two commands on every OS: install what is needed (once), then run.

    python3 run.py app    [options]   (Windows: py run.py app)     start the app: serving.launch
    python3 run.py tests  [options]   (Windows: py run.py tests)   lint, then every test (pytest)

`./run app` and `./run tests` (Linux, macOS) are this script. The requirements go into the
virtual environment `.venv` beside it, and are installed again only when a requirements file
changed. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
APP_REQUIREMENTS = ("requirements.txt",)
TEST_REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")
STAMP_PREFIX = ".installed-"
STAMP_DIGITS = 16
USAGE = ("usage: run.py app [options of serving.launch and Streamlit] | "
         "run.py tests [pytest options]")
BAD_USAGE = 2
# One BLAS thread per call: the server answers many visitors at once on its own threads, and
# two BLAS threads per call only fight over the cores.
APP_ENV_DEFAULTS = {"OPENBLAS_NUM_THREADS": "1"}


def venv_python() -> Path:
    """The virtual environment's interpreter: `.venv\\Scripts\\python.exe` on Windows."""
    if os.name == "nt":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def stamp_name(files: tuple[str, ...]) -> str:
    """The marker of an installation of exactly these requirements (as `./run` named it)."""
    digest = hashlib.sha256(b"".join((HERE / name).read_bytes() for name in files)).hexdigest()
    return STAMP_PREFIX + digest[:STAMP_DIGITS]


def install(files: tuple[str, ...]) -> Path:
    """Create `.venv` when missing and install `files` into it unless already done; return
    its interpreter."""
    python = venv_python()
    if not python.exists():
        print(f"Creating the virtual environment {VENV} ...", file=sys.stderr)
        venv.create(VENV, with_pip=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
                       check=True)
    stamp = VENV / stamp_name(files)
    if not stamp.exists():
        for name in files:
            print(f"Installing {name} into {VENV} (once) ...", file=sys.stderr)
            subprocess.run([python, "-m", "pip", "install", "--quiet", "-r", HERE / name],
                           check=True)
        stamp.touch()
    return python


def replace_process(command: list, env: dict | None = None) -> int:
    """Run `command` in place of this process. POSIX: exec (signals and the exit code are
    the command's own). Windows has no real exec: run it, let it have Ctrl-C (the console
    sends it to both), and return its exit code."""
    if os.name != "nt":
        os.execve(command[0], [str(part) for part in command], env or dict(os.environ))
    child = subprocess.Popen(command, env=env)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue  # the child got it too, and ends by itself


def app(args: list[str]) -> int:
    python = install(APP_REQUIREMENTS)
    env = {**APP_ENV_DEFAULTS, **os.environ}
    return replace_process([python, "-m", "serving.launch", *args], env)


def tests(args: list[str]) -> int:
    python = install(TEST_REQUIREMENTS)
    lint = subprocess.run([python, "-m", "ruff", "check", "."])
    if lint.returncode != 0:
        return lint.returncode
    return replace_process([python, "-m", "pytest", *args])


COMMANDS = {"app": app, "tests": tests}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return BAD_USAGE
    os.chdir(HERE)
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
