"""The foreign-OS tier: with MNIST_FOREIGN_OS=1, hide Linux's own facilities from the project's
code, so that what runs is the portable way Windows and macOS take.

Loaded at interpreter start by every Python process whose PYTHONPATH holds this folder (the
test run, and through the environment it passes on, the training worker and every probe the
tests start); tests/__init__.py loads it into the test run when only the variable is set.

Hidden from every caller: os.killpg, os.getsid, os.getpgid, os.getpgrp, os.sched_* and
socket.SO_REUSEPORT (libraries check for them with hasattr, as on Windows). Hidden from the
project's own code (mnist_core, serving, app.py, pages) only, because a library does its
own OS's work its own way (filelock locks with fcntl on Linux, with msvcrt on Windows;
psutil reads /proc on Linux, the Win32 API on Windows): `import fcntl`, and every open,
listing or stat of a path under /proc. Not a Windows machine: a check, not a proof.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import socket
import sys

ENV = "MNIST_FOREIGN_OS"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRODUCT = tuple(os.path.join(REPO, part) for part in ("mnist_core" + os.sep, "serving" + os.sep,
                                                       "pages" + os.sep, "app.py"))
HIDDEN_OS = ("killpg", "getsid", "getpgid", "getpgrp")
HIDDEN_MODULES = frozenset({"fcntl"})
PROC = "/proc"
installed = False


class LinuxOnly(FileNotFoundError):
    """What the project's code gets for a path under /proc in this tier: what Windows and
    macOS answer, no such file (so `Path.exists()` is False, as there)."""


def _is_product(filename: str) -> bool:
    return filename.startswith(PRODUCT)


def _product_is_calling() -> bool:
    """The nearest caller that is not the standard library is the project's code (not a
    library's, not a test's)."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if _is_product(filename):
            return True
        if "site-packages" in filename or filename.startswith(os.path.join(REPO, "tests")):
            return False
        frame = frame.f_back
    return False


def _is_proc(path) -> bool:
    try:
        text = os.fsdecode(path) if not isinstance(path, int) else ""
    except TypeError:
        return False
    return text == PROC or text.startswith(PROC + "/")


def _guard(real, name: str):
    def guarded(path=None, *args, **kwargs):
        if path is not None and _is_proc(path) and _product_is_calling():
            raise LinuxOnly(errno.ENOENT, f"{name}: no /proc here (foreign-OS tier)",
                            os.fsdecode(path))
        if path is None:
            return real(*args, **kwargs)
        return real(path, *args, **kwargs)

    guarded.__wrapped__ = real
    return guarded


def _guard_import(real_import):
    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name.split(".")[0] in HIDDEN_MODULES and globals is not None \
                and _is_product(globals.get("__file__") or ""):
            raise ModuleNotFoundError(f"No module named {name!r} (foreign-OS tier)", name=name)
        return real_import(name, globals, locals, fromlist, level)

    guarded_import.__wrapped__ = real_import
    return guarded_import


def install() -> None:
    """Hide the facilities in this process (once)."""
    global installed
    if installed:
        return
    installed = True
    for name in [*HIDDEN_OS, *(n for n in dir(os) if n.startswith("sched_"))]:
        if hasattr(os, name):
            delattr(os, name)
    if hasattr(socket, "SO_REUSEPORT"):
        delattr(socket, "SO_REUSEPORT")
    builtins.open = io.open = _guard(io.open, "open")
    os.open = _guard(os.open, "os.open")
    os.listdir = _guard(os.listdir, "os.listdir")
    os.scandir = _guard(os.scandir, "os.scandir")
    os.stat = _guard(os.stat, "os.stat")
    builtins.__import__ = _guard_import(builtins.__import__)


if os.environ.get(ENV) == "1":
    install()
