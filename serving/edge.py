"""The classroom's edge: ASGI middleware around the `st.App` (app.py), in front of Streamlit.

Every request and websocket message of a visitor passes here before Streamlit parses it, so
a student's script meets the same limits as a student's browser:

- a websocket handshake whose `Origin` is not the page's own host and port is refused (a page
  of another site can't drive the app, and Streamlit's own origin check, which looks up the
  machine's external address with blocking calls, never runs for it);
- a student's address holds at most `MAX_SOCKETS_PER_ADDRESS` websockets at once;
- each inbound websocket message is at most `MAX_MESSAGE_BYTES` (decompressed: what Streamlit
  would parse), and only the kinds a student's browser sends pass (`STUDENT_MESSAGES`):
  Streamlit's developer messages (clear every cache, rerun on save, ...) are the teacher's;
- script runs are charged by count and by bytes per address (`classroom.RunThrottle`): a rerun
  beyond the budget waits for its turn, and a newer one from the same websocket replaces it
  (its widget state is the newest), so a person never notices and a script can't flood;
- uploads are refused (the app takes none), and every response forbids framing by another
  site (`frame-ancestors 'self'`).

The teacher (on the server's machine, or signed in from another device: `signed_in`) is
exempt from the limits. Refusals are logged and counted (`STATS`), never raised.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from streamlit.proto.BackMsg_pb2 import BackMsg

from serving import classroom

log = logging.getLogger(__name__)

STREAM_PATH = "/_stcore/stream"
UPLOAD_PATH = "/_stcore/upload_file"
# A phone holds one or two websockets (a reconnect overlaps the old one); a laptop a few tabs.
MAX_SOCKETS_PER_ADDRESS = 8
# The largest message a real drawing sends is the Draw page's rerun with the canvas's PNG
# data URL and its strokes: 52 kB for a canvas scribbled all over, in Chromium on a desktop
# (47 kB on a 3x phone: the canvas sends 280x280 whatever the screen's pixel ratio;
# tests/test_edge_server.py measures it). Five times that leaves room for the other widgets.
MAX_MESSAGE_BYTES = 256 * 1024
# What a student's browser sends: page runs, a stop, the heartbeat.
STUDENT_MESSAGES = frozenset({"rerun_script", "stop_script", "app_heartbeat"})
FRAME_HEADERS = [(b"content-security-policy", b"frame-ancestors 'self'"),
                 (b"x-frame-options", b"SAMEORIGIN")]
FORBIDDEN = 403


@dataclass
class Visitor:
    """One connection's visitor, as the edge sees it: its peer (`classroom.visitor_peer`) and
    the key its limits go by."""

    peer: str | None
    key: str

    @classmethod
    def of(cls, scope) -> Visitor:
        client = scope.get("client")
        ip = client[0] if client else None
        peer = classroom.visitor_peer(None if ip in ("127.0.0.1", "::1") else ip,
                                      _header(scope, b"host"))
        return cls(peer, classroom.visitor_key(peer, f"connection:{id(scope)}"))

    def is_teacher(self) -> bool:
        return classroom.role_for(self.peer, signed_in=self.key in SIGNED_IN) == classroom.TEACHER


@dataclass
class Connections:
    """The websockets open now, by visitor key: the class's count, and the per-address cap."""

    _open: Counter = field(default_factory=Counter)
    _students: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, visitor: Visitor) -> bool:
        """Count a new websocket of `visitor`; False (nothing counted) past the cap."""
        teacher = visitor.is_teacher()
        with self._lock:
            if not teacher and self._open[visitor.key] >= MAX_SOCKETS_PER_ADDRESS:
                return False
            self._open[visitor.key] += 1
            self._students[visitor.key] += not teacher
            return True

    def close(self, visitor: Visitor, student: bool) -> None:
        with self._lock:
            for table, counted in ((self._open, True), (self._students, student)):
                if counted:
                    table[visitor.key] -= 1
                    if table[visitor.key] <= 0:
                        del table[visitor.key]

    def counts(self) -> tuple[int, int]:
        """(websockets open, of which students') on this server process."""
        with self._lock:
            return sum(self._open.values()), sum(self._students.values())


SIGNED_IN: set[str] = set()  # visitor keys of teachers signed in with the password
CONNECTIONS = Connections()
RUNS = classroom.RunThrottle()
STATS: Counter = Counter()  # what the edge refused, by reason


def signed_in(key: str, yes: bool) -> None:
    """The sidebar's sign-in and sign-out: the edge stops limiting that address, or starts."""
    (SIGNED_IN.add if yes else SIGNED_IN.discard)(key)


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def same_origin(scope) -> bool:
    """No Origin (not a browser: it could send any), or one naming the page's own host and
    port. Another site's page, or another port of localhost, is not the app."""
    origin = _header(scope, b"origin")
    if not origin:
        return True
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return netloc.lower() == _header(scope, b"host").lower() != ""


def refuse(reason: str, visitor: Visitor | None = None, what: str = "Refused") -> None:
    first = STATS[reason] == 0
    STATS[reason] += 1
    # Every one is counted; the log says the first of each kind, then every 100th.
    if first or STATS[reason] % 100 == 0:
        log.warning("%s %s from %s (%d so far)", what, reason,
                    visitor.peer if visitor else "?", STATS[reason])


def message_kind(data: bytes) -> str | None:
    """The kind of a Streamlit BackMsg, or None when it is not one."""
    message = BackMsg()
    try:
        message.ParseFromString(data)
    except Exception:  # not a protobuf Streamlit would accept either
        return None
    return message.WhichOneof("type")


class ClassroomEdge:
    """The ASGI middleware (see the module's docstring)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            if scope["path"].startswith(UPLOAD_PATH):
                refuse("an upload")
                await _respond(send, FORBIDDEN)
                return
            await self.app(scope, receive, _with_frame_headers(send))
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _websocket(self, scope, receive, send):
        visitor = Visitor.of(scope)
        if not same_origin(scope):
            refuse("a websocket from another site's page", visitor)
            await send({"type": "websocket.close", "code": 1008})
            return
        if not CONNECTIONS.open(visitor):
            refuse("a websocket over the address's limit", visitor)
            await send({"type": "websocket.close", "code": 1008})
            return
        student = not visitor.is_teacher()
        try:
            await self.app(scope, Inbox(receive, visitor).receive, send)
        finally:
            CONNECTIONS.close(visitor, student)


def _with_frame_headers(send):
    async def send_with_headers(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *FRAME_HEADERS]}
        await send(message)
    return send_with_headers


async def _respond(send, status: int) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), *FRAME_HEADERS]})
    await send({"type": "http.response.body", "body": b"Not here."})


class Inbox:
    """One websocket's inbound messages as Streamlit will read them: checked, charged to the
    visitor's budget, a rerun over the budget held back until its turn (a newer one replaces
    it)."""

    def __init__(self, receive, visitor: Visitor, runs: classroom.RunThrottle = RUNS):
        self._receive, self.visitor, self.runs = receive, visitor, runs
        self._next: asyncio.Future | None = None
        self._held: dict | None = None  # a rerun waiting for its turn

    async def _arrived(self, timeout: float | None) -> dict | None:
        """The next message from the visitor, or None when `timeout` passes first (the read
        goes on: nothing is lost)."""
        if self._next is None:
            if timeout is None:  # nothing waits for its turn: the plain read, no task
                return await self._receive()
            self._next = asyncio.ensure_future(self._receive())
        done, _ = await asyncio.wait({self._next}, timeout=timeout)
        if not done:
            return None
        message, self._next = self._next.result(), None
        return message

    async def receive(self) -> dict:
        while True:
            wait = None
            if self._held is not None:
                wait = self.runs.take(self.visitor.key, len(self._held["bytes"]))
                if wait == 0.0:
                    message, self._held = self._held, None
                    return message
            message = await self._arrived(wait)
            if message is None:
                continue  # the held rerun's turn has come
            if message["type"] != "websocket.receive":
                return message  # the visitor left: a held rerun goes with them
            passed = self._check(message)
            if passed is not None:
                return passed

    def _check(self, message: dict) -> dict | None:
        """The message when it goes to Streamlit now; None when it is held or dropped."""
        data = message.get("bytes")
        if data is None:
            return message  # a text frame: Streamlit closes the websocket itself
        if len(data) > MAX_MESSAGE_BYTES:
            refuse("an oversized message", self.visitor)
            return None
        if self.visitor.is_teacher():
            return message
        kind = message_kind(data)
        if kind not in STUDENT_MESSAGES:
            refuse(f"a {kind or 'malformed'} message from a student", self.visitor)
            return None
        if kind == "rerun_script":
            if self._held is not None:
                refuse("a rerun waiting for its turn", self.visitor, what="Merged into a newer one:")
            self._held = message  # goes on its turn (at once when the budget allows)
            return None
        return message
