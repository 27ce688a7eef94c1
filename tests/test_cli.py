"""`python -m mnist_core.train`: trains headless into the model store, refuses bad settings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mnist_core.runs.store import ModelStore

pytestmark = pytest.mark.trains


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mnist_core.train", *args],
                          capture_output=True, text=True, timeout=300)


def test_cli_trains_and_prints_a_json_summary(tmp_path):
    result = run_cli("--epochs", "1", "--train-size", "6000", "--batch-size", "128",
                     "--models-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["epochs"] == 1
    assert summary["batch_size"] == 128 and summary["model"] == "seed_mlp"
    assert summary["val_accuracy"] > 0.85 and summary["fit_seconds"] > 0
    assert summary["device_kind"] in ("CPU", "GPU") and summary["device"]
    run = ModelStore(tmp_path).current()
    assert run.run_id == summary["run_id"] and str(run.keras_path) == summary["saved"]
    assert summary["val_accuracy"] == run.val_accuracy
    assert summary["fit_seconds"] == round(run.record.fit_seconds, 2)
    assert "epoch 1: loss" in result.stderr
    # Nothing runs now: --stop says so and fails.
    stop = run_cli("--stop", "--models-dir", str(tmp_path))
    assert stop.returncode == 1 and "no training is running" in stop.stderr


def test_cli_refuses_settings_out_of_bounds(tmp_path):
    for args, message in ((["--epochs", "0"], "epochs must be from 1 to 50, got 0"),
                          (["--batch-size", "8192"], "batch_size must be from 16 to 4096"),
                          (["--learning-rate", "3"], "learning_rate must be from 1e-05 to 1.0")):
        result = run_cli(*args, "--models-dir", str(tmp_path))
        assert result.returncode == 2 and message in result.stderr
    assert list(tmp_path.iterdir()) == []
