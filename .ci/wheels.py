"""CI: pip resolves requirements.txt to wheels on the teachers' other OSes, for each Python
the pins support, without installing anything (`pip install --dry-run --only-binary`).

    .venv/bin/python .ci/wheels.py [requirements.txt]

pip evaluates a requirement's marker against the machine it runs on, not the `--platform`
asked for, so each target's lines are picked here first (packaging's markers, with that
target's environment), then resolved. Downloads metadata and some wheels through pip's own
configuration (index, proxy, certificates). Exit 0 when every target resolves; 1 with one
line per failure; 3 with one line when pip's package index cannot be reached (checked first:
pip itself would report it as a missing wheel).
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

PYTHONS = ("3.11", "3.12", "3.13")  # onnxruntime 1.32 publishes no wheel for 3.10


@dataclass(frozen=True)
class Target:
    name: str
    platform: str  # pip's --platform: the oldest OS version the pinned wheels support
    sys_platform: str
    platform_machine: str
    platform_system: str


TARGETS = (
    Target("Windows 10/11 (x86-64)", "win_amd64", "win32", "AMD64", "Windows"),
    # The oldest macOS every pinned wheel supports: TensorFlow 2.21's arm64 wheels start at
    # macOS 12, ONNX Runtime 1.32's at 14; ONNX Runtime 1.23.2's Intel wheels at 13.
    Target("macOS 14+ on Apple silicon", "macosx_14_0_arm64", "darwin", "arm64", "Darwin"),
    Target("macOS 13+ on Intel (serves only)", "macosx_13_0_x86_64", "darwin", "x86_64",
           "Darwin"),
)
DEFAULT_INDEX = "https://pypi.org/simple"
PROBE_PROJECT = "pip"  # a project every index serves
PROBE_TIMEOUT_SECONDS = 30
INDEX_UNREACHABLE = 3


def pinned_lines(requirements: Path, target: Target, python: str) -> list[str]:
    """The requirement lines that apply on `target` with `python`, without their markers."""
    environment = {"sys_platform": target.sys_platform, "platform_machine": target.platform_machine,
                   "platform_system": target.platform_system, "os_name":
                   "nt" if target.sys_platform == "win32" else "posix",
                   "python_version": python, "python_full_version": f"{python}.0",
                   "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    lines = []
    for raw in requirements.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            requirement.marker = None
            lines.append(str(requirement))
    return lines


def resolve(lines: list[str], target: Target, python: str, pip: list[str]) -> tuple[bool, str]:
    """(resolved, pip's output) for `lines` as wheels for `target` and `python`."""
    with tempfile.TemporaryDirectory() as tmp:
        pinned = Path(tmp, "requirements.txt")
        pinned.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = subprocess.run(
            [*pip, "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
             "--platform", target.platform, "--python-version", python, "--implementation", "cp",
             "--target", str(Path(tmp, "target")), "-r", str(pinned)],
            capture_output=True, text=True, encoding="utf-8", errors="replace")
    return result.returncode == 0, result.stdout + result.stderr


def pip_setting(pip: list[str], name: str) -> str | None:
    """A pip setting as pip itself sees it: PIP_<NAME>, else its configuration files."""
    value = os.environ.get(f"PIP_{name.upper().replace('-', '_')}")
    if value:
        return value
    for section in ("install", "global"):
        result = subprocess.run([*pip, "config", "get", f"{section}.{name}"], capture_output=True,
                                text=True, encoding="utf-8", errors="replace")
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip()
    return None


def index_problem(pip: list[str]) -> str | None:
    """Why pip's package index cannot be reached (through pip's proxy and certificates
    settings), or None when it answers. pip itself reports an unreachable index as "no
    matching distribution", which would read as a missing wheel."""
    index = (pip_setting(pip, "index-url") or DEFAULT_INDEX).rstrip("/")
    cafile = pip_setting(pip, "cert")
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    handlers = [urllib.request.HTTPSHandler(context=context)] if context else []
    proxy = pip_setting(pip, "proxy")
    if proxy:
        handlers.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    try:
        urllib.request.build_opener(*handlers).open(f"{index}/{PROBE_PROJECT}/",
                                                    timeout=PROBE_TIMEOUT_SECONDS).close()
    except (OSError, ValueError) as exc:
        return f"{index}: {exc}"
    return None


def main(argv: list[str]) -> int:
    requirements = Path(argv[0] if argv else Path(__file__).resolve().parents[1] / "requirements.txt")
    pip = [sys.executable, "-m", "pip"]
    problem = index_problem(pip)
    if problem is not None:
        print(f"wheels: the package index cannot be reached ({problem}); check the network or "
              "pip's index settings (`pip config list`), then run this check again.")
        return INDEX_UNREACHABLE
    failures = 0
    for target in TARGETS:
        for python in PYTHONS:
            ok, output = resolve(pinned_lines(requirements, target, python), target, python, pip)
            if ok:
                print(f"wheels: {target.name}, Python {python}: every requirement resolves")
                continue
            failures += 1
            print(f"wheels: {target.name}, Python {python}: FAILS: "
                  f"{first_line(output, ('Could not find a version', 'ResolutionImpossible'))}")
    return 1 if failures else 0


def first_line(output: str, signs: tuple[str, ...]) -> str:
    for line in output.splitlines():
        if any(sign in line for sign in signs):
            return line.strip()
    errors = [line.strip() for line in output.splitlines() if line.startswith("ERROR")]
    return errors[-1] if errors else "no output"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
