"""The launcher's server processes (serving.launch with --processes N > 1): started, started
again when one dies, stopped together."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

RESTART_DELAY = 1.0  # seconds before a dead process is started again
GAVE_UP_AFTER = 5  # quick deaths in a row (each within QUICK_DEATH s) end the launch
QUICK_DEATH = 10.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
log = logging.getLogger("serving.launch")


def die_with_parent() -> None:
    """Linux: this process gets SIGTERM when the launcher dies, even by SIGKILL, so no
    server process is left serving a port nobody supervises. (The several-process mode is
    Linux's only; elsewhere the launcher's own stop applies.)"""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the launcher died before the call
        sys.exit(0)


class Supervisor:
    """Starts the processes, starts again any that dies (on the same socket: its visitors'
    connections wait for it, nobody else's move), stops them all on SIGINT/SIGTERM."""

    def __init__(self, commands: list[list[str]], sockets: list[int], env: dict[str, str],
                 cwd: Path):
        self.commands, self.sockets, self.env, self.cwd = commands, sockets, env, cwd
        self.processes: list[subprocess.Popen | None] = [None] * len(commands)
        self.started = [0.0] * len(commands)
        self.quick_deaths = 0
        self.stopping = False

    def start(self, index: int) -> None:
        self.processes[index] = subprocess.Popen(self.commands[index], cwd=self.cwd,
                                                 env=self.env, pass_fds=(self.sockets[index],))
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
                code = self._restart_the_dead()
                if code is not None:
                    return code
        finally:
            self._stop_all()
        return 0

    def _restart_the_dead(self) -> int | None:
        """Start again each process that died; an exit code when they keep dying at once."""
        for index, process in enumerate(self.processes):
            code = process.poll()
            if code is None or self.stopping:
                continue
            quick = time.monotonic() - self.started[index] < QUICK_DEATH
            self.quick_deaths = self.quick_deaths + 1 if quick else 0
            if self.quick_deaths >= GAVE_UP_AFTER:
                log.error("Server processes keep stopping at once (exit code %s): see the "
                          "messages above.", code)
                return code or 1
            log.warning("Server process %d (pid %d) stopped with exit code %s; starting it "
                        "again.", index + 1, process.pid, code)
            time.sleep(RESTART_DELAY)
            if not self.stopping:
                self.start(index)
        return None

    def _stop_all(self) -> None:
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in self.processes:
            if process is not None:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
