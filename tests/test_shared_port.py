"""Several server processes on one port (serving.shared_port, serving.launch): each visitor
address always reaches the same process, the class is counted across them, and a process
that dies is replaced while the others keep serving."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import time

import pytest

from serving import launch, shared_port
from tests import e2e, wire

STUDENTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


def _group(family: int, processes: int) -> tuple[list[socket.socket], int]:
    """`processes` listening sockets sharing one free port, steered by address."""
    host = "::" if family == socket.AF_INET6 else "127.0.0.1"
    sockets, port = [], 0
    for _ in range(processes):
        sock = socket.socket(family)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        shared_port.share(sock)
        sock.bind((host, port))
        sock.listen(8)
        sock.settimeout(5)
        port = sock.getsockname()[1]
        sockets.append(sock)
    shared_port.steer(sockets[0], processes)
    return sockets, port


def _accepted_by(sockets: list[socket.socket], port: int, source: str) -> int:
    """Connect from `source`; which of `sockets` accepted the connection."""
    client = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
    with client:
        for index, sock in enumerate(sockets):
            sock.setblocking(False)
            try:
                accepted, _ = sock.accept()
            except BlockingIOError:
                continue
            finally:
                sock.settimeout(5)
            accepted.close()
            return index
    raise AssertionError("no socket accepted the connection")


@pytest.mark.unit
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_each_address_always_reaches_the_same_socket_and_addresses_spread(family):
    if shared_port.available() is not None:
        pytest.fail(f"this Linux cannot share a port by address: {shared_port.available()}")
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.fail("no IPv6 on this machine")
    sockets, port = _group(family, 2)
    try:
        # The kernel's own choice hashes the source port too, and a new connection gets a new
        # one: eight connections from one address would all land alike by chance 1 in 128.
        picks = {source: {_accepted_by(sockets, port, source) for _ in range(8)}
                 for source in STUDENTS}
    finally:
        for sock in sockets:
            sock.close()
    assert all(len(chosen) == 1 for chosen in picks.values()), picks
    assert {next(iter(c)) for c in picks.values()} == {0, 1}, picks  # both get visitors


@pytest.mark.unit
def test_the_filter_refuses_a_group_size_it_cannot_mean():
    with socket.socket() as sock, pytest.raises(ValueError):
        shared_port.steer(sock, 0)


@pytest.mark.unit
def test_every_process_gets_the_same_explicit_port_and_one_opens_a_browser(monkeypatch):
    monkeypatch.delenv("STREAMLIT_SERVER_PORT", raising=False)
    commands = launch.child_commands(3, ["--server.port=8555", "--theme.base", "dark"])
    assert len(commands) == 3
    for index, command in enumerate(commands):
        assert command[command.index("--child") + 1:][:2] == ["3", str(index)]
        assert command[command.index("--server.port") + 1] == "8555"
        assert "--server.port=8555" not in command and "dark" in command
        assert ("--server.headless" in command) == (index > 0)
    any_port = launch.child_commands(2, ["--server.port", "0"])
    ports = {c[c.index("--server.port") + 1] for c in any_port}
    assert len(ports) == 1 and ports != {"0"}  # "any free port" is chosen once, for all
    assert launch.child_commands(1, [])[0][-2:] == ["--server.port", str(launch.DEFAULT_PORT)]


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


async def _class_while_connected(url: str, sources: list[str]) -> tuple[list[str], str]:
    task = asyncio.create_task(_students_draw(url, sources, hold=8))
    await asyncio.sleep(7)  # all joined, and each process has published its count
    seen = await _teacher_sees(url)
    return await task, seen


def _presence_files(models) -> dict[int, int]:
    """pid -> students, from each process's presence file."""
    import json
    folder = models / ".servers"
    files = [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.is_dir() else []
    return {f["pid"]: f["students"] for f in files}


@pytest.mark.browser
def test_two_processes_share_the_class_and_the_teacher_counts_everyone(two_processes):
    server, models = two_processes
    pids = server.server_pids()
    assert len(pids) == 2
    predictions, seen = wire.run(_class_while_connected(server.url, STUDENTS))
    assert predictions == ["7"] * len(STUDENTS)
    assert seen == str(len(STUDENTS))  # each process holds some; the teacher sees all four
    by_process = _presence_files(models)
    assert set(by_process) == set(pids)


@pytest.mark.browser
def test_a_process_that_dies_is_replaced_and_its_students_carry_on(two_processes):
    server, _ = two_processes
    before = server.server_pids()
    os.kill(before[0], signal.SIGKILL)
    deadline = time.time() + 60
    while time.time() < deadline:
        now = server.server_pids()
        if len(now) == 2 and before[0] not in now:
            break
        time.sleep(0.5)
    assert len(server.server_pids()) == 2 and before[0] not in server.server_pids()
    assert before[1] in server.server_pids()  # the other one was never stopped
    assert e2e.wait_for_health(server.url)
    predictions = wire.run(_students_draw(server.url, STUDENTS, hold=0))
    assert predictions == ["7"] * len(STUDENTS)
