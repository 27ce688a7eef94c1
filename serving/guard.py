"""What a visitor's websocket may ask of the server, checked before Streamlit acts on it.

Streamlit's developer messages are the teacher's: a student's websocket can't send them.

Streamlit's browser protocol lets any session ask the server to clear every cache of the app
(`clear_cache`, for all visitors at once), to rerun on every source change
(`set_run_on_save`) or to read the git state of the app's folder (`load_git_info`). The
toolbar hides them from visitors (`client.toolbarMode = "minimal"`), but a crafted message
still reaches the server. Installed once per server, this filter drops those messages
from every session that is not the teacher's (by the session's websocket peer; a signed-in
teacher on another device does not need them) and logs the attempt. The app takes no
uploads: Streamlit's upload route stays open to every session, so the uploaded-file manager
refuses every file (and `server.maxUploadSize` is 0).

Every script run is the one server process's time, so a student (`classroom.visitor_key`:
an address; an IPv6 /64 from beyond a router) may start at most
`classroom.RUNS_PER_SECOND` runs a second (`RUN_BURST` at once). A rerun asked for beyond
that waits for its turn, and a newer one from the same session replaces it: Streamlit's
rerun message carries the page's whole widget state, so the newest one is what the visitor
sees last, and a person never waits (a stroke, a tap and a refresh are a few a second at
most).
"""

from __future__ import annotations

import asyncio
import functools
import logging

from streamlit import runtime
from streamlit.runtime.app_session import AppSession
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager

from mnist_core import classroom

log = logging.getLogger(__name__)
TEACHER_ONLY_MESSAGES = frozenset({"clear_cache", "set_run_on_save", "load_git_info"})
UNKNOWN = "unknown"  # a session with no connection now: never trusted as local
RUNS = classroom.RunThrottle()
_waiting: dict[str, object] = {}  # session id -> its newest rerun beyond the limit


def client_peer(client) -> str | None:
    """A websocket client's peer as `st.context.ip_address` reports it: None for 127.0.0.1
    and ::1, else the address. UNKNOWN when there is no client (a student who sends a
    message and disconnects must not become the teacher), and for a loopback peer that
    asked for another host name: a web page the teacher opens can make the browser connect
    to 127.0.0.1 under its own name (DNS rebinding), and must not act as the teacher."""
    context = getattr(client, "client_context", None)
    ip = getattr(context, "remote_ip", None)
    if not isinstance(ip, str):
        return UNKNOWN
    peer = None if ip in ("127.0.0.1", "::1") else ip
    if classroom.is_local_peer(peer) and not classroom.is_local_host(_host(context)):
        return UNKNOWN
    return peer


def _host(context) -> str:
    try:
        return next((value for name, value in context.headers if name.lower() == "host"), "")
    except Exception:  # no headers to read: not a browser's websocket
        return ""


def session_peer(session_id: str) -> str | None:
    return client_peer(runtime.get_instance().get_client(session_id)
                       if runtime.exists() else None)


def allowed(session_id: str, message_type: str | None) -> bool:
    if message_type not in TEACHER_ONLY_MESSAGES:
        return True
    return classroom.role_for(session_peer(session_id)) == classroom.TEACHER


def install() -> bool:
    """Wrap AppSession.handle_backmsg once; True if this call installed it."""
    original = AppSession.handle_backmsg
    if getattr(original, "_mnist_guard", False):
        return False

    @functools.wraps(original)
    def handle_backmsg(self, msg):
        kind = msg.WhichOneof("type")
        if not allowed(self.id, kind):
            log.warning("Dropped %s from a student's session (%s)", kind, session_peer(self.id))
            return None
        if kind == "rerun_script" and not _run_now(self, msg):
            return None
        return original(self, msg)

    handle_backmsg._mnist_guard = True
    AppSession.handle_backmsg = handle_backmsg
    MemoryUploadedFileManager.add_file = _refuse_upload
    return True


def _run_now(session: AppSession, msg) -> bool:
    """Whether this rerun goes ahead now; if not, it is kept (replacing an older one kept
    for the same session) and asked again when the address's next run is due."""
    peer = session_peer(session.id)
    if classroom.role_for(peer) == classroom.TEACHER:
        return True
    wait = RUNS.take(classroom.visitor_key(peer, session.id))
    if wait == 0.0:
        _waiting.pop(session.id, None)  # this newer rerun replaces the kept one
        return True
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not from a websocket (Streamlit's handlers run on its loop)
        return True
    if _waiting.get(session.id) is None:
        loop.call_later(wait, _run_waiting, session)
    _waiting[session.id] = msg
    return False


def _run_waiting(session: AppSession) -> None:
    msg = _waiting.pop(session.id, None)
    if msg is None or not (runtime.exists() and runtime.get_instance().is_active_session(session.id)):
        return
    session.handle_backmsg(msg)


def _refuse_upload(self, session_id: str, file) -> None:
    log.warning("Refused a file upload from session %s (%s): the app takes none",
                session_id, session_peer(session_id))
