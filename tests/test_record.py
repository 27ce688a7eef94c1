"""Typed run files: every kind of junk in a run folder is a reason, never an exception."""

from __future__ import annotations

import functools
import io
import json
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from mnist_core.config import TrainConfig
from mnist_core.data import NUM_CLASSES, NUM_PIXELS
from mnist_core.evaluate import evaluation
from mnist_core.inference import Classifier
from mnist_core.runs import events, folder
from mnist_core.runs.record import (
    BatchEvent,
    EndEvent,
    EpochEvent,
    ErrorEvent,
    RecordError,
    RunRecord,
    StartEvent,
    parse_event,
    parse_record,
)
from mnist_core.runs.saved import check_onnx
from mnist_core.runs.store import ModelStore

pytestmark = pytest.mark.unit

RUN_ID = "20260101-120000-abcd"
EVALUATED = 100  # images in a made-up evaluation: accuracy in steps of 1%


@functools.cache
def onnx_model_bytes() -> bytes:
    """A real ONNX model of the served kind, (N, 784) float32 -> (N, 10) probabilities: a
    softmax over a zero-initialized dense layer, as small as a model gets."""
    weights = numpy_helper.from_array(np.zeros((NUM_PIXELS, NUM_CLASSES), np.float32), "kernel")
    bias = numpy_helper.from_array(np.zeros(NUM_CLASSES, np.float32), "bias")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "kernel"], ["logits"]),
         helper.make_node("Add", ["logits", "bias"], ["scores"]),
         helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1)],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, NUM_PIXELS])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, NUM_CLASSES])],
        initializer=[weights, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def keras_archive_bytes() -> bytes:
    """A zip shaped like a .keras archive (the store checks the container, never loads it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", json.dumps({"class_name": "Sequential"}))
        archive.writestr("model.weights.h5", b"")
    return buffer.getvalue()


def weights_npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{"layers.json": np.array('{"name": "seed_mlp", "layers": []}'),
                        "0/Dense/kernel": np.zeros((NUM_PIXELS, NUM_CLASSES), np.float32)})
    return buffer.getvalue()


def saved_record(run_id: str = RUN_ID, config: TrainConfig | None = None, *,
                 accuracy: float = 0.97, loss: float = 0.1, finished: float | None = None,
                 status: str = "finished") -> RunRecord:
    """A record as the worker writes it, for a model that gets `accuracy` of EVALUATED images
    right and whose last training loss was `loss` (NaN for a diverged training)."""
    y = np.arange(EVALUATED) % NUM_CLASSES
    probabilities = np.eye(NUM_CLASSES, dtype=np.float32)[y] * 0.9 + 0.01
    wrong = round((1 - accuracy) * EVALUATED)
    probabilities[:wrong] = np.roll(probabilities[:wrong], 1, axis=1)
    finished = time.time() if finished is None else finished
    config = config or TrainConfig(epochs=2)
    return RunRecord(
        run_id=run_id, status=status, config=config, device="CPU (2 cores)", device_kind="CPU",
        strategy="_DefaultDistributionStrategy", precision="float32", started=finished - 10,
        finished=finished, fit_seconds=8.0, epochs_completed=2,
        history={"loss": (0.3, loss), "accuracy": (0.9, accuracy),
                 "val_loss": (0.2, loss), "val_accuracy": (0.95, accuracy)},
        evaluation=evaluation(y, probabilities), params=7850, tensorflow="2.21.0",
        keras="3.15.1")


def finished_run(root: Path, run_id: str = RUN_ID, config: TrainConfig | None = None,
                 **record) -> Path:
    """A saved run written file by file as the starter and the worker write it: config.json,
    the events, model.keras, model.onnx, weights.npz, and record.json last. `record` goes to
    `saved_record` (accuracy, loss, finished, status)."""
    config = config or TrainConfig(epochs=2)
    run = root / run_id
    run.mkdir(parents=True)
    folder.atomic_write_json(run / folder.CONFIG, config.to_dict())
    saved = saved_record(run_id, config, **record)
    metrics, t = run / folder.METRICS, saved.started
    events.append_event(metrics, StartEvent("CPU (2 cores)", "CPU", "_DefaultDistributionStrategy",
                                            "float32", config.steps_per_epoch(), t))
    for epoch in range(saved.epochs_completed):
        events.append_event(metrics, BatchEvent(epoch, config.steps_per_epoch(),
                                                (epoch + 1) * config.steps_per_epoch(),
                                                saved.history["loss"][epoch],
                                                saved.history["accuracy"][epoch], t + epoch + 1))
        events.append_event(metrics, EpochEvent(epoch, True, 1.0, t + epoch + 1,
                                                saved.history["loss"][epoch],
                                                saved.history["accuracy"][epoch]))
    (run / folder.WORKER_LOG).write_text("training...\n")
    folder.atomic_write_bytes(run / folder.KERAS_FILE, keras_archive_bytes())
    folder.atomic_write_bytes(run / folder.ONNX_FILE, onnx_model_bytes())
    folder.atomic_write_bytes(run / folder.WEIGHTS_FILE, weights_npz_bytes())
    folder.atomic_write_json(run / folder.RECORD, saved.to_dict())
    events.append_event(metrics, EndEvent(saved.status, True, saved.finished,
                                          saved.evaluation.accuracy))
    return run


def a_record(mnist) -> RunRecord:
    """A record as the worker writes it, for a model that predicts y_valid with 3 mistakes."""
    probabilities = np.eye(10, dtype=np.float32)[mnist.y_valid] * 0.9 + 0.01
    probabilities[[0, 1, 2]] = np.roll(probabilities[[0, 1, 2]], 1, axis=1)
    return RunRecord(
        run_id=RUN_ID, status="finished", config=TrainConfig(epochs=2), device="CPU (2 cores)",
        device_kind="CPU", strategy="_DefaultDistributionStrategy", precision="float32",
        started=1.0, finished=2.0, fit_seconds=0.5, epochs_completed=2,
        history={"loss": (0.3, 0.1), "val_accuracy": (0.9, 0.95)},
        evaluation=evaluation(mnist.y_valid, probabilities), params=669706,
        tensorflow="2.21.0", keras="3.15.1")


def write_run(root, record_values=None, config_values=None, metrics: str | None = None):
    """A run folder with the given file contents (JSON values, or raw text when a str)."""
    run = root / RUN_ID
    run.mkdir(parents=True)

    def put(name, value):
        (run / name).write_text(value if isinstance(value, str) else json.dumps(value))

    put(folder.CONFIG, TrainConfig().to_dict() if config_values is None else config_values)
    if record_values is not None:
        put(folder.RECORD, record_values)
        (run / folder.KERAS_FILE).write_bytes(keras_archive_bytes())
        (run / folder.ONNX_FILE).write_bytes(onnx_model_bytes())
    if metrics is not None:
        (run / folder.METRICS).write_text(metrics)
    return run


def test_a_record_round_trips_through_json(mnist):
    record = a_record(mnist)
    back = parse_record(json.loads(json.dumps(record.to_dict())))
    assert back == record
    assert back.evaluation.accuracy == pytest.approx(1 - 3 / 10000)
    assert [m.index for m in back.evaluation.misclassified] == [0, 1, 2]
    assert back.parent is None and back.history["val_accuracy"] == (0.9, 0.95)


def without(values: dict, key: str) -> dict:
    return {k: v for k, v in values.items() if k != key}


@pytest.mark.parametrize("change, reason", [
    (lambda r: without(r, "finished"), "missing 'finished'"),  # a record from another version
    (lambda r: {**r, "status": "running"}, "status must be finished or stopped"),
    (lambda r: {**r, "fit_seconds": "fast"}, "fit_seconds must be a number"),
    (lambda r: {**r, "epochs_completed": 1.5}, "epochs_completed must be a whole number"),
    (lambda r: {**r, "config": []}, "config must be a JSON object"),
    (lambda r: {**r, "config": {**r["config"], "epochs": 0}}, "epochs must be from 1 to 50"),
    (lambda r: {**r, "evaluation": {**r["evaluation"], "accuracy": 7}}, "accuracy must be from 0"),
    (lambda r: {**r, "evaluation": {**r["evaluation"], "confusion_matrix": [[1]]}}, "10 rows"),
    (lambda r: {**r, "history": {"loss": "low"}}, "history: loss must be a list"),
    (lambda r: [r], "record.json must be a JSON object, got list"),
    (lambda r: {**r, "params": float("inf")}, "params must be a whole number, got inf"),
    (lambda r: {**r, "epochs_completed": float("nan")}, "must be a whole number, got nan"),
    (lambda r: {**r, "config": {**r["config"], "epochs": float("inf")}}, "config"),
])
def test_every_kind_of_bad_record_is_unreadable_with_its_reason(mnist, tmp_path, change, reason):
    write_run(tmp_path, record_values=change(a_record(mnist).to_dict()))
    scan = ModelStore(tmp_path).scan()
    [run] = scan.runs
    assert run.status == "unreadable" and reason in run.error and run.error.startswith("unreadable")
    assert scan.usable == [] and ModelStore(tmp_path).current() is None
    assert run.label().startswith(RUN_ID)


@pytest.mark.parametrize("config, reason", [
    ("", "config.json is empty"),
    ('{"model": "seed_mlp", "epo', "config.json is corrupt"),
    ([], "config.json must be a JSON object, got list"),
    ({"model": "resnet"}, "model must be one of seed_mlp, cnn"),
    ({"epochs": "five"}, "epochs must be a number"),
    ('{"epochs": Infinity}', "config.json"),
    ('{"seed": NaN}', "config.json"),
])
def test_a_bad_config_is_unreadable_with_its_reason(tmp_path, config, reason):
    write_run(tmp_path, config_values=config)
    [run] = ModelStore(tmp_path).scan().runs
    assert run.status == "unreadable" and reason in run.error and run.config is None


def test_a_missing_config_and_a_record_without_its_models(mnist, tmp_path):
    run = write_run(tmp_path, record_values=a_record(mnist).to_dict())
    (run / folder.ONNX_FILE).unlink()
    assert "record.json without its model.onnx" in ModelStore(tmp_path).get(RUN_ID).error
    (run / folder.CONFIG).unlink()
    assert ModelStore(tmp_path).get(RUN_ID).error == "unreadable: no config.json"


def test_junk_metric_lines_are_skipped_and_the_rest_still_counts(tmp_path):
    lines = [
        "[1, 2, 3]", '"just text"', "{not json", '{"event": "batch", "epoch": "one"}',
        '{"event": "meteor"}', json.dumps({"event": "error", "message": "boom", "t": 1}),
        '{"event": "end", "status": "stopped"',  # a line cut short by a kill, no newline
    ]
    write_run(tmp_path, metrics="\n".join(lines))
    reader = events.EventReader(tmp_path / RUN_ID / folder.METRICS)
    assert reader.read_new() == [ErrorEvent("boom", 1.0)] and reader.skipped == 5
    run = ModelStore(tmp_path).get(RUN_ID)
    assert (run.status, run.error) == ("failed", "boom")


@pytest.mark.parametrize("facts, expected", [
    ({"live": True}, ("starting", None)),
    ({"live": True, "started": True}, ("running", None)),
    ({"live": True, "started": True, "stop_requested": True}, ("stopping", None)),
    ({"outcome": folder.Outcome("interrupted", "killed (signal 9)", 0)},
     ("interrupted", "killed (signal 9)")),
    ({"error": "ValueError: x"}, ("failed", "ValueError: x")),
    ({"end": EndEvent("stopped", False, 0.0)}, ("stopped", folder.NOTHING_SAVED)),
    ({}, ("interrupted", folder.ENDED_UNSAVED)),
])
def test_the_one_status_function(facts, expected):
    summary = events.EventSummary(started=facts.get("started", False), end=facts.get("end"),
                                  error=facts.get("error"))
    assert folder.run_status(record=None, live=facts.get("live", False),
                             stop_requested=facts.get("stop_requested", False), events=summary,
                             outcome=facts.get("outcome")) == expected


def test_a_saved_record_decides_whatever_else_the_folder_says(mnist):
    summary = events.EventSummary(error="a later error")
    assert folder.run_status(record=a_record(mnist), live=True, stop_requested=True,
                             events=summary, outcome=None) == ("finished", None)


def test_entries_that_are_not_runs_are_skipped_and_the_folder_s_own_files_ignored(tmp_path):
    for name in (folder.LEASE_LOCK, folder.START_LOCK, folder.CHOICE, folder.DRAWINGS_DB):
        (tmp_path / name).write_text("")
    (tmp_path / "notes.txt").write_text("a teacher's notes")
    (tmp_path / "old-runs").mkdir()
    (tmp_path / ".20260101-000000-ffff").mkdir()  # a run being prepared
    scan = ModelStore(tmp_path).scan()
    assert scan.runs == [] and sorted(scan.skipped) == [("notes.txt", "not a run folder"),
                                                        ("old-runs", "not a run folder")]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
                    max_leaves=20)


@given(JSON)
def test_any_json_value_is_an_event_or_a_record_error(value):
    try:
        parse_event(value)
    except RecordError:
        pass


@given(st.fixed_dictionaries({"event": st.just("batch")}, optional={
    "epoch": JSON, "batch": JSON, "step": JSON, "loss": JSON, "accuracy": JSON, "t": JSON}))
@example({"event": "batch", "epoch": float("inf"), "batch": 1, "step": 1, "loss": 1, "accuracy": 1,
          "t": 1})
@example({"event": "batch", "epoch": 0, "batch": float("nan"), "step": 1, "loss": 1,
          "accuracy": 1, "t": 1})
def test_a_batch_event_with_any_field_values_parses_or_says_which_field(values):
    try:
        event = parse_event(values)
    except RecordError as exc:
        assert "batch event" in str(exc)
    else:
        assert isinstance(event, BatchEvent) and isinstance(event.step, int)


@given(JSON)
def test_any_json_value_as_a_record_is_a_record_error(value):
    with pytest.raises(RecordError):
        parse_record(value)


def test_a_run_written_as_the_worker_writes_it_is_usable_and_its_model_serves(tmp_path):
    finished_run(tmp_path)
    [run] = ModelStore(tmp_path).scan().usable
    assert (run.status, run.origin, run.healthy, run.record.finite) == ("finished", "cli", True,
                                                                         True)
    x = np.zeros((2, NUM_PIXELS), np.float32)  # (N, 784) float32 in [0, 1]
    assert Classifier(run.onnx_path).predict_proba(x).shape == (2, NUM_CLASSES)


def test_every_truncation_of_an_onnx_model_is_refused(tmp_path):
    model = onnx_model_bytes()
    path = tmp_path / folder.ONNX_FILE
    path.write_bytes(model)
    check_onnx(path)
    for cut in range(0, len(model), max(len(model) // 200, 1)):
        path.write_bytes(model[:cut])
        with pytest.raises(RecordError, match="model.onnx is (corrupt|empty)"):
            check_onnx(path)


@given(st.binary(max_size=200))
@example(b"\x08\x08:\x00")  # ir_version 8 and an empty graph: the smallest structure that passes
@example(b"\x08" + b"\xff" * 20)  # a varint longer than 64 bits
@example(b":\xff\xff\xff\xff\x0f")  # a graph claiming 4 GB
def test_any_bytes_are_an_onnx_model_or_a_record_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / folder.ONNX_FILE
        path.write_bytes(data)
        try:
            check_onnx(path)
        except RecordError as exc:
            assert str(exc).startswith("model.onnx is ")
