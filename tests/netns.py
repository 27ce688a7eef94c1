"""Run a command in a network namespace of its own (`unshare -n`): a loopback where test
visitors can have IPv6 addresses other than ::1, without touching the machine's network.
Needs Linux, root, util-linux's unshare and iproute2's ip."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.e2e import REPO


def unavailable() -> str | None:
    """Why a private network namespace can't be had here; None when it can."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return "needs unshare and ip (util-linux, iproute2)"
    tried = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return (tried.stderr.strip() or "unshare -n failed") if tried.returncode else None


def run_python(setup: list[str], module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m module args` from the repository, in a new namespace whose loopback is up,
    after the `ip` commands in `setup` (each a string such as "-6 route add ...")."""
    commands = ["ip link set lo up", *(f"ip {command}" for command in setup),
                'exec "$0" "$@"']
    return subprocess.run(["unshare", "-n", "sh", "-c", " && ".join(commands),
                           sys.executable, "-m", module, *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
