"""What will train, told without importing TensorFlow (the app's server must not load it)."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys

from mnist_core.platform_os import cpu_flags, cpu_name

__all__ = ["cannot_train", "cpu_has_bf16", "cpu_label", "cpu_name", "gpu_names", "training_device"]
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_label() -> str:
    """'AMD EPYC (2 cores)'."""
    return f"{cpu_name()} ({os.cpu_count()} cores)"


def cpu_has_bf16() -> bool:
    """Native bfloat16 matrix instructions (AVX-512 BF16 or AMX), where mixed precision pays.
    False where the OS does not list the CPU's flags (float32 then: always correct)."""
    return bool(cpu_flags() & BF16_FLAGS)


@functools.lru_cache(maxsize=1)
def gpu_names() -> tuple[str, ...]:
    """NVIDIA GPUs as `nvidia-smi -L` lists them; () when there is no driver."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, encoding="utf-8",
                             errors="replace", timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(line.split(":", 1)[1].split("(")[0].strip()
                 for line in out.splitlines() if line.startswith("GPU "))


def training_device() -> tuple[str, str]:
    """Where the next training will run: ("GPU", "NVIDIA A100") or ("CPU", "AMD EPYC (2 cores)")."""
    gpus = gpu_names()
    if gpus:
        return "GPU", ", ".join(gpus)
    return "CPU", cpu_label()


def cannot_train() -> str | None:
    """Why this machine cannot train, in one sentence; None when it can."""
    if sys.platform != "darwin" or platform.machine() != "x86_64":
        return None
    return ("TensorFlow publishes no version for Intel Macs after 2.16, so this Mac can serve "
            "and predict with a model trained on another computer (copy its run folder into "
            "the models folder) but cannot train one.")
