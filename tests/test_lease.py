"""The training lease on its own: a process holding it as a worker does, and probes from many
threads and processes that must never mistake each other for a training."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from mnist_core.config import TrainConfig
from mnist_core.runs import folder
from mnist_core.runs.lease import LeaseInfo, TrainingLease
from mnist_core.training.follow import Follower
from mnist_core.training.supervisor import Trainer
from tests.foreign_os import tier

pytestmark = pytest.mark.unit

RUN_ID = "20260101-120000-abcd"
HOLDER = """
import sys
from mnist_core.config import TrainConfig
from mnist_core.runs.lease import TrainingLease
lease = TrainingLease(sys.argv[1])
lock = lease.hold()
lease.publish(sys.argv[2], TrainConfig())
print("holding", flush=True)
sys.stdin.read()  # until the test closes our stdin, or kills us
lease.end(lock)
"""
PROBER = """
import sys
from mnist_core.runs.lease import TrainingLease
lease = TrainingLease(sys.argv[1])
print(sum(lease.current() is not None for _ in range(int(sys.argv[2]))))
"""


def python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], text=True,
                            cwd=folder.REPO_DIR, env=tier.python_env(folder.REPO_DIR),
                            **kwargs)


@pytest.fixture()
def holder(tmp_path):
    """A process holding the lease of tmp_path for RUN_ID, as a worker does."""
    process = python(HOLDER, str(tmp_path), RUN_ID, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout.readline().strip() == "holding"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def live_count(lease: TrainingLease, calls: int, threads: int) -> int:
    """How many of `calls` look-ups, from `threads` threads at once, saw a training."""
    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(lambda _: lease.current() is not None, range(calls)))


def test_a_held_lease_is_seen_by_every_probe_at_once(tmp_path, holder):
    lease = TrainingLease(tmp_path)
    assert lease.current().run_id == RUN_ID and lease.current().pid == holder.pid
    assert live_count(lease, 400, threads=8) == 400
    # Another process's probes neither block ours nor are blocked by them.
    prober = python(PROBER, str(tmp_path), "300", stdout=subprocess.PIPE)
    assert live_count(TrainingLease(tmp_path), 300, threads=4) == 300
    assert prober.communicate(timeout=60)[0].strip() == "300"


def test_a_lease_ended_cleanly_is_gone(tmp_path, holder):
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0
    lease = TrainingLease(tmp_path)
    assert lease.info() is None and not lease.held() and lease.recover_stale() is None


def test_a_killed_holder_leaves_a_stale_lease_no_probe_ever_calls_live(tmp_path, holder):
    holder.kill()
    holder.wait()
    lease = TrainingLease(tmp_path)
    assert lease.info().run_id == RUN_ID  # the file outlived its process: stale
    prober = python(PROBER, str(tmp_path), "300", stdout=subprocess.PIPE)
    assert live_count(lease, 600, threads=8) == 0  # probes never look like a training
    assert prober.communicate(timeout=60)[0].strip() == "0"
    recovered = lease.recover_stale()
    assert recovered.run_id == RUN_ID and recovered.pid == holder.pid
    assert lease.info() is None and lease.recover_stale() is None


def test_a_second_holder_waits_and_then_gets_it(tmp_path, holder):
    lease = TrainingLease(tmp_path)
    got = threading.Event()

    def take():
        lock = lease.hold(timeout=60)
        got.set()
        lock.release()

    thread = threading.Thread(target=take)
    thread.start()
    assert not got.wait(0.5)  # refused while the holder lives
    holder.stdin.close()
    thread.join(timeout=60)
    assert got.is_set()


def test_stop_reaches_a_worker_before_it_renamed_its_folder(tmp_path, holder):
    (tmp_path / f".{RUN_ID}").mkdir()  # the worker holds the lease, its folder is hidden yet
    assert Trainer(tmp_path).stop()
    assert (tmp_path / f".{RUN_ID}" / folder.STOP).exists()


def test_a_start_removes_folders_abandoned_while_being_prepared(tmp_path):
    abandoned = tmp_path / ".20250101-000000-0000"
    abandoned.mkdir()
    (abandoned / folder.CONFIG).write_text("{}")
    (tmp_path / ".cache").mkdir()  # not a run's: left alone
    assert folder.remove_abandoned(tmp_path) == [abandoned.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cache"]


def test_lease_info_round_trips_and_junk_is_ignored(tmp_path):
    lease = TrainingLease(tmp_path)
    info = LeaseInfo(RUN_ID, 4242, 1.5, TrainConfig(epochs=3))
    folder.atomic_write_json(lease.info_path, info.to_dict())
    assert lease.info() == info
    for junk in ("", "[]", '{"run_id": 1}', '{"run_id": "x", "pid": Infinity, "started": 0, '
                 '"config": {}}'):
        lease.info_path.write_text(junk)
        assert lease.info() is None
    assert lease.recover_stale() is None and not lease.info_path.exists()  # stale junk: gone


def test_a_file_named_like_a_run_is_not_followed(tmp_path):
    (tmp_path / RUN_ID).write_text("not a folder")
    assert Follower(tmp_path).snapshot().state == "idle"
