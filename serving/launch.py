"""`python -m serving.launch [--processes N] [streamlit options]`: the app on one port, served
by N Streamlit processes (what `./run app` starts).

A class of 300 students drawing keeps one server process's core nearly full (Python runs one
thread at a time); N processes answer on N cores. They share the port (serving.shared_port):
each visitor's device always reaches the same process, which holds its session. Everything
that must agree between them is in the models folder and the drawings database (which runs
exist, the training, the Draw model, the class's drawings, how many are connected:
`mnist_core.presence`). A process that dies is started again; the others keep serving.

N defaults to the machine's cores, at most 4 (each process holds its own ~250 MB); 1, or a
system that cannot share a port by address (not Linux), runs plain `streamlit run app.py`.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from serving import shared_port

REPO = Path(__file__).resolve().parent.parent
PROCESSES_ENV = "MNIST_SERVER_PROCESSES"
DEFAULT_MAX_PROCESSES = 4
DEFAULT_PORT = 8501
RESTART_DELAY = 1.0  # seconds before a dead process is started again
GAVE_UP_AFTER = 5  # quick deaths in a row (each within QUICK_DEATH s) end the launch
QUICK_DEATH = 10.0
log = logging.getLogger("serving.launch")


def default_processes() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(DEFAULT_MAX_PROCESSES, cores or 1))


def _option(args: list[str], name: str) -> str | None:
    """The value of `--name value` or `--name=value` in Streamlit's options, if given."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _without(args: list[str], name: str) -> list[str]:
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            kept.append(arg)
    return kept


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_commands(processes: int, options: list[str]) -> list[list[str]]:
    """The command of each server process: the same port, given explicitly (so none moves to
    another one when it is taken), and only the first may open a browser tab."""
    port = _option(options, "--server.port") or os.environ.get("STREAMLIT_SERVER_PORT")
    port = int(port) if port else DEFAULT_PORT
    if port == 0:  # "any free port": they must still all take the same one
        port = _free_port()
    options = _without(options, "--server.port") + ["--server.port", str(port)]
    return [[sys.executable, "-m", "serving.launch", "--child", str(processes), str(index),
             *options, *(["--server.headless", "true"] if index else [])]
            for index in range(processes)]


def child(processes: int, index: int, options: list[str]) -> None:
    """One of the server processes: Streamlit, its socket shared with the others. The first
    prints the app's address; the others would print the same."""
    shared_port.install(processes)
    from streamlit.web import bootstrap, cli

    if index:
        bootstrap._print_url = lambda *args, **kwargs: None

    sys.argv = ["streamlit", "run", str(REPO / "app.py"), *options]
    cli.main()


class Supervisor:
    """Starts the processes, starts again any that dies, stops them all on SIGINT/SIGTERM."""

    def __init__(self, commands: list[list[str]], env: dict[str, str]):
        self.commands, self.env = commands, env
        self.processes: list[subprocess.Popen | None] = [None] * len(commands)
        self.started = [0.0] * len(commands)
        self.quick_deaths = 0
        self.stopping = False

    def start(self, index: int) -> None:
        self.processes[index] = subprocess.Popen(self.commands[index], cwd=REPO, env=self.env)
        self.started[index] = time.monotonic()

    def stop(self, *_) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for index in range(len(self.commands)):
            self.start(index)
        try:
            while not self.stopping:
                time.sleep(0.2)
                for index, process in enumerate(self.processes):
                    code = process.poll()
                    if code is None or self.stopping:
                        continue
                    quick = time.monotonic() - self.started[index] < QUICK_DEATH
                    self.quick_deaths = self.quick_deaths + 1 if quick else 0
                    if self.quick_deaths >= GAVE_UP_AFTER:
                        log.error("Server processes keep stopping at once (exit code %s): "
                                  "see the messages above.", code)
                        return code or 1
                    log.warning("Server process %d (pid %d) stopped with exit code %s; "
                                "starting it again.", index + 1, process.pid, code)
                    time.sleep(RESTART_DELAY)
                    self.start(index)
        finally:
            for process in self.processes:
                if process is not None and process.poll() is None:
                    process.terminate()
            for process in self.processes:
                if process is not None:
                    try:
                        process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        process.kill()
        return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(int(argv[1]), int(argv[2]), argv[3:])
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m serving.launch", description=__doc__.splitlines()[0],
        epilog="Other options are Streamlit's (e.g. --server.port 8502).")
    parser.add_argument("--processes", type=int,
                        default=int(os.environ.get(PROCESSES_ENV) or default_processes()),
                        help=f"server processes (default: the cores, at most "
                             f"{DEFAULT_MAX_PROCESSES}; env {PROCESSES_ENV})")
    args, options = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if not 1 <= args.processes <= shared_port.MAX_PROCESSES:
        parser.error(f"--processes must be 1 to {shared_port.MAX_PROCESSES}")
    processes = args.processes
    if processes > 1 and (why := shared_port.available()) is not None:
        log.warning("One server process only: %s", why)
        processes = 1
    if processes == 1:
        command = [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), *options]
        os.execv(sys.executable, command)
    env = dict(os.environ)
    # The same secret in every process: a cookie one signs, another accepts.
    env.setdefault("STREAMLIT_SERVER_COOKIE_SECRET", secrets.token_hex(32))
    log.info("Starting %d server processes on one port.", processes)
    return Supervisor(child_commands(processes, options), env).run()


if __name__ == "__main__":
    sys.exit(main())
