"""Several server processes on one port (serving.shared_port, serving.launch): each visitor
address always reaches the same process, the class is counted across them, and a process
that dies is replaced while the others keep serving."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from serving import launch, shared_port
from tests import e2e, netns, wire
from tests.steering import accepted_by

STUDENTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


LINUX_ONLY = pytest.mark.skipif(shared_port.available() is not None,
                                reason="sharing a port by address is Linux's")


@pytest.mark.unit
@LINUX_ONLY
@pytest.mark.parametrize("address", ["127.0.0.1", "::"])  # "::": dual-stack, IPv4 visitors
def test_each_address_always_reaches_the_same_socket_and_addresses_spread(address):
    if address == "::" and shared_port.available("::") is not None:
        pytest.skip("IPv6 is off on this machine")
    sockets = shared_port.listen(address, 0, 2)
    port = sockets[0].getsockname()[1]
    try:
        # The kernel's own choice hashes the source port too, and a new connection gets a new
        # one: eight connections from one address would all land alike by chance 1 in 128.
        picks = {source: {accepted_by(sockets, "127.0.0.1", port, source) for _ in range(8)}
                 for source in STUDENTS}
    finally:
        for sock in sockets:
            sock.close()
    assert picks == {"127.0.0.2": {0}, "127.0.0.3": {1}, "127.0.0.4": {0}, "127.0.0.5": {1}}


@pytest.mark.unit
@LINUX_ONLY
def test_ipv6_visitors_are_steered_by_the_last_32_bits_of_their_address():
    # Loopback offers IPv6 only ::1, so the visitors connect inside a network namespace of
    # their own (the machine's network is not touched), its loopback holding their addresses.
    netns.require()  # root: skipped with the reason elsewhere, run in CI
    students = {"fd00::2": [0], "fd00::3": [1], "fd00::1:0:0:4": [0],  # only the last 32 bits
                "fd00::ffff:5": [1], "fd00::abcd:1234": [0], "fd00::7:ffff:ffff": [1]}
    result = netns.run_python([f"-6 addr add {student}/128 dev lo nodad" for student in students],
                              "tests.steering", *students)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == students


@pytest.mark.unit
@LINUX_ONLY
def test_a_taken_port_is_seen_before_a_second_launch_joins_it():
    sockets = shared_port.listen("127.0.0.1", 0, 2)
    port = sockets[0].getsockname()[1]
    assert shared_port.port_taken("127.0.0.1", port)
    for sock in sockets:
        sock.close()
    assert not shared_port.port_taken("127.0.0.1", port)


@pytest.mark.unit
def test_the_filter_refuses_a_group_size_it_cannot_mean():
    with socket.socket() as sock, pytest.raises(ValueError):
        shared_port.steer(sock, 0)


@pytest.mark.unit
def test_each_process_gets_its_socket_and_the_port_bound():
    commands = launch.child_commands([7, 8, 9], ["--server.port=0", "--theme.base", "dark"],
                                     port=8555)
    assert len(commands) == 3
    for index, command in enumerate(commands):
        assert command[command.index("--child") + 1:][:2] == [str(7 + index), str(index)]
        assert command[command.index("--server.port") + 1] == "8555"
        assert "--server.port=0" not in command and "dark" in command


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, trained_store):
    root = tmp_path_factory.mktemp("two")
    models = root / "models"
    shutil.copytree(trained_store.root, models)
    server = e2e.AppServer(models, root / "server.log", processes=2).start()
    try:
        yield server, models
    finally:
        server.stop()


async def _students_draw(url: str, sources: list[str], hold: float) -> list[str]:
    """Each source a student drawing a 7 on /Draw; all stay connected `hold` seconds."""
    visitors = [wire.DrawVisitor(url, source=source) for source in sources]
    predictions = []
    try:
        for visitor in visitors:
            await visitor.__aenter__()
            predictions.append((await visitor.draw(7))[0])
        await asyncio.sleep(hold)
        return predictions
    finally:
        for visitor in visitors:
            if visitor.ws is not None:
                await visitor.__aexit__()


async def _teacher_sees(url: str) -> str:
    """The number of students the teacher's Join page shows."""
    async with wire.connect(url) as ws:
        await ws.send(wire.rerun("Join"))
        run = await wire.read_run(ws)
    return next(element.body for kind, element in wire.elements(run)
                if kind == "metric" and element.label == "Students connected now")


async def _until(check, timeout: float = 60.0):
    """Poll the coroutine function `check` until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await check():
            return result
        await asyncio.sleep(0.5)
    raise AssertionError(f"not within {timeout:.0f} s")


async def _join(url: str, sources: list[str]) -> list[wire.DrawVisitor]:
    visitors = []
    for source in sources:
        visitor = wire.DrawVisitor(url, source=source)
        await visitor.__aenter__()
        visitors.append(visitor)
    return visitors


async def _class_while_connected(url: str, sources: list[str], models, pids: list[int]):
    """The students' predictions, then, while they are all connected, the teacher's count
    and each process's own count once every process has published its students."""
    visitors = await _join(url, sources)
    try:
        predictions = [(await visitor.draw(7))[0] for visitor in visitors]

        async def published():
            files = _presence_files(models)
            return files if sum(files.get(pid, 0) for pid in pids) == len(sources) else None

        by_process = await _until(published)
        seen = await _until(lambda: _teacher_sees_all(url, len(sources)))
        return predictions, seen, by_process
    finally:
        for visitor in visitors:
            await visitor.__aexit__()


async def _teacher_sees_all(url: str, students: int) -> str | None:
    seen = await _teacher_sees(url)
    return seen if seen == str(students) else None


def _presence_files(models) -> dict[int, int]:
    """pid -> students, from each process's presence file."""
    folder = models / ".servers"
    files = [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.is_dir() else []
    return {f["pid"]: f["students"] for f in files}


@pytest.mark.browser
def test_two_processes_share_the_class_and_the_teacher_counts_everyone(two_processes):
    server, models = two_processes
    pids = server.server_pids()
    assert len(pids) == 2
    predictions, seen, by_process = wire.run(
        _class_while_connected(server.url, STUDENTS, models, pids))
    assert predictions == ["7"] * len(STUDENTS)
    assert seen == str(len(STUDENTS))  # the teacher's process holds two; the other, two
    # Even and odd addresses go to different processes: two students each.
    assert {pid: by_process.get(pid) for pid in pids} == {pid: 2 for pid in pids}


async def _kill_and_carry_on(server, models) -> tuple[list[str], list[str], dict[int, int]]:
    """Students of the second process connected; the first process is killed. Returns the
    predictions of those students on their sessions of before, those of new sessions from
    every student's address, and each process's students then (`counted`: the new first
    process holds the two even addresses, the second its two students and two new ones)."""
    before = server.server_pids()
    mine = [s for s in STUDENTS if int(s.rsplit(".", 1)[1]) % 2 == 0]  # the first process's
    others = [s for s in STUDENTS if s not in mine]
    survivors = await _join(server.url, others)
    try:
        os.kill(before[0], signal.SIGKILL)

        async def replaced():
            now = server.server_pids()
            return now if len(now) == 2 and before[0] not in now else None

        after = await _until(replaced)
        kept = [(await visitor.draw(7))[0] for visitor in survivors]  # the same sessions
        # The killed process's students come back to the new one; new connections from the
        # other students' addresses still reach the process that was never killed.
        back = await _join(server.url, mine) + await _join(server.url, others)
        try:
            again = [(await visitor.draw(7))[0] for visitor in back]

            async def counted():
                files = _presence_files(models)
                return files if files.get(after[0]) == 2 and files.get(after[1]) == 4 else None

            by_process = await _until(counted)
        finally:
            for visitor in back:
                await visitor.__aexit__()
        return kept, again, {"before": before, "after": after, **by_process}
    finally:
        for visitor in survivors:
            await visitor.__aexit__()


@pytest.mark.browser
def test_a_process_that_dies_is_replaced_and_nobody_elses_students_move(two_processes):
    server, models = two_processes
    kept, again, seen = wire.run(_kill_and_carry_on(server, models))
    assert kept == ["7", "7"]  # the other process's students never noticed
    assert again == ["7"] * 4
    assert seen["after"][1] == seen["before"][1]  # the same process, never restarted
    assert seen["after"][0] != seen["before"][0]


@pytest.mark.browser
def test_a_second_launch_on_the_port_is_refused_and_no_process_outlives_the_launcher(
        tmp_path, trained_store):
    models = tmp_path / "models"
    shutil.copytree(trained_store.root, models)
    server = e2e.AppServer(models, tmp_path / "server.log", processes=2).start()
    try:
        children = server.server_pids()
        second = subprocess.run(
            [sys.executable, "-m", "serving.launch", "--processes", "2", "--server.port",
             str(server.port), "--server.headless", "true"],
            cwd=e2e.REPO, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert f"Port {server.port} is already in use" in second.stderr
        assert server.server_pids() == children  # the class's processes are untouched
        server.kill()  # SIGKILL: the launcher cannot stop its children itself

        def alive() -> list[int]:
            return [pid for pid in children if e2e.command_line(pid)]

        deadline = time.time() + 60
        while alive() and time.time() < deadline:
            time.sleep(0.3)
        assert alive() == []
    finally:
        server.stop()
