"""Junk in the models folder, kind by kind, and a folder that cannot grow without bound.

Every file of a run folder and of the models folder is made missing, empty, truncated, of the
wrong JSON type, wrong in a field's type or value, or from another version, on a real run
written file by file as the worker writes it (tests/test_record.py: `finished_run`). What
each must give:

- the files a saved run's model is made of (config.json, record.json, model.keras,
  model.onnx, weights.npz): the run is unreadable, with a reason naming the file; it is never
  the Draw model; what another version adds is ignored and what it leaves out has a default;
- the files that only tell how a run ended (metrics.jsonl, outcome.json, worker.log, stop):
  never hide a saved model; a run without one gets a status and a reason;
- the folder's own files: a junk lease is no training (and, once its lock is free, a stale
  lease to recover); a junk current.json is no choice; the lock files' contents do not matter.

Nothing raises: the scan, the Draw model, the live snapshot that every page shows.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mnist_core import platform_os
from mnist_core.config import TrainConfig
from mnist_core.runs import events, folder
from mnist_core.runs import store as store_module
from mnist_core.runs.lease import TrainingLease
from mnist_core.runs.record import ACTIVE_STATUSES, BatchEvent, StartEvent, event_to_dict
from mnist_core.runs.store import ActionRefused, ModelStore, Scan
from mnist_core.training import supervisor
from mnist_core.training.supervisor import Trainer
from tests.foreign_os import tier
from tests.test_record import RUN_ID, finished_run

pytestmark = pytest.mark.unit

ENDED_ID = "20260101-110000-eeee"  # older than RUN_ID
NO_SUCH_PID = 4_999_999  # above Linux's largest pid (2**22): never a process


@pytest.fixture(autouse=True)
def kills(monkeypatch):
    """Every kill the code under test attempts (of a process group, where the OS has them, or
    of one process through psutil); none is carried out."""
    calls = []
    monkeypatch.setattr(os, "killpg", lambda pid, sig: calls.append((pid, sig)), raising=False)
    monkeypatch.setattr(psutil.Process, "kill", lambda self: calls.append((self.pid, "kill")))
    return calls


@pytest.fixture()
def root(tmp_path) -> Path:
    return tmp_path / "models"


@pytest.fixture()
def run(root) -> Path:
    """One finished run, saved as the worker saves it."""
    return finished_run(root)


def ended_run(root: Path, run_id: str = ENDED_ID) -> Path:
    """A run whose worker trained a batch and then vanished without a word (SIGKILL)."""
    run = root / run_id
    run.mkdir(parents=True)
    config = TrainConfig(epochs=2)
    folder.atomic_write_json(run / folder.CONFIG, config.to_dict())
    t = time.time() - 60
    events.append_event(run / folder.METRICS, StartEvent("CPU", "CPU", "Default", "float32",
                                                         config.steps_per_epoch(), t))
    events.append_event(run / folder.METRICS, BatchEvent(0, 1, 1, 2.3, 0.1, t + 1))
    return run


def look(root: Path) -> tuple[Scan, object]:
    """What the pages do with the folder, none of which may raise: the scan, every run's
    label and row, the Draw model and why, and the live snapshot with its numbers."""
    store = ModelStore(root)
    scan = store.scan()
    for run in scan.runs:
        run.label()
        if run.usable:
            run.table_row()
            assert run.unhealthy is None or isinstance(run.unhealthy, str)
    store.current_choice(scan)
    snap = Trainer(root).snapshot()
    assert 0.0 <= snap.progress <= 1.0 and math.isfinite(snap.elapsed)
    assert snap.eta is None or math.isfinite(snap.eta)
    assert all(math.isfinite(t) for t in (e.t for e in snap.history))
    return scan, snap


# How a file is spoiled: each takes the file's path and changes it in place.

def missing(path: Path) -> None:
    path.unlink()


def truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def a_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def text(content: str | bytes):
    def change(path: Path) -> None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return change


def edit(how):
    """Change the file's JSON object with `how(values)` (which returns the new value)."""
    def change(path: Path) -> None:
        path.write_text(json.dumps(how(json.loads(path.read_text()))))
    return change


def without(key: str):
    return edit(lambda values: {k: v for k, v in values.items() if k != key})


def setting(**changes):
    return edit(lambda values: {**values, **changes})


def json_kinds(name: str, missing_reason: str, wrong_type_reason: str | None = None):
    """The kinds every JSON file can come in, with the reason each must give."""
    wrong = wrong_type_reason or f"{name} must be a JSON object"
    return [
        (name, "missing", missing, missing_reason),
        (name, "empty", text(""), f"{name} is empty"),
        (name, "truncated", truncated, f"{name} is corrupt"),
        (name, "list", text("[]"), f"{wrong}, got list"),
        (name, "string", text('"x"'), f"{wrong}, got str"),
        (name, "number", text("1"), f"{wrong}, got int"),
        (name, "null", text("null"), f"{wrong}, got NoneType"),
        (name, "a folder", a_folder, f"{name} cannot be read"),
    ]


def binary_kinds(name: str, missing_reason: str, junk_reason: str):
    return [
        (name, "missing", missing, missing_reason),
        (name, "empty", text(b""), junk_reason.replace("corrupt", "empty")
         if name == folder.ONNX_FILE else junk_reason),
        (name, "truncated", truncated, junk_reason),
        (name, "JSON instead", text("[]"), junk_reason),
        (name, "random bytes", text(bytes(range(256)) * 16), junk_reason),
        (name, "a folder", a_folder, missing_reason if name != folder.WEIGHTS_FILE else junk_reason),
    ]


MAKES_IT_UNREADABLE = [
    *json_kinds(folder.CONFIG, "no config.json"),
    (folder.CONFIG, "string epochs", setting(epochs="5"), "config.json: epochs must be a number"),
    (folder.CONFIG, "NaN learning rate", setting(learning_rate=math.nan),
     "config.json: learning_rate must be from"),
    (folder.CONFIG, "unknown origin", setting(origin="martian"), "config.json: origin must be one of"),
    (folder.CONFIG, "number origin", setting(origin=5), "config.json: origin must be one of"),
    # record.json last: a run without one whose events say it saved lost its record
    *json_kinds(folder.RECORD, "no record.json, though metrics.jsonl says the model was saved"),
    (folder.RECORD, "string fit_seconds", setting(fit_seconds="fast"),
     "record.json: fit_seconds must be a number"),
    (folder.RECORD, "NaN finished", setting(finished=math.nan),
     "record.json: finished must be a finite number"),
    (folder.RECORD, "negative fit_seconds", setting(fit_seconds=-1),
     "record.json: fit_seconds must be at least 0"),
    (folder.RECORD, "status running", setting(status="running"),
     "record.json: status must be finished or stopped"),
    (folder.RECORD, "older version: no evaluation", without("evaluation"),
     "record.json: missing 'evaluation'"),
    (folder.RECORD, "wrong config inside", setting(config=[]),
     "record.json: config must be a JSON object"),
    *binary_kinds(folder.KERAS_FILE, "record.json without its model.keras",
                  "model.keras is corrupt"),
    *binary_kinds(folder.ONNX_FILE, "record.json without its model.onnx", "model.onnx is corrupt"),
    *[kind for kind in binary_kinds(folder.WEIGHTS_FILE, "", "weights.npz is corrupt")
      if kind[1] != "missing"],  # older runs have none: see below
]


@pytest.mark.parametrize("name, kind, spoil, reason", [
    pytest.param(*case, id=f"{case[0]}-{case[1]}") for case in MAKES_IT_UNREADABLE])
def test_junk_in_a_file_of_a_saved_run_makes_it_unreadable_naming_the_file(root, run, name,
                                                                            kind, spoil, reason):
    spoil(run / name)
    scan, snap = look(root)
    [listed] = scan.runs
    assert listed.status == "unreadable" and listed.error.startswith("unreadable: ")
    assert reason in listed.error and not listed.usable
    assert scan.usable == [] and ModelStore(root).current() is None
    assert ModelStore(root).get(RUN_ID).error == listed.error
    assert snap.state == "unreadable" and reason in snap.error


TOLERATED = [
    (folder.CONFIG, "unknown extra field", setting(dropout=0.2)),
    (folder.CONFIG, "older version: no origin", without("origin")),
    (folder.CONFIG, "older version: only the model", text('{"model": "seed_mlp"}')),
    (folder.RECORD, "unknown extra field", setting(energy_kwh=0.01)),
    (folder.RECORD, "older version: no fine_tune", without("fine_tune")),
    (folder.WEIGHTS_FILE, "missing (older runs have none)", missing),
    # What only tells how a run ended never hides its saved model
    (folder.METRICS, "missing", missing),
    (folder.METRICS, "empty", text("")),
    (folder.METRICS, "truncated", truncated),
    (folder.METRICS, "junk lines", text('[]\n"x"\n1\nnull\n{"event": "batch", "epoch": "one"}\n')),
    (folder.METRICS, "a folder", a_folder),
    (folder.WORKER_LOG, "missing", missing),
    (folder.WORKER_LOG, "binary", text(bytes(range(256)) * 200)),
    (folder.WORKER_LOG, "a folder", a_folder),
    (folder.OUTCOME, "junk", text("[")),
    (folder.OUTCOME, "a verdict against the record", text(
        '{"status": "failed", "message": "hung", "t": 1}')),
    (folder.STOP, "junk", text('{"please": "stop"}')),
]


@pytest.mark.parametrize("name, kind, spoil", [
    pytest.param(*case, id=f"{case[0]}-{case[1]}") for case in TOLERATED])
def test_what_another_version_adds_or_leaves_out_and_junk_evidence_keep_a_saved_run(
        root, run, name, kind, spoil):
    if not (run / name).exists():
        (run / name).write_text("")
    spoil(run / name)
    scan, snap = look(root)
    [listed] = scan.usable
    assert (listed.run_id, listed.status, listed.error) == (RUN_ID, "finished", None)
    assert ModelStore(root).current().run_id == RUN_ID
    assert snap.state == "finished" and snap.val_accuracy == listed.val_accuracy


def outcome(values) -> str:
    return json.dumps(values)


NEVER_SAVED = [
    (folder.OUTCOME, "missing", None, ("interrupted", folder.ENDED_UNSAVED)),
    (folder.OUTCOME, "empty", "", ("failed", "outcome.json is empty")),
    (folder.OUTCOME, "truncated", '{"status": "inter', ("failed", "outcome.json is corrupt")),
    (folder.OUTCOME, "list", "[]", ("failed", "outcome.json must be a JSON object, got list")),
    (folder.OUTCOME, "string", '"x"', ("failed", "outcome.json must be a JSON object")),
    (folder.OUTCOME, "number", "1", ("failed", "outcome.json must be a JSON object")),
    (folder.OUTCOME, "null", "null", ("failed", "outcome.json must be a JSON object")),
    (folder.OUTCOME, "number message", outcome({"status": "failed", "message": 7, "t": 1}),
     ("failed", "outcome.json: message must be text")),
    (folder.OUTCOME, "older version: no message", outcome({"status": "interrupted"}),
     ("failed", "outcome.json: missing 'message'")),
    (folder.OUTCOME, "unknown extra field", outcome(
        {"status": "interrupted", "message": "killed (signal 9)", "t": 1, "by": "server 2"}),
     ("interrupted", "killed (signal 9)")),
    (folder.OUTCOME, "unknown status", outcome({"status": "exploded", "message": "?", "t": 1}),
     ("interrupted", folder.ENDED_UNSAVED)),
    (folder.METRICS, "junk lines only", '[]\n"x"\nnull\n{"event": "end", "saved": "yes"}\n',
     ("interrupted", folder.ENDED_UNSAVED)),
    (folder.METRICS, "an error with a NaN time", json.dumps(
        {"event": "error", "message": "boom", "t": math.nan}) + "\n",
     ("interrupted", folder.ENDED_UNSAVED)),
    (folder.METRICS, "an error among junk", "{\n" + json.dumps(
        {"event": "error", "message": "boom", "t": 1, "traceback": "new field"}) + "\n",
     ("failed", "boom")),
    (folder.METRICS, "stopped before saving", json.dumps(
        {"event": "end", "status": "stopped", "saved": False, "t": 1}) + "\n",
     ("stopped", folder.NOTHING_SAVED)),
    (folder.WORKER_LOG, "binary", bytes(range(256)).decode("latin-1") * 200,
     ("interrupted", folder.ENDED_UNSAVED)),
]


@pytest.mark.parametrize("name, kind, content, expected", [
    pytest.param(*case, id=f"{case[0]}-{case[1]}") for case in NEVER_SAVED])
def test_junk_evidence_of_a_run_that_never_saved_still_gives_its_status(root, name, kind,
                                                                        content, expected):
    run = ended_run(root)
    if content is not None:
        (run / name).write_text(content)
    scan, snap = look(root)
    [listed] = scan.runs
    assert (listed.status, listed.error and expected[1] in listed.error) == (expected[0], True)
    assert ModelStore(root).current() is None
    assert snap.state == expected[0]


JUNK_EVENT_LINES = [
    "[]", '"x"', "1", "null", "{not json",
    '{"event": "batch", "epoch": "one", "batch": 1, "step": 1, "loss": 1, "accuracy": 1, "t": 1}',
    '{"event": "batch", "epoch": 0, "batch": -1, "step": 1, "loss": 1, "accuracy": 1, "t": 1}',
    '{"event": "batch", "epoch": 0, "batch": 1, "step": 1, "loss": 1, "accuracy": 1, "t": NaN}',
    '{"event": "batch", "epoch": 0, "batch": 1, "step": 1, "loss": 1, "accuracy": 1, '
    '"t": Infinity}',
    '{"event": "start", "device": "x", "device_kind": "CPU", "strategy": "s", '
    '"precision": "float32", "steps_per_epoch": 0, "t": 1}',
    '{"event": "epoch", "epoch": 0, "complete": true, "seconds": -5, "t": 1}',
    '{"event": "meteor", "t": 1}',
    "x" * (events.MAX_LINE_BYTES + 10),  # a "line" longer than any event
]


def test_junk_metrics_lines_never_reach_a_live_snapshot(root):
    run = ended_run(root)
    started = time.time()
    good = [event_to_dict(BatchEvent(0, 2, 2, 2.0, 0.3, started + 2)),
            {**event_to_dict(BatchEvent(0, 3, 3, math.nan, 0.3, started + 3)), "new": 1}]
    with (run / folder.METRICS).open("a") as f:
        f.write("\n".join(JUNK_EVENT_LINES) + "\n")
        f.write("".join(json.dumps(v) + "\n" for v in good))
        f.write('{"event": "batch", "epo')  # a line being written right now
    with training(root, ENDED_ID, started=started):
        scan, snap = look(root)
        assert ModelStore(root).get(ENDED_ID).status == "running"
    assert snap.state == "running" and snap.steps == (1, 2, 3)  # the valid lines only
    assert snap.epoch == 1 and snap.batch == 3 and math.isnan(snap.batch_loss[-1])
    reader = events.EventReader(run / folder.METRICS)
    assert len(reader.read_new()) == 4 and reader.skipped >= len(JUNK_EVENT_LINES)


@contextlib.contextmanager
def training(root: Path, run_id: str, **lease):
    """The lease held by this process, as a worker holds it, with training.json saying
    `lease` (a valid lease for `run_id` unless told otherwise)."""
    holder = TrainingLease(root)
    lock = holder.hold(timeout=5)
    values = {"run_id": run_id, "pid": NO_SUCH_PID, "started": time.time(),
              "config": TrainConfig(epochs=2).to_dict(), **lease}
    folder.atomic_write_json(holder.info_path, values)
    try:
        yield
    finally:
        holder.end(lock)


@pytest.mark.parametrize("pid", [0, -1, 1, "4242", math.nan, None, 4.5],
                         ids=["0", "-1", "1", "string", "NaN", "null", "fraction"])
def test_a_lease_whose_pid_is_not_a_worker_s_is_never_a_training(root, kills, pid):
    ended_run(root)
    with training(root, ENDED_ID, pid=pid):
        assert TrainingLease(root).current() is None
        assert ModelStore(root).get(ENDED_ID).status not in ACTIVE_STATUSES
        scan, snap = look(root)
        assert snap.state not in ACTIVE_STATUSES and not Trainer(root).stop()
    assert [run.status for run in scan.runs] == ["interrupted"] and kills == []


def test_a_valid_lease_is_a_training_and_its_worker_alone_can_be_killed(root, kills):
    ended_run(root)
    with training(root, ENDED_ID):
        assert ModelStore(root).get(ENDED_ID).status == "running"
        with pytest.raises(ActionRefused, match="in use by the training"):
            ModelStore(root).delete(ENDED_ID)
    for pid in (0, -1, 1, os.getpid()):
        supervisor._kill_tree(pid)
    assert kills == []  # never everything, init, our own group or ourselves
    worker = subprocess.Popen(["sleep", "30"], **platform_os.detached())
    try:
        supervisor._kill_tree(worker.pid)
    finally:
        worker.kill()
        worker.wait()
    assert {pid for pid, _ in kills} == {worker.pid}


LEASE_JUNK = [
    ("empty", ""), ("truncated", '{"run_id": "20260101-110000-eeee", "pid'), ("list", "[]"),
    ("string", '"x"'), ("number", "1"), ("null", "null"),
    ("string pid", '{"run_id": "20260101-110000-eeee", "pid": "4242", "started": 1, '
                   '"config": {}}'),
    ("pid 0", '{"run_id": "20260101-110000-eeee", "pid": 0, "started": 1, "config": {}}'),
    ("pid -1", '{"run_id": "20260101-110000-eeee", "pid": -1, "started": 1, "config": {}}'),
    ("NaN started", '{"run_id": "20260101-110000-eeee", "pid": 4242, "started": NaN, '
                    '"config": {}}'),
    ("a path as run id", '{"run_id": "../../etc", "pid": 4242, "started": 1, "config": {}}'),
    ("junk config", '{"run_id": "20260101-110000-eeee", "pid": 4242, "started": 1, '
                    '"config": []}'),
    ("older version: no config", '{"run_id": "20260101-110000-eeee", "pid": 4242, "started": 1}'),
    ("unknown extra field", '{"run_id": "20260101-110000-eeee", "pid": 4242, "started": 1, '
                            '"config": {}, "host": "laptop"}'),
]


@pytest.mark.parametrize("content", [pytest.param(c, id=kind) for kind, c in LEASE_JUNK])
def test_a_junk_lease_whose_lock_is_free_is_no_training_and_is_recovered(root, run, kills,
                                                                           content):
    ended_run(root)
    (root / folder.LEASE).write_text(content)
    assert TrainingLease(root).current() is None
    scan, snap = look(root)  # the Follower recovers the stale lease on the way
    assert [(r.run_id, r.status) for r in scan.runs] == [(RUN_ID, "finished"),
                                                         (ENDED_ID, "interrupted")]
    assert not (root / folder.LEASE).exists() and snap.state == "finished" and kills == []


CHOICE_JUNK = [
    ("empty", ""), ("truncated", '{"run_id": "2026'), ("list", "[]"), ("string", '"x"'),
    ("number", "1"), ("null", "null"),
    ("number run_id", '{"run_id": 1, "t": 1}'),
    ("a path as run_id", '{"run_id": "../../etc/passwd", "t": 1}'),
    ("a run that is not there", '{"run_id": "20250101-000000-0000", "t": 1}'),
    ("string t", f'{{"run_id": "{ENDED_ID}", "t": "now"}}'),
    ("NaN t", f'{{"run_id": "{ENDED_ID}", "t": NaN}}'),
    ("string pinned", f'{{"run_id": "{ENDED_ID}", "t": 1, "pinned": "yes"}}'),
    ("older version: no t", f'{{"run_id": "{ENDED_ID}"}}'),
]


@pytest.mark.parametrize("content", [pytest.param(c, id=kind) for kind, c in CHOICE_JUNK])
def test_a_junk_current_json_is_no_choice(root, content):
    finished_run(root, ENDED_ID, finished=time.time() - 100)  # the older run, "chosen"
    finished_run(root)
    (root / folder.CHOICE).write_text(content)
    look(root)
    current = ModelStore(root).current_choice()
    assert (current.run.run_id, current.why) == (RUN_ID, store_module.NEWEST)


def test_a_current_json_with_fields_from_another_version_still_chooses(root):
    finished_run(root, ENDED_ID, finished=time.time() - 100)
    finished_run(root)
    (root / folder.CHOICE).write_text(json.dumps(
        {"run_id": ENDED_ID, "t": time.time(), "chosen_by": "teacher"}))  # no "pinned" either
    current = ModelStore(root).current_choice()
    assert (current.run.run_id, current.why, current.pinned) == (ENDED_ID, store_module.CHOSEN,
                                                                 False)


@pytest.mark.parametrize("name", [folder.LEASE_LOCK, folder.START_LOCK])
@pytest.mark.parametrize("content", [b"", b"[]", b'{"pid": 0}', bytes(range(256))],
                         ids=["empty", "list", "json", "binary"])
def test_the_lock_files_contents_do_not_matter(root, run, name, content):
    (root / name).write_bytes(content)
    lease = TrainingLease(root)
    assert not lease.held() and lease.current() is None and lease.recover_stale() is None
    with lease.starting(timeout=5):
        pass
    scan, snap = look(root)
    assert [r.status for r in scan.runs] == ["finished"] and snap.state == "finished"


# Bounded growth

def test_delete_removes_a_run_at_once_and_refuses_what_is_not_a_run(root, run, monkeypatch):
    other = finished_run(root, ENDED_ID)
    store = ModelStore(root)
    for junk in ("../models", "notes.txt", f".{RUN_ID}", "", None, RUN_ID + "/.."):
        with pytest.raises(ActionRefused, match="not a run id"):
            store.delete(junk)
    assert store.delete(RUN_ID) and not run.exists() and store.delete(RUN_ID) is False
    # Renamed first: even when removing the files fails half way, the run is gone at once...
    with monkeypatch.context() as patched:
        patched.setattr(shutil, "rmtree", lambda *args, **kwargs: None)
        assert store.delete(ENDED_ID) and not other.exists() and store.scan().runs == []
    [trash] = [p for p in root.iterdir() if p.name.startswith(folder.DELETED_PREFIX)]
    # ...and the next start removes what is left.
    assert folder.remove_temporary(root, older_than=0) == [trash.name]
    assert sorted(p.name for p in root.iterdir()) == []


def test_delete_refuses_the_parent_of_the_fine_tune_being_trained(root, run):
    ended_run(root)
    parent_of = TrainConfig(fine_tune_from=RUN_ID).to_dict()
    with training(root, ENDED_ID, config=parent_of):
        with pytest.raises(ActionRefused, match="in use"):
            ModelStore(root).delete(RUN_ID)
    assert ModelStore(root).delete(RUN_ID)


def test_prune_keeps_the_newest_runs_without_a_model_and_every_saved_one(root):
    saved = [finished_run(root, f"20260101-0000{i:02d}-aaaa").name for i in range(3)]
    stopped = finished_run(root, "20260101-000010-aaaa", status="stopped").name
    failed = [ended_run(root, f"20260102-0000{i:02d}-bbbb").name for i in range(12)]
    (root / failed[3] / folder.CONFIG).write_text("[]")  # unreadable: pruned like a failure
    chosen = failed[0]  # chosen by hand while it was readable: kept
    (root / folder.CHOICE).write_text(json.dumps({"run_id": chosen, "t": 1}))
    with training(root, failed[1]):  # being trained: kept
        removed = ModelStore(root).prune(keep_failed=5)
    newest_first = failed[::-1]
    assert sorted(removed) == sorted(set(newest_first[5:]) - {chosen, failed[1]})
    left = {p.name for p in root.iterdir() if folder.is_run_id(p.name)}
    assert left == {*saved, stopped, *newest_first[:5], chosen, failed[1]}
    assert ModelStore(root).prune(keep_failed=0) == [*newest_first[:5], failed[1]]
    assert ModelStore(root).prune() == []  # the chosen one stays
    with pytest.raises(ValueError):
        ModelStore(root).prune(keep_failed=-1)


FAKE_WORKER = """
import sys, time
from pathlib import Path
from mnist_core.runs.lease import TrainingLease
from mnist_core.runs.record import read_config
prepared = Path(sys.argv[1])
lease = TrainingLease(prepared.parent)
lock = lease.hold()
lease.publish(prepared.name[1:], read_config(prepared / "config.json"))
prepared.rename(prepared.parent / prepared.name[1:])
time.sleep(0.2)
lease.end(lock)
"""


def test_a_start_removes_what_killed_writers_left_and_prunes_failed_runs(root, run, monkeypatch):
    failed = [ended_run(root, f"20250101-0000{i:02d}-bbbb") for i in range(supervisor.KEEP_FAILED_RUNS + 2)]
    old = time.time() - 3600
    leftovers = [root / ".current.json.x1y2.tmp", run / ".record.json.abcd.tmp",
                 run / ".tmp-4242.keras", run / ".tmp-4242.onnx", run / ".weights.npz.4242.tmp",
                 run / "snapshots" / ".step-0000001.npz.4242.tmp",
                 root / f"{folder.DELETED_PREFIX}{ENDED_ID}-beef" / "model.onnx"]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
        os.utime(path, (old, old))
    os.utime(leftovers[-1].parent, (old, old))
    young = root / ".choice.json.being-written.tmp"  # another server writing right now
    young.write_text("{")

    def spawn(self, prepared, threads=None):  # the worker's first steps, without TensorFlow
        return subprocess.Popen([sys.executable, "-c", FAKE_WORKER, str(prepared)],
                                cwd=folder.REPO_DIR, start_new_session=True,
                                env=tier.python_env(folder.REPO_DIR))

    monkeypatch.setattr(Trainer, "_spawn", spawn)
    trainer = Trainer(root)
    started = trainer.start(TrainConfig(epochs=1, origin="train_page"))
    trainer.wait(timeout=60)
    assert not any(path.exists() for path in leftovers) and young.exists()
    assert not leftovers[-1].parent.exists()
    assert [p.exists() for p in failed] == [False, False] + [True] * supervisor.KEEP_FAILED_RUNS
    assert run.exists()  # saved runs are never pruned
    new = ModelStore(root).get(started.run_id)
    assert new.config.origin == "train_page" and new.origin == "train_page"


def test_a_scan_of_500_saved_runs_opens_no_file_once_they_are_parsed(root, monkeypatch):
    first = finished_run(root, "20260101-000000-0000")
    for i in range(1, 500):  # hard links: 500 runs in a moment, each with its own paths
        shutil.copytree(first, root / f"20260101-{i:06d}-0000", copy_function=os.link)
    parsed, opened = [], []
    read_record = store_module.read_record
    monkeypatch.setattr(store_module, "read_record",
                        lambda path: parsed.append(path) or read_record(path))
    store = ModelStore(root)
    assert len(store.scan().usable) == 500 and len(parsed) == 500

    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        opened.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)
    parsed.clear()
    scan = store.scan()
    assert len(scan.usable) == 500 and parsed == [] and opened == []
    assert store.current(scan).run_id == "20260101-000499-0000" and opened == []
    monkeypatch.setattr(builtins, "open", real_open)
    monkeypatch.setattr(io, "open", real_open)
    changed = root / "20260101-000123-0000" / folder.RECORD
    values = json.loads(changed.read_text())
    folder.atomic_write_json(changed, {**values, "status": "stopped"})
    assert store.get("20260101-000123-0000").status == "stopped" and len(parsed) == 1
    assert len(store.scan().usable) == 500 and len(parsed) == 1
