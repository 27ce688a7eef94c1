"""The training engine on real MNIST: worker process, live snapshot, stop, faults, store."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time

import numpy as np
import pytest

from mnist_core import data, runs
from mnist_core.config import TrainConfig
from mnist_core.data import flatten, normalize
from mnist_core.inference import Classifier
from mnist_core.jobs import JobManager, JobRefused
from mnist_core.store import ModelStore
from mnist_core.worker import load_keras_model

# Long enough to be caught mid-run: ~3-4 s an epoch on 2 CPU cores.
LONG = TrainConfig(epochs=20, batch_size=64, lr_schedule=False, learning_rate=0.001)


def wait_for(manager, condition, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        snap = manager.snapshot()
        if condition(snap):
            return snap
        if not snap.active:
            pytest.fail(f"training ended early: {snap.state} {snap.error}")
        time.sleep(0.1)
    pytest.fail("timed out waiting for the training")


def test_short_training_is_saved_with_its_evaluation(trained_run, mnist):
    record = trained_run.record
    assert record["status"] == "finished" and record["epochs_completed"] == 2
    assert record["evaluation"]["accuracy"] > 0.95
    assert len(record["history"]["val_accuracy"]) == 2
    matrix = np.array(record["evaluation"]["confusion_matrix"])
    assert matrix.sum() == 10000
    assert matrix.sum(axis=1).tolist() == np.bincount(mnist.y_valid).tolist()
    assert np.trace(matrix) / 10000 == pytest.approx(record["evaluation"]["accuracy"])
    assert len(record["evaluation"]["misclassified"]) == 10000 - np.trace(matrix)
    mistake = record["evaluation"]["misclassified"][0]
    assert mnist.y_valid[mistake["index"]] == mistake["true"] != mistake["predicted"]
    assert record["params"] == 669706 and record["device_kind"] == "CPU"
    assert trained_run.keras_path.is_file() and trained_run.onnx_path.is_file()


def test_onnx_matches_keras_and_the_saved_evaluation(trained_run, mnist):
    x_valid = normalize(flatten(mnist.x_valid))
    model = load_keras_model(trained_run.keras_path)
    keras_probabilities = model.predict(x_valid, batch_size=2048, verbose=0)
    onnx_probabilities = Classifier(trained_run.onnx_path).predict_proba(x_valid)
    np.testing.assert_allclose(onnx_probabilities, keras_probabilities, atol=1e-5)
    accuracy = (onnx_probabilities.argmax(axis=1) == mnist.y_valid).mean()
    assert accuracy == pytest.approx(trained_run.record["evaluation"]["accuracy"])


def test_store_lists_and_picks_the_run(trained_store, trained_run):
    scan = trained_store.scan()
    assert [run.run_id for run in scan.usable] == [trained_run.run_id]
    assert scan.skipped == []
    assert trained_store.get(trained_run.run_id).record == trained_run.record
    assert trained_store.get("../etc") is None


def test_live_snapshot_stop_within_the_epoch_and_refusal(tmp_path):
    manager = JobManager(ModelStore(tmp_path))
    run_id = manager.start(LONG)
    snap = wait_for(manager, lambda s: s.epoch == 2 and s.batch > 20)
    assert snap.state == "running" and len(snap.history) == 1  # epoch 1 ended before epoch 2
    assert snap.samples_per_second > 0 and snap.eta > 0 and snap.device_kind == "CPU"
    assert len(snap.batch_loss) == len(snap.steps) > 10
    assert snap.steps == tuple(sorted(snap.steps))
    with pytest.raises(JobRefused, match="already running"):
        manager.start(TrainConfig())
    assert manager.stop()
    snap = manager.wait(timeout=60)
    assert snap.state == "stopped", snap.error
    # Stopped inside epoch 2: that epoch is partial, epoch 1 was kept and saved.
    assert [e["complete"] for e in snap.history] == [True, False]
    run = manager.store.get(run_id)
    assert run.usable and run.record["epochs_completed"] == 1
    probabilities = Classifier(run.onnx_path).predict_proba(np.zeros((2, 784), np.float32))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # Once stopped, a new training may start.
    assert not manager.stop()


def test_failing_job_reports_its_error(tmp_path):
    broken = tmp_path / "broken-data"
    shutil.copytree(data.BUNDLED_DIR, broken)
    (broken / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    manager = JobManager(ModelStore(tmp_path / "models"), env={"MNIST_DATA": str(broken)})
    run_id = manager.start(TrainConfig(epochs=1))
    snap = manager.wait(timeout=120)
    assert snap.state == "failed"
    assert "DatasetError" in snap.error and "train-images-idx3-ubyte.gz" in snap.error
    assert "checksum mismatch" in snap.error
    run = manager.store.get(run_id)
    assert run.status == "failed" and not run.usable and "DatasetError" in run.error


def test_two_logical_devices_train_mirrored(tmp_path):
    manager = JobManager(ModelStore(tmp_path), env={"MNIST_LOGICAL_CPUS": "2"})
    manager.start(TrainConfig(epochs=1, train_size=10000, batch_size=256))
    snap = manager.wait(timeout=180)
    assert snap.state == "finished", snap.error
    assert snap.strategy == "MirroredStrategy" and "2 logical devices" in snap.device
    assert snap.val_accuracy > 0.85


def test_worker_killed_mid_run_is_interrupted_never_finished(tmp_path):
    manager = JobManager(ModelStore(tmp_path))
    run_id = manager.start(LONG)
    wait_for(manager, lambda s: s.batch > 5)
    os.kill(manager.worker_pid(), signal.SIGKILL)
    snap = manager.wait(timeout=30)
    assert snap.state == "interrupted" and "signal 9" in snap.error
    run = manager.store.get(run_id)
    assert run.status == "interrupted" and not run.usable
    assert not (run.path / runs.RECORD).exists() and not run.keras_path.exists()
    assert manager.store.current() is None


def test_hung_worker_is_killed_and_reported(tmp_path):
    manager = JobManager(ModelStore(tmp_path), stall_seconds=4)
    run_id = manager.start(LONG)
    wait_for(manager, lambda s: s.batch > 5)
    os.kill(manager.worker_pid(), signal.SIGSTOP)  # alive but silent, like a hang
    snap = manager.wait(timeout=60)
    assert snap.state == "failed" and "made no progress for 4 s" in snap.error
    assert manager.store.get(run_id).status == "failed"


def test_broken_entries_in_the_models_folder_are_skipped(trained_store, trained_run, tmp_path,
                                                          caplog):
    root = tmp_path / "models"
    shutil.copytree(trained_store.root, root)
    good = root / trained_run.run_id

    def copy(name):
        shutil.copytree(good, root / name)
        return root / name

    (copy("20990101-000000-aaaa") / runs.KERAS_FILE).write_bytes(b"not a zip at all")
    (copy("20990101-000000-bbbb") / runs.ONNX_FILE).unlink()
    (copy("20990101-000000-cccc") / runs.RECORD).write_text("{ truncated")
    (root / "notes.txt").write_text("a teacher's notes")
    (root / "20990101-000000-dddd").mkdir()
    with caplog.at_level(logging.WARNING):
        scan = ModelStore(root).scan()
    assert [run.run_id for run in scan.usable] == [trained_run.run_id]
    reasons = dict(scan.skipped)
    assert "corrupt" in reasons["20990101-000000-aaaa"]
    assert "without its model.onnx" in reasons["20990101-000000-bbbb"]
    assert "record.json is corrupt" in reasons["20990101-000000-cccc"]
    assert reasons["notes.txt"] == "not a run folder"
    assert reasons["20990101-000000-dddd"] == "no config.json"
    assert "skipped 20990101-000000-aaaa" in caplog.text
    assert ModelStore(root).current().run_id == trained_run.run_id


def test_choosing_a_run_and_a_newer_finish_replaces_the_choice(trained_store, trained_run,
                                                                 tmp_path):
    root = tmp_path / "models"
    shutil.copytree(trained_store.root, root)
    older = root / "20000101-000000-0000"
    shutil.copytree(root / trained_run.run_id, older)
    record = json.loads((older / runs.RECORD).read_text())
    record["finished"] -= 3600
    (older / runs.RECORD).write_text(json.dumps(record))
    store = ModelStore(root)
    assert store.current().run_id == trained_run.run_id  # newest by default
    store.choose(older.name)
    assert store.current().run_id == older.name
    record = json.loads((root / trained_run.run_id / runs.RECORD).read_text())
    record["finished"] = time.time() + 10  # a training that finishes after the choice
    (root / trained_run.run_id / runs.RECORD).write_text(json.dumps(record))
    assert store.current().run_id == trained_run.run_id


def test_cnn_trains_and_serves_the_same_predictions(tmp_path, mnist):
    manager = JobManager(ModelStore(tmp_path))
    run_id = manager.start(TrainConfig(model="cnn", epochs=1, train_size=3000, batch_size=128))
    snap = manager.wait(timeout=300)
    assert snap.state == "finished", snap.error
    run = manager.store.get(run_id)
    assert run.record["params"] == 34826 and run.val_accuracy > 0.7
    x = normalize(flatten(mnist.x_valid[:500]))
    keras_probabilities = load_keras_model(run.keras_path).predict(x, verbose=0)
    np.testing.assert_allclose(Classifier(run.onnx_path).predict_proba(x), keras_probabilities,
                               atol=1e-5)


def test_augmentation_varies_digits_but_keeps_them_digits(mnist):
    import tensorflow as tf

    from mnist_core.worker import augmenter

    x = normalize(flatten(mnist.x_valid[:256]))
    out = augmenter(tf, seed=1)(tf.constant(x)).numpy()
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    changed = np.abs(out - x).sum(axis=1) > 1.0
    assert changed.mean() > 0.9  # almost every image moved, turned, scaled or changed stroke
    ink_ratio = out.sum(axis=1) / x.sum(axis=1)
    assert 0.4 < np.median(ink_ratio) < 2.0  # still a digit's worth of ink, not blank or solid
