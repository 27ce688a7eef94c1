"""The classroom's edge on a running server (`./run app`'s launcher and `streamlit run
app.py`): one student's script meets its limits over the wire, from an address of its own
(127.0.0.2 through the loopback relay)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import websockets

from serving import edge
from tests import e2e, wire
from tests.count_ip_lookups import counting_stub
from tests.relay import LoopbackRelay

pytestmark = pytest.mark.browser  # a real server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The launcher with one process, Streamlit's external-address lookup counted."""
    root = tmp_path_factory.mktemp("edge")
    lookups = root / "lookups.txt"
    lookups.touch()
    log_path = root / "server.log"
    app = e2e.AppServer(root / "models", log_path, launcher=True)
    app.start = _counting(app, lookups)  # the same start, under the counting wrapper
    app.start()
    yield app, lookups
    app.stop()


def _counting(app: e2e.AppServer, lookups: Path):
    def start(timeout: float = 60):
        log = open(app.log_path, "a")
        app.process = subprocess.Popen(
            [sys.executable, "-m", "tests.count_ip_lookups", str(lookups), "--processes", "1",
             "--server.headless", "true", "--server.port", "0"],
            cwd=e2e.REPO, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **e2e.OFFLINE, "MNIST_MODELS_DIR": str(app.models_dir)})
        app.port = app._port_said(0, timeout)
        app.url = f"http://127.0.0.1:{app.port}"
        assert e2e.wait_for_health(app.url, timeout), app.log_path.read_text()
        return app
    return start


async def _handshake(url: str, **headers) -> int | None:
    """The HTTP status a websocket handshake was refused with, None when accepted."""
    try:
        async with wire.connect(url, additional_headers=headers):
            return None
    except websockets.exceptions.InvalidStatus as refused:
        return refused.response.status_code


def test_a_foreign_origin_is_refused_before_streamlit_looks_up_the_address(server):
    app, lookups = server
    before = lookups.read_text()
    for origin in ("http://evil.example", "http://localhost:1", "null"):
        for _ in range(3):
            assert wire.run(_handshake(app.url, Origin=origin)) == 403
    assert wire.run(_handshake(app.url, Origin=app.url)) is None  # the app's own page
    assert lookups.read_text() == before == ""  # not once, not even at start
    assert "Refused a websocket from another site's page" in app.log_path.read_text()


def test_the_stub_counts_what_streamlits_origin_check_would_look_up(tmp_path, monkeypatch):
    # What the server test relies on: a foreign Origin reaching Streamlit's check is counted.
    from streamlit import net_util
    from streamlit.web.server import server_util

    count = tmp_path / "count.txt"
    monkeypatch.setattr(net_util, "get_external_ip", counting_stub(count))
    monkeypatch.setattr(net_util, "get_internal_ip", lambda: None)
    assert not server_util.is_url_from_allowed_origins("http://evil.example")
    assert count.read_text() == "lookup\n"


async def _open_many(url: str, count: int) -> list[int | None]:
    """Open `count` websockets at once and hold them; each one's refusal status or None."""
    held, statuses = [], []
    try:
        for _ in range(count):
            try:
                held.append(await wire.connect(url).__aenter__())
                statuses.append(None)
            except websockets.exceptions.InvalidStatus as refused:
                statuses.append(refused.response.status_code)
        return statuses
    finally:
        for ws in held:
            await ws.close()


def test_a_student_address_holds_a_few_websockets_and_the_teacher_any(server):
    app, _ = server
    with LoopbackRelay(app.port) as relay:
        statuses = wire.run(_open_many(relay.url, edge.MAX_SOCKETS_PER_ADDRESS + 3))
        assert statuses == [None] * edge.MAX_SOCKETS_PER_ADDRESS + [403] * 3
        assert "Refused a websocket over the address's limit from ::ffff:127.0.0.2" in \
            app.log_path.read_text()
        assert wire.run(_open_many(relay.url, 1)) == [None]  # closed ones made room again
        with LoopbackRelay(app.port, source="127.0.0.3") as other:
            assert wire.run(_open_many(other.url, 1)) == [None]  # another student
    teacher = wire.run(_open_many(app.url, 2 * edge.MAX_SOCKETS_PER_ADDRESS))
    assert teacher == [None] * 2 * edge.MAX_SOCKETS_PER_ADDRESS


def test_a_connection_that_sends_no_request_is_closed(server):
    app, _ = server
    silent = socket.create_connection(("127.0.0.1", app.port))
    silent.settimeout(120)
    try:
        assert silent.recv(100) == b""  # closed by the server, not by the timeout here
    finally:
        silent.close()
    # A visitor sending a request is served as ever.
    page = urllib.request.urlopen(app.url, timeout=30)
    assert page.status == 200
    assert page.headers["Content-Security-Policy"] == "frame-ancestors 'self'"


def test_streamlit_run_keeps_the_edge(tmp_path):
    app = e2e.AppServer(tmp_path / "models", tmp_path / "server.log").start()
    try:
        assert wire.run(_handshake(app.url, Origin="http://evil.example")) == 403
        with LoopbackRelay(app.port) as relay:
            statuses = wire.run(_open_many(relay.url, edge.MAX_SOCKETS_PER_ADDRESS + 1))
        assert statuses[-1] == 403
        headers = urllib.request.urlopen(app.url, timeout=30).headers
        assert headers["Content-Security-Policy"] == "frame-ancestors 'self'"
    finally:
        app.stop()


def test_run_app_listens_where_config_toml_says(tmp_path):
    """`./run app` with `server.address = "127.0.0.1"` in the teacher's config.toml: only
    this machine can connect, as `streamlit run app.py` would do."""
    home = tmp_path / "home"
    (home / ".streamlit").mkdir(parents=True)
    (home / ".streamlit" / "config.toml").write_text(
        '[server]\naddress = "127.0.0.1"\nport = 0\nheadless = true\n')
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(e2e.REPO / "run"), "app", "--processes", "1"], cwd=e2e.REPO,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **e2e.OFFLINE, "HOME": str(home),
                 "MNIST_MODELS_DIR": str(tmp_path / "models")})
    try:
        app = e2e.AppServer(tmp_path / "models", log_path, launcher=True)
        app.process = process
        port = app._port_said(0, 120)
        assert e2e.wait_for_health(f"http://127.0.0.1:{port}", 60)
        listening = [c.laddr for c in psutil.Process(process.pid).net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN]
        assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", port)]
        assert "only this machine can open it" in log_path.read_text()
    finally:
        os.killpg(process.pid, 15)
        process.wait(30)


def test_a_second_launch_on_a_taken_port_says_so(tmp_path):
    taken = socket.create_server(("127.0.0.1", 0))  # held by this test: really taken
    port = taken.getsockname()[1]
    try:
        second = subprocess.run(
            [sys.executable, "-m", "serving.launch", "--processes", "1", "--server.port",
             str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=e2e.REPO, capture_output=True, text=True, timeout=60,
            env={**os.environ, **e2e.OFFLINE, "MNIST_MODELS_DIR": str(tmp_path)})
    finally:
        taken.close()
    assert second.returncode == 1
    assert f"Cannot listen on 127.0.0.1 port {port}" in second.stderr




def _scribble(page, touch: bool) -> None:
    """A canvas scribbled all over: 24 zigzag strokes of 40 points each, far more ink and
    points than any digit, by mouse or by finger."""
    box = page.locator("canvas.upper-canvas").bounding_box()
    cdp = page.context.new_cdp_session(page) if touch else None

    def at(x, y):
        return box["x"] + x * box["width"] / 280, box["y"] + y * box["height"] / 280

    for row in range(24):
        points = [at(10 + 6.5 * k, 10 + row * 11 + (9 if k % 2 else 0)) for k in range(40)]
        if touch:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [
                {"x": points[0][0], "y": points[0][1]}]})
            for x, y in points[1:]:
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove",
                                                      "touchPoints": [{"x": x, "y": y}]})
            cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        else:
            page.mouse.move(*points[0])
            page.mouse.down()
            for x, y in points[1:]:
                page.mouse.move(x, y)
            page.mouse.up()


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_the_largest_real_drawing_is_far_under_the_message_cap(device, tmp_path, trained_store,
                                                               browser):
    """The cap stands on what a real canvas sends: a scribbled-over canvas in Chromium, on
    a desktop and on a 3x phone, passes the edge and is answered, at a quarter of the cap
    or less."""
    import shutil

    shutil.copytree(trained_store.root, tmp_path / "models")
    app = e2e.AppServer(tmp_path / "models", tmp_path / "server.log", launcher=True).start()
    options = ({"viewport": {"width": 390, "height": 844}, "is_mobile": True,
                "has_touch": True, "device_scale_factor": 3} if device == "phone"
               else {"viewport": {"width": 1300, "height": 1200}, "device_scale_factor": 2})
    context = browser.new_context(**options)
    try:
        with LoopbackRelay(app.port) as relay:
            page = context.new_page()
            sent: list[int] = []
            page.on("websocket", lambda ws: ws.on(
                "framesent", lambda payload: sent.append(len(payload))))
            e2e.open_page(page, f"{relay.url}/Draw")
            page.locator("canvas.upper-canvas").wait_for(timeout=60000)
            _scribble(page, touch=device == "phone")
            e2e.prediction(page).locator('[data-testid="stMetricValue"]').wait_for(
                timeout=60000)
            e2e.wait_until_idle(page)
        largest = max(sent)
        print(f"largest message sent by a scribbled canvas ({device}): {largest} bytes")
        assert largest * 4 <= edge.MAX_MESSAGE_BYTES, largest
        assert "oversized" not in app.log_path.read_text()
    finally:
        context.close()
        app.stop()


def test_a_request_sent_a_byte_at_a_time_is_closed_and_a_websocket_is_not(server):
    """The first-request deadline holds from the connection's start (a slow sender does not
    push it back), and ends with the request: a websocket lives on well past it."""
    from serving.launch import FIRST_REQUEST_SECONDS

    app, _ = server
    slow = socket.create_connection(("127.0.0.1", app.port))
    slow.settimeout(1.0)
    opened = time.monotonic()
    closed_after = None
    try:
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
            try:
                slow.sendall(bytes([byte]))
                if slow.recv(100) == b"":
                    closed_after = time.monotonic() - opened
                    break
            except TimeoutError:
                continue  # still open: the next byte, a second later
            except OSError:
                closed_after = time.monotonic() - opened
                break
    finally:
        slow.close()
    assert closed_after is not None and closed_after < 6 * FIRST_REQUEST_SECONDS

    async def heartbeats_past_the_deadline() -> int:
        acks = 0
        async with wire.connect(app.url) as ws:
            for _ in range(FIRST_REQUEST_SECONDS + 4):
                await ws.send(wire.BackMsg(app_heartbeat=True).SerializeToString())
                while True:
                    reply = wire.ForwardMsg()
                    reply.ParseFromString(await asyncio.wait_for(ws.recv(), 30))
                    if reply.WhichOneof("type") == "heartbeat_ack":
                        acks += 1
                        break
                await asyncio.sleep(1)
        return acks

    assert wire.run(heartbeats_past_the_deadline()) == FIRST_REQUEST_SECONDS + 4


def test_the_join_address_names_the_port_the_launcher_bound(server):
    """Started with port 0 (any free one), the teacher's join view shows the port bound."""
    app, _ = server

    async def home_text() -> str:
        async with wire.connect(app.url) as ws:
            await ws.send(wire.rerun("Home"))
            return " ".join(str(element) for _, element in wire.elements(await wire.read_run(ws)))

    text = wire.run(home_text())
    assert "Students join" in text and f":{app.port}" in text and ":0 " not in text
