"""Run a command in a network namespace of its own (`unshare -n`): a loopback where test
visitors can have IPv6 addresses other than ::1, without touching the machine's network.
Needs Linux, root, util-linux's unshare and iproute2's ip: a test that uses it calls
`require()` first, which skips it with the reason where one is missing. CI runs the tests as
root with both tools installed (.ci/run), so there they run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.e2e import REPO

WHERE_THEY_RUN = "CI runs them as root (.ci/run)"


def unavailable() -> str | None:
    """Why a private network namespace can't be had here; None when it can."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces are Linux's, this is {sys.platform}"
    if os.geteuid() != 0:
        return (f"making a network namespace needs root, and these tests run as uid "
                f"{os.geteuid()}; {WHERE_THEY_RUN}")
    if not (shutil.which("unshare") and shutil.which("ip")):
        return f"needs unshare and ip (util-linux, iproute2), not installed here; {WHERE_THEY_RUN}"
    tried = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if tried.returncode:
        return (f"`unshare -n` was refused even as root ({tried.stderr.strip() or 'no message'}): "
                f"a container needs CAP_SYS_ADMIN; {WHERE_THEY_RUN}")
    return None


def require() -> None:
    """Skip the calling test, saying why, when no private network namespace can be had."""
    if (why := unavailable()) is not None:
        pytest.skip(f"needs a private network namespace: {why}")


def run_python(setup: list[str], module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m module args` from the repository, in a new namespace whose loopback is up,
    after the `ip` commands in `setup` (each a string such as "-6 route add ...")."""
    commands = ["ip link set lo up", *(f"ip {command}" for command in setup),
                'exec "$0" "$@"']
    return subprocess.run(["unshare", "-n", "sh", "-c", " && ".join(commands),
                           sys.executable, "-m", module, *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
