""".ci/wheels.py, CI's check that pip resolves requirements.txt to wheels for Windows and
macOS: each target gets the lines its markers pick, and an index that cannot be reached is
said in one line (not reported as missing wheels)."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / ".ci" / "wheels.py"
_spec = importlib.util.spec_from_file_location("ci_wheels", SCRIPT)
wheels = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(wheels)
TARGETS = {t.platform: t for t in wheels.TARGETS}


def pins(platform: str) -> dict[str, str]:
    lines = wheels.pinned_lines(REPO / "requirements.txt", TARGETS[platform], "3.12")
    assert all(";" not in line for line in lines)  # pip would judge a marker by this machine
    return dict(line.split("==") for line in lines)


def test_windows_and_apple_silicon_get_every_pinned_requirement():
    for platform in ("win_amd64", "macosx_14_0_arm64"):
        picked = pins(platform)
        assert picked["tensorflow"] == "2.21.0" and picked["onnxruntime"] == "1.32.0"


def test_an_intel_mac_gets_no_tensorflow_and_the_last_onnx_runtime_it_has():
    picked = pins("macosx_13_0_x86_64")
    assert "tensorflow" not in picked and picked["onnxruntime"] == "1.23.2"
    assert picked["streamlit"] == pins("win_amd64")["streamlit"]


def closed_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed when the socket is


def test_an_index_that_cannot_be_reached_is_said_in_one_line():
    url = f"http://127.0.0.1:{closed_loopback_port()}/simple"
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PIP_INDEX_URL": url})
    assert result.returncode == wheels.INDEX_UNREACHABLE
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("wheels: the package index cannot be reached")
    assert url in lines[0]
