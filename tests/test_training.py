"""The training engine on real MNIST: worker process, lease, live snapshot, stop, faults."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

from mnist_core import data
from mnist_core.config import TrainConfig
from mnist_core.data import flatten, normalize
from mnist_core.drawings import DrawingStore
from mnist_core.inference import Classifier
from mnist_core.runs import folder
from mnist_core.runs.lease import TrainingLease
from mnist_core.runs.store import ModelStore
from mnist_core.training import lowest_priority as launch
from mnist_core.training import supervisor
from mnist_core.training.supervisor import JobRefused, StartFailed, Trainer
from tests.foreign_os import tier

pytestmark = pytest.mark.trains

# Long enough never to end by itself while a test watches (~3-4 s an epoch on 2 CPU cores,
# far longer than any test waits); every test that starts it stops it.
LONG = TrainConfig(epochs=50, batch_size=64, lr_schedule=False, learning_rate=0.001)
REPO = folder.REPO_DIR


def wait_for(trainer: Trainer, condition, timeout: float = 180):
    """Poll the snapshot until `condition` holds (generous deadline, no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = trainer.snapshot()
        if condition(snap):
            return snap
        if not snap.active and snap.state != "idle":
            pytest.fail(f"training ended early: {snap.state} {snap.error}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for the training; last snapshot {trainer.snapshot()}")


def stop_and_wait(trainer: Trainer) -> None:
    trainer.stop()
    trainer.wait(timeout=120)


def test_short_training_is_saved_with_its_evaluation(trained_run, mnist):
    record = trained_run.record
    assert record.status == "finished" and record.epochs_completed == 2
    assert record.evaluation.accuracy > 0.95
    assert len(record.history["val_accuracy"]) == 2
    matrix = np.array(record.evaluation.confusion_matrix)
    assert matrix.sum() == 10000
    assert matrix.sum(axis=1).tolist() == np.bincount(mnist.y_valid).tolist()
    assert np.trace(matrix) / 10000 == pytest.approx(record.evaluation.accuracy)
    assert len(record.evaluation.misclassified) == 10000 - np.trace(matrix)
    mistake = record.evaluation.misclassified[0]
    assert mnist.y_valid[mistake.index] == mistake.true != mistake.predicted
    assert record.params == 669706 and record.device_kind in ("CPU", "GPU")
    assert record.parent is None and record.fine_tune is None
    assert trained_run.keras_path.is_file() and trained_run.onnx_path.is_file()
    # The lease is gone with the worker: nobody trains, and nothing is stale.
    lease = TrainingLease(trained_run.path.parent)
    assert lease.current() is None and lease.info() is None


def test_onnx_matches_keras_and_the_saved_evaluation(trained_run, mnist):
    from mnist_core.training.fit import load_keras_model

    x_valid = normalize(flatten(mnist.x_valid))
    model = load_keras_model(trained_run.keras_path)
    keras_probabilities = model.predict(x_valid, batch_size=2048, verbose=0)
    onnx_probabilities = Classifier(trained_run.onnx_path).predict_proba(x_valid)
    np.testing.assert_allclose(onnx_probabilities, keras_probabilities, atol=1e-5)
    accuracy = (onnx_probabilities.argmax(axis=1) == mnist.y_valid).mean()
    assert accuracy == pytest.approx(trained_run.record.evaluation.accuracy)


def test_store_lists_the_run_and_refuses_paths_outside_the_folder(trained_store, trained_run,
                                                                  tmp_path):
    scan = trained_store.scan()
    assert [run.run_id for run in scan.usable] == [trained_run.run_id]
    assert scan.skipped == [] and scan.unreadable == []
    assert trained_store.get(trained_run.run_id).record == trained_run.record
    # A models folder inside another one that holds a real run: "../<run id>" exists on
    # disk, and must still not be reachable.
    outer = tmp_path / "outer"
    shutil.copytree(trained_store.root, outer)
    inner = ModelStore(outer / "inner")
    inner.root.mkdir()
    assert (inner.root / ".." / trained_run.run_id / folder.RECORD).is_file()
    assert inner.get(f"../{trained_run.run_id}") is None
    assert inner.get(str(outer / trained_run.run_id)) is None


def test_live_snapshot_stop_within_the_epoch_and_refusal(tmp_path):
    trainer = Trainer(tmp_path)
    run_id = trainer.start(LONG).run_id
    snap = wait_for(trainer, lambda s: s.epoch >= 2 and s.batch > 20)
    assert snap.state == "running" and snap.run_id == run_id
    assert len(snap.history) >= 1 and all(e.complete for e in snap.history)
    assert snap.samples_per_second > 0 and snap.eta > 0 and snap.device_kind in ("CPU", "GPU")
    assert len(snap.batch_loss) == len(snap.steps) > 10
    assert snap.steps == tuple(sorted(snap.steps))
    assert 0 < snap.progress < 1
    with pytest.raises(JobRefused, match=f"already running \\(run {run_id}"):
        Trainer(tmp_path).start(TrainConfig())  # any Trainer: the lease is on disk
    assert Trainer(tmp_path).stop()  # a Trainer that did not start it can stop it
    snap = trainer.wait(timeout=120)
    assert snap.state == "stopped", snap.error
    # Stopped inside an epoch: that epoch is partial, the ones before it were kept and saved.
    completed = len(snap.history) - 1
    assert [e.complete for e in snap.history] == [True] * completed + [False]
    run = ModelStore(tmp_path).get(run_id)
    assert run.usable and run.record.epochs_completed == completed and run.status == "stopped"
    probabilities = Classifier(run.onnx_path).predict_proba(np.zeros((2, 784), np.float32))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert not trainer.stop()  # nothing runs any more
    assert TrainingLease(tmp_path).info() is None


def test_failing_job_reports_its_error(tmp_path):
    broken = tmp_path / "broken-data"
    shutil.copytree(data.BUNDLED_DIR, broken)
    (broken / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    trainer = Trainer(tmp_path / "models", env={"MNIST_DATA": str(broken)})
    run_id = trainer.start(TrainConfig(epochs=1)).run_id
    snap = trainer.wait(timeout=180)
    assert snap.state == "failed"
    assert "DatasetError" in snap.error and "train-images-idx3-ubyte.gz" in snap.error
    assert "checksum mismatch" in snap.error
    run = ModelStore(tmp_path / "models").get(run_id)
    assert run.status == "failed" and not run.usable and "DatasetError" in run.error


def test_a_worker_that_cannot_start_leaves_no_run_and_no_lease(tmp_path, monkeypatch):
    monkeypatch.setattr(supervisor, "WORKER_MODULE", "mnist_core.no_such_module")
    trainer = Trainer(tmp_path)
    with pytest.raises(StartFailed, match="No module named mnist_core.no_such_module"):
        trainer.start(TrainConfig())
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.START_LOCK]
    assert trainer.snapshot().state == "idle"


@pytest.mark.parametrize("config", [
    TrainConfig(epochs=1, train_size=10000, batch_size=256),
    # Its fused batch normalisations keep their moving statistics on each device's half.
    replace(TrainConfig.fast_cnn(), epochs=1, train_size=6000, batch_size=128),
], ids=["seed_mlp", "fast_cnn"])
def test_two_logical_devices_train_mirrored(tmp_path, config):
    import keras

    from mnist_core.training.fit import load_keras_model

    trainer = Trainer(tmp_path, env={"MNIST_LOGICAL_CPUS": "2"})
    run_id = trainer.start(config).run_id
    snap = trainer.wait(timeout=300)
    assert snap.state == "finished", snap.error
    assert snap.strategy == "MirroredStrategy" and "2 logical devices" in snap.device
    assert snap.val_accuracy > 0.85
    model = load_keras_model(ModelStore(tmp_path).get(run_id).keras_path)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert np.abs(layer.moving_mean.numpy()).max() > 1e-3


@pytest.mark.skipif(len(launch.usable_cores()) < 2, reason="needs two cores to leave one")
def test_a_training_started_with_visitors_connected_leaves_them_a_core(tmp_path):
    trainer = Trainer(tmp_path)
    trainer.start(TrainConfig(epochs=1, train_size=2000), visitors=30)
    snap = trainer.wait(timeout=300)
    assert snap.state == "finished", snap.error
    threads = len(launch.usable_cores()) - 1
    assert f"{threads} thread{'s' if threads > 1 else ''}: a core left for visitors" in snap.device


START_IN_ANOTHER_PROCESS = """
import json, sys
from mnist_core.config import TrainConfig
from mnist_core.training.supervisor import JobRefused, Trainer
config = TrainConfig(**json.loads(sys.argv[2]))
try:
    print(json.dumps({"run_id": Trainer(sys.argv[1]).start(config).run_id}))
except JobRefused as exc:
    print(json.dumps({"refused": str(exc)}))
"""


def start_elsewhere(root, config: TrainConfig) -> subprocess.Popen:
    """A Trainer in another process (another server), which exits once it has started."""
    return subprocess.Popen(
        [sys.executable, "-c", START_IN_ANOTHER_PROCESS, str(root),
         json.dumps({k: v for k, v in config.to_dict().items() if k != "fine_tune_from"})],
        stdout=subprocess.PIPE, text=True, cwd=REPO, env=tier.python_env(REPO))


def test_two_processes_pressing_start_at_once_get_one_training(tmp_path):
    starters = [start_elsewhere(tmp_path, LONG) for _ in range(3)]
    answers = [json.loads(p.communicate(timeout=180)[0]) for p in starters]
    started = [a["run_id"] for a in answers if "run_id" in a]
    refused = [a["refused"] for a in answers if "refused" in a]
    assert len(started) == 1 and len(refused) == 2, answers
    assert all(f"run {started[0]}" in text or "being started" in text for text in refused)
    # The starters have exited: the training outlives them and any process can follow it.
    trainer = Trainer(tmp_path)
    wait_for(trainer, lambda s: s.run_id == started[0] and s.batch > 2)
    assert [r.run_id for r in ModelStore(tmp_path).scan().runs] == started
    stop_and_wait(trainer)
    assert ModelStore(tmp_path).get(started[0]).status in ("stopped", "finished")


def test_worker_killed_mid_run_is_interrupted_never_finished(tmp_path, caplog):
    trainer = Trainer(tmp_path)
    run_id = trainer.start(LONG).run_id
    wait_for(trainer, lambda s: s.batch > 5)
    pid = TrainingLease(tmp_path).current().pid
    with caplog.at_level(logging.WARNING, logger="mnist_core.runs.lease"):
        os.kill(pid, signal.SIGKILL)
        snap = trainer.wait(timeout=60)
    assert snap.state == "interrupted" and "signal 9" in snap.error
    run = ModelStore(tmp_path).get(run_id)
    assert run.status == "interrupted" and not run.usable
    assert not (run.path / folder.RECORD).exists() and not run.keras_path.exists()
    assert ModelStore(tmp_path).current() is None
    # The page that watched it recovered the stale lease at once, and said so.
    assert f"Recovered a stale training lease: run {run_id} (pid {pid})" in caplog.text
    assert f"run {run_id}" in snap.notice and TrainingLease(tmp_path).info() is None


def kill_unwatched_training(root) -> tuple[str, int]:
    """A training started by another process (now gone), killed while no one watches."""
    starter = start_elsewhere(root, LONG)
    run_id = json.loads(starter.communicate(timeout=180)[0])["run_id"]
    lease = TrainingLease(root)
    deadline = time.monotonic() + 180
    while not (root / run_id / folder.METRICS).exists():
        assert time.monotonic() < deadline, "the training did not start"
        time.sleep(0.1)
    pid = lease.current().pid
    os.kill(pid, signal.SIGKILL)
    while lease.held():
        assert time.monotonic() < deadline, "the killed worker still holds the lease"
        time.sleep(0.05)
    assert lease.info().run_id == run_id and not lease.held()  # stale: the lock is free
    return run_id, pid


def test_a_stale_lease_is_recovered_by_the_next_start_with_a_log_line(tmp_path, caplog):
    run_id, pid = kill_unwatched_training(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mnist_core.runs.lease"):
        started = Trainer(tmp_path).start(TrainConfig(epochs=1, train_size=2000))
    assert started.recovered.run_id == run_id and run_id in started.notice
    assert f"Recovered a stale training lease: run {run_id} (pid {pid})" in caplog.text
    snap = Trainer(tmp_path).wait(timeout=180)
    assert snap.state == "finished" and snap.run_id == started.run_id
    assert ModelStore(tmp_path).get(run_id).status == "interrupted"


def test_a_stale_lease_is_recovered_by_the_first_reader_and_shown(tmp_path, caplog):
    run_id, pid = kill_unwatched_training(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mnist_core.runs.lease"):
        snap = Trainer(tmp_path).snapshot()
    assert snap.run_id == run_id and snap.state == "interrupted"
    assert f"run {run_id}" in snap.notice and "recovered" in snap.notice
    assert f"Recovered a stale training lease: run {run_id} (pid {pid})" in caplog.text
    assert not (tmp_path / folder.LEASE).exists()


def test_hung_worker_is_killed_and_reported(tmp_path):
    trainer = Trainer(tmp_path, stall_seconds=10)
    # Without validation the worker writes an event every 0.1 s: 10 s of silence is a hang.
    run_id = trainer.start(TrainConfig(**{**LONG.to_dict(), "validation": False})).run_id
    wait_for(trainer, lambda s: s.batch > 5)
    os.kill(TrainingLease(tmp_path).current().pid, signal.SIGSTOP)  # alive but silent
    snap = trainer.wait(timeout=120)
    assert snap.state == "failed" and "made no progress for 10 s" in snap.error
    assert ModelStore(tmp_path).get(run_id).status == "failed"
    assert TrainingLease(tmp_path).current() is None


def test_a_chosen_run_gives_way_to_a_newer_train_page_finish_only(trained_store, trained_run,
                                                                   tmp_path):
    root = tmp_path / "models"
    shutil.copytree(trained_store.root, root)
    older = root / "20000101-000000-0000"
    shutil.copytree(root / trained_run.run_id, older)
    record = json.loads((older / folder.RECORD).read_text())
    record["finished"] -= 3600
    (older / folder.RECORD).write_text(json.dumps(record))
    store = ModelStore(root)
    assert store.current().run_id == trained_run.run_id  # newest by default
    store.choose(older.name)
    assert store.current().run_id == older.name
    record = json.loads((root / trained_run.run_id / folder.RECORD).read_text())
    record["finished"] = time.time() + 10  # a training that finishes after the choice
    (root / trained_run.run_id / folder.RECORD).write_text(json.dumps(record))
    assert store.current().run_id == older.name  # a CLI run does not replace the choice
    config = json.loads((root / trained_run.run_id / folder.CONFIG).read_text())
    (root / trained_run.run_id / folder.CONFIG).write_text(
        json.dumps({**config, "origin": "train_page"}))
    assert store.current().run_id == trained_run.run_id  # the Train page's live demo does


def test_cnn_trains_and_serves_the_same_predictions(tmp_path, mnist):
    from mnist_core.training.fit import load_keras_model

    trainer = Trainer(tmp_path)
    run_id = trainer.start(TrainConfig(model="cnn", epochs=1, train_size=3000,
                                       batch_size=128)).run_id
    snap = trainer.wait(timeout=300)
    assert snap.state == "finished", snap.error
    run = ModelStore(tmp_path).get(run_id)
    assert run.record.params == 34826 and run.val_accuracy > 0.7
    x = normalize(flatten(mnist.x_valid[:500]))
    keras_probabilities = load_keras_model(run.keras_path).predict(x, verbose=0)
    np.testing.assert_allclose(Classifier(run.onnx_path).predict_proba(x), keras_probabilities,
                               atol=1e-5)


def test_fast_cnn_trains_saves_and_is_served_the_same_by_onnx_and_inside(tmp_path, mnist):
    """The fast CNN's recipe through the worker (tiny: one epoch of 3000 images): its batch
    normalisation is saved, served by ONNX Runtime and run by the Inside page's numpy."""
    from mnist_core import inside
    from mnist_core.models import count_params
    from mnist_core.training.fit import load_keras_model

    trainer = Trainer(tmp_path)
    # 47 steps: enough for the batch norms' moving statistics (momentum 0.9) to settle.
    config = replace(TrainConfig.fast_cnn(), epochs=1, train_size=3000, batch_size=64)
    run_id = trainer.start(config).run_id
    snap = trainer.wait(timeout=300)
    assert snap.state == "finished", snap.error
    run = ModelStore(tmp_path).get(run_id)
    assert run.record.config.model == "fast_cnn" and run.val_accuracy > 0.7
    assert run.record.params == count_params("fast_cnn")
    x = normalize(flatten(mnist.x_valid[:500]))
    keras_model = load_keras_model(run.keras_path)
    moving_means = [layer.moving_mean for layer in keras_model.layers
                    if type(layer).__name__ == "BatchNormalization"]
    assert len(moving_means) == 3 and all(np.abs(m).max() > 0 for m in moving_means)
    keras_probabilities = keras_model.predict(x, verbose=0)
    np.testing.assert_allclose(Classifier(run.onnx_path).predict_proba(x), keras_probabilities,
                               atol=1e-5)
    net = inside.load_network(run.path / inside.WEIGHTS_FILE)
    np.testing.assert_allclose(net.predict_proba(x), keras_probabilities, atol=1e-4)


@pytest.mark.unit
def test_affine_augmentation_varies_digits_mildly(mnist):
    import tensorflow as tf

    from mnist_core.training.augment import affine

    x = normalize(flatten(mnist.x_valid[:256]))
    out = affine(seed=1)(tf.constant(x)).numpy()
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    changed = np.abs(out - x).sum(axis=1) > 1.0
    assert changed.mean() > 0.9  # almost every image turned, scaled, slanted or moved
    ink_ratio = out.sum(axis=1) / x.sum(axis=1)
    assert 0.7 < np.median(ink_ratio) < 1.3  # mild: about the same amount of ink
    # ... and still close to where it was: the centre of mass moves about a pixel, not more.
    rows = np.arange(28)[:, None]
    def row_centre(images):
        images = images.reshape(-1, 28, 28)
        return (images * rows).sum(axis=(1, 2)) / images.sum(axis=(1, 2))
    assert np.median(np.abs(row_centre(out) - row_centre(x))) < 1.5


@pytest.mark.unit
def test_training_batches_show_every_image_once_an_epoch_in_a_new_order(mnist):
    from mnist_core.data import categorize
    from mnist_core.training.fit import training_dataset

    x = normalize(flatten(mnist.x_valid[:1000]))
    config = TrainConfig(epochs=3, batch_size=128, train_size=1000)
    dataset = training_dataset(x, categorize(mnist.y_valid[:1000]), config)
    # No background tuner: nothing in the pipeline is tuned, and the iterator's teardown at
    # the end of a fit waited for its thread.
    assert dataset.options().autotune.enabled is False
    batches = [(bx.numpy(), by.numpy()) for bx, by in dataset]
    steps = config.steps_per_epoch()
    assert steps == 8 and len(batches) == 3 * steps  # 1000 images: 8 full batches of 128
    assert all(bx.shape == (128, 784) and by.shape == (128, 10) for bx, by in batches)
    index = {row.tobytes(): i for i, row in enumerate(x)}
    orders = []
    for epoch in range(3):
        seen = [index[row.tobytes()] for bx, _ in batches[epoch * steps:(epoch + 1) * steps]
                for row in bx]
        assert set(seen) == set(range(1000))  # every image, topped up from the epoch's start
        orders.append(seen[:1000])
        labels = np.concatenate([by for _, by in batches[epoch * steps:(epoch + 1) * steps]])
        assert (labels.argmax(axis=1) == mnist.y_valid[:1000][seen]).all()
    assert orders[0] != orders[1] != orders[2]


@pytest.mark.unit
def test_pen_strokes_redraw_half_the_batch_along_each_digit_s_skeleton(mnist):
    import tensorflow as tf

    from mnist_core.training.augment import pen_strokes, skeletons

    x = normalize(flatten(mnist.x_valid[:512]))
    skeleton = skeletons(x)
    assert set(np.unique(skeleton)) == {0.0, 1.0}
    ink = x >= 0.5
    assert (skeleton[~ink] == 0).all()  # the centre line lies on the ink...
    assert np.median(skeleton.sum(axis=1) / ink.sum(axis=1)) < 0.6  # ... and is thinner
    out = pen_strokes(seed=3)(tf.constant(x), tf.constant(skeleton)).numpy()
    redrawn = ~np.isclose(out, x).all(axis=1)
    assert 0.4 < redrawn.mean() < 0.6  # about half of the batch
    # A redrawn digit covers its skeleton and stays within one pen width of it: inside the
    # skeleton dilated by the widest pen, a 3x3 square.
    assert (out[redrawn][skeleton[redrawn] == 1] > 0.99).all()
    lines = np.pad(skeleton[redrawn].reshape(-1, 28, 28), ((0, 0), (1, 1), (1, 1)))
    widest = np.lib.stride_tricks.sliding_window_view(lines, (3, 3), axis=(1, 2)).max(axis=(3, 4))
    assert (out[redrawn][widest.reshape(-1, 784) == 0] == 0).all()
    inked = (out[redrawn] > 0).sum(axis=1)
    assert inked.mean() > 1.5 * skeleton[redrawn].sum(axis=1).mean()  # wider than the line
    assert set(np.unique(out[~redrawn])) <= set(np.unique(x))


def applier(optimizer, weights):
    """optimizer.apply(gradients, weights) compiled, as model.fit runs it."""
    import tensorflow as tf

    @tf.function
    def apply(gradients):
        optimizer.apply(gradients, weights)

    return apply


@pytest.mark.unit
def test_the_fused_adam_updates_weights_as_keras_adam_does():
    import keras
    import tensorflow as tf

    from mnist_core.training.fit import build_optimizer
    from mnist_core.training.fused_adam import FusedAdam

    fused = build_optimizer(TrainConfig())  # the app's Adam, with its warm-up and decay
    assert isinstance(fused, FusedAdam)
    plain = keras.optimizers.Adam.from_config(fused.get_config())
    rng = np.random.default_rng(0)
    start = [rng.normal(size=shape).astype(np.float32) for shape in ((784, 32), (32,))]
    gradients = [[rng.normal(size=w.shape).astype(np.float32) for w in start]
                 for _ in range(30)]
    results = []
    for optimizer in (fused, plain):
        weights = [keras.Variable(w) for w in start]
        optimizer.build(weights)
        apply = applier(optimizer, weights)
        for step in gradients:
            apply([tf.constant(g) for g in step])
        results.append([w.numpy() for w in weights])
        kernels = {op.type for op in apply.get_concrete_function(
            [tf.constant(g) for g in gradients[0]]).graph.get_operations()}
        assert ("ResourceApplyAdam" in kernels) == (optimizer is fused)
    for mine, theirs, first in zip(*results, start, strict=True):
        assert np.abs(mine - first).max() > 1e-3  # the weights moved...
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)  # ... the same way


@pytest.mark.unit
def test_the_fused_batch_norm_trains_as_keras_batch_norm_does(mnist):
    """The fast CNN's first batch normalisation, on what it sees of a batch of MNIST: the
    worker's (one fused kernel) gives Keras's outputs, gradients and moving statistics, to
    float32's rounding (which the many zeros and the small spread here amplify)."""
    import keras
    import tensorflow as tf

    from mnist_core.training.fit import build_model
    from mnist_core.training.fused_batch_norm import FusedBatchNormalization

    keras.utils.set_random_seed(3)
    first_block = keras.Sequential(build_model("fast_cnn").layers[:3])  # conv 16, pooling
    x = tf.constant(first_block(normalize(flatten(mnist.x_train[:512]))))
    upstream = tf.random.stateless_normal(x.shape, (1, 2))
    results = []
    for kind in (FusedBatchNormalization, keras.layers.BatchNormalization):
        norm = kind(momentum=0.9)
        norm.build(x.shape)
        norm.gamma.assign(np.linspace(0.5, 1.5, 16))
        norm.beta.assign(np.linspace(-1, 1, 16))

        @tf.function
        def step(x, norm=norm):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = norm(x, training=True)
                loss = tf.reduce_sum(y * upstream)
            return [y, *tape.gradient(loss, [x, norm.gamma, norm.beta])]

        values = step(x)
        kernels = {op.type for op in step.get_concrete_function(x).graph.get_operations()}
        assert ("FusedBatchNormV3" in kernels) == (kind is FusedBatchNormalization)
        results.append([np.asarray(v) for v in
                        (*values, norm.moving_mean, norm.moving_variance)])
    for fused, keras_own in zip(*results, strict=True):
        np.testing.assert_allclose(fused, keras_own, rtol=0,
                                   atol=1e-3 * np.abs(keras_own).max())
    moving_mean, moving_variance = results[1][-2:]
    assert np.abs(moving_mean).max() > 1e-3 and np.abs(moving_variance - 1).max() > 1e-3


@pytest.mark.unit
def test_the_fused_batch_norm_keeps_the_batch_variance_as_keras_does():
    """On 4 values a channel, the kernel's variance (divided by n - 1) is 4/3 of the batch's
    (divided by n), which Keras's moving variance takes: momentum 0 shows it whole."""
    import keras

    from mnist_core.training.fused_batch_norm import FusedBatchNormalization

    x = np.arange(12, dtype=np.float32).reshape(2, 1, 2, 3) ** 2
    mine, theirs = FusedBatchNormalization(momentum=0.0), keras.layers.BatchNormalization(
        momentum=0.0)
    np.testing.assert_allclose(mine(x, training=True), theirs(x, training=True), rtol=1e-5)
    np.testing.assert_allclose(mine.moving_variance, theirs.moving_variance, rtol=1e-6)
    np.testing.assert_allclose(mine.moving_mean, theirs.moving_mean, rtol=1e-6)


@pytest.mark.unit
@pytest.mark.parametrize("options, call", [
    ({}, {"training": False}),  # inference
    ({"trainable": False}, {"training": True}),
    ({"axis": 1}, {"training": True}),
    ({"epsilon": 1e-6}, {"training": True}),  # below the kernel's floor
    ({"dtype": "float64"}, {"training": True}),
    ({"flat": True}, {"training": True}),  # not an image's channels
], ids=["inference", "frozen", "axis 1", "tiny epsilon", "float64", "flat"])
def test_what_the_fused_kernel_does_not_cover_is_keras_own_batch_norm(options, call, mnist):
    import keras

    from mnist_core.training.fused_batch_norm import FusedBatchNormalization

    options = dict(options)
    x = normalize(flatten(mnist.x_train[:64])).reshape(64, 28, 28, 1)[:, 10:14, 10:14]
    if options.pop("flat", False):
        x = x.reshape(64, -1)
    layers = [kind(momentum=0.5, **options) for kind in
              (FusedBatchNormalization, keras.layers.BatchNormalization)]
    outputs = [np.asarray(layer(x, **call)) for layer in layers]
    np.testing.assert_array_equal(*outputs)
    for mine, theirs in zip(layers[0].weights, layers[1].weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


@pytest.mark.unit
def test_the_worker_builds_the_fast_cnn_with_fused_batch_norms():
    from mnist_core.training.fit import build_model
    from mnist_core.training.fused_batch_norm import FusedBatchNormalization

    for fused in (True, False):
        kinds = [type(layer) for layer in build_model("fast_cnn", fused=fused).layers
                 if "Normalization" in type(layer).__name__]
        assert len(kinds) == 3
        assert all((kind is FusedBatchNormalization) == fused for kind in kinds)


@pytest.mark.unit
def test_a_pen_strokes_training_carries_the_skeletons_of_its_images():
    from mnist_core.training.augment import skeletons
    from mnist_core.training.fit import prepare_data

    config = replace(TrainConfig.for_drawing(), train_size=1000, seed=4)
    prepared = prepare_data(config)
    assert prepared.skeletons.shape == prepared.x_train.shape == (1000, 784)
    np.testing.assert_array_equal(prepared.skeletons, skeletons(prepared.x_train))
    assert prepare_data(replace(config, pen_strokes=False)).skeletons is None


PNG = b"\x89PNG\r\n\x1a\nfake-but-opaque-bytes"


def fill_drawings(store, mnist, count: int, start: int) -> None:
    """Real validation digits stand in for the class's drawings."""
    for i in range(start, start + count):
        probabilities = np.full(10, 0.1)
        store.add(mnist.x_valid[i], PNG, int(mnist.y_valid[i]), probabilities, "run-a")


def test_fine_tune_on_drawings_is_a_normal_run_with_its_parent(trained_store, trained_run,
                                                               tmp_path, mnist):
    store = DrawingStore(tmp_path / "drawings.db")
    fill_drawings(store, mnist, 60, start=1000)
    drawings = store.load()
    root = tmp_path / "models"
    shutil.copytree(trained_store.root, root)
    trainer = Trainer(root)
    run_id = trainer.start(
        TrainConfig(epochs=1, train_size=5000, augment=True, learning_rate=0.0005,
                    fine_tune_from=trained_run.run_id),
        drawings.to_npz()).run_id
    store.delete_all()  # a teacher clearing the drawings meanwhile changes nothing
    snap = trainer.wait(timeout=300)
    assert snap.state == "finished", snap.error
    run = ModelStore(root).get(run_id)
    record = run.record
    assert record.parent == trained_run.run_id == record.config.fine_tune_from
    assert record.config.augment is True
    # Every 5th drawing by id is held out: ids 5, 10, ..., 60 are the 1004th, 1009th, ...
    # validation digits.
    held = mnist.x_valid[1004:1060:5]
    held_labels = mnist.y_valid[1004:1060:5]
    tune = record.fine_tune
    assert (tune.drawings_train, tune.drawings_holdout) == (48, 12)
    assert tune.drawings_repeats == round(0.1 * 5000 / 48)
    # The recorded accuracies are the two models' own on exactly those 12 drawings.
    x_held = normalize(flatten(held))
    before = (Classifier(trained_run.onnx_path).predict_proba(x_held).argmax(1) == held_labels)
    after = (Classifier(run.onnx_path).predict_proba(x_held).argmax(1) == held_labels)
    assert tune.accuracy_before == pytest.approx(before.mean())
    assert tune.accuracy_after == pytest.approx(after.mean())
    assert tune.gain == pytest.approx(after.mean() - before.mean())
    assert record.evaluation.accuracy > 0.9  # still an MNIST model
