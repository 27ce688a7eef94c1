"""The classroom's edge (serving.edge) as ASGI middleware, driven without a server: what a
student's connection may send, and what reaches Streamlit."""

from __future__ import annotations

import asyncio

import pytest
from streamlit.proto.BackMsg_pb2 import BackMsg

from serving import classroom, edge
from tests import wire

pytestmark = pytest.mark.unit

STUDENT_SCOPE = {"type": "websocket", "path": "/_stcore/stream", "client": ("192.168.1.23", 5000),
                 "headers": [(b"host", b"192.168.1.10:8501")]}
TEACHER_SCOPE = {**STUDENT_SCOPE, "client": ("127.0.0.1", 5000),
                 "headers": [(b"host", b"localhost:8501")]}


def frame(data: bytes) -> dict:
    return {"type": "websocket.receive", "bytes": data}


def developer(kind: str) -> bytes:
    message = BackMsg()
    setattr(message, kind, True)
    return message.SerializeToString()


def heartbeat() -> bytes:
    return BackMsg(app_heartbeat=True).SerializeToString()


def drawing(size: int) -> bytes:
    """A Draw-page rerun carrying a canvas value of about `size` bytes."""
    message = BackMsg()
    message.rerun_script.page_name = "Draw"
    widget = message.rerun_script.widget_states.widgets.add()
    widget.id, widget.json_value = "canvas", "[" + "[]," * (size // 3) + "[]]"
    return message.SerializeToString()


class Visitor:
    """A websocket's far end: frames queued for the edge, then silence (or a goodbye)."""

    def __init__(self, frames: list[bytes], leave: bool = False):
        self.queue: asyncio.Queue = asyncio.Queue()
        for data in frames:
            self.queue.put_nowait(frame(data))
        if leave:
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1000})

    async def receive(self):
        return await self.queue.get()


async def delivered(inbox: edge.Inbox, timeout: float = 0.5) -> list[dict]:
    """What the inbox hands to Streamlit until nothing more comes within `timeout`."""
    out = []
    while True:
        try:
            out.append(await asyncio.wait_for(inbox.receive(), timeout))
        except TimeoutError:
            return out
        if out[-1]["type"] != "websocket.receive":
            return out


def inbox_for(scope, frames, runs=None, leave=False) -> edge.Inbox:
    return edge.Inbox(Visitor(frames, leave).receive, edge.Visitor.of(scope),
                      runs or classroom.RunThrottle())


def test_a_students_developer_and_unknown_messages_are_dropped_and_counted():
    before = dict(edge.STATS)
    frames = [developer("clear_cache"), developer("set_run_on_save"), b"\xff\xfe not protobuf",
              developer("debug_shutdown_runtime"), heartbeat()]
    out = asyncio.run(delivered(inbox_for(STUDENT_SCOPE, frames)))
    assert [wire_kind(m) for m in out] == ["app_heartbeat"]
    for reason in ("a clear_cache message from a student", "a set_run_on_save message from a student",
                   "a malformed message from a student",
                   "a debug_shutdown_runtime message from a student"):
        assert edge.STATS[reason] == before.get(reason, 0) + 1


def wire_kind(message: dict) -> str:
    return edge.message_kind(message["bytes"])


def test_the_teachers_messages_all_pass():
    frames = [developer("clear_cache"), heartbeat(), *[drawing(100_000)] * 30]
    out = asyncio.run(delivered(inbox_for(TEACHER_SCOPE, frames)))
    assert [wire_kind(m) for m in out] == ["clear_cache", "app_heartbeat"] + ["rerun_script"] * 30


def test_an_oversized_message_is_dropped_and_the_next_drawing_still_runs():
    frames = [drawing(edge.MAX_MESSAGE_BYTES + 10), drawing(30_000)]
    out = asyncio.run(delivered(inbox_for(STUDENT_SCOPE, frames)))
    assert [len(m["bytes"]) for m in out] == [len(frames[1])]
    assert len(frames[0]) > edge.MAX_MESSAGE_BYTES  # counted decompressed, as Streamlit sees it


def test_ordinary_drawings_pass_and_oversized_ones_wait_for_the_byte_budget():
    # A student drawing: 40 kB a stroke, a burst of 15 strokes: every one runs at once.
    honest = asyncio.run(delivered(inbox_for(STUDENT_SCOPE, [drawing(40_000)] * 15)))
    assert len(honest) == 15
    # A script: 12 values of 250 kB. The budget's 2 MB let 8 through; the other 4 wait, and
    # each newer one replaces the one waiting (the widget state is the newest), so Streamlit
    # gets the last one, once, when its turn comes.
    runs = classroom.RunThrottle(byte_rate=1_000_000)  # its turn within the test's wait
    frames = [drawing(250_000 + n) for n in range(12)]
    inbox = inbox_for(STUDENT_SCOPE, frames, runs)
    out = asyncio.run(delivered(inbox, timeout=3.0))
    sizes = [len(m["bytes"]) for m in out]
    assert sizes == [len(f) for f in frames[:8]] + [len(frames[-1])]


def test_a_held_rerun_leaves_with_its_visitor():
    runs = classroom.RunThrottle(byte_rate=1.0)  # the held one never gets its turn
    frames = [drawing(250_000)] * 9
    out = asyncio.run(delivered(inbox_for(STUDENT_SCOPE, frames, runs, leave=True)))
    assert [m["type"] for m in out] == ["websocket.receive"] * 8 + ["websocket.disconnect"]


def test_a_signed_in_teacher_is_exempt_and_signing_out_ends_it():
    visitor = edge.Visitor.of(STUDENT_SCOPE)
    assert not visitor.is_teacher()
    edge.signed_in(visitor.key, True)
    try:
        out = asyncio.run(delivered(inbox_for(STUDENT_SCOPE, [developer("clear_cache")])))
        assert [wire_kind(m) for m in out] == ["clear_cache"]
    finally:
        edge.signed_in(visitor.key, False)
    assert not edge.Visitor.of(STUDENT_SCOPE).is_teacher()


def test_websockets_are_capped_per_student_address_not_for_the_teacher():
    connections = edge.Connections()
    student = edge.Visitor.of(STUDENT_SCOPE)
    assert all(connections.open(student) for _ in range(edge.MAX_SOCKETS_PER_ADDRESS))
    assert not connections.open(student)  # one more from the same address
    other = edge.Visitor.of({**STUDENT_SCOPE, "client": ("192.168.1.24", 5000)})
    assert connections.open(other)  # the next student is not held back
    connections.close(student, student=True)
    assert connections.open(student)  # a closed one makes room
    teacher = edge.Visitor.of(TEACHER_SCOPE)
    assert all(connections.open(teacher) for _ in range(3 * edge.MAX_SOCKETS_PER_ADDRESS))
    assert connections.counts() == (4 * edge.MAX_SOCKETS_PER_ADDRESS + 1,
                                    edge.MAX_SOCKETS_PER_ADDRESS + 1)


@pytest.mark.parametrize(("origin", "host", "same"), [
    (None, "192.168.1.10:8501", True),  # not a browser: it could claim any origin anyway
    ("http://192.168.1.10:8501", "192.168.1.10:8501", True),
    ("http://LOCALHOST:8501", "localhost:8501", True),
    ("http://evil.example", "192.168.1.10:8501", False),
    ("http://localhost:3000", "localhost:8501", False),  # another port of the same machine
    ("null", "localhost:8501", False),  # a sandboxed frame or a file
    ("http://192.168.1.10:8501", "", False),
])
def test_only_the_apps_own_origin_may_open_a_websocket(origin, host, same):
    headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
    assert edge.same_origin({"headers": headers}) is same


class Inner:
    """Streamlit behind the edge, as far as these tests care: what reached it."""

    def __init__(self):
        self.calls = []

    async def __call__(self, scope, receive, send):
        self.calls.append(scope["path"])
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"page"})
        else:
            await send({"type": "websocket.accept"})


def call(app, scope) -> list[dict]:
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "websocket.connect"}

    asyncio.run(app(scope, receive, send))
    return sent


def test_a_foreign_origin_never_reaches_streamlit():
    inner = Inner()
    foreign = {**STUDENT_SCOPE, "headers": [*STUDENT_SCOPE["headers"],
                                            (b"origin", b"http://evil.example")]}
    assert call(edge.ClassroomEdge(inner), foreign) == [{"type": "websocket.close", "code": 1008}]
    assert inner.calls == []
    assert call(edge.ClassroomEdge(inner), STUDENT_SCOPE) == [{"type": "websocket.accept"}]
    assert inner.calls == ["/_stcore/stream"]


def test_pages_forbid_framing_and_uploads_are_refused():
    inner = Inner()
    page = call(edge.ClassroomEdge(inner), {"type": "http", "path": "/Draw", "headers": []})
    assert (b"content-security-policy", b"frame-ancestors 'self'") in page[0]["headers"]
    upload = call(edge.ClassroomEdge(inner), {"type": "http", "path": "/_stcore/upload_file/s/f",
                                              "headers": []})
    assert upload[0]["status"] == 403 and inner.calls == ["/Draw"]


def test_a_real_drawing_message_is_far_under_the_cap():
    # What the Draw page's canvas sends for a drawn digit (tests/wire: the component's own
    # value shape), inside a rerun message.
    message = BackMsg()
    message.rerun_script.page_name = "Draw"
    widget = message.rerun_script.widget_states.widgets.add()
    widget.id, widget.json_value = "canvas", wire.canvas_state(0)
    assert len(message.SerializeToString()) * 4 < edge.MAX_MESSAGE_BYTES
