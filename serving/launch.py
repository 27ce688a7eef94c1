"""`python -m serving.launch [--processes N] [streamlit options]`: the app on one port, served
by N Streamlit processes (what `./run app` starts).

A class of 300 students drawing keeps one server process's core nearly full (Python runs one
thread at a time); N processes answer on N cores. The launcher listens on the port with N
sockets (serving.shared_port) and gives socket k to process k: each visitor's device always
reaches the same process, which holds its session. Everything that must agree between them
is in the models folder and the drawings database (which runs exist, the training, the Draw
model, the class's drawings, how many are connected: `mnist_core.presence`). A process that
dies is started again on its socket: its visitors' connections wait for it, and nobody
else's move.

N defaults to the machine's cores, at most 4 (each process holds its own 230-330 MB); 1, or
a system that cannot share a port by address (not Linux), runs plain `streamlit run app.py`.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from mnist_core.training.launch import usable_cores
from serving import shared_port

REPO = Path(__file__).resolve().parent.parent
PROCESSES_ENV = "MNIST_SERVER_PROCESSES"
DEFAULT_MAX_PROCESSES = 4
DEFAULT_PORT = 8501
RESTART_DELAY = 1.0  # seconds before a dead process is started again
GAVE_UP_AFTER = 5  # quick deaths in a row (each within QUICK_DEATH s) end the launch
QUICK_DEATH = 10.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
log = logging.getLogger("serving.launch")


def default_processes() -> int:
    return max(1, min(DEFAULT_MAX_PROCESSES, len(usable_cores())))


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


def child_commands(sockets: list[int], options: list[str], port: int) -> list[list[str]]:
    """The command of each server process: its listening socket's descriptor, the port
    given explicitly (for the address it prints), and only the first may open a browser
    tab."""
    options = _without(options, "--server.port") + ["--server.port", str(port)]
    return [[sys.executable, "-m", "serving.launch", "--child", str(fd), str(index), *options,
             *(["--server.headless", "true"] if index else [])]
            for index, fd in enumerate(sockets)]


def _die_with_parent() -> None:
    """Linux: this process gets SIGTERM when the launcher dies, even by SIGKILL, so no
    server process is left serving a port nobody supervises."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the launcher's own stop still applies
        return
    if os.getppid() == 1:  # the launcher died before the call
        sys.exit(0)


def child(fd: int, index: int, options: list[str]) -> None:
    """One of the server processes: Streamlit, on the socket the launcher holds for it. The
    first prints the app's address; the others would print the same."""
    _die_with_parent()
    shared_port.install(fd)
    from streamlit.web import bootstrap, cli

    if index:
        bootstrap._print_url = lambda *args, **kwargs: None
    sys.argv = ["streamlit", "run", str(REPO / "app.py"), *options]
    cli.main()


class Supervisor:
    """Starts the processes, starts again any that dies (on the same socket: its visitors'
    connections wait for it, nobody else's move), stops them all on SIGINT/SIGTERM."""

    def __init__(self, commands: list[list[str]], sockets: list[int], env: dict[str, str]):
        self.commands, self.sockets, self.env = commands, sockets, env
        self.processes: list[subprocess.Popen | None] = [None] * len(commands)
        self.started = [0.0] * len(commands)
        self.quick_deaths = 0
        self.stopping = False

    def start(self, index: int, again: bool = False) -> None:
        command = self.commands[index]
        if again and "--server.headless" not in command:  # no new browser tab on a restart
            command = [*command, "--server.headless", "true"]
        self.processes[index] = subprocess.Popen(command, cwd=REPO, env=self.env,
                                                 pass_fds=(self.sockets[index],))
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
                    if not self.stopping:
                        self.start(index, again=True)
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
    asked = _option(options, "--server.address") or os.environ.get("STREAMLIT_SERVER_ADDRESS")
    address = asked or shared_port.default_address()
    if not asked and address == "::" and shared_port.available("::") is not None:
        address = "0.0.0.0"  # IPv6 is off on this machine
    port = _option(options, "--server.port") or os.environ.get("STREAMLIT_SERVER_PORT")
    port = int(port) if port else DEFAULT_PORT
    try:
        if port and shared_port.port_taken(address, port):
            log.error("Port %d is already in use: stop what serves there, or choose another "
                      "one with --server.port.", port)
            return 1
        sockets = shared_port.listen(address, port, processes)
    except OSError as exc:
        log.error("Cannot listen on %s port %d: %s", address, port, exc)
        return 1
    port = sockets[0].getsockname()[1]  # the one chosen, when 0 asked for any
    env = dict(os.environ)
    # The same secret in every process: a cookie one signs, another accepts.
    env.setdefault("STREAMLIT_SERVER_COOKIE_SECRET", secrets.token_hex(32))
    log.info("Starting %d server processes on port %d.", processes, port)
    fds = [sock.fileno() for sock in sockets]
    return Supervisor(child_commands(fds, options, port), fds, env).run()


if __name__ == "__main__":
    sys.exit(main())
