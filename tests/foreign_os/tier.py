"""Turning the foreign-OS tier on in the test run itself (tests/foreign_os/sitecustomize.py
says what it hides): for this process, and, through PYTHONPATH, for every Python process it
starts (the training worker, the probes)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

SITE_DIR = Path(__file__).resolve().parent
ENV = "MNIST_FOREIGN_OS"


def environment(env: dict | None = None) -> dict:
    """`env` (default: this process's) with the tier on for a process started with it."""
    env = dict(os.environ if env is None else env)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(SITE_DIR), *(p for p in paths if p != str(SITE_DIR))])
    env[ENV] = "1"
    return env


def install_here() -> None:
    """The tier in this process (the sitecustomize module, loaded under its own name when
    Python did not load it at start) and in every process it starts."""
    os.environ.update(environment())
    module = sys.modules.get("sitecustomize")
    if module is None or getattr(module, "ENV", None) != ENV:
        spec = importlib.util.spec_from_file_location("mnist_foreign_os_site",
                                                      SITE_DIR / "sitecustomize.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    module.install()


def active() -> bool:
    return any(getattr(sys.modules.get(name), "installed", False)
               for name in ("sitecustomize", "mnist_foreign_os_site"))


def python_env(repo: Path, **extra: str) -> dict:
    """This process's environment for a Python child that imports from `repo`: `repo` first
    on PYTHONPATH and what was there kept, so that a child of a foreign-OS test run is in
    the tier too (every process on one machine takes the same way to lock)."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), *paths]), **extra}
